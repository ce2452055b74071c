"""Worker threads whose database connections stay open between calls.

Django under ASGI runs each request's synchronous code on a thread of its own
and closes that thread's connection when the request ends, whatever
CONN_MAX_AGE says: every request opens a new connection. For the hottest
paths — the LLM gateway's admission (every model call, before its first
byte), the runner's event posts (every transcript line, before anyone
watching sees it) and the transcript consumers' reads — opening the
connection was the largest part of what they cost (docs/benchmarks.md). Their
database work runs here instead: a small pool per purpose, each thread with
its own connection, opened on first use and reused.

How many threads: one on SQLite, which takes one writer at a time anyway; a
queue in this process then replaces SQLite's busy handler, which sleeps in
growing steps when writers of one process collide. Four on PostgreSQL, whose
writers do not wait for each other (and whose commits wait for the disk).

What keeps that safe:
- Django connections belong to the thread that opened them, so only that
  thread ever touches its connection.
- Each call is short (a keyed read, or one small transaction).
- Connections run in autocommit between calls, so an idle one holds no locks
  and every call sees what others committed before it.
- A call that fails on a database error closes its thread's connection; the
  next call there opens a new one (a restarted PostgreSQL, a dropped socket,
  or a transaction that failed half-way). Calls marked `retry=True` — reads,
  and writes that are idempotent — are tried once more on a fresh connection.
- `close()` closes every thread's connection from that thread, e.g. before a
  test database is dropped (PostgreSQL refuses to drop a database in use).

Why not Django's PostgreSQL connection pool (`OPTIONS: {"pool": True}`, Django
5.1+, psycopg_pool) instead, on PostgreSQL: measured against these threads on
the hot paths (docs/benchmarks.md, "Django's connection pool"), the pool was no
faster anywhere and slower under load: a connection checked out and handed back
on every call, on any thread of asgiref's executor, cost ~0.25 ms more per
model call's admission, ~9% fewer ingested spans/s with 4 clients, and 4-9% on
transcript delivery. SQLite, which has no pool, needs the one writer thread
anyway. Turning the pool on for Django's own requests would need its max_size
above what these threads keep checked out (one connection per thread, up to
POSTGRESQL_THREADS per pool of threads), or they would wait on the pool.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, connections

POSTGRESQL_THREADS = 4

_all: list[DatabaseThreads] = []
_all_lock = threading.Lock()


class DatabaseThreads:
    def __init__(self, name: str, size: int | None = None):
        """size: how many threads; by default one on SQLite, POSTGRESQL_THREADS otherwise."""
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._size = size or 0
        self._lock = threading.Lock()
        with _all_lock:
            _all.append(self)

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                if not self._size:
                    self._size = 1 if connection.vendor == "sqlite" else POSTGRESQL_THREADS
                self._executor = ThreadPoolExecutor(self._size, thread_name_prefix=self.name)
            return self._executor

    async def run(self, function, *args, retry: bool = False, **kwargs):
        """Run function(*args, **kwargs) on one of these threads and return its result."""
        call = functools.partial(_call, function, args, kwargs, retry)
        # sync_to_async rather than run_in_executor: code run here can reach
        # back into the event loop with async_to_sync.
        return await sync_to_async(call, thread_sensitive=False, executor=self.executor())()

    def close(self) -> None:
        """Close the connections of all these threads (those that opened one)."""
        with self._lock:
            executor, size = self._executor, self._size
        if executor is None:
            return
        # One call per thread: each waits at the barrier until all are taken.
        barrier = threading.Barrier(size)

        def close_this_threads_connections():
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=30)
            connections.close_all()

        for future in [executor.submit(close_this_threads_connections) for _ in range(size)]:
            future.result()


def _call(function, args, kwargs, retry: bool):
    try:
        return function(*args, **kwargs)
    except DatabaseError:
        # Maybe a dead connection, maybe a failed statement inside a transaction:
        # either way the next call starts on a new connection. Errors are rare
        # here; a reconnect is cheap next to a connection left in a bad state.
        connections.close_all()
        if not retry:
            raise
    try:
        return function(*args, **kwargs)
    except DatabaseError:
        connections.close_all()
        raise


def close_all() -> None:
    """Close the connections of every pool of database threads (test teardown)."""
    with _all_lock:
        threads = list(_all)
    for thread in threads:
        thread.close()
