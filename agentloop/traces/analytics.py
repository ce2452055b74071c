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

Everything is computed by the database in one statement (_statement), whose
answer is bounded by (groups x buckets x histogram bins), never by the span
count: the matching spans of the window (and of the baseline) are read once
into a materialised CTE of slim rows, then grouped there for

1. the top groups by span count (each span gets its group's slot, or "other");
2. per (period, slot, bucket, duration bin): counts, errors, sums, min/max;
3. distinct traces per (slot, bucket), slot, bucket and window.

It needs SQLite 3.38 (`->`; MATERIALIZED since 3.35) or PostgreSQL 12.
The filters are queries.filter_spans', so a filter means what it means in the
span list, attribute index included. The time range uses the
(project, start_time) index; nothing here needs an index of its own.

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

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, IntegerField, Q, TextField, Value, When
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from agentloop.traces import rollups
from agentloop.traces.expressions import (
    DURATION_GAMMA,
    AttributeValue,
    DurationBin,
    ExceptionType,
    TimeBucket,
    llm_cost,
)
from agentloop.traces.models import EvalRollup, Span, SpanRollup, StatusCode
from agentloop.traces.queries import (
    InvalidFilter,
    SpanFilter,
    _get,
    _getlist,
    _key_paths,
    filter_spans,
    parse_span_filter,
    parse_time,
)

DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_GROUP_LIMIT = 20
MAX_GROUP_LIMIT = 100
MAX_GROUP_BY = 2
MAX_BUCKETS = 500
DAY_SECONDS = 86400
MAX_INTERVAL_SECONDS = 3650 * 86400  # of a bucket or a baseline shift: ten years
PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
PERCENTILE_ERROR = round(DURATION_GAMMA - 1, 6)  # relative, of p50/p95/p99
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
    if seconds > MAX_INTERVAL_SECONDS:
        raise InvalidFilter(f"{param}: at most 3650d, not {value!r}")
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
    shorthand = _get(params, "baseline")
    raw_start, raw_end = _get(params, "baseline_start"), _get(params, "baseline_end")
    if shorthand is not None and (raw_start or raw_end):
        raise InvalidFilter("baseline: give baseline or baseline_start/baseline_end, not both")
    if shorthand is not None:
        try:
            if shorthand.lower() == "previous":
                return start - (end - start), start
            shift = timedelta(seconds=parse_interval(shorthand, "baseline"))
            return start - shift, end - shift
        except OverflowError:
            raise InvalidFilter(f"baseline: {shorthand} would start before year 1") from None
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


def _bucket_origin(start: datetime, seconds: int) -> int:
    """Buckets that tile a UTC day (1m, 5m, 30m, 1h, 6h, 1d …) start on their own
    multiples (14:00, 15:00 …; the first bucket holds only the window's part of
    it): the times people read on a chart, and the intervals rollups hold, so a
    window ending now reads spans only at its two edges. Other lengths (90s, 7d)
    start at the window's start, floored to a whole second."""
    whole = math.floor(start.timestamp())
    return whole - whole % seconds if DAY_SECONDS % seconds == 0 else whole


def _bucket_count(start: datetime, end: datetime, seconds: int) -> int:
    return max(1, math.ceil((end.timestamp() - _bucket_origin(start, seconds)) / seconds))


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

    def add(self, spans, errors, prompt, completion, total, cost, cost_spans, index, low, high):
        """One histogram row: `spans` spans of duration bin `index`, [low, high] ms."""
        self.spans += spans
        self.errors += errors
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.total_tokens += total
        self.cost += cost
        self.cost_spans += cost_spans
        cell = self.bins.get(index)
        if cell is None:
            self.bins[index] = [spans, low, high]
        else:
            cell[0] += spans
            cell[1] = min(cell[1], low)
            cell[2] = max(cell[2], high)

    def merge(self, other: _Totals) -> None:
        """Add up another cell's spans, sums and histogram (not its traces)."""
        for index, (spans, low, high) in other.bins.items():
            self.add(spans, 0, 0, 0, 0, 0.0, 0, index, low, high)
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.cost += other.cost
        self.cost_spans += other.cost_spans

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

# A group key that stands for NULL in the join of spans to their top group, so
# the join is a plain equality (hash-joinable) on both databases.
_NULL_KEY = "\ufffdagentloop-no-value\ufffd"  # PostgreSQL text cannot hold NUL
# The answer's parts, one row kind each (see _statement).
_HISTOGRAM, _TRACES_CELL, _TRACES_SLOT, _TRACES_BUCKET, _TRACES_ALL = "h", "tc", "ts", "tb", "ta"
_TOP_KEY, _GROUP_COUNT = "k", "g"
_CURRENT, _BASELINE = 0, 1


# What _window_rows selects per span, in the order of `w`'s columns in _statement.
_ROW_COLUMNS = (
    "a_period",
    "g0",
    "g1",
    "a_bucket",
    "a_bin",
    "a_trace",
    "a_error",
    "a_prompt",
    "a_completion",
    "a_total",
    "a_cost",
    "a_duration",
)


def _window_rows(project, query: AnalyticsQuery, period: int, start, end, bucket, only=None):
    """SQL (and params) of one row per matching span of [start, end) (and of the
    Q `only`): its period, group key values, bucket, duration bin and what the
    metrics add up."""
    spans = filter_spans(project, replace(query.span_filter, start=start, end=end)).order_by()
    if only is not None:
        spans = spans.filter(only)
    keys = {}
    for i in range(MAX_GROUP_BY):
        if i < len(query.group_by):
            keys[f"g{i}"] = Coalesce(
                Cast(query.group_by[i].expression(), TextField()),
                Value(_NULL_KEY, output_field=TextField()),
                output_field=TextField(),
            )
        else:
            keys[f"g{i}"] = Value("", output_field=TextField())
    spans = spans.annotate(
        a_period=Value(period, output_field=IntegerField()),
        **keys,
        a_bucket=TimeBucket(*bucket) if bucket else Value(0, output_field=IntegerField()),
        a_bin=DurationBin(),
        a_trace=F("trace_id"),
        a_error=Case(
            When(status_code=StatusCode.ERROR, then=Value(1)),
            default=Value(0),
            output_field=IntegerField(),
        ),
        a_prompt=F("prompt_tokens"),
        a_completion=F("completion_tokens"),
        a_total=F("total_tokens"),
        a_cost=llm_cost(),
        a_duration=F("duration_ms"),
    )
    return spans.values(*_ROW_COLUMNS).query.sql_with_params()


def _statement(
    windows: list[tuple[str, tuple]], limit: int, every_period: bool = False
) -> tuple[str, list]:
    """One statement for the whole answer: the matching spans are read once
    (`w`, materialised), and every aggregate is a GROUP BY over those slim rows.

    Reading a span row is what costs (its JSON columns make it wide); the
    aggregates of the materialised rows are cheap. Distinct traces do not add
    up across groups or buckets, so each level counts them, from `d`: the
    distinct (period, slot, bucket, trace) rows, a fraction of the spans. The
    rows of the answer are told apart by their first column (_HISTOGRAM,
    _TRACES_…, _TOP_KEY, _GROUP_COUNT).
    """
    names = ", ".join(f'"{column}"' for column in _ROW_COLUMNS)
    union = " UNION ALL ".join(
        f"SELECT {names} FROM ({sql}) AS p{i}" for i, (sql, _) in enumerate(windows)
    )
    params: list = [p for _, window_params in windows for p in window_params]

    # Every column of every part, NULL where a part has none, so the parts line up.
    def part(kind, slot="NULL", bucket="NULL", bin_="NULL", spans="NULL", sums=None, keys=None):
        period = _CURRENT if kind in (_TOP_KEY, _GROUP_COUNT) else "period"
        columns = [f"'{kind}'", str(period), slot, bucket, bin_, spans]
        columns += [*(sums or ["NULL"] * 8), *(keys or ["NULL", "NULL"])]
        return "SELECT " + ", ".join(columns)

    metrics = [
        "SUM(err)",
        "SUM(prompt)",
        "SUM(completion)",
        "SUM(total)",
        "SUM(cost)",
        "COUNT(cost)",
        "MIN(duration)",
        "MAX(duration)",
    ]
    traces = "COUNT(DISTINCT trace)"
    sql = f"""
WITH w (period, g0, g1, bucket, bin, trace, err, prompt, completion, total, cost, duration)
  AS MATERIALIZED ({union}),
top AS (
  SELECT g0, g1, COUNT(*) AS n FROM w {"" if every_period else f"WHERE period = {_CURRENT}"}
  GROUP BY g0, g1 ORDER BY n DESC, g0, g1 LIMIT %s),
ranked AS (
  SELECT g0, g1, n, ROW_NUMBER() OVER (ORDER BY n DESC, g0, g1) - 1 AS slot FROM top),
s AS MATERIALIZED (
  SELECT w.*, COALESCE(ranked.slot, {OTHER_SLOT}) AS slot
  FROM w LEFT JOIN ranked ON w.g0 = ranked.g0 AND w.g1 = ranked.g1),
d AS MATERIALIZED (SELECT DISTINCT period, slot, bucket, trace FROM s)
{part(_HISTOGRAM, "slot", "bucket", "bin", "COUNT(*)", metrics)}
  FROM s GROUP BY period, slot, bucket, bin
UNION ALL {part(_TRACES_CELL, "slot", "bucket", spans="COUNT(*)")}
  FROM d GROUP BY period, slot, bucket
UNION ALL {part(_TRACES_SLOT, "slot", spans=traces)} FROM d GROUP BY period, slot
UNION ALL {part(_TRACES_BUCKET, bucket="bucket", spans=traces)} FROM d GROUP BY period, bucket
UNION ALL {part(_TRACES_ALL, spans=traces)} FROM d GROUP BY period
UNION ALL {part(_TOP_KEY, "slot", spans="n", keys=["g0", "g1"])}
  FROM ranked
UNION ALL {part(_GROUP_COUNT, spans="COUNT(*)")}
  FROM (SELECT 1 AS one FROM w WHERE period = {_CURRENT} GROUP BY g0, g1) AS all_groups
"""
    return sql, [*params, limit]


@dataclass
class _Measured:
    cells: dict = field(default_factory=dict)  # (slot, bucket) -> _Totals
    by_slot: dict = field(default_factory=dict)  # slot -> _Totals over the window
    by_bucket: dict = field(default_factory=dict)  # bucket -> _Totals of all groups
    overall: _Totals = field(default_factory=_Totals)


def _measure(project, query: AnalyticsQuery, bucket) -> tuple[dict, list, int, bool]:
    """{period: _Measured}, the top keys (raw, by slot), the number of groups and
    whether rollups answered:
    from the rollups and the spans they do not cover where the query allows
    (rollups.py), else from the spans."""
    plan = _rollup_plan(project, query)
    if plan is not None:
        return _measure_mixed(project, query, bucket, plan)
    return _measure_spans(project, query, bucket)


def _measure_spans(project, query: AnalyticsQuery, bucket) -> tuple[dict, list, int, bool]:
    windows = [_window_rows(project, query, _CURRENT, query.start, query.end, bucket)]
    if query.baseline:
        b_start, b_end = query.baseline
        windows.append(_window_rows(project, query, _BASELINE, b_start, b_end, None))
    sql, params = _statement(windows, query.limit if query.group_by else 1)
    measured = {_CURRENT: _Measured(), _BASELINE: _Measured()}
    top: dict[int, tuple] = {}
    group_count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The planner's estimate of a big window makes PostgreSQL JIT-compile
            # the statement, which cost ~0.75 s of a 4.9 s aggregation of 1M
            # spans (EXPLAIN ANALYZE) and saves less than it costs here.
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    for kind, period, slot, at, bin_, count, *rest in rows:
        into = measured[period]
        count = int(count or 0)
        if kind == _HISTOGRAM:
            values = (
                count,
                int(rest[0] or 0),
                int(rest[1] or 0),
                int(rest[2] or 0),
                int(rest[3] or 0),
                float(rest[4] or 0.0),
                int(rest[5] or 0),
                bin_,
                float(rest[6]),
                float(rest[7]),
            )
            into.by_slot.setdefault(slot, _Totals()).add(*values)
            if bucket is not None:
                into.cells.setdefault((slot, at), _Totals()).add(*values)
                into.by_bucket.setdefault(at, _Totals()).add(*values)
        elif kind == _TRACES_CELL:
            into.cells.setdefault((slot, at), _Totals()).traces = count
        elif kind == _TRACES_SLOT:
            into.by_slot.setdefault(slot, _Totals()).traces = count
        elif kind == _TRACES_BUCKET:
            into.by_bucket.setdefault(at, _Totals()).traces = count
        elif kind == _TRACES_ALL:
            into.overall.traces = count
        elif kind == _TOP_KEY:
            top[slot] = (rest[8], rest[9])
        elif kind == _GROUP_COUNT:
            group_count = count
    for into in measured.values():
        for totals in into.by_slot.values():
            into.overall.merge(totals)
    keys = [top[slot] for slot in sorted(top)]
    return measured, keys, group_count, False


# -- from rollups ------------------------------------------------------------------------

ROLLUP_MIN_WINDOW = timedelta(hours=1)  # a shorter window reads its spans
# A window (with its baseline) of fewer spans reads them too: rollup rows are per
# name (and attribute value) per hour, and below about this many spans adding
# those up costs as much as reading the spans (docs/benchmarks.md, "Trace analytics").
ROLLUP_MIN_SPANS = 100_000
MAX_RAW_RANGES = 120  # edges read from spans; more, and the whole query does
_ALL_GROUPS = 10_000_000


@dataclass
class _RollupPlan:
    scope: int  # of the rows per group
    total_scope: int  # of the rows of all groups together
    dimension: Dimension | None  # the attribute grouped by, if any
    grains: tuple[int, ...]
    filters: dict  # row field -> value, of the query's kind, name, status and eval
    model: type = SpanRollup  # EvalRollup for a query filtered by an eval label
    changed_hours: frozenset = frozenset()  # hours whose eval rows may be behind


def _rollup_plan(project, query: AnalyticsQuery) -> _RollupPlan | None:
    """How rollups answer `query`, or None when they cannot (or need not): the
    filters must be kind, name, status and an eval label only; the groups columns
    of those or one attribute the project's rollups split by; the window an hour
    or more. An eval label reads EvalRollup, which has no status and only the
    scopes of all spans and of one component."""
    if query.end - query.start < ROLLUP_MIN_WINDOW or not settings.ANALYTICS_ROLLUPS:
        return None
    sf = query.span_filter
    others = replace(
        sf, kind=None, status=None, name=None, start=None, end=None,
        annotation_name=None, annotation_label=None,
    )  # fmt: skip
    if others != SpanFilter():
        return None
    columns = {d.column for d in query.group_by if d.column}
    attributes = [d for d in query.group_by if d.attribute]
    if any(not d.column and not d.attribute for d in query.group_by):  # exception.type
        return None
    if columns - {"kind", "name", "status_code"} or len(attributes) > 1:
        return None
    if not rollups.is_ready(project):
        return None
    filters = {
        field: value
        for field, value in (("kind", sf.kind), ("name", sf.name), ("status_code", sf.status))
        if value
    }
    used = columns | set(filters)
    scope = rollups.scope_of("kind" in used, "name" in used, "status_code" in used)
    total_scope = rollups.scope_of("kind" in filters, "name" in filters, "status_code" in filters)
    dimension = attributes[0] if attributes else None
    grains = rollups.GRAINS
    if dimension is not None:
        if scope not in rollups.DIMENSION_SCOPES or not rollups.splits_by(
            project, dimension.attribute
        ):
            return None
        if scope not in rollups.FINE_DIMENSION_SCOPES or total_scope != scope:
            grains = (rollups.DIMENSION_GRAIN,)
    plan = _RollupPlan(scope, total_scope, dimension, grains, filters)
    if sf.annotation_name:
        if {scope, total_scope} - set(rollups.EVAL_SCOPES):
            return None
        state = rollups.evals_ready(project)
        if state is None:
            return None
        plan.model = EvalRollup
        if dimension is not None:
            plan.grains = (rollups.DIMENSION_GRAIN,)  # its attribute rows are hourly
        plan.filters |= {"eval_name": sf.annotation_name, "eval_label": sf.annotation_label or ""}
        plan.changed_hours = frozenset(
            rollups.changed_eval_hours(project, state, sf.annotation_name)
        )
    # Last: the one check that counts rows, once the rollups could answer at all.
    if _rolled_up_spans(project, query) < ROLLUP_MIN_SPANS:
        return None
    return plan


def _rolled_up_spans(project, query: AnalyticsQuery) -> int:
    """About how many spans the window and its baseline hold: the rollups' hourly
    totals of all spans over the hours they touch (a few rows, by the index)."""
    periods = [(query.start, query.end), *([query.baseline] if query.baseline else [])]
    hours = Q()
    for start, end in periods:
        first = _seconds_down(start) // rollups.HOUR_GRAIN * rollups.HOUR_GRAIN
        hours |= Q(at__gte=first, at__lt=_seconds_up(end))
    rows = SpanRollup.objects.filter(
        hours, project=project, grain=rollups.HOUR_GRAIN, scope=0, dim_key=""
    )
    return sum(rows.values_list("spans", flat=True))


def _seconds_up(moment: datetime) -> int:
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole + (1 if moment.microsecond else 0)


def _seconds_down(moment: datetime) -> int:
    return int(moment.replace(microsecond=0).timestamp())


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _split(x: datetime, y: datetime, grains: tuple[int, ...]):
    """[x, y) as whole intervals [(grain, at)] of the coarsest grains that fit,
    and the rest as [(start, end)] to read from spans."""
    if x >= y:
        return [], []
    if not grains:
        return [], [(x, y)]
    grain = grains[0]
    first = -(-_seconds_up(x) // grain) * grain
    last = _seconds_down(y) // grain * grain
    if first >= last:
        return _split(x, y, grains[1:])
    left_cells, left_raw = _split(x, _at(first), grains[1:])
    right_cells, right_raw = _split(_at(last), y, grains[1:])
    cells = [(grain, at) for at in range(first, last, grain)]
    return left_cells + cells + right_cells, left_raw + right_raw


def _pieces(start, end, bucket):
    """{(grain, at): bucket index} of the rollup intervals covering [start, end)
    (bucket by bucket), and the ranges left to read from spans."""
    intervals = [(start, end, 0)]
    if bucket is not None:
        origin, seconds = bucket
        intervals = [
            (max(start, _at(origin + i * seconds)), min(end, _at(origin + (i + 1) * seconds)), i)
            for i in range(_bucket_count(start, end, seconds))
        ]
    return intervals


@dataclass
class _ByKey:
    """The metrics of one period by group key (raw keys, as the statement's)."""

    cells: dict = field(default_factory=dict)  # (key, bucket) -> _Totals
    by_key: dict = field(default_factory=dict)  # key -> _Totals over the window
    by_bucket: dict = field(default_factory=dict)  # bucket -> _Totals of all groups
    overall: _Totals = field(default_factory=_Totals)

    def merge(self, other: _ByKey) -> None:
        for mine, theirs in (
            (self.cells, other.cells),
            (self.by_key, other.by_key),
            (self.by_bucket, other.by_bucket),
        ):
            for key, totals in theirs.items():
                _add_totals(mine.setdefault(key, _Totals()), totals)
        _add_totals(self.overall, other.overall)


def _add_totals(into: _Totals, other: _Totals) -> None:
    into.merge(other)  # spans, through the histogram, and the sums
    into.traces += other.traces


def _add_row(into: _Totals, row) -> None:
    into.spans += row.spans
    into.errors += row.errors
    into.prompt_tokens += row.prompt_tokens
    into.completion_tokens += row.completion_tokens
    into.total_tokens += row.total_tokens
    into.cost += row.cost
    into.cost_spans += row.cost_spans
    into.traces += row.traces
    bins = into.bins
    # Runs for each of the ~90 bins of each of thousands of rows: comparisons, not min/max.
    for index, spans, low, high in json.loads(row.histogram):
        cell = bins.get(index)
        if cell is None:
            bins[index] = [spans, low, high]
        else:
            cell[0] += spans
            if low < cell[1]:
                cell[1] = low
            if high > cell[2]:
                cell[2] = high


def _minus(whole: _Totals, part: _Totals) -> _Totals:
    """What `whole` holds beyond `part` (spans without the attribute); a bin's
    bounds stay the whole's, so its values are within the bin's 4 %. Distinct
    traces do not subtract: the whole's count is the bound taken (every trace
    of the whole may have a span without the attribute)."""
    rest = _Totals(
        spans=whole.spans - part.spans,
        errors=whole.errors - part.errors,
        prompt_tokens=whole.prompt_tokens - part.prompt_tokens,
        completion_tokens=whole.completion_tokens - part.completion_tokens,
        total_tokens=whole.total_tokens - part.total_tokens,
        cost=whole.cost - part.cost,
        cost_spans=whole.cost_spans - part.cost_spans,
        traces=whole.traces,
    )
    for index, (spans, low, high) in whole.bins.items():
        left = spans - part.bins.get(index, [0])[0]
        if left > 0:
            rest.bins[index] = [left, low, high]
    return rest


def _runs(ats: list[int], step: int) -> list[tuple[int, int]]:
    """Sorted interval starts as (first, last) of each run `step` apart."""
    runs: list[tuple[int, int]] = []
    for at in ats:
        if runs and at - runs[-1][1] <= step:
            runs[-1] = (runs[-1][0], at)
        else:
            runs.append((at, at))
    return runs


def _from_rollups(project, query, plan: _RollupPlan, cells: dict) -> _ByKey:
    """The rollup rows of these intervals ({(grain, at): bucket}) by group key."""
    measured = _ByKey()
    if not cells:
        return measured
    grouped = bool(query.group_by)
    dimension = plan.dimension
    base: dict = {}  # (column key, bucket) -> _Totals of every span, for the absent value
    present: dict = {}  # (column key, bucket) -> _Totals of spans with the attribute
    by_grain: dict[int, list[int]] = {}
    for grain, at in cells:
        by_grain.setdefault(grain, []).append(at)

    fields = [
        "grain", "at", "kind", "name", "dim_key", "dim_value", "spans", "errors",
        "prompt_tokens", "completion_tokens", "total_tokens", "cost", "cost_spans", "traces",
        "histogram",
    ]  # fmt: skip
    if plan.model is SpanRollup:
        fields.append("status_code")

    def rows(scope, dim_keys):
        for grain, ats in by_grain.items():
            # One range per run of adjacent intervals: a window's five-minute cells lie
            # at both its edges, and one range from the first to the last would read
            # every five-minute row between them (most of the rows, to skip them).
            ranges = Q()
            for low, high in _runs(sorted(ats), grain):
                ranges |= Q(at__gte=low, at__lte=high)
            yield from plan.model.objects.filter(
                ranges,
                project=project,
                grain=grain,
                scope=scope,
                dim_key__in=dim_keys,
                **plan.filters,
            ).values_list(*fields, named=True)  # rows, not model instances: thousands of them

    def key_of(row, value) -> tuple:
        parts = [value if d.attribute else getattr(row, d.column) for d in query.group_by]
        return tuple(parts + [""] * (MAX_GROUP_BY - len(parts)))

    # Each row is added once, to its finest total; the coarser ones are those added
    # up (a row's histogram is parsed and merged once, not once per total it is in).
    for row in rows(plan.total_scope, [""]):
        bucket = cells.get((row.grain, row.at))
        if bucket is None:
            continue
        _add_row(measured.by_bucket.setdefault(bucket, _Totals()), row)
    for bucket, totals in measured.by_bucket.items():
        _add_totals(measured.overall, totals)
        if not grouped:
            _add_totals(measured.by_key.setdefault(("", ""), _Totals()), totals)
            _add_totals(measured.cells.setdefault((("", ""), bucket), _Totals()), totals)
    if not grouped:
        return measured
    dim_keys = ["", dimension.attribute] if dimension else [""]
    for row in rows(plan.scope, dim_keys):
        bucket = cells.get((row.grain, row.at))
        if bucket is None:
            continue
        if dimension is not None:
            columns = key_of(row, None)
            target = present if row.dim_key else base
            _add_row(target.setdefault((columns, bucket), _Totals()), row)
            if not row.dim_key:
                continue
        key = key_of(row, row.dim_value)
        _add_row(measured.cells.setdefault((key, bucket), _Totals()), row)
    for (columns, bucket), whole in base.items():
        absent = _minus(whole, present.get((columns, bucket), _Totals()))
        if absent.spans <= 0:
            continue
        key = tuple(_NULL_KEY if part is None else part for part in columns)
        _add_totals(measured.cells.setdefault((key, bucket), _Totals()), absent)
    for (key, _bucket), totals in measured.cells.items():
        _add_totals(measured.by_key.setdefault(key, _Totals()), totals)
    return measured


def _from_spans(windows: list, query: AnalyticsQuery) -> dict[int, _ByKey]:
    """The statement over these span windows, by period and group key (attribute
    values in rollups.canonical's spelling, as the rollups keep them)."""
    grouped = bool(query.group_by)
    measured = {_CURRENT: _ByKey(), _BASELINE: _ByKey()}
    if not windows:
        return measured
    sql, params = _statement(windows, _ALL_GROUPS if grouped else 1, every_period=True)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL jit = off")  # as in _measure_spans
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    attribute = [bool(d.attribute) for d in query.group_by] + [False] * MAX_GROUP_BY

    def canonical(i, raw):
        return rollups.canonical(raw) if attribute[i] and raw != _NULL_KEY else raw

    keys = {
        row[2]: (canonical(0, row[14]), canonical(1, row[15])) for row in rows if row[0] == _TOP_KEY
    }
    by_slot: dict = {_CURRENT: {}, _BASELINE: {}}
    for kind, period, slot, at, bin_, count, *rest in rows:
        into = measured[period]
        count = int(count or 0)
        if kind == _HISTOGRAM:
            values = (
                count, int(rest[0] or 0), int(rest[1] or 0), int(rest[2] or 0),
                int(rest[3] or 0), float(rest[4] or 0.0), int(rest[5] or 0),
                bin_, float(rest[6]), float(rest[7]),
            )  # fmt: skip
            key = keys.get(slot, ("", ""))
            by_slot[period].setdefault(key, _Totals()).add(*values)
            into.cells.setdefault((key, at), _Totals()).add(*values)
            into.by_bucket.setdefault(at, _Totals()).add(*values)
        elif kind == _TRACES_CELL:
            into.cells.setdefault((keys.get(slot, ("", "")), at), _Totals()).traces = count
        elif kind == _TRACES_SLOT:
            by_slot[period].setdefault(keys.get(slot, ("", "")), _Totals()).traces = count
        elif kind == _TRACES_BUCKET:
            into.by_bucket.setdefault(at, _Totals()).traces = count
        elif kind == _TRACES_ALL:
            into.overall.traces = count
    for period, into in measured.items():
        into.by_key = by_slot[period]
        for totals in into.by_key.values():
            into.overall.merge(totals)
    return measured


def _measure_mixed(project, query: AnalyticsQuery, bucket, plan: _RollupPlan):
    """As _measure_spans, from the rollups of the whole intervals in the window and
    from the spans of its edges and of the spans the rollups do not hold yet."""
    grouped = bool(query.group_by)
    periods = [(_CURRENT, query.start, query.end, bucket)]
    if query.baseline:
        periods.append((_BASELINE, *query.baseline, None))
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # The mark and the rows it vouches for are read in one snapshot, so a
            # batch the roller commits meanwhile is counted once, not twice.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        state = rollups.mark()
        tail = rollups.tail_q(state)
        tail_ids = Q(id__in=Span.objects.filter(tail).values("id"))
        windows, from_rollups = [], {}
        for period, start, end, period_bucket in periods:
            cells, ranges = {}, []
            for lo, hi, index in _pieces(start, end, period_bucket):
                got, left = _split(lo, hi, plan.grains)
                cells.update(dict.fromkeys(got, index))
                ranges += left
            for grain, at in [c for c in cells if c[1] // 3600 * 3600 in plan.changed_hours]:
                del cells[(grain, at)]  # its eval rows may be behind its annotations
                ranges.append((_at(at), _at(at + grain)))
            if len(ranges) > MAX_RAW_RANGES:
                return _measure_spans(project, query, bucket)
            from_rollups[period] = cells
            # One part of the statement per edge, bounded by the edge's own times,
            # so the planner reads each one's index range, not the whole window's.
            for lo, hi in ranges:
                windows.append(_window_rows(project, query, period, lo, hi, period_bucket, ~tail))
            windows.append(
                _window_rows(project, query, period, start, end, period_bucket, tail_ids)
            )
        measured = _from_spans(windows, query)
        for period, cells in from_rollups.items():
            measured[period].merge(_from_rollups(project, query, plan, cells))
    return _slotted(measured, query.limit if grouped else 1)


def _slotted(measured: dict[int, _ByKey], limit: int):
    """By-key metrics as _measure_spans answers them: the top `limit` keys by
    current spans get slots 0.., the rest share OTHER_SLOT."""
    current = measured[_CURRENT]
    ranked = sorted(
        (key for key, totals in current.by_key.items() if totals.spans),
        key=lambda key: (-current.by_key[key].spans, key),
    )
    top = ranked[:limit]
    slot_of = {key: slot for slot, key in enumerate(top)}
    result = {}
    for period, by_key in measured.items():
        into = _Measured(by_bucket=by_key.by_bucket, overall=by_key.overall)
        for key, totals in by_key.by_key.items():
            _add_totals(into.by_slot.setdefault(slot_of.get(key, OTHER_SLOT), _Totals()), totals)
        for (key, at), totals in by_key.cells.items():
            slot = slot_of.get(key, OTHER_SLOT)
            _add_totals(into.cells.setdefault((slot, at), _Totals()), totals)
        result[period] = into
    return result, top, len(ranked), True


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
    bucket = None
    bucket_starts: list[datetime] = []
    if query.bucket_seconds:
        origin = _bucket_origin(query.start, query.bucket_seconds)
        bucket = (origin, query.bucket_seconds)
        bucket_starts = [
            datetime.fromtimestamp(origin + i * query.bucket_seconds, tz=UTC)
            for i in range(_bucket_count(query.start, query.end, query.bucket_seconds))
        ]
    periods, top, group_count, from_rollups = _measure(project, query, bucket)
    measured = periods[_CURRENT]
    baseline = periods[_BASELINE] if query.baseline else None
    total = measured.overall.metrics()
    window_seconds = (query.end - query.start).total_seconds()
    baseline_seconds = None
    if query.baseline:
        baseline_seconds = (query.baseline[1] - query.baseline[0]).total_seconds()

    def buckets_of(slot: int | None) -> list[dict]:
        rows = []
        for i, moment in enumerate(bucket_starts):
            cell = measured.by_bucket.get(i) if slot is None else measured.cells.get((slot, i))
            rows.append({"start": moment, **(cell or _Totals()).metrics()})
        return rows

    def entry(slot: int, key: dict | None) -> dict:
        metrics = measured.by_slot.get(slot, _Totals()).metrics()
        result = {"key": key, **metrics}
        rest_spans = total["spans"] - metrics["spans"]
        rest_errors = total["errors"] - metrics["errors"]
        rest_rate = _ratio(rest_errors, rest_spans)
        result["share_of_spans"] = _ratio(metrics["spans"], total["spans"])
        result["share_of_errors"] = _ratio(metrics["errors"], total["errors"])
        result["rest_error_rate"] = rest_rate
        result["error_rate_lift"] = _ratio(metrics["error_rate"], rest_rate)
        if baseline is not None:
            b_metrics = baseline.by_slot.get(slot, _Totals()).metrics()
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
        "group_count": group_count if grouped else 0,
        # Whole intervals came from the rollups: `traces` may count a trace twice.
        "from_rollups": from_rollups,
    }
    if baseline is not None:
        b_total = baseline.overall.metrics()
        result["total"]["baseline"] = b_total
        result["total"]["vs_baseline"] = _compare(total, b_total, window_seconds, baseline_seconds)
    if bucket_starts:
        result["total"]["buckets"] = buckets_of(None)
    if not grouped:
        return result
    for slot, raw_keys in enumerate(top):
        key = {
            dimension.label: dimension.display(None if raw == _NULL_KEY else raw)
            for dimension, raw in zip(query.group_by, raw_keys, strict=False)
        }
        result["groups"].append(entry(slot, key))
    if group_count > len(top):
        other = entry(OTHER_SLOT, None)
        other["groups"] = group_count - len(top)
        result["other"] = other
    return result
