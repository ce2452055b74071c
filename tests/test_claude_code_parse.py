"""Turning Claude Code's stream-json output into runner events and a turn result.

The fixtures under tests/fixtures/claude/ are real output of Claude Code 2.1
run against tests/fake_anthropic.py (how they were made: docs/harnesses.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from agentloop.runner.harnesses.claude_code import StreamJsonParser

FIXTURES = Path(__file__).parent / "fixtures" / "claude"


class ListSink:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def emit(self, kind: str, payload: dict, source: str = "agent") -> None:
        json.dumps(payload)  # the runner posts payloads as JSON: fail here if it could not
        self.events.append((kind, payload))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def of(self, kind: str) -> list[dict]:
        return [payload for k, payload in self.events if k == kind]


def lines(name: str) -> list[str]:
    return (FIXTURES / f"{name}.jsonl").read_text().splitlines(keepends=True)


def parse(raw_lines: list[str]) -> tuple[StreamJsonParser, ListSink]:
    sink = ListSink()
    parser = StreamJsonParser(sink)
    for line in raw_lines:
        parser.feed(line)
    return parser, sink


def test_a_tool_turn_becomes_status_text_call_result_text_in_order():
    parser, sink = parse(lines("bash_tool"))

    assert sink.kinds() == ["status", "message", "tool_call", "tool_result", "message"]
    status, first, call, result, last = (payload for _, payload in sink.events)
    assert "6f1d0c2e-0b7a-4c55-9a31-2b8f4e1d7c90" in status["detail"]
    assert "claude-opus-5-5" in status["detail"]
    assert first == {
        "role": "assistant",
        "text": "I'll write the file.",
        "message_id": "msg_fake0001",
    }
    assert call == {
        "id": "toolu_fake0001",
        "name": "Bash",
        "input": {"command": "echo hello > proof.txt", "description": "Write proof file"},
    }
    assert result == {
        "tool_call_id": "toolu_fake0001",
        "output": "(Bash completed with no output)",
        "is_error": False,
    }
    assert last["text"] == "Done: proof.txt holds hello."
    assert last["message_id"] == "msg_fake0002"


def test_a_successful_result_gives_usage_cost_and_session():
    parser, _ = parse(lines("bash_tool"))

    turn = parser.turn_result(0, "", None)

    assert turn.ok is True
    assert turn.error is None
    assert turn.session_id == "6f1d0c2e-0b7a-4c55-9a31-2b8f4e1d7c90"
    assert turn.usage == {"input_tokens": 24, "output_tokens": 14, "cost_usd": 0.000376}


def test_several_events_of_one_message_are_not_shown_twice():
    # Claude Code sends one assistant message as several events sharing
    # message.id; a re-sent event (same id, same blocks) must add nothing.
    raw = lines("bash_tool")
    text_event, tool_event = raw[1], raw[2]
    assert json.loads(text_event)["message"]["id"] == json.loads(tool_event)["message"]["id"]

    _, sink = parse([raw[0], text_event, tool_event, text_event, tool_event, *raw[3:]])

    assert sink.kinds() == ["status", "message", "tool_call", "tool_result", "message"]


def test_the_same_text_in_a_different_message_is_shown_again():
    raw = lines("bash_tool")
    again = json.loads(raw[1])
    again["message"]["id"] = "msg_later"

    _, sink = parse([raw[1], json.dumps(again)])

    assert [m["message_id"] for m in sink.of("message")] == ["msg_fake0001", "msg_later"]


def test_an_api_error_is_a_failure_even_with_subtype_success():
    parser, sink = parse(lines("upstream_error"))
    result = json.loads(lines("upstream_error")[-1])
    assert (result["subtype"], result["is_error"]) == ("success", True)

    turn = parser.turn_result(1, "", None)

    assert turn.ok is False
    assert "HTTP 500" in turn.error
    assert "upstream exploded" in turn.error
    # The CLI's synthetic "API Error" message is an error, not the model talking.
    assert sink.of("message") == []
    assert "upstream exploded" in sink.of("error")[0]["message"]


def test_reaching_max_turns_is_a_failure_with_a_clear_reason():
    parser, sink = parse(lines("max_turns"))

    turn = parser.turn_result(1, "", None)

    assert turn.ok is False
    assert "turn limit" in turn.error
    assert "Reached maximum number of turns (1)" in turn.error
    assert turn.usage["output_tokens"] == 7
    assert sink.kinds() == ["status", "tool_call", "tool_result"]


def test_a_failing_tool_gives_an_error_result_with_its_output():
    _, sink = parse(lines("tool_error"))

    [result] = sink.of("tool_result")
    assert result["is_error"] is True
    assert result["output"] == "Exit code 3\nfailing"


def test_a_resumed_turn_keeps_the_session_id():
    parser, sink = parse(lines("followup"))

    turn = parser.turn_result(0, "", None)

    assert turn.ok is True
    assert turn.session_id == "6f1d0c2e-0b7a-4c55-9a31-2b8f4e1d7c90"
    assert sink.of("message")[0]["text"] == "Earlier I wrote proof.txt with Bash."


def test_a_malformed_line_is_an_error_event_and_parsing_goes_on():
    raw = lines("bash_tool")

    parser, sink = parse([raw[0], "{not json at all\n", "[1, 2]\n", *raw[1:]])

    errors = sink.of("error")
    assert len(errors) == 2
    assert "{not json at all" in errors[0]["message"]
    assert sink.kinds()[-4:] == ["message", "tool_call", "tool_result", "message"]
    assert parser.turn_result(0, "", None).ok is True


def test_no_result_line_is_a_failure_with_the_stderr_tail():
    parser, _ = parse(lines("bash_tool")[:3])

    turn = parser.turn_result(137, "warming up\nFATAL: out of memory\n", "session-1")

    assert turn.ok is False
    assert "code 137" in turn.error
    assert "FATAL: out of memory" in turn.error
    assert turn.session_id == "6f1d0c2e-0b7a-4c55-9a31-2b8f4e1d7c90"


def test_tool_result_content_given_as_blocks_is_joined_as_text():
    event = json.loads(lines("bash_tool")[3])
    event["message"]["content"][0]["content"] = [
        {"type": "text", "text": "line one"},
        {"type": "image", "source": {}},
        {"type": "text", "text": "line two"},
    ]

    _, sink = parse([json.dumps(event)])

    assert sink.of("tool_result")[0]["output"] == "line one\n[image]\nline two"
