"""Where a run's own execution is recorded as a trace ("View traces").

A run's trace lives in its space's internal worker project
(Space.worker_project). Its ids derive from the run's code, so every writer —
the event recorder (turns, tool calls) and the LLM gateway (model calls) —
puts its spans in the same trace under the same root without coordinating.

The shape, written as the run's events are stored (`record_events`):

    AGENT  "<preset> run"     root_span_id(run); started → finished
      CHAIN  "turn 1"         status running → waiting / finished
        TOOL "<tool name>"    tool_call → its tool_result
        LLM  …                (the gateway, parent = root; not written here)
      CHAIN  "turn 2"
        …

Spans are upserted by span id, so a span opened by one batch (a tool call) is
closed by a later one (its result). Open spans end at the latest event seen,
so a live run's waterfall grows as it goes. The root span carries the turn
count in its attributes: that is the only state kept between batches.
"""

from __future__ import annotations

import hashlib
import json
import logging

from django.db import DatabaseError, connection, transaction

from agentloop.runs.models import RunEvent
from agentloop.traces import partitions
from agentloop.traces.models import Span, Trace

logger = logging.getLogger(__name__)

# Status event payloads written by Run.transition carry "from"; runner-emitted
# status notes (e.g. "conversation compacted") do not, and are not transitions.
TURN_END_STATES = ("waiting", "succeeded", "failed", "cancelled", "timed_out")
FINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out")
ERROR_STATES = ("failed", "timed_out")
TURN_COUNT_ATTR = "agentloop.turns"
TURN_OPEN_ATTR = "agentloop.turn_open"
MAX_STATUS_MESSAGE = 2000


def trace_id_for(run) -> str:
    """32 hex characters: the run code itself."""
    return run.code.hex


def root_span_id(run) -> str:
    """The run's AGENT root span."""
    return run.code.hex[:16]


def derived_span_id(run, name: str) -> str:
    """A stable 16-hex span id for something in the run (a turn, a tool call id)."""
    return hashlib.sha256(f"{run.code.hex}:{name}".encode()).hexdigest()[:16]


def turn_span_id(run, number: int) -> str:
    return derived_span_id(run, f"turn:{number}")


def tool_span_id(run, call_id: str) -> str:
    return derived_span_id(run, f"tool:{call_id}")


def record_events(run, events) -> None:
    """Write the worker spans for these just-stored RunEvents (in seq order).

    Called inside the transaction that stored the events. A database error here
    (say, a race with the gateway creating the Trace row) is logged and rolled
    back to a savepoint: the trace is a view of the run, never a reason to lose
    the run's own events or status.
    """
    events = sorted(events, key=lambda e: e.seq)
    if not events or run.started_at is None:
        # Queued or provisioning (or ended before it ran): no agent has run yet,
        # and the root span covers the run from its start.
        return
    try:
        with transaction.atomic():
            writer = _TraceWriter(run, events)
            for event in events:
                writer.apply(event)
            writer.save()
    except DatabaseError:
        logger.exception("could not record the worker trace of run %s", run.code)


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class _TraceWriter:
    def __init__(self, run, events):
        self.run = run
        self.project = run.space.worker_project()
        self.trace_id = trace_id_for(run)
        self.dirty: dict[str, Span] = {}
        wanted = {root_span_id(run)}
        for event in events:
            if event.kind == "tool_call" and event.payload.get("id"):
                wanted.add(tool_span_id(run, str(event.payload["id"])))
            elif event.kind == "tool_result" and event.payload.get("tool_call_id"):
                wanted.add(tool_span_id(run, str(event.payload["tool_call_id"])))
        self.spans = {s.span_id: s for s in self._spans().filter(span_id__in=wanted)}
        self.root = self.spans.get(root_span_id(run))
        self.turn = None
        if self.root is not None and self.root.attributes.get(TURN_OPEN_ATTR):
            number = self.root.attributes.get(TURN_COUNT_ATTR, 0)
            self.turn = self._spans().filter(span_id=turn_span_id(run, number)).first()

    def _spans(self):
        return Span.objects.filter(project=self.project, trace_id=self.trace_id)

    def _new_span(self, span_id: str, parent: str, name: str, kind: str, at):
        span = Span(
            project=self.project,
            trace_id=self.trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name[:500],
            kind=kind,
            start_time=at,
            end_time=at,
            duration_ms=0.0,
            attributes={"openinference.span.kind": kind},
            session_id=str(self.run.code),
        )
        self.spans[span_id] = span
        return span

    def _touch(self, span, at) -> None:
        if at > span.end_time:
            span.end_time = at
        if at < span.start_time:
            span.start_time = at
        self.dirty[span.span_id] = span

    def _ensure_root(self, at):
        if self.root is None:
            run = self.run
            start = min(at, run.started_at) if run.started_at else at
            root = self._new_span(
                root_span_id(run), "", f"{run.preset_name or 'ad-hoc'} run", "AGENT", start
            )
            root.attributes.update(
                {
                    "agentloop.run.code": str(run.code),
                    "agentloop.run.kind": run.kind,
                    "agentloop.run.trigger": run.trigger,
                    "agentloop.preset": run.preset_name,
                    "agentloop.harness": run.config.get("harness", ""),
                    "llm.model_name": run.config.get("model", ""),
                    TURN_COUNT_ATTR: 0,
                    TURN_OPEN_ATTR: False,
                }
            )
            self.root = root
        return self.root

    def _parent_id(self) -> str:
        return self.turn.span_id if self.turn is not None else self.root.span_id

    # --- one event ---------------------------------------------------------

    def apply(self, event) -> None:
        at = event.created_at
        payload = event.payload or {}
        if event.kind == "status" and payload.get("state") in FINAL_STATES and self.run.finished_at:
            # The run's own end, which the transition set a moment before its event.
            at = self.run.finished_at
        root = self._ensure_root(at)
        if not root.attributes.get("agentloop.finished"):
            self._touch(root, at)
        if self.turn is not None:
            self._touch(self.turn, at)
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event, payload, at)

    def _on_status(self, event, payload, at) -> None:
        if "from" not in payload:
            return
        state = payload.get("state")
        detail = str(payload.get("detail") or "")[:MAX_STATUS_MESSAGE]
        if state == "queued" and payload.get("from") in FINAL_STATES:
            # Continued by a person: the run's root span is open again.
            self.root.attributes["agentloop.finished"] = False
            self.root.attributes.pop("agentloop.status", None)
            self.root.status_code, self.root.status_message = "UNSET", ""
            self._touch(self.root, at)
        elif state == "running":
            self._close_turn(at, "OK", "")
            self._open_turn(event, at)
        elif state in TURN_END_STATES:
            failed = state in ERROR_STATES
            self._close_turn(at, "ERROR" if failed else "OK", detail if failed else "")
        if state in FINAL_STATES:
            self._close_root(state, detail, at)

    def _open_turn(self, event, at) -> None:
        number = int(self.root.attributes.get(TURN_COUNT_ATTR, 0)) + 1
        self.root.attributes[TURN_COUNT_ATTR] = number
        self.root.attributes[TURN_OPEN_ATTR] = True
        turn = self._new_span(
            turn_span_id(self.run, number), self.root.span_id, f"turn {number}", "CHAIN", at
        )
        turn.attributes["agentloop.turn"] = number
        # What started this turn: the prompt or the latest follow-up.
        message = (
            RunEvent.objects.filter(run=self.run, source="user", kind="message", seq__lt=event.seq)
            .order_by("-seq")
            .values_list("payload", flat=True)
            .first()
        )
        if message and message.get("text"):
            turn.attributes["input.value"] = message["text"]
        self.turn = turn
        self._touch(turn, at)

    def _close_turn(self, at, status: str, message: str) -> None:
        turn = self.turn
        if turn is None:
            return
        self._touch(turn, at)
        if turn.status_code != "ERROR":
            turn.status_code = status
            turn.status_message = message
        self.root.attributes[TURN_OPEN_ATTR] = False
        self.dirty[self.root.span_id] = self.root
        self.turn = None

    def _close_root(self, state: str, detail: str, at) -> None:
        root = self.root
        self._touch(root, at)
        root.attributes["agentloop.finished"] = True
        root.attributes["agentloop.status"] = state
        if state in ERROR_STATES:
            root.status_code = "ERROR"
            root.status_message = detail or state
        elif state == "succeeded":
            root.status_code = "OK"
        else:
            root.status_message = detail or state

    def _on_tool_call(self, event, payload, at) -> None:
        call_id = str(payload.get("id") or event.key)
        span_id = tool_span_id(self.run, call_id)
        span = self.spans.get(span_id)
        if span is None:
            name = str(payload.get("name") or "tool")
            span = self._new_span(span_id, self._parent_id(), name, "TOOL", at)
        span.attributes.update(
            {
                "tool.name": str(payload.get("name") or ""),
                "tool_call.id": call_id,
                "input.value": _as_text(payload.get("input", {})),
                "input.mime_type": "application/json",
            }
        )
        self._touch(span, at)

    def _on_tool_result(self, event, payload, at) -> None:
        call_id = str(payload.get("tool_call_id") or event.key)
        span_id = tool_span_id(self.run, call_id)
        span = self.spans.get(span_id)
        if span is None:  # its call was never reported: show the result alone
            span = self._new_span(span_id, self._parent_id(), "tool result", "TOOL", at)
            span.attributes["tool_call.id"] = call_id
        output = _as_text(payload.get("output", ""))
        span.attributes["output.value"] = output
        if payload.get("is_error"):
            span.status_code = "ERROR"
            span.status_message = output[:MAX_STATUS_MESSAGE]
        else:
            span.status_code = "OK"
        self._touch(span, at)

    def _on_message(self, event, payload, at) -> None:
        if payload.get("role") == "assistant" and self.turn is not None:
            self.turn.attributes["output.value"] = str(payload.get("text") or "")

    def _on_error(self, event, payload, at) -> None:
        span = self.turn or self.root
        message = str(payload.get("message") or "error")
        span.status_code = "ERROR"
        span.status_message = message[:MAX_STATUS_MESSAGE]
        span.events = [
            *(span.events or []),
            {
                "name": "exception",
                "time": at.isoformat(),
                "attributes": {"exception.message": message},
            },
        ]
        self._touch(span, at)

    def _on_artifact(self, event, payload, at) -> None:
        span = self.turn or self.root
        span.events = [
            *(span.events or []),
            {
                "name": "artifact",
                "time": at.isoformat(),
                "attributes": {
                    "artifact.kind": str(payload.get("kind") or ""),
                    "artifact.name": str(payload.get("name") or ""),
                },
            },
        ]
        self._touch(span, at)

    # --- writing -------------------------------------------------------------

    def _move_starts(self, spans) -> None:
        # A span's start only moves earlier (an event older than it); a plain
        # UPDATE may move the row into another week's partition.
        values = ", ".join(["(%s, %s::timestamptz)"] * len(spans))
        params = [p for span in spans for p in (span.span_id, span.start_time)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE traces_span s SET start_time = v.start FROM (VALUES {values}) "
                "AS v(span_id, start) WHERE s.project_id = %s AND s.trace_id = %s "
                "AND s.span_id = v.span_id AND s.start_time <> v.start",
                [*params, self.project.pk, self.trace_id],
            )

    def save(self) -> None:
        spans = list(self.dirty.values())
        if not spans:
            return
        for span in spans:
            # Insert-or-update by (project, trace, span id) alone, for loaded
            # spans too: a row id in the INSERT could trip the primary key first.
            span.pk = None
            span.duration_ms = (span.end_time - span.start_time).total_seconds() * 1000
            span.index_attributes()
        unique_fields = partitions.span_unique_fields()
        if "start_time" in unique_fields:
            # PostgreSQL's constraint holds start_time too (the partition key):
            # move the stored starts first, so the upsert finds its rows.
            self._move_starts(spans)
        Span.objects.bulk_create(
            spans,
            update_conflicts=True,
            unique_fields=unique_fields,
            update_fields=[
                "parent_span_id",
                "name",
                "kind",
                "status_code",
                "status_message",
                "start_time",
                "end_time",
                "duration_ms",
                "attributes",
                "attribute_tokens",
                "events",
                "session_id",
            ],
        )
        start = min(s.start_time for s in spans)
        end = max(s.end_time for s in spans)
        trace, created = Trace.objects.get_or_create(
            project=self.project,
            trace_id=self.trace_id,
            defaults={"start_time": start, "end_time": end},
        )
        if not created:
            # Conditional, so a concurrent writer (the gateway) never narrows it.
            Trace.objects.filter(pk=trace.pk, start_time__gt=start).update(start_time=start)
            Trace.objects.filter(pk=trace.pk, end_time__lt=end).update(end_time=end)
