"""A real run end to end: live server, local bubblewrap sandbox, the analyst harness.

The only test here that waits on real processes: it polls the database with a
deadline, because the runner lives in another process we do not control.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from agentloop.runs import actions
from agentloop.runs.models import Artifact, Run, RunStatus, ServiceKey
from agentloop.runs.reconciler import reconcile
from tests.span_factory import make_span

# asgi_server: daphne serving agentloop.asgi (the hot paths have no Django views)
pytest_plugins = ["tests.gateway_server"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.access("/usr/bin/bwrap", os.X_OK), reason="bubblewrap is not installed"
    ),
]


@pytest.fixture
def sandbox_root(settings):
    # Not pytest's tmp_path (0700): the sandbox uid must traverse to the run dir.
    root = Path(tempfile.mkdtemp(prefix="agentloop-e2e-", dir="/tmp"))
    root.chmod(0o711)
    settings.SANDBOX_ROOT = root
    yield root
    shutil.rmtree(root, ignore_errors=True)


def wait_for(predicate, seconds=120.0):
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if predicate():
            return True
        time.sleep(0.25)
    return False


def test_an_analyst_run_goes_from_start_to_cleaned_up(
    asgi_server, served_db, settings, sandbox_root, project, alice
):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    now = timezone.now()
    for i in range(6):
        make_span(
            project,
            name="refund-tool",
            kind="TOOL",
            status="ERROR",
            start=now - timedelta(minutes=30 + i),
            attributes={"exception.type": "TimeoutError"},
        )
    config = {"harness": "analyst", "sandbox": "local", "time_limit_seconds": 300}
    # Q_CLUSTER sync: the launch runs at commit, in this process.
    run = actions.start_session(alice, project, config, "Why do refunds fail?")

    assert wait_for(lambda: Run.objects.get(pk=run.pk).is_terminal), (
        f"run still {Run.objects.get(pk=run.pk).status}"
    )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.exit_reason

    events = list(run.events.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert (events[0].source, events[0].kind) == ("user", "message")
    states = [e.payload["state"] for e in events if e.kind == "status" and e.source == "system"]
    assert states[:2] == ["provisioning", "running"] and states[-1] == "succeeded"
    assert any(e.kind == "tool_call" for e in events)

    investigation = Artifact.objects.get(run=run, kind="investigation")
    assert "refund-tool" in investigation.content
    for token_hash in ServiceKey.objects.filter(run=run).values_list("key_hash", flat=True):
        assert token_hash not in investigation.content

    run_dir = sandbox_root / str(run.code)
    assert run_dir.exists()  # until the reconciler tears it down
    reconcile()
    run.refresh_from_db()
    assert run.sandbox_cleaned_at is not None
    assert not run_dir.exists()
    # Both keys (the runner's, the harness's) died when the run succeeded.
    assert ServiceKey.objects.filter(run=run).count() == 2
    assert not ServiceKey.objects.filter(run=run, revoked_at__isnull=True).exists()
