"""Store decoded OTLP spans: route each resource to a project, insert, upsert traces.

This is the ingest hot path (≥ 10,000 spans/s on SQLite), so it writes with
two `executemany` statements in one transaction and no per-span query:

- spans: INSERT … ON CONFLICT (project, trace_id, span_id) DO NOTHING, so a
  re-sent span (exporters retry) is stored once;
- traces: one row per (project, trace_id), upserted to the earliest start and
  the latest end seen over all batches, computed by the database so two
  concurrent requests for one trace cannot lose each other's times.

Raw SQL instead of `bulk_create`: building 512 model instances per request
and preparing each field through the ORM made the insert 3-4 times slower
(docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC

from django.db import connection, transaction
from django.utils import timezone

from agentloop.teams.models import Project
from agentloop.traces.models import Span, Trace
from agentloop.traces.otlp import PROJECT_NAME_ATTRIBUTE, DecodedExport

# Span columns written by ingest, in the order of the INSERT's values.
SPAN_FIELDS = (
    "project_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "status_code",
    "status_message",
    "start_time",
    "end_time",
    "duration_ms",
    "attributes",
    "events",
    "resource",
    "model_name",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "session_id",
    "user_id",
    "created_at",
)


@dataclass
class IngestResult:
    accepted: int  # stored now, or already stored by an earlier send
    rejected: Counter  # reason -> number of spans refused


def ingest_export(project: Project, decoded: DecodedExport, now=None) -> IngestResult:
    """Store the spans of one export for the key of `project`; all or nothing.

    A resource naming another project (`openinference.project.name`) sends its
    spans there if that project is in the same space; otherwise they are refused
    and counted in the result, never stored in the key's own project.
    """
    now = now or timezone.now()
    _keep_sqlite_file_open()
    rejected = Counter(decoded.rejected)
    project_ids = _projects_by_name(project, decoded)
    batch: list[tuple[int, dict]] = []
    for group in decoded.resources:
        if not group.spans:
            continue
        name = group.resource.get(PROJECT_NAME_ATTRIBUTE)
        if name is None or name == "" or name == project.name:
            project_id = project.pk
        else:
            project_id = project_ids.get(str(name))
            if project_id is None:
                rejected[f"no project named {str(name)!r} in this space"] += len(group.spans)
                continue
        batch.extend((project_id, span) for span in group.spans)
    if batch:
        with transaction.atomic():
            _insert_spans(batch, now)
            _upsert_traces(batch, now)
    return IngestResult(accepted=len(batch), rejected=rejected)


_sqlite_ingest_lock = threading.Lock()


def one_ingest_at_a_time():
    """On SQLite, run this process's ingest requests (decode and store) one at a time.

    SQLite has one writer at a time anyway. Concurrent requests only contend:
    a writer that finds the database busy sleeps in SQLite's busy handler in
    steps of up to 100 ms, and the writer holding it releases the GIL at every
    row of executemany and then waits for threads busy decoding to give it back
    (up to 5 ms each time). Queued on a lock, each request runs at full speed and
    the next starts the moment the previous one commits. With 4 concurrent
    clients this cut the server's CPU time per span by a fifth to a quarter.
    """
    if connection.vendor == "sqlite":
        return _sqlite_ingest_lock
    return contextlib.nullcontext()


# SQLite file -> an idle connection kept open for the life of the process.
_sqlite_keepers: dict[str, sqlite3.Connection] = {}


def _keep_sqlite_file_open() -> None:
    """Hold one idle connection to the SQLite file for the life of the process.

    Django closes its connection after each request (CONN_MAX_AGE=0), and when
    the last connection to a WAL database closes, SQLite checkpoints the whole
    WAL into the database with an fsync: once per ingest request. With an idle
    connection left open, SQLite checkpoints every 1,000 WAL pages instead (its
    default): the insert alone measured a third faster or more. The idle
    connection takes no locks.
    """
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    name = str(connection.settings_dict["NAME"])
    if name not in _sqlite_keepers:
        _sqlite_keepers[name] = sqlite3.connect(name, check_same_thread=False)


def _projects_by_name(project: Project, decoded: DecodedExport) -> dict[str, int]:
    """The other projects of the key's space named by resources: one query, or none.

    The key was issued by the space's admins for this space, so it may write to
    any project of the space by name, and to no project of another space.
    """
    names = {
        str(group.resource[PROJECT_NAME_ATTRIBUTE])
        for group in decoded.resources
        if group.spans and group.resource.get(PROJECT_NAME_ATTRIBUTE) not in (None, "")
    }
    names.discard(project.name)
    if not names:
        return {}
    return dict(
        Project.objects.filter(space_id=project.space_id, name__in=names).values_list("name", "pk")
    )


def _insert_spans(batch: list[tuple[int, dict]], now) -> None:
    if connection.vendor == "postgresql":
        _copy_spans_postgresql(batch, now)
    else:
        _insert_spans_executemany(batch, now)


def _span_rows(batch: list[tuple[int, dict]], now, to_db_time) -> list[tuple]:
    """One tuple per span in SPAN_FIELDS order, JSON columns as JSON text."""
    created_at = to_db_time(now)
    dumps = json.dumps
    # Every span of a resource shares its resource dict: encode it once.
    resource_json: dict[int, str] = {}
    rows = []
    for project_id, s in batch:
        resource = s["resource"]
        encoded_resource = resource_json.get(id(resource))
        if encoded_resource is None:
            encoded_resource = resource_json[id(resource)] = dumps(resource)
        rows.append(
            (
                project_id,
                s["trace_id"],
                s["span_id"],
                s["parent_span_id"],
                s["name"],
                s["kind"],
                s["status_code"],
                s["status_message"],
                to_db_time(s["start_time"]),
                to_db_time(s["end_time"]),
                s["duration_ms"],
                dumps(s["attributes"]),
                dumps(s["events"]) if s["events"] else "[]",
                encoded_resource,
                s["model_name"],
                s["prompt_tokens"],
                s["completion_tokens"],
                s["total_tokens"],
                s["session_id"],
                s["user_id"],
                created_at,
            )
        )
    return rows


def _sqlite_datetime(value) -> str:
    # What Django's SQLite backend stores for an aware datetime (naive UTC text),
    # without its per-value checks, which cost a fifth of the insert otherwise.
    if value.tzinfo is UTC:
        return str(value)[:-6]  # drop "+00:00"
    return str(value.astimezone(UTC).replace(tzinfo=None))


def _insert_spans_executemany(batch: list[tuple[int, dict]], now) -> None:
    # (One multi-row INSERT per ~1,500 spans instead measured slower on SQLite.)
    to_db_time = (
        _sqlite_datetime
        if connection.vendor == "sqlite"
        else connection.ops.adapt_datetimefield_value
    )
    rows = _span_rows(batch, now, to_db_time)
    qn = connection.ops.quote_name
    columns = ", ".join(qn(column) for column in SPAN_FIELDS)
    placeholders = ", ".join(["%s"] * len(SPAN_FIELDS))
    sql = (
        f"INSERT INTO {qn(Span._meta.db_table)} ({columns}) VALUES ({placeholders}) "
        "ON CONFLICT (project_id, trace_id, span_id) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _copy_spans_postgresql(batch: list[tuple[int, dict]], now) -> None:
    """COPY into a temporary table, then one INSERT … SELECT … ON CONFLICT DO NOTHING.

    psycopg's executemany quotes every value of every row in Python (about 1,000
    spans/s); COPY streams the rows and PostgreSQL parses them (many times faster).
    """
    rows = _span_rows(batch, now, lambda value: value)
    table = Span._meta.db_table
    columns = ", ".join(SPAN_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE span_ingest ON COMMIT DROP AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY span_ingest ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM span_ingest "
            "ON CONFLICT (project_id, trace_id, span_id) DO NOTHING"
        )
        # ON COMMIT DROP is not enough inside an outer transaction (a savepoint
        # does not commit): the next batch of that transaction would find it.
        cursor.execute("DROP TABLE span_ingest")


def _upsert_traces(batch: list[tuple[int, dict]], now) -> None:
    # One row per trace, so no statement updates the same trace twice
    # (PostgreSQL refuses that within one INSERT … ON CONFLICT).
    bounds: dict[tuple[int, str], list] = {}
    for project_id, s in batch:
        key = (project_id, s["trace_id"])
        known = bounds.get(key)
        if known is None:
            bounds[key] = [s["start_time"], s["end_time"]]
        else:
            if s["start_time"] < known[0]:
                known[0] = s["start_time"]
            if s["end_time"] > known[1]:
                known[1] = s["end_time"]
    to_db_time = (
        _sqlite_datetime
        if connection.vendor == "sqlite"
        else connection.ops.adapt_datetimefield_value
    )
    created_at = to_db_time(now)
    rows = [
        (project_id, trace_id, to_db_time(start), to_db_time(end), created_at)
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
