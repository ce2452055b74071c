"""PostgreSQL: the spans table partitioned by week of start_time.

Why: retention can then drop a whole week of spans with one DROP TABLE (no
dead rows for vacuum, no WAL for every deleted row), and a query with a time
bound reads only the weeks it covers (partition pruning). SQLite keeps one
plain table; nothing here runs there.

Why a week: each partition is one more table the planner considers, and a
query without a time bound (a trace-id lookup, the newest page) probes every
partition's index. Weekly keeps that to ~52 a year for a project that keeps
its spans forever (daily would be 365), while the explorer's quick ranges
(an hour, a day, a week) still read one or two partitions. Retention stays
exact to the second whatever the width: the weeks wholly past every
project's retention are dropped, the rest is deleted in batches
(traces/retention.py).

The layout (migration 0004 makes it, from an existing table too):

- `traces_span` PARTITION BY RANGE (start_time); one partition per week,
  Monday 00:00 UTC to the next Monday, named `traces_span_pYYYYMMDD`;
- `traces_span_default` takes any span outside them (a clock far off, a week
  not created yet), so no insert ever fails; `ensure_partitions` moves such
  rows into their week when it creates it;
- the primary key is (id, start_time) and the unique constraint
  (project, trace_id, span_id, start_time): PostgreSQL requires the
  partition key in both. `id` stays the model's primary key and unique in
  practice (one identity sequence hands them out); a span re-sent with the
  same ids and start (what exporters retry) is still stored once, ingest's
  ON CONFLICT DO NOTHING sees the four-column constraint;
- SpanAnnotation.span has no foreign key constraint in the database (one
  cannot reference a key that is not unique on its own); the app keeps the
  integrity: annotations are written through traces/annotations.py for a span
  it has just read, and every deleter of spans removes their annotations first
  (Django's CASCADE, retention.py, drop_expired_partitions here).

`ensure_partitions` runs hourly (agentloop/schedules.py) and keeps AHEAD weeks
created in advance, so the default partition normally stays empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from agentloop.teams.models import Project

TABLE = "traces_span"
DEFAULT = "traces_span_default"
WIDTH = timedelta(weeks=1)
AHEAD = 4  # weeks created in advance, beyond the current one
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock_timeout


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime
    end: datetime


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the week holding `moment`."""
    moment = moment.astimezone(UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def partition_name(start: datetime) -> str:
    return f"{TABLE}_p{start:%Y%m%d}"


def is_partitioned(using=None) -> bool:
    conn = using or connection
    if conn.vendor != "postgresql":
        return False
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
            [TABLE],
        )
        return cursor.fetchone() is not None


def span_unique_fields() -> list[str]:
    """The fields of the spans' unique constraint as the database has it, for
    an upsert's conflict target (bulk_create(update_conflicts=True))."""
    fields = ["project", "trace_id", "span_id"]
    return [*fields, "start_time"] if is_partitioned() else fields


_BOUNDS = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


def partitions(using=None) -> list[Partition]:
    """The week partitions, oldest first (not the default one)."""
    conn = using or connection
    with conn.cursor() as cursor:
        # The bounds are printed in the session's time zone; ask for UTC.
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = %s AND p.relnamespace = current_schema()::regnamespace",
            [TABLE],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        match = _BOUNDS.match(bound)
        if match:  # not DEFAULT
            start, end = (datetime.fromisoformat(v).astimezone(UTC) for v in match.groups())
            found.append(Partition(name, start, end))
    return sorted(found, key=lambda p: p.start)


def create_partition(cursor, start: datetime) -> str:
    """Create the week partition starting at `start` (a Monday 00:00 UTC),
    moving its rows out of the default partition first (PostgreSQL refuses a
    new partition while the default one holds rows of its range)."""
    name = partition_name(start)
    end = start + WIDTH
    # Ingest may be writing to the default partition: hold it still while its
    # rows of this week move, so none lands there between the move and the create.
    cursor.execute(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE")
    cursor.execute(f"CREATE TEMPORARY TABLE span_moving (LIKE {TABLE}) ON COMMIT DROP")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE start_time >= %s AND start_time < %s "
        "RETURNING *) INSERT INTO span_moving SELECT * FROM moved",
        [start, end],
    )
    cursor.execute(
        f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)", [start, end]
    )
    cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM span_moving")
    cursor.execute("DROP TABLE span_moving")
    return name


def ensure_partitions(now=None, ahead: int = AHEAD) -> list[str]:
    """Create the partitions of this week and the `ahead` weeks after it that
    are missing; the names created. Nothing on SQLite or an unpartitioned table."""
    if not is_partitioned():
        return []
    now = now or timezone.now()
    have = {p.start for p in partitions()}
    first = week_start(now)
    created = []
    for week in range(ahead + 1):
        start = first + week * WIDTH
        if start in have:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            created.append(create_partition(cursor, start))
    return created


def ensure_partitions_task() -> str:
    """The hourly schedule's task (agentloop/schedules.py)."""
    created = ensure_partitions()
    return f"created {len(created)} span partitions" + (
        f": {', '.join(created)}" if created else ""
    )


@dataclass
class Dropped:
    partition: Partition
    spans_by_project: dict[int, int]


def drop_expired_partitions(now=None, lock_timeout_ms: int = 5000) -> list[Dropped]:
    """Drop every week partition that holds no span a project still keeps:
    each of its spans belongs to a project whose retention cutoff is at or
    after the partition's end. Their annotations go first (no foreign key
    does it, see the module's docstring).

    A partition shared with a project that keeps its spans longer (or
    forever) stays; retention.purge_project deletes the expired rest in
    batches. DROP TABLE locks the whole spans table for a moment: if a long
    query holds it, the drop gives up after lock_timeout_ms and the next
    hourly run tries again."""
    if not is_partitioned():
        return []
    now = now or timezone.now()
    retention = dict(Project.objects.values_list("pk", "retention_days"))
    dropped = []
    for part in partitions():
        if part.end > now:
            break
        # Projects that still keep some of this week's spans.
        keepers = [
            pk
            for pk, days in retention.items()
            if days is None or now - timedelta(days=days) < part.end
        ]
        try:
            counts = _drop(part, keepers, lock_timeout_ms)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            continue  # the lock timed out: the next hourly run tries again
        if counts is not None:
            dropped.append(Dropped(part, counts))
    return dropped


def _drop(part: Partition, keepers: list[int], lock_timeout_ms: int) -> dict[int, int] | None:
    """Drop the partition unless a keeper has spans in it; the spans per project."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        # Nothing can be written to the week while it is checked and
        # dropped; the rest of the table stays open to ingest until DROP.
        cursor.execute(f"LOCK TABLE {part.name} IN ACCESS EXCLUSIVE MODE")
        if keepers:
            cursor.execute(
                f"SELECT 1 FROM {part.name} WHERE project_id = ANY(%s) LIMIT 1", [keepers]
            )
            if cursor.fetchone():
                return None
        cursor.execute(f"SELECT project_id, count(*) FROM {part.name} GROUP BY project_id")
        counts = dict(cursor.fetchall())
        cursor.execute(
            f"DELETE FROM traces_spanannotation WHERE span_id IN (SELECT id FROM {part.name})"
        )
        # PostgreSQL refuses to drop a table with foreign key checks still
        # pending (deferred ones, of rows inserted earlier in the transaction:
        # only ever in tests, where everything runs in one transaction).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP TABLE {part.name}")
    return counts
