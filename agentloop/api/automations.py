"""REST: automations — list, show, create, update, delete, pause, resume, trigger now.

Members of a space ("use") do all of it, as on the Automations pages; every
view goes through agentloop.automations.actions (get_automation_for_user and
one action). Trigger now is `run_now`: the same admission checks as a
scheduled fire (paused, cooling down, too many runs going); a refused trigger
is 409 with the reason.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from agentloop.api.common import (
    PAGE_PARAMETERS,
    ApiView,
    DetailSerializer,
    page_serializer,
    paginated,
    validated,
)
from agentloop.api.sessions import SessionSerializer
from agentloop.automations import actions
from agentloop.automations.forms import FIELDS
from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.models import AgentPreset
from agentloop.teams.access import get_project_for_user, get_space_for_user

PLAIN_FIELDS = [f for f in FIELDS if f not in ("project", "preset")]


class AutomationSerializer(serializers.ModelSerializer):
    space = serializers.SerializerMethodField()
    project = serializers.SerializerMethodField()
    preset = serializers.SerializerMethodField()

    class Meta:
        model = Automation
        fields = [
            "id",
            "space",
            "project",
            "preset",
            *PLAIN_FIELDS,
            "enabled",
            "paused_reason",
            "next_fire_at",
            "last_fired_at",
            "last_evaluated_at",
            "last_value",
            "signal_role",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_space(self, automation) -> dict:
        return {"id": automation.space_id, "name": automation.space.name}

    def get_project(self, automation) -> dict:
        return {"id": automation.project_id, "name": automation.project.name}

    def get_preset(self, automation) -> dict | None:
        if automation.preset_id is None:
            return None
        return {"id": automation.preset_id, "name": automation.preset.name}


class AutomationWriteSerializer(serializers.ModelSerializer):
    space = serializers.IntegerField(required=False, help_text="Required to create.")
    project = serializers.IntegerField(required=False)
    preset = serializers.IntegerField(required=False)

    class Meta:
        model = Automation
        fields = ["space", "project", "preset", *PLAIN_FIELDS, "enabled"]
        extra_kwargs = {name: {"required": False} for name in ["name", "prompt", *PLAIN_FIELDS]}


class FireSerializer(serializers.ModelSerializer):
    session = serializers.SerializerMethodField()

    class Meta:
        model = AutomationFire
        fields = ["id", "scheduled_at", "fired_at", "reason", "outcome", "detail", "session"]
        read_only_fields = fields

    def get_session(self, fire) -> SessionSerializer:
        return SessionSerializer(fire.run).data if fire.run_id else None


class PauseSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


AutomationPage = page_serializer("AutomationPage", AutomationSerializer)


def _apply(user, automation: Automation, data: dict) -> Automation:
    data.pop("space", None)
    space = automation.space
    if "project" in data:
        try:
            project = get_project_for_user(user, data.pop("project"), "use")
        except Http404:
            raise ValidationError({"project": ["No such project."]}) from None
        if project.space_id != space.pk:
            raise ValidationError({"project": ["Choose a project of the automation's space."]})
        automation.project = project
    if "preset" in data:
        preset = AgentPreset.objects.filter(space=space, pk=data.pop("preset")).first()
        if preset is None:
            raise ValidationError({"preset": ["No such preset in this space."]})
        automation.preset = preset
    for field, value in data.items():
        setattr(automation, field, value)
    if automation.project_id is None:
        raise ValidationError({"project": ["This field is required."]})
    return actions.save_automation(user, automation)


class AutomationListView(ApiView):
    @extend_schema(
        operation_id="automations_list",
        summary="Automations of the caller's spaces",
        parameters=[OpenApiParameter("space", int), *PAGE_PARAMETERS],
        responses=AutomationPage,
    )
    def get(self, request):
        automations = actions.automations_for_user(request.user, "view")
        space = request.query_params.get("space")
        if space:
            automations = automations.filter(space=get_space_for_user(request.user, space, "view"))
        return paginated(request, automations, AutomationSerializer)

    @extend_schema(
        summary="Create an automation (members)",
        request=AutomationWriteSerializer,
        responses={201: AutomationSerializer},
    )
    def post(self, request):
        data = dict(validated(AutomationWriteSerializer, request.data))
        if "space" not in data:
            raise ValidationError({"space": ["This field is required."]})
        space = get_space_for_user(request.user, data["space"], "use")
        automation = _apply(request.user, Automation(space=space), data)
        return Response(AutomationSerializer(automation).data, status=status.HTTP_201_CREATED)


class AutomationDetailView(ApiView):
    @extend_schema(summary="One automation", responses=AutomationSerializer)
    def get(self, request, automation_id):
        automation = actions.get_automation_for_user(request.user, automation_id, "view")
        return Response(AutomationSerializer(automation).data)

    @extend_schema(
        summary="Change an automation (members; only the fields given)",
        request=AutomationWriteSerializer,
        responses=AutomationSerializer,
    )
    def patch(self, request, automation_id):
        automation = actions.get_automation_for_user(request.user, automation_id, "use")
        data = dict(validated(AutomationWriteSerializer, request.data, partial=True))
        automation = _apply(request.user, automation, data)
        return Response(AutomationSerializer(automation).data)

    @extend_schema(summary="Delete an automation (members); its runs stay", responses={204: None})
    def delete(self, request, automation_id):
        automation = actions.get_automation_for_user(request.user, automation_id, "use")
        actions.delete_automation(request.user, automation)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AutomationPauseView(ApiView):
    @extend_schema(summary="Pause", request=PauseSerializer, responses=AutomationSerializer)
    def post(self, request, automation_id):
        automation = actions.get_automation_for_user(request.user, automation_id, "use")
        body = validated(PauseSerializer, request.data or {})
        actions.pause(request.user, automation, (body.get("reason") or "").strip())
        return Response(AutomationSerializer(automation).data)


class AutomationResumeView(ApiView):
    @extend_schema(
        summary="Resume (409 with the reason when it cannot)",
        request=None,
        responses={200: AutomationSerializer, 409: DetailSerializer},
    )
    def post(self, request, automation_id):
        automation = actions.get_automation_for_user(request.user, automation_id, "use")
        actions.resume(request.user, automation)
        return Response(AutomationSerializer(automation).data)


class AutomationTriggerView(ApiView):
    @extend_schema(
        summary="Trigger now, with the scheduled fire's admission checks (409 if refused)",
        request=None,
        responses={201: FireSerializer, 409: DetailSerializer},
    )
    def post(self, request, automation_id):
        automation = actions.get_automation_for_user(request.user, automation_id, "use")
        record = actions.run_now(request.user, automation)
        return Response(FireSerializer(record).data, status=status.HTTP_201_CREATED)
