"""The analyst harness: Signal's method over HTTP, its transcript and its files.

Here it reads a small fixed project through the runner double (tests/runner_double.py,
whose span and analytics routes compute the server's answers in Python); how well the
method finds planted failures at scale is tests/test_signal_method.py's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agentloop.runner.client import HttpClient
from agentloop.runner.harnesses.analyst import AnalystHarness, label_proposals
from agentloop.runner.signal_method import DOCUMENT_KEY, Issue, Report, is_failing_label
from agentloop.runner.traces_cli import TracesApi
from agentloop.signal.issues import issues_from_json
from tests.runner_double import WINDOW, RunnerDouble, synthetic_spans


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


def test_it_writes_the_issues_for_signal_and_the_report_for_people(tmp_path):
    result, _, _ = analyse(tmp_path)

    assert result.ok
    written = json.loads((tmp_path / "artifacts/signal-issues.json").read_text())
    assert written["window"] == WINDOW
    issues = issues_from_json((tmp_path / "artifacts/signal-issues.json").read_text())
    by_fingerprint = {issue["fingerprint"]: issue for issue in issues}
    timeout = by_fingerprint["error:search_inventory:TimeoutError"]
    assert timeout["how_much"]["affected_traces"] == 4 and timeout["how_much"]["rate"] == 0.3333
    assert timeout["evidence"] == [f"ab{n:02d}" + "0" * 28 for n in (4, 3, 2, 1)]
    assert "ab99" + "0" * 28 not in json.dumps(written)  # the error before the window
    report = (tmp_path / "artifacts/investigation.md").read_text()
    assert "### " in report and "`search_inventory` fails with TimeoutError" in report
    assert "- Spans: 48 in 12 traces (before: 0 in 0)" in report
    assert "times out" in report  # the proposed fix names what to change


def test_the_same_data_gives_the_same_files(tmp_path):
    analyse(tmp_path / "a")
    analyse(tmp_path / "b")

    for name in ("investigation.md", "signal-issues.json"):
        assert (tmp_path / "a/artifacts" / name).read_bytes() == (
            tmp_path / "b/artifacts" / name
        ).read_bytes()


def test_the_transcript_shows_each_question_as_a_tool_call_and_result(tmp_path):
    _, sink, double = analyse(tmp_path)

    kinds = [kind for kind, _ in sink.events]
    assert kinds[0] == "message"
    calls = [payload for kind, payload in sink.events if kind == "tool_call"]
    results = [payload for kind, payload in sink.events if kind == "tool_result"]
    # Some questions are asked at once: every call has its one result, after it.
    assert len(calls) == len(results) >= 5
    assert sorted(c["id"] for c in calls) == sorted(r["tool_call_id"] for r in results)
    position = {
        (k, p.get("id") or p.get("tool_call_id")): i for i, (k, p) in enumerate(sink.events)
    }
    assert all(position[("tool_call", c["id"])] < position[("tool_result", c["id"])] for c in calls)
    assert all(c["input"]["command"].startswith("agentloop-traces ") for c in calls)
    # What the transcript claims is what was asked of the API.
    stats = [c for c in calls if c["input"]["command"].startswith("agentloop-traces stats")]
    assert len(stats) == len(double.requests_to("GET", "/analytics"))
    asked = [r["query"] for r in double.requests_to("GET", "/analytics")]
    components = next(q for q in asked if q.get("group_by") == ["kind", "name"])
    assert components["baseline"] == ["previous"] and components["start"] == [WINDOW["start"]]


def test_the_default_window_is_the_last_24_hours_from_a_whole_hour(tmp_path):
    now = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    _, _, double = analyse(tmp_path, spec={}, now=now)

    # Every question, the same window: its start on the hour, so the store's hourly
    # rollups answer its buckets (traces/rollups.py).
    for request in double.requests_to("GET", "/analytics"):
        query = request["query"]
        if "bucket" not in query or query.get("group_by"):
            assert query["start"] == ["2025-02-28T12:00:00Z"]
            assert query["end"] == ["2025-03-01T12:30:00Z"]


def test_a_quiet_project_gets_a_short_report_and_no_label_file(tmp_path):
    result, sink, _ = analyse(tmp_path, spans=[])

    assert result.ok
    report = (tmp_path / "artifacts/investigation.md").read_text()
    assert "Nothing notable: no medium or high issue in this window." in report
    assert json.loads((tmp_path / "artifacts/signal-issues.json").read_text())["issues"] == []
    assert not (tmp_path / "artifacts/eval_labels.json").exists()
    assert sink.events[-1][1]["text"].endswith("Nothing notable: no medium or high issue.")


def test_an_api_failure_fails_the_turn_with_the_reason(tmp_path):
    with RunnerDouble(spans=synthetic_spans()) as double:
        double.fail_next("GET", "/analytics", status=403, detail="You do not have permission.")
        sink = Sink()
        client = HttpClient(double.url, double.token, sleep=lambda s: None, log=lambda m: None)
        harness = AnalystHarness({"window": WINDOW}, tmp_path, {}, sink, api=TracesApi(client, 7))
        result = harness.run_turn("")

    assert not result.ok
    assert result.error == (
        "analyst could not read the traces: HTTP 403: You do not have permission."
    )
    errors = [p for kind, p in sink.events if kind == "tool_result" and p["is_error"]]
    # Questions go out a few at a time: the refused one is whichever reached it first.
    assert [(p["is_error"], p["output"]) for p in errors] == [
        (True, "HTTP 403: You do not have permission.")
    ]
    calls = {p["id"] for kind, p in sink.events if kind == "tool_call"}
    assert errors[0]["tool_call_id"] in calls
    assert not (tmp_path / "artifacts/investigation.md").exists()


def test_stop_ends_the_turn_before_the_next_question(tmp_path):
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
    assert is_failing_label(label, score) is failing


def _issue(cls, name, evidence, severity="high", **extra):
    issue = Issue(
        fingerprint=f"{cls}:{name}",
        cls=cls,
        title=f"{cls} of {name}",
        component={"kind": "span", "name": name},
        filters={"name": name},
        how_much={"affected_traces": len(evidence)},
        severity=severity,
        evidence=evidence,
    )
    for key, value in extra.items():
        setattr(issue, key, value)
    return issue


class _Read:
    def __init__(self, traces):
        self.trace_spans = traces


def test_proposed_labels_cover_the_classes_found_with_their_reason():
    traces = {
        "t1": [
            {"span_id": "r1", "trace_id": "t1", "name": "retrieve_kb", "attributes": {}},
            {
                "span_id": "a1",
                "trace_id": "t1",
                "name": "compose",
                "kind": "LLM",
                "start_time": "2026-01-01T00:00:01Z",
                "attributes": {},
            },
        ],  # fmt: skip
        "t2": [{"span_id": f"c{i}", "trace_id": "t2", "name": "check_inventory"} for i in range(8)],
        "t3": [
            {
                "span_id": "p3",
                "trace_id": "t3",
                "name": "plan",
                "kind": "LLM",
                "status_code": "ERROR",
            },
        ],  # fmt: skip
        "t4": [{"span_id": "p4", "trace_id": "t4", "name": "plan", "kind": "LLM"}],
    }
    report = Report(
        start=None,
        end=None,
        totals={},
        baseline_totals={},
        dimensions=[],
        issues=[
            _issue("retrieval_gap", "retrieve_kb", ["t1"]),
            _issue("tool_loop", "check_inventory", ["t2"]),
            _issue("error_burst", "plan", ["t3", "t4"], exception="openai.RateLimitError"),
            _issue("error_burst", "plan", ["t3"], severity="low"),
        ],
        queries=0,
    )

    labels = label_proposals(report, _Read(traces))

    assert [(x["span_id"], x["name"], x["label"]) for x in labels] == [
        ("a1", "hallucination", "hallucinated"),
        ("c0", "tool_calling", "incorrect"),
        ("p3", "correctness", "incorrect"),
    ]
    assert "`retrieve_kb` returned no documents in this trace" in labels[0]["explanation"]
    assert "8 times" in labels[1]["explanation"]
    assert "openai.RateLimitError" in labels[2]["explanation"]
    assert DOCUMENT_KEY == "retrieval.documents.0.document.id"
