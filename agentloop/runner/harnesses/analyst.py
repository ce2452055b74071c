"""The analyst: a built-in harness with no model. Standard library only.

It investigates the bound project's spans in a window (the last 24 h unless
the spec says otherwise) with Signal's method (agentloop/runner/signal_method.py):
the store's own aggregates over the whole window against the window before —
what fails, where it concentrates, since when, how much — through the same
HTTP path as the `agentloop-traces` CLI. It writes:

- artifacts/signal-issues.json: the issues, in the shape Signal keeps them
  (agentloop/signal/issues.py);
- artifacts/investigation.md: the same for people, ranked by severity;
- artifacts/eval_labels.json: proposed labels for the classes it found
  (failed LLM calls → correctness=incorrect; answers made from an empty
  retrieval → hallucination=hallucinated; looping tool calls →
  tool_calling=incorrect), each with its reason, for people to review.

Every question it asks is a tool_call/tool_result pair in the transcript. The
same data and the same `now` give the same files, byte for byte.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentloop.runner.client import ApiError
from agentloop.runner.harnesses import analyst_answers
from agentloop.runner.harnesses.base import Harness, TurnResult
from agentloop.runner.signal_method import (
    DOCUMENT_KEY,
    Method,
    Report,
    iso,
    parse_time,
    window_ending,
)
from agentloop.runner.traces_cli import (
    LABELS_FILE,
    CliError,
    TracesApi,
    api_from_env,
    propose_labels,
)

DEFAULT_WINDOW = timedelta(hours=24)
ISSUES_FILE = "artifacts/signal-issues.json"
INVESTIGATION_FILE = "artifacts/investigation.md"
SAMPLE_TRACES = 5
LABELS_PER_ISSUE = 10


class Stopped(Exception):
    pass


class _Source:
    """The method's questions, asked over HTTP and shown in the transcript."""

    parallel = 3  # independent questions at once (the web process answers each on a thread)

    def __init__(self, harness: AnalystHarness, api: TracesApi):
        self.harness, self.api = harness, api

    def stats(self, params: dict) -> dict:
        return self.harness.query("stats", params, lambda: self.api.stats(params), _summarize_stats)

    def spans(self, params: dict, limit: int) -> list[dict]:
        return self.harness.query(
            "spans",
            {**params, "max": limit},
            lambda: list(self.api.spans(params, limit=min(limit, 1000), max_items=limit)),
            lambda found: f"{len(found)} spans",
        )

    def annotations(self, params: dict, limit: int) -> list[dict]:
        return self.harness.query(
            "annotations",
            {**params, "max": limit},
            lambda: list(self.api.annotations(params, limit=min(limit, 1000), max_items=limit)),
            lambda found: f"{len(found)} annotations",
        )

    def trace(self, trace_id: str) -> dict:
        return self.harness.query(
            "trace",
            {"trace_id": trace_id},
            lambda: self.api.trace(trace_id),
            lambda found: f"{found.get('spans', 0)} spans",
        )


def _summarize_stats(result: dict) -> str:
    total = result.get("total") or {}
    groups = result.get("groups") or []
    text = f"{total.get('spans', 0)} spans, {total.get('errors', 0)} errors"
    if groups:
        text += f", {len(groups)} groups"
        top = groups[0]
        key = ", ".join(f"{k}={v}" for k, v in (top.get("key") or {}).items())
        text += f"; top: {key} ({top.get('spans')} spans, {top.get('errors')} errors)"
    return text


def _command(verb: str, params: dict) -> str:
    parts = ["agentloop-traces", verb]
    for key, value in params.items():
        if verb == "trace" and key == "trace_id":
            parts.append(str(value))
            continue
        for item in value if isinstance(value, list) else [value]:
            parts += [f"--{key.replace('_', '-')}", str(item)]
    return " ".join(parts)


class AnalystHarness(Harness):
    name = "analyst"
    interactive = False

    def __init__(
        self,
        spec,
        workspace: Path,
        env,
        sink,
        *,
        api: TracesApi | None = None,
        now: datetime | None = None,
    ):
        super().__init__(spec, workspace, env, sink)
        self.api = api
        self.now = now
        self._stopped = threading.Event()
        self._calls = 0
        self._messages = 0
        self._stage = ""
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopped.set()

    # -- window -----------------------------------------------------------------------

    def window(self) -> tuple[datetime, datetime]:
        now = self.now or datetime.now(UTC)
        window = self.spec.get("window") or {}
        end = parse_time(window.get("end")) or now
        start = parse_time(window.get("start"))
        if start is None:
            hours = self.spec.get("window_hours")
            length = timedelta(hours=float(hours)) if hours else DEFAULT_WINDOW
            start, end = window_ending(end, length)
        return start, end

    # -- the transcript --------------------------------------------------------------

    def say(self, text: str) -> None:
        self._messages += 1
        self.sink.emit(
            "message",
            {"role": "assistant", "text": text, "message_id": f"analyst-message-{self._messages}"},
        )

    def query(self, verb: str, params: dict, fetch, summarize):
        """Ask the store one question the way the CLI would, showing the command and a summary."""
        if self._stopped.is_set():
            raise Stopped()
        with self._lock:  # the method may ask from several threads
            self._calls += 1
            call_id = f"analyst-{self._calls}"
        command = _command(verb, params)
        self.sink.emit(
            "tool_call",
            {
                "id": call_id,
                "name": "agentloop-traces",
                "input": {"command": command, "why": self._stage},
            },
        )
        try:
            result = fetch()
        except ApiError as error:
            self.sink.emit(
                "tool_result", {"tool_call_id": call_id, "output": error.message, "is_error": True}
            )
            raise
        self.sink.emit(
            "tool_result", {"tool_call_id": call_id, "output": summarize(result), "is_error": False}
        )
        return result

    def on_question(self, text: str) -> None:
        self._stage = text

    # -- the turn ------------------------------------------------------------------------

    def run_turn(self, prompt: str) -> TurnResult:
        try:
            api = self.api or api_from_env(self.env)
            history = self.spec.get("history") or []
            # A session stopped before its first answer has no findings to ask
            # about yet: its continuation investigates first.
            if self.spec.get("continued") and analyst_answers.window_from_history(history):
                self.follow_up(api, prompt)
            else:
                self.investigate(api, prompt)
        except Stopped:
            return TurnResult(ok=False, stopped=True, error="stopped")
        except (ApiError, CliError) as error:
            message = getattr(error, "message", str(error))
            self.sink.emit("error", {"message": f"analyst: {message}"})
            return TurnResult(ok=False, error=f"analyst could not read the traces: {message}")
        return TurnResult(ok=True)

    def investigate(self, api: TracesApi, prompt: str) -> None:
        start, end = self.window()
        hours = (end - start).total_seconds() / 3600
        self.say(
            f"Looking at the last {hours:.3g} h ({iso(start)} to {iso(end)}) against the "
            f"{hours:.3g} h before: errors, latency, tokens and cost, evals, retrievals and "
            "tool calls, where they concentrate and since when."
        )
        source = _Source(self, api)
        method = Method(source, start, end, on_query=self.on_question)
        report = method.run()
        labels = label_proposals(report, method)
        artifacts = self.workspace / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        issues = [issue.as_dict() for issue in report.issues]
        (self.workspace / ISSUES_FILE).write_text(
            json.dumps(
                {"window": {"start": iso(start), "end": iso(end)}, "issues": issues},
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
        (self.workspace / INVESTIGATION_FILE).write_text(self.report(prompt, report, labels))
        if labels:
            propose_labels(self.workspace / LABELS_FILE, labels)
        notable = [i for i in report.issues if i.severity in ("high", "medium")]
        summary = (
            f"Wrote {INVESTIGATION_FILE} with {len(report.issues)} issues "
            f"({len(notable)} medium or high) from {report.queries} questions to the store"
        )
        summary += f" and proposed {len(labels)} eval labels in {LABELS_FILE}." if labels else "."
        if notable:
            top = notable[0]
            summary += f" Top issue: {top.title} ({top.severity}, {top.affected} traces)."
        else:
            summary += " Nothing notable: no medium or high issue."
        self.say(summary)

    def follow_up(self, api: TracesApi, question: str) -> None:
        """A question on a continued session: the same window's findings, then the answer."""
        named = analyst_answers.window_from_history(self.spec.get("history") or [])
        start, end = parse_time(named[0]), parse_time(named[1])
        self.say(
            f"Reading the findings of this session again ({iso(start)} to {iso(end)}) to answer."
        )
        source = _Source(self, api)
        method = Method(source, start, end, on_query=self.on_question)
        report = method.run()
        labels = label_proposals(report, method)
        self.on_question("span names of the project in the window")
        names_answer = source.stats(
            {"start": iso(start), "end": iso(end), "group_by": ["name"], "limit": 100}
        )
        names = [
            str((group.get("key") or {}).get("name") or "")
            for group in names_answer.get("groups") or []
        ]

        def name_stats(name: str) -> dict:
            self.on_question(f"the figures of {name}")
            return source.stats({"start": iso(start), "end": iso(end), "name": name})

        self.say(analyst_answers.answer(question, report.issues, labels, names, name_stats))

    # -- the report --------------------------------------------------------------------------

    def report(self, prompt: str, report: Report, labels: list[dict]) -> str:
        project = self.spec.get("project") or {}
        title = project.get("name") or f"project {project.get('id', '')}".strip()
        totals, before = report.totals, report.baseline_totals
        lines = [f"# Investigation: {title}", "", "## Overview", ""]
        if prompt:
            lines += [f"Asked: {_short(prompt, 300)}", ""]
        lines += [
            f"- Window: {iso(report.start)} to {iso(report.end)}, against the window before",
            f"- Spans: {totals.get('spans', 0):,} in {totals.get('traces', 0):,} traces "
            f"(before: {before.get('spans', 0):,} in {before.get('traces', 0):,})",
            f"- Errors: {totals.get('errors', 0):,} ({_rate(totals.get('error_rate'))}; "
            f"before {_rate(before.get('error_rate'))})",
            f"- Dimensions looked at: {', '.join(report.dimensions) or 'none found'}",
            f"- Issues: {len(report.issues)}, ranked by severity, then traces affected",
            f"- Proposed eval labels: {len(labels)}" + (f" (in `{LABELS_FILE}`)" if labels else ""),
            "",
            "## Findings",
            "",
        ]
        if report.nothing_notable:
            lines += ["Nothing notable: no medium or high issue in this window.", ""]
        for number, issue in enumerate(report.issues, 1):
            how = issue.how_much
            lines += [f"### {number}. {issue.title}", ""]
            spans = how.get("spans") or 0
            lines += [f"Affects {_plain(issue.affected, 'trace')} ({_plain(spans, 'span')})."]
            lines += [f"Severity: {issue.severity} · class: {issue.cls}"]
            lines += issue.overview
            for where in issue.where:
                lines.append(
                    f"Where: {where['dimension']}={where['value']}"
                    + (f", {where['share']:.0%} of it" if where.get("share") is not None else "")
                    + (f", {where['lift']:.1f}× the rest" if where.get("lift") else "")
                    + "."
                )
            if issue.since.get("onset"):
                lines.append(
                    f"Since: {issue.since['onset']}"
                    + (f" until {issue.since['end']}" if issue.since.get("end") else "")
                    + "."
                )
            if issue.merged:
                lines.append("Also seen as: " + "; ".join(issue.merged) + ".")
            lines += ["", "Evidence:", ""]
            lines += [
                f"- trace `{trace_id}` — `agentloop-traces trace {trace_id}`"
                for trace_id in issue.evidence[:SAMPLE_TRACES]
            ]
            more = len(issue.evidence) - SAMPLE_TRACES
            if more > 0:
                lines.append(f"- and {_count(more, 'more trace')}")
            lines += [f"- reproduce: `{issue.as_dict()['reproduce']}`", ""]
        lines += ["## What to look at", ""]
        if report.issues:
            lines += [f"{n}. {i.proposed_fix}" for n, i in enumerate(report.issues, 1)]
        else:
            lines += ["Nothing stands out; widen the window or check that traces arrive."]
        return "\n".join(lines) + "\n"


def label_proposals(report: Report, method: Method) -> list[dict]:
    """Eval labels for what the issues show in their evidence traces, with the reason."""
    proposals: list[dict] = []
    seen: set[tuple] = set()

    def propose(span: dict, name: str, label: str, score: float, why: str) -> None:
        key = (span.get("span_id"), name)
        if key in seen or not span.get("span_id"):
            return
        seen.add(key)
        proposals.append(
            {
                "span_id": span["span_id"],
                "trace_id": span.get("trace_id"),
                "name": name,
                "label": label,
                "score": score,
                "explanation": why,
            }
        )

    for issue in report.issues:  # a fact is a fact at any severity: the labels say why
        traces = method.trace_spans
        name = issue.component.get("name")
        for trace_id in issue.evidence[:LABELS_PER_ISSUE]:
            spans = traces.get(trace_id) or []
            if issue.cls == "retrieval_gap":
                answers = [s for s in spans if s.get("kind") == "LLM"]
                empty = [
                    s
                    for s in spans
                    if s.get("name") == name and DOCUMENT_KEY not in (s.get("attributes") or {})
                ]
                if empty and answers:
                    answer = max(answers, key=lambda s: s.get("start_time") or "")
                    propose(
                        answer,
                        "hallucination",
                        "hallucinated",
                        0,
                        f"`{name}` returned no documents in this trace, so the answer of "
                        f"`{answer.get('name')}` has nothing to ground it ({issue.title}).",
                    )
            elif issue.cls == "tool_loop":
                calls = [s for s in spans if s.get("name") == name]
                if calls:
                    propose(
                        calls[0],
                        "tool_calling",
                        "incorrect",
                        0,
                        f"The agent called `{name}` {len(calls)} times in this trace "
                        "(a loop: the same call repeated).",
                    )
            elif issue.cls not in ("latency_regression", "token_blowup", "eval_failure"):
                for span in spans:
                    if (
                        span.get("name") == name
                        and span.get("status_code") == "ERROR"
                        and span.get("kind") == "LLM"
                    ):
                        propose(
                            span,
                            "correctness",
                            "incorrect",
                            0,
                            f"The LLM call ended in an error ({getattr(issue, 'exception', '')}), "
                            f"so it produced no usable answer ({issue.title}).",
                        )
    return proposals


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _rate(value) -> str:
    return "–" if value is None else f"{value:.2%}"


def _plain(n: int, noun: str) -> str:
    # No thousands separator: Signal's markdown reader counts "Affects N traces (M spans)".
    return f"{n} {noun}" + ("" if n == 1 else "s")
