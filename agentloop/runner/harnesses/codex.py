"""The codex harness: drives the real Codex CLI (`@openai/codex`), one process per user turn.

Standard library only: this runs inside the sandbox with the system python3.

The first turn runs `codex exec --json … -` with the prompt on stdin; later
turns `codex exec --json … resume <thread id> -`, so a follow-up continues the
same thread. Codex talks to the gateway's OpenAI Responses endpoint (spec
`llm_base_url` + /v1) as a custom model provider whose key is the run token
(`env_key = AGENTLOOP_RUN_TOKEN`); no OpenAI key is in the sandbox. Its own
sandbox is bypassed: bubblewrap is the boundary (and Codex's seccomp/landlock
sandbox cannot nest inside it). Retries are off: the gateway's refusals
(budget, a finished run) cannot succeed on a second try.

Event mapping (docs/harnesses.md): thread.started → status (and the session);
item agent_message → message; item command_execution → tool_call (started) and
tool_result (completed: aggregated_output, is_error when the exit code is not
0); file_change, mcp_tool_call, web_search → tool_call + tool_result; item
error and top-level error → status (Codex reports warnings and reconnects this
way); turn.completed → usage; turn.failed → the turn's error.
"""

from __future__ import annotations

import json

from agentloop.runner.harnesses.cli import CliHarness, LineParser, clip

PROVIDER_ID = "agentloop"


def _toml(value) -> str:
    # JSON strings, numbers and booleans are TOML values too.
    return json.dumps(value)


class CodexHarness(CliHarness):
    name = "codex"
    cli = "codex"
    path_env = "AGENTLOOP_CODEX_PATH"

    def command(self, prompt: str) -> list[str]:
        provider = f"model_providers.{PROVIDER_ID}"
        settings = {
            "model_provider": PROVIDER_ID,
            f"{provider}.name": "agentloop gateway",
            f"{provider}.base_url": f"{self.gateway_url}/v1",
            f"{provider}.env_key": "AGENTLOOP_RUN_TOKEN",
            f"{provider}.wire_api": "responses",
            f"{provider}.request_max_retries": 0,
            f"{provider}.stream_max_retries": 0,
            "check_for_update_on_startup": False,
        }
        if self.spec.get("system_prompt"):
            settings["developer_instructions"] = self.spec["system_prompt"]
        command = [
            self.cli_path(),
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
        ]
        for key, value in settings.items():
            command += ["-c", f"{key}={_toml(value)}"]
        if self.model:
            command += ["-m", self.model]
        if self.session_id:
            command += ["resume", self.session_id]
        return [*command, "-"]  # "-": the prompt is on stdin

    def stdin_text(self, prompt: str) -> str:
        return prompt

    def provider_env(self, env, token):
        if token:
            env["AGENTLOOP_RUN_TOKEN"] = token

    def parser(self) -> CodexParser:
        return CodexParser(self.sink)


class CodexParser(LineParser):
    cli_name = "Codex"

    def __init__(self, sink):
        super().__init__(sink)
        self._calls: set[str] = set()

    def event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "thread.started":
            self.session_id = event.get("thread_id") or self.session_id
            detail = f"Codex thread {self.session_id} started"
            self.sink.emit("status", {"state": "running", "detail": detail})
        elif kind in ("item.started", "item.updated", "item.completed"):
            self._item(event.get("item") or {}, completed=kind == "item.completed")
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            self.add_usage(
                int(usage.get("input_tokens") or 0),
                int(usage.get("output_tokens") or 0),
            )
            self.finished = True
        elif kind == "turn.failed":
            error = (event.get("error") or {}).get("message") or "the turn failed"
            self.error = f"Codex turn failed: {error}"
        elif kind == "error":
            self.sink.emit(
                "status", {"state": "running", "detail": f"Codex: {event.get('message')}"}
            )

    def _call(self, item_id: str, name: str, tool_input: dict) -> None:
        if item_id in self._calls:
            return
        self._calls.add(item_id)
        self.sink.emit("tool_call", {"id": item_id, "name": name, "input": tool_input})

    def _result(self, item_id: str, output: str, is_error: bool) -> None:
        payload = {"tool_call_id": item_id, "output": clip(output), "is_error": is_error}
        self.sink.emit("tool_result", payload)

    def _item(self, item: dict, *, completed: bool) -> None:
        kind = item.get("type")
        item_id = item.get("id") or ""
        if kind == "agent_message" and completed:
            text = item.get("text") or ""
            if text.strip():
                payload = {"role": "assistant", "text": clip(text), "message_id": item_id}
                self.sink.emit("message", payload)
        elif kind == "command_execution":
            self._call(item_id, "shell", {"command": item.get("command") or ""})
            if completed:
                exit_code = item.get("exit_code")
                failed = item.get("status") == "failed" or exit_code not in (0, None)
                self._result(item_id, item.get("aggregated_output") or "", failed)
        elif kind == "file_change" and completed:
            changes = item.get("changes") or []
            self._call(item_id, "apply_patch", {"changes": changes})
            summary = "\n".join(f"{c.get('kind', 'update')} {c.get('path', '')}" for c in changes)
            self._result(item_id, summary, item.get("status") == "failed")
        elif kind == "mcp_tool_call" and completed:
            name = f"{item.get('server', 'mcp')}.{item.get('tool', '')}"
            self._call(item_id, name, item.get("arguments") or {})
            result = item.get("result") or item.get("error") or ""
            self._result(item_id, json.dumps(result) if not isinstance(result, str) else result,
                         item.get("status") == "failed")  # fmt: skip
        elif kind == "web_search" and completed:
            self._call(item_id, "web_search", {"query": item.get("query") or ""})
            self._result(item_id, "", False)
        elif kind == "error" and completed:
            self.sink.emit(
                "status", {"state": "running", "detail": f"Codex: {item.get('message')}"}
            )
