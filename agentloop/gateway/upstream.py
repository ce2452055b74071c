"""The upstream side of the gateway: where calls go, with which key and headers.

The real keys live in the web process only (one setting per provider,
AGENTLOOP_ANTHROPIC_API_KEY, AGENTLOOP_OPENAI_API_KEY, AGENTLOOP_GEMINI_API_KEY,
from the environment or a `_FILE`); the sandbox knows the run token, which the
gateway swaps for the real key here, in the header the provider reads
(agentloop/gateway/providers.py). Header handling is an allowlist in spirit:
hop-by-hop headers, the caller's credentials, cookies and framing headers never
cross; everything API-specific (anthropic-version, openai-beta, x-goog-api-client, …) does.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx

from agentloop.gateway.providers import PROVIDERS, Provider, UpstreamNotConfigured

ANTHROPIC = PROVIDERS["anthropic"]
__all__ = ["UpstreamNotConfigured", "base_url", "real_key", "request_headers", "open_call"]

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
    "x-goog-api-key",
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


def base_url(provider: Provider = ANTHROPIC) -> str:
    return provider.base_url()


def real_key(provider: Provider = ANTHROPIC) -> str:
    return provider.real_key()


def client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        _clients[loop] = found
    return found


def request_headers(
    incoming: dict[str, str], key: str, provider: Provider = ANTHROPIC
) -> dict[str, str]:
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
    provider.add_key(headers, key)
    # The gateway parses the stream as it passes: ask for it uncompressed.
    headers["accept-encoding"] = "identity"
    return headers


def response_headers(upstream: httpx.Response) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in upstream.headers.multi_items()
        if name.lower() not in RESPONSE_DROPPED
    ]


async def open_call(
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    provider: Provider = ANTHROPIC,
    method: str = "POST",
) -> httpx.Response:
    """Send the call; the answer's body is left unread so it can be streamed."""
    query = provider.upstream_query(query)
    url = f"{provider.base_url()}{path}" + (f"?{query}" if query else "")
    content = body if method == "POST" else None
    request = client().build_request(method, url, headers=headers, content=content)
    return await client().send(request, stream=True)
