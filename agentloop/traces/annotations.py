"""Writing eval labels: validate every item, then upsert them all or none.

`AnnotationInputSerializer` is the one schema of an annotation written from
outside (the REST API, eval labels a person approves in review): types,
annotator kind, label-or-score. `upsert_annotations` takes items it checked
and adds what needs the database: each span must exist in the project. It is
the one place annotations are written.
"""

from __future__ import annotations

import math

from django.db import transaction
from django.db.models import Q
from rest_framework import serializers

from agentloop.traces.models import AnnotatorKind, Span, SpanAnnotation
from agentloop.traces.queries import InvalidFilter

MAX_BATCH = 1000


class StrictFloatField(serializers.FloatField):
    """A JSON number: no numeric strings, no booleans, nothing infinite."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError("must be a number.")
        if not math.isfinite(data):
            raise serializers.ValidationError("must be a finite number.")
        return float(data)


class AnnotationInputSerializer(serializers.Serializer):
    span_id = serializers.CharField(max_length=16)
    trace_id = serializers.CharField(max_length=32, required=False, allow_blank=True)
    name = serializers.CharField(max_length=200)
    label = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    score = StrictFloatField(required=False, allow_null=True, default=None)
    explanation = serializers.CharField(required=False, allow_blank=True, default="")
    annotator_kind = serializers.ChoiceField(choices=AnnotatorKind.choices)
    identifier = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    metadata = serializers.DictField(required=False, default=dict)

    def validate(self, attrs):
        if not attrs.get("label") and attrs.get("score") is None:
            raise serializers.ValidationError("give a label or a score (or both).")
        return attrs


class InvalidAnnotation(ValueError):
    pass


def _find_span(project, span_id: str, trace_id: str | None) -> Span:
    spans = Span.objects.filter(project=project, span_id=span_id)
    if trace_id:
        spans = spans.filter(trace_id=trace_id)
    found = list(spans[:2])
    if not found:
        where = f" in trace {trace_id}" if trace_id else ""
        raise InvalidAnnotation(f"span_id {span_id}: no such span{where} in this project.")
    if len(found) > 1:
        raise InvalidAnnotation(
            f"span_id {span_id}: matches spans of several traces; give its trace_id."
        )
    return found[0]


@transaction.atomic
def upsert_annotations(
    project, items: list[dict], *, created_by=None, provenance: dict | None = None
) -> list[tuple[SpanAnnotation, bool]]:
    """Create or update one annotation per item, keyed on (span, name, identifier).

    Returns (annotation, created) pairs in the order of `items`. Raises
    InvalidAnnotation (and stores nothing) if any item names a span that is
    not in the project.
    """
    if len(items) > MAX_BATCH:
        raise InvalidAnnotation(f"data: at most {MAX_BATCH} annotations at once.")
    # Look every span up before writing any, so a bad item fails the batch
    # without relying on rollback alone.
    spans = [_find_span(project, item["span_id"], item.get("trace_id")) for item in items]
    results = []
    for item, span in zip(items, spans, strict=True):
        defaults = {
            "project": project,
            "label": item.get("label", ""),
            "score": item.get("score"),
            "explanation": item.get("explanation", ""),
            "annotator_kind": item["annotator_kind"],
            "metadata": item.get("metadata") or {},
            "provenance": provenance or {},
            "created_by": created_by,
        }
        annotation, created = SpanAnnotation.objects.update_or_create(
            span=span,
            name=item["name"],
            identifier=item.get("identifier", ""),
            defaults=defaults,
        )
        results.append((annotation, created))
    return results


def annotations_query(project, params) -> Q:
    """The annotation list filters (`name`, `label`, `span_id`, `trace_id`,
    `annotator_kind`) as a Q; blank values are ignored."""
    q = Q(project=project)
    for param, lookup in (
        ("name", "name"),
        ("label", "label"),
        ("span_id", "span__span_id"),
        ("trace_id", "span__trace_id"),
        ("annotator_kind", "annotator_kind"),
    ):
        value = (params.get(param) or "").strip()
        if param == "annotator_kind" and value:
            value = value.upper()
            if value not in AnnotatorKind.values:
                choices = ", ".join(AnnotatorKind.values)
                raise InvalidFilter(f"annotator_kind: must be one of {choices}, not {value!r}")
        if value:
            q &= Q(**{lookup: value})
    return q
