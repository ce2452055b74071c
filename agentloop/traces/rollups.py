"""Totals of spans per hour and per five minutes, kept behind ingest, so analytics
over a long window reads a few thousand rows instead of every span.

    roll_up_new_spans()        # one batch past the mark; the number of spans rolled up
    catch_up(seconds=50)       # batches until caught up (the worker's schedule)
    rebuild(project=None)      # forget and roll everything up again

A SpanRollup row (models.py) holds what the spans of one interval add up to —
spans, errors, tokens, cost, distinct traces, the duration histogram — for one
*scope* (split by any of kind, name and status) and optionally one attribute
value. analytics.py answers a query from these rows where it can
(`analytics._measure`): for the whole intervals inside its window, from the
spans this module has rolled up; the window's edges and any span past the mark
it reads from the spans, so answers are the same either way (but `traces`,
which rows add up approximately: see SpanRollup).

Which attributes: every top-level attribute key whose values are all short
strings, integers or booleans and that has taken at most MAX_VALUES values
(`region`, `tier`, `llm.model_name`, a prompt template version, ...), up to
MAX_DIMENSIONS keys a project (RollupDimension). A key that later takes a long,
fractional or structured value, or too many values, overflows: its rows are
deleted and queries by it read spans again. Attribute rows exist at the hour
grain for components (kind and name), and at both grains for all spans.

The mark (RollupMark): every span with id <= through_id is rolled up, but the
ids in `holes`. SQLite has one writer, so ids commit in order and there are no
holes. On PostgreSQL a transaction can commit ids below ids already committed;
the gaps the mark passes are remembered as holes and their spans rolled up
when they appear (a hole is forgotten after HOLE_SECONDS: a transaction that
writes spans for longer than that would leave them out of the rollups).
Deleting spans does not change rollups: a project's rows go with the project,
and `forget_before` drops the rows of intervals that retention emptied.

Eval rows (EvalRollup): the same totals for the spans an eval judged (an
annotation of that name, or name and label), for queries filtered by an eval
label. Annotations come and change after their spans were rolled up, so eval
rows are not added to but computed again, an hour at a time: the hours a batch
of spans touched, and the hours of the spans whose annotations changed since
the roller last looked (RollupProject.evals_seen). A project's older hours are
computed going back EVAL_BACKFILL_HOURS a batch once it is ready
(`evals_ready` when done). Analytics reads from spans the hours whose
annotations changed since then.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Case, F, IntegerField, Max, Min, Q, Value, When
from django.utils import timezone

from agentloop.traces.expressions import DurationBin, TimeBucket, llm_cost
from agentloop.traces.models import (
    EvalRollup,
    RollupDimension,
    RollupMark,
    RollupProject,
    Span,
    SpanAnnotation,
    SpanRollup,
    StatusCode,
)

FINE_GRAIN, HOUR_GRAIN = 300, 3600
GRAINS = (HOUR_GRAIN, FINE_GRAIN)  # coarsest first
DIMENSION_GRAIN = HOUR_GRAIN  # attribute rows of a component exist at this grain only
# ... and of all spans at both: a window that ends now (or starts off the hour) reads
# at most five minutes of spans at each edge, not most of an hour. Per component
# that would multiply the rows by twelve for every name.
FINE_DIMENSION_SCOPES = (0,)
SCOPE_KIND, SCOPE_NAME, SCOPE_STATUS = 1, 2, 4
# A name is read with its kind, so there is no scope of name without kind.
SCOPES = (0, SCOPE_KIND, SCOPE_KIND | SCOPE_NAME, SCOPE_STATUS, SCOPE_KIND | SCOPE_STATUS, 7)
DIMENSION_SCOPES = (0, SCOPE_KIND | SCOPE_NAME)  # all spans; one component
MAX_DIMENSIONS = 32  # attribute keys rolled up per project
MAX_VALUES = 50  # values a key may take before it overflows
MAX_VALUE_TEXT = 60  # characters of a string value
BATCH = 20_000  # spans per transaction
# A project is rolled up once it holds this many spans: below, its analytics read
# the spans fast enough, and its rows would outnumber its spans (a sparse hour
# gives nearly a row per span and dimension).
MIN_SPANS = 100_000
HOLE_SECONDS = 600
EVAL_SCOPES = (0, SCOPE_KIND | SCOPE_NAME)  # eval rows: all spans; one component
# An annotation's updated_at is set before its transaction commits; the roller
# looks this far back for changes, so a commit that lands late is still seen.
EVAL_LAG = timedelta(seconds=60)
EVAL_BACKFILL_HOURS = 12  # hours of a ready project's eval rows computed per batch
MAX_HOLES = 1000
_PG_LOCK = 0x616C_726F_6C6C  # pg advisory lock: one roller at a time


def scope_of(kind: bool, name: bool, status: bool) -> int:
    """The scope whose rows are split by these columns (a name brings its kind)."""
    return (
        (SCOPE_KIND if kind or name else 0)
        | (SCOPE_NAME if name else 0)
        | (SCOPE_STATUS if status else 0)
    )


# Keys that name one thing each, hold text or numbers to sum, or repeat a column:
# nothing to break spans down by.
_SKIP_PARTS = {
    "id", "input", "output", "message", "messages", "content", "text", "prompt",
    "documents", "document", "query", "url", "token_count", "cost", "score",
    "explanation", "exception", "timestamp", "template", "variables", "arguments",
    "invocation_parameters", "embeddings",
}  # fmt: skip
_SKIP_PREFIXES = ("eval.", "evaluation.", "openinference.span.kind", "session.", "user.")


def worth_splitting(key: str) -> bool:
    """Whether rollups may split by this attribute key (its values also decide)."""
    parts = key.lower().replace("-", "_").split(".")
    if key.startswith(_SKIP_PREFIXES) or parts[-1].endswith("_id"):
        return False
    return not any(p in _SKIP_PARTS or p.isdigit() for p in parts)


def splits_by(project, key: str) -> bool:
    """Whether the project's rollups have rows by this attribute key."""
    return RollupDimension.objects.filter(project=project, key=key, overflow=False).exists()


# -- the mark ---------------------------------------------------------------------------


def mark() -> RollupMark:
    """The mark as it stands (through_id 0: nothing rolled up yet)."""
    return RollupMark.objects.order_by("pk").first() or RollupMark()


def tail_q(state: RollupMark) -> Q:
    """The spans not in the rollups: past the mark, or in one of its holes."""
    q = Q(id__gt=state.through_id)
    for low, high, _seen in state.holes:
        q |= Q(id__gte=low, id__lte=high)
    return q


def _claim_mark() -> RollupMark | None:
    """The mark, locked for this transaction; None if another roller holds it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_PG_LOCK])
            if not cursor.fetchone()[0]:
                return None
    state = RollupMark.objects.order_by("pk").first()
    if state is None:
        state = RollupMark.objects.create()
    return state


def _without(holes: list, found: list[int]) -> list:
    """The holes with these ids taken out (a range may split in two)."""
    result = []
    found = sorted(found)
    for low, high, seen in holes:
        start = low
        for span_id in found:
            if span_id < start or span_id > high:
                continue
            if span_id > start:
                result.append([start, span_id - 1, seen])
            start = span_id + 1
        if start <= high:
            result.append([start, high, seen])
    return result


def _gaps(after: int, ids: list[int], now: float) -> list:
    holes, expected = [], after + 1
    for span_id in ids:
        if span_id > expected:
            holes.append([expected, span_id - 1, now])
        expected = span_id + 1
    return holes


# -- rolling up -----------------------------------------------------------------------------


def roll_up_new_spans(limit: int = BATCH) -> int:
    """Roll up the next `limit` spans past the mark (and any that appeared in its
    holes), and one batch of a project that is being backfilled, in one
    transaction with the mark, then the eval rows of ready projects; the number
    of spans read plus eval hours backfilled (0: nothing left to do)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # Every statement below sees the same spans: one that commits meanwhile
            # is a hole now and rolled up once it is seen, never twice.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        state = _claim_mark()
        if state is None:
            return 0
        now = time.time()
        ids = list(
            Span.objects.filter(id__gt=state.through_id)
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        holes = [h for h in state.holes if now - h[2] < HOLE_SECONDS]
        in_holes: list[int] = []
        if holes:
            hole_q = Q()
            for low, high, _seen in holes:
                hole_q |= Q(id__gte=low, id__lte=high)
            in_holes = list(Span.objects.filter(hole_q).values_list("id", flat=True))
            holes = _without(holes, in_holes)
        if ids and connection.vendor == "postgresql":
            holes += _gaps(state.through_id, ids, now)
        holes = holes[-MAX_HOLES:]
        touched: dict[int, set[int]] = {}  # project -> hours whose spans this batch added
        if ids or in_holes:
            chunk = Q(id__in=in_holes)
            if ids:
                chunk |= Q(id__gt=state.through_id, id__lte=ids[-1])
            projects = (
                Span.objects.filter(chunk).order_by().values_list("project_id", flat=True)
            ).distinct()
            for project_id in list(projects):
                if _rolled_up(project_id, state):
                    touched[project_id] = _roll_up(project_id, chunk)
        backfilled = _backfill_one_batch(limit)
        if ids or holes != state.holes:
            state.through_id = ids[-1] if ids else state.through_id
            state.holes = holes
            state.save()
        evals_backfilled = _keep_evals(state, touched)
    return len(ids) + len(in_holes) + backfilled + evals_backfilled


def _rolled_up(project_id: int, state: RollupMark) -> bool:
    """Whether the project's spans are rolled up: it was, or it has just reached
    MIN_SPANS (then its older spans, up to the mark, are backfilled)."""
    if RollupProject.objects.filter(project_id=project_id).exists():
        return True
    if Span.objects.filter(project_id=project_id).count() < MIN_SPANS:
        return False
    RollupProject.objects.create(
        project_id=project_id,
        backfill_below=state.through_id + 1,
        backfill_skip=state.holes,
    )
    return True


def _backfill_one_batch(limit: int) -> int:
    """Roll up one batch of a qualifying project's older spans; when none is left
    it is ready. The spans it skips (the mark's holes) the roller adds itself."""
    pending = RollupProject.objects.filter(ready=False).order_by("pk").first()
    if pending is None:
        return 0
    skip = Q()
    for low, high, _seen in pending.backfill_skip:
        skip |= Q(id__gte=low, id__lte=high)
    ids = list(
        Span.objects.filter(
            project_id=pending.project_id,
            id__gt=pending.backfilled_through,
            id__lt=pending.backfill_below,
        )
        .exclude(skip)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        pending.ready = True
        pending.save(update_fields=["ready"])
        return 0
    _roll_up(
        pending.project_id,
        Q(id__gt=pending.backfilled_through, id__lte=ids[-1]) & ~skip,
    )
    pending.backfilled_through = ids[-1]
    pending.save(update_fields=["backfilled_through"])
    return len(ids)


def is_ready(project) -> bool:
    """Whether analytics may read the project's rollups."""
    return RollupProject.objects.filter(project=project, ready=True).exists()


def catch_up(seconds: float = 50.0, limit: int = BATCH) -> int:
    """Roll up batches until none is left or `seconds` have passed (the worker's
    minutely schedule; the rest waits for the next minute). Spans rolled up."""
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        done = roll_up_new_spans(limit)
        total += done
        if not done:
            break
    return total


def rebuild_forget() -> None:
    """Forget every rollup and the mark: the next batches start from the first span."""
    with transaction.atomic():
        SpanRollup.objects.all().delete()
        EvalRollup.objects.all().delete()
        RollupDimension.objects.all().delete()
        RollupProject.objects.all().delete()
        RollupMark.objects.all().delete()


def rebuild(project=None) -> int:
    """Forget the rollups (of one project, or all) and roll every span up again
    (a project: its rows go, and the roller backfills it as a new one)."""
    if project is None:
        rebuild_forget()
    else:
        with transaction.atomic():
            RollupProject.objects.filter(project=project).delete()
            SpanRollup.objects.filter(project=project).delete()
            EvalRollup.objects.filter(project=project).delete()
            RollupDimension.objects.filter(project=project).delete()
    return catch_up(seconds=float("inf"))


def forget_before(project, moment) -> int:
    """Drop the project's rows of intervals that end at or before `moment` (after
    retention deleted their spans). The number of rows dropped."""
    cutoff = int(moment.timestamp())
    deleted = 0
    for grain in GRAINS:
        for model in (SpanRollup, EvalRollup):
            deleted += model.objects.filter(
                project=project, grain=grain, at__lte=cutoff - grain
            ).delete()[0]
    return deleted


@dataclass
class _Cell:
    spans: int = 0
    errors: int = 0
    prompt: int = 0
    completion: int = 0
    total: int = 0
    cost: float = 0.0
    cost_spans: int = 0
    traces: int = 0
    bins: dict = field(default_factory=dict)  # bin -> [spans, min_ms, max_ms]

    def add_bin(self, index, spans, low, high):
        cell = self.bins.get(index)
        if cell is None:
            self.bins[index] = [spans, low, high]
        else:
            cell[0] += spans
            cell[1] = min(cell[1], low)
            cell[2] = max(cell[2], high)

    def merge_row(self, row: SpanRollup) -> None:
        self.spans += row.spans
        self.errors += row.errors
        self.prompt += row.prompt_tokens
        self.completion += row.completion_tokens
        self.total += row.total_tokens
        self.cost += row.cost
        self.cost_spans += row.cost_spans
        self.traces += row.traces
        for index, spans, low, high in json.loads(row.histogram):
            self.add_bin(index, spans, low, high)

    def histogram(self) -> str:
        return json.dumps([[i, *self.bins[i]] for i in sorted(self.bins)], separators=(",", ":"))


def _roll_up(project_id: int, chunk: Q) -> set[int]:
    """Add the spans of `chunk` in this project to its rollup rows.

    The database hands over one slim row per span and one (span, key, value) row
    per tracked attribute it has; the cells are added up here: first per finest
    cell (five minutes, kind, name, status; an hour, kind, name, attribute value),
    then each scope from those, so a span costs one dictionary update. Returns the
    hours (Unix seconds) the chunk's spans fall in."""
    spans = Span.objects.filter(chunk, project_id=project_id).order_by()
    keys = _dimensions(project_id, spans)
    sql, params = _slim_rows(spans)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        slim = cursor.fetchall()
        values = []
        if keys:
            cursor.execute(*_dimension_rows(spans, keys))
            values = cursor.fetchall()
    # A slim row: span id, five minutes, kind, name, status, then _Partial.add's
    # arguments (trace, bin, error, tokens, cost, duration).
    finest: dict[tuple, _Partial] = defaultdict(_Partial)
    by_id = {}
    for span_id, *row in slim:
        by_id[span_id] = row
        finest[tuple(row[:4])].add(*row[4:])
    by_value: dict[tuple, _Partial] = defaultdict(_Partial)
    for span_id, dim_key, dim_value in values:
        row = by_id[span_id]
        by_value[(row[0], row[1], row[2], dim_key, canonical(dim_value))].add(*row[4:])
    cells: dict[tuple, _Partial] = {}

    def into(key, part):
        cell = cells.get(key)
        if cell is None:
            cells[key] = cell = _Partial()
        cell.merge(part)

    for (fine, kind, name, status), part in finest.items():
        for grain, at in (
            (FINE_GRAIN, fine * FINE_GRAIN),
            (HOUR_GRAIN, fine * FINE_GRAIN // HOUR_GRAIN * HOUR_GRAIN),
        ):
            for scope in SCOPES:
                into(
                    (
                        grain, at, scope,
                        kind if scope & SCOPE_KIND else "",
                        name if scope & SCOPE_NAME else "",
                        status if scope & SCOPE_STATUS else "",
                        "", "",
                    ),
                    part,
                )  # fmt: skip
    for (fine, kind, name, dim_key, dim_value), part in by_value.items():
        hour = fine * FINE_GRAIN // HOUR_GRAIN * HOUR_GRAIN
        for scope in DIMENSION_SCOPES:
            into(
                (
                    DIMENSION_GRAIN, hour, scope,
                    kind if scope & SCOPE_KIND else "",
                    name if scope & SCOPE_NAME else "",
                    "", dim_key, dim_value,
                ),
                part,
            )  # fmt: skip
        for scope in FINE_DIMENSION_SCOPES:
            into((FINE_GRAIN, fine * FINE_GRAIN, scope, "", "", "", dim_key, dim_value), part)
    result = {key: part.cell() for key, part in cells.items()}
    _store(project_id, _drop_overflowing(project_id, result, keys))
    return {fine * FINE_GRAIN // HOUR_GRAIN * HOUR_GRAIN for fine, *_ in finest}


class _Partial:
    """A cell being added up: its sums, histogram and the set of its traces."""

    __slots__ = ("spans", "errors", "prompt", "completion", "total", "cost", "cost_spans",
                 "bins", "traces")  # fmt: skip

    def __init__(self):
        self.spans = self.errors = self.prompt = self.completion = self.total = 0
        self.cost, self.cost_spans = 0.0, 0
        self.bins: dict = {}
        self.traces: set = set()

    def add(self, trace, index, err, prompt, completion, total, cost, dur):
        self.spans += 1
        self.errors += err
        self.prompt += prompt or 0
        self.completion += completion or 0
        self.total += total or 0
        if cost is not None:
            self.cost += cost
            self.cost_spans += 1
        self.traces.add(trace)
        cell = self.bins.get(index)
        if cell is None:
            self.bins[index] = [1, dur, dur]
        else:
            cell[0] += 1
            if dur < cell[1]:
                cell[1] = dur
            elif dur > cell[2]:
                cell[2] = dur

    def merge(self, other: _Partial) -> None:
        self.spans += other.spans
        self.errors += other.errors
        self.prompt += other.prompt
        self.completion += other.completion
        self.total += other.total
        self.cost += other.cost
        self.cost_spans += other.cost_spans
        self.traces |= other.traces
        for index, (n, low, high) in other.bins.items():
            cell = self.bins.get(index)
            if cell is None:
                self.bins[index] = [n, low, high]
            else:
                cell[0] += n
                cell[1] = min(cell[1], low)
                cell[2] = max(cell[2], high)

    def cell(self) -> _Cell:
        return _Cell(
            spans=self.spans,
            errors=self.errors,
            prompt=self.prompt,
            completion=self.completion,
            total=self.total,
            cost=self.cost,
            cost_spans=self.cost_spans,
            traces=len(self.traces),
            bins=self.bins,
        )


def canonical(value_json: str | None) -> str | None:
    """An attribute value's JSON text in one spelling (the databases and SQLite's
    `->` and json_each spell non-ASCII strings differently)."""
    if value_json is None:
        return None
    try:
        return json.dumps(json.loads(value_json), separators=(",", ":"))
    except ValueError:
        return value_json


def _dimensions(project_id: int, spans) -> list[str]:
    """The attribute keys to split this chunk by: the project's, updated with the
    keys this chunk shows (new good ones join; one with a bad value overflows)."""
    known = {d.key: d for d in RollupDimension.objects.filter(project_id=project_id)}
    ids_sql, ids_params = spans.values("id").query.sql_with_params()
    if connection.vendor == "postgresql":
        sql = f"""
SELECT j.key, SUM(CASE
    WHEN jsonb_typeof(j.value) = 'string' AND length(j.value #>> '{{}}') <= %s THEN 0
    WHEN jsonb_typeof(j.value) = 'boolean' THEN 0
    WHEN jsonb_typeof(j.value) = 'number' AND j.value::text ~ '^-?[0-9]+$' THEN 0
    ELSE 1 END), COUNT(DISTINCT j.value), COUNT(*),
    SUM(CASE WHEN jsonb_typeof(j.value) = 'object' THEN 1 ELSE 0 END)
FROM traces_span s CROSS JOIN LATERAL jsonb_each(s.attributes) AS j
WHERE s.id IN ({ids_sql}) GROUP BY j.key ORDER BY COUNT(*) DESC, j.key"""
    else:
        sql = f"""
SELECT j.key, SUM(CASE
    WHEN j.type = 'text' AND length(j.value) <= %s THEN 0
    WHEN j.type IN ('integer', 'true', 'false') THEN 0
    ELSE 1 END), COUNT(DISTINCT j.value), COUNT(*),
    SUM(CASE WHEN j.type = 'object' THEN 1 ELSE 0 END)
FROM traces_span s, json_each(s.attributes) AS j
WHERE s.id IN ({ids_sql}) GROUP BY j.key ORDER BY COUNT(*) DESC, j.key"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [MAX_VALUE_TEXT, *ids_params])
        seen = cursor.fetchall()
    tracked = [k for k, d in known.items() if not d.overflow]
    # A key under an object ({"llm": {"model_name": ...}}) is matched nested too by
    # analytics (queries._key_paths); its flat rows alone would miss those spans.
    nested = tuple(f"{key}." for key, *_, objects in seen if objects)
    # The commonest keys first: when MAX_DIMENSIONS are taken, the rarer stay out.
    for key, bad, distinct, _present, _objects in seen:
        dimension = known.get(key)
        if dimension is not None and dimension.overflow:
            continue
        too_many = (
            bool(bad)
            or distinct > MAX_VALUES
            or len(key) > 200
            or not worth_splitting(key)
            or key.startswith(nested or ("\0",))
        )
        if dimension is None:
            if not too_many and len(tracked) >= MAX_DIMENSIONS:
                too_many = True
            known[key] = RollupDimension.objects.create(
                project_id=project_id, key=key, overflow=too_many
            )
            if not too_many:
                tracked.append(key)
        elif too_many:
            _overflow(dimension)
            tracked.remove(key)
    for key in [k for k in tracked if nested and k.startswith(nested)]:
        _overflow(known[key])
        tracked.remove(key)
    return sorted(tracked)


def _overflow(dimension: RollupDimension) -> None:
    dimension.overflow = True
    dimension.values = []
    dimension.save(update_fields=["overflow", "values"])
    SpanRollup.objects.filter(project_id=dimension.project_id, dim_key=dimension.key).delete()
    EvalRollup.objects.filter(project_id=dimension.project_id, dim_key=dimension.key).delete()


def _drop_overflowing(project_id: int, cells: dict, keys: list[str]) -> dict:
    """Record each key's values; a key past MAX_VALUES overflows and its cells go."""
    values: dict[str, set] = defaultdict(set)
    for key in cells:
        if key[6]:
            values[key[6]].add(key[7])
    gone = set()
    for dimension in RollupDimension.objects.filter(project_id=project_id, key__in=list(values)):
        merged = set(dimension.values) | values[dimension.key]
        if len(merged) > MAX_VALUES:
            _overflow(dimension)
            gone.add(dimension.key)
        elif len(merged) != len(dimension.values):
            dimension.values = sorted(merged)
            dimension.save(update_fields=["values"])
    if not gone:
        return cells
    return {key: cell for key, cell in cells.items() if key[6] not in gone}


def _slim_rows(spans) -> tuple[str, tuple]:
    """SQL of one slim row per span: its five minutes, columns and what adds up."""
    annotations = {
        "r_id": F("id"),
        "r_fine": TimeBucket(0, FINE_GRAIN),
        "r_kind": F("kind"),
        "r_name": F("name"),
        "r_status": F("status_code"),
        "r_trace": F("trace_id"),
        "r_bin": DurationBin(),
        "r_error": Case(
            When(status_code=StatusCode.ERROR, then=Value(1)),
            default=Value(0),
            output_field=IntegerField(),
        ),
        "r_prompt": F("prompt_tokens"),
        "r_completion": F("completion_tokens"),
        "r_total": F("total_tokens"),
        "r_cost": llm_cost(),
        "r_duration": F("duration_ms"),
    }
    return spans.annotate(**annotations).values(*annotations).query.sql_with_params()


def _dimension_rows(spans, keys: list[str]) -> tuple[str, list]:
    """SQL of one (span id, key, value's JSON text) row per tracked key a span
    has; its attributes are parsed once."""
    ids_sql, ids_params = spans.values("id").query.sql_with_params()
    marks = ", ".join(["%s"] * len(keys))
    if connection.vendor == "postgresql":
        sql = (
            "SELECT s.id, j.key, j.value::text FROM traces_span s "
            "CROSS JOIN LATERAL jsonb_each(s.attributes) AS j "
            f"WHERE s.id IN ({ids_sql}) AND j.key IN ({marks})"
        )
    else:
        sql = (
            "SELECT s.id, j.key, CASE j.type WHEN 'text' THEN json_quote(j.value) "
            "WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST(j.value AS TEXT) END "
            f"FROM traces_span s, json_each(s.attributes) AS j "
            f"WHERE s.id IN ({ids_sql}) AND j.key IN ({marks})"
        )
    return sql, [*ids_params, *keys]


_KEY_FIELDS = ("grain", "at", "scope", "kind", "name", "status_code", "dim_key", "dim_value")


def _store(project_id: int, cells: dict[tuple, _Cell]) -> None:
    """Add the cells to the rows already there: the rows of the same cells are
    read, merged, deleted and written again (the mark's lock keeps out any other
    writer)."""
    if not cells:
        return
    by_grain: dict[int, set[int]] = defaultdict(set)
    for key in cells:
        by_grain[key[0]].add(key[1])
    existing = []
    for grain, ats in by_grain.items():
        existing += SpanRollup.objects.filter(
            project_id=project_id, grain=grain, at__gte=min(ats), at__lte=max(ats)
        )
    stale = []
    for row in existing:
        key = tuple(getattr(row, name) for name in _KEY_FIELDS)
        cell = cells.get(key)
        if cell is not None:
            cell.merge_row(row)
            stale.append(row.pk)
    for start in range(0, len(stale), 500):
        SpanRollup.objects.filter(pk__in=stale[start : start + 500]).delete()
    SpanRollup.objects.bulk_create(
        [
            SpanRollup(
                project_id=project_id,
                **dict(zip(_KEY_FIELDS, key, strict=True)),
                **_cell_columns(cell),
            )
            for key, cell in cells.items()
        ],
        batch_size=1000,
    )


# -- eval rows ----------------------------------------------------------------------------


def evals_ready(project) -> RollupProject | None:
    """The project's rollup state if analytics may read its eval rows, else None."""
    return RollupProject.objects.filter(project=project, ready=True, evals_ready=True).first()


def changed_eval_hours(project, state: RollupProject, eval_name: str) -> set[int]:
    """The hours (Unix seconds) of spans whose `eval_name` annotations changed
    since the roller last looked: their eval rows may be behind, so analytics
    reads those hours from spans."""
    since = (state.evals_seen or datetime.fromtimestamp(0, tz=UTC)) - EVAL_LAG
    starts = (
        SpanAnnotation.objects.filter(project=project, updated_at__gt=since, name=eval_name)
        .values_list("span__start_time", flat=True)
        .distinct()
    )
    return {_hour_of(moment) for moment in starts}


def _hour_of(moment: datetime) -> int:
    return int(moment.timestamp()) // HOUR_GRAIN * HOUR_GRAIN


def _keep_evals(state: RollupMark, touched: dict[int, set[int]]) -> int:
    """Bring the eval rows of ready projects up to date with this batch (`state`
    is the mark as it now stands): the hours its spans touched, the hours of the
    spans whose annotations changed, and one stretch of a project's older hours
    (the number of those backfilled hours)."""
    now = timezone.now()
    backfilled = 0
    for rolled in RollupProject.objects.filter(ready=True):
        hours = set(touched.get(rolled.project_id, ()))
        if rolled.evals_seen is not None:
            changed = SpanAnnotation.objects.filter(
                project_id=rolled.project_id, updated_at__gt=rolled.evals_seen - EVAL_LAG
            ).values_list("span__start_time", flat=True)
            hours |= {_hour_of(moment) for moment in changed.distinct()}
        if not rolled.evals_ready:
            older = _backfill_eval_hours(rolled, now)
            hours |= older
            backfilled += len(older)
        _compute_evals(rolled.project_id, hours, state)
        rolled.evals_seen = now
        rolled.save(update_fields=["evals_seen", "evals_from", "evals_ready"])
    return backfilled


def _backfill_eval_hours(rolled: RollupProject, now: datetime) -> set[int]:
    """The next EVAL_BACKFILL_HOURS older hours of a project to compute, going
    back from the newest; marks the project evals_ready once past its oldest span.
    Hours at or after the first `evals_from` need none: any span that lands
    there later is in a batch, and the batch computes its hours."""
    spans = Span.objects.filter(project_id=rolled.project_id)
    if rolled.evals_from is None:
        newest = spans.aggregate(at=Max("start_time"))["at"]
        rolled.evals_from = _hour_of(max(newest or now, now)) + HOUR_GRAIN
    oldest = spans.aggregate(at=Min("start_time"))["at"]
    low = rolled.evals_from - EVAL_BACKFILL_HOURS * HOUR_GRAIN
    hours = set(range(low, rolled.evals_from, HOUR_GRAIN))
    rolled.evals_from = low
    if oldest is None or _hour_of(oldest) >= low:
        rolled.evals_ready = True
    return hours


def _compute_evals(project_id: int, hours: set[int], state: RollupMark) -> None:
    """Compute the project's eval rows of these hours again, from their rolled-up
    spans (not in `state`'s tail) and those spans' annotations as they are now."""
    if not hours:
        return
    ordered = sorted(hours)
    for start in range(0, len(ordered), 24):
        _compute_eval_hours(project_id, ordered[start : start + 24], state)


def _compute_eval_hours(project_id: int, hours: list[int], state: RollupMark) -> None:
    in_hours = Q()
    for hour in hours:
        in_hours |= Q(at__gte=hour, at__lt=hour + HOUR_GRAIN)
    EvalRollup.objects.filter(in_hours, project_id=project_id).delete()
    in_time = Q()
    for hour in hours:
        in_time |= Q(
            start_time__gte=datetime.fromtimestamp(hour, tz=UTC),
            start_time__lt=datetime.fromtimestamp(hour + HOUR_GRAIN, tz=UTC),
        )
    judged = SpanAnnotation.objects.filter(project_id=project_id).values("span_id")
    spans = (
        Span.objects.filter(in_time, project_id=project_id, id__in=judged)
        .exclude(tail_q(state))
        .order_by()
    )
    ids_sql, ids_params = spans.values("id").query.sql_with_params()
    evals: dict[int, set[tuple[str, str]]] = defaultdict(set)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.span_id, a.name, a.label FROM traces_spanannotation a "
            f"WHERE a.project_id = %s AND a.span_id IN ({ids_sql})",
            [project_id, *ids_params],
        )
        for span_id, name, label in cursor.fetchall():
            evals[span_id] |= {(name, ""), (name, label)}
        if not evals:
            return
        cursor.execute(*_slim_rows(spans))
        slim = cursor.fetchall()
        keys = sorted(
            RollupDimension.objects.filter(project_id=project_id, overflow=False).values_list(
                "key", flat=True
            )
        )
        values = []
        if keys:
            cursor.execute(*_dimension_rows(spans, keys))
            values = cursor.fetchall()
    parts: dict[tuple, _Partial] = defaultdict(_Partial)
    by_id = {}
    for span_id, fine, kind, name, _status, *row in slim:
        by_id[span_id] = (fine, kind, name)
        hour = fine * FINE_GRAIN // HOUR_GRAIN * HOUR_GRAIN
        for eval_name, eval_label in evals.get(span_id, ()):
            for grain, at in ((FINE_GRAIN, fine * FINE_GRAIN), (HOUR_GRAIN, hour)):
                for scope in EVAL_SCOPES:
                    component = (kind, name) if scope else ("", "")
                    key = (eval_name, eval_label, grain, at, scope, *component, "", "")
                    parts[key].add(*row)
    rows_of = {span_id: row for span_id, _f, _k, _n, _s, *row in slim}
    for span_id, dim_key, dim_value in values:
        fine, kind, name = by_id[span_id]
        hour = fine * FINE_GRAIN // HOUR_GRAIN * HOUR_GRAIN
        value = canonical(dim_value)
        for eval_name, eval_label in evals.get(span_id, ()):
            for scope in EVAL_SCOPES:
                component = (kind, name) if scope else ("", "")
                key = (eval_name, eval_label, HOUR_GRAIN, hour, scope, *component, dim_key, value)
                parts[key].add(*rows_of[span_id])
    EvalRollup.objects.bulk_create(
        [
            EvalRollup(
                project_id=project_id,
                **dict(zip(_EVAL_KEY_FIELDS, key, strict=True)),
                **_cell_columns(part.cell()),
            )
            for key, part in parts.items()
        ],
        batch_size=1000,
    )


_EVAL_KEY_FIELDS = (
    "eval_name", "eval_label", "grain", "at", "scope", "kind", "name", "dim_key", "dim_value",
)  # fmt: skip


def _cell_columns(cell: _Cell) -> dict:
    return {
        "spans": cell.spans,
        "errors": cell.errors,
        "prompt_tokens": cell.prompt,
        "completion_tokens": cell.completion,
        "total_tokens": cell.total,
        "cost": cell.cost,
        "cost_spans": cell.cost_spans,
        "traces": cell.traces,
        "histogram": cell.histogram(),
    }
