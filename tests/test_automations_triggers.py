"""Automations: cron (with DST), metric fires, admission, run now, auto-pause, catch-up.

Time is always passed in (`now=`); nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from agentloop.automations import actions as automations
from agentloop.automations import triggers
from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions
from agentloop.runs.models import Run, RunKind, RunStatus, RunTrigger
from tests.span_factory import make_span

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)


@pytest.fixture
def preset(space, alice):
    return AgentPreset.objects.create(space=space, name="Analyst", harness="analyst")


def make_automation(user, project, preset, now=T0, **fields) -> Automation:
    values = dict(
        space=project.space,
        project=project,
        preset=preset,
        name="nightly",
        prompt="Look at the errors.",
        trigger="cron",
        cron_expression="*/10 * * * *",
    )
    values.update(fields)
    return automations.save_automation(user, Automation(**values), now=now)


def finish(run: Run, status: str) -> None:
    Run.objects.filter(pk=run.pk).update(status=status)


# -- cron ---------------------------------------------------------------------------------


def test_cron_next_fire_in_a_time_zone_across_dst():
    # Europe/Berlin springs forward on 2026-03-29 (UTC+1 → UTC+2): 09:00 local both days.
    before = triggers.next_cron_fire(
        "0 9 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC)
    )
    after = triggers.next_cron_fire(
        "0 9 * * *", "Europe/Berlin", datetime(2026, 3, 29, 12, tzinfo=UTC)
    )
    assert before == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert after == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    # 02:30 does not exist on the spring-forward night: it fires an hour later (03:30 CEST).
    spring = triggers.next_cron_fires(
        "30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC), 2
    )
    assert spring == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    # Autumn: 02:30 happens twice on 2026-10-25; it fires once, at the first.
    autumn = triggers.next_cron_fires(
        "30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 2
    )
    assert autumn == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]


def test_bad_cron_and_time_zone_get_clear_errors():
    with pytest.raises(ValidationError, match="5 fields"):
        triggers.check_cron("every day", "UTC")
    with pytest.raises(ValidationError, match="not a valid cron expression"):
        triggers.check_cron("61 * * * *", "UTC")
    with pytest.raises(ValidationError, match="not a time zone"):
        triggers.check_cron("0 9 * * *", "Mars/Olympus")


def test_save_sets_the_first_fire_and_rejects_bad_input(bob, project, preset):
    a = make_automation(bob, project, preset, now=T0 + timedelta(minutes=3))
    assert a.next_fire_at == T0 + timedelta(minutes=10)
    with pytest.raises(ValidationError) as error:
        make_automation(
            bob,
            project,
            preset,
            name="bad",
            trigger="metric",
            metric="error_rate",
            threshold=5,
            every_minutes=7,
        )
    assert "between 0 and 1" in error.value.message_dict["threshold"][0]
    assert "every_minutes" in error.value.message_dict
    assert not Automation.objects.filter(name="bad").exists()


def test_cron_tick_fires_once_and_moves_schedule(bob, project, preset):
    a = make_automation(bob, project, preset)
    assert automations.tick(now=T0 + timedelta(minutes=9)) == []
    fired = automations.tick(now=T0 + timedelta(minutes=10, seconds=5))
    assert len(fired) == 1
    fire = fired[0]
    assert fire.scheduled_at == T0 + timedelta(minutes=10)
    run = fire.run
    assert run.kind == RunKind.AUTOMATION and run.trigger == RunTrigger.CRON
    assert "Scheduled fire at 2026-03-02T09:10:00+00:00" in run.prompt
    assert "Window:" in run.prompt
    assert run.prompt.startswith("Look at the errors.")
    a.refresh_from_db()
    assert a.next_fire_at == T0 + timedelta(minutes=20)
    # The same tick again (a second scheduler a moment later) starts nothing.
    assert automations.tick(now=T0 + timedelta(minutes=10, seconds=6)) == []
    assert Run.objects.count() == 1


def test_missed_fires_after_downtime_are_one_catch_up_run(bob, project, preset):
    make_automation(bob, project, preset, max_concurrent=5)
    fired = automations.tick(now=T0 + timedelta(hours=3, minutes=4))
    assert [f.scheduled_at for f in fired] == [T0 + timedelta(hours=3)]
    assert Run.objects.count() == 1
    assert Automation.objects.get().next_fire_at == T0 + timedelta(hours=3, minutes=10)


def test_the_fire_key_allows_one_run_per_scheduled_time(bob, project, preset):
    a = make_automation(bob, project, preset)
    slot = T0 + timedelta(minutes=10)
    first = automations.fire(a, slot, "cron", now=slot)
    second = automations.fire(a, slot, "cron", now=slot + timedelta(seconds=1))
    assert first is not None and first.run is not None
    assert second is None
    assert Run.objects.count() == 1 and AutomationFire.objects.count() == 1


def test_a_failure_after_the_fire_is_written_leaves_neither_fire_nor_run(
    bob, project, preset, monkeypatch
):
    a = make_automation(bob, project, preset, max_concurrent=2)
    real_create_run = automations.create_run

    def create_run_then_fail(*args, **kwargs):
        real_create_run(*args, **kwargs)  # the fire and the run are written, then it breaks
        raise RuntimeError("the database went away")

    monkeypatch.setattr(automations, "create_run", create_run_then_fail)
    slot = T0 + timedelta(minutes=10)
    assert automations.tick(now=slot + timedelta(seconds=5)) == []  # logged, not raised
    assert not AutomationFire.objects.exists()
    assert not Run.objects.exists()

    monkeypatch.setattr(automations, "create_run", real_create_run)
    fired = automations.tick(now=T0 + timedelta(minutes=20, seconds=5))
    assert [(f.scheduled_at, f.outcome) for f in fired] == [
        (T0 + timedelta(minutes=20), AutomationFire.STARTED)
    ]
    assert fired[0].run is not None
    # The failed fire's key was freed with it: that slot can still fire.
    again = automations.fire(a, slot, "cron", now=slot + timedelta(minutes=11))
    assert again is not None and again.run is not None
    assert Run.objects.count() == AutomationFire.objects.count() == 2


# -- admission ------------------------------------------------------------------------------


def test_concurrency_limit_skips_and_records_why(bob, project, preset):
    make_automation(bob, project, preset, max_concurrent=1)
    automations.tick(now=T0 + timedelta(minutes=10))
    fired = automations.tick(now=T0 + timedelta(minutes=20))
    assert fired[0].outcome == AutomationFire.SKIPPED
    assert "still going (at most 1 at once)" in fired[0].detail
    assert Run.objects.count() == 1
    finish(Run.objects.get(), RunStatus.SUCCEEDED)
    fired = automations.tick(now=T0 + timedelta(minutes=30))
    assert fired[0].outcome == AutomationFire.STARTED
    assert Run.objects.count() == 2


def test_cooldown(bob, project, preset):
    make_automation(bob, project, preset, cooldown_minutes=25, max_concurrent=5)
    assert automations.tick(now=T0 + timedelta(minutes=10))[0].outcome == "started"
    skipped = automations.tick(now=T0 + timedelta(minutes=20))[0]
    assert skipped.outcome == "skipped" and "Cooling down" in skipped.detail
    assert automations.tick(now=T0 + timedelta(minutes=30))[0].outcome == "skipped"
    assert automations.tick(now=T0 + timedelta(minutes=40))[0].outcome == "started"
    assert Run.objects.count() == 2


def test_run_now_passes_admission_and_keeps_the_schedule(bob, project, preset):
    a = make_automation(bob, project, preset, cooldown_minutes=30, max_concurrent=5)
    scheduled = a.next_fire_at
    record = automations.run_now(bob, a, now=T0 + timedelta(minutes=2))
    assert record.run.trigger == RunTrigger.MANUAL and record.fired_by == bob
    a.refresh_from_db()
    assert a.next_fire_at == scheduled
    with pytest.raises(ValidationError, match="Cooling down"):
        automations.run_now(bob, a, now=T0 + timedelta(minutes=3))
    assert Run.objects.count() == 1


def test_run_now_refused_when_paused(bob, project, preset):
    a = make_automation(bob, project, preset)
    automations.pause(bob, a)
    with pytest.raises(ValidationError, match="Paused by bob"):
        automations.run_now(bob, a, now=T0)
    assert Run.objects.count() == 0
    assert automations.tick(now=T0 + timedelta(days=1)) == []


def test_consecutive_failures_pause_the_automation(bob, project, preset):
    a = make_automation(bob, project, preset, max_consecutive_failures=2, max_concurrent=5)
    for minutes in (10, 20):
        (record,) = automations.tick(now=T0 + timedelta(minutes=minutes))
        finish(record.run, RunStatus.FAILED)
    assert automations.tick(now=T0 + timedelta(minutes=30)) == []
    a.refresh_from_db()
    assert not a.enabled
    assert "after 2 failed runs in a row" in a.paused_reason
    # Resuming forgets the old failures: it runs again.
    automations.resume(bob, a, now=T0 + timedelta(minutes=31))
    assert len(automations.tick(now=T0 + timedelta(minutes=40))) == 1
    a.refresh_from_db()
    assert a.enabled


def test_a_success_between_failures_does_not_pause(bob, project, preset):
    a = make_automation(bob, project, preset, max_consecutive_failures=2, max_concurrent=5)
    for minutes, status in (
        (10, RunStatus.FAILED),
        (20, RunStatus.SUCCEEDED),
        (30, RunStatus.FAILED),
    ):
        (record,) = automations.tick(now=T0 + timedelta(minutes=minutes))
        finish(record.run, status)
    automations.tick(now=T0 + timedelta(minutes=40))
    a.refresh_from_db()
    assert a.enabled


# -- metric -----------------------------------------------------------------------------------


def test_metric_fires_when_the_threshold_is_crossed(bob, project, preset):
    a = make_automation(
        bob,
        project,
        preset,
        trigger="metric",
        metric="error_rate",
        comparison=">",
        threshold=0.3,
        every_minutes=5,
        window_minutes=30,
        min_spans=4,
        cron_expression="",
    )
    assert a.next_fire_at == T0 + timedelta(minutes=5)
    for i in range(4):
        make_span(
            project,
            name="chat",
            status="ERROR" if i == 0 else "OK",
            start=T0 + timedelta(minutes=1, seconds=i),
        )
    assert automations.tick(now=T0 + timedelta(minutes=5)) == []  # 1/4 = 0.25
    a.refresh_from_db()
    assert a.last_value == pytest.approx(0.25)
    make_span(project, name="chat", status="ERROR", start=T0 + timedelta(minutes=6))
    (record,) = automations.tick(now=T0 + timedelta(minutes=10))  # 2/5 = 0.4
    assert record.scheduled_at == T0 + timedelta(minutes=10)
    run = record.run
    assert run.trigger == RunTrigger.METRIC
    assert "Metric: error rate > 0.3 over 30 min; value 0.4, threshold 0.3." in run.prompt
    assert f"/traces/projects/{project.pk}/" in run.prompt or "Evidence spans: http" in run.prompt
    assert "status=ERROR" in record.context["evidence_url"]
    assert record.context["value"] == pytest.approx(0.4)


def test_metric_with_no_data_never_fires(bob, project, preset):
    make_automation(
        bob,
        project,
        preset,
        trigger="metric",
        metric="latency_p95",
        comparison="<",
        threshold=1000,
        every_minutes=1,
        cron_expression="",
    )
    assert automations.tick(now=T0 + timedelta(minutes=1)) == []
    assert AutomationFire.objects.count() == 0


def test_setup_schedules_installs_the_tick_and_signal_s_own_collection(db):
    from django_q.models import Schedule

    from agentloop.schedules import install_schedules

    install_schedules()
    install_schedules()  # idempotent
    (schedule,) = Schedule.objects.filter(name="agentloop.automations.tick")
    assert schedule.func == "agentloop.automations.actions.tick_task"
    assert schedule.minutes == 1 and schedule.repeats == -1
    assert automations.tick_task() == 0
    # Signal's collection is a schedule of its own, not a step of the tick.
    (collect,) = Schedule.objects.filter(name="agentloop.signal.collect")
    assert collect.func == "agentloop.signal.issues.collect_task"
    assert collect.minutes == 1 and collect.repeats == -1
