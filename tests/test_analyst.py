"""The analyst harness on a fixed synthetic project (tests/runner_double.synthetic_spans)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from agentloop.runner.client import HttpClient
from agentloop.runner.harnesses.analyst import AnalystHarness
from agentloop.runner.traces_cli import TracesApi
from tests.runner_double import WINDOW, RunnerDouble, span_id, synthetic_spans, trace_id

RANGE = "--start 2025-03-01T00:00:00Z --end 2025-03-02T00:00:00Z"


class Sink:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def emit(self, kind, payload, source="agent"):
        self.events.append((kind, payload))


def analyse(tmp_path, spans=None, spec=None, now=None):
    with RunnerDouble(spans=synthetic_spans() if spans is None else spans) as double:
        sink = Sink()
        client = HttpClient(double.url, double.token, sleep=lambda s: None, log=lambda m: None)
        harness = AnalystHarness(
            {
                "project": {"id": 7, "name": "Shop assistant"},
                **(spec if spec is not None else {"window": WINDOW}),
            },
            tmp_path,
            {},
            sink,
            api=TracesApi(client, 7),
            now=now,
        )
        result = harness.run_turn("What went wrong yesterday?")
    return result, sink, double


def findings(report: str) -> list[tuple[str, list[str], str]]:
    """(title, trace ids, reproduce command) per finding, in report order."""
    found = []
    for block in report.split("\n### ")[1:]:
        title = block.splitlines()[0].split(". ", 1)[1]
        traces = re.findall(r"^- trace `([0-9a-f]{32})`", block, re.M)
        command = re.search(r"^- reproduce: `(.*)`$", block, re.M).group(1)
        found.append((title, [t[:4] for t in traces], command))
    return found


def test_it_names_the_planted_problems_ranked_by_affected_traces(tmp_path):
    result, _, _ = analyse(tmp_path)

    assert result.ok
    report = (tmp_path / "artifacts/investigation.md").read_text()
    assert findings(report) == [
        (
            "`search_inventory` fails with TimeoutError",
            ["ab04", "ab03", "ab02", "ab01"],
            f"agentloop-traces spans --status ERROR --name search_inventory {RANGE}",
        ),
        (
            "eval `correctness` fails",
            ["ab11", "ab10", "ab09"],
            f"agentloop-traces spans {RANGE} --annotation correctness:incorrect",
        ),
        (
            "`retrieve_docs` (RETRIEVER) is sometimes slow",
            ["ab10", "ab09", "ab08"],
            f"agentloop-traces spans --name retrieve_docs {RANGE}",
        ),
        (
            "`ChatOpenAI` fails with RateLimitError",
            ["ab07", "ab06"],
            f"agentloop-traces spans --status ERROR --name ChatOpenAI {RANGE}",
        ),
        (
            "`search_inventory` fails with ValueError",
            ["ab05"],
            f"agentloop-traces spans --status ERROR --name search_inventory {RANGE}",
        ),
        (
            "eval `hallucination` fails",
            ["ab11"],
            f"agentloop-traces spans {RANGE} --annotation hallucination",
        ),
        ("token-heavy LLM calls", ["ab12"], f"agentloop-traces spans --kind LLM {RANGE}"),
    ]
    assert "ab99" not in report  # the error before the window
    assert "3 of 12 spans took more than 500 ms (3× the median of 100 ms)" in report
    assert "Message (newest): “inventory service timed out after 30s”" in report
    assert "- Spans read: 48 in 12 traces" in report
    assert "## What to look at\n\n1. Why `search_inventory` raises TimeoutError" in report


def test_it_proposes_incorrect_for_failed_llm_calls_only(tmp_path):
    analyse(tmp_path)

    labels = json.loads((tmp_path / "artifacts/eval_labels.json").read_text())
    assert [(x["span_id"], x["trace_id"], x["name"], x["label"], x["score"]) for x in labels] == [
        (span_id(7, 3), trace_id(7), "correctness", "incorrect", 0.0),
        (span_id(6, 3), trace_id(6), "correctness", "incorrect", 0.0),
    ]
    assert labels[0]["explanation"] == (
        "The LLM call ended in an error (RateLimitError: Rate limit reached for gpt-4o), "
        "so it produced no usable answer."
    )


def test_the_same_data_gives_the_same_files(tmp_path):
    analyse(tmp_path / "a")
    analyse(tmp_path / "b")

    for name in ("investigation.md", "eval_labels.json"):
        assert (tmp_path / "a/artifacts" / name).read_bytes() == (
            tmp_path / "b/artifacts" / name
        ).read_bytes()


def test_the_transcript_shows_each_query_as_a_tool_call_and_result(tmp_path):
    _, sink, double = analyse(tmp_path)

    kinds = [kind for kind, _ in sink.events]
    assert kinds[:3] == ["message", "tool_call", "tool_result"]
    assert ("message", "Looking at errors…") in [(k, p.get("text")) for k, p in sink.events]
    calls = [p for k, p in sink.events if k == "tool_call"]
    results = [p for k, p in sink.events if k == "tool_result"]
    assert [c["input"]["command"] for c in calls] == [
        f"agentloop-traces spans {RANGE} --max 5000",
        f"agentloop-traces spans --status ERROR {RANGE} --max 5000",
    ]
    assert [r["tool_call_id"] for r in results] == [c["id"] for c in calls]
    assert [r["output"] for r in results] == ["48 spans in 12 traces", "7 ERROR spans in 7 traces"]
    # What the transcript claims is what was asked of the API.
    assert double.requests_to("GET", "/spans")[1]["query"]["status"] == ["ERROR"]
    assert len({p["message_id"] for k, p in sink.events if k == "message"}) == kinds.count(
        "message"
    )


def test_the_default_window_is_the_last_24_hours(tmp_path):
    now = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    _, _, double = analyse(tmp_path, spec={}, now=now)

    query = double.requests_to("GET", "/spans")[0]["query"]
    assert query["start"] == ["2025-02-28T12:30:00Z"] and query["end"] == ["2025-03-01T12:30:00Z"]
    report = (tmp_path / "artifacts/investigation.md").read_text()
    # The window holds traces 1-12 (hours 1-12 of March 1st), not the error of Feb 27th.
    assert "ab99" not in report
    assert [f[0] for f in findings(report)][0] == "`search_inventory` fails with TimeoutError"


def test_a_quiet_project_gets_a_short_report_and_no_label_file(tmp_path):
    result, _, _ = analyse(tmp_path, spans=[])

    assert result.ok
    report = (tmp_path / "artifacts/investigation.md").read_text()
    assert "No errors, latency outliers, failing eval labels or token-heavy LLM calls" in report
    assert not (tmp_path / "artifacts/eval_labels.json").exists()


def test_an_api_failure_fails_the_turn_with_the_reason(tmp_path):
    with RunnerDouble(spans=synthetic_spans()) as double:
        double.fail_next("GET", "/spans", status=403, detail="You do not have permission.")
        sink = Sink()
        client = HttpClient(double.url, double.token, sleep=lambda s: None, log=lambda m: None)
        harness = AnalystHarness({"window": WINDOW}, tmp_path, {}, sink, api=TracesApi(client, 7))
        result = harness.run_turn("")

    assert not result.ok
    assert result.error == (
        "analyst could not read the traces: HTTP 403: You do not have permission."
    )
    assert sink.events[-2] == (
        "tool_result",
        {
            "tool_call_id": "analyst-1",
            "is_error": True,
            "output": "HTTP 403: You do not have permission.",
        },
    )
    assert not (tmp_path / "artifacts/investigation.md").exists()


def test_stop_ends_the_turn_before_the_next_query(tmp_path):
    harness = AnalystHarness({"window": WINDOW}, tmp_path, {}, Sink(), api=object())
    harness.stop()

    result = harness.run_turn("")

    assert result.stopped and not result.ok


@pytest.mark.parametrize(
    "label,score,failing",
    [
        ("incorrect", None, True),
        ("Hallucinated", 0.9, True),
        ("correct", 0.1, False),
        ("", 0.49, True),
        ("", 0.5, False),
        ("partial", None, False),
    ],
)
def test_what_counts_as_a_failing_label(label, score, failing):
    from agentloop.runner.harnesses.analyst import is_failing

    assert is_failing({"label": label, "score": score}) is failing
