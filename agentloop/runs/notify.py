"""The doorbell: tell a run's websocket watchers that new events are committed.

The database is the truth; the channel-layer message says only "run X has
events up to seq N", never the events themselves (model instances do not
survive a Redis round trip, and a watcher that missed a ring loses nothing:
it reads everything after its last seq from the database). The ring is sent
after the writer's transaction commits, so a watcher never reads too early.

Rings for events the runner itself posted say so (`"runner": true`): they
never change what the run's inbox answers, so the runner's inbox long-poll
(agentloop/runs/inbox.py) does not wake for every transcript line, only for
the others (a person's follow-up, a stop request, a status change). It
listens with `listening()`: woken directly by rings of this process (from any
thread) and, through a channel-layer group, by those of other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

MESSAGE_TYPE = "run.events"  # handled by RunTranscriptConsumer.run_events


def group_name(run_code) -> str:
    """One channel-layer group per run: `run.<code as 32 hex digits>`."""
    if not isinstance(run_code, uuid.UUID):
        run_code = uuid.UUID(str(run_code))
    return f"run.{run_code.hex}"


def _send(group: str, message: dict) -> None:
    _wake_listeners(group, message)
    layer = get_channel_layer()
    if layer is None:  # no CHANNEL_LAYERS configured: watchers poll instead
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a doorbell that cannot ring must never fail the write
        log.warning("doorbell for %s did not ring", group, exc_info=True)


def ring(run_code, seq: int, by_runner: bool = False) -> None:
    """After the current transaction commits, tell watchers of the run about seq.

    by_runner: the events are the runner's own (its event post), nothing its
    inbox long-poll needs to wake for."""
    group = group_name(run_code)
    message = {"type": MESSAGE_TYPE, "run": group.removeprefix("run."), "seq": int(seq)}
    if by_runner:
        message["runner"] = True
    held = getattr(_holding, "rings", None)
    if held is not None:
        transaction.on_commit(lambda: held.append((group, message)))
    else:
        transaction.on_commit(lambda: _send(group, message))


_holding = threading.local()


@contextlib.contextmanager
def rings_held():
    """Keep this thread's rings (once committed) in a list instead of sending them.

    For async callers that write on a worker thread (agentloop/runs/events_app.py):
    they answer their client first and then ring from the event loop with
    `ring_held`, instead of the worker thread blocking on a hop to the loop
    and the answer waiting behind every watcher woken by the ring.
    """
    _holding.rings = []
    try:
        yield _holding.rings
    finally:
        _holding.rings = None


# In-process bells: async callbacks (group, message) that wake this process's
# watchers directly (studio.consumers registers one).
_local_bells: list = []


def ring_locally_too(bell) -> None:
    """Register `bell(group, message)`, awaited by ring_held before the channel layer."""
    _local_bells.append(bell)


async def ring_held(rings: list[tuple[str, dict]]) -> None:
    """Ring from the event loop: this process's watchers directly, then the channel
    layer for the others (not needed when the layer is the in-memory one: the
    only watchers it could reach are this process's, already woken)."""
    for group, message in rings:
        _wake_listeners(group, message)
        for bell in _local_bells:
            try:
                await bell(group, message)
            except Exception:
                log.warning("local doorbell for %s did not ring", group, exc_info=True)
    layer = get_channel_layer()
    if layer is None or (_local_bells and isinstance(layer, InMemoryChannelLayer)):
        return
    for group, message in rings:
        try:
            await layer.group_send(group, message)
        except Exception:  # a doorbell that cannot ring must never fail the write
            log.warning("doorbell for %s did not ring", group, exc_info=True)


# Listeners in this process (inbox long-polls), by group: callables taking the
# message, called from whichever thread rang (a sync view's, a database thread's
# or the event loop's), so they hand over to their loop thread-safely.
_listeners: dict[str, set] = {}
_listeners_lock = threading.Lock()


def _wake_listeners(group: str, message: dict) -> None:
    with _listeners_lock:
        wakers = list(_listeners.get(group, ()))
    for wake in wakers:
        wake(message)


@contextlib.asynccontextmanager
async def listening(run_code, wanted=lambda message: True):
    """An asyncio.Event set when the run's doorbell rings with a message `wanted` accepts.

    Rings of this process wake it directly. Rings of other processes come
    through a channel-layer group, joined while listening, unless the layer is
    the in-memory one (which cannot cross processes; callers re-check now and
    then for that case). The caller clears the event before each look at the
    database, so a ring that comes while it looks is not lost.
    """
    group = group_name(run_code)
    loop = asyncio.get_running_loop()
    bell = asyncio.Event()

    def wake(message: dict) -> None:
        if wanted(message):
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(bell.set)

    with _listeners_lock:
        _listeners.setdefault(group, set()).add(wake)
    layer = get_channel_layer()
    channel = receiving = None
    try:
        if layer is not None and not isinstance(layer, InMemoryChannelLayer):
            try:
                channel = await layer.new_channel()
                await layer.group_add(group, channel)
            except Exception:  # no other process's rings, then: the caller's re-check remains
                log.warning("could not listen for %s on the channel layer", group, exc_info=True)
                channel = None
            else:

                async def receive_rings():
                    while True:
                        wake(await layer.receive(channel))

                receiving = asyncio.ensure_future(receive_rings())
        yield bell
    finally:
        with _listeners_lock:
            wakers = _listeners.get(group, set())
            wakers.discard(wake)
            if not wakers:
                _listeners.pop(group, None)
        if receiving is not None:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiving
        if channel is not None:
            try:
                await layer.group_discard(group, channel)
            except Exception:  # the long-poll has its answer; a stale member expires
                log.warning("could not leave %s", group, exc_info=True)
