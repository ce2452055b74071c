"""The opencode harness: drives the real OpenCode CLI (`opencode-ai`), one process per user turn.

Standard library only: this runs inside the sandbox with the system python3.

Each turn runs `opencode run --format json --auto -m agentloop/<model> -- <prompt>`;
later turns add `--session <id>`, so a follow-up continues the same session.
Its configuration comes in OPENCODE_CONFIG_CONTENT: one provider, "agentloop",
whose base URL is the gateway (OpenAI Chat Completions through the bundled
`@ai-sdk/openai-compatible`, or Anthropic Messages through `@ai-sdk/anthropic`,
by the spec's `llm_provider`) and whose API key is the run token. Network
extras are off (models.dev fetch, default plugins, LSP downloads, autoupdate,
sharing): the sandbox reaches only the gateway.

Event mapping (docs/harnesses.md): text → message; tool_use (sent once the
tool has finished) → tool_call + tool_result (is_error when its state is
"error"); step_finish → usage (tokens and OpenCode's cost estimate); error →
the turn's error; the first sessionID seen → the session.
"""

from __future__ import annotations

import json

from agentloop.runner.harnesses.cli import CliHarness, LineParser, clip

PROVIDER_ID = "agentloop"
SDK_PACKAGES = {"openai": "@ai-sdk/openai-compatible", "anthropic": "@ai-sdk/anthropic"}
QUIET_ENV = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_SHARE": "1",
}


class OpenCodeHarness(CliHarness):
    name = "opencode"
    cli = "opencode"
    path_env = "AGENTLOOP_OPENCODE_PATH"

    @property
    def provider(self) -> str:
        provider = self.spec.get("llm_provider") or "openai"
        return provider if provider in SDK_PACKAGES else "openai"

    def config(self, token: str) -> dict:
        base = self.gateway_url + ("/v1" if self.provider == "openai" else "/v1")
        model = self.model or "default"
        provider = {
            "npm": SDK_PACKAGES[self.provider],
            "name": "agentloop gateway",
            "options": {"baseURL": base, "apiKey": token},
            "models": {model: {"name": model}},
        }
        config = {
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False,
            "share": "disabled",
            "provider": {PROVIDER_ID: provider},
            "model": f"{PROVIDER_ID}/{model}",
        }
        if self.spec.get("system_prompt"):
            config["instructions"] = []
            config["agent"] = {"build": {"prompt": self.spec["system_prompt"]}}
        return config

    def command(self, prompt: str) -> list[str]:
        command = [self.cli_path(), "run", "--format", "json", "--auto"]
        command += ["-m", f"{PROVIDER_ID}/{self.model or 'default'}"]
        if self.session_id:
            command += ["--session", self.session_id]
        else:
            # A title of our own: otherwise OpenCode spends a model call on one.
            title = " ".join(prompt.split())[:80] or "agentloop session"
            command += ["--title", title]
        return [*command, "--", prompt]

    def provider_env(self, env, token):
        env.update(QUIET_ENV)
        env["OPENCODE_CONFIG_CONTENT"] = json.dumps(self.config(token))

    def parser(self) -> OpenCodeParser:
        return OpenCodeParser(self.sink)


class OpenCodeParser(LineParser):
    cli_name = "OpenCode"

    def event(self, event: dict) -> None:
        if event.get("sessionID") and not self.session_id:
            self.session_id = event["sessionID"]
            detail = f"OpenCode session {self.session_id} started"
            self.sink.emit("status", {"state": "running", "detail": detail})
        kind = event.get("type")
        part = event.get("part") or {}
        if kind == "text":
            text = part.get("text") or ""
            if text.strip():
                payload = {"role": "assistant", "text": clip(text),
                           "message_id": part.get("messageID") or ""}  # fmt: skip
                self.sink.emit("message", payload)
        elif kind == "tool_use":
            state = part.get("state") or {}
            call_id = part.get("callID") or part.get("id") or ""
            self.sink.emit(
                "tool_call",
                {"id": call_id, "name": part.get("tool"), "input": state.get("input") or {}},
            )
            failed = state.get("status") == "error"
            output = state.get("error") if failed else state.get("output")
            self.sink.emit(
                "tool_result",
                {"tool_call_id": call_id, "output": clip(str(output or "")), "is_error": failed},
            )
        elif kind == "step_finish":
            tokens = part.get("tokens") or {}
            cache = tokens.get("cache") or {}
            self.add_usage(
                int(tokens.get("input") or 0) + int(cache.get("read") or 0)
                + int(cache.get("write") or 0),
                int(tokens.get("output") or 0) + int(tokens.get("reasoning") or 0),
                float(part.get("cost") or 0),
            )  # fmt: skip
            if part.get("reason") not in ("tool-calls", "tool_calls"):
                self.finished = True
        elif kind == "error":
            error = event.get("error") or {}
            data = error.get("data") or {}
            message = data.get("message") or error.get("name") or "unknown error"
            status = data.get("statusCode")
            prefix = (
                f"OpenCode's model call failed (HTTP {status})" if status else "OpenCode failed"
            )
            self.error = f"{prefix}: {message}"
