"""`POST /v1/traces` as a plain ASGI app: OTLP ingest without Django's request handling.

Ingest's target is 10,000 spans/s on SQLite with one client; Django's request
handling (a thread and a new database connection per request) and compiling
the API key's ORM query cost ~8 ms of each 512-span request, about a tenth of
it (agentloop/fastpath.py says more). Here the body is read on the event
loop; key, decoding and storing run on threads whose connection stays open
(agentloop/database_threads.py: one on SQLite, which takes one writer at a
time, so requests queue here in order as `one_ingest_at_a_time` did).

The answer is `otlp_views.receive_export`, the same function the Django view
of this path calls (tests, WSGI).
"""

from __future__ import annotations

from django.conf import settings

from agentloop import fastpath
from agentloop.database_threads import DatabaseThreads
from agentloop.teams.models import ProjectApiKey
from agentloop.traces import otlp
from agentloop.traces.otlp_views import receive_export

PATH = "/v1/traces"

writer = DatabaseThreads("otlp-ingest")


async def _handle(scope, receive, send):
    if scope["method"] != "POST":
        return await fastpath.respond(send, 405, b"", [("allow", "POST")])
    headers = fastpath.headers_of(scope)
    try:
        body = await fastpath.read_body(receive, settings.OTLP_MAX_BODY_BYTES)
    except fastpath.BodyTooLarge:
        body = None  # answered 413, after the key is checked (as the view does)
    # Not retried: a failed store is answered 500 and the exporter retries it.
    answer = await writer.run(
        receive_export,
        fastpath.bearer_token(headers) or None,
        headers.get("content-type", ""),
        headers.get("content-encoding", ""),
        body,
        ProjectApiKey.project_for_token,
    )
    await fastpath.respond(
        send,
        answer.status,
        answer.body,
        [("content-type", answer.content_type), *answer.headers],
    )


async def _answer_failure(send):
    body = otlp.status_body(13, "Storing the spans failed.", otlp.JSON)  # 13: INTERNAL
    await fastpath.respond(send, 500, body, [("content-type", otlp.JSON)])


application = fastpath.plain_app(_handle, _answer_failure, "OTLP ingest")
