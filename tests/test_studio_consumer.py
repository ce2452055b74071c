"""The live transcript consumer, through the full ASGI application.

Real session cookies, the real origin check and the real channel layer: an
event is recorded the way the runner API records it, and the watcher must get
it over the socket once, in order, and only if they may see the run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction
from django.test import Client

from agentloop.asgi import application
from agentloop.runs import actions, notify, recording
from agentloop.runs.models import Run, RunStatus
from studio import consumers

pytest_plugins = ["tests.fake_sandbox"]  # the fake_provider fixture

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = {"harness": "analyst", "sandbox": "fake"}
SEQ = re.compile(r'id="event-(\d+)"')


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test runs in its own event loop; the in-memory layer's queues and the
    shared frames (futures) belong to one loop."""
    channel_layers.backends.clear()
    consumers.frames.entries.clear()
    yield
    channel_layers.backends.clear()
    consumers.frames.entries.clear()
    consumers.polls.runs.clear()
    consumers.background_tasks.clear()


@pytest.fixture(autouse=True)
def slow_poll(monkeypatch):
    """Doorbell tests must pass on the doorbell alone: the poll is made too slow to help."""
    monkeypatch.setattr(consumers, "POLL_SECONDS", 60)


@pytest.fixture
def run(project, alice, fake_provider):
    run = actions.start_session(alice, project, CONFIG, "Why do refunds fail?")
    run.refresh_from_db()  # launched on commit: provisioning
    run.transition(RunStatus.RUNNING)
    return run


def cookie_headers(user) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


async def connect(run, user, after: int | None = None):
    path = f"/ws/runs/{run.code}/" + (f"?after={after}" if after is not None else "")
    headers = await database_sync_to_async(cookie_headers)(user)
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@database_sync_to_async
def post_events(run, *texts):
    """What the runner API's POST events does."""
    batch = [
        {
            "key": f"k-{text}",
            "source": "agent",
            "kind": "message",
            "payload": {"role": "assistant", "text": text},
        }
        for text in texts
    ]
    return recording.record_events(run, batch, secrets=None).last_seq


FACTS_PANEL = '<section id="run-facts" class="card tx-facts" hx-swap-oob="true">'


def seqs(frame: str) -> list[int]:
    return [int(s) for s in SEQ.findall(frame)]


async def test_the_owner_gets_the_transcript_then_each_event_in_order(run, alice):
    ws = await connect(run, alice, after=0)
    first = await ws.receive_from(timeout=5)
    assert seqs(first) == [1, 2, 3]  # the prompt, provisioning, running
    assert "Why do refunds fail?" in first
    assert 'id="transcript" hx-swap-oob="beforeend"' in first
    assert FACTS_PANEL in first

    await post_events(run, "one", "two")
    frame = await ws.receive_from(timeout=5)
    assert seqs(frame) == [4, 5]
    assert frame.index("one") < frame.index("two")
    assert FACTS_PANEL not in frame  # nothing in it changed since the first frame

    await post_events(run, "three")
    assert seqs(await ws.receive_from(timeout=5)) == [6]
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_a_post_stored_in_this_process_wakes_its_watchers_directly(run, alice):
    """The runner's event post (events_app) rings local watchers without the layer."""
    ws = await connect(run, alice, after=3)

    def store_holding_the_ring():
        with notify.rings_held() as held:
            recording.record_events(
                run,
                [
                    {
                        "key": "k-local",
                        "source": "agent",
                        "kind": "message",
                        "payload": {"text": "hi"},
                    }
                ],
                secrets=None,
            )
        return held

    held = await database_sync_to_async(store_holding_the_ring)()
    layer = get_channel_layer()
    assert all(queue.empty() for queue in layer.channels.values())  # the layer was not rung
    await notify.ring_held(held)
    assert seqs(await ws.receive_from(timeout=5)) == [4]
    await ws.disconnect()


def store_one_event_holding_the_ring(run, key: str) -> list:
    with notify.rings_held() as held:
        recording.record_events(
            run,
            [{"key": key, "source": "agent", "kind": "message", "payload": {"text": key}}],
            secrets=None,
        )
    return held


async def ring_locally(held) -> set:
    """What notify.ring_held does first (this process's watchers), and the tasks it
    started; without ring_held's channel-layer send, during which they could end."""
    before = set(consumers.background_tasks)
    for group, message in held:
        await consumers._wake_local_watchers(group, message)
    return consumers.background_tasks - before


async def test_a_ring_task_is_kept_until_done_and_survives_garbage_collection(run, alice):
    ws = await connect(run, alice, after=3)
    held = await database_sync_to_async(store_one_event_holding_the_ring)(run, "k-kept")

    [task] = await ring_locally(held)  # the watcher's send: held by us, not only by the loop
    gc.collect()
    assert seqs(await ws.receive_from(timeout=5)) == [4]
    await asyncio.wait([task], timeout=5)
    assert task.done() and task not in consumers.background_tasks  # let go of once done
    polls = set(consumers.background_tasks)  # the run's poll, with the in-memory layer
    await ws.disconnect()
    if polls:
        await asyncio.wait(polls, timeout=5)  # cancelled with its last watcher
    assert consumers.background_tasks == set()


async def connected_and_read(run):
    """Until the consumer has done its first read (it reads after accepting, so
    communicator.connect() returns before it): it then joins the poll set."""
    for _ in range(10_000):  # yields to the loop; no clock involved
        if run.pk in consumers.polls.runs:
            return
        await asyncio.sleep(0)
    raise AssertionError("the consumer never finished connecting")


async def test_a_failing_ring_task_is_logged(run, alice, monkeypatch, caplog):
    ws = await connect(run, alice, after=3)
    await connected_and_read(run)  # the broken render below must meet the ring's read only

    def broken_render(*args):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(consumers.transcript, "render_frame", broken_render)
    held = await database_sync_to_async(store_one_event_holding_the_ring)(run, "k-broken")

    with caplog.at_level(logging.ERROR, logger=consumers.__name__):
        [task] = await ring_locally(held)
        await asyncio.wait([task], timeout=5)

    [record] = [r for r in caplog.records if r.name == consumers.__name__]
    assert record.getMessage() == f"transcript task ring {notify.group_name(run.code)} seq 4 failed"
    assert "template exploded" in str(record.exc_info[1])
    assert task not in consumers.background_tasks
    await ws.disconnect()


async def test_resume_sends_only_what_came_after(run, alice):
    await post_events(run, "seen before", "new one")
    ws = await connect(run, alice, after=4)
    frame = await ws.receive_from(timeout=5)
    assert seqs(frame) == [5]
    assert "new one" in frame and "seen before" not in frame
    await ws.disconnect()


async def test_nothing_new_means_no_frame(run, alice):
    ws = await connect(run, alice, after=3)
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


@pytest.mark.parametrize("role", ["outsider", "anonymous"])
async def test_outsiders_are_refused_and_get_nothing(role, run, users):
    user = None if role == "anonymous" else users[role]
    ws = await connect(run, user, after=0)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await post_events(run, "secret finding")
    assert await ws.receive_nothing(timeout=0.2)


async def test_an_unknown_run_is_refused(run, alice):
    run.code = "00000000-0000-0000-0000-000000000000"
    ws = await connect(run, alice)
    assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}


async def test_a_viewer_can_watch_but_not_send(run, carol):
    ws = await connect(run, carol, after=3)
    await post_events(run, "visible to viewers")
    frame = await ws.receive_from(timeout=5)
    assert "visible to viewers" in frame
    assert 'name="text"' not in frame
    # The socket is for listening: a message sent over it stores nothing.
    await ws.send_to(text_data="let me in")
    assert await ws.receive_nothing(timeout=0.2)
    count = await database_sync_to_async(run.events.count)()
    assert count == 4
    await ws.disconnect()


async def test_a_finished_run_turns_the_owners_controls_into_continue(run, alice):
    ws = await connect(run, alice, after=3)
    await database_sync_to_async(run.transition)(RunStatus.SUCCEEDED)
    frame = await ws.receive_from(timeout=5)
    assert seqs(frame) == [4]
    assert 'data-controls="ended" hx-swap-oob="true"' in frame
    assert "Continue this session" in frame and ">Stop</button>" not in frame
    # The artifacts panel is refreshed on status changes too.
    assert '<section id="run-artifacts" class="card" hx-swap-oob="true">' in frame
    await ws.disconnect()


async def test_the_facts_panel_comes_again_when_tokens_or_status_change(run, alice):
    # A harness that calls a model: the analyst's panel shows no tokens.
    config = {**run.config, "harness": "claude-code"}
    await database_sync_to_async(Run.objects.filter(pk=run.pk).update)(config=config)
    ws = await connect(run, alice, after=0)
    assert FACTS_PANEL in await ws.receive_from(timeout=5)
    await post_events(run, "nothing changes")
    assert FACTS_PANEL not in await ws.receive_from(timeout=5)

    await database_sync_to_async(Run.objects.filter(pk=run.pk).update)(input_tokens=1234)
    await post_events(run, "tokens were counted")
    frame = await ws.receive_from(timeout=5)
    assert FACTS_PANEL in frame and "1,234 in" in frame

    await database_sync_to_async(run.transition)(RunStatus.SUCCEEDED)
    frame = await ws.receive_from(timeout=5)
    assert FACTS_PANEL in frame and 'id="run-status">Succeeded' in frame
    await ws.disconnect()


async def test_stop_then_the_end_each_change_the_controls_without_a_reload(run, alice):
    """After Stop the page showed "Stopping…"; once the run is cancelled it shows Continue."""
    ws = await connect(run, alice, after=3)
    await database_sync_to_async(actions.cancel)(alice, run)
    frame = await ws.receive_from(timeout=5)
    assert 'data-controls="stopping" hx-swap-oob="true"' in frame and "Stopping…" in frame
    await database_sync_to_async(run.refresh_from_db)()
    await database_sync_to_async(run.transition)(RunStatus.CANCELLED, exit_reason="stopped by user")
    frame = await ws.receive_from(timeout=5)
    assert 'data-controls="ended" hx-swap-oob="true"' in frame
    assert "Stopping…" not in frame and ">Continue</button>" in frame
    assert 'id="run-status">Cancelled' in frame
    await ws.disconnect()


async def test_a_viewer_gets_no_controls_when_the_run_ends(run, carol):
    ws = await connect(run, carol, after=3)
    await database_sync_to_async(run.transition)(RunStatus.SUCCEEDED)
    frame = await ws.receive_from(timeout=5)
    assert "run-controls" not in frame and "Succeeded" in frame
    await ws.disconnect()


async def test_without_a_doorbell_the_consumer_polls(run, alice, monkeypatch):
    """A worker in another process cannot ring an in-memory layer: the poll finds its events."""
    monkeypatch.setattr("agentloop.runs.notify._send", lambda group, message: None)
    monkeypatch.setattr(consumers, "POLL_SECONDS", 0.02)
    ws = await connect(run, alice, after=3)
    await post_events(run, "from another process")
    frame = await ws.receive_from(timeout=5)
    assert seqs(frame) == [4]
    await ws.disconnect()


async def test_doorbell_and_poll_together_send_each_event_once(run, alice, monkeypatch):
    monkeypatch.setattr(consumers, "POLL_SECONDS", 0.01)
    ws = await connect(run, alice, after=3)
    received = []
    for text in ("a", "b", "c"):
        await post_events(run, text)
        received += seqs(await ws.receive_from(timeout=5))
    assert await ws.receive_nothing(timeout=0.2)  # twenty polls later: still nothing new
    assert received == [4, 5, 6]
    await ws.disconnect()


async def test_fifty_watchers_share_one_render(run, alice, carol, monkeypatch):
    """A frame for a seq range is rendered once per kind of watcher, not once per watcher."""
    renders = []
    real = consumers.transcript.render_frame

    def counting(*args):
        renders.append(args)
        return real(*args)

    monkeypatch.setattr(consumers.transcript, "render_frame", counting)
    owners = [await connect(run, alice, after=3) for _ in range(5)]
    viewers = [await connect(run, carol, after=3) for _ in range(5)]
    await post_events(run, "for everyone")
    for ws in owners + viewers:
        assert seqs(await ws.receive_from(timeout=5)) == [4]
    # (after=3, upto=4) rendered once for people who may use the run, once for viewers.
    assert sorted(args[2] for args in renders) == [False, True]
    for ws in owners + viewers:
        await ws.disconnect()


async def test_a_ring_that_outruns_what_its_read_can_see_is_read_again(run, alice, monkeypatch):
    """The ring for seq 4 comes, the read does not see seq 4 yet (here: its write
    has not committed; in production a read whose view of the database is older
    than the ring). The watcher must still get it, without another ring or the poll."""
    paused, resume = asyncio.Event(), asyncio.Event()

    async def pause(seconds):
        paused.set()
        await resume.wait()

    monkeypatch.setattr(consumers, "pause_before_reread", pause, raising=False)
    ws = await connect(run, alice, after=3)
    written, commit = threading.Event(), threading.Event()

    def write_and_commit_when_told():
        try:
            with notify.rings_held():  # its own ring is dropped: the test rings early instead
                with transaction.atomic():
                    recording.record_events(
                        run,
                        [{"key": "k-late", "source": "agent", "kind": "message", "payload": {}}],
                        secrets=None,
                    )
                    written.set()
                    commit.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=write_and_commit_when_told)
    writer.start()
    try:
        assert await asyncio.to_thread(written.wait, 10)
        group = notify.group_name(run.code)
        await notify.ring_held([(group, {"type": notify.MESSAGE_TYPE, "seq": 4})])
        # The consumer read (3, 4], found nothing, and waits to read again.
        await asyncio.wait_for(paused.wait(), 5)
    finally:
        commit.set()
        await asyncio.to_thread(writer.join, 10)
    resume.set()
    assert seqs(await ws.receive_from(timeout=5)) == [4]
    assert await ws.receive_nothing(timeout=0.2)
    await ws.disconnect()


async def test_a_short_frame_is_not_kept_for_the_next_read_of_its_range(run, alice):
    """A frame rendered before its range was visible must not answer the next
    read of that range (a poll, another watcher) with the same nothing."""
    assert await consumers.frames.get(run, 3, 4, True, "open", None) == {
        "html": "",
        "last_seq": 3,
        "controls": "open",
        "facts": None,
        "more": False,
    }
    await post_events(run, "now committed")
    frame = await consumers.frames.get(run, 3, 4, True, "open", None)
    assert frame["last_seq"] == 4 and "now committed" in frame["html"]


# --- the doorbell ------------------------------------------------------------------


def test_the_doorbell_rings_only_after_commit(monkeypatch):
    from django.db import transaction

    from agentloop.runs import notify

    sent = []
    monkeypatch.setattr(notify, "_send", lambda group, message: sent.append((group, message)))
    code = "5f48b004-33b5-46c8-9505-fc9a4fb91c35"
    try:
        with transaction.atomic():
            notify.ring(code, 7)
            assert sent == []  # not yet: a watcher would read before the commit
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert sent == []  # rolled back: nothing to tell
    with transaction.atomic():
        notify.ring(code, 8)
    assert sent == [
        (
            "run.5f48b00433b546c89505fc9a4fb91c35",
            {"type": "run.events", "run": "5f48b00433b546c89505fc9a4fb91c35", "seq": 8},
        )
    ]
    json.dumps(sent[0][1])  # what Redis carries: plain JSON, no model instances


def test_the_doorbell_is_safe_without_a_channel_layer(settings, monkeypatch, caplog, run):
    settings.CHANNEL_LAYERS = {}
    channel_layers.backends.clear()
    layers_found, sends = [], []
    real_get_channel_layer = notify.get_channel_layer

    def get_channel_layer():
        layers_found.append(real_get_channel_layer())
        return layers_found[-1]

    monkeypatch.setattr(notify, "get_channel_layer", get_channel_layer)
    monkeypatch.setattr(notify, "async_to_sync", lambda send: sends.append(send) or send)

    seq = recording.record_events(
        run,
        [{"key": "k-quiet", "source": "agent", "kind": "message", "payload": {"text": "quiet"}}],
        secrets=None,
    ).last_seq

    assert layers_found == [None]  # the doorbell rang after the commit and found no layer
    assert sends == []  # so it sent nothing
    assert not [r for r in caplog.records if r.name == notify.__name__]  # nor cried wolf
    stored = run.events.get(seq=seq)  # and the write it rang for is stored all the same
    assert (stored.kind, stored.payload) == ("message", {"text": "quiet"})
