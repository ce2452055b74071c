"""`POST /api/runner/v1/events` as a plain ASGI app: every transcript line passes here.

A runner posts each batch of events here and every watcher of the run waits
for it: the transcript is only as live as this post is quick. Served without
Django's request handling (agentloop/fastpath.py says why), its database work
on threads whose connections stay open (agentloop/database_threads.py: one
for all runs of the process on SQLite, which takes one writer at a time
anyway, so posts queue here in order instead of in SQLite's busy handler).

There is no Django view of this path: this app is its only implementation
(the tests send their requests through agentloop.asgi too). The answer is
`runner_api.post_events`; errors are `{"detail": …}` as in the rest of the
runner API (docs/runner-protocol.md).
"""

from __future__ import annotations

from django.db import connection

from agentloop import fastpath
from agentloop.database_threads import DatabaseThreads
from agentloop.runs import notify, runner_api
from agentloop.traces import sqlite_wal

PATH = "/api/runner/v1/events"

writer = DatabaseThreads("runner-events")


async def _handle(scope, receive, send):
    if scope["method"] != "POST":
        return await fastpath.respond_json(send, 405, {"detail": "Use POST."})
    try:
        body = await fastpath.read_body(receive)
    except fastpath.BodyTooLarge as exc:
        return await fastpath.respond_json(send, 413, {"detail": str(exc)})
    token = fastpath.bearer_token(fastpath.headers_of(scope))
    # Storing a batch is idempotent (events have keys): safe to retry on a new connection.
    status, answer, rings = await writer.run(_post_events, token, body, retry=True)
    headers = [("www-authenticate", 'Bearer realm="agentloop"')] if status == 401 else []
    await fastpath.respond_json(send, status, answer, headers)
    # The runner has its answer; now wake the watchers (the events are committed).
    await notify.ring_held(rings)


def _post_events(token: str, body: bytes):
    # On SQLite the commit that takes the WAL past 1,000 pages would copy it
    # into the database file, fsync included, before this runner gets its
    # answer: the slowest posts by far. The WAL checkpointer does that on a
    # thread of its own (agentloop/traces/sqlite_wal.py, as for ingest).
    checkpointer = sqlite_wal.checkpointer_for(connection)  # None on PostgreSQL
    with notify.rings_held() as rings, sqlite_wal.checkpoints_left_to(checkpointer, connection):
        status, answer = runner_api.post_events(token, body)
    if checkpointer is not None and status == 200:
        checkpointer.committed()
    return status, answer, rings


async def _answer_failure(send):
    await fastpath.respond_json(send, 500, {"detail": "Storing the events failed."})


application = fastpath.plain_app(_handle, _answer_failure, "runner events")
