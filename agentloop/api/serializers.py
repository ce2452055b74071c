"""What the REST API reads and writes (shapes documented in docs/api.md)."""

from __future__ import annotations

from rest_framework import serializers

from agentloop.teams.models import Project, Space
from agentloop.traces.annotations import AnnotationInputSerializer  # noqa: F401 (api schema)
from agentloop.traces.models import Span, SpanAnnotation


class SpaceRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Space
        fields = ["id", "name"]


class ProjectSerializer(serializers.ModelSerializer):
    space = SpaceRefSerializer(read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "space"]


class AnnotationSerializer(serializers.ModelSerializer):
    span_id = serializers.CharField(source="span.span_id", read_only=True)
    trace_id = serializers.CharField(source="span.trace_id", read_only=True)
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = SpanAnnotation
        fields = [
            "id",
            "span_id",
            "trace_id",
            "name",
            "label",
            "score",
            "explanation",
            "annotator_kind",
            "identifier",
            "metadata",
            "provenance",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_created_by(self, annotation) -> str | None:
        return annotation.created_by.username if annotation.created_by_id else None


class SpanAnnotationBriefSerializer(serializers.ModelSerializer):
    """An annotation as listed inside a span (the span is the parent)."""

    class Meta:
        model = SpanAnnotation
        fields = ["name", "label", "score", "explanation", "annotator_kind", "identifier"]
        read_only_fields = fields


class SpanSerializer(serializers.ModelSerializer):
    annotations = SpanAnnotationBriefSerializer(many=True, read_only=True)

    class Meta:
        model = Span
        fields = [
            "trace_id",
            "span_id",
            "parent_span_id",
            "name",
            "kind",
            "status_code",
            "status_message",
            "start_time",
            "end_time",
            "duration_ms",
            "attributes",
            "events",
            "model_name",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "session_id",
            "user_id",
            "annotations",
        ]
        read_only_fields = fields


class SpanPageSerializer(serializers.Serializer):
    data = SpanSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class AnnotationPageSerializer(serializers.Serializer):
    data = AnnotationSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class ProjectListSerializer(serializers.Serializer):
    data = ProjectSerializer(many=True)


def serialize_tree_spans(rows: list[dict]) -> dict[int, dict]:
    """The spans of trace_tree's rows as JSON, by primary key, for tree_node_data.

    One serializer for all of them: a ModelSerializer per span builds its
    fields anew each time, which was two thirds of a trace lookup's time."""
    spans = [row["span"] for row in rows]
    serialized = SpanSerializer(spans, many=True).data
    return {span.pk: data for span, data in zip(spans, serialized, strict=True)}


def tree_node_data(node: dict, spans: dict[int, dict]) -> dict:
    """A trace_tree node as JSON: the span (from serialize_tree_spans) plus its
    place in the waterfall."""
    data = dict(spans[node["span"].pk])
    data["offset_ms"] = node["offset_ms"]
    data["depth"] = node["depth"]
    data["children"] = [tree_node_data(child, spans) for child in node["children"]]
    return data


class TraceNodeSerializer(SpanSerializer):
    """For the schema only: a span with its place in the tree."""

    offset_ms = serializers.FloatField(help_text="Start, in ms after the trace's first span.")
    depth = serializers.IntegerField()
    children = serializers.ListField(child=serializers.DictField(), help_text="Nodes, by start.")

    class Meta(SpanSerializer.Meta):
        fields = SpanSerializer.Meta.fields + ["offset_ms", "depth", "children"]


class TraceSerializer(serializers.Serializer):
    trace_id = serializers.CharField()
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    duration_ms = serializers.FloatField()
    spans = serializers.IntegerField(help_text="How many spans the trace has.")
    root = TraceNodeSerializer(allow_null=True, help_text="The root span; null if not ingested.")
    orphans = TraceNodeSerializer(
        many=True, help_text="Spans whose parent is not in the trace, with their subtrees."
    )


class AnnotationBatchInputSerializer(serializers.Serializer):
    """For the schema: the many-at-once form of an annotation write."""

    data = AnnotationInputSerializer(many=True)


# -- analytics (shapes of traces/analytics.aggregate; docs/api.md) -----------------


class AnalyticsMetricsSerializer(serializers.Serializer):
    """The metrics of one cell: the window, a group, a bucket or a baseline."""

    spans = serializers.IntegerField()
    traces = serializers.IntegerField(help_text="Distinct trace ids.")
    errors = serializers.IntegerField(help_text="Spans with status_code ERROR.")
    error_rate = serializers.FloatField(allow_null=True, help_text="errors / spans; null: no spans")
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(
        allow_null=True, help_text="Within `percentile_error` of the exact nearest-rank value."
    )
    max_ms = serializers.FloatField(allow_null=True, help_text="Exact.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.FloatField(
        allow_null=True, help_text="Sum of `llm.cost.total` over LLM spans; null: none had one."
    )


class AnalyticsBucketSerializer(AnalyticsMetricsSerializer):
    start = serializers.DateTimeField(help_text="The bucket's start; it lasts bucket_seconds.")


class AnalyticsComparisonSerializer(serializers.Serializer):
    span_rate_ratio = serializers.FloatField(
        allow_null=True, help_text="Spans per second here / in the baseline."
    )
    error_rate_ratio = serializers.FloatField(allow_null=True)
    error_rate_change = serializers.FloatField(allow_null=True, help_text="Absolute difference.")
    p50_ratio = serializers.FloatField(allow_null=True)
    p95_ratio = serializers.FloatField(allow_null=True)
    p99_ratio = serializers.FloatField(allow_null=True)


class AnalyticsCellSerializer(AnalyticsMetricsSerializer):
    baseline = AnalyticsMetricsSerializer(required=False, help_text="With a baseline only.")
    vs_baseline = AnalyticsComparisonSerializer(required=False, help_text="With a baseline only.")
    buckets = AnalyticsBucketSerializer(
        many=True, required=False, help_text="With bucket only: every bucket, empty ones too."
    )


class AnalyticsGroupSerializer(AnalyticsCellSerializer):
    key = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        allow_null=True,
        help_text='{dimension: value}, e.g. {"name": "chat", "attr:region": "eu"}; '
        "null value: the span has no such attribute / exception.",
    )
    share_of_spans = serializers.FloatField(allow_null=True)
    share_of_errors = serializers.FloatField(allow_null=True)
    rest_error_rate = serializers.FloatField(
        allow_null=True, help_text="The error rate of the window's other spans."
    )
    error_rate_lift = serializers.FloatField(
        allow_null=True, help_text="error_rate / rest_error_rate; null when the rest has none."
    )


class AnalyticsOtherSerializer(AnalyticsGroupSerializer):
    groups = serializers.IntegerField(help_text="How many groups `other` adds up.")


class AnalyticsWindowSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class AnalyticsSerializer(serializers.Serializer):
    window = AnalyticsWindowSerializer()
    baseline_window = AnalyticsWindowSerializer(allow_null=True)
    group_by = serializers.ListField(child=serializers.CharField())
    bucket_seconds = serializers.IntegerField(allow_null=True)
    percentile_error = serializers.FloatField(
        help_text="Relative error bound of p50/p95/p99 (0.04: within 4 %)."
    )
    total = AnalyticsCellSerializer()
    groups = AnalyticsGroupSerializer(many=True, help_text="The top `limit` groups by spans.")
    other = AnalyticsOtherSerializer(allow_null=True, help_text="Every other group, added up.")
    group_count = serializers.IntegerField(help_text="Distinct groups in the window.")
    from_rollups = serializers.BooleanField(
        help_text="Whole intervals were read from the span rollups: `traces` may count a "
        "trace once per interval it has spans in (spans and the other metrics are exact)."
    )
