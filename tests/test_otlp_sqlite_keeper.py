"""Ingest's idle SQLite connection keeps the WAL from being checkpointed at every close.

When the last connection to a WAL database closes, SQLite checkpoints the WAL
into the database file (with an fsync) and deletes it. Django closes its
connection after every request, so without another connection open that
happened once per ingest request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agentloop.traces import ingest


def wal_database(tmp_path: Path) -> str:
    path = str(tmp_path / "db.sqlite3")
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x)")
    setup.commit()
    setup.close()
    return path


def write_and_close(path: str) -> None:
    # What a request does: its own connection writes, commits and closes.
    writer = sqlite3.connect(path)
    writer.execute("INSERT INTO t VALUES (1)")
    writer.commit()
    writer.close()


def test_with_the_keeper_a_close_leaves_the_wal_alone(tmp_path):
    path = wal_database(tmp_path)
    keeper = ingest.keep_open(path)
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
