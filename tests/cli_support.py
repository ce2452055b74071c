"""A web process the CLI tests can stop and start again, and a way to run the CLI.

The web process is daphne in a subprocess (agentloop.asgi, as `manage.py
serve` starts it) on the test database: SQLite's test file (WAL) or the
PostgreSQL test database, so it sees what the test commits and the test sees
what it stores. A subprocess, not a thread, because the follow test restarts
it (Twisted's reactor runs once per process). The CLI runs as a real process
too (`python -m agentloop.cli.main`), with its server and token in the
environment as a CI job would set them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

WEB_SCRIPT = """
import sys
import django
django.setup()
from daphne.cli import CommandLineInterface
port = sys.argv[1]
sys.argv = ["daphne", "-v", "0", "-b", "127.0.0.1", "-p", port, "agentloop.asgi:application"]
CommandLineInterface.entrypoint()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class WebProcess:
    def __init__(self, var_dir: Path, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.var_dir = var_dir
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "DJANGO_SETTINGS_MODULE": "agentloop.settings_test",
            "DATABASE_URL": database_url(),
            "AGENTLOOP_PUBLIC_URL": self.url,
            "AGENTLOOP_VAR_DIR": str(self.var_dir),
            **self.extra_env,
        }
        env.pop("REDIS_URL", None)  # one web process: the in-memory layer and its poll
        self.process = subprocess.Popen(
            [sys.executable, "-c", WEB_SCRIPT, str(self.port)], cwd=ROOT, env=env
        )
        self._wait_for_port()

    def _wait_for_port(self, seconds: float = 60) -> None:
        # A real process we do not control: polled with a deadline (tests/e2e_support.py).
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"the web process exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the web process did not listen on {self.port} within {seconds} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def web(transactional_db, tmp_path):
    """A daphne subprocess on the test database, started for each test: between
    tests the database is flushed, which gives content types and permissions new
    ids that a long-lived process would have cached (django-guardian reads them)."""
    process = WebProcess(tmp_path / "web-var")
    process.start()
    yield process
    process.stop()


def cli_env(url: str, token: str, tmp_path: Path, **extra) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AGENTLOOP_", "DJANGO_", "DATABASE_"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        AGENTLOOP_URL=url,
        AGENTLOOP_TOKEN=token,
        AGENTLOOP_CONFIG=str(tmp_path / "no-contexts.toml"),
        COLUMNS="200",
        NO_COLOR="1",
    )
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "agentloop.cli.main", *args]


def run_cli(env: dict, *args: str, stdin: str | None = None, timeout: float = 120):
    return subprocess.run(
        cli_command(*args),
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
