"""A Phoenix-compatible read API: what `arize-phoenix-client` calls for projects,
spans and span annotations, served at Phoenix's own paths (`/v1/…`), so a
Phoenix user points the client at agentloop with a project API key and their
scripts run unchanged (docs/api.md, "Phoenix compatibility").

The shapes are Phoenix's (its OpenAPI `v1` types: Span with `context`,
`span_kind`, `parent_id`; SpanAnnotation with `result`), translated from
agentloop's spans and annotations; access goes through the same helpers as
/api/v1/. Projects are named by Phoenix's global id (base64 of `Project:<pk>`),
by agentloop's numeric id or by name. What is not translated is refused with a
400 that says so, never answered with something else: `get_spans_dataframe`
takes an empty SpanQuery (all columns), not `where`/`select`/`explode`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC

from django.db import transaction
from django.http import Http404, HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from agentloop.api.views import ApiView
from agentloop.teams.access import get_project_for_user, projects_for_user
from agentloop.teams.principals import KeyPrincipal
from agentloop.traces.annotations import (
    MAX_BATCH,
    AnnotationInputSerializer,
    InvalidAnnotation,
    upsert_annotations,
)
from agentloop.traces.models import Span, SpanAnnotation, SpanKind, StatusCode
from agentloop.traces.queries import (
    InvalidFilter,
    SpanFilter,
    filter_spans,
    page_by_time,
    page_spans,
    parse_limit,
    parse_time,
)

# The Phoenix server version we answer as: the client checks it before using a
# filter (trace_id ≥ 13.9, name/kind/status ≥ 13.15, attributes ≥ 14.9).
PHOENIX_VERSION = "14.9.0"
MAX_DATAFRAME_ROWS = 10_000


def global_id(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def _pk_of_global_id(value: str, type_name: str) -> int | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    kind, _, pk = decoded.partition(":")
    return int(pk) if kind == type_name and pk.isdigit() else None


def project_for(user, identifier: str, need: str = "view"):
    """The project a Phoenix identifier names (global id, numeric id or name), or 404."""
    pk = _pk_of_global_id(identifier, "Project")
    if pk is None and identifier.isdigit():
        pk = int(identifier)
    if pk is not None:
        return get_project_for_user(user, pk, need)
    own = user.project if isinstance(user, KeyPrincipal) else None  # loaded by the key check
    if own is not None and own.name == identifier:
        return get_project_for_user(user, own.pk, need)
    named = list(projects_for_user(user, need).filter(name=identifier)[:2])
    if not named:
        raise Http404("No such project.")
    if len(named) > 1:
        raise InvalidFilter(
            f"project {identifier!r}: several of your projects have this name; use its id."
        )
    return get_project_for_user(user, named[0].pk, need)


def project_data(project) -> dict:
    return {
        "id": global_id("Project", project.pk),
        "name": project.name,
        "description": project.description,
    }


def _iso(moment) -> str:
    return moment.astimezone(UTC).isoformat()


def span_data(span: Span) -> dict:
    data = {
        "id": global_id("Span", span.pk),
        "name": span.name,
        "context": {"trace_id": span.trace_id, "span_id": span.span_id},
        "span_kind": span.kind,
        "parent_id": span.parent_span_id or None,
        "start_time": _iso(span.start_time),
        "end_time": _iso(span.end_time),
        "status_code": span.status_code,
        "status_message": span.status_message,
        "attributes": span.attributes,
        "events": [
            {
                "name": e.get("name", ""),
                "timestamp": e.get("time", ""),
                "attributes": e.get("attributes", {}),
            }
            for e in span.events
        ],
    }
    if data["parent_id"] is None:
        del data["parent_id"]
    return data


def annotation_data(annotation: SpanAnnotation) -> dict:
    result = {}
    if annotation.label:
        result["label"] = annotation.label
    if annotation.score is not None:
        result["score"] = annotation.score
    if annotation.explanation:
        result["explanation"] = annotation.explanation
    return {
        "id": global_id("SpanAnnotation", annotation.pk),
        "span_id": annotation.span.span_id,
        "name": annotation.name,
        "annotator_kind": annotation.annotator_kind,
        "result": result,
        "metadata": annotation.metadata,
        "identifier": annotation.identifier,
        "created_at": _iso(annotation.created_at),
        "updated_at": _iso(annotation.updated_at),
        "source": "APP" if annotation.created_by_id else "API",
        "user_id": str(annotation.created_by_id) if annotation.created_by_id else None,
    }


def _choices(params, name: str, choices) -> list[str]:
    values = params.getlist(name)
    for value in values:
        if value not in choices:
            raise InvalidFilter(f"{name}: must be one of {', '.join(choices)}, not {value!r}")
    return values


def _attribute_filters(params) -> list[tuple[str, str]]:
    # The client sends `key:value`, the value JSON-ish as agentloop's attr= filter reads it.
    attrs = []
    for raw in params.getlist("attribute"):
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise InvalidFilter(f"attribute: expected key:value, not {raw!r}")
        attrs.append((key, value))
    return attrs


class PhoenixVersionView(ApiView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(exclude=True)
    def get(self, request):
        return HttpResponse(PHOENIX_VERSION, content_type="text/plain")


class PhoenixProjectListView(ApiView):
    @extend_schema(exclude=True)
    def get(self, request):
        projects = projects_for_user(request.user, "view").order_by("pk")
        cursor = request.query_params.get("cursor")
        if cursor:
            pk = _pk_of_global_id(cursor, "Project")
            if pk is None:
                raise InvalidFilter("cursor: not a cursor this API gave")
            projects = projects.filter(pk__gte=pk)
        limit = parse_limit(request.query_params.get("limit"))
        rows = list(projects[: limit + 1])
        next_cursor = global_id("Project", rows[limit].pk) if len(rows) > limit else None
        return Response(
            {"data": [project_data(p) for p in rows[:limit]], "next_cursor": next_cursor}
        )


class PhoenixProjectView(ApiView):
    @extend_schema(exclude=True)
    def get(self, request, identifier: str):
        return Response({"data": project_data(project_for(request.user, identifier))})


class PhoenixSpanListView(ApiView):
    @extend_schema(exclude=True)
    def get(self, request, identifier: str):
        project = project_for(request.user, identifier)
        params = request.query_params
        span_filter = SpanFilter(attrs=_attribute_filters(params))
        if params.get("start_time"):
            span_filter.start = parse_time(params["start_time"], "start_time")
        if params.get("end_time"):
            span_filter.end = parse_time(params["end_time"], "end_time")
        span_filter.trace_ids = params.getlist("trace_id")
        spans = filter_spans(project, span_filter)
        if span_ids := params.getlist("span_id"):
            spans = spans.filter(span_id__in=span_ids)
        if "parent_id" in params:
            parent = params["parent_id"]
            spans = spans.filter(parent_span_id="" if parent in ("", "null") else parent)
        if names := params.getlist("name"):
            spans = spans.filter(name__in=names)
        if kinds := _choices(params, "span_kind", SpanKind.values):
            spans = spans.filter(kind__in=kinds)
        if statuses := _choices(params, "status_code", StatusCode.values):
            spans = spans.filter(status_code__in=statuses)
        rows, next_cursor = page_spans(
            spans, params.get("cursor") or None, parse_limit(params.get("limit"))
        )
        return Response({"data": [span_data(s) for s in rows], "next_cursor": next_cursor})


class PhoenixSpanAnnotationListView(ApiView):
    @extend_schema(exclude=True)
    def get(self, request, identifier: str):
        project = project_for(request.user, identifier)
        params = request.query_params
        span_ids = params.getlist("span_ids")
        if not span_ids:
            raise InvalidFilter("span_ids: give at least one span id")
        annotations = SpanAnnotation.objects.filter(
            project=project, span__span_id__in=span_ids
        ).select_related("span")
        if include := params.getlist("include_annotation_names"):
            annotations = annotations.filter(name__in=include)
        if exclude := params.getlist("exclude_annotation_names"):
            annotations = annotations.exclude(name__in=exclude)
        rows, next_cursor = page_by_time(
            annotations,
            params.get("cursor") or None,
            parse_limit(params.get("limit")),
            "created_at",
        )
        return Response({"data": [annotation_data(a) for a in rows], "next_cursor": next_cursor})


class PhoenixSpanAnnotationWriteView(ApiView):
    @extend_schema(exclude=True)
    def post(self, request):
        body = request.data
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise InvalidAnnotation("data: must be a non-empty list of span annotations.")
        if len(items) > MAX_BATCH:
            raise InvalidAnnotation(f"data: at most {MAX_BATCH} annotations at once.")
        translated = [_annotation_item(index, item) for index, item in enumerate(items)]
        # Phoenix names no project here: each span is found among the projects
        # the caller may annotate, and must be in exactly one of them.
        wanted = {item["span_id"] for item in translated}
        homes: dict[str, set[int]] = {}
        for span_id, project_id in Span.objects.filter(
            span_id__in=wanted, project__in=projects_for_user(request.user, "use")
        ).values_list("span_id", "project_id"):
            homes.setdefault(span_id, set()).add(project_id)
        by_project: dict[int, list[dict]] = {}
        for index, item in enumerate(translated):
            found = homes.get(item["span_id"], set())
            if len(found) != 1:
                why = "no such span" if not found else "a span id of several projects"
                raise InvalidAnnotation(f"data[{index}].span_id {item['span_id']}: {why}.")
            (project_id,) = found
            by_project.setdefault(project_id, []).append(item)
        principal = request.user
        if isinstance(principal, KeyPrincipal):
            created_by, provenance = None, {"key": principal.label}
        else:
            created_by, provenance = principal, {"user": principal.get_username()}
        inserted = []
        with transaction.atomic():
            for project_id, project_items in by_project.items():
                project = get_project_for_user(request.user, project_id, "use")
                results = upsert_annotations(
                    project, project_items, created_by=created_by, provenance=provenance
                )
                inserted += [{"id": global_id("SpanAnnotation", a.pk)} for a, _ in results]
        return Response({"data": inserted})


def _annotation_item(index: int, item) -> dict:
    """A Phoenix SpanAnnotationData as the item upsert_annotations takes."""
    where = f"data[{index}]"
    if not isinstance(item, dict):
        raise InvalidAnnotation(f"{where}: must be an object.")
    result = item.get("result") or {}
    if not isinstance(result, dict):
        raise InvalidAnnotation(f"{where}.result: must be an object.")
    translated = {
        "span_id": item.get("span_id"),
        "name": item.get("name"),
        "annotator_kind": item.get("annotator_kind"),
        "identifier": item.get("identifier") or "",
        "metadata": item.get("metadata") or {},
        "label": result.get("label") or "",
        "score": result.get("score"),
        "explanation": result.get("explanation") or "",
    }
    serializer = AnnotationInputSerializer(
        data={k: v for k, v in translated.items() if v is not None}
    )
    if not serializer.is_valid():
        field, errors = next(iter(serializer.errors.items()))
        message = errors[0] if isinstance(errors, list) else errors
        name = "" if field == "non_field_errors" else f".{field}"
        raise InvalidAnnotation(f"{where}{name}: {message}")
    return dict(serializer.validated_data)


class PhoenixSpanQueryView(ApiView):
    """POST /v1/spans: `get_spans_dataframe`, answered as Phoenix does: a
    multipart/mixed body with one pandas table-schema JSON part per query."""

    @extend_schema(exclude=True)
    def post(self, request):
        name = request.query_params.get("project_name") or request.query_params.get("project-name")
        if not name:
            raise InvalidFilter("project_name: name the project to query")
        project = project_for(request.user, name)
        body = request.data if isinstance(request.data, dict) else {}
        queries = body.get("queries") or [{}]
        if len(queries) != 1 or not isinstance(queries[0], dict):
            raise InvalidFilter("queries: one query at a time")
        unsupported = sorted(set(queries[0]) - {"index"})
        if unsupported:
            raise InvalidFilter(
                f"queries: {', '.join(unsupported)} not supported here; send an empty SpanQuery "
                "and filter the dataframe, or use GET /v1/projects/<id>/spans"
            )
        span_filter = SpanFilter()
        if body.get("start_time"):
            span_filter.start = parse_time(body["start_time"], "start_time")
        if body.get("end_time"):
            span_filter.end = parse_time(body["end_time"], "end_time")
        if body.get("root_spans_only"):
            span_filter.root = True
        limit = body.get("limit", 1000)
        if (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= MAX_DATAFRAME_ROWS
        ):
            raise InvalidFilter(f"limit: must be between 1 and {MAX_DATAFRAME_ROWS}")
        spans = list(filter_spans(project, span_filter).order_by("-start_time", "-id")[:limit])
        boundary = uuid.uuid4().hex
        part = json.dumps(_table(spans))
        content = (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{part}\r\n--{boundary}--\r\n"
        )
        return HttpResponse(content, content_type=f"multipart/mixed; boundary={boundary}")


def _table(spans: list[Span]) -> dict:
    """pandas' table-schema JSON (`to_json(orient="table")`) of Phoenix's span
    columns, indexed by context.span_id; column names carry Phoenix's `N_` prefix,
    which the client strips."""
    columns = [
        "name",
        "span_kind",
        "parent_id",
        "start_time",
        "end_time",
        "status_code",
        "status_message",
        "events",
        "context.trace_id",
    ]
    attribute_keys = sorted({key for span in spans for key in span.attributes})
    rows = []
    for span in spans:
        row = {
            "0_context.span_id": span.span_id,
            "1_name": span.name,
            "1_span_kind": span.kind,
            "1_parent_id": span.parent_span_id or None,
            "1_start_time": _iso(span.start_time),
            "1_end_time": _iso(span.end_time),
            "1_status_code": span.status_code,
            "1_status_message": span.status_message,
            "1_events": span.events,
            "1_context.trace_id": span.trace_id,
        }
        for key in attribute_keys:
            row[f"1_attributes.{key}"] = span.attributes.get(key)
        rows.append(row)
    fields = [{"name": "0_context.span_id", "type": "string"}]
    for column in columns:
        kind = "datetime" if column in ("start_time", "end_time") else "string"
        field = {"name": f"1_{column}", "type": kind}
        if kind == "datetime":
            field["tz"] = "UTC"
        fields.append(field)
    fields += [{"name": f"1_attributes.{key}", "type": "string"} for key in attribute_keys]
    return {
        "schema": {
            "fields": fields,
            "primaryKey": ["0_context.span_id"],
            "pandas_version": "1.4.0",
        },
        "data": rows,
    }
