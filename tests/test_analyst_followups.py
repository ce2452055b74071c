"""The analyst answers follow-ups on a continued session from its own findings.

A continued run's spec carries `continued`, the conversation before (`history`)
and the question as its prompt (agentloop.runs.actions.continuation). The
analyst reads the window its first answer named, finds the same issues again
through the runner double and answers about them, or about a span name.
"""

from __future__ import annotations

from agentloop.runner.client import HttpClient
from agentloop.runner.harnesses.analyst import AnalystHarness
from agentloop.runner.traces_cli import TracesApi
from tests.runner_double import WINDOW, RunnerDouble, synthetic_spans
from tests.test_analyst import Sink

TIMEOUT_TRACES = [f"ab{n:02d}" + "0" * 28 for n in (4, 3, 2, 1)]


def harness(double, tmp_path, spec):
    client = HttpClient(double.url, double.token, sleep=lambda s: None, log=lambda m: None)
    sink = Sink()
    made = AnalystHarness(
        {"project": {"id": 7, "name": "Shop assistant"}, **spec},
        tmp_path,
        {},
        sink,
        api=TracesApi(client, 7),
    )
    return made, sink


def first_answer(double, tmp_path) -> list[dict]:
    """The session's first turn, as the history a continuation hands back."""
    made, sink = harness(double, tmp_path / "first", {"window": WINDOW})
    assert made.run_turn("What went wrong yesterday?").ok
    return [{"role": "user", "text": "What went wrong yesterday?"}] + [
        {"role": "assistant", "text": payload["text"]}
        for kind, payload in sink.events
        if kind == "message"
    ]


def ask(tmp_path, question: str) -> tuple[str, Sink, RunnerDouble]:
    with RunnerDouble(spans=synthetic_spans()) as double:
        history = first_answer(double, tmp_path)
        # No window in the spec: it must come from what the session said.
        made, sink = harness(double, tmp_path / "followup", {"continued": True, "history": history})
        result = made.run_turn(question)
        assert result.ok, result.error
    replies = [payload["text"] for kind, payload in sink.events if kind == "message"]
    return replies[-1], sink, double


def test_it_names_the_evidence_traces_of_the_issue_asked_about(tmp_path):
    reply, _, _ = ask(tmp_path, "Which traces are the evidence for the search_inventory timeouts?")

    assert "search_inventory" in reply and "TimeoutError" in reply
    for trace_id in TIMEOUT_TRACES:
        assert f"`{trace_id}`" in reply


def test_it_answers_about_an_issue_by_number_with_its_window(tmp_path):
    reply, sink, double = ask(tmp_path, "Since when does issue 1 happen?")

    assert reply.startswith("About issue ")
    assert "Since:" in reply and "Evidence traces" not in reply
    # The same window as the first answer, though the spec named none.
    asked = [r["query"] for r in double.requests_to("GET", "/analytics")]
    assert asked and all(q.get("start", [WINDOW["start"]]) == [WINDOW["start"]] for q in asked)


def test_it_writes_no_files_on_a_follow_up(tmp_path):
    ask(tmp_path, "What should we fix first?")

    assert not (tmp_path / "followup" / "artifacts").exists()


def test_a_span_name_gets_the_stores_figures(tmp_path):
    reply, _, double = ask(tmp_path, "How many errors does search_inventory have?")

    assert "`search_inventory` in the window:" in reply
    named = [r["query"] for r in double.requests_to("GET", "/analytics") if r["query"].get("name")]
    assert named and named[-1]["name"] == ["search_inventory"]


def test_a_question_it_does_not_understand_lists_the_findings(tmp_path):
    reply, _, _ = ask(tmp_path, "Hello there")

    assert reply.startswith("I found ") and "1. **" in reply
    assert "Ask about an issue by number" in reply


def test_a_session_stopped_before_its_first_answer_investigates_when_continued(tmp_path):
    with RunnerDouble(spans=synthetic_spans()) as double:
        history = [{"role": "user", "text": "What went wrong yesterday?"}]
        made, sink = harness(
            double, tmp_path, {"continued": True, "history": history, "window": WINDOW}
        )
        assert made.run_turn("Go on please").ok
    assert (tmp_path / "artifacts" / "investigation.md").exists()
    assert "Asked: Go on please" in (tmp_path / "artifacts" / "investigation.md").read_text()
