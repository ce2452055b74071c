"""The upstream side of the gateway: where calls go, with which key and headers.

The real key lives in the web process only (settings.AGENTLOOP_ANTHROPIC_API_KEY,
from the environment or a `_FILE`); the sandbox knows the run token, which the
gateway swaps for the real key here. Header handling is an allowlist in spirit:
hop-by-hop headers, the caller's credentials, cookies and framing headers never
cross; everything Anthropic-specific (anthropic-version, anthropic-beta, …) does.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

# RFC 9110 §7.6.1 hop-by-hop headers, plus the ones this hop sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: the caller's credentials and cookies (the run token
# must not leave this process), and framing that httpx computes itself.
REQUEST_DROPPED = HOP_BY_HOP | {
    "host",
    "content-length",
    "accept-encoding",
    "x-api-key",
    "authorization",
    "api-key",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
}
# Not passed back: framing our server sets, and the body encoding httpx undid.
RESPONSE_DROPPED = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "set-cookie",
    "server",
    "date",
}

# Model calls stream for minutes and may pause between events (long thinking).
TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=10.0)

# One client (connection pool) per event loop: daphne has one loop, tests many,
# and an httpx client must not be used from a loop other than its own.
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class UpstreamNotConfigured(Exception):
    pass


def base_url() -> str:
    return (settings.AGENTLOOP_LLM_UPSTREAM_URL or "https://api.anthropic.com").rstrip("/")


def real_key() -> str:
    key = getattr(settings, "AGENTLOOP_ANTHROPIC_API_KEY", "") or ""
    if not key:
        raise UpstreamNotConfigured(
            "The LLM gateway has no upstream key: set AGENTLOOP_ANTHROPIC_API_KEY "
            "(or AGENTLOOP_ANTHROPIC_API_KEY_FILE) on the web process."
        )
    return key


def client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        _clients[loop] = found
    return found


def request_headers(incoming: dict[str, str], key: str) -> dict[str, str]:
    """The caller's headers minus credentials and hop-by-hop ones, plus the real key."""
    connection_named = {
        name.strip().lower()
        for name in incoming.get("connection", incoming.get("Connection", "")).split(",")
    }
    headers = {
        name: value
        for name, value in incoming.items()
        if name.lower() not in REQUEST_DROPPED and name.lower() not in connection_named
    }
    headers["x-api-key"] = key
    # The gateway parses the stream as it passes: ask for it uncompressed.
    headers["accept-encoding"] = "identity"
    return headers


def response_headers(upstream: httpx.Response) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in upstream.headers.multi_items()
        if name.lower() not in RESPONSE_DROPPED
    ]


async def open_call(path: str, query: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    """Send the call; the answer's body is left unread so it can be streamed."""
    url = f"{base_url()}{path}" + (f"?{query}" if query else "")
    request = client().build_request("POST", url, headers=headers, content=body)
    return await client().send(request, stream=True)
