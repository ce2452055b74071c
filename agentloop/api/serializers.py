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


def tree_node_data(node: dict) -> dict:
    """A trace_tree node as JSON: the span plus its place in the waterfall."""
    data = SpanSerializer(node["span"]).data
    data["offset_ms"] = node["offset_ms"]
    data["depth"] = node["depth"]
    data["children"] = [tree_node_data(child) for child in node["children"]]
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
