"""A run's own execution as a trace: the spans written as its events are stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentloop.runs import lifecycle, recording, worker_trace
from agentloop.runs.models import Run, RunEvent, RunStatus
from agentloop.traces import queries
from agentloop.traces.models import Span, Trace

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def run(project, alice):
    return Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "model": "claude-test", "preset_name": "triage"},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
        creator=alice,
        started_at=at(0),
    )


class Recorder:
    """Stores events with chosen times and hands each batch to the trace writer,
    as recording.record_events and Run.transition do."""

    def __init__(self, run):
        self.run = run
        self.seq = 0

    def event(self, seconds, source, kind, payload):
        self.seq += 1
        return RunEvent.objects.create(
            run=self.run,
            seq=self.seq,
            key=f"k{self.seq}",
            source=source,
            kind=kind,
            payload=payload,
            created_at=at(seconds),
        )

    def batch(self, *events):
        worker_trace.record_events(self.run, list(events))

    def status(self, seconds, state, before, detail=""):
        payload = {"state": state, "from": before, "detail": detail}
        self.batch(self.event(seconds, "system", "status", payload))


def spans_of(run) -> dict[str, Span]:
    project = run.space.worker_project()
    return {
        s.span_id: s
        for s in Span.objects.filter(project=project, trace_id=worker_trace.trace_id_for(run))
    }


def record_two_turns(run) -> Recorder:
    r = Recorder(run)
    r.event(0, "user", "message", {"role": "user", "text": "Why do refunds fail?"})
    r.status(1, "running", "provisioning")
    r.batch(
        r.event(
            2, "agent", "tool_call", {"id": "t1", "name": "search_spans", "input": {"q": "refund"}}
        ),
        r.event(
            3,
            "agent",
            "tool_result",
            {"tool_call_id": "t1", "output": "12 spans", "is_error": False},
        ),
        r.event(4, "agent", "tool_call", {"id": "t2", "name": "get_trace", "input": {"id": "abc"}}),
    )
    # The result of t2 arrives in a later batch than its call.
    r.batch(
        r.event(
            6,
            "agent",
            "tool_result",
            {"tool_call_id": "t2", "output": "not found", "is_error": True},
        ),
        r.event(7, "agent", "message", {"role": "assistant", "text": "The refund tool times out."}),
    )
    r.status(8, "waiting", "running")
    r.event(20, "user", "message", {"role": "user", "text": "Which customers?"})
    r.status(21, "running", "waiting")
    r.batch(
        r.event(22, "agent", "tool_call", {"id": "t3", "name": "search_spans", "input": {}}),
        r.event(23, "agent", "tool_result", {"tool_call_id": "t3", "output": "3 customers"}),
    )
    return r


def test_turns_and_tool_calls_become_a_tree_under_the_agent_root(run):
    r = record_two_turns(run)
    run.finished_at = at(30)
    r.status(30, "succeeded", "running")

    spans = spans_of(run)
    root = spans[worker_trace.root_span_id(run)]
    turn1 = spans[worker_trace.turn_span_id(run, 1)]
    turn2 = spans[worker_trace.turn_span_id(run, 2)]
    t1, t2, t3 = (spans[worker_trace.tool_span_id(run, i)] for i in ("t1", "t2", "t3"))
    assert len(spans) == 6

    assert (root.kind, root.parent_span_id, root.name) == ("AGENT", "", "triage run")
    assert (root.start_time, root.end_time, root.status_code) == (at(0), at(30), "OK")
    assert root.attributes["agentloop.turns"] == 2

    assert (turn1.kind, turn1.parent_span_id, turn1.name) == ("CHAIN", root.span_id, "turn 1")
    assert (turn1.start_time, turn1.end_time, turn1.duration_ms) == (at(1), at(8), 7000)
    assert turn1.attributes["input.value"] == "Why do refunds fail?"
    assert turn1.attributes["output.value"] == "The refund tool times out."
    assert (turn2.start_time, turn2.end_time) == (at(21), at(30))
    assert turn2.attributes["input.value"] == "Which customers?"
    assert turn1.status_code == turn2.status_code == "OK"

    assert (t1.kind, t1.name, t1.parent_span_id) == ("TOOL", "search_spans", turn1.span_id)
    assert (t1.start_time, t1.end_time, t1.status_code) == (at(2), at(3), "OK")
    assert t1.attributes["input.value"] == '{"q": "refund"}'
    assert t1.attributes["output.value"] == "12 spans"
    assert (t2.parent_span_id, t2.start_time, t2.end_time) == (turn1.span_id, at(4), at(6))
    assert (t2.status_code, t2.status_message) == ("ERROR", "not found")
    assert t3.parent_span_id == turn2.span_id

    trace = Trace.objects.get(project=run.space.worker_project(), trace_id=run.code.hex)
    assert (trace.start_time, trace.end_time) == (at(0), at(30))


def test_the_tree_is_what_the_trace_view_shows(run):
    r = record_two_turns(run)
    r.status(30, "succeeded", "running")
    tree = queries.trace_tree(run.space.worker_project(), run.code.hex)
    shape = [(row["depth"], row["span"].kind, row["span"].name) for row in tree["rows"]]
    assert shape == [
        (0, "AGENT", "triage run"),
        (1, "CHAIN", "turn 1"),
        (2, "TOOL", "search_spans"),
        (2, "TOOL", "get_trace"),
        (1, "CHAIN", "turn 2"),
        (2, "TOOL", "search_spans"),
    ]
    assert not any(row["is_orphan"] for row in tree["rows"])


def test_a_live_run_trace_grows_with_each_event(run):
    r = Recorder(run)
    r.status(1, "running", "provisioning")
    r.batch(r.event(5, "agent", "tool_call", {"id": "t1", "name": "search_spans", "input": {}}))
    spans = spans_of(run)
    root, turn = spans[worker_trace.root_span_id(run)], spans[worker_trace.turn_span_id(run, 1)]
    assert (root.end_time, root.status_code) == (at(5), "UNSET")
    assert (turn.end_time, turn.status_code) == (at(5), "UNSET")
    assert spans[worker_trace.tool_span_id(run, "t1")].status_code == "UNSET"  # no result yet


@pytest.mark.parametrize("final", ["failed", "timed_out"])
def test_a_failed_run_marks_its_root_and_last_turn_as_errors(run, final):
    r = Recorder(run)
    r.status(1, "running", "provisioning")
    run.finished_at = at(9)
    r.status(9, final, "running", detail="time limit of 60 s reached")
    spans = spans_of(run)
    root, turn = spans[worker_trace.root_span_id(run)], spans[worker_trace.turn_span_id(run, 1)]
    assert (root.status_code, root.status_message) == ("ERROR", "time limit of 60 s reached")
    assert (turn.status_code, turn.end_time) == ("ERROR", at(9))
    assert root.end_time == at(9)


def test_a_cancelled_run_is_not_an_error(run):
    r = Recorder(run)
    r.status(1, "running", "provisioning")
    r.status(4, "cancelled", "running", detail="stopped by user")
    root = spans_of(run)[worker_trace.root_span_id(run)]
    assert (root.status_code, root.status_message) == ("UNSET", "stopped by user")


def test_an_error_event_marks_the_turn(run):
    r = Recorder(run)
    r.status(1, "running", "provisioning")
    r.batch(r.event(3, "agent", "error", {"message": "harness crashed"}))
    r.status(4, "waiting", "running")
    turn = spans_of(run)[worker_trace.turn_span_id(run, 1)]
    assert (turn.status_code, turn.status_message) == ("ERROR", "harness crashed")
    assert turn.events[0]["name"] == "exception"
    assert turn.events[0]["attributes"]["exception.message"] == "harness crashed"


def test_runner_status_notes_do_not_open_turns(run):
    r = Recorder(run)
    r.status(1, "running", "provisioning")
    # The Claude Code harness reports "conversation compacted" as a status note.
    r.batch(r.event(2, "system", "status", {"state": "running", "detail": "compacted"}))
    spans = spans_of(run)
    assert spans[worker_trace.root_span_id(run)].attributes["agentloop.turns"] == 1
    assert worker_trace.turn_span_id(run, 2) not in spans


def test_the_ids_are_derived_from_the_run_code(run):
    assert worker_trace.trace_id_for(run) == run.code.hex
    assert worker_trace.root_span_id(run) == run.code.hex[:16]
    assert len(worker_trace.derived_span_id(run, "x")) == 16
    assert worker_trace.derived_span_id(run, "x") == worker_trace.derived_span_id(run, "x")
    assert worker_trace.turn_span_id(run, 1) != worker_trace.turn_span_id(run, 2)


def test_transitions_and_stored_batches_write_the_trace(project, alice):
    """The hooks: Run.transition and recording.record_events write spans."""
    run = Run.objects.create(
        space=project.space, project=project, config={}, prompt="p", status=RunStatus.PROVISIONING
    )
    assert lifecycle.move(run, RunStatus.RUNNING)
    recording.record_events(
        run,
        [
            {
                "key": "a",
                "source": "agent",
                "kind": "tool_call",
                "payload": {"id": "c1", "name": "Read", "input": {"path": "x"}},
            },
            {
                "key": "b",
                "source": "agent",
                "kind": "tool_result",
                "payload": {"tool_call_id": "c1", "output": "boom", "is_error": True},
            },
        ],
        secrets=[],
    )
    assert lifecycle.move(run, RunStatus.FAILED, exit_reason="the turn failed")
    spans = spans_of(run)
    root = spans[worker_trace.root_span_id(run)]
    tool = spans[worker_trace.tool_span_id(run, "c1")]
    assert (root.name, root.status_code, root.status_message) == (
        "ad-hoc run",
        "ERROR",
        "the turn failed",
    )
    assert tool.parent_span_id == worker_trace.turn_span_id(run, 1)
    assert tool.status_code == "ERROR"
    assert root.end_time == run.finished_at


def test_a_run_that_never_started_has_no_trace(project):
    run = Run.objects.create(space=project.space, project=project, config={}, prompt="p")
    assert lifecycle.move(run, RunStatus.PROVISIONING)
    assert lifecycle.move(run, RunStatus.FAILED, exit_reason="sandbox did not start")
    assert spans_of(run) == {}
    assert not Trace.objects.filter(trace_id=run.code.hex).exists()


def test_the_root_starts_when_the_run_starts(project):
    run = Run.objects.create(space=project.space, project=project, config={}, prompt="p")
    assert lifecycle.move(run, RunStatus.PROVISIONING)
    assert lifecycle.move(run, RunStatus.RUNNING)
    root = spans_of(run)[worker_trace.root_span_id(run)]
    assert root.start_time == run.started_at


def test_a_continued_run_reopens_its_root_and_adds_a_turn(run):
    r = Recorder(run)
    r.status(1, "running", "provisioning")
    run.finished_at = at(9)
    r.status(9, "failed", "running", detail="time limit of 60 s reached")
    run.finished_at = None
    r.event(20, "user", "message", {"role": "user", "text": "Try again, please"})
    r.status(21, "queued", "failed", detail="Continued by alice.")
    root = spans_of(run)[worker_trace.root_span_id(run)]
    assert root.attributes["agentloop.finished"] is False
    assert (root.status_code, root.status_message) == ("UNSET", "")
    r.status(22, "provisioning", "queued")
    r.status(23, "running", "provisioning")
    spans = spans_of(run)
    second = spans[worker_trace.turn_span_id(run, 2)]
    assert second.attributes["input.value"] == "Try again, please"
    assert spans[worker_trace.root_span_id(run)].end_time >= at(23)
