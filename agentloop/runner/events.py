"""The runner's event queue: batch, deliver, retry, never drop. Standard library only.

emit() never blocks on the network. A background thread sends events in batches
of up to `max_batch`. An event emitted while the queue is idle is sent at once
(the first event of a session is what its user waits for); events emitted while
a POST is in flight pile up and go together in the next one, so a busy agent
still makes few, large requests. (`max_delay` > 0 adds a wait for a fuller batch
even when idle; off by default.) Each event gets its key when it is emitted,
`<instance>-<counter>`, so a batch re-posted after a lost answer is stored once
(the server deduplicates by key). A batch that failed transiently is retried
until it is delivered, in order, before anything newer. Only a batch the server
refuses for good (4xx: the run finished, the token was revoked) is given up on,
and said so on stderr.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import uuid
from collections.abc import Callable

from agentloop.runner.client import ApiError

KINDS = ("message", "tool_call", "tool_result", "status", "artifact", "error")


class EventQueue:
    def __init__(
        self,
        client,
        *,
        instance_id: str | None = None,
        max_batch: int = 100,
        max_delay: float = 0.0,
        retry_delay: Callable[[int], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.client = client
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.retry_delay = retry_delay or (lambda attempt: min(10.0, 0.25 * 2**attempt))
        self.sleep = sleep
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self._counter = itertools.count(1)
        self._pending: list[dict] = []
        self._cond = threading.Condition()
        self._closing = False
        self._flushing = 0
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.delivered = 0
        self.undeliverable: list[dict] = []
        self.last_seq: int | None = None

    # -- producer side ------------------------------------------------------

    def emit(self, kind: str, payload: dict, source: str = "agent") -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        with self._cond:
            key = f"{self.instance_id}-{next(self._counter)}"
            self._pending.append({"key": key, "source": source, "kind": kind, "payload": payload})
            self._cond.notify_all()
        return key

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> EventQueue:
        self._thread = threading.Thread(target=self._run, name="agentloop-events", daemon=True)
        self._thread.start()
        return self

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything emitted so far was delivered (or given up on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1  # the sender stops waiting for fuller batches
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining if remaining is not None else 0.5)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = 60.0) -> bool:
        """Deliver what is left, then stop the thread. True when nothing is left undelivered."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                with self._cond:
                    left = len(self._pending) + self._in_flight
                self.log(f"agentloop: gave up flushing events, {left} not delivered")
                return False
        elif self._pending:
            # Never started (e.g. tests): deliver synchronously.
            self._run()
        return not self._pending and not self.undeliverable

    # -- the sender thread ------------------------------------------------------

    def _next_batch(self) -> list[dict] | None:
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            if not self._pending:
                return None  # closing and drained
            if self.max_delay > 0 and len(self._pending) < self.max_batch and not self._hurry():
                # Opt-in: give the batch a moment to fill up even though nothing is in flight.
                deadline = time.monotonic() + self.max_delay
                while len(self._pending) < self.max_batch and not self._hurry():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = self._pending[: self.max_batch]
            del self._pending[: len(batch)]
            self._in_flight = len(batch)
            return batch

    def _hurry(self) -> bool:
        return self._closing or self._flushing > 0

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._deliver(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _deliver(self, batch: list[dict]) -> None:
        attempt = 0
        while True:
            try:
                answer = self.client.post_events(batch)
            except ApiError as error:
                if not error.retryable:
                    self.undeliverable.extend(batch)
                    self.log(
                        f"agentloop: {len(batch)} events refused ({error.message}); "
                        f"keys {batch[0]['key']}..{batch[-1]['key']}"
                    )
                    return
                attempt += 1
                delay = self.retry_delay(attempt)
                self.log(
                    f"agentloop: events not delivered ({error.message}); retry in {delay:.1f}s"
                )
                self._pause(delay)
                continue
            self.delivered += len(batch)
            if isinstance(answer, dict) and answer.get("last_seq") is not None:
                self.last_seq = answer["last_seq"]
            return

    def _pause(self, delay: float) -> None:
        if self.sleep is not None:
            self.sleep(delay)
        else:
            # Closing does not shorten the wait: a server that is down stays down
            # for a moment; but a very long backoff should not outlive close().
            self._wake.wait(delay if not self._closing else min(delay, 1.0))
