"""Every recurring django-q2 schedule, installed idempotently (`manage.py setup_schedules`).

The schedules name their tasks by dotted path, so this module imports none of
the apps it schedules.
"""

from __future__ import annotations

RECONCILE_SCHEDULE = "agentloop.runs.reconcile"
AUTOMATIONS_SCHEDULE = "agentloop.automations.tick"
SIGNAL_SCHEDULE = "agentloop.signal.collect"
PLANNER_STATISTICS_SCHEDULE = "agentloop.traces.planner_statistics"


def install_schedules() -> bool:
    """Create or update the schedules; True if the reconcile one was created."""
    from django_q.models import Schedule

    _, created = Schedule.objects.update_or_create(
        name=RECONCILE_SCHEDULE,
        defaults={
            # q2 schedules at most once a minute; reconcile_loop ticks every 15 s.
            "func": "agentloop.runs.tasks.reconcile_loop",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    # Automations (agentloop.automations.actions.tick): every minute; the fire key in the
    # database keeps a fire to one run even if two clusters tick at once.
    Schedule.objects.update_or_create(
        name=AUTOMATIONS_SCHEDULE,
        defaults={
            "func": "agentloop.automations.actions.tick_task",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    # Signal (agentloop.signal.issues.collect_task): turns the investigations
    # of finished Signal runs into issues. Its own schedule, so a slow or broken
    # collection never holds up the automations tick (and Signal depends on
    # automations, not the other way round).
    Schedule.objects.update_or_create(
        name=SIGNAL_SCHEDULE,
        defaults={
            "func": "agentloop.signal.issues.collect_task",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    # SQLite's planner statistics (agentloop.traces.maintenance): `serve`
    # gathers them at start, but a project that grows from nothing after that
    # would be planned as the empty one it was. Hourly; ~10 ms at 1M spans.
    Schedule.objects.update_or_create(
        name=PLANNER_STATISTICS_SCHEDULE,
        defaults={
            "func": "agentloop.traces.maintenance.refresh_planner_statistics",
            "schedule_type": Schedule.HOURLY,
            "repeats": -1,
        },
    )
    return created
