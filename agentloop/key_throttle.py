"""Throttling of failed key authentication on every API: ingest, REST, runner API, gateway.

A client address whose requests carried a credential that was refused (401)
KEY_FAILURE_LIMIT times within KEY_FAILURE_WINDOW_SECONDS is answered 429,
with Retry-After, until the oldest of those failures leaves the window; the
right key included, so guessing keys gets a few tries per window and no more.

It wraps the whole HTTP application (agentloop.asgi), so the plain ASGI apps
and Django's views are throttled by this one piece of code, whatever their
authentication. Addresses in KEY_THROTTLE_EXEMPT (loopback by default) are
not counted: the local sandboxes all reach the web process from 127.0.0.1
through their bridge, so one agent guessing keys, or runners of finished runs
calling once more with their revoked tokens, would otherwise lock every other
run out. The count is kept in this process: a check costs a dictionary
look-up on the hot paths, and with N web processes a guesser gets N times the
tries, still a handful per window against 256-bit keys. People's logins are
django-axes' (agentloop/login_throttle.py).
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections import deque
from functools import lru_cache

from django.conf import settings

# Headers that carry a key: a 401 to a request with one of them is a failed try.
CREDENTIAL_HEADERS = (b"authorization", b"x-api-key", b"api-key", b"api_key")
MAX_ADDRESSES = 10_000  # past this, addresses whose failures all left the window are forgotten


class KeyThrottle:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def limits(self) -> tuple[int, float]:
        return settings.KEY_FAILURE_LIMIT, float(settings.KEY_FAILURE_WINDOW_SECONDS)

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it may now."""
        failures = self._failures.get(address)
        if not failures:
            return None
        limit, window = self.limits()
        with self._lock:
            now = self.clock()
            while failures and failures[0] <= now - window:
                failures.popleft()
            if len(failures) < limit:
                return None
            return max(1, math.ceil(failures[-limit] + window - now))

    def failed(self, address: str) -> None:
        limit, window = self.limits()
        with self._lock:
            now = self.clock()
            if len(self._failures) >= MAX_ADDRESSES:
                self._forget_before(now - window)
            failures = self._failures.setdefault(address, deque(maxlen=limit))
            failures.append(now)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()

    def _forget_before(self, moment: float) -> None:
        for address in [a for a, f in self._failures.items() if not f or f[-1] <= moment]:
            del self._failures[address]


throttle = KeyThrottle()


@lru_cache(maxsize=4096)
def _exempt(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


def exempt(address: str) -> bool:
    return _exempt(address, tuple(settings.KEY_THROTTLE_EXEMPT))


def _has_credential(scope) -> bool:
    return any(name.lower() in CREDENTIAL_HEADERS for name, _ in scope.get("headers", []))


def throttled(app):
    """The ASGI app `app`, answering 429 to an address with too many failed keys."""

    async def application(scope, receive, send):
        if scope["type"] != "http" or not _has_credential(scope):
            return await app(scope, receive, send)
        address = (scope.get("client") or ("unknown", 0))[0]
        if exempt(address):
            return await app(scope, receive, send)
        wait = throttle.retry_after(address)
        if wait is not None:
            return await _too_many(send, address, wait)

        async def watching_send(message):
            if message["type"] == "http.response.start" and message["status"] == 401:
                throttle.failed(address)
            await send(message)

        await app(scope, receive, watching_send)

    return application


async def _too_many(send, address: str, wait: int) -> None:
    limit, window = throttle.limits()
    detail = (
        f"Too many failed key authentications from {address} ({limit} within "
        f"{window:g} s): try again in {wait} s."
    )
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(wait).encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
