"""The doorbell: rung after commit, never for a rolled-back write; held rings are sent later."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.db import transaction

from agentloop.runs import notify

pytestmark = pytest.mark.django_db(transaction=True)

CODE = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def watching_channel(layer) -> str:
    async def watch():
        channel = await layer.new_channel()
        await layer.group_add(notify.group_name(CODE), channel)
        return channel

    return asyncio.run(watch())


def test_held_rings_wait_for_commit_and_are_not_sent_until_asked(monkeypatch):
    monkeypatch.setattr(notify, "_local_bells", [])  # no watchers in this process
    layer = get_channel_layer()
    channel = watching_channel(layer)
    with notify.rings_held() as held:
        with transaction.atomic():
            notify.ring(CODE, 7)
            assert held == []  # not before the commit
    assert held == [(notify.group_name(CODE), {"type": "run.events", "run": CODE.hex, "seq": 7})]

    queue = layer.channels.get(channel)
    assert queue is None or queue.empty()  # held: nothing was sent

    async def deliver():
        await notify.ring_held(held)
        return await asyncio.wait_for(layer.receive(channel), 5)

    assert asyncio.run(deliver())["seq"] == 7


def test_a_rolled_back_write_rings_nothing():
    with notify.rings_held() as held:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                notify.ring(CODE, 3)
                raise RuntimeError("the write failed")
    assert held == []


def test_outside_a_hold_the_ring_is_sent_on_commit():
    layer = get_channel_layer()
    channel = watching_channel(layer)
    with transaction.atomic():
        notify.ring(CODE, 9)
    assert asyncio.run(asyncio.wait_for(layer.receive(channel), 5))["seq"] == 9


def test_held_rings_wake_this_processs_watchers_first(monkeypatch):
    """With the in-memory layer every watcher is local: the local bell is enough."""
    heard = []

    async def bell(group, message):
        heard.append((group, message["seq"]))

    monkeypatch.setattr(notify, "_local_bells", [bell])
    layer = get_channel_layer()
    channel = watching_channel(layer)
    with notify.rings_held() as held:
        with transaction.atomic():
            notify.ring(CODE, 5)
    asyncio.run(notify.ring_held(held))
    assert heard == [(notify.group_name(CODE), 5)]
    queue = layer.channels.get(channel)
    assert queue is None or queue.empty()  # not sent twice through the layer
