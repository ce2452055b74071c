"""Plain ASGI for the hot paths, served without Django's request handling.

Every model call goes through the LLM gateway (`/llm/…`), every transcript
line through the runner's event post (`/api/runner/v1/events`), and every
span through OTLP ingest (`/v1/traces`). Under daphne,
Django's ASGI handler added 3–5 ms to each such request before any of our code
ran — on a 2-core machine, measured with benches/bench_gateway.py and a probe
of a trivial 405 answer: 3.8 ms through Django against 0.5 ms as plain ASGI. It
reads the body into a temporary file, runs each request on a thread of its own
(a new thread per request), hops to it for the request_started and
request_finished signals and for every middleware, and opens a new database
connection for each request. These paths need none of that: no session,
user, CSRF (callers authenticate with a key), templates or cookies. So
`agentloop.asgi` sends them here; their database work runs on threads whose
connections stay open (agentloop/database_threads.py).

What Django would otherwise do for us, done here explicitly: a body size limit
(DATA_UPLOAD_MAX_MEMORY_SIZE or the caller's own, 413), method checks, 404 for unknown paths, and
an unexpected error logged and answered with 500 instead of a dropped
connection. These apps are the only implementation of their paths (there are
no Django views of them); everything else (pages, APIs) goes through Django.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class ClientGone(Exception):
    """The caller hung up before its request body arrived."""


class BodyTooLarge(Exception):
    pass


def headers_of(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; repeated headers joined with ', ' (RFC 9110)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    """The whole request body; BodyTooLarge past `limit` bytes, ClientGone on hang-up."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if limit is None else limit
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge(f"The request body is larger than {limit} bytes.")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
) -> None:
    """A whole response: status, headers (content-length added) and body."""
    await start_response(send, status, [*(headers or []), ("content-length", str(len(body)))])
    await send({"type": "http.response.body", "body": body})


async def respond_json(
    send: Send, status: int, data: Any, headers: list[tuple[str, str]] | None = None
) -> None:
    body = json.dumps(data).encode()
    await respond(send, status, body, [("content-type", "application/json"), *(headers or [])])


async def start_response(send: Send, status: int, headers: list[tuple[str, str]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
            ],
        }
    )


def query_string(scope: Scope) -> str:
    return scope.get("query_string", b"").decode("latin-1")


def plain_app(handle, answer_failure, what: str):
    """An ASGI app around `handle(scope, receive, send)`.

    A caller that hangs up before its body arrived is let go; an unexpected
    error is logged and, if the response has not started, answered with
    `answer_failure(send)` instead of a dropped connection.
    """

    async def application(scope, receive, send):
        try:
            await handle(scope, receive, send)
        except ClientGone:
            pass
        except Exception:
            log.exception("%s: %s %s failed", what, scope.get("method"), scope.get("path"))
            with contextlib.suppress(Exception):  # fails if the response had already started
                await answer_failure(send)

    return application


def bearer_token(headers: dict[str, str]) -> str:
    """As teams.authentication.bearer_token: `Authorization: Bearer …` or an `api_key` header."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return headers.get("api-key") or headers.get("api_key") or ""
