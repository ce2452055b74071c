"""The real Codex, OpenCode and Gemini CLIs in real bubblewrap sandboxes, through the real stack.

As tests/test_e2e_claude_code.py does for Claude Code: start_session → local
sandbox under the runner-only network → the runner and the CLI reach daphne
(this process) through the bridge; the CLI calls the LLM gateway with the run
token, the gateway calls the scripted provider server of its API with the
real key (tests/fake_openai.py for Codex's Responses and OpenCode's Chat
Completions, tests/fake_gemini.py for Gemini). Per harness: streamed text, a
shell tool call and its result, a follow-up that resumes the same session, a
stop that ends a turn the model is still answering, and a budget that ends
the run. The CLIs come from `make harness-cli` (settings.HARNESS_CLI_DIR);
skipped without them or without bubblewrap.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from agentloop.runs import actions
from agentloop.runs.models import TERMINAL, Artifact, RunStatus
from tests.e2e_support import needs_bwrap, runner_log, wait_for, wait_for_status
from tests.fake_anthropic import held, text, tool_use
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeOpenAI

pytest_plugins = ["tests.gateway_server", "tests.e2e_support"]
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), needs_bwrap]

OPENAI_KEY = "sk-proj-real-openai-upstream-key-42"
GEMINI_KEY = "AIza-real-gemini-upstream-key-42"
COMMAND = "id -u > artifacts/whoami.txt; env > artifacts/env.txt; echo done"


def cli_installed(name: str) -> bool:
    return (Path(django_settings.HARNESS_CLI_DIR) / "node_modules" / ".bin" / name).exists()


# harness → (provider, the CLI's shell tool and its input, model)
HARNESSES = {
    "codex": ("openai", "exec_command", {"cmd": COMMAND}, "gpt-5-codex"),
    "opencode": ("openai", "bash", {"command": COMMAND, "description": "Look around"}, "gpt-5"),
    "gemini": ("gemini", "run_shell_command", {"command": COMMAND}, "gemini-2.5-flash"),
}
PARAMS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            not cli_installed(name), reason=f"{name} CLI not installed: make harness-cli"
        ),
    )  # fmt: skip
    for name in HARNESSES
]


@pytest.fixture(scope="module")
def openai_upstream():
    server = FakeOpenAI().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gemini_upstream():
    server = FakeGemini().start()
    yield server
    server.close()


@pytest.fixture
def served(settings, sandbox_root, asgi_server, served_db, openai_upstream, gemini_upstream):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    settings.AGENTLOOP_OPENAI_UPSTREAM_URL = openai_upstream.url
    settings.AGENTLOOP_OPENAI_API_KEY = OPENAI_KEY
    settings.AGENTLOOP_GEMINI_UPSTREAM_URL = gemini_upstream.url
    settings.AGENTLOOP_GEMINI_API_KEY = GEMINI_KEY
    return {"openai": (openai_upstream, OPENAI_KEY), "gemini": (gemini_upstream, GEMINI_KEY)}


def said(run, text_: str) -> bool:
    return run.events.filter(source="agent", kind="message", payload__text=text_).exists()


def upstream_keys(upstream, provider: str) -> set[str]:
    keys = set()
    for request in upstream.requests:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        keys.add(
            headers.get("authorization", "").removeprefix("Bearer ")
            or headers.get("x-goog-api-key", "")
        )
    return keys


@pytest.mark.parametrize("harness", PARAMS)
def test_a_session_runs_a_tool_resumes_and_stops_mid_turn(served, harness, project, alice):
    provider, tool, tool_input, model = HARNESSES[harness]
    upstream, real_key = served[provider]
    stuck = held(text("This answer never arrives."))
    upstream.script(
        [
            tool_use(tool, tool_input, say="Let me look around."),
            text("I looked: uid 1000."),
            text("Same session: I still remember uid 1000."),
            stuck,
        ]
    )
    config = {"harness": harness, "model": model, "sandbox": "local", "time_limit_seconds": 300}

    run = actions.start_session(alice, project, config, "Who are you in there?")

    # -- the first turn: streamed text, a tool call and its result ---------------------
    assert wait_for(lambda: said(run, "I looked: uid 1000."), 180), runner_log(run)
    run = wait_for_status(run, [RunStatus.WAITING, *TERMINAL])
    assert run.status == RunStatus.WAITING, (run.exit_reason, runner_log(run))
    session_id = run.harness_session_id
    assert session_id

    events = list(run.events.order_by("seq"))
    agent = [(e.kind, e.payload) for e in events if e.source == "agent"]
    kinds = [kind for kind, _ in agent]
    call, result = kinds.index("tool_call"), kinds.index("tool_result")
    first_text = kinds.index("message")
    assert first_text < call < result < len(kinds) - 1, kinds
    assert agent[first_text][1]["text"] == "Let me look around."
    assert COMMAND in json.dumps(agent[call][1]["input"])
    assert agent[result][1]["tool_call_id"] == agent[call][1]["id"]
    assert agent[result][1]["output"].strip().endswith("done")
    assert agent[result][1]["is_error"] is False
    assert [p["text"] for k, p in agent if k == "message"][-1] == "I looked: uid 1000."

    # The tool ran as uid 1000 in the sandbox, whose environment holds no provider key.
    assert wait_for(lambda: Artifact.objects.filter(run=run, name="env.txt").exists(), 30)
    assert Artifact.objects.get(run=run, name="whoami.txt").content.strip() == "1000"
    env = Artifact.objects.get(run=run, name="env.txt").content
    assert real_key not in env
    assert OPENAI_KEY not in env and GEMINI_KEY not in env
    assert "sk-ant-" not in env

    # Every model call went through the gateway, which sent the real key only.
    assert len(upstream.main_requests()) == 2
    assert upstream_keys(upstream, provider) == {real_key}
    run.refresh_from_db()
    assert run.input_tokens > 0 and run.output_tokens > 0  # counted by the gateway

    # -- a follow-up resumes the same session -------------------------------------------
    actions.send_followup(alice, run, "Do you remember?")
    answer = "Same session: I still remember uid 1000."
    assert wait_for(lambda: said(run, answer), 150), runner_log(run)
    run = wait_for_status(run, [RunStatus.WAITING, *TERMINAL])
    assert run.status == RunStatus.WAITING, (run.exit_reason, runner_log(run))
    assert run.harness_session_id == session_id
    followup = json.dumps(upstream.main_requests()[2])
    assert "Who are you in there?" in followup  # the first prompt
    assert "I looked: uid 1000." in followup  # the first answer
    assert "Do you remember?" in followup

    # -- stop ends a turn whose model call is still open --------------------------------
    actions.send_followup(alice, run, "One more thing.")
    assert stuck.arrived.wait(150), runner_log(run)
    assert actions.cancel(alice, run) is True
    run = wait_for_status(run, TERMINAL, 60)
    stuck.release.set()
    assert run.status == RunStatus.CANCELLED, (run.exit_reason, runner_log(run))
    assert not said(run, "This answer never arrives.")
    last = run.events.order_by("-seq").first()
    assert last.kind == "status" and last.payload["state"] == "cancelled"
    stored = json.dumps([e.payload for e in run.events.all()])
    assert real_key not in stored


@pytest.mark.parametrize("harness", PARAMS)
def test_a_run_past_its_token_budget_is_ended_by_the_gateway(served, harness, project, alice):
    provider, tool, tool_input, model = HARNESSES[harness]
    upstream, _ = served[provider]
    # One call of the fake costs 19 tokens: the first crosses the budget.
    upstream.script([tool_use(tool, tool_input, say="On it."), text("never reached")])
    config = {"harness": harness, "model": model, "sandbox": "local", "token_budget": 10}

    run = actions.start_session(alice, project, config, "Look around.")

    run = wait_for_status(run, TERMINAL, 180)
    assert run.status == RunStatus.FAILED, (run.exit_reason, runner_log(run))
    assert run.exit_reason == "budget"
    assert run.input_tokens + run.output_tokens == 19
    # The call that crossed it was the only one to leave the gateway.
    assert [r["method"] for r in upstream.requests] == ["POST"], upstream.requests
