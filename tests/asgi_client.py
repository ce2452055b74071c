"""Send an HTTP request into the production ASGI application from an ordinary test.

The hot paths (`/v1/traces`, `POST /api/runner/v1/events`, `/llm/…`) have no
Django views: agentloop.asgi hands them to plain ASGI apps, so Django's test
client cannot reach them. `asgi_request` sends one request into
`agentloop.asgi.application` in this process, without a server or a socket,
and returns the whole answer as an httpx.Response (status_code, headers,
content, json()).

Those apps do their database work on their own threads with their own
connections (agentloop/database_threads.py), which see only committed data.
So a test that uses this needs committed data too: the `served_db` fixture
(tests/gateway_server.py, a `transactional_db`), as the daphne tests use.
Django's own paths are better tested with Django's test client.
"""

from __future__ import annotations

import httpx
from asgiref.sync import async_to_sync

BASE_URL = "http://testserver"


def asgi_request(
    method: str,
    path: str,
    *,
    content: bytes | str = b"",
    headers: dict[str, str] | None = None,
    app=None,
) -> httpx.Response:
    """The answer of `app` (by default agentloop.asgi.application) to one request."""
    if app is None:
        from agentloop.asgi import application as app
    return async_to_sync(_send)(app, method, path, content, headers or {})


async def _send(app, method, path, content, headers) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        response = await client.request(method, path, content=content, headers=headers)
        await response.aread()
        return response
