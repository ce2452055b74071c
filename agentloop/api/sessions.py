"""REST: sessions (runs) — start, list, show, events, live stream, follow-up, stop, artifacts.

Thin views: each fetches through agentloop.runs.access (or the project's helper)
and calls the one action the Studio pages call (agentloop.runs.actions,
agentloop.presets.actions). The live stream's real implementation is the plain
ASGI app agentloop/api/stream_app.py; the view here answers the same path
under WSGI and the test client (what is there now, then the end if the run is
over) and documents it in the schema.
"""

from __future__ import annotations

import json

from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from agentloop.api.common import (
    PAGE_PARAMETERS,
    ApiView,
    DetailSerializer,
    page_serializer,
    paginated,
    validated,
)
from agentloop.presets.actions import start_session_from_preset
from agentloop.runs import actions
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Artifact, Run, RunEvent, RunKind, RunStatus, RunTrigger
from agentloop.teams.access import get_project_for_user, spaces_for_user
from agentloop.traces.queries import InvalidFilter, parse_limit

# -- shapes ---------------------------------------------------------------------------


def event_data(event: RunEvent) -> dict:
    """One event as the API, the stream and the CLI see it (payloads are stored redacted)."""
    return {
        "seq": event.seq,
        "source": event.source,
        "kind": event.kind,
        "payload": event.payload,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }


class EventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    source = serializers.CharField()
    kind = serializers.CharField()
    payload = serializers.JSONField()
    created_at = serializers.DateTimeField()

    def to_representation(self, instance):
        return event_data(instance)


class RefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class SessionSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="code", read_only=True)
    project = serializers.SerializerMethodField()
    space = serializers.SerializerMethodField()
    harness = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    preset_name = serializers.CharField(read_only=True)
    creator = serializers.SerializerMethodField()
    last_seq = serializers.IntegerField(source="next_seq", read_only=True)
    is_terminal = serializers.BooleanField(read_only=True)
    url = serializers.SerializerMethodField()
    cost_usd = serializers.DecimalField(max_digits=12, decimal_places=6, coerce_to_string=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "project",
            "space",
            "kind",
            "trigger",
            "status",
            "is_terminal",
            "exit_reason",
            "prompt",
            "harness",
            "model",
            "preset_id",
            "preset_name",
            "creator",
            "created_at",
            "started_at",
            "finished_at",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "last_seq",
            "url",
        ]
        read_only_fields = fields

    def get_project(self, run) -> RefSerializer:
        return {"id": run.project_id, "name": run.project.name}

    def get_space(self, run) -> RefSerializer:
        return {"id": run.space_id, "name": run.project.space.name}

    def get_harness(self, run) -> str:
        return run.config.get("harness", "")

    def get_model(self, run) -> str:
        return run.config.get("model", "")

    def get_creator(self, run) -> str | None:
        return run.creator.get_username() if run.creator_id else None

    def get_url(self, run) -> str:
        return reverse("studio-session", kwargs={"code": run.code})


class ArtifactSerializer(serializers.ModelSerializer):
    content_url = serializers.SerializerMethodField()
    has_file = serializers.SerializerMethodField()
    reviewer = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = [
            "id",
            "key",
            "kind",
            "name",
            "url",
            "metadata",
            "created_at",
            "review_state",
            "reviewer",
            "reviewed_at",
            "review_comment",
            "has_file",
            "content_url",
        ]
        read_only_fields = fields

    def get_has_file(self, artifact) -> bool:
        return bool(artifact.file)

    def get_reviewer(self, artifact) -> str | None:
        return artifact.reviewer.get_username() if artifact.reviewer_id else None

    def get_content_url(self, artifact) -> str:
        return reverse(
            "api-session-artifact-content",
            kwargs={"code": artifact.run.code, "artifact_id": artifact.pk},
        )


class StartSerializer(serializers.Serializer):
    project = serializers.IntegerField(help_text="The project the session investigates.")
    prompt = serializers.CharField(max_length=actions.MAX_PROMPT_LENGTH, trim_whitespace=True)
    preset = serializers.IntegerField(required=False, help_text="Start from this preset.")
    overrides = serializers.DictField(
        required=False, help_text="With a preset: the settings a session may change (model, …)."
    )
    config = serializers.DictField(
        required=False, help_text="Without a preset: an ad hoc run configuration (harness, …)."
    )

    def validate(self, data):
        if "preset" in data and "config" in data:
            raise serializers.ValidationError({"config": "Give a preset or a config, not both."})
        if "overrides" in data and "preset" not in data:
            raise serializers.ValidationError({"overrides": "Overrides need a preset."})
        return data


class MessageSerializer(serializers.Serializer):
    text = serializers.CharField(trim_whitespace=False, allow_blank=True)


class StopSerializer(serializers.Serializer):
    stopping = serializers.BooleanField()
    session = SessionSerializer()


SessionPage = page_serializer("SessionPage", SessionSerializer)
EventPage = page_serializer("EventPage", EventSerializer)
ArtifactPage = page_serializer("ArtifactPage", ArtifactSerializer)


# -- reads ----------------------------------------------------------------------------


def visible_runs(user) -> QuerySet[Run]:
    """Every run in a space where the user has "view" (as the Swarms pages list them)."""
    return Run.objects.filter(space__in=spaces_for_user(user, "view"))


def _choice(params, name: str, choices) -> str:
    value = (params.get(name) or "").strip()
    if value and value not in choices:
        raise InvalidFilter(f"{name}: unknown value {value!r}; one of {', '.join(choices)}.")
    return value


def _int_param(params, name: str) -> int | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise InvalidFilter(f"{name}: must be a whole number, not {value!r}")
    return int(value)


def filter_sessions(runs: QuerySet[Run], params) -> QuerySet[Run]:
    statuses = [s for s in (params.get("status") or "").split(",") if s]
    unknown = [s for s in statuses if s not in RunStatus.values]
    if unknown:
        raise InvalidFilter(
            f"status: unknown value {unknown[0]!r}; one of {', '.join(RunStatus.values)}."
        )
    if statuses:
        runs = runs.filter(status__in=statuses)
    kind = _choice(params, "kind", RunKind.values)
    if kind:
        runs = runs.filter(kind=kind)
    trigger = _choice(params, "trigger", RunTrigger.values)
    if trigger:
        runs = runs.filter(trigger=trigger)
    project = _int_param(params, "project")
    if project is not None:
        runs = runs.filter(project_id=project)
    preset = _int_param(params, "preset")
    if preset is not None:
        runs = runs.filter(preset_id=preset)
    creator = (params.get("creator") or "").strip()
    if creator:
        runs = runs.filter(creator__username=creator)
    return runs


def after_param(params, header: str | None = None) -> int:
    """`after=` (or `cursor=`, or an SSE Last-Event-ID): the last seq already had."""
    raw = params.get("after") or params.get("cursor") or header or "0"
    try:
        after = int(str(raw).strip())
    except ValueError:
        raise InvalidFilter(f"after: must be a sequence number, not {raw!r}") from None
    if after < 0:
        raise InvalidFilter(f"after: must be 0 or more, not {after}")
    return after


SESSION_FILTERS = [
    OpenApiParameter(
        "status", str, description="Comma separated: " + ", ".join(RunStatus.values) + "."
    ),
    OpenApiParameter("kind", str, enum=RunKind.values),
    OpenApiParameter("trigger", str, enum=RunTrigger.values),
    OpenApiParameter("project", int),
    OpenApiParameter("preset", int, description="Runs started from this preset."),
    OpenApiParameter("creator", str, description="A username."),
]
AFTER = OpenApiParameter(
    "after", int, description="Events after this sequence number (default 0: from the start)."
)


class SessionListView(ApiView):
    @extend_schema(
        operation_id="sessions_list",
        summary="Sessions and automation runs the caller may see, newest first",
        parameters=SESSION_FILTERS + PAGE_PARAMETERS,
        responses=SessionPage,
    )
    def get(self, request):
        runs = filter_sessions(visible_runs(request.user), request.query_params)
        runs = runs.select_related("project__space", "creator")
        return paginated(request, runs, SessionSerializer)

    @extend_schema(
        summary="Start a session (from a preset, or an ad hoc config)",
        request=StartSerializer,
        responses={201: SessionSerializer, 400: DetailSerializer, 403: DetailSerializer},
    )
    def post(self, request):
        body = validated(StartSerializer, request.data)
        project = get_project_for_user(request.user, body["project"], "use")
        if "preset" in body:
            run = start_session_from_preset(
                request.user, project, body["preset"], body["prompt"], body.get("overrides")
            )
        else:
            run = actions.start_session(
                request.user, project, body.get("config") or {}, body["prompt"]
            )
        run = Run.objects.select_related("project__space", "creator").get(pk=run.pk)
        return Response(SessionSerializer(run).data, status=status.HTTP_201_CREATED)


class SessionDetailView(ApiView):
    @extend_schema(summary="One session", responses=SessionSerializer)
    def get(self, request, code):
        run = get_run_for_user(request.user, code, "view")
        return Response(SessionSerializer(run).data)


class SessionEventsView(ApiView):
    @extend_schema(
        summary="A session's events in order, after a sequence number",
        description="`next_cursor` is the last seq of the page when more follow (pass it "
        "as `after`), else null. Payloads are stored with secrets redacted.",
        parameters=[AFTER, OpenApiParameter("limit", int, description="1–1000 (default 100).")],
        responses=EventPage,
    )
    def get(self, request, code):
        run = get_run_for_user(request.user, code, "view")
        after = after_param(request.query_params)
        limit = parse_limit(request.query_params.get("limit"))
        rows = list(RunEvent.objects.filter(run=run, seq__gt=after).order_by("seq")[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return Response(
            {
                "data": [event_data(e) for e in rows],
                "next_cursor": str(rows[-1].seq) if more else None,
            }
        )


def sse_frame(event: dict) -> str:
    return f"id: {event['seq']}\nevent: {event['kind']}\ndata: {json.dumps(event)}\n\n"


def sse_end(run: Run) -> str:
    data = {"status": run.status, "exit_reason": run.exit_reason, "last_seq": run.next_seq}
    return f"event: end\ndata: {json.dumps(data)}\n\n"


class EventStreamRenderer(BaseRenderer):
    """Lets a client that asks for `text/event-stream` past content negotiation."""

    media_type = "text/event-stream"
    format = "sse"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes | str) else json.dumps(data)


class SessionStreamView(ApiView):
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        summary="Live events (Server-Sent Events), resuming after a sequence number",
        description="`text/event-stream`: one SSE event per run event, `id:` its seq, "
        "`event:` its kind, `data:` the event as in the events list. Resume with "
        "`after=` or the `Last-Event-ID` header. When the run has ended and every "
        "event was sent, a last `event: end` carries `{status, exit_reason, last_seq}` "
        "and the stream closes. Served by daphne without a thread per watcher.",
        parameters=[AFTER],
        responses={
            (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description="SSE")
        },
    )
    def get(self, request, code):
        run = get_run_for_user(request.user, code, "view")
        after = after_param(request.query_params, request.headers.get("Last-Event-ID"))
        rows = RunEvent.objects.filter(run=run, seq__gt=after).order_by("seq")
        body = "".join(sse_frame(event_data(e)) for e in rows)
        run.refresh_from_db()
        if run.is_terminal:
            body += sse_end(run)
        return HttpResponse(body, content_type="text/event-stream")


class SessionMessageView(ApiView):
    @extend_schema(
        summary="Send a follow-up message",
        request=MessageSerializer,
        responses={201: EventSerializer, 409: DetailSerializer},
    )
    def post(self, request, code):
        run = get_run_for_user(request.user, code, "use")
        body = validated(MessageSerializer, request.data)
        event = actions.send_followup(request.user, run, body["text"])
        return Response(event_data(event), status=status.HTTP_201_CREATED)


class SessionStopView(ApiView):
    @extend_schema(
        summary="Ask a session to stop",
        description="`stopping` is false when there was nothing to do (it had ended).",
        request=None,
        responses=StopSerializer,
    )
    def post(self, request, code):
        run = get_run_for_user(request.user, code, "use")
        stopping = actions.cancel(request.user, run)
        run = Run.objects.select_related("project__space", "creator").get(pk=run.pk)
        return Response({"stopping": stopping, "session": SessionSerializer(run).data})


class SessionArtifactsView(ApiView):
    @extend_schema(summary="A session's artifacts", responses=ArtifactPage)
    def get(self, request, code):
        run = get_run_for_user(request.user, code, "view")
        rows = Artifact.objects.filter(run=run).select_related("run", "reviewer")
        return paginated(request, rows, ArtifactSerializer)


class SessionArtifactContentView(ApiView):
    @extend_schema(
        summary="An artifact's content (text, or its file)",
        responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request, code, artifact_id):
        run = get_run_for_user(request.user, code, "view")
        artifact = Artifact.objects.filter(run=run, pk=artifact_id).first()
        if artifact is None:
            raise Http404("No such artifact.")
        if artifact.file:
            return FileResponse(artifact.file.open("rb"), as_attachment=False)
        return HttpResponse(artifact.content, content_type="text/plain; charset=utf-8")
