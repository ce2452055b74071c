"""The analyst: a built-in harness with no model. Standard library only.

It investigates the bound project's spans in a time window (the last 24 h
unless the spec says otherwise) through the same HTTP path as the
`agentloop-traces` CLI, and writes:
- artifacts/investigation.md: findings ranked by the number of traces they
  affect, each with trace ids and the CLI command that reproduces it;
- artifacts/eval_labels.json: proposed labels (failed LLM calls → correctness=incorrect).

What it looks for: errors grouped by (span name, exception type); latency
outliers per span name (> 3× the median and above a floor); failing eval labels
grouped by eval name; token-heavy LLM calls. Every query it makes is emitted as
a tool_call/tool_result pair, so the transcript shows its work. The same data
and the same `now` give the same files, byte for byte.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentloop.runner.client import ApiError
from agentloop.runner.harnesses.base import Harness, TurnResult
from agentloop.runner.traces_cli import (
    LABELS_FILE,
    CliError,
    TracesApi,
    api_from_env,
    command_for,
    iso,
    propose_labels,
)

DEFAULT_WINDOW = timedelta(hours=24)
MAX_SPANS = 5000  # newest spans read per window; the overview says when it was cut
SAMPLE_TRACES = 5
LATENCY_FACTOR = 3.0
LATENCY_FLOOR_MS = 500.0  # a 3× jump from 2 ms to 6 ms is noise, not a finding
LATENCY_MIN_SPANS = 5  # fewer spans have no meaningful median
TOKEN_FACTOR = 3.0
TOKEN_FLOOR = 4000
FAILING_LABELS = {
    "incorrect",
    "hallucinated",
    "hallucination",
    "fail",
    "failed",
    "failure",
    "wrong",
    "bad",
    "unhelpful",
    "irrelevant",
    "toxic",
    "unsafe",
    "negative",
    "no",
    "false",
}
PASSING_LABELS = {
    "correct",
    "factual",
    "pass",
    "passed",
    "good",
    "helpful",
    "relevant",
    "safe",
    "positive",
    "yes",
    "true",
}


class Stopped(Exception):
    pass


@dataclass
class Finding:
    kind: str  # error | latency | eval | tokens
    title: str
    trace_ids: list[str]  # distinct, newest first
    span_count: int
    command: str
    details: list[str] = field(default_factory=list)
    look_at: str = ""

    @property
    def affected(self) -> int:
        return len(self.trace_ids)


KIND_ORDER = {"error": 0, "eval": 1, "latency": 2, "tokens": 3}


def rank(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.affected, KIND_ORDER[f.kind], -f.span_count, f.title))


def distinct_traces(spans: list[dict]) -> list[str]:
    return list(OrderedDict.fromkeys(s.get("trace_id") for s in spans if s.get("trace_id")))


def exception_of(span: dict) -> tuple[str, str]:
    """(exception type, message) from the span's events, else from its status message."""
    for event in span.get("events") or []:
        attrs = event.get("attributes") or {}
        if event.get("name") == "exception" or "exception.type" in attrs:
            return (
                str(attrs.get("exception.type") or "Exception"),
                str(attrs.get("exception.message") or ""),
            )
    message = span.get("status_message") or ""
    return "(no exception recorded)", message


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def is_failing(annotation: dict) -> bool:
    label = str(annotation.get("label") or "").strip().lower()
    if label in FAILING_LABELS:
        return True
    if label in PASSING_LABELS:
        return False
    score = annotation.get("score")
    return isinstance(score, int | float) and score < 0.5


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


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

    def stop(self) -> None:
        self._stopped.set()

    # -- window -----------------------------------------------------------------------

    def window(self) -> tuple[datetime, datetime]:
        now = self.now or datetime.now(UTC)
        window = self.spec.get("window") or {}
        end = _parse_time(window.get("end")) or now
        start = _parse_time(window.get("start"))
        if start is None:
            hours = self.spec.get("window_hours")
            span = timedelta(hours=float(hours)) if hours else DEFAULT_WINDOW
            start = end - span
        return start, end

    # -- the transcript --------------------------------------------------------------

    def say(self, text: str) -> None:
        self._messages += 1
        self.sink.emit(
            "message",
            {"role": "assistant", "text": text, "message_id": f"analyst-message-{self._messages}"},
        )

    def query(self, command: str, fetch, summarize) -> list | dict:
        """Run one query the way the CLI would, showing the command and a summary."""
        if self._stopped.is_set():
            raise Stopped()
        self._calls += 1
        call_id = f"analyst-{self._calls}"
        self.sink.emit(
            "tool_call", {"id": call_id, "name": "agentloop-traces", "input": {"command": command}}
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

    # -- the turn ------------------------------------------------------------------------

    def run_turn(self, prompt: str) -> TurnResult:
        try:
            api = self.api or api_from_env(self.env)
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
        window = {"start": iso(start), "end": iso(end)}
        hours = (end - start).total_seconds() / 3600

        self.say(
            f"Looking at the spans of the last {hours:g} h ({window['start']} to {window['end']})."
        )
        spans = self.query(
            command_for("spans", window, max_items=MAX_SPANS),
            lambda: list(api.spans(window, limit=1000, max_items=MAX_SPANS)),
            lambda found: f"{len(found)} spans in {len(distinct_traces(found))} traces",
        )

        self.say("Looking at errors…")
        error_filter = {**window, "status": "ERROR"}
        errors = self.query(
            command_for("spans", error_filter, max_items=MAX_SPANS),
            lambda: list(api.spans(error_filter, limit=1000, max_items=MAX_SPANS)),
            lambda found: f"{len(found)} ERROR spans in {len(distinct_traces(found))} traces",
        )
        findings = self.error_findings(errors, window)

        self.say("Looking at latency outliers per span name…")
        findings += self.latency_findings(spans, window)

        self.say("Looking at failing eval labels…")
        findings += self.eval_findings(spans, window)

        self.say("Looking at token-heavy LLM calls…")
        findings += self.token_findings(spans, window)

        findings = rank(findings)
        labels = self.label_proposals(errors)
        text = self.report(prompt, start, end, spans, errors, findings, labels)
        artifacts = self.workspace / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "investigation.md").write_text(text)
        if labels:
            propose_labels(self.workspace / LABELS_FILE, labels)
        summary = f"Wrote artifacts/investigation.md with {len(findings)} findings" + (
            f" and proposed {len(labels)} eval labels in {LABELS_FILE}." if labels else "."
        )
        if findings:
            summary += f" Top finding: {findings[0].title} ({findings[0].affected} traces)."
        self.say(summary)

    # -- analyses -----------------------------------------------------------------------------

    def error_findings(self, errors: list[dict], window: dict) -> list[Finding]:
        groups: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
        for span in errors:
            groups.setdefault((span.get("name", ""), exception_of(span)[0]), []).append(span)
        findings = []
        for (name, exc_type), group in groups.items():
            message = next((exception_of(s)[1] for s in group if exception_of(s)[1]), "")
            details = [f"{_count(len(group), 'ERROR span')} named `{name}` raised {exc_type}."]
            if message:
                details.append(f"Message (newest): “{_short(message)}”")
            findings.append(
                Finding(
                    kind="error",
                    title=f"`{name}` fails with {exc_type}",
                    trace_ids=distinct_traces(group),
                    span_count=len(group),
                    command=command_for("spans", {**window, "status": "ERROR", "name": name}),
                    details=details,
                    look_at=f"Why `{name}` raises {exc_type}: open the newest trace and read the "
                    "span's input and exception event.",
                )
            )
        return findings

    def latency_findings(self, spans: list[dict], window: dict) -> list[Finding]:
        by_name: OrderedDict[str, list[dict]] = OrderedDict()
        for span in spans:
            if isinstance(span.get("duration_ms"), int | float):
                by_name.setdefault(span.get("name", ""), []).append(span)
        findings = []
        for name, group in by_name.items():
            if len(group) < LATENCY_MIN_SPANS:
                continue
            durations = [s["duration_ms"] for s in group]
            median = statistics.median(durations)
            p95 = percentile(durations, 0.95)
            threshold = max(LATENCY_FACTOR * median, LATENCY_FLOOR_MS)
            slow = [s for s in group if s["duration_ms"] > threshold]
            if not slow:
                continue
            slowest = max(s["duration_ms"] for s in slow)
            kind = group[0].get("kind") or "UNKNOWN"
            findings.append(
                Finding(
                    kind="latency",
                    title=f"`{name}` ({kind}) is sometimes slow",
                    trace_ids=distinct_traces(slow),
                    span_count=len(slow),
                    command=command_for("spans", {**window, "name": name}),
                    details=[
                        f"{len(slow)} of {len(group)} spans took more than {_ms(threshold)} "
                        f"(3× the median of {_ms(median)}); "
                        f"p95 {_ms(p95)}, slowest {_ms(slowest)}.",
                        f"In the command's output, look for `duration_ms` > {threshold:.0f}.",
                    ],
                    look_at=f"What the slow `{name}` calls have in common (input size, attributes, "
                    "time of day) compared with the fast ones.",
                )
            )
        return findings

    def eval_findings(self, spans: list[dict], window: dict) -> list[Finding]:
        by_eval: OrderedDict[str, list[tuple[dict, dict]]] = OrderedDict()
        for span in spans:
            for annotation in span.get("annotations") or []:
                if is_failing(annotation):
                    by_eval.setdefault(annotation.get("name", ""), []).append((span, annotation))
        findings = []
        for eval_name, pairs in by_eval.items():
            labelled = [span for span, _ in pairs]
            labels = sorted({str(a.get("label") or f"score {a.get('score')}") for _, a in pairs})
            span_names = sorted({s.get("name", "") for s in labelled})
            plain_labels = {str(a.get("label") or "") for _, a in pairs}
            annotation = (
                f"{eval_name}:{next(iter(plain_labels))}"
                if len(plain_labels) == 1 and "" not in plain_labels
                else eval_name
            )
            explanation = next((a.get("explanation") for _, a in pairs if a.get("explanation")), "")
            details = [
                f"{_count(len(pairs), 'span')} labelled {', '.join(labels)}, named "
                + ", ".join(f"`{n}`" for n in span_names)
                + "."
            ]
            if explanation:
                details.append(f"Explanation (newest): “{_short(explanation)}”")
            findings.append(
                Finding(
                    kind="eval",
                    title=f"eval `{eval_name}` fails",
                    trace_ids=distinct_traces(labelled),
                    span_count=len(pairs),
                    command=command_for("spans", {**window, "annotation": annotation}),
                    details=details,
                    look_at=f"Read the inputs and outputs of the spans failing `{eval_name}`; "
                    "look for a prompt or retrieval change that explains them.",
                )
            )
        return findings

    def token_findings(self, spans: list[dict], window: dict) -> list[Finding]:
        llm = [
            s for s in spans if s.get("kind") == "LLM" and isinstance(s.get("total_tokens"), int)
        ]
        if not llm:
            return []
        median = statistics.median(s["total_tokens"] for s in llm)
        threshold = max(TOKEN_FACTOR * median, TOKEN_FLOOR)
        heavy = [s for s in llm if s["total_tokens"] > threshold]
        if not heavy:
            return []
        biggest = max(heavy, key=lambda s: s["total_tokens"])
        models = sorted({s.get("model_name") or "?" for s in heavy})
        return [
            Finding(
                kind="tokens",
                title="token-heavy LLM calls",
                trace_ids=distinct_traces(heavy),
                span_count=len(heavy),
                command=command_for("spans", {**window, "kind": "LLM"}),
                details=[
                    f"{_count(len(heavy), 'LLM span')} used more than {threshold:,.0f} tokens "
                    f"(3× the median of {median:,.0f}); models: {', '.join(models)}.",
                    f"Largest: `{biggest.get('name')}` with {biggest['total_tokens']:,} tokens "
                    f"in trace `{biggest.get('trace_id')}`.",
                ],
                look_at="Whether the large prompts carry history or documents they do not need.",
            )
        ]

    def label_proposals(self, errors: list[dict]) -> list[dict]:
        proposals = []
        for span in errors:
            if span.get("kind") != "LLM" or not span.get("span_id"):
                continue
            exc_type, message = exception_of(span)
            reason = f"{exc_type}: {_short(message, 200)}" if message else exc_type
            proposals.append(
                {
                    "span_id": span["span_id"],
                    "trace_id": span.get("trace_id"),
                    "name": "correctness",
                    "label": "incorrect",
                    "score": 0,
                    "explanation": f"The LLM call ended in an error ({reason}), "
                    "so it produced no usable answer.",
                }
            )
        return proposals

    # -- the report --------------------------------------------------------------------------

    def report(self, prompt, start, end, spans, errors, findings, labels) -> str:
        project = self.spec.get("project") or {}
        title = project.get("name") or f"project {project.get('id', '')}".strip()
        lines = [f"# Investigation: {title}", "", "## Overview", ""]
        if prompt:
            lines += [f"Asked: {_short(prompt, 300)}", ""]
        lines += [
            f"- Window: {iso(start)} to {iso(end)}",
            f"- Spans read: {len(spans)} in {len(distinct_traces(spans))} traces"
            + (f" (only the newest {MAX_SPANS})" if len(spans) >= MAX_SPANS else ""),
            f"- ERROR spans: {len(errors)} in {len(distinct_traces(errors))} traces",
            f"- Findings: {len(findings)}, ranked by the number of traces affected",
            f"- Proposed eval labels: {len(labels)}" + (f" (in `{LABELS_FILE}`)" if labels else ""),
            "",
            "## Findings",
            "",
        ]
        if not findings:
            lines += [
                "No errors, latency outliers, failing eval labels or token-heavy LLM "
                "calls in this window.",
                "",
            ]
        for number, finding in enumerate(findings, 1):
            shown = finding.trace_ids[:SAMPLE_TRACES]
            more = finding.affected - len(shown)
            lines += [f"### {number}. {finding.title}", ""]
            lines += [
                f"Affects {_count(finding.affected, 'trace')} "
                f"({_count(finding.span_count, 'span')})."
            ]
            lines += finding.details
            lines += ["", "Evidence:", ""]
            lines += [
                f"- trace `{trace_id}` — `agentloop-traces trace {trace_id}`" for trace_id in shown
            ]
            if more > 0:
                lines += [f"- and {_count(more, 'more trace')}"]
            lines += [f"- reproduce: `{finding.command}`", ""]
        lines += ["## What to look at", ""]
        if findings:
            lines += [f"{n}. {f.look_at}" for n, f in enumerate(findings, 1)]
        else:
            lines += ["Nothing stands out; widen the window or check that traces arrive."]
        return "\n".join(lines) + "\n"


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
