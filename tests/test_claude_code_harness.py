"""The claude-code harness driving the real Claude Code CLI against a scripted fake model.

The CLI tests need the CLI (bundled with the claude-agent-sdk package, or
AGENTLOOP_CLAUDE_PATH) and are skipped without it. The CLI refuses
--dangerously-skip-permissions as root, so when the tests run as root the CLI
runs as uid 1000 (as in a sandbox) through a setpriv wrapper, with a workspace
and HOME that user owns.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from agentloop.runner.harnesses.claude_code import ClaudeCodeHarness
from agentloop.runner.harnesses.registry import get_harness
from tests.fake_anthropic import FakeAnthropic, error, held, text, tool_use
from tests.test_claude_code_parse import ListSink

pytestmark = pytest.mark.slow

SANDBOX_UID = 1000
RUN_TOKEN = "al_sk_test_run_token"


def find_claude() -> str | None:
    path = os.environ.get("AGENTLOOP_CLAUDE_PATH")
    if not path:
        try:
            import claude_agent_sdk

            bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
            path = str(bundled) if bundled.exists() else None
        except ImportError:
            path = None
    path = path or shutil.which("claude")
    return path if path and os.access(path, os.X_OK) else None


CLAUDE = find_claude()


@pytest.fixture(scope="session")
def fake_model():
    server = FakeAnthropic().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def claude_command(tmp_path_factory) -> str:
    if CLAUDE is None:
        pytest.skip(
            "Claude Code CLI not found (install claude-agent-sdk or set AGENTLOOP_CLAUDE_PATH)"
        )
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
def sandbox_dirs():
    """A workspace and a HOME the CLI's user owns (pytest's tmp dirs are root-only)."""
    root = Path(tempfile.mkdtemp(prefix="agentloop-claude-test-"))
    (root / "workspace").mkdir()
    (root / "home").mkdir()
    if os.geteuid() == 0:
        for path in (root, root / "workspace", root / "home"):
            os.chown(path, SANDBOX_UID, SANDBOX_UID)
    yield root / "workspace", root / "home"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_harness(fake_model, claude_command, sandbox_dirs):
    workspace, home = sandbox_dirs

    def make(**spec_overrides) -> ClaudeCodeHarness:
        spec = {
            "llm_base_url": fake_model.url,
            "claude_path": claude_command,
            "max_turns": 5,
            **spec_overrides,
        }
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "AGENTLOOP_RUN_TOKEN": RUN_TOKEN,
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        return ClaudeCodeHarness(spec, workspace, env, ListSink())

    return make


def tool_results_sent(request: dict) -> list[dict]:
    return [
        block
        for message in request["messages"]
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def texts_sent(request: dict) -> str:
    parts = []
    for message in request["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [block.get("text", "") for block in content if block.get("type") == "text"]
    return "\n".join(parts)


def test_a_turn_where_the_model_runs_bash_writes_the_file_and_reports_each_step(
    fake_model, make_harness
):
    call = tool_use("Bash", {"command": "echo hello > proof.txt"}, say="Writing the file.")
    fake_model.script([call, text("Done: proof.txt holds hello.")])
    harness = make_harness()

    turn = harness.run_turn("Write hello into proof.txt")

    assert turn.ok, turn.error
    assert (harness.workspace / "proof.txt").read_text() == "hello\n"
    sink = harness.sink
    agent_kinds = [kind for kind in sink.kinds() if kind != "status"]
    assert agent_kinds == ["message", "tool_call", "tool_result", "message"]
    assert sink.of("message")[0]["text"] == "Writing the file."
    tool_id = call.blocks[-1]["id"]
    assert sink.of("tool_call")[0] == {
        "id": tool_id,
        "name": "Bash",
        "input": {"command": "echo hello > proof.txt"},
    }
    assert sink.of("tool_result")[0]["tool_call_id"] == tool_id
    assert sink.of("tool_result")[0]["is_error"] is False
    assert sink.of("message")[-1]["text"] == "Done: proof.txt holds hello."
    # The tool's result went back to the model, authenticated with the run token.
    first, second = fake_model.main_requests()
    assert [r["tool_use_id"] for r in tool_results_sent(second)] == [tool_id]
    assert {r["headers"].get("x-api-key") for r in fake_model.requests} == {RUN_TOKEN}
    assert turn.session_id == harness.session_id
    assert "--session-id" in harness.last_command
    assert turn.usage["output_tokens"] > 0
    assert fake_model.unexpected == []


def test_a_followup_turn_resumes_the_same_session(fake_model, make_harness):
    harness = make_harness()
    fake_model.script([text("The answer is 42.")])
    first = harness.run_turn("What is the answer?")
    assert first.ok, first.error

    fake_model.script([text("I said 42.")])
    second = harness.run_turn("What did you say?")

    assert second.ok, second.error
    assert second.session_id == first.session_id
    resume_at = harness.last_command.index("--resume")
    assert harness.last_command[resume_at + 1] == first.session_id
    [request] = fake_model.main_requests()
    conversation = texts_sent(request)
    assert "What is the answer?" in conversation
    assert "The answer is 42." in conversation
    assert "What did you say?" in conversation
    assert harness.sink.of("message")[-1]["text"] == "I said 42."


def test_stop_during_a_slow_turn_ends_it_and_leaves_no_process(fake_model, make_harness):
    slow = held(text("too late"))
    fake_model.script([slow])
    harness = make_harness()
    outcome = {}
    turn_thread = threading.Thread(
        target=lambda: outcome.update(turn=harness.run_turn("Take your time")), daemon=True
    )
    turn_thread.start()

    assert slow.arrived.wait(30), "the CLI never called the model"
    harness.stop()
    turn_thread.join(30)

    assert not turn_thread.is_alive()
    turn = outcome["turn"]
    assert turn.ok is False
    assert turn.stopped is True
    with pytest.raises(ProcessLookupError):
        os.killpg(harness.last_pid, 0)  # nothing left in the CLI's process group
    assert "too late" not in [m["text"] for m in harness.sink.of("message")]
    slow.release.set()


def test_an_upstream_error_fails_the_turn_with_a_clear_reason(fake_model, make_harness):
    fake_model.script([error(529, "Overloaded", "overloaded_error")])
    harness = make_harness()

    turn = harness.run_turn("hello")

    assert turn.ok is False
    assert turn.stopped is False
    assert "529" in turn.error
    assert "Overloaded" in turn.error


def test_with_allowed_tools_a_tool_outside_the_list_is_refused(fake_model, make_harness):
    call = tool_use("Bash", {"command": "echo sneaky > sneaky.txt"})
    fake_model.script([call, text("I was not allowed.")])
    harness = make_harness(allowed_tools=["Read", "Grep"])

    turn = harness.run_turn("Try to write a file")

    assert turn.ok, turn.error
    assert not (harness.workspace / "sneaky.txt").exists()
    [result] = harness.sink.of("tool_result")
    assert result["is_error"] is True
    assert "Permission to use Bash has been denied" in result["output"]
    assert "--dangerously-skip-permissions" not in harness.last_command


def test_the_spec_model_and_system_prompt_reach_the_model(fake_model, make_harness):
    fake_model.script([text("Aye.")])
    harness = make_harness(model="claude-fake-model", system_prompt="Answer like a pirate.")

    turn = harness.run_turn("-- a prompt that looks like an option")

    assert turn.ok, turn.error
    [request] = fake_model.main_requests()
    assert request["model"] == "claude-fake-model"
    system = request["system"]
    system_text = system if isinstance(system, str) else " ".join(b["text"] for b in system)
    assert "Answer like a pirate." in system_text
    assert "-- a prompt that looks like an option" in texts_sent(request)


def test_a_missing_cli_fails_the_turn_with_a_clear_reason(tmp_path):
    harness = ClaudeCodeHarness(
        {"claude_path": str(tmp_path / "no-such-claude")}, tmp_path, {"PATH": ""}, ListSink()
    )

    turn = harness.run_turn("hello")

    assert turn.ok is False
    assert "Claude Code CLI not found" in turn.error


def test_stop_while_a_tool_runs_kills_the_tool_too(fake_model, make_harness):
    harness = make_harness()
    started = harness.workspace / "tool-started"
    os.mkfifo(started)
    if os.geteuid() == 0:
        os.chown(started, SANDBOX_UID, SANDBOX_UID)
    # The tool reports its pid through the FIFO, then would run for ten minutes.
    fake_model.script([tool_use("Bash", {"command": "echo $$ > tool-started; exec sleep 600"})])
    outcome = {}
    turn_thread = threading.Thread(
        target=lambda: outcome.update(turn=harness.run_turn("Run the long job")), daemon=True
    )
    turn_thread.start()

    tool_pid = read_fifo_line(started, timeout=30)
    harness.stop()
    turn_thread.join(30)

    assert outcome["turn"].stopped is True
    assert not process_alive(tool_pid)
    with pytest.raises(ProcessLookupError):
        os.killpg(harness.last_pid, 0)


def read_fifo_line(path: Path, timeout: float) -> int:
    """Block until a writer sends a line, without polling; fail after timeout."""
    lines = []
    reader = threading.Thread(target=lambda: lines.append(path.read_text()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        path.write_text("0\n")  # unblock the reader thread before failing
        pytest.fail("the tool never started")
    return int(lines[0].strip())


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie is dead, only not yet reaped


# -- without the CLI: how the call is built ----------------------------------


def offline_harness(tmp_path, spec=None, env=None) -> ClaudeCodeHarness:
    executable = tmp_path / "claude"
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(0o755)
    spec = {
        "claude_path": str(executable),
        "llm_base_url": "http://gateway:8000/llm",
        **(spec or {}),
    }
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AGENTLOOP_RUN_TOKEN": RUN_TOKEN,
        **(env or {}),
    }
    return ClaudeCodeHarness(spec, tmp_path, env, ListSink())


def test_the_registry_names_this_harness_claude_code():
    assert get_harness("claude-code") is ClaudeCodeHarness


def test_the_first_call_fixes_a_session_and_carries_the_spec(tmp_path):
    harness = offline_harness(
        tmp_path, {"max_turns": 12, "model": "claude-x", "system_prompt": "Be brief."}
    )

    command = harness.command()

    assert command[1:5] == ["-p", "--output-format", "stream-json", "--verbose"]
    assert command[command.index("--session-id") + 1] == harness.session_id
    assert command[command.index("--max-turns") + 1] == "12"
    assert command[command.index("--model") + 1] == "claude-x"
    assert command[command.index("--append-system-prompt") + 1] == "Be brief."
    assert "--dangerously-skip-permissions" in command
    assert "--resume" not in command


def test_a_recorded_session_is_resumed_from_the_first_call(tmp_path):
    sessions = tmp_path / ".claude" / "projects" / "-workspace"
    sessions.mkdir(parents=True)
    (sessions / "abc-123.jsonl").write_text("{}\n")  # the CLI's record, still in HOME
    harness = offline_harness(tmp_path, {"harness_session_id": "abc-123"})

    command = harness.command()

    assert command[command.index("--resume") + 1] == "abc-123"
    assert "--session-id" not in command


def test_a_saved_session_record_is_put_back_and_resumed_in_a_new_home(tmp_path):
    """A continued run in a new sandbox: the record the server kept goes where the
    CLI looks for this workspace's sessions, and the turn resumes the session."""
    old_home, new_home = tmp_path / "old", tmp_path / "new"
    old_home.mkdir()
    first = offline_harness(tmp_path, {}, {"HOME": str(old_home)})
    first.session_id = "abc-123"
    assert first.saved_state() is None  # no record yet
    folder = old_home / ".claude" / "projects" / "-the-workspace"
    folder.mkdir(parents=True)
    (folder / "abc-123.jsonl").write_text('{"sessionId":"abc-123"}\n')
    saved = first.saved_state()
    assert saved == '{"sessionId":"abc-123"}\n'

    spec = {"harness_session_id": "abc-123", "continued": True, "harness_state": saved}
    harness = offline_harness(tmp_path, spec, {"HOME": str(new_home)})
    project = re.sub(r"[^a-zA-Z0-9]", "-", str(tmp_path.resolve()))
    restored = new_home / ".claude" / "projects" / project / "abc-123.jsonl"
    assert restored.read_text() == saved
    harness.run_turn("And since when?")
    assert harness.last_command[harness.last_command.index("--resume") + 1] == "abc-123"


def test_a_session_whose_record_is_gone_starts_anew_with_the_conversation_first(tmp_path):
    """A continued run in a new sandbox: the old HOME went with the old sandbox."""
    history = [
        {"role": "user", "text": "Why do refunds fail?"},
        {"role": "assistant", "text": "The refund tool times out."},
    ]
    harness = offline_harness(
        tmp_path, {"harness_session_id": "abc-123", "continued": True, "history": history}
    )
    stdin = tmp_path / "stdin.txt"
    (tmp_path / "claude").write_text(f"#!/bin/sh\ncat > {stdin}\nexit 0\n")

    harness.run_turn("And since when?")

    command = harness.last_command
    assert "--resume" not in command
    assert command[command.index("--session-id") + 1] != "abc-123"
    sent = stdin.read_text()
    assert sent.index("Why do refunds fail?") < sent.index("The refund tool times out.")
    assert sent.endswith("The user now says:\nAnd since when?")
    harness.run_turn("Thanks")  # the conversation is told once, not every turn
    assert stdin.read_text() == "Thanks"


def test_the_cli_talks_to_the_gateway_with_the_run_token_and_no_other_credential(tmp_path):
    harness = offline_harness(
        tmp_path,
        env={"ANTHROPIC_API_KEY": "sk-ant-real-key", "ANTHROPIC_AUTH_TOKEN": "oauth", "FOO": "bar"},
    )

    env = harness.cli_env()

    assert env["ANTHROPIC_BASE_URL"] == "http://gateway:8000/llm"
    assert env["ANTHROPIC_API_KEY"] == RUN_TOKEN
    assert "ANTHROPIC_AUTH_TOKEN" not in env
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["DISABLE_TELEMETRY"] == "1"
    assert env["DISABLE_AUTOUPDATER"] == "1"
    assert env["HOME"] == str(tmp_path)
    assert env["FOO"] == "bar"


def test_the_spec_cli_path_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTLOOP_CLAUDE_PATH", "/nowhere/claude")
    harness = offline_harness(tmp_path, env={"AGENTLOOP_CLAUDE_PATH": "/nowhere/either"})

    assert harness.cli_path() == str(tmp_path / "claude")


def test_after_stop_no_turn_starts(tmp_path):
    harness = offline_harness(tmp_path)
    harness.stop()

    turn = harness.run_turn("hello")

    assert turn.stopped is True
    assert turn.ok is False
    assert harness.last_pid is None
