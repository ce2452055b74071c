"""A worker thread whose database connection stays open between calls.

Django under ASGI runs each request's synchronous code on a thread of its own
and closes that thread's connection when the request ends, whatever
CONN_MAX_AGE says: every request opens a new connection. For the two hottest
paths a sandbox calls — the LLM gateway's admission (every model call, before
its first byte) and the runner's event posts (every transcript line, before
anyone watching sees it) — opening the connection was the largest part of what
they cost (docs/benchmarks.md). Their database work runs here instead: one
thread per purpose, one connection, opened on first use and reused.

What keeps that safe:
- Django connections belong to the thread that opened them, so only this
  thread ever touches this connection.
- Calls run one at a time, in arrival order. Each is short (a keyed read, or
  one small transaction); a queue in this process also replaces SQLite's busy
  handler, which sleeps in growing steps when writers of one process collide.
- The connection runs in autocommit between calls, so an idle connection holds
  no locks and every call sees what others committed before it.
- A call that fails on a database error closes the connection; the next call
  opens a new one (a restarted PostgreSQL, a dropped socket, or a transaction
  that failed half-way). Calls marked `retry=True` — reads, and writes that
  are idempotent — are tried once more on a fresh connection.
- `close()` closes the connection from its own thread, e.g. before a test
  database is dropped (PostgreSQL refuses to drop a database in use).
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

_all: list[DatabaseThread] = []
_all_lock = threading.Lock()


class DatabaseThread:
    def __init__(self, name: str):
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        with _all_lock:
            _all.append(self)

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
            return self._executor

    async def run(self, function, *args, retry: bool = False, **kwargs):
        """Run function(*args, **kwargs) on this thread and return its result."""
        call = functools.partial(_call, function, args, kwargs, retry)
        # sync_to_async rather than run_in_executor: code run here can reach
        # back into the event loop with async_to_sync (the transcript doorbell).
        return await sync_to_async(call, thread_sensitive=False, executor=self.executor())()

    def close(self) -> None:
        """Close this thread's connections (if it ever opened one)."""
        with self._lock:
            executor = self._executor
        if executor is not None:
            executor.submit(connections.close_all).result()


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
    """Close the connections of every database thread (test teardown)."""
    with _all_lock:
        threads = list(_all)
    for thread in threads:
        thread.close()
