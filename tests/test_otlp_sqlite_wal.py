"""Ingest's SQLite WAL: kept open between requests, checkpointed on a thread of its own.

When the last connection to a WAL database closes, SQLite checkpoints the WAL
into the database file (with an fsync) and deletes it; Django closes its
connection after every request. And by default the commit that takes the WAL
past 1,000 pages copies them into the file before its request can answer.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from django.db import connection

from agentloop.traces import ingest, otlp, sqlite_wal
from agentloop.traces.models import Span
from tests.otlp_payloads import export_request, new_trace_id, span


def wal_database(tmp_path: Path) -> str:
    path = str(tmp_path / "db.sqlite3")
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x)")
    setup.commit()
    setup.close()
    return path


def write_and_close(path: str, value=1, autocheckpoint: int = 1000) -> None:
    # What a request does: its own connection writes, commits and closes.
    writer = sqlite3.connect(path)
    writer.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    writer.execute("INSERT INTO t VALUES (?)", (value,))
    writer.commit()
    writer.close()


# --- keeping the file open ------------------------------------------------------


def test_with_the_keeper_a_close_leaves_the_wal_alone(tmp_path):
    path = wal_database(tmp_path)
    keeper = sqlite_wal.keep_open(path)
    try:
        write_and_close(path)

        # The commit is still in the WAL, not checkpointed into the file.
        assert Path(path + "-wal").stat().st_size > 0
        assert keeper.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        keeper.close()


def test_a_connection_that_only_opened_the_file_does_not_count(tmp_path):
    # Why keep_open reads once: the earlier keeper only opened the file, and
    # every close still checkpointed and deleted the WAL.
    path = wal_database(tmp_path)
    opened_only = sqlite3.connect(path)
    try:
        write_and_close(path)

        assert not Path(path + "-wal").exists()
    finally:
        opened_only.close()


# --- checkpointing on a thread ----------------------------------------------------

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's WAL")


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_the_checkpointer_copies_committed_pages_into_the_file(tmp_path):
    path = wal_database(tmp_path)
    checkpointer = sqlite_wal.WalCheckpointer(path)
    size_before = Path(path).stat().st_size
    # A commit that does not checkpoint itself, as ingest's: ~400 KB of pages.
    write_and_close(path, b"\x01" * 400_000, autocheckpoint=0)
    assert Path(path).stat().st_size == size_before  # only in the WAL so far

    checkpointer.committed()

    assert wait_for(lambda: Path(path).stat().st_size > size_before + 300_000)


def test_one_checkpointer_per_file_for_the_life_of_the_process(db):
    if connection.vendor != "sqlite":
        assert sqlite_wal.checkpointer_for(connection) is None
        return
    first = sqlite_wal.checkpointer_for(connection)

    assert sqlite_wal.checkpointer_for(connection) is first
    assert first.path == str(connection.settings_dict["NAME"])


@sqlite_only
def test_ingests_commits_leave_checkpoints_to_the_checkpointer(db):
    def autocheckpoint() -> int:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            return cursor.fetchone()[0]

    checkpointer = sqlite_wal.checkpointer_for(connection)
    with sqlite_wal.checkpoints_left_to(checkpointer, connection):
        assert autocheckpoint() == 0
    # Whatever else the connection writes checkpoints as SQLite does by default.
    assert autocheckpoint() == 1000

    with pytest.raises(RuntimeError):
        with sqlite_wal.checkpoints_left_to(checkpointer, connection):
            raise RuntimeError("the insert failed")
    assert autocheckpoint() == 1000


@sqlite_only
def test_ingest_tells_the_checkpointer_after_storing_and_only_then(project, monkeypatch):
    told = []  # spans stored when the checkpointer was told
    checkpointer = sqlite_wal.checkpointer_for(connection)
    monkeypatch.setattr(
        checkpointer, "committed", lambda: told.append(Span.objects.filter(project=project).count())
    )
    stored = export_request(({}, [span(trace_id=new_trace_id())]))
    refused = export_request(({}, [span(trace_id="", raw_ids=(bytes(16), b"\x01" * 8))]))

    ingest.ingest_export(
        project,
        otlp.decode_export(refused.SerializeToString(), otlp.PROTOBUF, attribute_tokens=False),
    )
    assert told == []  # nothing stored, nothing to checkpoint

    ingest.ingest_export(
        project,
        otlp.decode_export(stored.SerializeToString(), otlp.PROTOBUF, attribute_tokens=False),
    )
    assert told == [1]


@sqlite_only
def test_ingest_stores_with_checkpoints_left_to_the_checkpointer(project, monkeypatch):
    seen = []
    upsert_traces = ingest._upsert_traces

    def upsert_and_look(batch, now):
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            seen.append(cursor.fetchone()[0])
        upsert_traces(batch, now)

    monkeypatch.setattr(ingest, "_upsert_traces", upsert_and_look)
    request = export_request(({}, [span(trace_id=new_trace_id())]))

    ingest.ingest_export(
        project,
        otlp.decode_export(request.SerializeToString(), otlp.PROTOBUF, attribute_tokens=False),
    )

    assert seen == [0]  # inside ingest's transaction: its commit will not checkpoint


# --- a bounded WAL ------------------------------------------------------------------


def wal_size(path: str) -> int:
    wal = Path(path + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def burst(path: str, rows: int, limit: int) -> None:
    # Ingest's commits: no checkpoint of their own, the size limit set.
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute(f"PRAGMA journal_size_limit={limit}")
    for _ in range(rows):
        writer.execute("INSERT INTO t VALUES (?)", (b"\x01" * 20_000,))
        writer.commit()
    writer.close()


def test_a_wal_past_the_limit_starts_over_once_readers_let_it(tmp_path, monkeypatch):
    limit = 300_000
    monkeypatch.setattr(sqlite_wal, "WAL_LIMIT_BYTES", limit)
    path = wal_database(tmp_path)
    checkpointer = sqlite_wal.WalCheckpointer(path, start=False)
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchall()  # holds its snapshot: no restart

    burst(path, 50, limit)  # ~1 MB of pages
    assert checkpointer.checkpoint() == "RESTART"  # waits for the reader, then gives up
    reader.rollback()
    reader.close()
    burst(path, 50, limit)
    grown = wal_size(path)
    assert grown > limit

    assert checkpointer.checkpoint() == "RESTART"  # no reader now: the WAL starts over
    burst(path, 1, limit)  # the next commit restarts it and cuts the file to the limit

    assert wal_size(path) <= limit
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (101,)


def test_an_idle_checkpoint_empties_the_wal(tmp_path):
    path = wal_database(tmp_path)
    checkpointer = sqlite_wal.WalCheckpointer(path, start=False)
    burst(path, 20, 64 * 1024 * 1024)
    assert wal_size(path) > 300_000
    assert checkpointer.checkpoint() == "PASSIVE"
    assert wal_size(path) > 300_000  # copied into the file, but the file stays

    assert checkpointer.checkpoint(idle=True) == "TRUNCATE"

    assert wal_size(path) == 0
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone() == (20,)


def test_every_connection_limits_the_wal_it_restarts(db):
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_size_limit")
        assert cursor.fetchone()[0] == sqlite_wal.WAL_LIMIT_BYTES
