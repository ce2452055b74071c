"""Failed key authentication is throttled per address on every API (agentloop/key_throttle.py).

Twenty refused keys from one address within five minutes, on any mix of
OTLP ingest, the runner API, the gateway and the REST API, and that address
gets 429 with Retry-After, even with a good key, until the window has moved
on. Other addresses are not affected; time is a fake clock.
"""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import async_to_sync

from agentloop.key_throttle import throttle
from agentloop.teams.models import ProjectApiKey
from tests.otlp_payloads import export_request

pytest_plugins = ["tests.gateway_server"]  # served_db

ATTACKER, NEIGHBOUR = "10.1.1.1", "10.2.2.2"


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    return now


def send(method, path, *, address, headers=None, content=b""):
    """One request into agentloop.asgi.application from `address`."""
    from agentloop.asgi import application

    async def go():
        transport = httpx.ASGITransport(app=application, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.request(method, path, headers=headers or {}, content=content)

    return async_to_sync(go)()


def export(key: str, address: str):
    return send(
        "POST",
        "/v1/traces",
        address=address,
        headers={"authorization": f"Bearer {key}", "content-type": "application/x-protobuf"},
        content=export_request().SerializeToString(),
    )


def guess_keys(address: str, times_each: int) -> list[int]:
    statuses = []
    for n in range(times_each):
        bad = f"al_pk_guess{n}"
        statuses.append(export(bad, address).status_code)
        statuses.append(
            send(
                "POST",
                "/api/runner/v1/events",
                address=address,
                headers={"authorization": f"Bearer al_sk_guess{n}"},
                content=b'{"events": []}',
            ).status_code
        )
        statuses.append(
            send(
                "POST",
                "/llm/anthropic/v1/messages",
                address=address,
                headers={"x-api-key": f"al_sk_guess{n}"},
                content=b"{}",
            ).status_code
        )
        statuses.append(
            send(
                "GET", "/api/v1/projects/", address=address, headers={"authorization": bad}
            ).status_code
        )
    return statuses


def test_twenty_refused_keys_throttle_the_address_on_every_api(project, served_db, clock):
    _, key = ProjectApiKey.mint(project, "ingest")
    assert guess_keys(ATTACKER, 5) == [401] * 20

    answer = export(key, ATTACKER)  # the right key, too late
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "300"
    assert answer.json() == {
        "detail": f"Too many failed key authentications from {ATTACKER} (20 within 300 s): "
        "try again in 300 s."
    }
    runner = send("GET", "/api/v1/projects/", address=ATTACKER, headers={"x-api-key": "x"})
    assert runner.status_code == 429

    assert export(key, NEIGHBOUR).status_code == 200  # another address is not throttled

    clock[0] += 299
    assert export(key, ATTACKER).headers["retry-after"] == "1"
    clock[0] += 1
    assert export(key, ATTACKER).status_code == 200


def test_requests_without_a_key_and_good_keys_do_not_count(project, served_db, clock):
    _, key = ProjectApiKey.mint(project, "ingest")
    for _ in range(25):
        assert send("POST", "/v1/traces", address=ATTACKER).status_code == 401  # no key at all
        assert export(key, ATTACKER).status_code == 200
    assert guess_keys(ATTACKER, 4) == [401] * 16
    assert export(key, ATTACKER).status_code == 200  # 16 failures: under the limit


def test_failures_older_than_the_window_are_forgotten(project, served_db, clock):
    _, key = ProjectApiKey.mint(project, "ingest")
    guess_keys(ATTACKER, 4)  # 16
    clock[0] += 301
    guess_keys(ATTACKER, 1)  # 4 more, but the first 16 have left the window
    assert export(key, ATTACKER).status_code == 200


def test_loopback_is_not_counted_so_one_sandbox_cannot_lock_out_the_others(
    project, served_db, clock
):
    # Local sandboxes reach the web process from 127.0.0.1 through their bridge.
    _, key = ProjectApiKey.mint(project, "ingest")
    assert guess_keys("127.0.0.1", 6) == [401] * 24
    assert export(key, "127.0.0.1").status_code == 200


def test_the_exempt_networks_come_from_settings(project, served_db, clock, settings):
    settings.KEY_THROTTLE_EXEMPT = ["10.1.0.0/16"]
    _, key = ProjectApiKey.mint(project, "ingest")
    guess_keys(ATTACKER, 6)  # 10.1.1.1: exempt now
    assert export(key, ATTACKER).status_code == 200
    guess_keys("127.0.0.1", 5)  # and loopback counts
    assert export(key, "127.0.0.1").status_code == 429
