"""Following a session: its live events over SSE, resumed from the last one printed.

The stream (`GET /api/v1/sessions/<id>/stream`) sends each event with its seq as
the SSE `id:`; a last `event: end` says how the run ended. When the connection
drops — a web process restarted, a proxy timed out — `follow` connects again
with `Last-Event-ID: <last seq it handed on>`, so no event is lost and none is
repeated (seqs have no gaps). It gives up only after `give_up_after` seconds
without a connection, or on a refusal (401, 403, 404).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx

from agentloop.cli.client import Api, ApiError, explain

RETRY_PAUSES = (0.1, 0.2, 0.5, 1.0, 2.0)


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str, str]]:
    """(id, event, data) per SSE event; comments and unknown fields are skipped."""
    event_id, event, data = "", "message", []
    for line in lines:
        if line == "":
            if data:
                yield event_id, event, "\n".join(data)
            event_id, event, data = "", "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)


def follow(
    api: Api,
    code: str,
    on_event: Callable[[dict], None],
    *,
    after: int = 0,
    give_up_after: float = 120.0,
    on_reconnect: Callable[[int, str], None] | None = None,
    stop: threading.Event | None = None,
) -> dict | None:
    """Hand each event after `after` to on_event, in order, once; return the end
    `{status, exit_reason, last_seq}` when the run has ended (None when `stop`
    was set: the TUI closes a transcript by setting it and closing the client)."""
    last = after
    failing_since = None
    attempt = 0
    path = f"/api/v1/sessions/{code}/stream"
    while True:
        try:
            headers = {"Last-Event-ID": str(last), "Accept": "text/event-stream"}
            with api.http.stream(
                "GET", path, headers=headers, timeout=httpx.Timeout(30, read=None)
            ) as response:
                if 400 <= response.status_code < 500:  # refused: reconnecting would not help
                    response.read()
                    raise explain(response)
                if response.status_code >= 500:
                    response.read()
                    raise httpx.RemoteProtocolError(f"the server answered {response.status_code}")
                failing_since, attempt = None, 0
                for _id, kind, data in parse_sse(response.iter_lines()):
                    if kind == "end":
                        return json.loads(data)
                    event = json.loads(data)
                    if event["seq"] <= last:
                        continue  # never hand on an event twice
                    on_event(event)
                    last = event["seq"]
        except ApiError:
            raise
        except (httpx.HTTPError, RuntimeError) as error:  # RuntimeError: the client was closed
            if stop is not None and stop.is_set():
                return None
            if isinstance(error, RuntimeError):
                raise
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > give_up_after:
                raise ApiError(
                    f"Lost the stream of {code} and could not reconnect for "
                    f"{give_up_after:.0f} s: {error}"
                ) from None
            if on_reconnect is not None:
                on_reconnect(last, str(error))
            time.sleep(RETRY_PAUSES[min(attempt, len(RETRY_PAUSES) - 1)])
            attempt += 1
