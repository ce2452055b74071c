"""The runner's main loop against the in-process double: no Django, no sleeps to wait."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agentloop.runner.client import RunnerClient
from agentloop.runner.events import EventQueue
from agentloop.runner.harnesses.base import Harness, TurnResult
from agentloop.runner.harnesses.registry import get_harness
from agentloop.runner.loop import Runner
from tests.blocking_harness import BlockingHarness
from tests.runner_double import WINDOW, RunnerDouble, synthetic_spans

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


def make_runner(double, tmp_path, harness_class=None, **kwargs) -> Runner:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "AGENTLOOP_URL": double.url,
        "AGENTLOOP_RUN_TOKEN": double.token,
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
    }
    client = RunnerClient(double.url, double.token, sleep=lambda s: None, log=lambda m: None)
    events = EventQueue(client, instance_id="test", max_delay=0.01, log=lambda m: None)
    factory = (lambda name: harness_class) if harness_class else get_harness
    return Runner(
        client,
        env,
        tmp_path / "work",
        harness_factory=factory,
        events=events,
        heartbeat_interval=kwargs.pop("heartbeat_interval", 60),
        inbox_wait=1,
        log=lambda m: None,
        **kwargs,
    )


def run_in_thread(runner) -> tuple[threading.Thread, dict]:
    """The runner on a daemon thread: one that hangs fails its test's join, not the suite."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("code", runner.run()), daemon=True)
    thread.start()
    return thread, outcome


def states(double) -> list[str]:
    return [s["state"] for s in double.statuses]


# -- the analyst end to end ------------------------------------------------------------------


def test_an_analyst_run_goes_from_spec_to_succeeded_with_its_artifacts(tmp_path):
    with RunnerDouble(
        spec={"harness": "analyst", "window": WINDOW}, spans=synthetic_spans()
    ) as double:
        runner = make_runner(double, tmp_path)

        code = runner.run()

    assert code == 0
    assert states(double) == ["running", "succeeded"]
    assert "exit_reason" not in double.statuses[-1]
    kinds = [e["kind"] for e in double.events]
    assert kinds[0] == "message"
    assert kinds.count("tool_call") == kinds.count("tool_result") >= 5
    uploaded = {a["name"]: a for a in double.artifacts.values()}
    assert set(uploaded) == {"investigation.md", "signal-issues.json"}
    assert uploaded["investigation.md"]["kind"] == "investigation"
    assert uploaded["signal-issues.json"]["kind"] == "file"
    assert (
        uploaded["investigation.md"]["content"]
        == (tmp_path / "work/artifacts/investigation.md").read_text()
    )
    artifact_events = [e["payload"] for e in double.events if e["kind"] == "artifact"]
    assert sorted((p["name"], p["kind"]) for p in artifact_events) == [
        ("investigation.md", "investigation"),
        ("signal-issues.json", "file"),
    ]
    assert {p["artifact_id"] for p in artifact_events} == {a["id"] for a in uploaded.values()}
    # Every event was delivered before the final status, and exactly once.
    assert len(double.event_keys) == len(double.events)
    assert double.requests_to("POST", "/status")[-1] is double.requests[-1]


def test_the_workspace_gets_the_traces_cli_and_the_skill(tmp_path):
    with RunnerDouble(spec={"harness": "analyst", "window": WINDOW}) as double:
        runner = make_runner(double, tmp_path)
        runner.run()

    home = tmp_path / "home"
    launcher = home / "bin" / "agentloop-traces"
    assert os.access(launcher, os.X_OK)
    assert "-m agentloop.runner.traces_cli" in launcher.read_text()
    skill = (home / ".claude/skills/agentloop-traces/SKILL.md").read_text()
    assert skill.startswith("---\nname: agentloop-traces\ndescription: ")
    assert "agentloop-traces spans --status ERROR --since 24h" in skill
    config = json.loads((home / ".config/agentloop/traces.json").read_text())
    assert config["project_id"] == "7"
    assert "token" not in config  # the secret stays in the environment
    assert (tmp_path / "work" / "artifacts").is_dir()


# -- an interactive harness -----------------------------------------------------------------


class ChattyHarness(Harness):
    """Answers the first prompt, then blocks in the follow-up's turn until stopped."""

    name = "chatty"
    interactive = True
    instances: list[ChattyHarness] = []

    def __init__(self, *args):
        super().__init__(*args)
        self.prompts: list[str] = []
        self.stop_calls = 0
        self.in_second_turn = threading.Event()
        self._stop = threading.Event()
        ChattyHarness.instances.append(self)

    def run_turn(self, prompt):
        self.prompts.append(prompt)
        notes = self.workspace / "artifacts" / "notes.md"
        self.sink.emit(
            "message",
            {"role": "assistant", "text": f"on it: {prompt}", "message_id": str(len(self.prompts))},
        )
        if len(self.prompts) == 1:
            notes.write_text("first draft\n")
            (self.workspace / "artifacts" / "fixed.txt").write_text("never changes\n")
            return TurnResult(
                ok=True,
                session_id="sess-1",
                usage={"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.01},
            )
        notes.write_text("second draft\n")
        self.in_second_turn.set()
        self._stop.wait(30)
        return TurnResult(
            ok=False,
            stopped=True,
            session_id="sess-1",
            usage={"input_tokens": 3, "output_tokens": 1, "cost_usd": 0.002},
        )

    def stop(self):
        self.stop_calls += 1
        self._stop.set()


def test_a_follow_up_starts_a_turn_and_a_stop_mid_turn_cancels_the_run(tmp_path):
    ChattyHarness.instances.clear()
    with RunnerDouble(spec={"harness": "chatty", "prompt": "look at errors"}) as double:
        thread, outcome = run_in_thread(make_runner(double, tmp_path, ChattyHarness))
        assert double.wait_for(lambda: double.status == "waiting")
        waiting = double.statuses[-1]

        double.add_followup("now the slow spans")
        harness = ChattyHarness.instances[0]
        assert harness.in_second_turn.wait(10)
        double.request_stop()
        thread.join(10)

    assert outcome["code"] == 0
    assert harness.prompts == ["look at errors", "now the slow spans"]
    assert harness.stop_calls == 1
    assert states(double) == ["running", "waiting", "running", "cancelled"]
    assert waiting["harness_session_id"] == "sess-1"
    assert waiting["usage"] == {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.01}
    final = double.statuses[-1]
    assert final["exit_reason"] == "stopped by user"
    assert final["usage"] == {"input_tokens": 13, "output_tokens": 6, "cost_usd": 0.012}
    # A changed file is uploaded again, an unchanged one is not.
    names = [a["name"] for a in double.artifacts.values()]
    assert sorted(names) == ["fixed.txt", "notes.md", "notes.md"]
    assert {a["content"] for a in double.artifacts.values() if a["name"] == "notes.md"} == {
        "first draft\n",
        "second draft\n",
    }
    texts = [e["payload"]["text"] for e in double.events if e["kind"] == "message"]
    assert texts == ["on it: look at errors", "on it: now the slow spans"]


def test_a_stop_while_waiting_cancels_without_a_turn(tmp_path):
    ChattyHarness.instances.clear()
    with RunnerDouble(spec={"harness": "chatty"}) as double:
        thread, outcome = run_in_thread(make_runner(double, tmp_path, ChattyHarness))
        assert double.wait_for(lambda: double.status == "waiting")
        double.request_stop()
        thread.join(10)

    assert outcome["code"] == 0
    assert states(double) == ["running", "waiting", "cancelled"]
    assert ChattyHarness.instances[0].stop_calls == 0  # no turn was running


def test_a_stop_in_the_heartbeat_answer_stops_the_turn(tmp_path):
    with RunnerDouble(spec={"harness": "blocking"}) as double:
        runner = make_runner(double, tmp_path, BlockingHarness, heartbeat_interval=0.05)
        # Only the heartbeat can tell: the inbox never reports the stop here.
        runner._poll_inbox = lambda: None
        thread, outcome = run_in_thread(runner)
        assert double.wait_for(lambda: any(e["kind"] == "message" for e in double.events))
        double.request_stop()
        thread.join(10)

    assert outcome["code"] == 0
    assert states(double) == ["running", "cancelled"]
    # The partial work of a stopped turn is kept.
    assert [a["name"] for a in double.artifacts.values()] == ["notes.txt"]


def test_the_time_limit_fails_the_run(tmp_path):
    with RunnerDouble(spec={"harness": "blocking", "time_limit_seconds": 0.2}) as double:
        code = make_runner(double, tmp_path, BlockingHarness).run()

    assert code == 0
    assert states(double) == ["running", "failed"]
    assert double.statuses[-1]["exit_reason"] == "time limit of 0.2 s reached"


class FailingHarness(Harness):
    name = "failing"
    interactive = True

    def run_turn(self, prompt):
        return TurnResult(ok=False, error="claude exited with status 1: invalid API key")


class CrashingHarness(Harness):
    name = "crashing"

    def run_turn(self, prompt):
        raise RuntimeError("boom")


def test_a_failed_turn_fails_the_run_with_its_reason(tmp_path):
    with RunnerDouble(spec={"harness": "failing"}) as double:
        code = make_runner(double, tmp_path, FailingHarness).run()

    assert code == 0
    assert states(double) == ["running", "failed"]
    assert double.statuses[-1]["exit_reason"] == "claude exited with status 1: invalid API key"


def test_a_crashing_harness_fails_the_run_and_says_why(tmp_path):
    with RunnerDouble(spec={"harness": "crashing"}) as double:
        code = make_runner(double, tmp_path, CrashingHarness).run()

    assert code == 0
    assert states(double) == ["running", "failed"]
    assert double.statuses[-1]["exit_reason"] == "harness crashing crashed: RuntimeError('boom')"
    errors = [e for e in double.events if e["kind"] == "error"]
    assert errors[0]["source"] == "agent"  # the server's to say: a runner posts as the agent
    assert "RuntimeError('boom')" in errors[0]["payload"]["message"]


def test_an_unknown_harness_fails_the_run(tmp_path):
    with RunnerDouble(spec={"harness": "gpt-pilot"}) as double:
        code = make_runner(double, tmp_path).run()

    assert code == 0
    assert states(double) == ["running", "failed"]
    assert double.statuses[-1]["exit_reason"] == (
        "unknown harness 'gpt-pilot' (known: analyst, claude-code, codex, gemini, opencode)"
    )


def test_a_run_the_server_will_not_start_exits_non_zero(tmp_path):
    with RunnerDouble(spec={"harness": "analyst"}) as double:
        double.status = "cancelled"
        code = make_runner(double, tmp_path).run()

    assert code == 1
    assert double.statuses == []


class LockThatRingsWhileHeld:
    """The runner's lock, calling `ring` once while it is held by its first holder.

    A signal handler runs in the main thread between two bytecodes, so it can
    run while the main thread is inside `with runner._lock:` (at turn start).
    Calling the handler from inside that critical section makes that
    interleaving certain instead of lucky.
    """

    def __init__(self, ring):
        self._lock = threading.Lock()
        self._ring = ring
        self.rang = False

    def __enter__(self):
        self._lock.acquire()
        if not self.rang:
            self.rang = True
            self._ring()
        return self

    def __exit__(self, *exc_info):
        self._lock.release()


def test_a_signal_while_the_turn_start_holds_the_lock_cancels_without_a_deadlock(tmp_path):
    with RunnerDouble(spec={"harness": "blocking"}) as double:
        runner = make_runner(double, tmp_path, BlockingHarness)
        runner._lock = LockThatRingsWhileHeld(lambda: runner.on_signal(signal.SIGTERM, None))
        thread, outcome = run_in_thread(runner)
        thread.join(10)
        assert not thread.is_alive(), "the runner deadlocked in its signal handler"

    assert runner._lock.rang
    assert outcome["code"] == 0
    assert states(double) == ["running", "cancelled"]
    assert double.statuses[-1]["exit_reason"] == "runner terminated by a signal"


def test_a_signal_mid_turn_stops_the_harness_and_cancels_the_run(tmp_path):
    with RunnerDouble(spec={"harness": "blocking"}) as double:
        runner = make_runner(double, tmp_path, BlockingHarness)
        thread, outcome = run_in_thread(runner)
        assert double.wait_for(lambda: any(e["kind"] == "message" for e in double.events))
        runner.on_signal(signal.SIGTERM, None)  # what the installed SIGTERM handler does
        thread.join(10)

    assert not thread.is_alive()
    assert outcome["code"] == 0
    assert states(double) == ["running", "cancelled"]
    assert double.statuses[-1]["exit_reason"] == "runner terminated by a signal"
    # The partial work of the stopped turn is kept.
    assert [a["name"] for a in double.artifacts.values()] == ["notes.txt"]


# -- as a real process, with the system python and nothing but the standard library ----------


def runner_env(double, tmp_path) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "AGENTLOOP_URL": double.url,
        "AGENTLOOP_RUN_TOKEN": double.token,
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
    }


@pytest.mark.slow
def test_the_runner_runs_as_a_subprocess_of_the_system_python(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with RunnerDouble(
        spec={"harness": "analyst", "window": WINDOW}, spans=synthetic_spans()
    ) as double:
        done = subprocess.run(
            [SYSTEM_PYTHON, "-m", "agentloop.runner"],
            cwd=work,
            env=runner_env(double, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        # The CLI the runner installed works from the agent's shell too.
        cli = subprocess.run(
            [
                str(tmp_path / "home/bin/agentloop-traces"),
                "spans",
                "--status",
                "ERROR",
                "--name",
                "ChatOpenAI",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
            env={**runner_env(double, tmp_path), "PYTHONPATH": "", "AGENTLOOP_PROJECT_ID": ""},
        )

    assert done.returncode == 0, done.stderr
    assert states(double) == ["running", "succeeded"]
    assert {a["name"] for a in double.artifacts.values()} >= {
        "investigation.md",
        "signal-issues.json",
    }
    assert (
        "agentloop-traces spans --status ERROR --name search_inventory"
        in (work / "artifacts/investigation.md").read_text()
    )
    assert cli.returncode == 0, cli.stderr
    lines = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [s["trace_id"][:4] for s in lines] == ["ab07", "ab06"]


@pytest.mark.slow
def test_sigterm_to_the_runner_process_reports_cancelled_and_exits(tmp_path):
    # A real runner process with a harness that blocks until stopped, registered
    # the way a new harness would be.
    script = (
        "import sys\n"
        "from agentloop.runner.harnesses import registry\n"
        "registry.HARNESSES['blocking'] = 'tests.blocking_harness:BlockingHarness'\n"
        "from agentloop.runner.__main__ import main\n"
        "sys.exit(main())\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    with RunnerDouble(spec={"harness": "blocking"}) as double:
        process = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", script],
            cwd=work,
            env=runner_env(double, tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert double.wait_for(lambda: any(e["kind"] == "message" for e in double.events))
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()

    assert process.returncode == 0, stderr
    assert states(double) == ["running", "cancelled"]
    assert double.statuses[-1]["exit_reason"] == "runner terminated by a signal"
    assert [a["name"] for a in double.artifacts.values()] == ["notes.txt"]


def test_missing_environment_exits_2_with_a_message(tmp_path):
    done = subprocess.run(
        [SYSTEM_PYTHON, "-m", "agentloop.runner"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )

    assert done.returncode == 2
    assert "missing environment variable(s): AGENTLOOP_URL, AGENTLOOP_RUN_TOKEN" in done.stderr


def test_the_runner_package_imports_no_django():
    code = (
        "import sys, agentloop.runner.loop, agentloop.runner.traces_cli, "
        "agentloop.runner.harnesses.analyst, agentloop.runner.__main__; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('django', 'rest_framework')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_the_registry_loads_harnesses_by_name():
    from agentloop.runner.harnesses.analyst import AnalystHarness

    assert get_harness("analyst") is AnalystHarness
    assert get_harness("claude-code").__name__ == "ClaudeCodeHarness"
