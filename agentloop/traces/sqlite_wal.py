"""Ingest's SQLite write-ahead log: kept open between requests, checkpointed off the request path.

Two things made an ingest request on SQLite pay for more than its own writes:

- Django closes its connection after each request (CONN_MAX_AGE=0), and when
  the last connection to a WAL database closes, SQLite checkpoints the whole
  WAL into the database file with an fsync. `keep_open` holds a connection
  that stops that.
- With SQLite's default, the commit that takes the WAL past 1,000 pages
  copies them into the database file and fsyncs it, before that request's
  200 goes out: more than half of the commit's wall time on average (measured
  in process, 512-span batches: 24-28 µs per span with those checkpoints,
  9-11 without). `WalCheckpointer` does that copy on a thread of its own
  instead, which runs on the other core while the next request is decoded
  (sqlite3 releases the GIL). One client's spans/s rose by 13-16% on average
  over two runs of 4 alternating rounds (docs/benchmarks.md).

Neither changes durability: spans are committed to the WAL before the 200
either way (with synchronous=NORMAL, as before). Only ingest's commits leave
checkpoints to the thread; every other writer keeps SQLite's default.

The WAL's size is bounded too. A PASSIVE checkpoint never waits, so under a
steady burst with readers about (pages, the indexer) it never completes, the
next writer can never start the WAL over, and the file grew to 2.7 GB during
a 200k-span load (9.4× the database) and stayed there. So:
- past WAL_LIMIT_BYTES, the thread's checkpoint is a RESTART: it waits (the
  busy timeout) for readers to move to the database file, so the next commit
  writes the WAL from its start again;
- `journal_size_limit` (settings.py, every connection) then cuts the file
  back to that size whenever it restarts;
- when ingest has been idle for IDLE_SECONDS, a TRUNCATE checkpoint empties
  the file (0 bytes) until the next burst.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

# Past this, the checkpointer waits for readers so the WAL starts over, and
# journal_size_limit (settings.py) cuts the file back to it.
WAL_LIMIT_BYTES = 64 * 1024 * 1024


def keep_open(path: str) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` that counts as open to the others.

    A connection only counts once it has read the database: that maps the WAL
    index and takes the shared lock by which a closing connection sees it is not
    the last one. A connection that was merely opened holds nothing, and every
    request's close still checkpointed the WAL (measured: 2.7 ms per close,
    against 0.1 ms with a keeper that has read). The read ends at once, so the
    keeper holds no read transaction and never stops a checkpoint.
    """
    # The busy timeout is how long a RESTART checkpoint waits for readers, and
    # ingest's writers wait behind it meanwhile: short, and tried again on the
    # next round (pause_seconds later) if a reader was still there.
    keeper = sqlite3.connect(path, check_same_thread=False, timeout=0.2)
    keeper.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
    keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
    return keeper


class WalCheckpointer:
    """Copies an SQLite file's WAL into the file on a thread of its own, when told
    that ingest committed. Its connection also keeps the file open (keep_open).

    A PASSIVE checkpoint copies what no reader still needs and returns: it never
    waits for a reader or writer, and never blocks one.
    """

    # Let commits accumulate between checkpoints: a page that several of them
    # wrote (the last page of the table and of each time-ordered index) is then
    # copied once. At 10,000 spans/s that is ~2,500 spans, ~1,500 WAL pages.
    pause_seconds = 0.25
    idle_seconds = 2.0

    def __init__(self, path: str, start: bool = True):
        """start=False: no thread (tests call checkpoint() themselves)."""
        self.path = path
        self._connection = keep_open(path)
        self._committed = threading.Event()
        self._written_since_truncate = False
        if start:
            self._thread = threading.Thread(
                target=self._run, name="sqlite-wal-checkpointer", daemon=True
            )
            self._thread.start()

    def committed(self) -> None:
        """Ingest committed: checkpoint soon."""
        self._committed.set()

    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def checkpoint(self, idle: bool = False) -> str:
        """One checkpoint; which mode (returned) depends on idleness and the WAL's size."""
        if idle:
            mode = "TRUNCATE"
        elif self.wal_bytes() > WAL_LIMIT_BYTES:
            mode = "RESTART"
        else:
            mode = "PASSIVE"
        try:
            self._connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error:
            log.exception("checkpointing (%s) the WAL of %s failed", mode, self.path)
        return mode

    def _run(self) -> None:
        while True:
            if not self._committed.wait(timeout=self.idle_seconds):
                if self._written_since_truncate:
                    self.checkpoint(idle=True)
                    self._written_since_truncate = False
                continue
            self._committed.clear()
            self._written_since_truncate = True
            self.checkpoint()
            time.sleep(self.pause_seconds)


_checkpointers: dict[str, WalCheckpointer] = {}  # SQLite file -> its checkpointer
_checkpointers_lock = threading.Lock()


def checkpointer_for(connection) -> WalCheckpointer | None:
    """The checkpointer of a Django connection's SQLite file, started on first use
    and kept for the life of the process; None on PostgreSQL or in memory."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return None
    path = str(connection.settings_dict["NAME"])
    with _checkpointers_lock:
        checkpointer = _checkpointers.get(path)
        if checkpointer is None:
            checkpointer = _checkpointers[path] = WalCheckpointer(path)
    return checkpointer


@contextlib.contextmanager
def checkpoints_left_to(checkpointer: WalCheckpointer | None, connection):
    """Commits on `connection` inside this block do not checkpoint the WAL
    themselves: the checkpointer will, once told (`committed()`)."""
    if checkpointer is None:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    try:
        yield
    finally:
        # Back to SQLite's default for whatever else this connection writes.
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint=1000")
