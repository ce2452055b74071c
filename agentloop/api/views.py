"""REST API v1: projects, spans, traces and annotations (docs/api.md).

Every route fetches its project through `get_project_for_user`, so people,
project API keys and run service keys are checked by the same code: 404 for a
project the caller may not see, 403 for a role or key that may not do this.
"""

from __future__ import annotations

from django.db.models import prefetch_related_objects
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from agentloop.api import schema as _schema  # noqa: F401  (registers auth schemes)
from agentloop.api import serializers as s
from agentloop.api.common import ApiView
from agentloop.teams.access import get_project_for_user, projects_for_user
from agentloop.teams.principals import KeyPrincipal
from agentloop.traces.analytics import aggregate, parse_analytics_query
from agentloop.traces.annotations import (
    MAX_BATCH,
    InvalidAnnotation,
    annotations_query,
    upsert_annotations,
)
from agentloop.traces.models import SpanAnnotation, SpanKind, StatusCode
from agentloop.traces.queries import (
    filter_spans,
    page_by_time,
    page_spans,
    parse_limit,
    parse_span_filter,
    trace_tree,
)


def _first_error(errors, prefix: str = "") -> str:
    """DRF's nested validation errors as one line naming the field, e.g.
    "data[2].score: must be a number."."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            if key == "non_field_errors":
                name = prefix
            elif isinstance(key, int) or str(key).isdigit():  # an item of a list
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else key
            return _first_error(value, name)
    if isinstance(errors, list):
        for index, value in enumerate(errors):
            if isinstance(value, dict | list) and value:
                return _first_error(value, f"{prefix}[{index}]")
            if value and not isinstance(value, dict | list):
                return f"{prefix}: {value}" if prefix else str(value)
    return f"{prefix}: {errors}" if prefix else str(errors)


def _pagination_params(request) -> tuple[str | None, int]:
    return request.query_params.get("cursor") or None, parse_limit(
        request.query_params.get("limit")
    )


PAGE_PARAMETERS = [
    OpenApiParameter("limit", int, description="Rows per page, 1–1000 (default 100)."),
    OpenApiParameter("cursor", str, description="`next_cursor` of the previous page."),
]
SPAN_FILTER_PARAMETERS = [
    OpenApiParameter(
        "start", OpenApiTypes.DATETIME, description="Spans that started at or after (ISO 8601)."
    ),
    OpenApiParameter(
        "end", OpenApiTypes.DATETIME, description="Spans that started before (ISO 8601)."
    ),
    OpenApiParameter("kind", str, enum=SpanKind.values),
    OpenApiParameter("status", str, enum=StatusCode.values),
    OpenApiParameter("name", str, description="Exact span name."),
    OpenApiParameter("trace_id", str),
    OpenApiParameter("root", bool, description="true: only root spans; false: only children."),
    OpenApiParameter(
        "annotation",
        str,
        description="Spans with an annotation `<name>`, or `<name>:<label>`.",
    ),
    OpenApiParameter(
        "attr",
        str,
        many=True,
        explode=True,
        description="`<key>=<value>`, repeatable (all must match). Dotted keys such as "
        "`llm.model_name` match flat or nested attributes; `42`/`true` also match "
        "the JSON number/boolean.",
    ),
    OpenApiParameter("session_id", str),
    OpenApiParameter("user_id", str),
    OpenApiParameter("min_duration_ms", float, description="Spans that took at least this long."),
    OpenApiParameter("max_duration_ms", float, description="Spans that took at most this long."),
    OpenApiParameter(
        "exception_type",
        str,
        description="Spans with an `exception` event of this `exception.type` (exact).",
    ),
]
ANALYTICS_PARAMETERS = [
    OpenApiParameter(
        "group_by",
        str,
        many=True,
        explode=True,
        description="Up to two, repeatable: name, kind, status, model_name, session_id, "
        "user_id, exception.type, or attr:<key> (also attributes.<key>; flat or nested).",
    ),
    OpenApiParameter("limit", int, description="Top groups by span count, 1–100 (default 20)."),
    OpenApiParameter(
        "bucket",
        str,
        description="Time buckets from the window's start, e.g. 5m, 1h, 1d (at most 500).",
    ),
    OpenApiParameter(
        "baseline",
        str,
        description="`previous` (the window of the same length before) or a shift such as "
        "`7d` (the same window 7 days earlier).",
    ),
    OpenApiParameter("baseline_start", OpenApiTypes.DATETIME),
    OpenApiParameter("baseline_end", OpenApiTypes.DATETIME),
]


class ProjectListView(ApiView):
    @extend_schema(
        summary="Projects the caller may see",
        responses=s.ProjectListSerializer,
    )
    def get(self, request):
        projects = projects_for_user(request.user, "view").select_related("space")
        return Response({"data": s.ProjectSerializer(projects, many=True).data})


class SpanListView(ApiView):
    @extend_schema(
        summary="Spans, newest first",
        parameters=SPAN_FILTER_PARAMETERS + PAGE_PARAMETERS,
        responses=s.SpanPageSerializer,
    )
    def get(self, request, project_id: int):
        project = get_project_for_user(request.user, project_id, "view")
        span_filter = parse_span_filter(request.query_params)
        cursor, limit = _pagination_params(request)
        rows, next_cursor = page_spans(filter_spans(project, span_filter), cursor, limit)
        prefetch_related_objects(rows, "annotations")
        return Response(
            {"data": s.SpanSerializer(rows, many=True).data, "next_cursor": next_cursor}
        )


class AnalyticsView(ApiView):
    @extend_schema(
        summary="Span metrics per group, time bucket and baseline",
        description="Over the spans that started in [start, end) (default: the last 24 hours) "
        "and match the span filters: spans, traces, errors, error rate, duration "
        "p50/p95/p99, tokens and cost, per group (top `limit` plus `other`), per bucket, "
        "and against a baseline window. docs/api.md has the details.",
        parameters=[p for p in SPAN_FILTER_PARAMETERS if p.name not in ("trace_id",)]
        + ANALYTICS_PARAMETERS,
        responses=s.AnalyticsSerializer,
    )
    def get(self, request, project_id: int):
        project = get_project_for_user(request.user, project_id, "view")
        query = parse_analytics_query(request.query_params)
        return Response(aggregate(project, query))


class TraceDetailView(ApiView):
    @extend_schema(
        summary="One trace as a tree of spans",
        responses=s.TraceSerializer,
    )
    def get(self, request, project_id: int, trace_id: str):
        project = get_project_for_user(request.user, project_id, "view")
        tree = trace_tree(project, trace_id)
        if tree is None:
            raise Http404("No such trace.")
        true_roots = [n for n in tree["roots"] if not n["is_orphan"]]
        orphans = [n for n in tree["roots"] if n["is_orphan"]]
        # A trace normally has one root; should a second one arrive, list it
        # with the orphans rather than drop it.
        root, extra_roots = (true_roots[0], true_roots[1:]) if true_roots else (None, [])
        spans = s.serialize_tree_spans(tree["rows"])
        return Response(
            {
                "trace_id": tree["trace_id"],
                "start_time": tree["start_time"],
                "end_time": tree["end_time"],
                "duration_ms": tree["duration_ms"],
                "spans": tree["span_count"],
                "root": s.tree_node_data(root, spans) if root else None,
                "orphans": [s.tree_node_data(node, spans) for node in extra_roots + orphans],
            }
        )


class AnnotationListView(ApiView):
    @extend_schema(
        summary="Annotations, newest first",
        parameters=[
            OpenApiParameter("name", str),
            OpenApiParameter("label", str),
            OpenApiParameter("span_id", str),
            OpenApiParameter("trace_id", str),
            OpenApiParameter("annotator_kind", str, enum=["HUMAN", "LLM", "CODE", "AGENT"]),
            *PAGE_PARAMETERS,
        ],
        responses=s.AnnotationPageSerializer,
    )
    def get(self, request, project_id: int):
        project = get_project_for_user(request.user, project_id, "view")
        query = annotations_query(project, request.query_params)
        cursor, limit = _pagination_params(request)
        annotations = SpanAnnotation.objects.filter(query).select_related("span", "created_by")
        rows, next_cursor = page_by_time(annotations, cursor, limit, "created_at")
        return Response(
            {"data": s.AnnotationSerializer(rows, many=True).data, "next_cursor": next_cursor}
        )

    @extend_schema(
        summary="Create or update annotations",
        description='One annotation, or `{"data": [...]}` for many (at most 1000). '
        "Upserts on (span, name, identifier). All or nothing: if any item is "
        "invalid, nothing is stored and the answer names the item.",
        request=PolymorphicProxySerializer(
            component_name="AnnotationWrite",
            serializers=[s.AnnotationInputSerializer, s.AnnotationBatchInputSerializer],
            resource_type_field_name=None,
        ),
        responses={200: s.AnnotationPageSerializer, 201: s.AnnotationPageSerializer},
        examples=[
            OpenApiExample(
                "one",
                value={
                    "span_id": "a1b2c3d4e5f60718",
                    "name": "correctness",
                    "label": "incorrect",
                    "score": 0,
                    "annotator_kind": "HUMAN",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request, project_id: int):
        project = get_project_for_user(request.user, project_id, "use")
        items = self._validated_items(request.data)
        principal = request.user
        if isinstance(principal, KeyPrincipal):
            created_by, provenance = None, {"key": principal.label}
        else:
            created_by, provenance = principal, {"user": principal.get_username()}
        results = upsert_annotations(project, items, created_by=created_by, provenance=provenance)
        annotations = [annotation for annotation, _ in results]
        any_created = any(created for _, created in results)
        return Response(
            {"data": s.AnnotationSerializer(annotations, many=True).data, "next_cursor": None},
            status=status.HTTP_201_CREATED if any_created else status.HTTP_200_OK,
        )

    def _validated_items(self, body) -> list[dict]:
        if isinstance(body, dict) and "data" in body:
            batch = body["data"]
            if not isinstance(batch, list) or not batch:
                raise InvalidAnnotation("data: must be a non-empty list of annotations.")
            if len(batch) > MAX_BATCH:
                raise InvalidAnnotation(f"data: at most {MAX_BATCH} annotations at once.")
            serializer = s.AnnotationInputSerializer(data=batch, many=True)
            prefix = "data"
        elif isinstance(body, dict):
            serializer = s.AnnotationInputSerializer(data=body)
            prefix = ""
        else:
            raise InvalidAnnotation('expected an annotation object or {"data": [...]}.')
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError as error:
            raise InvalidAnnotation(_first_error(error.detail, prefix)) from None
        data = serializer.validated_data
        return list(data) if isinstance(data, list) else [data]
