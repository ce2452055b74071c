"""Reading spans: filters, keyset pagination and the trace tree.

The REST API and the HTML traces explorer both read spans through this module,
so a filter means the same thing everywhere. Parsing is separate from querying:
`parse_span_filter` turns request parameters into a `SpanFilter` (or raises
`InvalidFilter` naming the bad parameter), `filter_spans` turns a `SpanFilter`
into a queryset, `page_spans` cuts one page from it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from django.db import connection
from django.db.models import Exists, F, JSONField, OuterRef, Q, QuerySet, Value
from django.db.models.fields.json import KeyTransform
from django.utils.dateparse import parse_date, parse_datetime

from agentloop.traces import attribute_index
from agentloop.traces.expressions import HasExceptionType, ListHas
from agentloop.traces.models import Span, SpanAnnotation, SpanKind, StatusCode

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Dotted attribute keys with more parts are matched flat or fully nested only.
MAX_SPLIT_PARTS = 5


class InvalidFilter(ValueError):
    """A request parameter we cannot use. The message names the parameter."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else "invalid filter"


@dataclass
class SpanFilter:
    start: datetime | None = None  # spans that started at or after this time
    end: datetime | None = None  # ... and strictly before this one
    kind: str | None = None
    status: str | None = None
    name: str | None = None
    trace_id: str | None = None
    trace_ids: list[str] = field(default_factory=list)  # any of these (Phoenix's trace_id)
    root: bool | None = None  # True: only roots; False: only children
    annotation_name: str | None = None
    annotation_label: str | None = None
    attrs: list[tuple[str, str]] = field(default_factory=list)
    session_id: str | None = None
    user_id: str | None = None
    min_duration_ms: float | None = None  # spans that took at least this long
    max_duration_ms: float | None = None  # ... and at most this long
    exception_type: str | None = None  # an `exception` event with this exception.type
    attrs_missing: list[str] = field(default_factory=list)  # spans without these attribute keys

    @property
    def is_empty(self) -> bool:
        return self == SpanFilter()


# -- parsing -------------------------------------------------------------------


def _getlist(params, key: str) -> list[str]:
    """Values of a repeatable parameter from a QueryDict or a plain dict. A NUL
    character is refused: PostgreSQL text cannot hold one (it would be a 500)."""
    if hasattr(params, "getlist"):
        values = [v for v in params.getlist(key)]
    else:
        value = params.get(key)
        if value is None:
            return []
        values = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    if any("\x00" in v for v in values):
        raise InvalidFilter(f"{key}: must not contain a NUL character")
    return values


def _get(params, key: str) -> str | None:
    """The last value of a parameter, stripped; None when absent or blank."""
    values = _getlist(params, key)
    if not values:
        return None
    value = str(values[-1]).strip()
    return value or None


def parse_time(value: str, param: str) -> datetime:
    """An ISO 8601 time or date; naive times are UTC."""
    # A `+` in an unencoded query string arrives as a space: "…T10:00:00 02:00".
    candidate = value.replace(" ", "+") if "T" in value else value
    try:
        parsed = parse_datetime(candidate)
    except ValueError:
        parsed = None
    if parsed is None:
        try:
            day = parse_date(value)
        except ValueError:
            day = None
        if day is None:
            raise InvalidFilter(f"{param}: not an ISO 8601 time: {value!r}")
        parsed = datetime.combine(day, time.min)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _parse_choice(value: str | None, param: str, choices) -> str | None:
    if value is None:
        return None
    upper = value.upper()
    if upper not in choices:
        raise InvalidFilter(f"{param}: must be one of {', '.join(choices)}, not {value!r}")
    return upper


def _parse_bool(value: str | None, param: str) -> bool | None:
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidFilter(f"{param}: must be true or false, not {value!r}")


def _parse_duration_ms(value: str | None, param: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise InvalidFilter(f"{param}: must be a number of milliseconds, not {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidFilter(f"{param}: must be a number of milliseconds >= 0, not {value!r}")
    return number


def _parse_attr(value: str) -> tuple[str, str]:
    key, sep, wanted = value.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidFilter(f"attr: expected key=value, not {value!r}")
    return key, wanted


def parse_span_filter(params) -> SpanFilter:
    """Request parameters (a QueryDict or a dict) to a SpanFilter.

    Unknown parameters are ignored (`limit` and `cursor` belong to pagination).
    """
    span_filter = SpanFilter()
    start = _get(params, "start")
    if start is not None:
        span_filter.start = parse_time(start, "start")
    end = _get(params, "end")
    if end is not None:
        span_filter.end = parse_time(end, "end")
    if span_filter.start and span_filter.end and span_filter.end <= span_filter.start:
        raise InvalidFilter("end: must be after start")
    span_filter.kind = _parse_choice(_get(params, "kind"), "kind", SpanKind.values)
    span_filter.status = _parse_choice(_get(params, "status"), "status", StatusCode.values)
    span_filter.name = _get(params, "name")
    span_filter.trace_id = _get(params, "trace_id")
    span_filter.root = _parse_bool(_get(params, "root"), "root")
    annotation = _get(params, "annotation")
    if annotation is not None:
        name, sep, label = annotation.partition(":")
        if not name.strip():
            raise InvalidFilter(f"annotation: expected name or name:label, not {annotation!r}")
        span_filter.annotation_name = name.strip()
        span_filter.annotation_label = label.strip() if sep else None
    span_filter.attrs = [_parse_attr(v) for v in _getlist(params, "attr") if str(v).strip()]
    span_filter.session_id = _get(params, "session_id")
    span_filter.user_id = _get(params, "user_id")
    span_filter.min_duration_ms = _parse_duration_ms(
        _get(params, "min_duration_ms"), "min_duration_ms"
    )
    span_filter.max_duration_ms = _parse_duration_ms(
        _get(params, "max_duration_ms"), "max_duration_ms"
    )
    if (
        span_filter.min_duration_ms is not None
        and span_filter.max_duration_ms is not None
        and span_filter.max_duration_ms < span_filter.min_duration_ms
    ):
        raise InvalidFilter("max_duration_ms: must not be below min_duration_ms")
    span_filter.exception_type = _get(params, "exception_type")
    span_filter.attrs_missing = [
        str(v).strip() for v in _getlist(params, "attr_missing") if str(v).strip()
    ]
    return span_filter


def parse_limit(value, default: int = DEFAULT_LIMIT) -> int:
    if value is None or str(value).strip() == "":
        return default
    try:
        limit = int(str(value).strip())
    except ValueError:
        raise InvalidFilter(f"limit: must be a whole number, not {value!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidFilter(f"limit: must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


# -- querying ------------------------------------------------------------------


def _json_candidates(raw: str) -> list:
    """What `attr=key=raw` may match: the string itself, and the number or
    boolean it spells, since a query string cannot say which type was meant."""
    candidates: list = [raw]
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        candidates.append(lowered == "true")
    else:
        try:
            candidates.append(int(raw))
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                pass
            else:
                if number == number and number not in (float("inf"), float("-inf")):
                    candidates.append(number)
    return candidates


def _key_paths(key: str) -> list[list[str]]:
    """The JSON paths a dotted key may be stored under: flat, fully nested, or
    (for keys of up to MAX_SPLIT_PARTS parts) anything between, e.g.
    {"llm.invocation_parameters": {"stream": true}}."""
    parts = key.split(".")
    if len(parts) == 1 or any(not part for part in parts):
        return [[key]]
    if len(parts) > MAX_SPLIT_PARTS:
        return [[key], parts]
    paths = []
    for mask in range(2 ** (len(parts) - 1)):  # bit i set: split after part i
        path, current = [], parts[0]
        for i, part in enumerate(parts[1:]):
            if mask >> i & 1:
                path.append(current)
                current = part
            else:
                current = f"{current}.{part}"
        paths.append(path + [current])
    return paths


def _attr_filter(key: str, raw: str) -> tuple[Q, bool]:
    """`attr=key=raw`: the exact JSON match, narrowed first by the attribute
    index where it can answer (attribute_index.py); the JSON match alone
    otherwise, which reads spans newest first until it has a page. The flag
    says whether the index narrowed it."""
    exact = _attr_q(key, raw)
    tokens = attribute_index.filter_tokens(key, _json_candidates(raw))
    if tokens is None:
        return exact, False
    narrowed = attribute_index.narrowing(tokens)
    if narrowed is None:
        return exact, False
    return narrowed & exact, True


def _attr_q(key: str, raw: str) -> Q:
    """Match attribute `key` against `raw`, on SQLite and PostgreSQL alike.

    OpenInference keys are dotted (`llm.model_name`). Ingest may keep them
    flat ({"llm.model_name": …}) or nested ({"llm": {"model_name": …}}); both
    match. KeyTransform is used directly (not `attributes__<key>` kwargs) so a
    key is never split on `__` and its dots are quoted, not read as a path.
    A list matches when one of its items equals the value (`attr=tag.tags=foo`
    finds ["foo", "bar"]): OpenInference sends tags and other sets as lists,
    whose positions mean nothing to the person filtering.
    """
    paths = _key_paths(key)
    candidates = _json_candidates(raw)
    q = Q()
    for path in paths:
        expression = "attributes"
        for part in path:
            expression = KeyTransform(part, expression)
        # The key transform's own `exact` compares JSON values (typed), which
        # Django implements for both backends.
        exact = expression.get_lookup("exact")
        for candidate in candidates:
            q |= Q(exact(expression, Value(candidate, output_field=JSONField())))
    # After the plain comparisons, which SQLite tries first and most spans answer.
    return q | Q(ListHas(paths, candidates))


def _attr_missing_q(key: str) -> Q:
    """Spans that have attribute `key` under none of the paths it may be stored at
    (e.g. a retriever span without `retrieval.documents.0.document.id`: no documents)."""
    q = Q()
    for path in _key_paths(key):
        expression = "attributes"
        for part in path:
            expression = KeyTransform(part, expression)
        q &= Q(expression.get_lookup("isnull")(expression, True))
    return q


def filter_spans(project, span_filter: SpanFilter | None = None) -> QuerySet[Span]:
    """The project's spans matching `span_filter`, newest first (`-start_time`, `-id`).

    Every single-column filter has a (project, column, -start_time) index, and
    `root=true` has a partial index; an attribute filter on a short value uses
    the attribute index; the annotation filters, and attribute values the
    index cannot answer, are checked row by row along one of those.
    """
    span_filter = span_filter or SpanFilter()
    attr_filters = [_attr_filter(key, raw) for key, raw in span_filter.attrs]
    trace_ids = [*([span_filter.trace_id] if span_filter.trace_id else []), *span_filter.trace_ids]
    by_id = connection.vendor == "sqlite" and (
        bool(trace_ids) or any(narrowed for _, narrowed in attr_filters)
    )
    if by_id:
        # The attribute index named at most a few thousand spans by id, or a
        # trace's ids come from the (project, trace_id, span_id) index. Written
        # so that no index serves it, the project condition cannot tempt SQLite
        # (without statistics, it guesses ten rows per project) into walking
        # the project's spans in page order instead of reading those few by id:
        # at 200k spans that walk took 60-400 ms for one trace.
        project_id = getattr(project, "pk", project)
        qs = Span.objects.alias(project_unindexed=F("project_id") + 0).filter(
            project_unindexed=project_id
        )
    else:
        qs = Span.objects.filter(project=project)
    if span_filter.start is not None:
        qs = qs.filter(start_time__gte=span_filter.start)
    if span_filter.end is not None:
        qs = qs.filter(start_time__lt=span_filter.end)
    if span_filter.kind:
        qs = qs.filter(kind=span_filter.kind)
    if span_filter.status:
        qs = qs.filter(status_code=span_filter.status)
    if span_filter.name:
        qs = qs.filter(name=span_filter.name)
    if span_filter.trace_id:
        qs = qs.filter(trace_id=span_filter.trace_id)
    if span_filter.trace_ids:
        qs = qs.filter(trace_id__in=span_filter.trace_ids)
    if by_id and trace_ids:
        in_traces = Span.objects.filter(project=project, trace_id__in=trace_ids)
        qs = qs.filter(id__in=in_traces.values("id"))
    if span_filter.root is True:
        qs = qs.filter(parent_span_id="")
    elif span_filter.root is False:
        qs = qs.exclude(parent_span_id="")
    if span_filter.session_id:
        qs = qs.filter(session_id=span_filter.session_id)
    if span_filter.user_id:
        qs = qs.filter(user_id=span_filter.user_id)
    if span_filter.annotation_name:
        labels = SpanAnnotation.objects.filter(
            span=OuterRef("pk"), project=project, name=span_filter.annotation_name
        )
        if span_filter.annotation_label is not None:
            labels = labels.filter(label=span_filter.annotation_label)
        qs = qs.filter(Exists(labels))
    if span_filter.min_duration_ms is not None:
        qs = qs.filter(duration_ms__gte=span_filter.min_duration_ms)
    if span_filter.max_duration_ms is not None:
        qs = qs.filter(duration_ms__lte=span_filter.max_duration_ms)
    if span_filter.exception_type:
        qs = qs.filter(HasExceptionType(span_filter.exception_type))
    for condition, _ in attr_filters:
        qs = qs.filter(condition)
    for key in span_filter.attrs_missing:
        qs = qs.filter(_attr_missing_q(key))
    return qs.order_by("-start_time", "-id")


# -- keyset pagination ---------------------------------------------------------


def encode_cursor(moment: datetime, pk: int) -> str:
    payload = json.dumps([moment.isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment_text, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(moment_text)
        if moment.tzinfo is None or not isinstance(pk, int) or isinstance(pk, bool):
            raise ValueError("bad cursor shape")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidFilter("cursor: not a cursor this API gave out") from None
    return moment, pk


def page_by_time(
    queryset: QuerySet, cursor: str | None, limit: int, time_field: str
) -> tuple[list, str | None]:
    """One page of a queryset ordered by (-time_field, -id), after `cursor`.

    Keyset pagination: the cursor holds the last row's (time, id), and the next
    page starts strictly after it, so rows inserted meanwhile cause no
    duplicates or gaps and deep pages cost as much as the first.
    """
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidFilter(f"limit: must be between 1 and {MAX_LIMIT}, not {limit}")
    queryset = queryset.order_by(f"-{time_field}", "-id")
    if cursor:
        moment, pk = decode_cursor(cursor)
        # The plain `<=` bound is implied by the OR, but spelling it out lets
        # SQLite use it as an index range instead of reading every older row.
        queryset = queryset.filter(
            Q(**{f"{time_field}__lte": moment}),
            Q(**{f"{time_field}__lt": moment}) | Q(**{time_field: moment, "id__lt": pk}),
        )
    rows = list(queryset[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor(getattr(last, time_field), last.pk)


def page_spans(queryset: QuerySet[Span], cursor: str | None, limit: int = DEFAULT_LIMIT):
    """(rows, next_cursor) of spans newest first; next_cursor is None on the last page."""
    return page_by_time(queryset, cursor, limit, "start_time")


# -- the trace tree --------------------------------------------------------------


def _offset_ms(moment: datetime, origin: datetime) -> float:
    return (moment - origin).total_seconds() * 1000


def trace_tree(project, trace_id: str) -> dict | None:
    """The spans of one trace as a tree, for the API and the waterfall view.

    Returns None when the trace has no spans in this project. Otherwise:

        {"trace_id", "start_time", "end_time", "duration_ms", "span_count",
         "roots": [node, …],   # top level: the root span(s), then orphans, by start
         "rows": [node, …]}    # every node depth first, in display order

    where a node is {"span": Span, "children": [node, …], "depth": int,
    "offset_ms": start minus trace start, "is_orphan": parent id set but not
    in the trace}. Children are sorted by start time. A span whose parent is
    missing (not ingested yet, or dropped) is shown at the top level rather
    than hidden; so is any span caught in a parent cycle.
    """
    # Sorted here, not by the database: an ORDER BY start_time lets SQLite
    # without statistics walk the project's spans by time instead of reading
    # the trace from the (project, trace_id, span_id) index.
    spans = list(
        Span.objects.filter(project=project, trace_id=trace_id).prefetch_related("annotations")
    )
    if not spans:
        return None
    spans.sort(key=lambda s: (s.start_time, s.span_id))
    start = min(s.start_time for s in spans)
    end = max(s.end_time for s in spans)
    nodes = {
        s.span_id: {"span": s, "children": [], "depth": 0, "offset_ms": 0.0, "is_orphan": False}
        for s in spans
    }
    roots: list[dict] = []
    for span in spans:  # already in start order, so children lists come out sorted
        node = nodes[span.span_id]
        parent = nodes.get(span.parent_span_id)
        if span.parent_span_id and parent is not None and parent is not node:
            parent["children"].append(node)
        else:
            node["is_orphan"] = bool(span.parent_span_id)
            roots.append(node)

    rows: list[dict] = []
    seen: set[str] = set()

    def walk(node: dict, depth: int) -> None:
        # Iterative, so a very deep trace cannot exhaust the recursion limit.
        stack = [(node, depth)]
        while stack:
            current, level = stack.pop()
            span = current["span"]
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            current["depth"] = level
            current["offset_ms"] = _offset_ms(span.start_time, start)
            rows.append(current)
            stack.extend((child, level + 1) for child in reversed(current["children"]))

    for root in roots:
        walk(root, 0)
    # Spans in a parent cycle are reachable from no root: show them as orphans.
    for span in spans:
        if span.span_id not in seen:
            node = nodes[span.span_id]
            node["is_orphan"] = True
            # Cut the cycle: the node's parent no longer lists it as a child.
            for other in nodes.values():
                if node in other["children"]:
                    other["children"].remove(node)
            roots.append(node)
            walk(node, 0)
    return {
        "trace_id": trace_id,
        "start_time": start,
        "end_time": end,
        "duration_ms": _offset_ms(end, start),
        "span_count": len(spans),
        "roots": roots,
        "rows": rows,
    }
