"""`GET /api/v1/sessions/<id>/stream` as a plain ASGI app: a run's live events as SSE.

The `agentloop follow` command and scripts read a transcript here. As for the
websocket transcript (studio/consumers.py), the database is the truth and the
run's doorbell (agentloop/runs/notify.py) only says "look again": the app
sends every event after `after=` (or `Last-Event-ID`), then waits on the
doorbell, reads what is new, sends it, and so on; where the channel layer
cannot cross processes it re-reads every POLL_SECONDS too. A watcher is a
coroutine, not a thread (agentloop/fastpath.py says why the hot paths skip
Django). When the run has ended and every event is sent, `event: end` says
how, and the stream closes. A reconnect with the last seq it saw resumes
with nothing lost and nothing repeated: seqs have no gaps.

Authenticated by a personal token (`Authorization: Bearer al_pt_…`) and the
same access helper as the session page (get_run_for_user, need "view").
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from urllib.parse import parse_qs

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from agentloop import fastpath
from agentloop.api.sessions import after_param, event_data, sse_end, sse_frame
from agentloop.database_threads import DatabaseThreads
from agentloop.runs import notify
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Run, RunEvent
from agentloop.teams.authentication import user_for_personal_token
from agentloop.traces.queries import InvalidFilter

PATH = re.compile(r"^/api/v1/sessions/(?P<code>[^/]+)/stream$")
POLL_SECONDS = 1.0  # only where the doorbell cannot cross processes
KEEPALIVE_SECONDS = 15.0  # a comment line, so proxies and clients see the stream alive
BATCH = 500

reads = DatabaseThreads("api-stream")


async def _read(function, *args):
    return await reads.run(function, *args, retry=True)  # reads only: safe to retry


def _open(raw_token: str, code: str):
    """(run, None) or (None, (status, detail)) — the checks in DRF's order."""
    found = user_for_personal_token(raw_token) if raw_token else None
    if found is None:
        detail = (
            "Unknown, expired or revoked token."
            if raw_token
            else "Authentication credentials were not provided."
        )
        return None, (401, detail)
    user, _ = found
    try:
        return get_run_for_user(user, code, "view"), None
    except Http404 as error:
        return None, (404, str(error) or "No such run.")
    except PermissionDenied as error:
        return None, (403, str(error))


def _events_after(run_id: int, after: int) -> list[dict]:
    rows = RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:BATCH]
    return [event_data(e) for e in rows]


def _state(run_id: int) -> Run:
    return Run.objects.only("status", "exit_reason", "next_seq").get(pk=run_id)


async def _first_of(bell: asyncio.Event, gone: asyncio.Event, timeout: float) -> set:
    """Wait for the doorbell or the hang-up, at most `timeout` s; the waits are
    cancelled on the way out, also when this request itself is cancelled."""
    waits = {asyncio.ensure_future(bell.wait()), asyncio.ensure_future(gone.wait())}
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return done
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def _handle(scope, receive, send):
    if scope["method"] != "GET":
        return await fastpath.respond_json(send, 405, {"detail": "Use GET."})
    headers = fastpath.headers_of(scope)
    code = PATH.match(scope["path"])["code"]
    query = {k: v[-1] for k, v in parse_qs(fastpath.query_string(scope)).items()}
    try:
        after = after_param(query, headers.get("last-event-id"))
    except InvalidFilter as error:
        return await fastpath.respond_json(send, 400, {"detail": str(error)})
    run, refused = await _read(_open, fastpath.bearer_token(headers), code)
    if refused is not None:
        status, detail = refused
        extra = [("www-authenticate", 'Bearer realm="agentloop"')] if status == 401 else []
        return await fastpath.respond_json(send, status, {"detail": detail}, extra)

    await fastpath.start_response(
        send,
        200,
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"),
        ],
    )
    gone = asyncio.Event()

    async def watch_disconnect():
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch_disconnect())
    layer = get_channel_layer()
    wait = POLL_SECONDS if layer is None or isinstance(layer, InMemoryChannelLayer) else None
    try:
        async with notify.listening(run.code) as bell:
            idle = 0.0
            while not gone.is_set():
                bell.clear()  # before looking: a ring while we read is not lost
                events = await _read(_events_after, run.pk, after)
                if events:
                    chunk = "".join(sse_frame(e) for e in events)
                    await send(
                        {"type": "http.response.body", "body": chunk.encode(), "more_body": True}
                    )
                    after = events[-1]["seq"]
                    idle = 0.0
                    continue
                state = await _read(_state, run.pk)
                if state.is_terminal and after >= state.next_seq:
                    await send({"type": "http.response.body", "body": sse_end(state).encode()})
                    return
                timeout = min(wait or KEEPALIVE_SECONDS, KEEPALIVE_SECONDS - idle)
                done = await _first_of(bell, gone, timeout)
                if not done:
                    idle += timeout
                    if idle >= KEEPALIVE_SECONDS:
                        await send(
                            {
                                "type": "http.response.body",
                                "body": b": keepalive\n\n",
                                "more_body": True,
                            }
                        )
                        idle = 0.0
            await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


async def _answer_failure(send):
    await fastpath.respond_json(send, 500, {"detail": "Reading the transcript failed."})


application = fastpath.plain_app(_handle, _answer_failure, "session stream")


def matches(path: str) -> bool:
    return PATH.match(path) is not None
