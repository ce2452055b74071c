"""The `agentloop` CLI as a CI job runs it: a real process against a live web process.

What a user sees (its output, its exit status) and what the server stored are
checked; the server is daphne in a subprocess (tests/cli_support.py) so one
test can restart it while a transcript is followed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agentloop.automations.models import Automation
from agentloop.presets.models import AgentPreset
from agentloop.runs import lifecycle
from agentloop.runs.models import Artifact, EventKind, EventSource, Run, RunStatus
from agentloop.signal.models import SignalIssue
from agentloop.skills.models import Skill
from agentloop.teams.models import PersonalToken
from tests.cli_support import ROOT, cli_command, cli_env, run_cli
from tests.e2e_support import needs_bwrap
from tests.span_factory import make_span

pytest_plugins = ["tests.cli_support", "tests.e2e_support"]  # web, sandbox_root

pytestmark = [pytest.mark.slow]


@pytest.fixture
def token(alice):
    _, raw = PersonalToken.mint(alice, "ci")
    return raw


@pytest.fixture
def env(web, token, tmp_path):
    return cli_env(web.url, token, tmp_path)


def running_run(project, alice, events: int = 0) -> Run:
    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "model": "m"},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
        creator=alice,
    )
    for n in range(1, events + 1):
        run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": f"line {n}"})
    return run


class Follower:
    """`agentloop follow ID --output json` in the background, its lines read as they come."""

    def __init__(self, env: dict, code, *extra: str):
        self.process = subprocess.Popen(
            cli_command("follow", str(code), "--output", "json", *extra),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[dict] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(json.loads(line))
                self.changed.notify_all()

    def wait_for(self, predicate, seconds: float = 60) -> bool:
        # A real process: waited on with a deadline, woken by each line it prints.
        give_up = time.monotonic() + seconds
        with self.changed:
            while not predicate(self.lines):
                left = give_up - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def seqs(self) -> list[int]:
        return [line["seq"] for line in self.lines if "seq" in line]

    def finish(self, seconds: float = 60) -> tuple[int, str]:
        code = self.process.wait(timeout=seconds)
        self.reader.join(timeout=10)
        return code, self.process.stderr.read()


def test_sessions_list_show_and_events_print_what_is_stored(env, project, alice):
    run = running_run(project, alice, events=2)
    listed = run_cli(env, "sessions", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [str(run.code)]
    for trigger, expected in (("manual", [str(run.code)]), ("cron", [])):
        filtered = run_cli(env, "sessions", "list", "--trigger", trigger, "-o", "json")
        assert [r["id"] for r in json.loads(filtered.stdout)] == expected, filtered.stderr

    table = run_cli(env, "sessions", "list", "--columns", "id,status,project.name")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["id", "status", "project.name"]
    assert row.split() == [str(run.code), "running", "support-bot"]
    assert header.index("status") == row.index("running")  # aligned columns

    events = run_cli(env, "sessions", "events", str(run.code), "--after", "1", "-o", "json")
    assert [e["payload"]["text"] for e in json.loads(events.stdout)["data"]] == ["line 2"]


def test_sessions_list_loads_no_more_than_it_needs(env, project, alice):
    """What start-up costs (docs/benchmarks.md, "The CLI"): a list, as a table
    or JSON, imports neither rich nor the TUI, nor httpx's own command line
    (click, pygments)."""
    running_run(project, alice)
    for output in ("json", "table"):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "agentloop.cli.main"]
            + ["sessions", "list", "-o", output],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
        assert {"httpx", "httpcore", "agentloop.cli.client"} <= imported
        top = {name.split(".")[0] for name in imported}
        assert not top & {"rich", "textual", "click", "pygments"}, (output, top)


def test_a_followed_run_exits_with_its_outcome(env, project, alice):
    run = running_run(project, alice, events=1)
    follower = Follower(env, run.code)
    assert follower.wait_for(lambda lines: len(lines) >= 1), follower.lines
    lifecycle.move(run, RunStatus.FAILED, exit_reason="The harness crashed.")
    code, stderr = follower.finish()
    assert code == 1, stderr
    assert follower.seqs() == [1, 2]  # its message, then the status event of the failure
    assert follower.lines[-1]["end"] == {
        "status": "failed",
        "exit_reason": "The harness crashed.",
        "last_seq": 2,
    }


def test_follow_across_a_restart_of_the_web_process_loses_and_repeats_nothing(
    web, env, project, alice
):
    run = running_run(project, alice, events=3)
    follower = Follower(env, run.code)
    assert follower.wait_for(lambda lines: len(lines) >= 3), follower.lines
    web.stop()
    # Written while no web process runs: the follower must get them after the restart.
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "line 4"})
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "line 5"})
    web.start()
    assert follower.wait_for(lambda lines: len(lines) >= 5), follower.lines
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "line 6"})
    run.refresh_from_db()
    lifecycle.move(run, RunStatus.SUCCEEDED)
    code, stderr = follower.finish()
    assert code == 0, stderr
    run.refresh_from_db()
    assert follower.seqs() == list(range(1, run.next_seq + 1)) == list(range(1, 8))
    texts = [line["payload"].get("text") for line in follower.lines if "seq" in line]
    assert texts[:6] == [f"line {n}" for n in range(1, 7)]
    assert "reconnecting after seq 3" in stderr


def test_a_bad_or_revoked_token_gets_a_clear_error(web, tmp_path, alice, project):
    run = running_run(project, alice, events=1)
    bogus = run_cli(cli_env(web.url, "al_pt_not-a-token", tmp_path), "sessions", "list")
    assert bogus.returncode == 2
    assert "The server refused the token: Unknown, expired or revoked token." in bogus.stderr
    assert bogus.stdout == ""

    token, raw = PersonalToken.mint(alice, "to revoke")
    env = cli_env(web.url, raw, tmp_path)
    assert run_cli(env, "sessions", "list").returncode == 0
    token.revoke()
    for args in (["sessions", "list"], ["follow", str(run.code)]):
        refused = run_cli(env, *args)
        assert refused.returncode == 2, refused.stdout
        assert "The server refused the token" in refused.stderr
        assert "Settings → API tokens" in refused.stderr

    nothing = run_cli(
        {k: v for k, v in env.items() if k not in ("AGENTLOOP_URL", "AGENTLOOP_TOKEN")},
        "sessions",
        "list",
    )
    assert nothing.returncode == 2 and "No server configured" in nothing.stderr


def test_a_context_file_holds_the_server_and_the_token_comes_from_stdin(web, token, tmp_path):
    env = cli_env(web.url, token, tmp_path, AGENTLOOP_CONFIG=str(tmp_path / "contexts.toml"))
    del env["AGENTLOOP_URL"], env["AGENTLOOP_TOKEN"]
    added = run_cli(env, "context", "add", "local", "--url", web.url, stdin=token + "\n")
    assert added.returncode == 0, added.stderr
    assert oct((tmp_path / "contexts.toml").stat().st_mode & 0o777) == "0o600"
    assert token not in " ".join(cli_command("context", "add", "local", "--url", web.url))
    shown = run_cli(env, "context", "show", "-o", "json")
    assert json.loads(shown.stdout) == {"name": "local", "url": web.url, "token": "…" + token[-4:]}
    assert run_cli(env, "sessions", "list").returncode == 0


def test_presets_and_skills_with_secrets_from_the_environment_a_file_and_stdin(
    env, space, tmp_path
):
    created = run_cli(
        env, "presets", "create", "--space", str(space.pk), "--name", "triage",
        "--harness", "analyst", "--max-turns", "5", "-o", "json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    preset = AgentPreset.objects.get(space=space, name="triage")
    assert preset.max_turns == 5 and json.loads(created.stdout)["id"] == preset.pk
    copy = run_cli(env, "presets", "duplicate", str(preset.pk), "-o", "json")
    assert json.loads(copy.stdout)["name"] == "Copy of triage"
    bad = run_cli(env, "presets", "update", str(preset.pk), "--max-turns", "0")
    assert bad.returncode == 2 and "max_turns" in bad.stderr

    secret_file = tmp_path / "token.txt"
    secret_file.write_text("from-a-file-123\n")
    made = run_cli(
        {**env, "MY_API_KEY": "from-the-env-456"},
        "skills", "create", "--space", str(space.pk), "--kind", "custom", "--name", "tools",
        "--set", "repo_url=https://example.com/tools.git", "--set", "ref=main",
        "--secret-env", "env.API_KEY=MY_API_KEY",
        "--secret-file", f"env.FILE_KEY={secret_file}",
        "--secret-stdin", "env.PIPED_KEY", "-o", "json",
        stdin="from-stdin-789\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    skill = Skill.objects.get(space=space, name="tools")
    assert skill.secrets() == {
        "env.API_KEY": "from-the-env-456",
        "env.FILE_KEY": "from-a-file-123",
        "env.PIPED_KEY": "from-stdin-789",
    }
    for value in ("from-the-env-456", "from-a-file-123", "from-stdin-789"):
        assert value not in made.stdout
    listed = run_cli(env, "skills", "list")
    assert "tools" in listed.stdout and "from-the-env" not in listed.stdout


def test_a_refused_trigger_says_why_and_a_member_reviews(env, project, alice, space):
    preset = AgentPreset.objects.create(space=space, name="p", harness="analyst")
    automation = Automation.objects.create(
        space=space, project=project, preset=preset, name="nightly", prompt="Look.",
        cron_expression="0 3 * * *", enabled=False, paused_reason="Paused by alice.",
        created_by=alice,
    )  # fmt: skip
    refused = run_cli(env, "automations", "trigger", str(automation.pk))
    assert refused.returncode == 2
    assert "Not started. Paused by alice." in refused.stderr
    assert not automation.fires.exists()

    run = running_run(project, alice)
    artifact = Artifact.objects.create(run=run, key="a", kind="file", name="notes.md", content="x")
    queue = run_cli(env, "review", "list", "-o", "json")
    assert [a["id"] for a in json.loads(queue.stdout)] == [artifact.pk]
    approved = run_cli(env, "review", "approve", str(artifact.pk), "--comment", "fine")
    assert approved.returncode == 0 and "notes.md: approved" in approved.stdout
    artifact.refresh_from_db()
    assert (artifact.review_state, artifact.review_comment) == ("approved", "fine")
    again = run_cli(env, "review", "reject", str(artifact.pk))
    assert again.returncode == 2 and "already approved" in again.stderr


def test_signal_commands(env, project):
    SignalIssue.objects.create(project=project, key="k", title="refunds time out", severity="high")
    assert "refunds time out" in run_cli(env, "signal", "issues", str(project.pk)).stdout
    enabled = run_cli(env, "signal", "enable", str(project.pk))
    assert enabled.returncode == 0 and "Signal is on for support-bot" in enabled.stdout
    projects = json.loads(run_cli(env, "signal", "projects", "-o", "json").stdout)
    assert [(p["project"]["name"], p["enabled"], p["open_issues"]) for p in projects] == [
        ("support-bot", True, 1)
    ]
    issue = SignalIssue.objects.get()
    shown = json.loads(
        run_cli(env, "signal", "show", str(project.pk), str(issue.pk), "-o", "json").stdout
    )
    assert shown["severity"] == "high"


@needs_bwrap
def test_an_analyst_session_started_with_follow_ends_and_exits_zero(
    tmp_path, token, project, alice, sandbox_root, transactional_db
):
    from tests.cli_support import WebProcess

    web = WebProcess(tmp_path / "var", {"AGENTLOOP_SANDBOX_ROOT": str(sandbox_root)})
    web.start()
    try:
        now = timezone.now()
        for i in range(6):
            make_span(
                project, name="refund-tool", kind="TOOL", status="ERROR",
                start=now - timedelta(minutes=30 + i),
                attributes={"exception.type": "TimeoutError"},
            )  # fmt: skip
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"sandbox": "local", "time_limit_seconds": 300}))
        started = run_cli(
            cli_env(web.url, token, tmp_path),
            "sessions", "start", "--project", str(project.pk), "--harness", "analyst",
            "--config", str(config), "--follow", "Why do refunds fail?",
            timeout=300,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        run = Run.objects.get()
        assert run.status == RunStatus.SUCCEEDED
        assert f"Session {run.code} succeeded" in started.stdout
        assert "refund-tool" in started.stdout  # the analyst's findings, as they came
        assert [e.seq for e in run.events.order_by("seq")] == list(range(1, run.next_seq + 1))
    finally:
        web.stop()
        os.environ.pop("AGENTLOOP_SANDBOX_ROOT", None)
