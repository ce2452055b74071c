"""The runner's inbox long-poll as daphne serves it (agentloop/runs/inbox_app.py).

A waiting runner holds no thread and polls nothing: it is woken by the run's
doorbell. Time is the test's: the clock stands still and a wait ends only
when the doorbell rings (or, in the timeout test, at once, moving the clock),
so "answered without any clock advancing" and "how many times the database
was read" are exact.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.utils import timezone

from agentloop.runs import actions, inbox, inbox_app, notify, recording
from agentloop.runs.models import Run, RunStatus, ServiceKey

# The server's own threads read the database; also run on PostgreSQL + Redis (production).
pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def running(project):
    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "secret_env": {}},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
    )
    _, token = ServiceKey.mint(run, expires_at=timezone.now() + timedelta(hours=1))
    return run, token


class StillClock:
    """The clock stands still; a wait ends when the bell rings (never by itself),
    or, with `timeouts`, at once with the clock moved on by the wait's length."""

    def __init__(self, timeouts: bool = False):
        self.now = 1000.0
        self.timeouts = timeouts
        self.waits: list[float] = []
        self.waiting = asyncio.Event()  # a wait has begun
        self.looks = 0

    def clock(self):
        return self.now

    async def wait_for_ring(self, bell, seconds):
        self.waits.append(seconds)
        self.waiting.set()
        if self.timeouts:
            self.now += seconds
        else:
            await bell.wait()


@pytest.fixture
def still_clock(monkeypatch):
    clock = StillClock()
    monkeypatch.setattr(inbox, "clock", clock.clock)
    monkeypatch.setattr(inbox, "wait_for_ring", clock.wait_for_ring)
    look = inbox.look

    def counted_look(*args):
        clock.looks += 1
        return look(*args)

    monkeypatch.setattr(inbox, "look", counted_look)
    return clock


async def get_inbox(token: str, query: str = "after=0&wait=25", method: str = "GET"):
    """(status, JSON answer) for one request to agentloop.asgi, called as daphne calls it."""
    from agentloop.asgi import application

    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": inbox_app.PATH,
        "query_string": query.encode(),
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }
    await application(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_a_followup_posted_while_the_runner_waits_is_answered_at_once(
    running, alice, still_clock
):
    run, token = running
    waiting = asyncio.ensure_future(get_inbox(token))
    await asyncio.wait_for(still_clock.waiting.wait(), 5)
    followup = await database_sync_to_async(actions.send_followup)(alice, run, "And the 500s?")
    status, answer = await asyncio.wait_for(waiting, 5)
    assert (status, answer) == (
        200,
        {"followups": [{"seq": followup.seq, "text": "And the 500s?"}], "stop": False},
    )
    # One look before the wait, one when the doorbell rang: no polling, no time passed.
    assert still_clock.looks == 2
    assert still_clock.now == 1000.0


async def test_a_stop_request_wakes_the_waiting_runner(running, alice, still_clock):
    run, token = running
    waiting = asyncio.ensure_future(get_inbox(token))
    await asyncio.wait_for(still_clock.waiting.wait(), 5)
    assert await database_sync_to_async(actions.cancel)(alice, run) is True
    assert await asyncio.wait_for(waiting, 5) == (200, {"followups": [], "stop": True})
    assert still_clock.looks == 2


async def test_the_runners_own_events_do_not_wake_its_inbox(running, alice, still_clock):
    run, token = running
    waiting = asyncio.ensure_future(get_inbox(token))
    await asyncio.wait_for(still_clock.waiting.wait(), 5)
    batch = [{"key": "a", "source": "agent", "kind": "message", "payload": {"text": "hi"}}]
    await database_sync_to_async(recording.record_events)(run, batch, None)
    assert not waiting.done()
    await database_sync_to_async(actions.send_followup)(alice, run, "Now this.")
    status, answer = await asyncio.wait_for(waiting, 5)
    assert [f["text"] for f in answer["followups"]] == ["Now this."]
    assert still_clock.looks == 2  # the agent's event woke nothing


async def test_the_wait_ends_empty_after_wait_seconds(running, still_clock):
    run, token = running
    still_clock.timeouts = True
    assert await get_inbox(token, "after=0&wait=12") == (200, {"followups": [], "stop": False})
    # Re-checked every SAFETY_SECONDS (for deployments whose layer cannot cross processes).
    assert still_clock.waits == [5.0, 5.0, 2.0]
    assert still_clock.now == 1012.0
    assert not notify._listeners  # nothing is left listening


async def test_a_followup_already_there_is_answered_without_waiting(running, alice, still_clock):
    run, token = running
    await database_sync_to_async(actions.send_followup)(alice, run, "Before you asked.")
    status, answer = await get_inbox(token)
    assert [f["text"] for f in answer["followups"]] == ["Before you asked."]
    assert still_clock.waits == [] and still_clock.looks == 1


@pytest.mark.parametrize(
    ("query", "method", "token", "answer"),
    [
        ("after=0&wait=0", "GET", None, (200, {"followups": [], "stop": True})),
        (
            "after=0&wait=0",
            "GET",
            "al_sk_made-up",
            (401, {"detail": "Unknown, expired or revoked run token."}),
        ),
        (
            "after=x&wait=0",
            "GET",
            None,
            (400, {"detail": "after must be a whole number; got 'x'."}),
        ),
        # empty: the default (25), here answered at once by the stop request
        ("after=0&wait=", "GET", None, (200, {"followups": [], "stop": True})),
        ("after=0&wait=0", "POST", None, (405, {"detail": "Use GET."})),
    ],
)
async def test_the_answers_are_the_runner_protocols(running, alice, query, method, token, answer):
    run, own_token = running
    await database_sync_to_async(Run.objects.filter(pk=run.pk).update)(
        stop_requested_at=timezone.now()
    )
    assert await get_inbox(token or own_token, query, method) == answer


async def test_a_channel_layer_that_is_down_leaves_this_processs_doorbell_working(
    running, alice, still_clock, monkeypatch
):
    class Down:
        async def new_channel(self):
            raise ConnectionError("Redis is down")

    monkeypatch.setattr(notify, "get_channel_layer", lambda: Down())
    monkeypatch.setattr(
        notify, "_send", lambda group, message: notify._wake_listeners(group, message)
    )
    run, token = running
    waiting = asyncio.ensure_future(get_inbox(token))
    await asyncio.wait_for(still_clock.waiting.wait(), 5)
    await database_sync_to_async(actions.send_followup)(alice, run, "Still there?")
    status, answer = await asyncio.wait_for(waiting, 5)
    assert [f["text"] for f in answer["followups"]] == ["Still there?"]
