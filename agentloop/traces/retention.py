"""Retention: delete each project's spans older than its `retention_days`.

Off the hot path: `purge` (the management command, and a daily schedule)
deletes in batches of BATCH spans, each its own short transaction, so ingest's
writer (SQLite's single writer lock; PostgreSQL's row locks) waits at most one
batch at a time instead of one huge DELETE. A batch removes the spans'
annotations first (Django's CASCADE is not in the database), then the spans
(on SQLite a trigger removes them from the attribute index), and at the end
the traces that ended before the cutoff. The oldest spans go first, by the
(project, start_time) index.

On PostgreSQL, where spans are partitioned by week (traces/partitions.py),
purge_all first drops the weeks that hold no span any project still keeps
(one DROP TABLE instead of deleting their rows); the batches then delete what
is left past each cutoff: the spans of the current week of a project's
retention, and those of weeks shared with a project that keeps its spans
longer.

docs/benchmarks.md has ingest's throughput while a purge runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from agentloop.teams.models import Project
from agentloop.traces import partitions, rollups
from agentloop.traces.models import Span, SpanAnnotation, Trace

BATCH = 5000


@dataclass
class Purged:
    project: Project
    cutoff: object
    spans: int = 0
    traces: int = 0
    dropped_partitions: int = 0  # week partitions with spans of the project that were dropped


def purge_project(project: Project, now=None, batch: int = BATCH, pause=None) -> Purged:
    """Delete the project's spans that started before now - retention_days.

    `pause` (seconds, optional) is slept between batches, to leave the
    database to ingest on a busy machine."""
    now = now or timezone.now()
    if project.retention_days is None:
        return Purged(project, None)
    cutoff = now - timedelta(days=project.retention_days)
    result = Purged(project, cutoff)
    old = Span.objects.filter(project=project, start_time__lt=cutoff).order_by("start_time")
    while True:
        ids = list(old.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        with transaction.atomic():
            SpanAnnotation.objects.filter(span_id__in=ids).delete()
            result.spans += _delete_rows(Span, ids)
        if pause:
            time.sleep(pause)
    # The rollups of the intervals now empty (analytics would still count them).
    rollups.forget_before(project, cutoff)
    # A trace whose spans all went (it ended before the cutoff) goes too.
    while True:
        ids = list(
            Trace.objects.filter(project=project, end_time__lt=cutoff).values_list("pk", flat=True)[
                :batch
            ]
        )
        if not ids:
            break
        with transaction.atomic():
            result.traces += _delete_rows(Trace, ids)
    return result


def _delete_rows(model, ids: list[int]) -> int:
    # One DELETE by primary key, without Django's collector (which would load
    # every row and look for related rows the batch already removed).
    table = connection.ops.quote_name(model._meta.db_table)
    placeholders = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id IN ({placeholders})", ids)
        return cursor.rowcount


def purge_all(now=None, batch: int = BATCH, pause=None) -> list[Purged]:
    """Every project with a retention, one after the other, after dropping the
    partitions past every project's retention (PostgreSQL)."""
    now = now or timezone.now()
    dropped = partitions.drop_expired_partitions(now=now)
    projects = Project.objects.filter(retention_days__isnull=False).order_by("pk")
    purged = [purge_project(project, now=now, batch=batch, pause=pause) for project in projects]
    for p in purged:
        for drop in dropped:
            if p.project.pk in drop.spans_by_project:
                p.spans += drop.spans_by_project[p.project.pk]
                p.dropped_partitions += 1
    return purged


def purge_task() -> str:
    """The daily schedule's task (agentloop/schedules.py)."""
    purged = purge_all()
    dropped = sum(p.dropped_partitions for p in purged)
    return f"purged {sum(p.spans for p in purged)} spans in {len(purged)} projects" + (
        f" ({dropped} partitions dropped)" if dropped else ""
    )
