"""Evaluations as data: an app's own judges, sent as OpenInference evaluation spans,
become annotations on the span they judge.

An LLM judge (or a code check) that runs online records its verdict as a span of
kind EVALUATOR whose attributes carry the verdict under OpenInference's
`evaluation.*` keys or the shorter `eval.*` ones:

    evaluation.name | eval.name            the eval, e.g. "hallucination"
    evaluation.label | eval.label          e.g. "hallucinated"
    evaluation.score | eval.score          a number
    evaluation.explanation | eval.explanation
    evaluation.annotator_kind              LLM (default), CODE or HUMAN
    eval.target.span_id / eval.target.trace_id (or evaluation.target.*)
                                           the judged span; without them, the
                                           EVALUATOR span's parent

Ingest keeps the EVALUATOR span as it is (nothing sent is lost) and, in the same
transaction, upserts a SpanAnnotation on the judged span — keyed by (span, eval
name, identifier ""), so a judge that runs again replaces its verdict — with
provenance naming the evaluation span. Annotations written through the API and
by review keep their identifiers and are untouched. A verdict whose judged span
has not arrived yet is left on its EVALUATOR span (the span API shows it).
"""

from __future__ import annotations

import json
import math

from agentloop.traces.models import AnnotatorKind, Span, SpanAnnotation, SpanKind
from agentloop.traces.otlp import SPAN_ROW_FIELDS

_KIND = SPAN_ROW_FIELDS.index("kind")
_ATTRIBUTES = SPAN_ROW_FIELDS.index("attributes")
_TRACE = SPAN_ROW_FIELDS.index("trace_id")
_SPAN = SPAN_ROW_FIELDS.index("span_id")
_PARENT = SPAN_ROW_FIELDS.index("parent_span_id")
_NAME = SPAN_ROW_FIELDS.index("name")
PREFIXES = ("evaluation.", "eval.")
MAX_TEXT = 10_000
EVALUATOR = SpanKind.EVALUATOR.value  # a plain str: compared once per ingested span


def _first(attributes: dict, *keys):
    for key in keys:
        for prefix in PREFIXES:
            value = attributes.get(prefix + key)
            if value not in (None, ""):
                return value
    return None


def verdict(row) -> dict | None:
    """The annotation one EVALUATOR span row stands for, or None if it is no verdict."""
    if row[_KIND] != EVALUATOR:
        return None
    attributes = row[_ATTRIBUTES]
    if isinstance(attributes, str | bytes):
        attributes = json.loads(attributes or "{}")
    name = _first(attributes, "name") or attributes.get("metadata.evaluator_name")
    label = _first(attributes, "label")
    score = _first(attributes, "score")
    if isinstance(score, str):
        try:
            score = float(score)
        except ValueError:
            score = None
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        score = None
    if not name or (label is None and score is None):
        return None
    kind = str(_first(attributes, "annotator_kind") or AnnotatorKind.LLM).upper()
    target_span = _first(attributes, "target.span_id") or row[_PARENT]
    target_trace = _first(attributes, "target.trace_id") or row[_TRACE]
    if not target_span:
        return None
    return {
        "trace_id": str(target_trace).lower(),
        "span_id": str(target_span).lower(),
        "name": str(name)[:200],
        "label": "" if label is None else str(label)[:200],
        "score": None if score is None else float(score),
        "explanation": str(_first(attributes, "explanation") or "")[:MAX_TEXT],
        "annotator_kind": kind if kind in AnnotatorKind.values else AnnotatorKind.LLM,
        "provenance": {
            "source": "evaluation span",
            "trace_id": row[_TRACE],
            "span_id": row[_SPAN],
            "span_name": row[_NAME],
        },
    }


def store_verdicts(project_id: int, rows) -> int:
    """Upsert the annotations of the batch's EVALUATOR spans (call inside ingest's
    transaction, after the spans are stored); how many it wrote."""
    verdicts = [v for row in rows if row[_KIND] == EVALUATOR and (v := verdict(row))]
    if not verdicts:
        return 0
    targets = {
        (span.trace_id, span.span_id): span
        for span in Span.objects.filter(
            project_id=project_id,
            trace_id__in={v["trace_id"] for v in verdicts},
            span_id__in={v["span_id"] for v in verdicts},
        )
    }
    written = 0
    for v in verdicts:
        span = targets.get((v["trace_id"], v["span_id"]))
        if span is None:
            continue  # the judged span has not arrived: the verdict stays on its span
        SpanAnnotation.objects.update_or_create(
            span=span,
            name=v["name"],
            identifier="",
            defaults={
                "project_id": project_id,
                "label": v["label"],
                "score": v["score"],
                "explanation": v["explanation"],
                "annotator_kind": v["annotator_kind"],
                "provenance": v["provenance"],
                "metadata": {},
            },
        )
        written += 1
    return written
