"""The doorbell: tell a run's websocket watchers that new events are committed.

The database is the truth; the channel-layer message says only "run X has
events up to seq N", never the events themselves (model instances do not
survive a Redis round trip, and a watcher that missed a ring loses nothing:
it reads everything after its last seq from the database). The ring is sent
after the writer's transaction commits, so a watcher never reads too early.
"""

from __future__ import annotations

import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
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
    transaction.on_commit(lambda: _send(group, message))
