"""The run state machine: every legal and illegal move, and races between movers."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from agentloop.runs.models import (
    TERMINAL,
    TRANSITIONS,
    EventKind,
    EventSource,
    IllegalTransition,
    Run,
    RunStatus,
)

ALL = list(RunStatus.values)
LEGAL = [(a, b) for a, tos in TRANSITIONS.items() for b in tos]
ILLEGAL = [(a, b) for a, b in itertools.product(ALL, ALL) if (a, b) not in LEGAL]


def make_run(project, status=RunStatus.QUEUED, **fields) -> Run:
    return Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "sandbox": "fake", "time_limit_seconds": 60},
        prompt="Why do refunds fail?",
        status=status,
        **fields,
    )


def test_the_machine_is_the_documented_one():
    assert set(TRANSITIONS[RunStatus.QUEUED]) == {"provisioning", "failed", "cancelled"}
    assert set(TRANSITIONS[RunStatus.PROVISIONING]) == {"running", "failed", "cancelled"}
    assert set(TRANSITIONS[RunStatus.RUNNING]) == {
        "waiting",
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
    }
    assert set(TRANSITIONS[RunStatus.WAITING]) == {
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
    }
    # A finished run goes on only by being continued (queued again, then launched).
    assert all(set(TRANSITIONS[status]) == {"queued"} for status in TERMINAL)


def test_a_continued_run_starts_from_a_clean_slate(project):
    now = timezone.now()
    run = make_run(
        project,
        status=RunStatus.CANCELLED,
        finished_at=now,
        exit_reason="stopped by user",
        stop_requested_at=now,
        deadline=now,
        launched_at=now,
        started_at=now,
    )
    assert run.transition(RunStatus.QUEUED, detail="Continued by alice.") is not None
    run.refresh_from_db()
    assert (run.status, run.finished_at, run.exit_reason) == ("queued", None, "")
    assert (run.stop_requested_at, run.deadline, run.launched_at) == (None, None, None)
    assert run.started_at == now  # when the session first ran stays


@pytest.mark.parametrize(("from_status", "to"), LEGAL)
def test_it_makes_every_legal_move_and_records_it(project, from_status, to):
    run = make_run(project, status=from_status)
    assert run.transition(to, detail="because") is not None
    run.refresh_from_db()
    assert run.status == to
    event = run.events.get()
    assert (event.seq, event.source, event.kind) == (1, EventSource.SYSTEM, EventKind.STATUS)
    assert event.payload == {"state": to, "from": from_status, "detail": "because"}
    assert (run.finished_at is not None) == (to in TERMINAL)
    if to == RunStatus.RUNNING:
        assert run.started_at is not None


@pytest.mark.parametrize(("from_status", "to"), ILLEGAL)
def test_it_refuses_every_illegal_move(project, from_status, to):
    run = make_run(project, status=from_status)
    with pytest.raises(IllegalTransition):
        run.transition(to)
    run.refresh_from_db()
    assert run.status == from_status
    assert not run.events.exists()


def test_two_claims_one_wins(project):
    run = make_run(project)
    first = Run.objects.get(pk=run.pk)
    second = Run.objects.get(pk=run.pk)
    assert first.transition(RunStatus.PROVISIONING) is not None
    assert second.transition(RunStatus.PROVISIONING) is None
    # The loser now sees where the run really is.
    assert second.status == RunStatus.PROVISIONING
    assert run.events.count() == 1


def test_a_stale_mover_cannot_overwrite_a_finished_run(project):
    run = make_run(project, status=RunStatus.RUNNING)
    reconciler_view = Run.objects.get(pk=run.pk)
    assert run.transition(RunStatus.SUCCEEDED, exit_reason="done") is not None
    assert reconciler_view.transition(RunStatus.FAILED, exit_reason="sandbox exited") is None
    run.refresh_from_db()
    assert (run.status, run.exit_reason) == (RunStatus.SUCCEEDED, "done")


def test_started_at_is_kept_when_a_waiting_run_resumes(project):
    run = make_run(project, status=RunStatus.PROVISIONING)
    run.transition(RunStatus.RUNNING)
    first_start = run.started_at
    run.transition(RunStatus.WAITING)
    run.transition(RunStatus.RUNNING)
    run.refresh_from_db()
    assert run.started_at == first_start


def test_seqs_are_consecutive_across_writers(project):
    run = make_run(project)
    other_handle = Run.objects.get(pk=run.pk)
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "a"})
    assert other_handle.allocate_seqs(3) == [2, 3, 4]
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "b"})
    assert list(run.events.values_list("seq", flat=True)) == [1, 5]
