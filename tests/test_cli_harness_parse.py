"""The codex, opencode and gemini parsers on output lines the real CLIs printed.

The lines are the CLIs' own (Codex 0.169.0, OpenCode 1.18.33, Gemini CLI
0.61.0 against the scripted servers), trimmed of fields the parsers ignore.
The real CLIs run end to end in tests/test_e2e_harnesses.py; these pin the
mapping and the failure reasons without starting a process.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentloop.runner.harnesses.codex import CodexHarness, CodexParser
from agentloop.runner.harnesses.gemini import GeminiHarness, GeminiParser
from agentloop.runner.harnesses.opencode import OpenCodeHarness, OpenCodeParser
from tests.test_claude_code_parse import ListSink


def feed(parser, *events):
    for event in events:
        parser.feed(json.dumps(event) + "\n")
    parser.close()
    return parser


def test_codex_lines_become_a_message_a_tool_call_its_result_and_usage():
    sink = ListSink()
    command = "/bin/bash -lc 'echo hi > proof.txt; echo done'"
    parser = feed(
        CodexParser(sink),
        {"type": "thread.started", "thread_id": "01a23ba6-8502"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "item_1", "type": "agent_message",
                                            "text": "Let me write it."}},
        {"type": "item.started", "item": {"id": "item_2", "type": "command_execution",
                                          "command": command, "status": "in_progress"}},
        {"type": "item.completed", "item": {"id": "item_2", "type": "command_execution",
                                            "command": command, "aggregated_output": "done\n",
                                            "exit_code": 0, "status": "completed"}},
        {"type": "turn.completed", "usage": {"input_tokens": 24, "cached_input_tokens": 0,
                                             "output_tokens": 14}},
    )  # fmt: skip
    assert sink.kinds() == ["status", "message", "tool_call", "tool_result"]
    assert sink.events[2][1] == {"id": "item_2", "name": "shell", "input": {"command": command}}
    assert sink.events[3][1] == {"tool_call_id": "item_2", "output": "done\n", "is_error": False}
    result = parser.turn_result(0, "")
    assert result.ok and result.session_id == "01a23ba6-8502"
    assert result.usage == {"input_tokens": 24, "output_tokens": 14}


def test_a_failed_codex_turn_says_why():
    parser = feed(
        CodexParser(ListSink()),
        {"type": "turn.failed", "error": {"message": "unexpected status 400 Bad Request: budget"}},
    )
    result = parser.turn_result(1, "")
    assert not result.ok
    assert result.error == "Codex turn failed: unexpected status 400 Bad Request: budget"


def test_codex_resumes_its_thread_with_the_prompt_on_stdin(tmp_path: Path):
    cli = tmp_path / "codex"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    spec = {"cli_path": str(cli), "llm_base_url": "http://web/llm/openai", "model": "gpt-5",
            "harness_session_id": "thread-9"}  # fmt: skip
    harness = CodexHarness(spec, tmp_path, {"AGENTLOOP_RUN_TOKEN": "al_sk_x"}, ListSink())
    command = harness.command("-starts with a dash")
    assert command[-3:] == ["resume", "thread-9", "-"]
    assert 'model_providers.agentloop.base_url="http://web/llm/openai/v1"' in command
    assert 'model_providers.agentloop.env_key="AGENTLOOP_RUN_TOKEN"' in command
    assert harness.stdin_text("-starts with a dash") == "-starts with a dash"
    env = harness.cli_env()
    assert env["AGENTLOOP_RUN_TOKEN"] == "al_sk_x" and "OPENAI_API_KEY" not in env


def test_opencode_lines_become_events_and_an_api_error_fails_the_turn():
    sink = ListSink()
    tool = {"type": "tool", "tool": "bash", "callID": "toolu_1", "state": {
        "status": "completed", "input": {"command": "ls"}, "output": "done\n"}}  # fmt: skip
    parser = feed(
        OpenCodeParser(sink),
        {"type": "step_start", "sessionID": "ses_1", "part": {"type": "step-start"}},
        {"type": "text", "sessionID": "ses_1", "part": {"type": "text", "text": "Let me look.",
                                                         "messageID": "msg_1"}},
        {"type": "tool_use", "sessionID": "ses_1", "part": tool},
        {"type": "step_finish", "sessionID": "ses_1", "part": {"reason": "tool-calls",
            "tokens": {"input": 12, "output": 7, "reasoning": 0, "cache": {"read": 3}}, "cost": 0}},
        {"type": "text", "sessionID": "ses_1", "part": {"type": "text", "text": "Done."}},
        {"type": "step_finish", "sessionID": "ses_1", "part": {"reason": "stop",
            "tokens": {"input": 12, "output": 7}, "cost": 0.001}},
    )  # fmt: skip
    assert sink.kinds() == ["status", "message", "tool_call", "tool_result", "message"]
    assert sink.events[3][1] == {"tool_call_id": "toolu_1", "output": "done\n", "is_error": False}
    result = parser.turn_result(0, "")
    assert result.ok and result.session_id == "ses_1"
    assert result.usage == {"input_tokens": 27, "output_tokens": 14, "cost_usd": 0.001}

    failed = feed(
        OpenCodeParser(ListSink()),
        {"type": "error", "sessionID": "ses_2", "error": {"name": "APIError", "data": {
            "message": "The run has used 19 tokens of its budget of 10.", "statusCode": 400}}},
    )  # fmt: skip
    assert failed.turn_result(0, "").error == (
        "OpenCode's model call failed (HTTP 400): The run has used 19 tokens of its budget of 10."
    )


def test_opencode_gets_the_gateway_as_its_only_provider(tmp_path: Path):
    spec = {"llm_base_url": "http://web/llm/anthropic", "llm_provider": "anthropic",
            "model": "claude-sonnet-4-5"}  # fmt: skip
    harness = OpenCodeHarness(spec, tmp_path, {"HOME": str(tmp_path)}, ListSink())
    config = json.loads(harness.cli_env()["OPENCODE_CONFIG_CONTENT"])
    provider = config["provider"]["agentloop"]
    assert provider["npm"] == "@ai-sdk/anthropic"
    assert provider["options"]["baseURL"] == "http://web/llm/anthropic/v1"
    assert config["model"] == "agentloop/claude-sonnet-4-5"


def test_gemini_deltas_become_one_message_per_stretch_of_text():
    sink = ListSink()
    parser = feed(
        GeminiParser(sink),
        {"type": "init", "session_id": "0e6a", "model": "gemini-2.5-pro"},
        {"type": "message", "role": "user", "content": "write proof"},
        {"type": "message", "role": "assistant", "content": "Let me w", "delta": True},
        {"type": "message", "role": "assistant", "content": "rite it.", "delta": True},
        {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "rsc_0",
         "parameters": {"command": "echo done"}},
        {"type": "tool_result", "tool_id": "rsc_0", "status": "success", "output": "done"},
        {"type": "message", "role": "assistant", "content": "All ", "delta": True},
        {"type": "message", "role": "assistant", "content": "done.", "delta": True},
        {"type": "result", "status": "success", "stats": {"input_tokens": 24, "output_tokens": 14}},
    )  # fmt: skip
    assert sink.kinds() == ["status", "message", "tool_call", "tool_result", "message"]
    assert [p["text"] for k, p in sink.events if k == "message"] == [
        "Let me write it.",
        "All done.",
    ]
    result = parser.turn_result(0, "")
    assert result.ok and result.session_id == "0e6a"
    assert result.usage == {"input_tokens": 24, "output_tokens": 14}


def test_gemini_writes_settings_that_keep_it_offline_and_resumes(tmp_path: Path):
    cli = tmp_path / "gemini"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    spec = {"cli_path": str(cli), "llm_base_url": "http://web/llm/gemini",
            "model": "gemini-2.5-pro", "harness_session_id": "0e6a"}  # fmt: skip
    env = {"HOME": str(tmp_path), "AGENTLOOP_RUN_TOKEN": "al_sk_x", "GEMINI_API_KEY": "real!"}
    harness = GeminiHarness(spec, tmp_path, env, ListSink())
    assert harness.command("hi")[-2:] == ["--resume", "0e6a"]
    cli_env = harness.cli_env()
    assert cli_env["GEMINI_API_KEY"] == "al_sk_x"  # the run token, not a key from outside
    assert cli_env["GOOGLE_GEMINI_BASE_URL"] == "http://web/llm/gemini"
    settings = json.loads((tmp_path / ".gemini" / "settings.json").read_text())
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    error = {"type": "result", "status": "error", "error": {"message": "[API Error: budget]"}}
    failed = feed(GeminiParser(ListSink()), error)
    assert failed.turn_result(0, "").error == "Gemini CLI turn failed: [API Error: budget]"
