"""The terminal UI (`agentloop` with no command) in a real terminal: tmux.

tmux runs the TUI against a live web process; the test types with send-keys
and reads the screen with capture-pane, as a person at a terminal would:
the sessions list, a transcript that shows a new event as it is written, the
Signal issues, and q to quit.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time

import pytest

from agentloop.runs.models import EventKind, EventSource, Run, RunStatus
from agentloop.signal.models import SignalIssue
from agentloop.teams.models import PersonalToken
from tests.cli_support import ROOT, cli_command, cli_env

pytest_plugins = ["tests.cli_support"]  # web

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Terminal:
    def __init__(self, env: dict, command: list[str], name: str):
        self.socket = f"agentloop-test-{name}"
        self.env = {**env, "TERM": "xterm-256color"}
        line = " ".join(shlex.quote(part) for part in command)
        self._tmux(
            "new-session", "-d", "-s", "tui", "-x", "160", "-y", "45", f"cd {ROOT} && {line}"
        )

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
        )

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "tui", check=False).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "tui", *keys)

    def wait_for(self, text: str, seconds: float = 30) -> str:
        # A real terminal program: its screen is read until it shows the text, with a deadline.
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear; the screen:\n{self.screen()}")

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", "tui", check=False).returncode == 0

    def close(self) -> None:
        self._tmux("kill-server", check=False)


def test_the_tui_lists_sessions_follows_a_transcript_live_and_shows_signal_issues(
    web, project, alice, tmp_path
):
    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst"},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
        creator=alice,
    )
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "Reading the traces."})
    SignalIssue.objects.create(project=project, key="k", title="refund-tool times out")
    _, token = PersonalToken.mint(alice, "terminal")
    env = cli_env(web.url, token, tmp_path)
    terminal = Terminal(env, cli_command(), name=str(run.pk) + tmp_path.name[-6:])
    try:
        screen = terminal.wait_for(str(run.code)[:8])
        assert "Why do refunds fail?" in screen and "support-bot" in screen

        terminal.keys("Enter")
        terminal.wait_for("Reading the traces.")
        run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "Found the cause."})
        terminal.wait_for("Found the cause.")  # live: written after the transcript opened

        terminal.keys("i")
        screen = terminal.wait_for("refund-tool times out")
        assert "support-bot" in screen

        terminal.keys("q")
        give_up = time.monotonic() + 20
        while terminal.alive() and time.monotonic() < give_up:
            time.sleep(0.1)
        assert not terminal.alive()
    finally:
        terminal.close()
