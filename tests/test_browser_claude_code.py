"""Continuing a finished Claude Code session, in a real browser (issue 15, point 1).

Alice starts a Claude Code session from the Studio form; the real Claude Code
CLI runs in a real bubblewrap sandbox and talks to the scripted fake Anthropic
server through the LLM gateway. It answers and waits; she stops it. On the
ended session page she sends a follow-up: the same run is launched again in a
new sandbox, the runner puts back the CLI's record of the session the server
kept (`harness_state`), and the CLI is called with `--resume <the first
session's id>`, so the model sees the first turn as the conversation itself,
not as a retold history. The second answer appears under the first, without a
reload.

Skipped without bubblewrap, Chromium or the CLI.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from agentloop.runs.models import Run, RunStatus
from agentloop.runs.reconciler import reconcile
from tests.e2e_support import runner_log
from tests.fake_anthropic import text
from tests.test_browser import mark_loaded, not_reloaded
from tests.test_claude_code_harness import CLAUDE

pytest_plugins = ["tests.browser_support", "tests.gateway_server"]  # browsing; gateway

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CLAUDE is None,
        reason="Claude Code CLI not found (install claude-agent-sdk or AGENTLOOP_CLAUDE_PATH)",
    ),
]

LIVE = 120_000  # ms: a sandbox starts and the real CLI boots, twice
FIRST = "The checkout-llm span fails most: 12 errors in the last hour."
SECOND = "Still the same session: it was checkout-llm, 12 errors."
QUESTION = "Which span was it again, and how many errors?"


def test_a_finished_claude_code_session_continues_with_resume_in_the_browser(
    browsing, gateway, upstream_model, take_screenshot, project, alice
):
    upstream_model.script([text(FIRST), text(SECOND)])
    page = browsing.logged_in(alice)
    page.goto("/studio/sessions/new/")
    page.get_by_label("Project").select_option(label="Acme / support-bot")
    page.get_by_label("Preset").select_option(label="None — choose below")
    page.get_by_label("Harness").select_option("claude-code")
    page.get_by_label("Sandbox provider").select_option("local")
    page.get_by_label("Task").fill("What fails in checkout?")
    page.get_by_role("button", name="Start session").click()
    expect(page).to_have_url(re.compile(r"/studio/sessions/[0-9a-f-]{36}/$"))
    mark_loaded(page)
    run = Run.objects.get(prompt="What fails in checkout?")

    # The first turn: the answer arrives live and the session waits for her.
    transcript = page.locator("#transcript")
    expect(transcript.locator(".tx-from-agent", has_text=FIRST)).to_be_visible(timeout=LIVE)
    expect(page.locator("#run-status")).to_have_text("Waiting for you", timeout=LIVE)
    run.refresh_from_db()
    first_session = run.harness_session_id
    assert first_session, run.exit_reason
    assert f"--session-id {first_session}" in runner_log(run)
    assert run.harness_state, "the runner posted no record of the CLI session"
    assert first_session in run.harness_state

    # She stops it: it ends, and the box offers to continue it.
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#run-status")).to_have_text("Cancelled", timeout=LIVE)
    expect(page.locator("#run-controls")).to_have_attribute("data-controls", "ended")

    # A follow-up on the ended session continues it in a new sandbox.
    page.locator("#followup-text").fill(QUESTION)
    page.get_by_role("button", name="Continue").click()
    expect(transcript.locator(".tx-from-agent", has_text=SECOND)).to_be_visible(timeout=LIVE)
    expect(page.locator("#run-status")).to_have_text("Waiting for you", timeout=LIVE)
    assert not_reloaded(page)

    # One transcript: the task, the first answer, the question, the second answer.
    said = transcript.locator(".tx-from-user, .tx-from-agent")
    texts = [t for t in said.all_inner_texts() if t.strip()]
    order = [
        next(i for i, t in enumerate(texts) if needle in t)
        for needle in ("What fails in checkout?", FIRST, QUESTION, SECOND)
    ]
    assert order == sorted(order), texts
    take_screenshot(page, "studio-session-claude-code-continued")

    # The CLI resumed the first session: same id, called with --resume, and the
    # model got the first turn as messages (no retold-history preamble).
    run.refresh_from_db()
    log = runner_log(run)
    assert f"--resume {first_session}" in log, log
    assert "--session-id" not in log, log
    assert run.harness_session_id == first_session
    last = upstream_model.main_requests()[-1]
    sent = json.dumps(last["messages"])
    assert "What fails in checkout?" in sent and FIRST in sent and QUESTION in sent
    assert "This continues an earlier conversation" not in sent
    assert len(last["messages"]) >= 3  # user, assistant, user: a real conversation

    # Done: stop it and let the reconciler tear the sandbox down.
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#run-status")).to_have_text("Cancelled", timeout=LIVE)
    reconcile()
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.sandbox_cleaned_at is not None
