"""Create Trace and Span rows in tests without going through ingest.

    span = make_span(project, trace_id="t1", span_id="s1", name="llm call",
                     kind="LLM", start=datetime(...), duration_ms=120,
                     attributes={"llm.model_name": "gpt-4o"})
    child = make_span(project, trace_id="t1", span_id="s2", parent="s1")

Ids default to fresh hex strings; `parent` is a span id (or a Span). The Trace
row is created or widened to cover the span.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from agentloop.traces.models import Span, Trace

_counter = itertools.count(1)
DEFAULT_START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_span(
    project,
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    parent: str | Span | None = None,
    name: str = "span",
    kind: str = "UNKNOWN",
    status: str = "UNSET",
    start: datetime | None = None,
    duration_ms: float = 100.0,
    attributes: dict | None = None,
    **fields,
) -> Span:
    n = next(_counter)
    trace_id = trace_id or f"{n:032x}"
    span_id = span_id or f"{n:016x}"
    if isinstance(parent, Span):
        parent = parent.span_id
    start = start or DEFAULT_START
    end = start + timedelta(milliseconds=duration_ms)
    span = Span.objects.create(
        project=project,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent or "",
        name=name,
        kind=kind,
        status_code=status,
        start_time=start,
        end_time=end,
        duration_ms=duration_ms,
        attributes=attributes or {},
        **fields,
    )
    trace, created = Trace.objects.get_or_create(
        project=project, trace_id=trace_id, defaults={"start_time": start, "end_time": end}
    )
    if not created and (start < trace.start_time or end > trace.end_time):
        trace.start_time = min(trace.start_time, start)
        trace.end_time = max(trace.end_time, end)
        trace.save(update_fields=["start_time", "end_time"])
    return span
