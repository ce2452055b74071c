"""The doorbell: tell a run's websocket watchers that new events are committed.

The database is the truth; the channel-layer message says only "run X has
events up to seq N", never the events themselves (model instances do not
survive a Redis round trip, and a watcher that missed a ring loses nothing:
it reads everything after its last seq from the database). The ring is sent
after the writer's transaction commits, so a watcher never reads too early.
"""

from __future__ import annotations

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
    layer = get_channel_layer()
    if layer is None:  # no CHANNEL_LAYERS configured: watchers poll instead
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a doorbell that cannot ring must never fail the write
        log.warning("doorbell for %s did not ring", group, exc_info=True)


def ring(run_code, seq: int) -> None:
    """After the current transaction commits, tell watchers of the run about seq."""
    group = group_name(run_code)
    message = {"type": MESSAGE_TYPE, "run": group.removeprefix("run."), "seq": int(seq)}
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
