"""Aggregates over a project's spans: where failures concentrate, since when, how much.

    query = parse_analytics_query(request.query_params, now=now)   # or AnalyticsQuery(...)
    result = aggregate(project, query)                              # a JSON-ready dict

Over the spans that started in a window [start, end) (default: the 24 hours
before now) and match the span filters of queries.py (plus duration and
exception type), it computes per group: spans, traces, errors, error rate,
duration p50/p95/p99, token sums and cost. Groups are up to two dimensions
(promoted columns, `exception.type`, or any attribute key), the top `limit` by
span count plus an "other" total; optional time buckets give the same metrics
per bucket; an optional baseline window gives them again for comparison.
docs/api.md documents the result; Signal's detectors read it over HTTP.

Everything is computed by the database in a few GROUP BY passes whose results
are bounded by (groups x buckets x histogram bins), never by the span count:

1. the top groups by span count (only with group_by);
2. per (group slot, bucket, duration bin): counts, errors, sums, min/max;
3. per (group slot, bucket): distinct traces; and the same for the whole window.

Percentiles come from a log-scale duration histogram (expressions.DurationBin):
the nearest-rank percentile is interpolated inside its bin between the bin's
real smallest and largest duration, so it is within PERCENTILE_ERROR (4 %) of
the exact nearest-rank value, on both databases, in bounded memory.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from django.db.models import Case, Count, F, FloatField, IntegerField, Max, Min, Q, Sum, Value, When
from django.utils import timezone

from agentloop.traces.expressions import (
    DURATION_GAMMA,
    AttributeValue,
    DurationBin,
    ExceptionType,
    JSONNumber,
    TimeBucket,
)
from agentloop.traces.models import SpanKind, StatusCode
from agentloop.traces.queries import (
    InvalidFilter,
    SpanFilter,
    _get,
    _getlist,
    _key_paths,
    filter_spans,
    parse_span_filter,
)

DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_GROUP_LIMIT = 20
MAX_GROUP_LIMIT = 100
MAX_GROUP_BY = 2
MAX_BUCKETS = 500
PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
PERCENTILE_ERROR = round(DURATION_GAMMA - 1, 6)  # relative, of p50/p95/p99
COST_ATTRIBUTE = "llm.cost.total"  # OpenInference: a call's cost in USD, on LLM spans
OTHER_SLOT = -1

# group_by spellings of the promoted columns -> (label in results, column)
COLUMN_DIMENSIONS = {
    "name": "name",
    "kind": "kind",
    "status": "status_code",
    "status_code": "status_code",
    "model": "model_name",
    "model_name": "model_name",
    "session_id": "session_id",
    "user_id": "user_id",
    "trace_id": "trace_id",  # e.g. tool calls per trace and tool: loops
}
EXCEPTION_DIMENSION = "exception.type"


@dataclass(frozen=True)
class Dimension:
    """One group_by dimension: `label` names it in results (`name`,
    `exception.type`, `attr:<key>`)."""

    label: str
    column: str | None = None
    attribute: str | None = None

    def expression(self):
        if self.column:
            return F(self.column)
        if self.attribute:
            return AttributeValue(_key_paths(self.attribute))
        return ExceptionType()

    def display(self, raw):
        """A group's key as callers see it: attribute values as text (JSON
        strings unquoted, other JSON as written); NULL (absent) as None."""
        if raw is None or not self.attribute:
            return raw
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            return str(raw)
        if isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"))


@dataclass
class AnalyticsQuery:
    start: datetime
    end: datetime
    span_filter: SpanFilter = field(default_factory=SpanFilter)  # its start/end are ignored
    group_by: tuple[Dimension, ...] = ()
    limit: int = DEFAULT_GROUP_LIMIT
    bucket_seconds: int | None = None
    baseline: tuple[datetime, datetime] | None = None


# -- parsing -------------------------------------------------------------------------

_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_interval(value: str, param: str) -> int:
    """'5m', '1h', '1d', '90s' or '300' (seconds) to whole seconds."""
    match = _INTERVAL.match(value)
    if not match:
        raise InvalidFilter(f"{param}: expected a duration like 5m, 1h or 1d, not {value!r}")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 1:
        raise InvalidFilter(f"{param}: must be at least 1s, not {value!r}")
    return seconds


def parse_dimension(value: str) -> Dimension:
    text = value.strip()
    if text in COLUMN_DIMENSIONS:
        column = COLUMN_DIMENSIONS[text]
        return Dimension(label=column, column=column)
    if text in (EXCEPTION_DIMENSION, "exception_type"):
        return Dimension(label=EXCEPTION_DIMENSION)
    for prefix in ("attr:", "attributes."):
        if text.startswith(prefix) and text[len(prefix) :].strip():
            key = text[len(prefix) :].strip()
            return Dimension(label=f"attr:{key}", attribute=key)
    raise InvalidFilter(
        f"group_by: expected one of {', '.join(sorted(COLUMN_DIMENSIONS))}, "
        f"{EXCEPTION_DIMENSION} or attr:<key>, not {value!r}"
    )


def parse_analytics_query(params, *, now: datetime | None = None) -> AnalyticsQuery:
    """Request parameters (QueryDict or dict) to an AnalyticsQuery, or InvalidFilter
    naming the bad parameter."""
    now = now or timezone.now()
    span_filter = parse_span_filter(params)
    end = span_filter.end or now
    start = span_filter.start or end - DEFAULT_WINDOW
    if end <= start:
        raise InvalidFilter("start: must be before end (which defaults to now)")

    dimensions = [parse_dimension(v) for v in _getlist(params, "group_by") if str(v).strip()]
    if len(dimensions) > MAX_GROUP_BY:
        raise InvalidFilter(f"group_by: at most {MAX_GROUP_BY} dimensions, not {len(dimensions)}")
    if len({d.label for d in dimensions}) != len(dimensions):
        raise InvalidFilter("group_by: the same dimension twice")

    limit = DEFAULT_GROUP_LIMIT
    raw_limit = _get(params, "limit")
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise InvalidFilter(f"limit: must be a whole number, not {raw_limit!r}") from None
        if not 1 <= limit <= MAX_GROUP_LIMIT:
            raise InvalidFilter(f"limit: must be between 1 and {MAX_GROUP_LIMIT}, not {limit}")

    bucket_seconds = None
    raw_bucket = _get(params, "bucket")
    if raw_bucket is not None:
        bucket_seconds = parse_interval(raw_bucket, "bucket")
        count = _bucket_count(start, end, bucket_seconds)
        if count > MAX_BUCKETS:
            raise InvalidFilter(
                f"bucket: {raw_bucket} makes {count} buckets of this window; "
                f"at most {MAX_BUCKETS}, choose a wider bucket"
            )

    return AnalyticsQuery(
        start=start,
        end=end,
        span_filter=replace(span_filter, start=None, end=None),
        group_by=tuple(dimensions),
        limit=limit,
        bucket_seconds=bucket_seconds,
        baseline=_parse_baseline(params, start, end),
    )


def _parse_baseline(params, start: datetime, end: datetime):
    from agentloop.traces.queries import parse_time

    shorthand = _get(params, "baseline")
    raw_start, raw_end = _get(params, "baseline_start"), _get(params, "baseline_end")
    if shorthand is not None and (raw_start or raw_end):
        raise InvalidFilter("baseline: give baseline or baseline_start/baseline_end, not both")
    if shorthand is not None:
        if shorthand.lower() == "previous":
            return start - (end - start), start
        shift = timedelta(seconds=parse_interval(shorthand, "baseline"))
        return start - shift, end - shift
    if raw_start is None and raw_end is None:
        return None
    if raw_start is None or raw_end is None:
        missing = "baseline_start" if raw_start is None else "baseline_end"
        raise InvalidFilter(f"{missing}: give both baseline_start and baseline_end")
    b_start = parse_time(raw_start, "baseline_start")
    b_end = parse_time(raw_end, "baseline_end")
    if b_end <= b_start:
        raise InvalidFilter("baseline_end: must be after baseline_start")
    return b_start, b_end


def _bucket_origin(start: datetime) -> int:
    """Buckets start at the window's start, floored to a whole second."""
    return math.floor(start.timestamp())


def _bucket_count(start: datetime, end: datetime, seconds: int) -> int:
    return max(1, math.ceil((end.timestamp() - _bucket_origin(start)) / seconds))


# -- accumulating rows ------------------------------------------------------------------


@dataclass
class _Totals:
    """The metrics of one (group, bucket) cell, built from histogram rows."""

    spans: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float = 0.0
    cost_spans: int = 0
    traces: int = 0
    bins: dict = field(default_factory=dict)  # bin -> [count, min_ms, max_ms]

    def add(self, row: dict) -> None:
        self.spans += row["spans"]
        self.errors += row["errors"]
        self.prompt_tokens += row["prompt"] or 0
        self.completion_tokens += row["completion"] or 0
        self.total_tokens += row["total"] or 0
        self.cost += row["cost"] or 0.0
        self.cost_spans += row["cost_spans"]
        cell = self.bins.get(row["bin"])
        if cell is None:
            self.bins[row["bin"]] = [row["spans"], row["dmin"], row["dmax"]]
        else:
            cell[0] += row["spans"]
            cell[1] = min(cell[1], row["dmin"])
            cell[2] = max(cell[2], row["dmax"])

    def percentile(self, fraction: float) -> float | None:
        """Nearest-rank percentile (as automations/metrics.percentile), read from
        the histogram: exact rank, value interpolated inside the rank's bin."""
        if not self.spans:
            return None
        rank = max(1, math.ceil(fraction * self.spans))
        seen = 0
        for index in sorted(self.bins):
            count, low, high = self.bins[index]
            if seen + count >= rank:
                position = rank - seen  # 1..count within this bin
                if count == 1:
                    return float(low)
                return float(low + (high - low) * (position - 1) / (count - 1))
            seen += count
        return float(self.bins[max(self.bins)][2])  # not reached: counts add up

    def metrics(self) -> dict:
        result = {
            "spans": self.spans,
            "traces": self.traces,
            "errors": self.errors,
            "error_rate": _ratio(self.errors, self.spans),
        }
        for name, fraction in PERCENTILES.items():
            value = self.percentile(fraction)
            result[name] = None if value is None else round(value, 3)
        result["max_ms"] = (
            round(float(max(cell[2] for cell in self.bins.values())), 3) if self.bins else None
        )
        result.update(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.total_tokens,
            cost=round(self.cost, 6) if self.cost_spans else None,
        )
        return result


def _ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 6)


# -- querying ----------------------------------------------------------------------------


def _window_spans(project, query: AnalyticsQuery, start: datetime, end: datetime):
    span_filter = replace(query.span_filter, start=start, end=end)
    spans = filter_spans(project, span_filter).order_by()
    for i, dimension in enumerate(query.group_by):
        spans = spans.annotate(**{f"g{i}": dimension.expression()})
    return spans


def _top_groups(spans, keys: list[str], limit: int) -> tuple[list[tuple], int]:
    """The `limit` groups with most spans (ties: by key), and how many groups there are."""
    grouped = spans.values(*keys).annotate(n=Count("pk"))
    rows = list(grouped.order_by("-n", *keys)[:limit])
    top = [tuple(row[k] for k in keys) for row in rows]
    if len(top) < limit:
        return top, len(top)
    return top, grouped.count()


def _slot(keys: list[str], top: list[tuple]):
    """Each span's group as an index into `top`, OTHER_SLOT for the rest."""
    whens = []
    for index, values in enumerate(top):
        condition = Q()
        for key, value in zip(keys, values, strict=True):
            condition &= Q(**{f"{key}__isnull": True}) if value is None else Q(**{key: value})
        whens.append(When(condition, then=Value(index)))
    if not whens:
        return Value(OTHER_SLOT, output_field=IntegerField())
    return Case(*whens, default=Value(OTHER_SLOT), output_field=IntegerField())


def _cost_expression():
    # Only LLM spans: a root span may carry its children's total too.
    return Case(
        When(kind=SpanKind.LLM, then=JSONNumber("attributes", COST_ATTRIBUTE)),
        output_field=FloatField(),
    )


@dataclass
class _Measured:
    cells: dict  # (slot, bucket) -> _Totals (only with buckets)
    by_slot: dict  # slot -> _Totals over the window
    by_bucket: dict  # bucket -> _Totals of all groups (only with buckets)
    overall: _Totals


def _measure(spans, grouped: bool, bucket: tuple[int, int] | None, slots: list[int]):
    """Totals per (slot, bucket), slot, bucket and for the whole window: one
    histogram pass, then one distinct-trace pass per level (distinct traces do
    not add up across groups or buckets)."""
    fields = []
    if grouped:
        fields.append("slot")
    if bucket is not None:
        spans = spans.annotate(bucket=TimeBucket(*bucket))
        fields.append("bucket")
    cost = _cost_expression()
    histogram = (
        spans.annotate(bin=DurationBin())
        .values(*fields, "bin")
        .annotate(
            spans=Count("pk"),
            errors=Count("pk", filter=Q(status_code=StatusCode.ERROR)),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            total=Sum("total_tokens"),
            cost=Sum(cost),
            cost_spans=Count(cost),
            dmin=Min("duration_ms"),
            dmax=Max("duration_ms"),
        )
        .order_by()
    )
    measured = _Measured({}, {slot: _Totals() for slot in slots}, {}, _Totals())
    for row in histogram:
        slot = row["slot"] if grouped else 0
        measured.by_slot.setdefault(slot, _Totals()).add(row)
        measured.overall.add(row)
        if bucket is not None:
            measured.cells.setdefault((slot, row["bucket"]), _Totals()).add(row)
            measured.by_bucket.setdefault(row["bucket"], _Totals()).add(row)

    def distinct_traces(group_fields):
        return spans.values(*group_fields).annotate(traces=Count("trace_id", distinct=True))

    measured.overall.traces = spans.aggregate(traces=Count("trace_id", distinct=True))["traces"]
    if grouped:
        for row in distinct_traces(["slot"]).order_by():
            measured.by_slot[row["slot"]].traces = row["traces"]
    else:
        measured.by_slot[0].traces = measured.overall.traces
    if bucket is not None:
        for row in distinct_traces(["bucket"]).order_by():
            measured.by_bucket[row["bucket"]].traces = row["traces"]
        if grouped:
            for row in distinct_traces(["slot", "bucket"]).order_by():
                measured.cells[(row["slot"], row["bucket"])].traces = row["traces"]
        else:
            for (_, at), cell in measured.cells.items():
                cell.traces = measured.by_bucket[at].traces
    return measured


def _compare(current: dict, baseline: dict, current_seconds: float, baseline_seconds: float):
    """How the current metrics compare with the baseline's (None where undefined)."""
    comparison = {
        "span_rate_ratio": _ratio(
            current["spans"] / current_seconds, baseline["spans"] / baseline_seconds
        ),
        "error_rate_ratio": _ratio(current["error_rate"], baseline["error_rate"]),
        "error_rate_change": (
            round(current["error_rate"] - baseline["error_rate"], 6)
            if current["error_rate"] is not None and baseline["error_rate"] is not None
            else None
        ),
    }
    for name in PERCENTILES:
        comparison[f"{name.removesuffix('_ms')}_ratio"] = _ratio(current[name], baseline[name])
    return comparison


def aggregate(project, query: AnalyticsQuery) -> dict:
    """The analytics of `query` over `project`'s spans (docs/api.md: the result)."""
    grouped = bool(query.group_by)
    keys = [f"g{i}" for i in range(len(query.group_by))]
    spans = _window_spans(project, query, query.start, query.end)
    top, group_count = _top_groups(spans, keys, query.limit) if grouped else ([], 0)
    if grouped:
        spans = spans.annotate(slot=_slot(keys, top))
    bucket = None
    bucket_starts: list[datetime] = []
    if query.bucket_seconds:
        origin = _bucket_origin(query.start)
        bucket = (origin, query.bucket_seconds)
        bucket_starts = [
            datetime.fromtimestamp(origin + i * query.bucket_seconds, tz=UTC)
            for i in range(_bucket_count(query.start, query.end, query.bucket_seconds))
        ]
    slots = list(range(len(top))) + [OTHER_SLOT] if grouped else [0]
    measured = _measure(spans, grouped, bucket, slots)
    total = measured.overall.metrics()

    baseline = None
    window_seconds = (query.end - query.start).total_seconds()
    baseline_seconds = None
    if query.baseline:
        b_start, b_end = query.baseline
        baseline_seconds = (b_end - b_start).total_seconds()
        b_spans = _window_spans(project, query, b_start, b_end)
        if grouped:
            b_spans = b_spans.annotate(slot=_slot(keys, top))
        baseline = _measure(b_spans, grouped, None, slots)

    def buckets_of(slot: int | None) -> list[dict]:
        rows = []
        for i, moment in enumerate(bucket_starts):
            cell = measured.by_bucket.get(i) if slot is None else measured.cells.get((slot, i))
            rows.append({"start": moment, **(cell or _Totals()).metrics()})
        return rows

    def entry(slot: int, key: dict | None) -> dict:
        metrics = measured.by_slot[slot].metrics()
        result = {"key": key, **metrics} if key is not None else dict(metrics)
        rest_spans = total["spans"] - metrics["spans"]
        rest_errors = total["errors"] - metrics["errors"]
        rest_rate = _ratio(rest_errors, rest_spans)
        result["share_of_spans"] = _ratio(metrics["spans"], total["spans"])
        result["share_of_errors"] = _ratio(metrics["errors"], total["errors"])
        result["rest_error_rate"] = rest_rate
        result["error_rate_lift"] = _ratio(metrics["error_rate"], rest_rate)
        if baseline is not None:
            b_metrics = baseline.by_slot[slot].metrics()
            result["baseline"] = b_metrics
            result["vs_baseline"] = _compare(metrics, b_metrics, window_seconds, baseline_seconds)
        if bucket_starts:
            result["buckets"] = buckets_of(slot)
        return result

    result: dict = {
        "window": {"start": query.start, "end": query.end},
        "baseline_window": (
            {"start": query.baseline[0], "end": query.baseline[1]} if query.baseline else None
        ),
        "group_by": [d.label for d in query.group_by],
        "bucket_seconds": query.bucket_seconds,
        "percentile_error": PERCENTILE_ERROR,
        "total": dict(total),
        "groups": [],
        "other": None,
        "group_count": group_count,
    }
    if baseline is not None:
        b_total = baseline.overall.metrics()
        result["total"]["baseline"] = b_total
        result["total"]["vs_baseline"] = _compare(total, b_total, window_seconds, baseline_seconds)
    if bucket_starts:
        result["total"]["buckets"] = buckets_of(None)
    for slot, values in enumerate(top):
        key = {
            dimension.label: dimension.display(value)
            for dimension, value in zip(query.group_by, values, strict=True)
        }
        result["groups"].append(entry(slot, key))
    if grouped and group_count > len(top):
        other = entry(OTHER_SLOT, None)
        other["groups"] = group_count - len(top)
        result["other"] = other
    return result
