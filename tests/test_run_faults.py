"""Runs that go wrong, in real bubblewrap sandboxes against daphne (this process).

Each ends in the right terminal status, with every stored event exactly once
(seqs 1..n, keys unique) and no sandbox left behind (its directory gone, its
processes dead, its key revoked). Time-based verdicts of the reconciler
(heartbeat timeout, provisioning timeout, deadline) are reached with an
explicit `now`, not by waiting.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from agentloop.runs import actions, tasks
from agentloop.runs.models import Run, RunEvent, RunStatus, ServiceKey
from agentloop.runs.reconciler import HEARTBEAT_TIMEOUT, PROVISIONING_TIMEOUT, reconcile
from agentloop.sandboxes.base import SandboxHandle, SandboxState
from agentloop.sandboxes.local import LocalProvider
from agentloop.sandboxes.supervise import is_same_process
from tests.e2e_support import (
    needs_bwrap,
    runner_log,
    runner_pid,
    wait_for,
    wait_for_status,
)
from tests.fake_anthropic import held, text, tool_use
from tests.span_factory import make_span
from tests.test_claude_code_harness import CLAUDE

# asgi_server, upstream_model, gateway; sandbox_root
pytest_plugins = ["tests.gateway_server", "tests.e2e_support"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), needs_bwrap]

ANALYST = {"harness": "analyst", "sandbox": "local", "time_limit_seconds": 300}


@pytest.fixture
def web(settings, asgi_server, served_db):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    return asgi_server


@pytest.fixture
def spans(project):
    now = timezone.now()
    for i in range(3):
        make_span(
            project,
            name="refund-tool",
            kind="TOOL",
            status="ERROR",
            start=now - timedelta(minutes=10 + i),
        )


def assert_events_once(run: Run) -> list[RunEvent]:
    events = list(run.events.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.key for e in events}) == len(events)
    return events


def assert_no_sandbox_left(run: Run, sandbox_root) -> None:
    run.refresh_from_db()
    assert run.sandbox_cleaned_at is not None
    assert not (sandbox_root / str(run.code)).exists()
    keys = ServiceKey.objects.filter(run=run)
    assert keys.exists() and all(key.revoked_at is not None for key in keys)


# -- the runner posts the same batch twice ---------------------------------------------


class AnswerDroppingProxy:
    """Forwards HTTP to the web process; swallows the answer to the first POST of events.

    The server has stored the batch, but the runner sees the connection drop,
    so it posts the very same batch again: the real "lost answer" retry.
    """

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.event_posts: list[tuple[bytes, bytes]] = []  # (request body, answer) in order
        self.dropped = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.listener.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        with client:
            request = _read_request(client)
            if request is None:
                return
            with socket.create_connection(self.upstream) as upstream:
                upstream.sendall(request)
                answer = b""
                while chunk := upstream.recv(65536):
                    answer += chunk
            if request.startswith(b"POST /api/runner/v1/events "):
                body = request.split(b"\r\n\r\n", 1)[1]
                with self._lock:
                    self.event_posts.append((body, answer))
                    drop = self.dropped == 0
                    self.dropped += drop
                if drop:
                    client.shutdown(socket.SHUT_RDWR)  # stored upstream; the runner never hears
                    return
            client.sendall(answer)


def _read_request(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        body += sock.recv(65536)
    # One request per connection: the upstream closes after answering.
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n" + body


def test_a_batch_posted_twice_is_stored_once_with_the_same_seqs(
    settings, web, sandbox_root, spans, project, alice
):
    proxy = AnswerDroppingProxy(web)
    settings.AGENTLOOP_PUBLIC_URL = proxy.url  # the sandbox reaches the server through it
    try:
        run = actions.start_session(alice, project, ANALYST, "Why do refunds fail?")
        run = wait_for_status(run, [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
    finally:
        proxy.close()
    assert run.status == RunStatus.SUCCEEDED, run.exit_reason

    (first_body, first_answer), (again_body, again_answer) = proxy.event_posts[:2]
    assert again_body == first_body  # the same batch, the same keys, posted twice
    posted = json.loads(first_body)["events"]
    first = json.loads(first_answer.split(b"\r\n\r\n", 1)[1])
    again = json.loads(again_answer.split(b"\r\n\r\n", 1)[1])
    assert first["stored"] == len(posted) and first["duplicates"] == 0
    assert again["stored"] == 0 and again["duplicates"] == len(posted)
    assert again["seqs"] == first["seqs"]  # stable: the retry learns the seqs stored first

    events = assert_events_once(run)
    stored = {e.key: e.seq for e in events}
    assert [stored[e["key"]] for e in posted] == first["seqs"]
    posted_keys = {p["key"] for p in posted}
    assert [e.kind for e in events if e.key in posted_keys] == [p["kind"] for p in posted]
    assert events[-1].payload["state"] == "succeeded"

    reconcile()
    assert_no_sandbox_left(run, sandbox_root)


# -- the runner is killed mid-run --------------------------------------------------------


@pytest.mark.skipif(CLAUDE is None, reason="Claude Code CLI not found (claude-agent-sdk)")
def test_a_runner_killed_mid_turn_fails_the_run_once_its_heartbeat_is_overdue(
    web, gateway, upstream_model, sandbox_root, project, alice
):
    answer = held(text("never sent"))
    upstream_model.script([tool_use("Bash", {"command": "echo started"}, say="Starting."), answer])
    config = {**ANALYST, "harness": "claude-code"}
    try:
        run = actions.start_session(alice, project, config, "Work for a while.")
        # Mid-turn: the tool ran and the CLI is waiting for the model's next answer.
        assert answer.arrived.wait(90), runner_log(run)
        assert wait_for(lambda: run.events.filter(kind="tool_result").exists(), 30)
        pid = runner_pid(run)
        assert pid, runner_log(run)
        os.kill(pid, signal.SIGKILL)
        killed_at = timezone.now()

        handle = SandboxHandle.from_json(Run.objects.get(pk=run.pk).sandbox)
        provider = LocalProvider()
        assert wait_for(lambda: provider.status(handle).state == SandboxState.EXITED, 30)
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING  # nobody told the server yet
        before = [e.key for e in assert_events_once(run)]

        reconcile(now=killed_at + HEARTBEAT_TIMEOUT + timedelta(seconds=1))
    finally:
        upstream_model.release_all()

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.exit_reason == "The runner stopped heart-beating."
    events = assert_events_once(run)
    assert [e.key for e in events[:-1]] == before  # nothing lost, nothing twice
    kinds = [e.kind for e in events if e.source == "agent"]
    assert kinds.index("tool_call") < kinds.index("tool_result")
    assert events[-1].payload["state"] == "failed"
    assert_no_sandbox_left(run, sandbox_root)


# -- the worker dies after provisioning ----------------------------------------------------


class WorkerDied(BaseException):
    """Stands for the worker process dying: nothing after it in launch_run runs."""


def launch_and_die_after_sandbox_start(monkeypatch, run: Run) -> None:
    real_start = LocalProvider.start

    def start_then_die(self, spec):
        real_start(self, spec)
        raise WorkerDied

    monkeypatch.setattr(LocalProvider, "start", start_then_die)
    with pytest.raises(WorkerDied):
        tasks.launch_run(run.pk)
    monkeypatch.setattr(LocalProvider, "start", real_start)


def test_a_worker_dying_after_starting_the_sandbox_leaves_the_runner_to_finish(
    monkeypatch, web, sandbox_root, spans, project, alice
):
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)  # we launch it by hand
    run = actions.start_session(alice, project, ANALYST, "Why do refunds fail?")

    launch_and_die_after_sandbox_start(monkeypatch, run)
    run.refresh_from_db()
    assert run.status == RunStatus.PROVISIONING and not run.sandbox  # the handle never stored

    run = wait_for_status(run, [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
    assert run.status == RunStatus.SUCCEEDED, run.exit_reason
    assert_events_once(run)

    reconcile()
    assert_no_sandbox_left(run, sandbox_root)


def test_a_worker_dying_after_starting_a_sandbox_that_never_reports_fails_it_in_time(
    monkeypatch, settings, web, sandbox_root, project, alice
):
    # The sandbox cannot reach the server: its runner never says it started.
    with socket.create_server(("127.0.0.1", 0)) as closed:
        settings.AGENTLOOP_PUBLIC_URL = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)
    # A time limit past the provisioning timeout, so that is what ends it.
    config = {**ANALYST, "time_limit_seconds": int(PROVISIONING_TIMEOUT.total_seconds()) * 2}
    run = actions.start_session(alice, project, config, "Why do refunds fail?")

    launch_and_die_after_sandbox_start(monkeypatch, run)
    run.refresh_from_db()
    launched_at = run.launched_at

    assert reconcile(now=launched_at + timedelta(seconds=30))["ended"] == 0  # still in time
    supervisor = json.loads((sandbox_root / str(run.code) / "supervisor.json").read_text())
    assert is_same_process(supervisor["pid"], supervisor["start_time"])  # the sandbox lives on
    reconcile(now=launched_at + PROVISIONING_TIMEOUT)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.exit_reason == "The runner did not start in time."
    assert_events_once(run)
    assert_no_sandbox_left(run, sandbox_root)
    assert not is_same_process(supervisor["pid"], supervisor["start_time"])


# -- the deadline passes ---------------------------------------------------------------------


@pytest.mark.skipif(CLAUDE is None, reason="Claude Code CLI not found (claude-agent-sdk)")
def test_a_run_past_its_deadline_is_timed_out_and_its_sandbox_stopped(
    web, gateway, upstream_model, sandbox_root, project, alice
):
    upstream_model.script([text("Waiting for you.")])
    config = {**ANALYST, "harness": "claude-code"}
    run = actions.start_session(alice, project, config, "Hello.")
    run = wait_for_status(run, [RunStatus.WAITING, RunStatus.FAILED, RunStatus.CANCELLED])
    assert run.status == RunStatus.WAITING, run.exit_reason
    handle = SandboxHandle.from_json(run.sandbox)
    assert LocalProvider().status(handle).state == SandboxState.RUNNING

    reconcile(now=run.deadline + timedelta(seconds=1))

    run.refresh_from_db()
    assert run.status == RunStatus.TIMED_OUT
    assert run.exit_reason == "The run reached its time limit."
    events = assert_events_once(run)
    assert events[-1].payload["state"] == "timed_out"
    assert_no_sandbox_left(run, sandbox_root)
    assert LocalProvider().status(handle).state == SandboxState.GONE
