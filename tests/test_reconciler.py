"""The reconciler: ends runs that lost their runner, sandbox or time, and cleans up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agentloop.runs import actions
from agentloop.runs.models import Run, RunStatus, ServiceKey
from agentloop.runs.reconciler import (
    CANCEL_GRACE,
    HEARTBEAT_TIMEOUT,
    PROVISIONING_TIMEOUT,
    reconcile,
)
from agentloop.runs.tasks import launch_run

pytest_plugins = ["tests.fake_sandbox"]  # the fake_provider fixture

CONFIG = {"harness": "analyst", "sandbox": "fake", "time_limit_seconds": 3600}
T0 = timezone.now()


@pytest.fixture
def provisioning(project, alice, fake_provider):
    run = actions.start_session(alice, project, CONFIG, "Investigate")
    assert launch_run(run.pk, now=T0)
    run.refresh_from_db()
    return run


@pytest.fixture
def running(provisioning):
    provisioning.transition(RunStatus.RUNNING, last_heartbeat_at=T0, now=T0)
    return provisioning


def later(**delta):
    return T0 + timedelta(**delta)


def reloaded(run) -> Run:
    return Run.objects.get(pk=run.pk)


def test_a_healthy_run_is_left_alone(running, fake_provider):
    assert reconcile(now=later(seconds=30)) == {"ended": 0, "cleaned": 0}
    assert reloaded(running).status == RunStatus.RUNNING
    assert fake_provider.stopped == []


def test_a_run_that_stopped_heart_beating_fails(running):
    assert reconcile(now=T0 + HEARTBEAT_TIMEOUT - timedelta(seconds=1))["ended"] == 0
    reconcile(now=T0 + HEARTBEAT_TIMEOUT)
    run = reloaded(running)
    assert (run.status, run.exit_reason) == (RunStatus.FAILED, "The runner stopped heart-beating.")


def test_a_run_that_never_started_fails_after_the_provisioning_timeout(provisioning):
    reconcile(now=T0 + PROVISIONING_TIMEOUT - timedelta(seconds=1))
    assert reloaded(provisioning).status == RunStatus.PROVISIONING
    reconcile(now=T0 + PROVISIONING_TIMEOUT)
    assert reloaded(provisioning).exit_reason == "The runner did not start in time."


def test_a_run_past_its_deadline_times_out(running):
    Run.objects.filter(pk=running.pk).update(last_heartbeat_at=later(seconds=3599))
    reconcile(now=later(seconds=3600))
    run = reloaded(running)
    assert (run.status, run.exit_reason) == (RunStatus.TIMED_OUT, "The run reached its time limit.")


def test_a_run_whose_sandbox_exited_fails_with_the_exit_code(running, fake_provider):
    fake_provider.exit(running.sandbox["id"], 137)
    reconcile(now=later(seconds=10))
    run = reloaded(running)
    assert (run.status, run.exit_reason) == (RunStatus.FAILED, "The sandbox exited with code 137.")


def test_a_run_whose_sandbox_vanished_fails(running, fake_provider):
    fake_provider.states.clear()
    reconcile(now=later(seconds=10))
    run = reloaded(running)
    assert run.status == RunStatus.FAILED
    assert run.exit_reason.startswith("The sandbox disappeared.")


def test_what_the_runner_reported_is_kept(running, fake_provider):
    stale = Run.objects.get(pk=running.pk)
    running.transition(RunStatus.SUCCEEDED, exit_reason="done")
    fake_provider.exit(running.sandbox["id"], 0)
    from agentloop.runs.reconciler import _end, _sandbox_verdict

    # The reconciler read the run as running before the runner's report landed.
    assert _end(stale, _sandbox_verdict(stale), later(seconds=10)) is False
    assert (reloaded(running).status, reloaded(running).exit_reason) == (
        RunStatus.SUCCEEDED,
        "done",
    )


def test_a_stop_request_is_forced_after_the_grace_period(running, alice, fake_provider):
    actions.cancel(alice, running, now=later(seconds=10))
    reconcile(now=later(seconds=10) + CANCEL_GRACE - timedelta(seconds=1))
    assert reloaded(running).status == RunStatus.RUNNING
    counts = reconcile(now=later(seconds=10) + CANCEL_GRACE)
    run = reloaded(running)
    assert run.status == RunStatus.CANCELLED
    assert counts == {"ended": 1, "cleaned": 1}
    assert fake_provider.stopped == [run.sandbox["id"]]


def test_finished_runs_are_cleaned_up_once(running, fake_provider):
    token = fake_provider.started[0].env["AGENTLOOP_RUN_TOKEN"]
    running.transition(RunStatus.SUCCEEDED, now=later(seconds=5))
    # Its keys die with the move, not at teardown (issue 13).
    assert ServiceKey.authenticate(token) is None
    assert set(ServiceKey.objects.filter(run=running).values_list("revoked_at", flat=True)) == {
        later(seconds=5)
    }
    assert reconcile(now=later(seconds=20)) == {"ended": 0, "cleaned": 1}
    run = reloaded(running)
    assert run.sandbox_cleaned_at == later(seconds=20)
    assert fake_provider.stopped == fake_provider.cleaned == [run.sandbox["id"]]
    assert ServiceKey.authenticate(token) is None
    # Idempotent: a second pass has nothing to do.
    assert reconcile(now=later(seconds=40)) == {"ended": 0, "cleaned": 0}
    assert fake_provider.cleaned == [run.sandbox["id"]]


def test_a_failing_cleanup_is_retried_on_the_next_pass(running, fake_provider, monkeypatch):
    running.transition(RunStatus.FAILED)

    def broken(handle):
        raise RuntimeError("kubernetes API unavailable")

    monkeypatch.setattr(fake_provider, "cleanup", broken)
    assert reconcile(now=later(seconds=20))["cleaned"] == 0
    assert reloaded(running).sandbox_cleaned_at is None
    monkeypatch.undo()
    assert reconcile(now=later(seconds=40))["cleaned"] == 1


def test_a_start_failure_fails_the_run_and_revokes_its_key(project, alice, fake_provider):
    fake_provider.fail_start = "bwrap: No permissions to create new namespace"
    run = actions.start_session(alice, project, CONFIG, "Investigate")
    assert launch_run(run.pk) is False
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert (
        run.exit_reason
        == "The sandbox did not start: bwrap: No permissions to create new namespace"
    )
    assert not ServiceKey.objects.filter(run=run, revoked_at__isnull=True).exists()
    # Nothing to stop; the reconciler just marks it clean.
    assert reconcile()["cleaned"] == 1


def test_launch_is_claimed_once(project, alice, fake_provider):
    run = actions.start_session(alice, project, CONFIG, "Investigate")
    assert launch_run(run.pk) is True
    assert launch_run(run.pk) is False  # a retried task, or a second worker
    assert len(fake_provider.started) == 1
    assert ServiceKey.objects.filter(run=run).count() == 2  # the runner's and the harness's


def test_setup_schedules_is_idempotent(db):
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("setup_schedules")
    call_command("setup_schedules")
    assert Schedule.objects.filter(name="agentloop.runs.reconcile").count() == 1
    schedule = Schedule.objects.get(name="agentloop.runs.reconcile")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "agentloop.runs.tasks.reconcile_loop",
        Schedule.MINUTES,
        1,
    )
