"""Two schedulers tick at the same moment: exactly one run per fire (PostgreSQL).

Each thread has its own database connection, as two django-q2 clusters would.
SQLite serialises writers on one file, so the race cannot happen there: skipped.
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

pytestmark = pytest.mark.skipif(
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


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_start_one_run_per_fire(monkeypatch, bob, project):
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)
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
    make_span(project, start=T0 + timedelta(minutes=1))
    for minutes in (10, 20):
        now = T0 + timedelta(minutes=minutes, seconds=1)
        race(lambda now=now: automations.tick(now=now))
    assert Run.objects.count() == 20
    assert AutomationFire.objects.count() == 20
    for automation in Automation.objects.all():
        slots = sorted(automation.fires.values_list("scheduled_at", flat=True))
        assert slots == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]


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
