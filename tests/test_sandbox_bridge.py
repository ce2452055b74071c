"""The runner-only network bridge inside a real bubblewrap sandbox: it carries
large bodies both ways, and it survives the agent filling its process limit."""

# ruff: noqa: F811 (the fixtures come from test_sandbox_local)
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentloop.sandboxes.base import NetworkPolicy
from agentloop.sandboxes.netbridge import parse_args
from tests.test_sandbox_local import BWRAP, provider, python, run_json, sandbox_root  # noqa: F401

pytestmark = pytest.mark.skipif(
    not os.access(BWRAP, os.X_OK), reason="bubblewrap is not installed (/usr/bin/bwrap)"
)


@pytest.fixture
def web():
    """A stand-in web process: GET /big answers 3 MB, POST answers the sha256 of the body."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, body: bytes):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._answer(bytes(range(256)) * (3 * 4096) if self.path == "/big" else b"pong")

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(hashlib.sha256(body).hexdigest().encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def runner_only(code: str, script: str, port: int, **limits):
    sandbox_spec = python(code, script, **limits)
    return replace(
        sandbox_spec,
        env={"AGENTLOOP_URL": f"http://localhost:{port}/"},
        network=NetworkPolicy.RUNNER_ONLY,
    )


def test_the_bridge_carries_megabytes_both_ways(provider, web):
    script = """
    import hashlib, json, os, urllib.request
    url = os.environ["AGENTLOOP_URL"]
    big = urllib.request.urlopen(url + "big", timeout=20).read()
    upload = os.urandom(2 * 1024 * 1024)
    request = urllib.request.Request(url + "up", data=upload, method="POST")
    echoed = urllib.request.urlopen(request, timeout=20).read().decode()
    print(json.dumps({
        "big": hashlib.sha256(big).hexdigest(),
        "upload_ok": echoed == hashlib.sha256(upload).hexdigest(),
    }))
    """
    result = run_json(provider, runner_only("bridgebig", script, web))

    assert result["big"] == hashlib.sha256(bytes(range(256)) * (3 * 4096)).hexdigest()
    assert result["upload_ok"] is True


def test_the_bridge_survives_the_agent_filling_its_process_limit(provider, web):
    # The agent forks until the kernel says no, keeps every child, and only
    # then talks to the web process, over several new connections.
    script = """
    import json, os, signal, time, urllib.request
    children = []
    error = None
    try:
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = exc.strerror
    answers = []
    for _ in range(5):
        try:
            answers.append(urllib.request.urlopen(os.environ["AGENTLOOP_URL"] + "ping",
                                                  timeout=3).read().decode())
        except OSError as exc:
            answers.append(repr(exc))
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    print(json.dumps({"children": len(children), "error": error, "answers": answers}))
    """
    result = run_json(provider, runner_only("bridgenproc", script, web, processes=24))

    assert result["error"] == "Resource temporarily unavailable"  # the limit was reached
    assert result["answers"] == ["pong"] * 5


def test_the_bridge_takes_several_routes_and_refuses_a_malformed_command_line():
    assert parse_args(["nb", "8000", "/run/a.sock", "3128", "/run/p.sock", "--", "true"]) == (
        [(8000, "/run/a.sock"), (3128, "/run/p.sock")],
        ["true"],
    )
    assert parse_args(["nb", "8000", "/run/a.sock", "--"]) is None
    assert parse_args(["nb", "8000", "--", "true"]) is None
    assert parse_args(["nb", "x", "/run/a.sock", "--", "true"]) is None
