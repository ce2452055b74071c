"""The runner's inbox long-poll (`GET inbox`, docs/runner-protocol.md), woken by the doorbell.

A runner asks "anything for me after seq N?" and waits up to `wait` seconds
for a person's follow-up or a stop request. While it waits nothing polls the
database and no thread is held: the wait is an asyncio.Event that the run's
doorbell sets (agentloop/runs/notify.py `listening`: a ring of this process
directly, one of another web process through the channel-layer group). Each
wake-up is one look at the database. A slow safety re-check (SAFETY_SECONDS)
covers what no ring reaches: another process's write where the channel layer
is the in-memory one.

`wait_for_inbox` is the whole answer; its caller says how it reads the
database: the plain ASGI route (agentloop/runs/inbox_app.py, what daphne
serves) on threads whose connections stay open, the Django view (test
client, WSGI) on its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from agentloop.runs import notify
from agentloop.runs.models import EventKind, EventSource, Run

MAX_WAIT_SECONDS = 25
SAFETY_SECONDS = 5.0

# Tests drive time through these two instead of waiting.
clock = time.monotonic


async def wait_for_ring(bell: asyncio.Event, seconds: float) -> None:
    """Until the doorbell rings or `seconds` pass, whichever is first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(bell.wait(), seconds)


def pending_followups(run: Run, after: int) -> list[dict]:
    rows = (
        run.events.filter(source=EventSource.USER, kind=EventKind.MESSAGE, seq__gt=after)
        .exclude(key="prompt")  # the first prompt comes with the spec, never again
        .order_by("seq")
        .values_list("seq", "payload")
    )
    return [{"seq": seq, "text": payload.get("text", "")} for seq, payload in rows]


def look(run_id: int, after: int) -> dict:
    """The inbox as it is now: the answer of `GET inbox`."""
    run = Run.objects.only("status", "stop_requested_at").get(pk=run_id)
    return {"followups": pending_followups(run, after), "stop": run.stop_wanted}


def _wakes_the_inbox(message: dict) -> bool:
    # The runner's own event posts never change its inbox's answer.
    return not message.get("runner")


Read = Callable[..., Awaitable]


async def wait_for_inbox(run: Run, after: int, wait: int, read: Read) -> dict:
    """The inbox after `after`, once there is something in it or `wait` seconds passed.

    read(function, *args) runs a database function and returns its result.
    """
    wait = min(max(wait, 0), MAX_WAIT_SECONDS)
    give_up_at = clock() + wait
    # Listening starts before the first look, and the bell is cleared before
    # each: a ring that comes while the database is read is not lost.
    async with notify.listening(run.code, _wakes_the_inbox) as bell:
        while True:
            bell.clear()
            answer = await read(look, run.pk, after)
            remaining = give_up_at - clock()
            if answer["followups"] or answer["stop"] or remaining <= 0:
                return answer
            await wait_for_ring(bell, min(SAFETY_SECONDS, remaining))


def int_param(raw: str | None, name: str, default: int) -> int:
    """A whole-number query parameter; ValueError with the runner API's message."""
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number; got {raw!r}.") from None
