"""Metrics over a project's spans in a sliding window, for metric triggers.

    evaluate(automation_or_spec, now) -> Measurement(value, spans, detail)

`value` is None when there is no data (no spans, no annotations, or fewer
spans than the minimum a rate needs): "no data" never fires. Counts, sums and
means (the cost too, read from inside the attributes JSON) are computed by
the database; percentiles over the window's durations,
bounded by MAX_PERCENTILE_SPANS (the newest ones) so one evaluation never reads
a whole project: by PERCENTILE_DISC on PostgreSQL, in Python on SQLite (which
has no percentile aggregate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Avg, Count, Q, Sum

from agentloop.traces.expressions import JSONNumber
from agentloop.traces.models import SpanAnnotation, SpanKind, StatusCode
from agentloop.traces.queries import SpanFilter, filter_spans

MAX_PERCENTILE_SPANS = 50_000
COST_ATTRIBUTE = "llm.cost.total"  # OpenInference: the call's cost in USD

METRICS = {
    "span_count": "Span count",
    "error_rate": "Error rate (0–1)",
    "latency_p50": "Latency p50 (ms)",
    "latency_p95": "Latency p95 (ms)",
    "latency_p99": "Latency p99 (ms)",
    "eval_label_rate": "Rate of an eval label (0–1)",
    "eval_score_mean": "Mean eval score",
    "total_tokens": "Total tokens",
    "cost": "Cost (USD)",
}
RATES = {"error_rate", "eval_label_rate"}
NEEDS_EVAL = {"eval_label_rate", "eval_score_mean"}
COMPARISONS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
PERCENTILES = {"latency_p50": 0.50, "latency_p95": 0.95, "latency_p99": 0.99}


@dataclass(frozen=True)
class Measurement:
    value: float | None
    spans: int  # spans in the window (after filters); the denominator of a rate
    detail: str = ""

    @property
    def no_data(self) -> bool:
        return self.value is None


def compare(value: float | None, comparison: str, threshold: float) -> bool:
    """Whether the trigger holds; no data never does."""
    if value is None or threshold is None:
        return False
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    if comparison == "<=":
        return value <= threshold
    raise ValueError(f"unknown comparison {comparison!r}")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (the analyst harness uses the same definition)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def window_bounds(automation, now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(minutes=automation.window_minutes), now


def span_filter(automation, now: datetime) -> SpanFilter:
    """The window and filters as the explorer's SpanFilter (also the evidence link)."""
    start, end = window_bounds(automation, now)
    attrs = []
    if automation.filter_attribute:
        attrs.append((automation.filter_attribute, automation.filter_value))
    return SpanFilter(
        start=start,
        end=end,
        kind=automation.filter_kind or None,
        name=automation.filter_name or None,
        attrs=attrs,
    )


def evidence_query(automation, now: datetime, *, errors_only: bool = False) -> dict:
    """Explorer query parameters that show the spans a measurement read."""
    start, end = window_bounds(automation, now)
    params = {"start": start.isoformat(), "end": end.isoformat()}
    if automation.filter_kind:
        params["kind"] = automation.filter_kind
    if automation.filter_name:
        params["name"] = automation.filter_name
    if automation.filter_attribute:
        params["attr"] = f"{automation.filter_attribute}={automation.filter_value}"
    if errors_only:
        params["status"] = StatusCode.ERROR
    if automation.metric == "eval_label_rate" and automation.eval_name:
        params["annotation"] = f"{automation.eval_name}:{automation.eval_label}"
    return params


def window_spans(automation, now: datetime):
    """The automation's project spans that started in [now - window, now), filtered."""
    return filter_spans(automation.project_id, span_filter(automation, now)).order_by()


def signature(automation) -> tuple:
    """Everything evaluate() reads besides `now`: equal signatures, equal measurements."""
    return (
        automation.project_id,
        automation.metric,
        automation.window_minutes,
        automation.min_spans,
        automation.filter_kind,
        automation.filter_name,
        automation.filter_attribute,
        automation.filter_value,
        automation.eval_name,
        automation.eval_label,
    )


def evaluate(automation, now: datetime) -> Measurement:
    """The automation's metric over its window ending at `now`."""
    metric = automation.metric
    spans = window_spans(automation, now)
    if metric in NEEDS_EVAL:
        return _eval_metric(automation, spans)
    if metric == "span_count":
        count = spans.count()
        return Measurement(float(count) if count else None, count)
    if metric == "error_rate":
        row = spans.aggregate(
            total=Count("pk"), errors=Count("pk", filter=Q(status_code=StatusCode.ERROR))
        )
        total = row["total"]
        if not total or total < automation.min_spans:
            return Measurement(None, total, f"{total} spans, fewer than {automation.min_spans}")
        return Measurement(row["errors"] / total, total, f"{row['errors']} of {total} spans failed")
    if metric in PERCENTILES:
        newest = spans.order_by("-start_time").values_list("duration_ms", flat=True)[
            :MAX_PERCENTILE_SPANS
        ]
        if connection.vendor == "postgresql":
            return _percentile_in_database(newest, PERCENTILES[metric])
        durations = list(newest)
        if not durations:
            return Measurement(None, 0)
        return Measurement(percentile(durations, PERCENTILES[metric]), len(durations))
    if metric == "total_tokens":
        row = spans.aggregate(total=Sum("total_tokens"), n=Count("total_tokens"))
        if not row["n"]:
            return Measurement(None, 0)
        return Measurement(float(row["total"]), row["n"])
    if metric == "cost":
        cost = JSONNumber("attributes", COST_ATTRIBUTE)
        row = spans.filter(kind=SpanKind.LLM).aggregate(total=Sum(cost), n=Count(cost))
        if not row["n"]:
            return Measurement(None, 0)
        return Measurement(float(row["total"]), row["n"])
    raise ValueError(f"unknown metric {metric!r}")


def _percentile_in_database(durations, fraction: float) -> Measurement:
    # PERCENTILE_DISC is the nearest-rank percentile, the same value percentile()
    # computes, without sending up to MAX_PERCENTILE_SPANS durations to Python.
    sql, params = durations.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_disc(%s) WITHIN GROUP (ORDER BY d.duration_ms), count(*) "
            f"FROM ({sql}) AS d(duration_ms)",
            [fraction, *params],
        )
        value, n = cursor.fetchone()
    if not n:
        return Measurement(None, 0)
    return Measurement(float(value), n)


def _eval_metric(automation, spans) -> Measurement:
    annotations = SpanAnnotation.objects.filter(
        project_id=automation.project_id, name=automation.eval_name, span__in=spans
    )
    if automation.metric == "eval_score_mean":
        row = annotations.filter(score__isnull=False).aggregate(mean=Avg("score"), n=Count("pk"))
        if not row["n"]:
            return Measurement(None, 0)
        return Measurement(row["mean"], row["n"])
    row = annotations.aggregate(
        total=Count("pk"), matching=Count("pk", filter=Q(label=automation.eval_label))
    )
    total = row["total"]
    if not total or total < automation.min_spans:
        return Measurement(
            None, total, f"{total} labelled spans, fewer than {automation.min_spans}"
        )
    return Measurement(
        row["matching"] / total,
        total,
        f"{row['matching']} of {total} `{automation.eval_name}` labels are {automation.eval_label}",
    )


def describe(automation) -> str:
    """ "error rate > 0.2 over 60 min (LLM spans named chat)" for lists and prompts."""
    what = METRICS.get(automation.metric, automation.metric).split(" (")[0].lower()
    if automation.metric == "eval_label_rate":
        what = f"rate of {automation.eval_name}={automation.eval_label}"
    elif automation.metric == "eval_score_mean":
        what = f"mean {automation.eval_name} score"
    condition = f"{automation.comparison} {automation.threshold:g}"
    text = f"{what} {condition} over {automation.window_minutes} min"
    filters = []
    if automation.filter_kind:
        filters.append(f"kind {automation.filter_kind}")
    if automation.filter_name:
        filters.append(f"name {automation.filter_name}")
    if automation.filter_attribute:
        filters.append(f"{automation.filter_attribute}={automation.filter_value}")
    return text + (f" ({', '.join(filters)})" if filters else "")
