"""Store decoded OTLP spans: route each resource to a project, insert, upsert traces.

This is the ingest hot path (≥ 10,000 spans/s on SQLite), so it writes the
row tuples `otlp` decoded, with two statements in one transaction and no
per-span query:

- spans: INSERT … ON CONFLICT (project, trace_id, span_id) DO NOTHING, so a
  re-sent span (exporters retry) is stored once (an `executemany` on SQLite;
  COPY into a temporary table first on PostgreSQL);
- traces: one row per (project, trace_id), upserted to the earliest start and
  the latest end seen over all batches, computed by the database so two
  concurrent requests for one trace cannot lose each other's times.

On SQLite the commit leaves WAL checkpoints to a thread of their own
(`sqlite_wal.py`). Raw SQL instead of `bulk_create`: building 512 model
instances per request and preparing each field through the ORM made the
insert 3-4 times slower (docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC

from django.db import connection, transaction
from django.utils import timezone

from agentloop.teams.models import ApiKeyRefusal, Project, Space
from agentloop.traces import evaluations, sqlite_wal
from agentloop.traces.models import Span, Trace
from agentloop.traces.otlp import (
    PROJECT_NAME_ATTRIBUTE,
    ROW_END,
    ROW_START,
    ROW_TRACE_ID,
    SPAN_ROW_FIELDS,
    DecodedExport,
)

# Span columns written by ingest, in the order of the INSERT's values: the
# decoded span row (otlp.SPAN_ROW_FIELDS) between the project and created_at.
SPAN_FIELDS = ("project_id", *SPAN_ROW_FIELDS, "created_at")

# What ingest stores: (project id, that project's span rows) pairs, one per
# resource, the rows in SPAN_ROW_FIELDS order as otlp decoded them.
Batch = list[tuple[int, list[tuple]]]


@dataclass
class IngestResult:
    accepted: int  # stored now, or already stored by an earlier send
    rejected: Counter  # reason -> number of spans refused


def ingest_export(
    project: Project, decoded: DecodedExport, now=None, *, key_id: int | None = None
) -> IngestResult:
    """Store the spans of one export for the key of `project`; all or nothing.

    A resource naming another project (`openinference.project.name`) sends its
    spans there, in the key's space: a name the space does not have creates that
    project (Phoenix's behaviour), unless the space refuses unknown names; then
    they are refused and counted in the result, never stored in the key's own
    project. Refusals are also counted per key (`key_id`, ApiKeyRefusal).
    """
    now = now or timezone.now()
    checkpointer = sqlite_wal.checkpointer_for(connection)  # None on PostgreSQL
    rejected = Counter(decoded.rejected)
    project_ids = _projects_by_name(project, decoded)
    batch: Batch = []
    accepted = 0
    for group in decoded.resources:
        if not group.rows:
            continue
        name = group.resource.get(PROJECT_NAME_ATTRIBUTE)
        if name is None or name == "" or name == project.name:
            project_id = project.pk
        else:
            project_id = project_ids.get(str(name))
            if project_id is None:
                rejected[_refusal_of_name(str(name))] += len(group.rows)
                continue
        batch.append((project_id, group.rows))
        accepted += len(group.rows)
    if batch:
        with sqlite_wal.checkpoints_left_to(checkpointer, connection):
            with transaction.atomic():
                _insert_spans(batch, now)
                _upsert_traces(batch, now)
                # An app's own judges (EVALUATOR spans) become annotations of what they judged.
                for project_id, rows in batch:
                    evaluations.store_verdicts(project_id, rows)
        if checkpointer is not None:
            checkpointer.committed()
    if rejected and key_id is not None:
        ApiKeyRefusal.count(key_id, rejected, now)
    return IngestResult(accepted=accepted, rejected=rejected)


def _refusal_of_name(name: str) -> str:
    if len(name) > _PROJECT_NAME_MAX:
        return f"project name longer than {_PROJECT_NAME_MAX} characters"
    return f"no project named {name!r} in this space, which refuses unknown project names"


_PROJECT_NAME_MAX = Project._meta.get_field("name").max_length


def _projects_by_name(project: Project, decoded: DecodedExport) -> dict[str, int]:
    """The other projects of the key's space named by resources: one query, or
    none; a name the space lacks is created unless the space refuses them.

    The key was issued by the space's admins for this space, so it may write to
    any project of the space by name, and to no project of another space, nor
    to the space's internal worker project (its traces are the runs' own): a
    name of either creates a project of that name in the key's space.
    """
    names = {
        str(group.resource[PROJECT_NAME_ATTRIBUTE])
        for group in decoded.resources
        if group.rows and group.resource.get(PROJECT_NAME_ATTRIBUTE) not in (None, "")
    }
    names.discard(project.name)
    if not names:
        return {}
    in_space = Project.objects.filter(space_id=project.space_id, internal=False)
    found = dict(in_space.filter(name__in=names).values_list("name", "pk"))
    missing = [name for name in names - found.keys() if len(name) <= _PROJECT_NAME_MAX]
    if missing and not Space.objects.filter(pk=project.space_id, refuse_unknown_projects=True):
        # Created outside the spans' transaction, ignoring a concurrent export
        # that creates the same name: either way it exists once, and a failed
        # insert leaves an empty project the exporter's retry fills.
        Project.objects.bulk_create(
            [Project(space_id=project.space_id, name=name) for name in missing],
            ignore_conflicts=True,
        )
        found.update(in_space.filter(name__in=missing).values_list("name", "pk"))
    return found


def _insert_spans(batch: Batch, now) -> None:
    # agentloop runs on SQLite or PostgreSQL (settings.DATABASES).
    if connection.vendor == "postgresql":
        _copy_spans_postgresql(batch, now)
    else:
        _insert_spans_sqlite(batch, now)


def _sqlite_datetime(value) -> str:
    # What Django's SQLite backend stores for an aware datetime (naive UTC text),
    # without its per-value checks.
    if value.tzinfo is UTC:
        return str(value)[:-6]  # drop "+00:00"
    return str(value.astimezone(UTC).replace(tzinfo=None))


def _insert_spans_sqlite(batch: Batch, now) -> None:
    # The decoded rows already hold SQLite's values (times as its UTC text).
    # (One multi-row INSERT per ~1,500 spans instead measured slower on SQLite.)
    created_at = _sqlite_datetime(now)
    rows = [(project_id, *row, created_at) for project_id, group in batch for row in group]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(column) for column in SPAN_FIELDS)
    placeholders = ", ".join(["%s"] * len(SPAN_FIELDS))
    sql = (
        f"INSERT INTO {qn(Span._meta.db_table)} ({columns}) VALUES ({placeholders}) "
        "ON CONFLICT (project_id, trace_id, span_id) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _pg_time(utc_text: str) -> str:
    # The decoded UTC text with its zone, so PostgreSQL never reads it in the
    # session's time zone.
    return utc_text + "+00:00"


def _copy_spans_postgresql(batch: Batch, now) -> None:
    """COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT DO NOTHING.

    psycopg's executemany quotes every value of every row in Python (about 1,000
    spans/s); COPY streams the rows and PostgreSQL parses them (many times faster).

    The temporary table is created once per connection (ingest's connections
    stay open, agentloop/database_threads.py) and emptied at each commit
    (ON COMMIT DELETE ROWS truncates it in place). Creating and dropping it in
    every batch wrote and removed a table's catalog rows each time: ~1.5 ms of
    the database's CPU and ~9 ms of wall time per batch (docs/benchmarks.md).
    """
    assert ROW_END == ROW_START + 1  # the two times are replaced together below
    table = Span._meta.db_table
    columns = ", ".join(SPAN_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS span_ingest ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY span_ingest ({columns}) FROM STDIN") as copy:
            write_row = copy.write_row
            for project_id, group in batch:
                # The resource's JSON is one string shared by the group's rows.
                resource_has_nul = bool(group) and NUL_ESCAPE in group[0][_ROW_RESOURCE]
                for row in group:
                    if resource_has_nul or _has_nul(row):
                        row = tuple(_without_nul(v) for v in row)
                    write_row(
                        (
                            project_id,
                            *row[:ROW_START],
                            row[ROW_START] + "+00:00",  # UTC, whatever the session's time zone
                            row[ROW_END] + "+00:00",
                            *row[ROW_END + 1 :],
                            now,
                        )
                    )
        # No conflict target: the partitioned table's unique constraint also
        # holds start_time (traces/partitions.py), the unpartitioned one's not;
        # either way a re-sent span conflicts with itself and is skipped.
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM span_ingest "
            "ON CONFLICT DO NOTHING"
        )
        # ON COMMIT is not enough inside an outer transaction (a savepoint does
        # not commit): the next batch of that transaction would find these rows.
        # A DELETE of a temporary table's rows writes no WAL.
        cursor.execute("DELETE FROM span_ingest")


# PostgreSQL text cannot hold NUL, nor jsonb the escape \u0000: either would
# refuse the whole batch. Such a character (rare: binary leaking into a string
# attribute) is stored as U+FFFD, the replacement character, as a decoder would.
NUL_ESCAPE = "\\u0000"
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")  # \u0000 not itself escaped


# The row's columns that can hold a NUL (or text that reads as its JSON
# escape, which _without_nul also rewrites): text sent as is, and JSON, where
# the encoder writes a NUL as the escape. The others are hex ids, digits, times
# and fixed words; model, session and user ids are copied from the attributes,
# whose JSON shows what they hold. (The resource is checked once per group.)
# Checking these four instead of every value of every row (a generator over
# 21 values) was ~5% of the web process's CPU on PostgreSQL under cProfile.
_ROW_RESOURCE = SPAN_ROW_FIELDS.index("resource")
_ROW_NAME = SPAN_ROW_FIELDS.index("name")
_ROW_STATUS_MESSAGE = SPAN_ROW_FIELDS.index("status_message")
_ROW_ATTRIBUTES = SPAN_ROW_FIELDS.index("attributes")
_ROW_EVENTS = SPAN_ROW_FIELDS.index("events")


def _has_nul(row: tuple) -> bool:
    texts = row[_ROW_NAME], row[_ROW_STATUS_MESSAGE]
    return (
        NUL_ESCAPE in row[_ROW_ATTRIBUTES]
        or NUL_ESCAPE in row[_ROW_EVENTS]
        or any("\x00" in text or NUL_ESCAPE in text for text in texts)
    )


def _without_nul(value):
    if not isinstance(value, str):
        return value
    return _JSON_NUL.sub(r"\1\\ufffd", value.replace("\x00", "\ufffd"))


def _upsert_traces(batch: Batch, now) -> None:
    # One row per trace, so no statement updates the same trace twice
    # (PostgreSQL refuses that within one INSERT … ON CONFLICT). The decoded
    # times are UTC text that sorts like the times themselves (a whole second
    # has no fraction and sorts first in its second; tests/test_otlp_rows.py).
    bounds: dict[tuple[int, str], list[str]] = {}
    for project_id, group in batch:
        for row in group:
            key = (project_id, row[ROW_TRACE_ID])
            start = row[ROW_START]
            end = row[ROW_END]
            known = bounds.get(key)
            if known is None:
                bounds[key] = [start, end]
            else:
                if start < known[0]:
                    known[0] = start
                if end > known[1]:
                    known[1] = end
    if connection.vendor == "postgresql":
        rows = [
            (project_id, trace_id, _pg_time(start), _pg_time(end), now)
            for (project_id, trace_id), (start, end) in bounds.items()
        ]
    else:
        created_at = _sqlite_datetime(now)
        rows = [
            (project_id, trace_id, start, end, created_at)
            for (project_id, trace_id), (start, end) in bounds.items()
        ]
    qn = connection.ops.quote_name
    table = qn(Trace._meta.db_table)
    # SQLite's two-argument MIN/MAX are PostgreSQL's LEAST/GREATEST. SQLite keeps
    # datetimes as fixed-format UTC text, which sorts like the times themselves.
    least, greatest = ("MIN", "MAX") if connection.vendor == "sqlite" else ("LEAST", "GREATEST")
    sql = (
        f"INSERT INTO {table} (project_id, trace_id, start_time, end_time, created_at) "
        "VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (project_id, trace_id) DO UPDATE SET "
        f"start_time = {least}({table}.start_time, excluded.start_time), "
        f"end_time = {greatest}({table}.end_time, excluded.end_time)"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
