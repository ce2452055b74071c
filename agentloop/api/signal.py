"""REST: Signal — which projects have it, status, enable/disable, run now, issues.

As the Signal tab (agentloop/signal/views.py): viewers look, members turn it on
and off and run it now, outsiders get 404. Run now is the cadence automation's
trigger, with its admission checks: refused is 409 with the reason.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from agentloop.api.automations import AutomationSerializer, FireSerializer
from agentloop.api.common import (
    PAGE_PARAMETERS,
    ApiView,
    Conflict,
    DetailSerializer,
    page_serializer,
    paginated,
)
from agentloop.runs.models import ACTIVE, RunStatus
from agentloop.signal import actions
from agentloop.signal import issues as signal_issues
from agentloop.signal.models import IssueState, Severity, SignalIssue, SignalPass
from agentloop.teams.access import get_project_for_user, projects_for_user
from agentloop.traces.queries import InvalidFilter


class IssueSerializer(serializers.ModelSerializer):
    last_run = serializers.UUIDField(source="last_run.code", allow_null=True, read_only=True)

    class Meta:
        model = SignalIssue
        fields = [
            "id",
            "title",
            "kind",
            "severity",
            "state",
            "overview",
            "proposed_fix",
            "component",
            "where",
            "since",
            "how_much",
            "merged",
            "trace_ids",
            "reproduce",
            "span_filter",
            "affected_traces",
            "span_count",
            "first_seen_at",
            "last_seen_at",
            "resolved_at",
            "regressed_at",
            "times_regressed",
            "last_run",
        ]
        read_only_fields = fields


def signal_status(project) -> dict:
    active = SignalIssue.objects.filter(project=project).exclude(state=IssueState.RESOLVED)
    last_pass = SignalPass.objects.filter(project=project).select_related("run").first()
    automations = actions.automations_of(project).select_related("space", "project", "preset")
    running = automations.filter(fires__run__status__in=[RunStatus.QUEUED, *ACTIVE]).exists()
    return {
        "project": {"id": project.pk, "name": project.name},
        "space": {"id": project.space_id, "name": project.space.name},
        "enabled": automations.exists(),
        "running": running,
        "open_issues": active.count(),
        "last_pass": (
            {"at": last_pass.at, "run": str(last_pass.run.code), "issues": last_pass.issues_seen}
            if last_pass
            else None
        ),
        "automations": AutomationSerializer(automations.order_by("signal_role"), many=True).data,
    }


class StatusSerializer(serializers.Serializer):
    project = serializers.DictField()
    space = serializers.DictField()
    enabled = serializers.BooleanField()
    running = serializers.BooleanField()
    open_issues = serializers.IntegerField()
    last_pass = serializers.DictField(allow_null=True)
    automations = AutomationSerializer(many=True)


IssuePage = page_serializer("IssuePage", IssueSerializer)


class SignalProjectsView(ApiView):
    @extend_schema(
        summary="Signal's status in every project the caller may see",
        responses=StatusSerializer(many=True),
    )
    def get(self, request):
        projects = projects_for_user(request.user, "view").order_by("space__name", "name")
        return Response({"data": [signal_status(p) for p in projects], "next_cursor": None})


class SignalStatusView(ApiView):
    @extend_schema(summary="Signal's status in a project", responses=StatusSerializer)
    def get(self, request, project_id):
        project = get_project_for_user(request.user, project_id, "view")
        return Response(signal_status(project))


class SignalEnableView(ApiView):
    @extend_schema(summary="Turn Signal on (members)", request=None, responses=StatusSerializer)
    def post(self, request, project_id):
        project = get_project_for_user(request.user, project_id, "use")
        actions.enable(request.user, project)
        return Response(signal_status(project))


class SignalDisableView(ApiView):
    @extend_schema(summary="Turn Signal off (members)", request=None, responses=StatusSerializer)
    def post(self, request, project_id):
        project = get_project_for_user(request.user, project_id, "use")
        actions.disable(request.user, project)
        return Response(signal_status(project))


class SignalRunView(ApiView):
    @extend_schema(
        summary="A Signal pass now (409 with the reason when refused)",
        request=None,
        responses={201: FireSerializer, 409: DetailSerializer},
    )
    def post(self, request, project_id):
        project = get_project_for_user(request.user, project_id, "use")
        if not actions.is_enabled(project):
            raise Conflict("Enable Signal first.")
        record = actions.run_now(request.user, project)
        return Response(FireSerializer(record).data, status=status.HTTP_201_CREATED)


class SignalIssueListView(ApiView):
    @extend_schema(
        operation_id="signal_issues_list",
        summary="A project's Signal issues, most recently seen first",
        parameters=[
            OpenApiParameter("state", str, enum=IssueState.values),
            OpenApiParameter("severity", str, enum=Severity.values),
            *PAGE_PARAMETERS,
        ],
        responses=IssuePage,
    )
    def get(self, request, project_id):
        project = get_project_for_user(request.user, project_id, "view")
        signal_issues.collect(project=project)  # as the tab: a finished run shows at once
        found = SignalIssue.objects.filter(project=project).select_related("last_run")
        for name, choices in (("state", IssueState.values), ("severity", Severity.values)):
            value = request.query_params.get(name)
            if value:
                if value not in choices:
                    raise InvalidFilter(
                        f"{name}: unknown value {value!r}; one of {', '.join(choices)}."
                    )
                found = found.filter(**{name: value})
        return paginated(request, found, IssueSerializer, time_field="last_seen_at")


class SignalIssueDetailView(ApiView):
    @extend_schema(summary="One Signal issue", responses=IssueSerializer)
    def get(self, request, project_id, issue_id):
        project = get_project_for_user(request.user, project_id, "view")
        issue = actions.get_issue_for_user(request.user, project, issue_id, "view")
        return Response(IssueSerializer(issue).data)
