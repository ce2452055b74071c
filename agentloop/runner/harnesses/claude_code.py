"""The claude-code harness: drives the real Claude Code CLI, one process per user turn.

Standard library only: this runs inside the sandbox with the system python3.

Each turn runs `claude -p --output-format stream-json --verbose` in the
workspace with the prompt on stdin (no argv length limit, and a prompt that
starts with "-" is not taken for an option). The first turn fixes the session
id (`--session-id`), later turns continue it (`--resume`), so follow-ups see
the whole conversation.
The CLI talks to the agentloop LLM gateway (spec `llm_base_url`) with the
run token as its API key; real model keys never enter the sandbox.

The stream-json output is parsed line by line as it arrives (StreamJsonParser)
and turned into runner events; see docs/harnesses.md for the mapping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections import deque
from pathlib import Path

from agentloop.runner.harnesses.base import EventSink, Harness, TurnResult

# How long the CLI gets to exit after SIGTERM before the whole group is killed.
STOP_GRACE_SECONDS = 5.0
STDERR_TAIL_LINES = 40
# Text longer than this in one event is cut: a tool can print megabytes.
MAX_EVENT_TEXT = 64_000
# The session record the runner posts for a continued run (protocol's
# MAX_HARNESS_STATE_LENGTH is 4,000,000 characters; bytes ≥ characters).
MAX_SAVED_STATE = 3_500_000

# The CLI's environment: what we set, and what must never leak in from the
# sandbox's own environment (another credential would bypass the gateway).
CLI_ENV_DEFAULTS = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
CLI_ENV_REMOVED = (
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
)

FAILURE_REASONS = {
    "error_max_turns": "Claude Code stopped: it reached the turn limit (max_turns)",
    "error_max_budget_usd": "Claude Code stopped: it reached its budget",
    "error_during_execution": "Claude Code failed during execution",
}


class ClaudeCodeHarness(Harness):
    name = "claude-code"
    interactive = True

    def __init__(self, spec: dict, workspace: Path, env: dict[str, str], sink: EventSink):
        super().__init__(spec, workspace, env, sink)
        # A runner restarted mid-run may hand back the session it recorded.
        self.session_id: str | None = spec.get("harness_session_id") or None
        self._session_started = self.session_id is not None
        # The conversation so far, put before the first prompt when the CLI
        # cannot resume its session (a continued run in a new sandbox: the
        # session files stayed in the old one's HOME).
        self._preamble = ""
        if self._session_started and not self.session_file_exists():
            # The server kept the CLI's record from the last sandbox: put it back
            # where the CLI looks, and --resume goes on with the same session.
            self.restore_state(spec.get("harness_state") or "")
        if self._session_started and not self.session_file_exists():
            self._session_started, self.session_id = False, None
            self._preamble = history_preamble(spec.get("history") or [])
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._stop_requested = False
        # The last CLI call and its process id (= its process group), for tests and logs.
        self.last_command: list[str] = []
        self.last_pid: int | None = None

    # -- the interface -------------------------------------------------------
    def run_turn(self, prompt: str) -> TurnResult:
        try:
            command = self.command()
        except FileNotFoundError as exc:
            return TurnResult(ok=False, session_id=self.session_id, error=str(exc))
        parser = StreamJsonParser(self.sink)
        stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
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
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Its own process group, so stop() reaches the tools it spawned too.
                start_new_session=True,
            )
            self.last_pid = process.pid
        stderr_reader = threading.Thread(
            target=_collect_lines, args=(process.stderr, stderr_tail), daemon=True
        )
        stderr_reader.start()
        if self._preamble:
            prompt, self._preamble = self._preamble + prompt, ""
        threading.Thread(target=_write_prompt, args=(process.stdin, prompt), daemon=True).start()
        try:
            for raw in process.stdout:
                parser.feed(raw.decode("utf-8", errors="replace"))
                if parser.session_id:
                    self.session_id = parser.session_id
                    self._session_started = True
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
        return parser.turn_result(exit_code, "".join(stderr_tail), self.session_id)

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

    # -- building the call ---------------------------------------------------
    def command(self) -> list[str]:
        """The CLI call for the next turn; the prompt goes to its stdin."""
        spec = self.spec
        command = [self.cli_path(), "-p", "--output-format", "stream-json", "--verbose"]
        if self._session_started:
            command += ["--resume", self.session_id]
        else:
            self.session_id = self.session_id or str(uuid.uuid4())
            command += ["--session-id", self.session_id]
        if spec.get("max_turns"):
            command += ["--max-turns", str(int(spec["max_turns"]))]
        if spec.get("model"):
            command += ["--model", spec["model"]]
        if spec.get("system_prompt"):
            command += ["--append-system-prompt", spec["system_prompt"]]
        allowed = [tool for tool in spec.get("allowed_tools") or [] if tool]
        if allowed:
            # Only the listed tools run; anything else is denied, never prompted
            # for (nobody could answer a prompt in -p mode).
            command += ["--permission-mode", "dontAsk", "--allowedTools", ",".join(allowed)]
        else:
            # The sandbox is the boundary. The CLI refuses this flag as root;
            # sandboxes run it as uid 1000.
            command += ["--dangerously-skip-permissions"]
        return command

    def session_file(self) -> Path | None:
        """The CLI's record of the session in this HOME (~/.claude/projects/*/<id>.jsonl)."""
        if not self.session_id:
            return None
        home = Path(self.cli_env()["HOME"])
        return next((home / ".claude" / "projects").glob(f"*/{self.session_id}.jsonl"), None)

    def session_file_exists(self) -> bool:
        return self.session_file() is not None

    def saved_state(self) -> str | None:
        """The session's record as text, for the server to keep: a continued run
        starts in a new sandbox (a new HOME) and restores it. None when there is
        none or it is too long to post (the continued run then tells the history)."""
        path = self.session_file()
        if path is None:
            return None
        try:
            if path.stat().st_size > MAX_SAVED_STATE:
                return None
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def restore_state(self, state: str) -> None:
        """Write a saved record where the CLI looks for this workspace's sessions:
        ~/.claude/projects/<the workspace path, every other character a dash>/."""
        if not state or not self.session_id or "/" in self.session_id:
            return
        project = re.sub(r"[^a-zA-Z0-9]", "-", str(Path(self.workspace).resolve()))
        folder = Path(self.cli_env()["HOME"]) / ".claude" / "projects" / project
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{self.session_id}.jsonl").write_text(state, encoding="utf-8")
        except OSError:
            pass  # no record: the history preamble instead

    def cli_path(self) -> str:
        path = (
            self.spec.get("claude_path")
            or self.env.get("AGENTLOOP_CLAUDE_PATH")
            or os.environ.get("AGENTLOOP_CLAUDE_PATH")
            or shutil.which("claude", path=self.env.get("PATH") or os.environ.get("PATH"))
        )
        if not path or not os.access(path, os.X_OK):
            raise FileNotFoundError(
                "Claude Code CLI not found: set claude_path in the spec, "
                "AGENTLOOP_CLAUDE_PATH, or put `claude` on PATH"
            )
        return path

    def cli_env(self) -> dict[str, str]:
        env = dict(self.env)
        for name in CLI_ENV_REMOVED:
            env.pop(name, None)
        env.setdefault("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        env.setdefault("HOME", os.environ.get("HOME", str(self.workspace)))
        env.update(CLI_ENV_DEFAULTS)
        if self.spec.get("llm_base_url"):
            env["ANTHROPIC_BASE_URL"] = self.spec["llm_base_url"]
        token = env.get("AGENTLOOP_RUN_TOKEN")  # the harness key (agentloop.runner.credentials)
        if token:
            # The gateway knows the run by its key and adds the real model key itself.
            env["ANTHROPIC_API_KEY"] = token
        return env


def history_preamble(history: list[dict]) -> str:
    """The earlier conversation as text before a new session's first prompt."""
    if not history:
        return ""
    lines = ["This continues an earlier conversation of this session. It went:", ""]
    for message in history:
        who = "User" if message.get("role") == "user" else "You (the agent)"
        lines += [f"{who}:", str(message.get("text") or ""), ""]
    lines += ["The user now says:", ""]
    return "\n".join(lines)


class StreamJsonParser:
    """Turns Claude Code's stream-json lines into runner events, one line at a time."""

    def __init__(self, sink: EventSink):
        self.sink = sink
        self.session_id: str | None = None
        self.result: dict | None = None
        self._texts_by_message: dict[str, set[str]] = {}
        self._tool_calls_seen: set[str] = set()
        self._tool_results_seen: set[str] = set()

    def feed(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError:
            self.sink.emit("error", {"message": f"unreadable Claude Code output: {line[:500]}"})
            return
        kind = event.get("type")
        if event.get("session_id"):
            self.session_id = event["session_id"]
        if kind == "system":
            self._system(event)
        elif kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            self._user(event)
        elif kind == "result":
            self.result = event
        # Other kinds (stream_event, rate_limit_event, prompt_suggestion, ...) carry
        # nothing the transcript shows.

    def _system(self, event: dict) -> None:
        subtype = event.get("subtype")
        if subtype == "init":
            tools = event.get("tools") or []
            detail = (
                f"Claude Code session {event.get('session_id')} started: "
                f"model {event.get('model')}, {len(tools)} tools"
            )
            self.sink.emit("status", {"state": "running", "detail": detail})
        elif subtype == "api_retry":
            detail = (
                f"retrying the model call (attempt {event.get('attempt')}): {event.get('error')}"
            )
            self.sink.emit("status", {"state": "running", "detail": detail})
        elif subtype == "compact_boundary":
            self.sink.emit("status", {"state": "running", "detail": "conversation compacted"})

    def _assistant(self, event: dict) -> None:
        message = event.get("message") or {}
        message_id = message.get("id") or event.get("uuid") or ""
        emitted = self._texts_by_message.setdefault(message_id, set())
        for block in message.get("content") or []:
            block_type = block.get("type")
            if block_type == "text":
                text = block.get("text") or ""
                # One message arrives as several events sharing message.id;
                # never show the same text of a message twice.
                if not text.strip() or text in emitted:
                    continue
                emitted.add(text)
                if message.get("model") == "<synthetic>":
                    # The CLI's own words (e.g. "API Error: 500 ..."), not the model's.
                    self.sink.emit("error", {"message": _clip(text)})
                else:
                    payload = {"role": "assistant", "text": _clip(text), "message_id": message_id}
                    self.sink.emit("message", payload)
            elif block_type == "tool_use":
                tool_id = block.get("id") or ""
                if tool_id in self._tool_calls_seen:
                    continue
                self._tool_calls_seen.add(tool_id)
                payload = {
                    "id": tool_id,
                    "name": block.get("name"),
                    "input": block.get("input") or {},
                }
                self.sink.emit("tool_call", payload)

    def _user(self, event: dict) -> None:
        content = (event.get("message") or {}).get("content")
        if not isinstance(content, list):
            return  # a plain user message: the runner already recorded the prompt
        for block in content:
            if block.get("type") != "tool_result":
                continue
            tool_id = block.get("tool_use_id") or ""
            if tool_id in self._tool_results_seen:
                continue
            self._tool_results_seen.add(tool_id)
            payload = {
                "tool_call_id": tool_id,
                "output": _clip(_result_text(block.get("content"))),
                "is_error": bool(block.get("is_error")),
            }
            self.sink.emit("tool_result", payload)

    @property
    def usage(self) -> dict:
        if not self.result:
            return {}
        usage = self.result.get("usage") or {}
        # The protocol has one input count; cached input is input too.
        input_tokens = sum(
            int(usage.get(name) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return {
            "input_tokens": input_tokens,
            "output_tokens": int(usage.get("output_tokens") or 0),
            "cost_usd": float(self.result.get("total_cost_usd") or 0),
        }

    def turn_result(self, exit_code: int, stderr: str, session_id: str | None) -> TurnResult:
        result = self.result
        session_id = (result or {}).get("session_id") or self.session_id or session_id
        if result is None:
            tail = stderr.strip()[-2000:] or "no output on stderr"
            return TurnResult(
                ok=False,
                session_id=session_id,
                error=f"Claude Code exited with code {exit_code} without a result: {tail}",
            )
        subtype = result.get("subtype") or ""
        # is_error wins: an upstream API failure reports subtype "success".
        if result.get("is_error") or subtype != "success":
            return TurnResult(
                ok=False, session_id=session_id, usage=self.usage, error=_failure_reason(result)
            )
        return TurnResult(ok=True, session_id=session_id, usage=self.usage)


def _failure_reason(result: dict) -> str:
    subtype = result.get("subtype") or ""
    reason = FAILURE_REASONS.get(subtype) or f"Claude Code turn failed ({subtype or 'no subtype'})"
    details = [str(error) for error in result.get("errors") or []]
    if isinstance(result.get("result"), str) and result["result"].strip():
        details.append(result["result"].strip())
    if result.get("api_error_status") and subtype == "success":
        reason = f"Claude Code's model call failed (HTTP {result['api_error_status']})"
    return f"{reason}: {'; '.join(details)}" if details else reason


def _result_text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for item in content:
        if isinstance(item, dict) and item.get("type") == "text":
            parts.append(item.get("text") or "")
        elif isinstance(item, dict):
            parts.append(f"[{item.get('type', 'content')}]")
        else:
            parts.append(str(item))
    return "\n".join(parts)


def _clip(text: str) -> str:
    if len(text) <= MAX_EVENT_TEXT:
        return text
    return text[:MAX_EVENT_TEXT] + f"\n[… {len(text) - MAX_EVENT_TEXT} more characters cut]"


def _write_prompt(stdin, prompt: str) -> None:
    try:
        stdin.write(prompt.encode("utf-8"))
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
