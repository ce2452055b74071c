"""The production configuration: PostgreSQL, Redis (channel layer, q2 broker), two web processes.

`make test-production` runs every test marked `production` with DATABASE_URL
and REDIS_URL set; without REDIS_URL these skip (the SQLite and PostgreSQL
passes of `make test` use the in-memory layer and the ORM broker).

Two web processes are two daphne subprocesses on loopback ports, serving the
test database: an event posted to web A must reach a watcher on web B, and a
follow-up posted on web B must wake a runner's inbox long-poll on web A —
both only through Redis, since nothing else connects the two processes. Their
inbox re-check is set to 600 s (WEB_SCRIPT), so an inbox answered within the
test was answered by the doorbell.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentloop.runs import actions, notify, recording
from agentloop.runs.models import Run, RunStatus, ServiceKey
from tests.e2e_support import needs_bwrap
from tests.span_factory import make_span

pytest_plugins = ["tests.e2e_support"]  # the sandbox_root fixture

ROOT = Path(__file__).resolve().parent.parent
SEQ = re.compile(r'id="event-(\d+)"')

pytestmark = [
    pytest.mark.production,
    pytest.mark.skipif(
        not settings.REDIS_URL,
        reason="needs REDIS_URL: channels-redis and django-q2's Redis broker "
        "(make test-production sets it)",
    ),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the production configuration is PostgreSQL (make test-production sets it)",
    ),
    pytest.mark.django_db(transaction=True),  # other processes read what the test stored
]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """channels-redis keeps connections per event loop; each test has its own loop."""
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


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def seqs(frame: str) -> list[int]:
    return [int(s) for s in SEQ.findall(frame)]


# --- in this process, through Redis ---------------------------------------------------


async def test_a_watcher_gets_each_event_through_the_redis_layer(running, alice):
    from channels_redis.core import RedisChannelLayer

    from agentloop.asgi import application

    run, _ = running
    assert isinstance(get_channel_layer(), RedisChannelLayer)
    cookie = await database_sync_to_async(session_cookie)(alice)
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    headers.append((b"cookie", f"sessionid={cookie}".encode()))
    ws = WebsocketCommunicator(application, f"/ws/runs/{run.code}/?after=0", headers=headers)
    assert (await ws.connect())[0]
    batch = [{"key": "a", "source": "agent", "kind": "message", "payload": {"text": "Found it."}}]
    # Not held: rung on commit through the layer, as a write in another process would be.
    await database_sync_to_async(recording.record_events)(run, batch, None)
    frame = await ws.receive_from(timeout=10)
    assert seqs(frame) == [1] and "Found it." in frame
    await ws.disconnect()


def test_q2_tasks_go_through_the_redis_broker():
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis

    broker = get_broker(list_key=f"agentloop-test-{uuid.uuid4().hex}")
    assert isinstance(broker, Redis) and broker.ping()
    try:
        broker.enqueue("a signed task")
        assert broker.queue_size() == 1
        ((task_id, task),) = broker.dequeue()
        assert task == b"a signed task" or task == "a signed task"
    finally:
        broker.delete_queue()


# --- two web processes ---------------------------------------------------------------

# A web process as `manage.py serve` starts one (daphne, agentloop.asgi), with
# the inbox's safety re-check out of the way: only the doorbell answers in time.
WEB_SCRIPT = """
import sys
import django
django.setup()
from agentloop.runs import inbox
inbox.SAFETY_SECONDS = 600
from daphne.cli import CommandLineInterface
port = sys.argv[1]
sys.argv = ["daphne", "-v", "0", "-b", "127.0.0.1", "-p", port, "agentloop.asgi:application"]
CommandLineInterface.entrypoint()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    # A real process we do not control: polled with a deadline (tests/e2e_support.py).
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"the web process exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the web process did not listen on {port} within {seconds} s")


@pytest.fixture
def webs(transactional_db):
    """Two daphne processes on the test database: {"a": url, "b": url}.

    Started for each test: between tests the database is flushed, which gives
    content types and permissions new ids, and a web process that cached the
    old ones (django-guardian's checks use them) would refuse everyone."""
    database_url = _database_url()
    tmp = tempfile.mkdtemp(prefix="agentloop-webs-")
    urls, processes = {}, []
    try:
        for name in ("a", "b"):
            port = _free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                "DJANGO_SETTINGS_MODULE": "agentloop.settings_test",
                "DATABASE_URL": database_url,
                "REDIS_URL": settings.REDIS_URL,
                "AGENTLOOP_PUBLIC_URL": urls[name],
                "AGENTLOOP_VAR_DIR": str(Path(tmp) / name),
            }
            process = subprocess.Popen(
                [sys.executable, "-c", WEB_SCRIPT, str(port)], cwd=ROOT, env=env
            )
            processes.append(process)
            _wait_for_port(port, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _watch(url: str, run, cookie: str):
    import websockets

    ws_url = url.replace("http://", "ws://") + f"/ws/runs/{run.code}/?after=0"
    return websockets.connect(
        ws_url, additional_headers={"Cookie": f"sessionid={cookie}"}, origin=url
    )


def _post_event(url: str, token: str, key: str, text: str) -> dict:
    event = {"key": key, "source": "agent", "kind": "message", "payload": {"text": text}}
    body = {"events": [event]}
    answer = httpx.post(
        url + "/api/runner/v1/events",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_an_event_posted_to_web_a_reaches_watchers_on_web_b_and_a(webs, running, alice):
    run, token = running
    cookie = await database_sync_to_async(session_cookie)(alice)
    # Each consumer joins the run's group before it accepts: connected means listening.
    async with _watch(webs["b"], run, cookie) as on_b, _watch(webs["a"], run, cookie) as on_a:
        stored = await asyncio.to_thread(_post_event, webs["a"], token, "k-1", "Found it.")
        assert stored["seqs"] == [1]
        for socket_ in (on_b, on_a):
            frame = await asyncio.wait_for(socket_.recv(), 10)
            assert seqs(frame) == [1] and "Found it." in frame
        await asyncio.to_thread(_post_event, webs["a"], token, "k-2", "And this.")
        for socket_ in (on_b, on_a):
            assert seqs(await asyncio.wait_for(socket_.recv(), 10)) == [2]


def _group_members(run) -> int:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return client.zcard(f"asgi:group:{notify.group_name(run.code)}")
    finally:
        client.close()


def _followup_through_web(url: str, run, cookie: str, text: str) -> None:
    """What the session page's follow-up form does, with its CSRF token."""
    with httpx.Client(base_url=url, cookies={"sessionid": cookie}, timeout=20) as browser:
        page = browser.get(reverse("studio-session", kwargs={"code": run.code}))
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = browser.post(
            reverse("studio-followup", kwargs={"code": run.code}),
            data={"text": text, "csrfmiddlewaretoken": token},
        )
        assert answer.status_code == 302, answer.text


async def test_a_followup_posted_on_web_b_wakes_an_inbox_long_poll_on_web_a(webs, running, alice):
    run, token = running
    cookie = await database_sync_to_async(session_cookie)(alice)
    poll = asyncio.ensure_future(
        asyncio.to_thread(
            httpx.get,
            webs["a"] + "/api/runner/v1/inbox?after=0&wait=20",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    )
    # Web A's inbox joins the run's group before its first look at the database.
    give_up = time.monotonic() + 20
    while not await asyncio.to_thread(_group_members, run):
        assert time.monotonic() < give_up, "the inbox long-poll never started listening"
        await asyncio.sleep(0.02)
    await asyncio.to_thread(_followup_through_web, webs["b"], run, cookie, "And the 500s?")
    answer = await asyncio.wait_for(poll, 30)
    assert answer.status_code == 200
    assert [f["text"] for f in answer.json()["followups"]] == ["And the 500s?"]
    # Web A re-checks only every 600 s and the wait was 20 s: the doorbell answered.
    assert answer.json()["stop"] is False


@needs_bwrap
@pytest.mark.slow
async def test_a_run_end_to_end_is_watched_live_from_the_other_web(
    webs,
    settings,
    sandbox_root,
    project,
    alice,
):
    """The runner in a real sandbox talks to web A (spec, events, inbox, status);
    a watcher on web B gets every event once, in order, through Redis."""
    settings.AGENTLOOP_PUBLIC_URL = webs["a"]
    now = timezone.now()
    for i in range(4):
        await database_sync_to_async(make_span)(
            project,
            name="refund-tool",
            kind="TOOL",
            status="ERROR",
            start=now - timedelta(minutes=30 + i),
            attributes={"exception.type": "TimeoutError"},
        )
    config = {"harness": "analyst", "sandbox": "local", "time_limit_seconds": 300}
    # Q_CLUSTER sync: the launch runs at commit, in this process.
    run = await database_sync_to_async(actions.start_session)(
        alice, project, config, "Why do refunds fail?"
    )
    cookie = await database_sync_to_async(session_cookie)(alice)
    received: list[int] = []
    give_up = time.monotonic() + 180
    async with _watch(webs["b"], run, cookie) as on_b:
        while True:
            assert time.monotonic() < give_up, f"watcher on B got seqs {received}"
            try:
                received += seqs(await asyncio.wait_for(on_b.recv(), 5))
            except TimeoutError:
                pass
            final = await database_sync_to_async(Run.objects.get)(pk=run.pk)
            if final.is_terminal and received and received[-1] == final.next_seq:
                break
    assert final.status == RunStatus.SUCCEEDED, final.exit_reason
    assert received == list(range(1, final.next_seq + 1))
    kinds = await database_sync_to_async(
        lambda: list(final.events.values_list("kind", flat=True))
    )()
    assert "tool_call" in kinds
