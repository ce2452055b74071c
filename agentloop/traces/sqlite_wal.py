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
checkpoints to the thread; every other writer keeps SQLite's default, so the
WAL stays bounded even if the thread were gone.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time

log = logging.getLogger(__name__)


def keep_open(path: str) -> sqlite3.Connection:
    """A connection to the SQLite file at `path` that counts as open to the others.

    A connection only counts once it has read the database: that maps the WAL
    index and takes the shared lock by which a closing connection sees it is not
    the last one. A connection that was merely opened holds nothing, and every
    request's close still checkpointed the WAL (measured: 2.7 ms per close,
    against 0.1 ms with a keeper that has read). The read ends at once, so the
    keeper holds no read transaction and never stops a checkpoint.
    """
    keeper = sqlite3.connect(path, check_same_thread=False)
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

    def __init__(self, path: str):
        self.path = path
        self._connection = keep_open(path)
        self._committed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="sqlite-wal-checkpointer", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """Ingest committed: checkpoint soon."""
        self._committed.set()

    def _run(self) -> None:
        while True:
            self._committed.wait()
            self._committed.clear()
            try:
                self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                log.exception("checkpointing the WAL of %s failed", self.path)
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
