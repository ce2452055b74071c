"""Helpers for the tests that run real sandboxes end to end (bubblewrap, runner, web server).

These are the only tests that wait on real processes: they poll the database
(or a file) with a deadline, because the runner lives in another process we do
not control. Time-based decisions of the server (heartbeat timeout, deadline)
are still driven with an explicit `now`, never by sleeping until they happen.

The web process is daphne in a thread of this process (`tests/gateway_server.py`),
serving agentloop.asgi as in production: pytest-django's `live_server` is WSGI,
which cannot serve the hot paths (the LLM gateway, the runner's event post,
OTLP ingest: plain ASGI apps without Django views). It sees the test database
as long as the test commits (`served_db`, a `transactional_db`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from django.db import OperationalError

from agentloop.runs.models import Run
from agentloop.sandboxes.base import SandboxHandle
from agentloop.sandboxes.supervise import descendants

BWRAP = "/usr/bin/bwrap"
needs_bwrap = pytest.mark.skipif(
    not os.access(BWRAP, os.X_OK), reason="bubblewrap is not installed (/usr/bin/bwrap)"
)


@pytest.fixture
def sandbox_root(settings):
    # Not pytest's tmp_path (0700): the sandbox uid must traverse to the run dir.
    root = Path(tempfile.mkdtemp(prefix="agentloop-e2e-", dir="/tmp"))
    root.chmod(0o711)
    settings.SANDBOX_ROOT = root
    yield root
    _kill_leftovers(root)
    shutil.rmtree(root, ignore_errors=True)


def _kill_leftovers(root: Path) -> None:
    """A failed test must not leave sandboxes running into the next one."""
    from agentloop.sandboxes.local import LocalProvider

    for run_dir in root.iterdir() if root.exists() else []:
        try:
            LocalProvider().cleanup(SandboxHandle("local", run_dir.name, _handle_data(run_dir)))
        except Exception:
            pass


def _handle_data(run_dir: Path) -> dict:
    import json

    try:
        supervisor = json.loads((run_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        return {"dir": str(run_dir)}
    return {
        "dir": str(run_dir),
        "supervisor_pid": supervisor.get("pid"),
        "supervisor_start": supervisor.get("start_time"),
    }


def wait_for(predicate, seconds: float = 120.0, interval: float = 0.2) -> bool:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if _holds(predicate):
            return True
        time.sleep(interval)
    return _holds(predicate)


def _holds(predicate) -> bool:
    try:
        return bool(predicate())
    except OperationalError:
        # SQLite's shared-cache test database answers "table is locked" (not
        # a busy wait) while the server thread writes: just look again.
        return False


def run_now(run: Run) -> Run:
    return Run.objects.get(pk=run.pk)


def wait_for_status(run: Run, statuses, seconds: float = 120.0) -> Run:
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)
    assert wait_for(lambda: run_now(run).status in statuses, seconds), (
        f"run {run.code} still {run_now(run).status}, wanted {sorted(statuses)}; "
        f"runner log:\n{runner_log(run)}"
    )
    return run_now(run)


def runner_log(run: Run) -> str:
    from agentloop.sandboxes.local import LocalProvider

    run = run_now(run)
    if not run.sandbox:
        return "(no sandbox recorded)"
    return LocalProvider().read_log(SandboxHandle.from_json(run.sandbox))[-4000:]


def runner_pid(run: Run) -> int | None:
    """The host pid of the runner process (`python3 -m agentloop.runner`) in the run's sandbox."""
    import json

    run = run_now(run)
    handle = SandboxHandle.from_json(run.sandbox)
    try:
        sandbox = json.loads((Path(handle.data["dir"]) / "sandbox.json").read_text())
    except (OSError, ValueError):
        return None
    for pid in descendants(sandbox["bwrap_pid"]):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agentloop.runner" in argv:
            return pid
    return None
