"""JSON over HTTP to the web process, with the run's bearer token. Standard library only.

Transient failures (connection errors, timeouts, 5xx, 429) are retried with
exponential backoff and jitter; any other 4xx is the caller's problem and is
raised at once as ApiError — retrying a bad request cannot make it good. A 409
(the run already finished, or an illegal status transition) is raised like any
4xx so the caller can decide what it means.
"""

from __future__ import annotations

import json
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

RUNNER_PREFIX = "/api/runner/v1/"


class ApiError(Exception):
    """The server answered with an error we should not retry (or stopped retrying)."""

    def __init__(self, status: int | None, message: str, body: object = None):
        super().__init__(message)
        self.status = status  # None: never got an answer (connection failed)
        self.message = message
        self.body = body

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


def _error_message(status: int, raw: bytes) -> tuple[str, object]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        text = raw.decode("utf-8", "replace").strip()
        return (f"HTTP {status}: {text[:300]}" if text else f"HTTP {status}"), None
    if isinstance(body, dict) and body.get("detail"):
        return f"HTTP {status}: {body['detail']}", body
    return f"HTTP {status}: {json.dumps(body)[:300]}", body


class HttpClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 15.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        log: Callable[[str], None] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.sleep = sleep
        self.jitter = jitter
        self.log = log or (lambda message: print(message, file=sys.stderr))

    def url(self, path: str, query: dict | list | None = None) -> str:
        if path.startswith(("http://", "https://")):
            url = path
        else:
            url = self.base_url + "/" + path.lstrip("/")
        if query:
            items = query.items() if isinstance(query, dict) else query
            pairs = [(k, str(v)) for k, v in items if v is not None]
            if pairs:
                url += ("&" if "?" in url else "?") + urllib.parse.urlencode(pairs)
        return url

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): capped exponential, jittered 50–100%."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return ceiling * (0.5 + 0.5 * self.jitter())

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        query: dict | list | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
    ) -> dict:
        url = self.url(path, query)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        attempts = max_attempts or self.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, url, data, timeout or self.timeout)
            except ApiError as error:
                if not error.retryable or attempt == attempts:
                    raise
                delay = self.backoff(attempt)
                if error.status == 429 and isinstance(error.body, dict):
                    # A server that says when to come back knows better than our guess.
                    delay = max(delay, float(error.body.get("retry_after") or 0))
                self.log(
                    f"agentloop: {method} {path} failed ({error.message}); retry in {delay:.1f}s"
                )
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, data: bytes | None, timeout: float) -> dict:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raw = error.read() if error.fp else b""
            message, parsed = _error_message(error.code, raw)
            raise ApiError(error.code, message, parsed) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(None, f"cannot reach {self.base_url}: {reason}") from None
        if not raw:
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(None, f"not JSON from {url}: {raw[:200]!r}") from None

    def get(self, path: str, query: dict | list | None = None, **kwargs) -> dict:
        return self.request("GET", path, query=query, **kwargs)

    def post(self, path: str, body: dict, **kwargs) -> dict:
        return self.request("POST", path, body=body, **kwargs)


class RunnerClient(HttpClient):
    """The routes of docs/runner-protocol.md."""

    def spec(self) -> dict:
        return self.get(RUNNER_PREFIX + "spec")

    def post_events(self, events: list[dict], **kwargs) -> dict:
        return self.post(RUNNER_PREFIX + "events", {"events": events}, **kwargs)

    def inbox(self, after: int, wait: int = 25) -> dict:
        # The server may hold the request for `wait` seconds: give the socket more.
        return self.get(
            RUNNER_PREFIX + "inbox", {"after": after, "wait": wait}, timeout=wait + self.timeout
        )

    def post_artifact(
        self, key: str, kind: str, name: str, content: str, metadata: dict | None = None
    ) -> dict:
        body = {
            "key": key,
            "kind": kind,
            "name": name,
            "content": content,
            "metadata": metadata or {},
        }
        return self.post(RUNNER_PREFIX + "artifacts", body)

    def heartbeat(self) -> dict:
        return self.post(RUNNER_PREFIX + "heartbeat", {}, max_attempts=1)

    def post_status(self, state: str, **fields) -> dict:
        body = {"state": state}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self.post(RUNNER_PREFIX + "status", body)
