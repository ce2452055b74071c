"""The real Claude Code CLI in a real bubblewrap sandbox, through the real stack.

start_session → launch (q2 sync: at commit) → local sandbox, runner-only
network → the runner reaches daphne (this process) through the bridge: runner
API, span API and the LLM gateway, which forwards to the scripted fake
Anthropic server with the real key. Then a follow-up resumes the same CLI
session, a stop ends it, and the reconciler tears everything down.

Skipped without bubblewrap or the CLI.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agentloop.runs import actions
from agentloop.runs.models import TERMINAL, Artifact, RunStatus, ServiceKey
from agentloop.runs.reconciler import reconcile
from tests.e2e_support import (
    needs_bwrap,
    runner_log,
    wait_for,
    wait_for_status,
)
from tests.fake_anthropic import text, tool_use
from tests.span_factory import make_span
from tests.test_claude_code_harness import CLAUDE

# asgi_server, upstream_model, gateway, real_key; sandbox_root
pytest_plugins = ["tests.gateway_server", "tests.e2e_support"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    needs_bwrap,
    pytest.mark.skipif(
        CLAUDE is None,
        reason="Claude Code CLI not found (install claude-agent-sdk or AGENTLOOP_CLAUDE_PATH)",
    ),
]

TOOL_COMMAND = (
    "id -u > artifacts/whoami.txt; pwd >> artifacts/whoami.txt; "
    "agentloop-traces spans --limit 1 > artifacts/seen.json; echo done"
)


def said(run, text: str) -> bool:
    return run.events.filter(source="agent", kind="message", payload__text=text).exists()


def transcript(run):
    return list(run.events.order_by("seq"))


def test_a_claude_code_session_runs_a_tool_in_the_sandbox_resumes_and_stops(
    settings, sandbox_root, gateway, asgi_server, upstream_model, real_key, project, alice
):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    make_span(
        project,
        name="checkout-llm",
        kind="LLM",
        status="ERROR",
        start=timezone.now() - timedelta(minutes=5),
    )
    upstream_model.script(
        [
            tool_use("Bash", {"command": TOOL_COMMAND}, say="Let me look at the spans."),
            text("I looked: one span, checkout-llm."),
            text("Still the same session: I remember checkout-llm."),
        ]
    )
    config = {"harness": "claude-code", "sandbox": "local", "time_limit_seconds": 300}

    run = actions.start_session(alice, project, config, "What fails in checkout?")

    # -- first turn: the tool runs inside the sandbox -----------------------------------
    # The runner posts "waiting" without flushing its events first: wait for both.
    assert wait_for(lambda: said(run, "I looked: one span, checkout-llm."), 120), runner_log(run)
    run = wait_for_status(run, [RunStatus.WAITING, *TERMINAL])
    assert run.status == RunStatus.WAITING, run.exit_reason
    session_id = run.harness_session_id
    assert session_id

    events = transcript(run)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.key for e in events}) == len(events)
    agent = [(e.kind, e.payload) for e in events if e.source == "agent"]
    kinds = [kind for kind, _ in agent]
    first_text = kinds.index("message")
    call = kinds.index("tool_call")
    result = kinds.index("tool_result")
    last_text = len(kinds) - 1 - kinds[::-1].index("message")
    assert first_text < call < result < last_text, kinds
    assert agent[first_text][1]["text"] == "Let me look at the spans."
    assert agent[call][1]["name"] == "Bash"
    assert agent[call][1]["input"]["command"] == TOOL_COMMAND
    assert agent[result][1]["tool_call_id"] == agent[call][1]["id"]
    assert agent[result][1]["output"].strip() == "done"
    assert agent[result][1]["is_error"] is False
    assert agent[last_text][1]["text"] == "I looked: one span, checkout-llm."

    # What the tool made, uploaded from artifacts/: uid 1000 in /workspace, and the
    # span API (through the bridge, with the run token) answered with our span.
    assert wait_for(lambda: Artifact.objects.filter(run=run).count() >= 2, 30)
    whoami = Artifact.objects.get(run=run, name="whoami.txt")
    assert whoami.content.split() == ["1000", "/workspace"]
    seen = json.loads(Artifact.objects.get(run=run, name="seen.json").content.splitlines()[0])
    assert seen["name"] == "checkout-llm" and seen["status_code"] == "ERROR"

    # The model was called through the gateway with the real key only.
    first_requests = upstream_model.main_requests()
    assert len(first_requests) == 2
    headers = [
        {k.lower(): v for k, v in r["headers"].items()}
        for r in upstream_model.requests
        if r["path"].startswith("/v1/messages")
    ]
    assert {h["x-api-key"] for h in headers} == {real_key}

    # -- a follow-up resumes the same session -------------------------------------------
    actions.send_followup(alice, run, "Do you remember what you found?")
    answer = "Still the same session: I remember checkout-llm."
    assert wait_for(lambda: said(run, answer), 90), runner_log(run)
    run = wait_for_status(run, [RunStatus.WAITING, *TERMINAL])
    assert run.status == RunStatus.WAITING, run.exit_reason
    assert run.harness_session_id == session_id

    followup_request = json.dumps(upstream_model.main_requests()[2]["messages"])
    assert "What fails in checkout?" in followup_request  # the first prompt
    assert TOOL_COMMAND.replace('"', '\\"') in followup_request  # the earlier tool call
    assert "I looked: one span, checkout-llm." in followup_request
    assert "Do you remember what you found?" in followup_request
    after = transcript(run)
    user_messages = [e.payload["text"] for e in after if e.source == "user" and e.kind == "message"]
    assert user_messages == ["What fails in checkout?", "Do you remember what you found?"]
    answers = [e.payload["text"] for e in after if e.source == "agent" and e.kind == "message"]
    assert answers[-1] == answer
    assert len(upstream_model.main_requests()) == 3

    # -- stop ends it ---------------------------------------------------------------------
    assert actions.cancel(alice, run) is True
    run = wait_for_status(run, TERMINAL, 60)
    assert run.status == RunStatus.CANCELLED, run.exit_reason
    events = transcript(run)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.key for e in events}) == len(events)
    assert events[-1].kind == "status" and events[-1].payload["state"] == "cancelled"
    stored = json.dumps([e.payload for e in events])
    assert real_key not in stored

    # -- the reconciler tears it down -----------------------------------------------------
    run_dir = sandbox_root / str(run.code)
    assert run_dir.exists()
    reconcile()
    run.refresh_from_db()
    assert run.sandbox_cleaned_at is not None
    assert not run_dir.exists()
    assert all(key.revoked_at is not None for key in ServiceKey.objects.filter(run=run))
