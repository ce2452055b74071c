"""The gemini harness: drives the real Gemini CLI (`@google/gemini-cli`), one process per user turn.

Standard library only: this runs inside the sandbox with the system python3.

Each turn runs `gemini --prompt=<prompt> --output-format stream-json --yolo -m <model>`;
later turns add `--resume <session id>` (the id its `init` event reported), so
a follow-up continues the same chat. The CLI talks to the gateway's Gemini
endpoints (GOOGLE_GEMINI_BASE_URL = spec `llm_base_url`) with the run token as
GEMINI_API_KEY (sent as x-goog-api-key); ~/.gemini/settings.json picks API-key
auth and turns off usage statistics, telemetry and update checks, so it calls
nothing else. The workspace is trusted (GEMINI_CLI_TRUST_WORKSPACE): headless
mode refuses an untrusted folder.

Event mapping (docs/harnesses.md): init → status (and the session); assistant
message deltas → one message per stretch of text (ended by a tool call or the
result); tool_use → tool_call; tool_result → tool_result (is_error unless
"success"); error → status; result → usage (stats), and the turn's error when
its status is "error".
"""

from __future__ import annotations

import json
from pathlib import Path

from agentloop.runner.harnesses.cli import CliHarness, LineParser, clip

SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
}


class GeminiHarness(CliHarness):
    name = "gemini"
    cli = "gemini"
    path_env = "AGENTLOOP_GEMINI_PATH"

    def command(self, prompt: str) -> list[str]:
        command = [self.cli_path(), f"--prompt={prompt}", "--output-format", "stream-json"]
        command += ["--yolo"]
        if self.model:
            command += ["-m", self.model]
        if self.session_id:
            command += ["--resume", self.session_id]
        return command

    def provider_env(self, env, token):
        if self.gateway_url:
            env["GOOGLE_GEMINI_BASE_URL"] = self.gateway_url
        if token:
            env["GEMINI_API_KEY"] = token
        env["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
        env["NO_COLOR"] = "1"
        self._write_settings(Path(env["HOME"]))
        if self.spec.get("system_prompt"):
            path = Path(env["HOME"]) / ".gemini" / "agentloop-system.md"
            path.write_text(self.spec["system_prompt"])
            env["GEMINI_SYSTEM_MD"] = str(path)

    def _write_settings(self, home: Path) -> None:
        folder = home / ".gemini"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "settings.json"
        try:
            settings = json.loads(path.read_text())
        except (OSError, ValueError):
            settings = {}
        for section, values in SETTINGS.items():
            settings.setdefault(section, {}).update(values)
        path.write_text(json.dumps(settings, indent=2))

    def parser(self) -> GeminiParser:
        return GeminiParser(self.sink)


class GeminiParser(LineParser):
    cli_name = "Gemini CLI"

    def __init__(self, sink):
        super().__init__(sink)
        self._text: list[str] = []

    def _flush(self) -> None:
        text = "".join(self._text)
        self._text = []
        if text.strip():
            self.sink.emit("message", {"role": "assistant", "text": clip(text)})

    def close(self) -> None:
        self._flush()

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "init":
            self.session_id = event.get("session_id") or self.session_id
            detail = f"Gemini CLI session {self.session_id} started: model {event.get('model')}"
            self.sink.emit("status", {"state": "running", "detail": detail})
        elif kind == "message" and event.get("role") == "assistant":
            content = event.get("content") or ""
            if event.get("delta"):
                self._text.append(content)
            else:
                self._flush()
                self._text.append(content)
                self._flush()
        elif kind == "tool_use":
            self._flush()
            payload = {
                "id": event.get("tool_id") or "",
                "name": event.get("tool_name"),
                "input": event.get("parameters") or {},
            }
            self.sink.emit("tool_call", payload)
        elif kind == "tool_result":
            self._flush()
            failed = event.get("status") != "success"
            output = event.get("output")
            if failed and not output:
                output = (event.get("error") or {}).get("message") or ""
            payload = {
                "tool_call_id": event.get("tool_id") or "",
                "output": clip(str(output or "")),
                "is_error": failed,
            }
            self.sink.emit("tool_result", payload)
        elif kind == "error":
            self.sink.emit("status", {"state": "running",
                                      "detail": f"Gemini CLI: {event.get('message')}"})  # fmt: skip
        elif kind == "result":
            self._flush()
            stats = event.get("stats") or {}
            self.add_usage(
                int(stats.get("input_tokens") or 0), int(stats.get("output_tokens") or 0)
            )
            if event.get("status") == "success":
                self.finished = True
            else:
                message = (event.get("error") or {}).get("message") or "the turn failed"
                self.error = f"Gemini CLI turn failed: {message}"
