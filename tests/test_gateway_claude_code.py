"""The real Claude Code CLI through the gateway (daphne), the fake Anthropic server upstream.

The harness runs the CLI as in a sandbox (uid 1000 when the tests run as root,
see tests/test_claude_code_harness.py), with ANTHROPIC_BASE_URL = the gateway
and the run token as its API key. Skipped without the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from agentloop.runner.harnesses.claude_code import ClaudeCodeHarness
from agentloop.runs.models import RunStatus
from agentloop.traces.models import Span
from tests.fake_anthropic import text, tool_use
from tests.test_claude_code_harness import CLAUDE, SANDBOX_UID
from tests.test_claude_code_parse import ListSink
from tests.test_gateway import make_run, run_spans

pytest_plugins = ["tests.gateway_server"]  # asgi_server, upstream_model, gateway, real_key
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def claude_as_sandbox_user(tmp_path_factory) -> str:
    if CLAUDE is None:
        pytest.skip("Claude Code CLI not found (install claude-agent-sdk or AGENTLOOP_CLAUDE_PATH)")
    if os.geteuid() != 0:
        return CLAUDE
    if not shutil.which("setpriv"):
        pytest.skip("running as root and setpriv is missing: cannot run Claude Code as a user")
    wrapper = tmp_path_factory.mktemp("claude-wrapper") / "claude-as-sandbox-user"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec setpriv --reuid={SANDBOX_UID} --regid={SANDBOX_UID} --clear-groups "
        f'{CLAUDE} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def harness_for(gateway, claude_as_sandbox_user):
    root = Path(tempfile.mkdtemp(prefix="agentloop-gateway-cli-"))
    workspace, home = root / "workspace", root / "home"
    workspace.mkdir()
    home.mkdir()
    if os.geteuid() == 0:
        for path in (root, workspace, home):
            os.chown(path, SANDBOX_UID, SANDBOX_UID)

    def make(token: str) -> ClaudeCodeHarness:
        spec = {"llm_base_url": gateway, "claude_path": claude_as_sandbox_user, "max_turns": 5}
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "AGENTLOOP_RUN_TOKEN": token,
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        return ClaudeCodeHarness(spec, workspace, env, ListSink())

    yield make
    shutil.rmtree(root, ignore_errors=True)


def test_a_claude_code_turn_through_the_gateway_is_recorded_in_the_runs_trace(
    harness_for, upstream_model, project, real_key
):
    run, token = make_run(project)
    upstream_model.script(
        [
            tool_use("Bash", {"command": "env > env.txt"}, say="Checking my environment."),
            text("Done."),
        ]
    )
    harness = harness_for(token)

    turn = harness.run_turn("Write your environment into env.txt")

    assert turn.ok, turn.error
    # From inside: the CLI's environment holds the run token, never the real key.
    env = (harness.workspace / "env.txt").read_text()
    assert f"ANTHROPIC_API_KEY={token}" in env
    assert real_key not in env
    assert "ANTHROPIC_BASE_URL=" + harness.spec["llm_base_url"] in env

    # Upstream: every call came through the gateway with the real key.
    calls = [r for r in upstream_model.requests if r["path"].startswith("/v1/messages")]
    assert len(upstream_model.main_requests()) == 2
    for seen in calls:
        headers = {name.lower(): value for name, value in seen["headers"].items()}
        assert headers["x-api-key"] == real_key
        assert token not in json.dumps(headers)
        assert headers["anthropic-version"] == "2023-06-01"

    # The run's trace: one LLM span per model call, under the run's root.
    spans = list(run_spans(run).order_by("start_time"))
    assert len(spans) == len([r for r in calls if r["path"].split("?")[0] == "/v1/messages"])
    agent_loop = [s for s in spans if s.attributes.get("llm.tools.count")]
    assert len(agent_loop) == 2
    assert all(s.status_code == "OK" for s in spans)
    assert agent_loop[0].attributes["output.value"].startswith("Checking my environment.")
    assert agent_loop[1].attributes["output.value"] == "Done."
    assert '"tool_result"' in agent_loop[1].attributes["input.value"]
    assert agent_loop[0].session_id == harness.session_id
    stored = json.dumps([s.attributes for s in Span.objects.all()])
    assert token not in stored and real_key not in stored

    run.refresh_from_db()
    assert run.input_tokens == sum(s.prompt_tokens for s in spans) > 0
    assert run.output_tokens == sum(s.completion_tokens for s in spans) > 0
    assert run.status == RunStatus.RUNNING


def test_a_claude_code_run_past_its_budget_is_stopped_with_a_clear_error(
    harness_for, upstream_model, project
):
    # One call of the fake costs 19 tokens: the first crosses the budget.
    run, token = make_run(project, config={"token_budget": 10})
    upstream_model.script(
        [tool_use("Bash", {"command": "echo one > one.txt"}), text("never reached")]
    )
    harness = harness_for(token)

    turn = harness.run_turn("Write one into one.txt")

    assert not turn.ok
    assert "budget" in turn.error, turn.error
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.exit_reason == "budget"
    assert len(upstream_model.main_requests()) == 1  # the second call never left the gateway
    assert (harness.workspace / "one.txt").read_text() == "one\n"
