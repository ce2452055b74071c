"""Signal's method run in this process, on the database directly.

In production Signal runs as a worker in a sandbox (the analyst harness) and
asks the store over HTTP. This module asks the same questions of the same
functions those HTTP answers come from (traces.analytics.aggregate, the span
filters of traces.queries), without a server: for the recall benchmark
(benches/bench_signal_recall.py) and tests of the method on realistic traffic.

    issues = run_signal(project, now=now)      # [issue dict, ...] as Signal keeps them
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from agentloop.runner.signal_method import Method, Report, iso, window_ending
from agentloop.traces.analytics import aggregate, parse_analytics_query
from agentloop.traces.models import Span, SpanAnnotation
from agentloop.traces.queries import filter_spans, parse_span_filter

WINDOW = timedelta(hours=24)
PARALLEL = 3  # questions at once: what the analyst asks the web process with
SPAN_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "status_code",
    "start_time",
    "duration_ms",
    "attributes",
    "events",
    "model_name",
    "total_tokens",
)


def _json(value):
    """As the HTTP answer would carry it: datetimes as ISO text."""
    return json.loads(
        json.dumps(value, default=lambda v: iso(v) if isinstance(v, datetime) else str(v))
    )


def _span_dict(span: Span, annotations=None) -> dict:
    data = {name: getattr(span, name) for name in SPAN_FIELDS}
    data["annotations"] = [
        {"name": a.name, "label": a.label, "score": a.score} for a in (annotations or [])
    ]
    return data


class LocalSource:
    """The method's questions answered from the database (the API's own functions).

    `parallel` > 1 asks independent questions from that many threads, each on a
    connection of its own, so it needs committed data (not a test's transaction).
    """

    def __init__(self, project, now: datetime, parallel: int = 1):
        self.project, self.now, self.parallel = project, now, parallel

    def stats(self, params: dict) -> dict:
        try:
            return _json(aggregate(self.project, parse_analytics_query(params, now=self.now)))
        finally:
            if threading.current_thread() is not threading.main_thread():
                connection.close()  # a worker thread's connection goes with its question

    def spans(self, params: dict, limit: int) -> list[dict]:
        rows = filter_spans(self.project, parse_span_filter(params))[:limit]
        return _json([_span_dict(span) for span in rows])

    def annotations(self, params: dict, limit: int) -> list[dict]:
        rows = SpanAnnotation.objects.filter(project=self.project).order_by("-id")[:limit]
        return [{"name": a.name, "label": a.label, "score": a.score} for a in rows]

    def trace(self, trace_id: str) -> dict:
        spans = (
            Span.objects.filter(project=self.project, trace_id=trace_id)
            .prefetch_related("annotations")
            .order_by("start_time", "span_id")
        )
        # Flat: the method reads a trace's spans, not its shape.
        return {"root": None, "orphans": _json([_span_dict(s, s.annotations.all()) for s in spans])}


def investigate(
    project, *, now: datetime | None = None, window: timedelta = WINDOW, parallel: int = 1
) -> Report:
    now = now or timezone.now()
    start, end = window_ending(now, window)
    return Method(LocalSource(project, now, parallel), start, end).run()


def run_signal(project, *, now: datetime | None = None, parallel: int = PARALLEL) -> list[dict]:
    """The issues Signal's method finds in the project's last 24 hours (committed data:
    it asks from several threads, as the analyst does over HTTP)."""
    return [issue.as_dict() for issue in investigate(project, now=now, parallel=parallel).issues]
