"""Every recurring django-q2 schedule, installed idempotently (`manage.py setup_schedules`).

The schedules name their tasks by dotted path, so this module imports none of
the apps it schedules.
"""

from __future__ import annotations

RECONCILE_SCHEDULE = "agentloop.runs.reconcile"
AUTOMATIONS_SCHEDULE = "agentloop.automations.tick"
SIGNAL_SCHEDULE = "agentloop.signal.collect"
PLANNER_STATISTICS_SCHEDULE = "agentloop.traces.planner_statistics"
ROLLUPS_SCHEDULE = "agentloop.traces.rollups"
RETENTION_SCHEDULE = "agentloop.traces.retention"
PARTITIONS_SCHEDULE = "agentloop.traces.partitions"

# name -> (task, every: "minute" | "hour")
SCHEDULES = {
    # q2 schedules at most once a minute; reconcile_loop ticks every 15 s.
    RECONCILE_SCHEDULE: ("agentloop.runs.tasks.reconcile_loop", "minute"),
    # The fire key in the database keeps a fire to one run even if two clusters tick at once.
    AUTOMATIONS_SCHEDULE: ("agentloop.automations.actions.tick_task", "minute"),
    # Turns finished Signal runs into issues. Its own schedule, so a slow or broken
    # collection never holds up the automations tick (and Signal depends on
    # automations, not the other way round).
    SIGNAL_SCHEDULE: ("agentloop.signal.issues.collect_task", "minute"),
    # SQLite's planner statistics: `serve` gathers them at start, but a project that
    # grows from nothing after that would be planned as the empty one it was.
    # ~10 ms at 1M spans.
    # Rolls new spans up into the totals analytics reads long windows from; until
    # it has, analytics reads those spans themselves, so a late tick costs time only.
    ROLLUPS_SCHEDULE: ("agentloop.traces.rollups.catch_up", "minute"),
    PLANNER_STATISTICS_SCHEDULE: (
        "agentloop.traces.maintenance.refresh_planner_statistics",
        "hour",
    ),
    # Spans past their project's retention, deleted in batches
    # (traces/retention.py); hourly, so each run has about an hour's worth.
    RETENTION_SCHEDULE: ("agentloop.traces.retention.purge_task", "hour"),
    # PostgreSQL: the spans' week partitions, created four weeks ahead
    # (traces/partitions.py), so ingest's rows never wait in the default one.
    # Hourly: a missed run or two changes nothing; nothing to do on SQLite.
    PARTITIONS_SCHEDULE: ("agentloop.traces.partitions.ensure_partitions_task", "hour"),
}


def install_schedules() -> bool:
    """Create or update the schedules; True if the reconcile one was created."""
    from django_q.models import Schedule

    created = {}
    for name, (func, every) in SCHEDULES.items():
        timing = (
            {"schedule_type": Schedule.MINUTES, "minutes": 1}
            if every == "minute"
            else {"schedule_type": Schedule.HOURLY}
        )
        _, created[name] = Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "repeats": -1, **timing}
        )
    return created[RECONCILE_SCHEDULE]
