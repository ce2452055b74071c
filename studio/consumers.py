"""The live transcript: `ws/runs/<code>/?after=<seq>`.

Access is checked once, at connect, with the same helper as the session page
(get_run_for_user). Refusals are `accept()` then `close(4403)`: a refused
handshake would make the browser's htmx retry forever, a 4403 close does not.

The database is the truth. On connect the consumer sends everything after
`?after=`; then each doorbell (agentloop.runs.notify: only the run code and a
seq) makes it read and send what is new since the last seq it sent. Where the
channel layer cannot reach across processes (the in-memory layer, with a
django-q2 worker writing events in another process), it also polls the run's
seq counter every POLL_SECONDS. One lock serialises doorbell and poll, and
`last_seq` only grows, so nothing is sent twice and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Run
from agentloop.runs.notify import group_name
from agentloop.teams.access import get_project_for_user
from studio import transcript

REFUSED = 4403
POLL_SECONDS = 1.0


def _query(scope) -> dict[str, str]:
    params = parse_qs(scope.get("query_string", b"").decode())
    return {name: values[0] for name, values in params.items()}


def _after_param(query: dict[str, str]) -> int:
    try:
        return max(int(query.get("after", "0")), 0)
    except ValueError:
        return 0


def _open_run(user, code) -> tuple[Run, bool] | None:
    """(run, may the user use it) or None when the user may not even watch it."""
    try:
        run = get_run_for_user(user, code, "view")
    except (Http404, PermissionDenied):
        return None
    try:
        get_project_for_user(user, run.project_id, "use")
        can_use = True
    except (Http404, PermissionDenied):
        can_use = False
    return run, can_use


def _next_seq(run_id: int) -> int:
    return Run.objects.filter(pk=run_id).values_list("next_seq", flat=True).first() or 0


class RunTranscriptConsumer(AsyncWebsocketConsumer):
    groups: list[str] = []  # joined in connect(), once access is checked

    async def connect(self):
        opened = await database_sync_to_async(_open_run)(
            self.scope.get("user"), self.scope["url_route"]["kwargs"]["code"]
        )
        if opened is None:
            await self.accept()
            await self.close(code=REFUSED)
            return
        self.run, self.can_use = opened
        query = _query(self.scope)
        self.last_seq = _after_param(query)
        # Whether the page showed an open follow-up box: the controls are
        # pushed again only when that changes.
        self.accepting: bool | None = (
            query["accepting"] == "1" if query.get("accepting") in ("0", "1") else None
        )
        self.lock = asyncio.Lock()
        self.poller: asyncio.Task | None = None
        self.group = group_name(self.run.code)
        if self.channel_layer is not None:
            await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_new()
        if self.channel_layer is None or isinstance(self.channel_layer, InMemoryChannelLayer):
            self.poller = asyncio.create_task(self.poll())

    async def disconnect(self, code):
        if getattr(self, "poller", None) is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        if getattr(self, "group", None) and self.channel_layer is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        """Watchers only listen: follow-ups go through the page's POST, so who
        may send is decided in one place."""

    async def run_events(self, message):
        """The doorbell (notify.MESSAGE_TYPE): events up to message["seq"] are committed."""
        if message.get("seq", 0) > self.last_seq:
            await self.send_new()

    async def poll(self):
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if await database_sync_to_async(_next_seq)(self.run.pk) > self.last_seq:
                await self.send_new()

    async def send_new(self):
        async with self.lock:
            while True:
                frame = await database_sync_to_async(transcript.render_frame)(
                    self.run.pk, self.last_seq, self.can_use, self.accepting
                )
                self.accepting = frame["accepting"]
                if not frame["html"]:
                    return
                await self.send(text_data=frame["html"])
                self.last_seq = frame["last_seq"]
                if not frame["more"]:
                    return
