"""Two schedulers tick at the same moment: exactly one run per fire.

The claim (a conditional UPDATE of next_fire_at) is tested with the losing
interleaving forced, on any database. The fire key is tested with real
threads, each with its own connection as two django-q2 clusters would have
(PostgreSQL only: SQLite serialises writers on one file, so the race cannot
happen there).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections

from agentloop.automations import actions as automations
from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions
from agentloop.runs.models import Run
from tests.span_factory import make_span

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

needs_concurrent_writers = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs concurrent writers (PostgreSQL)"
)


def race(target, n: int = 2) -> list:
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker():
        try:
            barrier.wait()
            results.append(target())
        except Exception as error:  # noqa: BLE001 — reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def make_cron_and_metric_automations(bob, project) -> None:
    preset = AgentPreset.objects.create(space=project.space, name="Analyst", harness="analyst")
    for i in range(5):
        automations.save_automation(
            bob,
            Automation(
                space=project.space,
                project=project,
                preset=preset,
                name=f"cron {i}",
                prompt="p",
                trigger="cron",
                cron_expression="*/10 * * * *",
                max_concurrent=10,
            ),
            now=T0,
        )
    for i in range(5):
        automations.save_automation(
            bob,
            Automation(
                space=project.space,
                project=project,
                preset=preset,
                name=f"metric {i}",
                prompt="p",
                trigger="metric",
                metric="span_count",
                comparison=">",
                threshold=0,
                every_minutes=5,
                cron_expression="",
                max_concurrent=10,
            ),
            now=T0,
        )


def the_second_scheduler_ticks_in_between(real_process_due, second_now):
    """A process_due for the first scheduler's tick that, before its first claim
    (its due automations already loaded), runs the second scheduler's whole tick."""
    second = {}

    def process_due(automation, now, measurements=None):
        if "fires" not in second:
            second["fires"] = None  # first: the second tick's own calls pass straight through
            second["fires"] = automations.tick(now=second_now)
        return real_process_due(automation, now, measurements)

    return process_due, second


@pytest.mark.django_db
def test_two_schedulers_start_one_run_per_fire(monkeypatch, bob, project):
    """The worst interleaving, forced: the first scheduler has loaded the due
    automations, then the second ticks in full before the first claims any.

    Every claim the first then tries is stale, so it fires nothing and
    overwrites nothing: the fire key (tested below) is never what saves it.
    """
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)
    make_cron_and_metric_automations(bob, project)
    make_span(project, start=T0 + timedelta(minutes=1))
    fires_tried = []
    real_fire = automations.fire

    def counted_fire(automation, scheduled_at, reason, **kwargs):
        fires_tried.append((automation.pk, scheduled_at))
        return real_fire(automation, scheduled_at, reason, **kwargs)

    monkeypatch.setattr(automations, "fire", counted_fire)
    real_process_due = automations.process_due

    for minutes in (10, 20):
        first_now = T0 + timedelta(minutes=minutes, seconds=1)
        second_now = first_now + timedelta(seconds=1)  # started later, finishes first
        fires_tried.clear()
        process_due, second = the_second_scheduler_ticks_in_between(real_process_due, second_now)
        monkeypatch.setattr(automations, "process_due", process_due)
        first = automations.tick(now=first_now)

        assert first == []
        assert len(second["fires"]) == 10
        assert len(fires_tried) == 10  # all the second's: the first tried none
        for automation in Automation.objects.all():
            assert automation.last_evaluated_at == second_now  # the loser wrote nothing

    assert Run.objects.count() == 20
    assert AutomationFire.objects.count() == 20
    for automation in Automation.objects.all():
        slots = sorted(automation.fires.values_list("scheduled_at", flat=True))
        assert slots == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]


@needs_concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_the_fire_key_alone_keeps_one_run(monkeypatch, bob, project):
    """Even when both schedulers get past the schedule claim, the unique key wins."""
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)
    preset = AgentPreset.objects.create(space=project.space, name="Analyst", harness="analyst")
    automation = automations.save_automation(
        bob,
        Automation(
            space=project.space,
            project=project,
            preset=preset,
            name="c",
            prompt="p",
            trigger="cron",
            cron_expression="*/10 * * * *",
            max_concurrent=10,
        ),
        now=T0,
    )
    slot = T0 + timedelta(minutes=10)
    results = race(
        lambda: automations.fire(Automation.objects.get(pk=automation.pk), slot, "cron", now=slot),
        n=4,
    )
    assert sum(1 for r in results if r is not None) == 1
    assert Run.objects.count() == 1
