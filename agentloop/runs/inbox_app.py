"""`GET /api/runner/v1/inbox` as a plain ASGI app: the runner's long-poll, without a thread.

Every running sandbox keeps one of these open nearly all the time (up to 25
s each, then again). Under Django each would hold a thread for its whole
wait; here a waiting inbox is a coroutine on daphne's event loop, woken by the
run's doorbell (agentloop/runs/inbox.py), and its database looks run on
threads whose connections stay open (agentloop/database_threads.py).

The answer is `inbox.wait_for_inbox`, the same as the Django view of this
path (tests, WSGI) gives; the checks come in runner_route's order (method,
token, scope, then the query) with its answers (docs/runner-protocol.md).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from agentloop import fastpath
from agentloop.database_threads import DatabaseThreads
from agentloop.runs import inbox
from agentloop.runs.models import ServiceKey

PATH = "/api/runner/v1/inbox"
SCOPE = "events:write"  # runner_route's default, as for the Django view

reads = DatabaseThreads("runner-inbox")


async def _read(function, *args):
    return await reads.run(function, *args, retry=True)  # reads only: safe to retry


async def _handle(scope, receive, send):
    if scope["method"] != "GET":
        return await fastpath.respond_json(send, 405, {"detail": "Use GET."})
    token = fastpath.bearer_token(fastpath.headers_of(scope))
    found = await _read(ServiceKey.run_for_token, token)
    if found is None:
        return await fastpath.respond_json(
            send,
            401,
            {"detail": "Unknown, expired or revoked run token."},
            [("www-authenticate", 'Bearer realm="agentloop"')],
        )
    run, scopes = found
    if SCOPE not in scopes:
        return await fastpath.respond_json(
            send, 403, {"detail": f"This token lacks the {SCOPE} scope."}
        )
    query = parse_qs(fastpath.query_string(scope), keep_blank_values=True)
    try:
        # As Django's request.GET.get: the last value of a repeated parameter.
        after = inbox.int_param(query.get("after", [None])[-1], "after", 0)
        wait = inbox.int_param(query.get("wait", [None])[-1], "wait", inbox.MAX_WAIT_SECONDS)
    except ValueError as error:
        return await fastpath.respond_json(send, 400, {"detail": str(error)})
    answer = await inbox.wait_for_inbox(run, after, wait, _read)
    await fastpath.respond_json(send, 200, answer)


async def _answer_failure(send):
    await fastpath.respond_json(send, 500, {"detail": "Reading the inbox failed."})


application = fastpath.plain_app(_handle, _answer_failure, "runner inbox")
