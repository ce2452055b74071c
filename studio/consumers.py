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

A ring for seq N promises that the events up to N are committed. A read that
still comes back short of N (it did not see them yet) is not the end of it:
the consumer reads again after a short pause (REREAD_PAUSES) instead of
leaving the event to the next ring or the poll, and a short frame is never
kept in the shared FrameCache, where it would answer every later read of that
range with the same stale nothing.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.core.exceptions import PermissionDenied
from django.http import Http404

from agentloop.database_threads import DatabaseThreads
from agentloop.runs import notify
from agentloop.runs.access import get_run_for_user
from agentloop.runs.models import Run
from agentloop.runs.notify import MESSAGE_TYPE, group_name
from agentloop.teams.access import get_project_for_user
from agentloop.teams.models import UserSettings
from studio import transcript

log = logging.getLogger(__name__)

REFUSED = 4403
POLL_SECONDS = 1.0
# Pauses before reading again when a read came back short of the seq a ring
# announced (about 0.4 s in all); after the last, the poll or the next ring takes over.
REREAD_PAUSES = (0.005, 0.02, 0.05, 0.1, 0.2)

log = logging.getLogger(__name__)


async def pause_before_reread(seconds: float) -> None:
    """The wait before a re-read (tests replace it to control the interleaving)."""
    await asyncio.sleep(seconds)


# The event loop holds its tasks only by weak reference: a task nobody else
# holds can be garbage-collected mid-flight, and its exception is then lost.
# Every task this module starts is kept here until it is done.
background_tasks: set[asyncio.Task] = set()


def start_task(coroutine, name: str) -> asyncio.Task:
    """asyncio.create_task, kept alive until done, its failure logged under `name`."""
    task = asyncio.create_task(coroutine, name=name)
    background_tasks.add(task)
    task.add_done_callback(_task_done)
    return task


def _task_done(task: asyncio.Task) -> None:
    background_tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("transcript task %s failed", task.get_name(), exc_info=task.exception())


def _query(scope) -> dict[str, str]:
    params = parse_qs(scope.get("query_string", b"").decode())
    return {name: values[0] for name, values in params.items()}


def _after_param(query: dict[str, str]) -> int:
    try:
        return max(int(query.get("after", "0")), 0)
    except ValueError:
        return 0


def _open_run(user, code) -> tuple[Run, bool, str] | None:
    """(run, may the user use it, their time zone) or None when they may not even watch it."""
    try:
        run = get_run_for_user(user, code, "view")
    except (Http404, PermissionDenied):
        return None
    try:
        get_project_for_user(user, run.project_id, "use")
        can_use = True
    except (Http404, PermissionDenied):
        can_use = False
    return run, can_use, UserSettings.time_zone_of(user)


def _next_seq(run_id: int) -> int:
    return Run.objects.filter(pk=run_id).values_list("next_seq", flat=True).first() or 0


# Every database read of the consumers (access at connect, frames, polls) runs
# on threads whose connections stay open (agentloop/database_threads.py):
# a frame is on the clock of every watcher of the run, and opening a
# connection per read (database_sync_to_async closes it after each call with
# CONN_MAX_AGE=0) was a large part of a frame's cost. Reads are short and a
# frame is rendered once per run for all its watchers (FrameCache).
reads = DatabaseThreads("transcript-reads")


def _read(function):
    async def read(*args):
        return await reads.run(function, *args, retry=True)

    return read


class RunTranscriptConsumer(AsyncWebsocketConsumer):
    groups: list[str] = []  # joined in connect(), once access is checked

    async def connect(self):
        opened = await _read(_open_run)(
            self.scope.get("user"), self.scope["url_route"]["kwargs"]["code"]
        )
        if opened is None:
            await self.accept()
            await self.close(code=REFUSED)
            return
        self.run, self.can_use, self.zone = opened
        query = _query(self.scope)
        self.last_seq = _after_param(query)
        # What the page's controls show (transcript.controls_key): they are
        # pushed again only when that changes.
        self.controls = (
            query["controls"]
            if query.get("controls") in transcript.CONTROLS_KEYS
            else transcript.controls_key(self.run)
        )
        self.facts_shown = None  # what the facts panel shows now (transcript.facts_key)
        self.lock = asyncio.Lock()
        self.group = group_name(self.run.code)
        if self.channel_layer is not None:
            await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        local_watchers.setdefault(self.group, set()).add(self)
        await self.send_new()
        if self.channel_layer is None or isinstance(self.channel_layer, InMemoryChannelLayer):
            polls.add(self)

    async def disconnect(self, code):
        polls.remove(self)
        watchers = local_watchers.get(getattr(self, "group", None), set())
        watchers.discard(self)
        if not watchers:
            local_watchers.pop(getattr(self, "group", None), None)
        if getattr(self, "group", None) and self.channel_layer is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        """Watchers only listen: follow-ups go through the page's POST, so who
        may send is decided in one place."""

    async def dispatch(self, message):
        # Channels hops to a worker thread before every handler to close stale
        # database connections (channels.db.aclose_old_connections). On the
        # doorbell that hop is pure cost — this consumer reads the database only
        # through `_read` — and fifty watchers of a run queue fifty of them on
        # asgiref's one shared thread: ~5 ms before the last one hears the ring.
        if message["type"] == MESSAGE_TYPE:
            return await self.run_events(message)
        return await super().dispatch(message)

    async def run_events(self, message):
        """The doorbell (notify.MESSAGE_TYPE): events up to message["seq"] are committed."""
        if message.get("seq", 0) > self.last_seq:
            await self.send_new(upto=message["seq"])

    async def send_new(self, upto: int | None = None):
        async with self.lock:
            if upto is None:
                upto = await _read(_next_seq)(self.run.pk)
            pauses = iter(REREAD_PAUSES)
            while upto > self.last_seq:
                frame = await frames.get(
                    self.run,
                    self.last_seq,
                    upto,
                    self.can_use,
                    self.controls,
                    self.facts_shown,
                    self.zone,
                )
                self.controls = frame["controls"]
                self.facts_shown = frame["facts"]
                if frame["html"]:
                    await self.send(text_data=frame["html"])
                if frame["last_seq"] > self.last_seq:
                    self.last_seq = frame["last_seq"]
                    continue
                # Seqs have no gaps, so events up to `upto` exist: this read
                # did not see them yet. Read again shortly rather than leave
                # them to the next ring (which may be a long time coming).
                pause = next(pauses, None)
                if pause is None:
                    log.warning(
                        "run %s: events after seq %s up to %s still unread",
                        self.run.code,
                        self.last_seq,
                        upto,
                    )
                    return
                await pause_before_reread(pause)


class FrameCache:
    """Frames shared by the watchers of a run in this process.

    Fifty people watching one run all need the same frame for the same seq
    range; it is rendered once (one database read, one template render) and
    the others await that result. A frame covers a fixed range (after, upto],
    so it does not go stale — once it holds every event of the range. One that
    came back short (the read did not see all of them yet) is handed to those
    waiting for it and then forgotten, so the next read of that range reads
    the database again. Old frames are dropped first-in, first-out.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self.entries: dict[tuple, asyncio.Future] = {}

    async def get(
        self, run: Run, after: int, upto: int, can_use: bool, controls, facts_shown, zone="UTC"
    ) -> dict:
        # Codes, unlike ids, are never reused.
        key = (run.code, after, upto, can_use, controls, facts_shown, zone)
        future = self.entries.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self.entries[key] = future
            while len(self.entries) > self.size:
                self.entries.pop(next(iter(self.entries)))
            try:
                frame = await _read(transcript.render_frame)(
                    run.pk, after, can_use, controls, upto, facts_shown, zone
                )
            except BaseException as error:
                self.entries.pop(key, None)
                future.set_exception(error)
                future.exception()  # retrieved: the other awaiters see it, asyncio stays quiet
                raise
            future.set_result(frame)
            if frame["last_seq"] < upto and not frame["more"] and self.entries.get(key) is future:
                del self.entries[key]  # short: not the frame of this range
            return frame
        return await asyncio.shield(future)


class RunPolls:
    """One poll per watched run in this process, for events no doorbell announces.

    With the in-memory channel layer a django-q2 worker (another process)
    cannot ring; so while anyone here watches a run, its seq counter is read
    every POLL_SECONDS (one query per run, however many watch it), and the
    watchers behind are told to send what is new.
    """

    def __init__(self):
        self.runs: dict[int, tuple[set, asyncio.Task]] = {}

    def add(self, consumer) -> None:
        run_id = consumer.run.pk
        if run_id not in self.runs:
            self.runs[run_id] = (set(), start_task(self._poll(run_id), f"poll of run {run_id}"))
        self.runs[run_id][0].add(consumer)

    def remove(self, consumer) -> None:
        run = getattr(consumer, "run", None)
        entry = self.runs.get(run.pk) if run is not None else None
        if entry is None:
            return
        entry[0].discard(consumer)
        if not entry[0]:
            entry[1].cancel()
            del self.runs[run.pk]

    async def _poll(self, run_id: int) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            upto = await _read(_next_seq)(run_id)
            watchers = self.runs.get(run_id, (set(), None))[0]
            behind = [c for c in watchers if upto > c.last_seq]
            # A watcher that went away meanwhile must not stop the others.
            await asyncio.gather(*(c.send_new(upto=upto) for c in behind), return_exceptions=True)


frames = FrameCache()
polls = RunPolls()

# group -> this process's consumers watching that run: a post stored by this
# process wakes them directly (notify.ring_held), the frame's render starting
# at once instead of after the channel layer has delivered fifty messages.
local_watchers: dict[str, set[RunTranscriptConsumer]] = {}


async def _wake_local_watchers(group: str, message: dict) -> None:
    for consumer in list(local_watchers.get(group, ())):
        if message["seq"] > consumer.last_seq:
            start_task(consumer.send_new(upto=message["seq"]), f"ring {group} seq {message['seq']}")


notify.ring_locally_too(_wake_local_watchers)
