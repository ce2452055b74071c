"""What the harnesses that drive an agent CLI share: one process per turn, JSON lines out.

Standard library only: this runs inside the sandbox with the system python3.

A CliHarness subclass says how to call its CLI for a turn (`command`, `cli_env`)
and reads its output with a LineParser (`parser`): one JSON object per line,
turned into runner events as it arrives. The process runs in its own process
group, so stop() reaches the tools it spawned too (SIGTERM, then SIGKILL after
a grace period). The session id the CLI reports is kept for the next turn.

The CLIs are found, in this order, at the spec's `cli_path` (tests), the
environment's AGENTLOOP_<NAME>_PATH, $AGENTLOOP_HARNESS_CLI_DIR/node_modules/.bin
(the folder `make harness-cli` installs and the local sandbox binds read-only
at /opt/harness-cli), or on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path

from agentloop.runner.harnesses.base import EventSink, Harness, TurnResult

STOP_GRACE_SECONDS = 5.0
STDERR_TAIL_LINES = 40
MAX_EVENT_TEXT = 64_000
CLI_DIR_ENV = "AGENTLOOP_HARNESS_CLI_DIR"

# Credentials of the providers that must never reach a CLI from the sandbox's
# own environment: a real key would bypass the gateway (and its budget).
PROVIDER_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CODEX_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
)


def clip(text: str) -> str:
    if len(text) <= MAX_EVENT_TEXT:
        return text
    return text[:MAX_EVENT_TEXT] + f"\n[… {len(text) - MAX_EVENT_TEXT} more characters cut]"


class LineParser:
    """Reads one CLI's JSON lines into runner events; subclasses handle each event."""

    cli_name = "the CLI"

    def __init__(self, sink: EventSink):
        self.sink = sink
        self.session_id: str | None = None
        self.usage: dict = {}
        self.error: str | None = None  # why the turn failed, when the CLI said so
        self.finished = False  # the CLI reported the end of its turn

    def feed(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError:
            if line.startswith(("{", "[")):
                self.sink.emit(
                    "error", {"message": f"unreadable {self.cli_name} output: {line[:500]}"}
                )
            return  # a plain line (a banner, a warning): not an event
        self.event(event)

    def event(self, event: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """The output ended: emit what was still gathered."""

    def add_usage(self, input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0) -> None:
        for key, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cost_usd", cost_usd),
        ):
            if value:
                self.usage[key] = round(self.usage.get(key, 0) + value, 6)

    def turn_result(self, exit_code: int, stderr: str) -> TurnResult:
        if self.error:
            return TurnResult(
                ok=False, session_id=self.session_id, usage=self.usage, error=self.error
            )
        if exit_code != 0 or not self.finished:
            tail = stderr.strip()[-2000:] or "no output on stderr"
            return TurnResult(
                ok=False,
                session_id=self.session_id,
                usage=self.usage,
                error=f"{self.cli_name} exited with code {exit_code} before its turn ended: {tail}",
            )
        return TurnResult(ok=True, session_id=self.session_id, usage=self.usage)


class CliHarness(Harness):
    name = ""
    cli = ""  # the executable's name
    path_env = ""  # AGENTLOOP_<NAME>_PATH
    interactive = True

    def __init__(self, spec: dict, workspace: Path, env: dict[str, str], sink: EventSink):
        super().__init__(spec, workspace, env, sink)
        self.session_id: str | None = spec.get("harness_session_id") or None
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._stop_requested = False
        self.last_command: list[str] = []
        self.last_pid: int | None = None

    # -- for subclasses -------------------------------------------------------
    def command(self, prompt: str) -> list[str]:
        raise NotImplementedError

    def parser(self) -> LineParser:
        raise NotImplementedError

    def stdin_text(self, prompt: str) -> str | None:
        """What to write to the CLI's stdin (None: nothing, stdin closed)."""
        return None

    def provider_env(self, env: dict[str, str], token: str) -> None:
        """Point the CLI at the gateway with the run token as its key."""

    # -- the interface ----------------------------------------------------------
    def run_turn(self, prompt: str) -> TurnResult:
        try:
            command = self.command(prompt)
        except FileNotFoundError as exc:
            return TurnResult(ok=False, session_id=self.session_id, error=str(exc))
        parser = self.parser()
        stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        stdin_text = self.stdin_text(prompt)
        with self._lock:
            if self._stop_requested:
                return TurnResult(
                    ok=False, session_id=self.session_id, stopped=True, error="stopped"
                )
            self.last_command = command
            self._process = process = subprocess.Popen(
                command,
                cwd=self.workspace,
                env=self.cli_env(),
                stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self.last_pid = process.pid
        stderr_reader = threading.Thread(
            target=_collect_lines, args=(process.stderr, stderr_tail), daemon=True
        )
        stderr_reader.start()
        if stdin_text is not None:
            threading.Thread(
                target=_write_stdin, args=(process.stdin, stdin_text), daemon=True
            ).start()
        try:
            for raw in process.stdout:
                parser.feed(raw.decode("utf-8", errors="replace"))
                if parser.session_id:
                    self.session_id = parser.session_id
            parser.close()
            exit_code = process.wait()
        finally:
            _kill_group(process.pid, signal.SIGKILL)  # tools left running by the turn
            stderr_reader.join(timeout=STOP_GRACE_SECONDS)
            with self._lock:
                self._process = None
        if self._stop_requested:
            return TurnResult(
                ok=False,
                session_id=self.session_id,
                usage=parser.usage,
                stopped=True,
                error="stopped",
            )
        result = parser.turn_result(exit_code, "".join(stderr_tail))
        result.session_id = result.session_id or self.session_id
        return result

    def stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            process = self._process
        if process is None or process.poll() is not None:
            return
        _kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid, signal.SIGKILL)

    # -- finding and calling the CLI --------------------------------------------------
    def _env(self, name: str) -> str:
        return self.env.get(name) or os.environ.get(name) or ""

    def cli_path(self) -> str:
        path = self.spec.get("cli_path") or self._env(self.path_env)
        if not path and self._env(CLI_DIR_ENV):
            candidate = Path(self._env(CLI_DIR_ENV)) / "node_modules" / ".bin" / self.cli
            path = str(candidate) if candidate.exists() else ""
        path = path or shutil.which(self.cli, path=self._env("PATH")) or ""
        if not path or not os.access(path, os.X_OK):
            raise FileNotFoundError(
                f"The {self.cli} CLI was not found: run `make harness-cli` (it installs it "
                f"into ${CLI_DIR_ENV}/node_modules/.bin), set {self.path_env}, "
                f"or put `{self.cli}` on PATH"
            )
        return path

    def cli_env(self) -> dict[str, str]:
        env = dict(self.env)
        for name in PROVIDER_ENV:
            env.pop(name, None)
        env.setdefault("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        env.setdefault("HOME", os.environ.get("HOME", str(self.workspace)))
        # node is in /usr/bin; the CLIs' own launchers find their packages by path.
        token = env.get("AGENTLOOP_RUN_TOKEN") or os.environ.get("AGENTLOOP_RUN_TOKEN") or ""
        self.provider_env(env, token)
        return env

    @property
    def model(self) -> str:
        return self.spec.get("model") or ""

    @property
    def gateway_url(self) -> str:
        return (self.spec.get("llm_base_url") or "").rstrip("/")


def _write_stdin(stdin, text: str) -> None:
    try:
        stdin.write(text.encode("utf-8"))
        stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the CLI died early; its exit code and stderr tell why


def _collect_lines(stream, tail: deque) -> None:
    for raw in stream:
        tail.append(raw.decode("utf-8", errors="replace"))


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
