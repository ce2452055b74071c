"""Signal's method: find what is wrong in a project's traces — what, where, since when,
how much — as issues with evidence and a proposed fix. Standard library only.

It reads the store only through two questions, so the same method runs inside a
sandbox over HTTP (the analyst harness, through agentloop-traces' client) and
in-process on the server (benchmarks):

    source.stats(params) -> dict        GET /api/v1/projects/<id>/analytics (docs/api.md)
    source.spans(params, limit) -> list GET /api/v1/projects/<id>/spans, newest first
    source.annotations(params, limit)   GET /api/v1/projects/<id>/annotations

Every aggregate is the database's, over the whole window (never the newest N
spans). The method, for a window W and the window of the same length before it
(the baseline):

1. **Components.** Spans, errors and latency per (kind, span name), now and in
   the baseline. **Dimensions** worth breaking down by: attributes of a sample
   of spans that take few values (region, tier, model, prompt version…).
2. **Detectors**, each asking a few aggregate questions:
   - errors per (span name, exception type): rate against the baseline; the
     dimension value where they concentrate (share of the errors, lift of its
     rate over the rest); their shape in time buckets — since when (an onset)
     or a burst (start and end, refined with finer buckets);
   - latency per span name: an onset where the median jumps and stays up;
   - token and cost blow-ups per (LLM span name, model): tokens per call;
   - eval failures per (eval, span name), with dimension and onset;
   - retrieval gaps: RETRIEVER spans that returned no documents, tied to the
     eval failures in the same traces;
   - tool-call loops: one tool called many times within one trace.
3. **Issues, not rows.** A root span's copy of its child's error, and a latency
   rise made of the same timeouts, fold into the one issue ("merged").
4. **Severity** from rate × reach against the baseline: background noise
   (scattered low rates, no concentration, no change) is low; "nothing notable"
   when nothing is above it.
5. **Evidence** that shows the issue and no other: traces matching the issue's
   own filter, each used by one issue only.

An issue is a dict in the shape agentloop.signal.issues reads (its docstring);
its fingerprint names what failed and where, never counts or times, so the
next run's sighting of the same failure updates the same issue.
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
import threading
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

WINDOW_BUCKETS = 48  # time buckets per window (30 min over 24 h)
FINE_FACTOR = 6  # a burst's or an onset's edges are read again in buckets this much finer
MAX_DIMENSIONS = 4
ERROR_GROUPS = {
    "status": "ERROR",
    "group_by": ["name", "exception.type"],
    "limit": 50,
    "baseline": "previous",
}
ROOT_ERROR_GROUPS = {
    "status": "ERROR",
    "root": "true",
    "group_by": ["name", "exception.type"],
    "limit": 50,
}
SERIES_SECONDS = 3600  # buckets of the per-name series (latency, tokens)
WORTH_A_LOOK = 0.002  # an error rate below this, over the whole window, is background
DIMENSION_SAMPLE = 400
DIMENSION_MAX_VALUES = 12
MIN_ERRORS = 3
MIN_SPANS_LATENCY = 40
EVIDENCE = 10
LOOP_MIN_CALLS = 6
EVAL_SAMPLE = 2000
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}

# Attribute keys that identify one thing each (useless to break down by) or hold text.
_SKIP_KEY_PARTS = (
    "id",
    "input",
    "output",
    "message",
    "content",
    "text",
    "prompt",
    "documents",
    "query",
    "url",
    "token_count",
    "cost",
    "score",
    "explanation",
    "exception",
    "timestamp",
)
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
TIMEOUT_WORDS = ("timeout", "timedout", "deadline")
RATE_LIMIT_WORDS = ("ratelimit", "rate_limit", "toomanyrequests", "429", "throttl")


def is_failing_label(label: str | None, score=None) -> bool:
    text = str(label or "").strip().lower()
    if text in FAILING_LABELS:
        return True
    if text in PASSING_LABELS:
        return False
    return isinstance(score, int | float) and not isinstance(score, bool) and score < 0.5


# -- time --------------------------------------------------------------------------------------


def window_ending(end: datetime, length: timedelta) -> tuple[datetime, datetime]:
    """The window of `length` before `end`, its start moved back to a whole hour:
    its buckets then start on the hours the store keeps totals for, which answer
    them without reading every span (traces/rollups.py). It covers at most an
    hour more than asked."""
    return (end - length).replace(minute=0, second=0, microsecond=0), end


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _interval(seconds: float) -> str:
    seconds = max(60, int(seconds))
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


# -- what the detectors find --------------------------------------------------------------------


@dataclass
class Issue:
    fingerprint: str
    cls: str
    title: str
    component: dict
    filters: dict  # span filters that select the issue's spans (for evidence and reproduce)
    how_much: dict
    severity: str = "low"
    where: list = field(default_factory=list)
    since: dict = field(default_factory=lambda: {"onset": None, "end": None})
    overview: list = field(default_factory=list)
    proposed_fix: str = ""
    merged: list = field(default_factory=list)
    evidence: list = field(default_factory=list)
    evidence_window: tuple | None = None  # (start, end) to draw evidence from

    @property
    def affected(self) -> int:
        return int(self.how_much.get("affected_traces") or 0)

    def as_dict(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "class": self.cls,
            "title": self.title,
            "severity": self.severity,
            "component": self.component,
            "where": self.where,
            "since": self.since,
            "how_much": self.how_much,
            "evidence": self.evidence,
            "proposed_fix": self.proposed_fix,
            "overview": "\n".join(self.overview),
            "reproduce": reproduce_command(self.filters, self.evidence_window),
            "span_filter": _explorer_filter(self.filters),
            "merged": self.merged,
        }


def reproduce_command(filters: dict, window: tuple | None) -> str:
    parts = ["agentloop-traces", "spans"]
    if window and window[0]:
        parts += ["--start", iso(window[0])]
    if window and window[1]:
        parts += ["--end", iso(window[1])]
    for key, value in filters.items():
        for item in value if isinstance(value, list) else [value]:
            parts += [f"--{key.replace('_', '-')}", str(item)]
    return " ".join(shlex.quote(p) for p in parts)


def _explorer_filter(filters: dict) -> dict:
    keep = {}
    for key in ("status", "name", "kind", "annotation"):
        if key in filters:
            keep[key] = str(filters[key])
    if filters.get("attr"):
        keep["attr"] = str(filters["attr"][0])
    return keep


# -- the method ---------------------------------------------------------------------------------


@dataclass
class Report:
    start: datetime
    end: datetime
    totals: dict
    baseline_totals: dict
    dimensions: list[str]
    issues: list[Issue]
    queries: int

    @property
    def nothing_notable(self) -> bool:
        return not any(i.severity in ("high", "medium") for i in self.issues)


class Method:
    """One investigation of one window. `on_query(description)` is told of every
    question asked (the analyst shows them in the transcript)."""

    def __init__(self, source, start: datetime, end: datetime, *, on_query=None):
        self.source = source
        self.start, self.end = start, end
        self.length = end - start
        self.baseline = (start - self.length, start)
        seconds = int(self.length.total_seconds() // WINDOW_BUCKETS)
        # Whole five minutes where it can: the store's rollups are kept per five
        # minutes and per hour, and buckets on their edges are answered from them.
        self.bucket_seconds = max(60, seconds - seconds % 300 if seconds >= 300 else seconds)
        self.on_query = on_query or (lambda text: None)
        self.queries = 0
        self.kinds: dict[str, str] = {}  # span name -> kind
        self.components: dict[tuple[str, str], dict] = {}
        self.trace_spans: dict[str, list[dict]] = {}  # the traces read for evidence
        self._answers: dict[str, dict] = {}
        self._lock = threading.Lock()

    # -- asking ------------------------------------------------------------------------

    def window(self, start=None, end=None) -> dict:
        return {"start": iso(start or self.start), "end": iso(end or self.end)}

    def stats(self, what: str, **params) -> dict:
        """One aggregate question; the same question twice is asked once."""
        query = {**self.window(), **params}
        key = json.dumps(query, sort_keys=True)
        with self._lock:
            answer = self._answers.get(key)
            if answer is None:
                self.queries += 1
                self.on_query(what)
        if answer is None:
            answer = self.source.stats(query)
            with self._lock:
                self._answers[key] = answer
        return answer

    def prefetch(self, questions: list[tuple[str, dict]]) -> None:
        """Ask these at once, `source.parallel` at a time (the answers wait in the cache
        for the code that reads them in order). A source that cannot take questions
        from several threads (one database transaction) has parallel = 1: no-op."""
        workers = getattr(self.source, "parallel", 1)
        if workers <= 1 or len(questions) <= 1:
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(self.stats, what, **params) for what, params in questions]:
                future.result()

    def spans(self, what: str, limit: int, **params) -> list[dict]:
        query = {**self.window(), **params}
        self.queries += 1
        self.on_query(what)
        return self.source.spans(query, limit)

    # -- the whole ---------------------------------------------------------------------

    def run(self) -> Report:
        self.prefetch(
            [
                ("", dict(group_by=["kind", "name"], limit=100, baseline="previous")),
                (
                    "",
                    dict(
                        group_by=["name"],
                        bucket=_interval(max(self.bucket_seconds, SERIES_SECONDS)),
                        limit=100,
                    ),
                ),  # fmt: skip
                ("", ERROR_GROUPS),
                ("", ROOT_ERROR_GROUPS),
            ]
        )
        # One pass over the window (and the one before) answers the overview, and
        # each component's spans, errors, latency and tokens over time.
        components = self.stats(
            "spans, errors, latency and tokens per component",
            group_by=["kind", "name"],
            limit=100,
            baseline="previous",
        )
        # Each span name over time, in hours (the edges are read again finer where a
        # rise is found): latency and tokens per call.
        over_time = self.stats(
            "latency and tokens per span name over time",
            group_by=["name"],
            bucket=_interval(max(self.bucket_seconds, SERIES_SECONDS)),
            limit=100,
        )
        self.series = {g["key"]["name"]: g.get("buckets") or [] for g in over_time["groups"]}
        totals = components["total"]
        baseline_totals = totals.get("baseline") or {}
        for group in components["groups"]:
            kind, name = group["key"]["kind"], group["key"]["name"]
            self.kinds.setdefault(name, kind)
            self.components[(kind, name)] = group
        self.totals = totals
        self.dimensions = self.discover_dimensions()  # the app's own: region, tier, …
        issues: list[Issue] = []
        if totals.get("spans"):
            issues += self.error_issues()
            issues += self.latency_issues()
            issues += self.token_issues()
            issues += self.eval_issues()
            issues += self.retrieval_issues(issues)
            issues += self.loop_issues()
        issues = merge_restatements(issues)
        for issue in issues:
            issue.severity = severity_of(issue, totals)
        issues.sort(key=lambda i: (SEVERITY_ORDER[i.severity], -i.affected, i.title))
        self.assign_evidence(issues)
        return Report(
            self.start,
            self.end,
            totals,
            baseline_totals,
            self.dimensions,
            issues,
            self.queries,
        )

    # -- dimensions ---------------------------------------------------------------------

    def discover_dimensions(self, **filters) -> list[str]:
        """Attribute keys that take a few values on a sample of the spans of `filters`
        (all spans by default): where to look. A component has its own (a prompt
        template version lives on its LLM span only), so each is sampled apart."""
        key = tuple(sorted((k, str(v)) for k, v in filters.items()))
        cache = self.__dict__.setdefault("_dimensions", {})
        if key in cache:
            return cache[key]
        sample = self.spans(
            f"a sample of {describe(filters)}, for the dimensions to break down by",
            DIMENSION_SAMPLE,
            **filters,
        )
        values: dict[str, Counter] = {}
        for span in sample:
            for name, value in (span.get("attributes") or {}).items():
                if isinstance(value, float) or not isinstance(value, str | bool | int):
                    continue
                if _skip_key(name) or (isinstance(value, str) and len(value) > 60):
                    continue
                values.setdefault(name, Counter())[str(value)] += 1
        share = 0.5 if filters else 0.2
        candidates = []
        for name, counter in values.items():
            present = sum(counter.values())
            if present < max(10, len(sample) * share):
                continue
            if not 2 <= len(counter) <= DIMENSION_MAX_VALUES:
                continue
            candidates.append((-present, -len(counter), name))
        kept: list[str] = []
        for _, _, name in sorted(candidates):
            # A key whose value another kept key decides (llm.provider by llm.model_name)
            # breaks nothing down further.
            if not any(_determines(sample, other, name) for other in kept):
                kept.append(name)
        cache[key] = [f"attr:{name}" for name in kept[:MAX_DIMENSIONS]]
        return cache[key]

    def concentration(
        self, filters: dict, failing: dict | None = None, *, dominant: bool = False
    ) -> list[dict]:
        """The dimension value where failures concentrate among the spans of `filters`:
        [{"dimension", "value", "share", "lift"}] (the strongest), or [].

        Failures are ERROR spans, or with `failing` the spans of those filters (a
        failing eval label, an empty retrieval) among the spans of `filters`.
        `share` is the value's part of the failures; `lift` how many times its
        failure rate is the rest's. A value must hold at least half of the
        failures, at three times the rest's rate. `dominant`: the failing spans are
        nearly all the population's errors, so its error counts stand for them."""
        best = None
        component = {k: filters[k] for k in ("name", "kind") if k in filters}
        dimensions = self.discover_dimensions(**component)
        limit = DIMENSION_MAX_VALUES + 4
        questions = [("", {"group_by": [d], "limit": limit, **filters}) for d in dimensions]
        if failing is not None and not dominant:
            questions += [("", {"group_by": [d], "limit": limit, **failing}) for d in dimensions]
        self.prefetch(questions)
        for dimension in dimensions:
            label = _label(dimension)
            population = self.stats(
                f"{describe(filters)} by {dimension}",
                group_by=[dimension],
                limit=DIMENSION_MAX_VALUES + 4,
                **filters,
            )
            if failing is None or dominant:
                rows = [
                    (g["key"][label], g.get("errors") or 0, g["spans"])
                    for g in population["groups"]
                ]
                total_failing = population["total"].get("errors") or 0
            else:
                bad = self.stats(
                    f"{describe(failing)} by {dimension}",
                    group_by=[dimension],
                    limit=DIMENSION_MAX_VALUES + 4,
                    **failing,
                )
                failing_by = {g["key"][label]: g["spans"] for g in bad["groups"]}
                rows = [
                    (g["key"][label], failing_by.get(g["key"][label], 0), g["spans"])
                    for g in population["groups"]
                ]
                total_failing = bad["total"].get("spans") or 0
            total_spans = population["total"].get("spans") or 0
            for value, fails, spans in rows:
                if value is None or fails < MIN_ERRORS or not total_failing:
                    continue
                rest_spans, rest_fails = total_spans - spans, total_failing - fails
                if rest_spans <= 0:
                    continue
                rate, rest_rate = fails / spans, rest_fails / rest_spans
                lift = rate / rest_rate if rest_rate else math.inf
                share = fails / total_failing
                if share >= 0.5 and lift >= 3:
                    lift = min(lift, 999.0)
                    score = share * math.log(1 + lift)
                    if best is None or score > best[0]:
                        best = (score, dimension, value, share, lift)
        if best is None:
            return []
        _, dimension, value, share, lift = best
        return [
            {
                "dimension": dimension,
                "value": value,
                "share": round(share, 3),
                "lift": round(lift, 2),
            }
        ]

    # -- shape in time ---------------------------------------------------------------------

    def shape(self, filters: dict, *, failing: dict | None = None):
        """Since when: ("onset", at) when the rate rose and stayed up, ("burst", start,
        end) when it rose and fell back, or None. With `failing`, the rate is
        failing spans (those filters) over all spans of `filters`; else errors.

        The window's buckets are split where the rate changes most (find_shape: a
        likelihood-ratio test over all the counts, not bucket by bucket), then the
        edges are found again in buckets FINE_FACTOR times finer."""
        bucket = _interval(self.bucket_seconds)
        series = self._series(filters, failing, bucket, self.start, self.end)
        found = find_shape(series)
        if found is None:
            return None
        fine = _interval(max(60, self.bucket_seconds // FINE_FACTOR))
        step = timedelta(seconds=self.bucket_seconds)
        if found[0] == "burst":
            lo, hi = max(self.start, found[1] - step), min(self.end, found[2] + step)
            refined = best_segment(self._series(filters, failing, fine, lo, hi))
            return ("burst", *refined) if refined else found
        lo, hi = max(self.start, found[1] - step), min(self.end, found[1] + step)
        refined = best_split(self._series(filters, failing, fine, lo, hi))
        return ("onset", refined[0]) if refined else found

    def _series(self, filters, failing, bucket, start, end) -> list[Point]:
        window = self.window(start, end)
        if failing is not None:
            self.prefetch([("", {"bucket": bucket, **window, **f}) for f in (filters, failing)])
        everything = self.stats(
            f"{describe(filters)} over time", bucket=bucket, **self.window(start, end), **filters
        )["total"]["buckets"]
        if failing is None:
            return [
                Point.of(b, b.get("errors") or 0, timedelta(seconds=_seconds(bucket)))
                for b in everything
            ]
        bad = self.stats(
            f"{describe(failing)} over time", bucket=bucket, **self.window(start, end), **failing
        )["total"]["buckets"]
        return [
            Point.of(b, f.get("spans") or 0, timedelta(seconds=_seconds(bucket)))
            for b, f in zip(everything, bad, strict=False)
        ]

    # -- detectors -----------------------------------------------------------------------

    def name_totals(self, name: str) -> tuple[dict, dict]:
        kind = self.kinds.get(name, "")
        group = self.components.get((kind, name)) or {}
        return group, group.get("baseline") or {}

    def error_issues(self) -> list[Issue]:
        errors = self.stats("ERROR spans per span name and exception type", **ERROR_GROUPS)
        roots = self.stats("ERROR root spans per span name and exception type", **ROOT_ERROR_GROUPS)
        root_keys = {(g["key"]["name"], g["key"]["exception.type"]) for g in roots["groups"]}
        issues = []
        for group in errors["groups"]:
            name, exc = group["key"]["name"], group["key"]["exception.type"] or "an error"
            if group["spans"] < MIN_ERRORS:
                continue
            totals, baseline = self.name_totals(name)
            spans = totals.get("spans") or group["spans"]
            rate = group["spans"] / spans
            b_errors = (group.get("baseline") or {}).get("spans") or 0
            b_spans = baseline.get("spans") or 0
            b_rate = b_errors / b_spans if b_spans else None
            kind = self.kinds.get(name, "")
            filters = {"status": "ERROR", "name": name}
            if exc != "an error":
                filters["exception_type"] = exc
            issue = Issue(
                fingerprint=f"error:{name}:{exc}",
                cls="errors",
                title=f"`{name}` fails with {exc}",
                component={"kind": component_kind(kind), "name": name},
                filters=filters,
                how_much={
                    "rate": round(rate, 4),
                    "baseline_rate": None if b_rate is None else round(b_rate, 4),
                    "affected_traces": group["traces"],
                    "spans": group["spans"],
                    "share_of_traffic": _share(group["traces"], self.totals.get("traces")),
                    "cost_usd": None,
                },
            )
            issue.is_root_copy = (name, group["key"]["exception.type"]) in root_keys and kind in (
                "AGENT",
                "CHAIN",
            )
            issue.exception = exc
            issue.is_error = True
            # Scattered background errors (a rate under WORTH_A_LOOK) get no breakdown.
            worth_a_look = group["spans"] >= 2 * MIN_ERRORS and rate >= WORTH_A_LOOK
            if worth_a_look and not issue.is_root_copy:
                own = {"name": name, "status": "ERROR"}
                if exc != "an error":
                    own["exception_type"] = exc
                dominant = group["spans"] >= 0.85 * (totals.get("errors") or 0)
                issue.where = self.concentration({"name": name}, failing=own, dominant=dominant)
                if issue.where:
                    w = issue.where[0]
                    issue.fingerprint += f"@{w['dimension']}={w['value']}"
                    issue.filters["attr"] = [f"{_attr_key(w['dimension'])}={w['value']}"]
                # The component's own errors first (a dimension value that appeared
                # mid-window, like a prompt version rolled out, shows as an onset there).
                found = self.shape({"name": name}, failing=own)
                if found is None and issue.where:
                    where = _attr_filter(issue.where)
                    found = self.shape({"name": name, **where}, failing={**own, **where})
                _apply_shape(issue, found, self.bucket_seconds)
                self._rate_in_window(issue, {"name": name}, failing=own)
            issue.cls = error_class(issue, exc)
            issue.overview = error_overview(issue, exc, spans)
            issue.proposed_fix = error_fix(issue, exc, kind)
            issues.append(issue)
        return issues

    def _rate_in_window(self, issue: Issue, population: dict, failing: dict | None = None):
        """For an onset or a burst, the failure rate inside its time (the whole window's
        rate stays in `rate_window`): a 10-minute burst at 80 % is not a 0.6 % problem."""
        onset = parse_time(issue.since.get("onset"))
        if onset is None:
            return
        end = parse_time(issue.since.get("end")) or self.end
        inside = self.stats(
            f"{describe(population)} during the issue", **self.window(onset, end), **population
        )["total"]
        if failing is None:
            fails = inside.get("errors") or 0
        else:
            fails = (
                self.stats(
                    f"{describe(failing)} during the issue", **self.window(onset, end), **failing
                )["total"].get("spans")
                or 0
            )
        if inside.get("spans"):
            issue.how_much["rate_window"] = issue.how_much.get("rate")
            issue.how_much["rate"] = round(fails / inside["spans"], 4)
            # How many traces it reached while it happened: what its severity weighs.
            issue.how_much["affected_during"] = (
                inside.get("traces") if failing is None else self._traces(failing, onset, end)
            )

    def _traces(self, filters: dict, start, end) -> int:
        return (
            self.stats(
                f"traces of {describe(filters)} during the issue",
                **self.window(start, end),
                **filters,
            )["total"].get("traces")
            or 0
        )

    def latency_issues(self) -> list[Issue]:
        issues = []
        for (_, name), group in self.components.items():
            if group["spans"] < MIN_SPANS_LATENCY or group.get("p50_ms") is None:
                continue
            baseline = group.get("baseline") or {}
            series = [b for b in self.series.get(name, []) if b.get("spans", 0) >= 3]
            if len(series) < 6:
                continue
            ref = baseline.get("p50_ms") if (baseline.get("spans") or 0) >= 30 else None
            if ref is None:
                ref = statistics.median(b["p50_ms"] for b in series[: max(3, len(series) // 4)])
            if not ref:
                continue
            threshold = max(2.0 * ref, ref + 100.0)
            slow = [b["p50_ms"] >= threshold for b in series]
            onset_index = _onset_index(slow)
            if onset_index is None:
                continue
            onset = parse_time(series[onset_index]["start"])
            after = series[onset_index:]
            after_p50 = statistics.median(b["p50_ms"] for b in after)
            traces = sum(b.get("traces", 0) for b in after)
            kind = self.kinds.get(name, "")
            # The edge, read again in finer buckets.
            step = timedelta(seconds=max(self.bucket_seconds, SERIES_SECONDS))
            fine = self.stats(
                f"latency of `{name}` around its rise",
                bucket=_interval(max(60, self.bucket_seconds // FINE_FACTOR)),
                name=name,
                **self.window(max(self.start, onset - step), min(self.end, onset + step)),
            )["total"]["buckets"]
            for point in fine:
                if (point.get("spans") or 0) >= 2 and (point.get("p50_ms") or 0) >= threshold:
                    onset = parse_time(point["start"])
                    break
            issue = Issue(
                fingerprint=f"latency:{name}",
                cls="latency_regression",
                title=f"`{name}` is {after_p50 / ref:.1f}× slower since {iso(onset)}",
                component={"kind": component_kind(kind), "name": name},
                filters={"name": name, "min_duration_ms": int(threshold)},
                how_much={
                    "rate": round(after_p50 / ref, 2),
                    "baseline_rate": 1.0,
                    "p50_before_ms": round(ref, 1),
                    "p50_after_ms": round(after_p50, 1),
                    "affected_traces": traces,
                    "spans": sum(b.get("spans", 0) for b in after),
                    "share_of_traffic": _share(traces, self.totals.get("traces")),
                    "cost_usd": None,
                },
                since={"onset": iso(onset), "end": None},
                evidence_window=(onset, self.end),
            )
            issue.where = self.latency_where(name, onset, threshold)
            issue.overview = [
                f"The median `{name}` ({kind or 'span'}) took {ref:,.0f} ms before and "
                f"{after_p50:,.0f} ms since {iso(onset)} ({after_p50 / ref:.1f}×); "
                f"{traces} traces ran it since.",
            ]
            if issue.where:
                w = issue.where[0]
                issue.overview.append(
                    f"The slow calls are mostly {w['dimension']}={w['value']} "
                    f"({w['share']:.0%} of them)."
                )
            issue.proposed_fix = (
                f"Find what changed in `{name}` around {iso(onset)} (a deploy, a new model or "
                "index, a larger input) and roll it back or cache/limit the work it does; "
                "the slow calls are in the evidence traces."
            )
            issues.append(issue)
        return issues

    def latency_where(self, name, onset, threshold) -> list[dict]:
        slow = {"name": name, "min_duration_ms": int(threshold)}
        best = []
        window = self.window(onset, self.end)
        for dimension in self.discover_dimensions(name=name):
            slow_by = self.stats(
                f"slow `{name}` calls by {dimension}", group_by=[dimension], **window, **slow
            )
            all_by = self.stats(
                f"`{name}` calls by {dimension}", group_by=[dimension], **window, name=name
            )
            totals = {g["key"][_label(dimension)]: g["spans"] for g in all_by["groups"]}
            slow_total = slow_by["total"]["spans"] or 0
            everything = all_by["total"]["spans"] or 0
            for group in slow_by["groups"]:
                value = group["key"][_label(dimension)]
                if value is None or not slow_total or not everything:
                    continue
                share = group["spans"] / slow_total
                base = totals.get(value, 0) / everything
                if share >= 0.6 and base and share / base >= 1.5 and base <= 0.7:
                    if not best or share > best[0]["share"]:
                        best = [{"dimension": dimension, "value": value, "share": round(share, 3),
                                 "lift": round(share / base, 2)}]  # fmt: skip
        return best

    def token_issues(self) -> list[Issue]:
        """Per LLM span name whose tokens per call rose (from the components' buckets),
        which model it is, and since when."""
        risen = []
        for (kind, name), group in self.components.items():
            if kind != "LLM" or not group.get("total_tokens"):
                continue
            series = [b for b in self.series.get(name, []) if b.get("spans", 0) >= 3]
            per_call = [b["total_tokens"] / b["spans"] for b in series]
            if len(per_call) >= 6:
                early = statistics.median(per_call[: max(3, len(per_call) // 4)])
                if early and max(per_call) >= 1.3 * early:  # worth breaking down by model
                    risen.append(name)
        groups = []
        for name in risen:
            groups += self.stats(
                f"tokens and cost of `{name}` per model over time",
                kind="LLM",
                name=name,
                group_by=["name", "model_name"],
                bucket=_interval(self.bucket_seconds),
                limit=20,
                baseline="previous",
            )["groups"]
        result = {"groups": groups}
        models_per_name = Counter(g["key"]["name"] for g in result["groups"])
        issues = []
        for group in result["groups"]:
            name, model = group["key"]["name"], group["key"]["model_name"]
            series = [b for b in group.get("buckets") or [] if b.get("spans", 0) >= 3]
            if len(series) < 6 or not group.get("total_tokens"):
                continue
            per_call = [b["total_tokens"] / b["spans"] for b in series]
            baseline = group.get("baseline") or {}
            if (baseline.get("spans") or 0) >= 30 and baseline.get("total_tokens"):
                ref = baseline["total_tokens"] / baseline["spans"]
            else:
                ref = statistics.median(per_call[: max(3, len(per_call) // 4)])
            if not ref:
                continue
            up = [value >= 2.0 * ref for value in per_call]
            onset_index = _onset_index(up)
            if onset_index is None:
                continue
            onset = parse_time(series[onset_index]["start"])
            after = series[onset_index:]
            # The edge, read again in finer buckets: the bucket the rise falls in also
            # holds the calls before it, which are neither the onset nor affected.
            fine_onset, before_edge = self._token_edge(name, model, onset, ref)
            if fine_onset is not None:
                onset = fine_onset
                after = [_minus(after[0], before_edge), *after[1:]]
            spans_after = sum(b["spans"] for b in after)
            after_tokens = sum(b["total_tokens"] for b in after) / max(1, spans_after)
            cost_after = sum((b.get("cost") or 0) for b in after)
            cost_calls = [b["cost"] / b["spans"] for b in series if b.get("cost")]
            extra_cost = None
            if cost_calls:
                ref_cost = statistics.median(cost_calls[: max(3, len(cost_calls) // 4)])
                extra_cost = round(max(0.0, cost_after - ref_cost * spans_after), 4)
            traces = sum(b.get("traces", 0) for b in after)
            issue = Issue(
                fingerprint=f"tokens:{name}:{model}",
                cls="token_blowup",
                title=f"`{name}` ({model}) uses {after_tokens / ref:.1f}× the tokens per call "
                f"since {iso(onset)}",
                component={"kind": "llm", "name": name},
                filters={"kind": "LLM", "name": name},
                how_much={
                    "rate": round(after_tokens / ref, 2),
                    "baseline_rate": 1.0,
                    "tokens_per_call_before": round(ref),
                    "tokens_per_call_after": round(after_tokens),
                    "affected_traces": traces,
                    "spans": spans_after,
                    "share_of_traffic": _share(traces, self.totals.get("traces")),
                    "cost_usd": round(cost_after, 4) if cost_after else None,
                    "extra_cost_usd": extra_cost,
                },
                since={"onset": iso(onset), "end": None},
                evidence_window=(onset, self.end),
            )
            if models_per_name[name] >= 2 and model:
                issue.where = [
                    {"dimension": "attr:llm.model_name", "value": model, "share": 1.0, "lift": None}
                ]
                issue.fingerprint += "@model"
            issue.overview = [
                f"`{name}` calls on {model} used {ref:,.0f} tokens each before and "
                f"{after_tokens:,.0f} since {iso(onset)}, over {spans_after} calls"
                + (f", costing ${cost_after:,.2f}" if cost_after else "")
                + "."
            ]
            issue.proposed_fix = (
                f"Look at what `{name}` sends to {model} since {iso(onset)}: history or "
                "documents it no longer trims, a prompt template that grew, a loop re-sending "
                "context. Cap the prompt (truncate history, limit retrieved documents)."
            )
            issues.append(issue)
        return issues

    def _token_edge(self, name: str, model, onset: datetime, ref: float):
        """(the first fine bucket at twice the tokens per call, the totals of the onset's
        coarse bucket before it), or (None, None) when the fine buckets show no edge."""
        bucket_end = min(self.end, onset + timedelta(seconds=self.bucket_seconds))
        fine = self.stats(
            f"tokens of `{name}` on {model} around their rise",
            kind="LLM",
            name=name,
            group_by=["model_name"],
            bucket=_interval(max(60, self.bucket_seconds // FINE_FACTOR)),
            limit=20,
            **self.window(onset, bucket_end),
        )["groups"]
        points = next((g.get("buckets") or [] for g in fine if g["key"]["model_name"] == model), [])
        before = {"spans": 0, "total_tokens": 0, "cost": 0.0, "traces": 0}
        for point in points:
            spans = point.get("spans") or 0
            if spans >= 2 and (point.get("total_tokens") or 0) / spans >= 2.0 * ref:
                return parse_time(point["start"]), before
            for key in before:
                before[key] += point.get(key) or 0
        return None, None

    def eval_issues(self) -> list[Issue]:
        pairs = self._eval_pairs()
        issues = []
        for eval_name, labels in pairs.items():
            failing = [label for label in labels if is_failing_label(label)]
            if not failing:
                continue
            by_name_all = self.stats(
                f"spans judged by `{eval_name}` per span name",
                annotation=eval_name,
                group_by=["name"],
                limit=50,
                baseline="previous",
            )
            totals = {g["key"]["name"]: g for g in by_name_all["groups"]}
            for label in failing:
                annotation = f"{eval_name}:{label}"
                by_name = self.stats(
                    f"spans labelled {annotation} per span name",
                    annotation=annotation,
                    group_by=["name"],
                    limit=50,
                    baseline="previous",
                )
                for group in by_name["groups"]:
                    name = group["key"]["name"]
                    judged_group = totals.get(name) or {}
                    judged_spans = judged_group.get("spans") or group["spans"]
                    if group["spans"] < MIN_ERRORS:
                        continue
                    rate = group["spans"] / judged_spans
                    b_fail = (group.get("baseline") or {}).get("spans") or 0
                    b_judged = (judged_group.get("baseline") or {}).get("spans") or 0
                    b_rate = b_fail / b_judged if b_judged else None
                    kind = self.kinds.get(name, "")
                    issue = Issue(
                        fingerprint=f"eval:{eval_name}:{label}:{name}",
                        cls="eval_failure",
                        title=f"`{name}` fails the `{eval_name}` eval ({label})",
                        component={"kind": component_kind(kind), "name": name},
                        filters={"annotation": annotation, "name": name},
                        how_much={
                            "rate": round(rate, 4),
                            "baseline_rate": None if b_rate is None else round(b_rate, 4),
                            "affected_traces": group["traces"],
                            "spans": group["spans"],
                            "share_of_traffic": _share(group["traces"], self.totals.get("traces")),
                            "cost_usd": None,
                        },
                    )
                    issue.eval = (eval_name, label)
                    if group["spans"] >= 2 * MIN_ERRORS:
                        issue.where = self.concentration(
                            {"annotation": eval_name, "name": name},
                            failing={"annotation": annotation, "name": name},
                        )
                        if issue.where:
                            w = issue.where[0]
                            issue.fingerprint += f"@{w['dimension']}={w['value']}"
                            issue.filters["attr"] = [f"{_attr_key(w['dimension'])}={w['value']}"]
                        found = self.shape(
                            {"annotation": eval_name, "name": name, **_attr_filter(issue.where)},
                            failing={
                                "annotation": annotation,
                                "name": name,
                                **_attr_filter(issue.where),
                            },  # fmt: skip
                        )
                        _apply_shape(issue, found, self.bucket_seconds)
                        self._rate_in_window(
                            issue,
                            {"annotation": eval_name, "name": name},
                            failing={"annotation": annotation, "name": name},
                        )
                    where = (
                        f", mostly {issue.where[0]['dimension']}={issue.where[0]['value']}"
                        if issue.where
                        else ""
                    )
                    issue.overview = [
                        f"{group['spans']} of {judged_spans} `{name}` spans judged by "
                        f"`{eval_name}` were labelled {label} ({rate:.1%}{where})."
                    ]
                    issue.proposed_fix = eval_fix(name, eval_name, label, kind, issue.where)
                    issues.append(issue)
        return issues

    def _eval_pairs(self) -> dict[str, set[str]]:
        """The evals of the project and the labels they give, from its newest annotations."""
        self.queries += 1
        self.on_query("the evals and their labels")
        pairs: dict[str, set[str]] = OrderedDict()
        for annotation in self.source.annotations({}, EVAL_SAMPLE):
            if annotation.get("name"):
                pairs.setdefault(annotation["name"], set()).add(annotation.get("label") or "")
        return pairs

    def retrieval_issues(self, found: list[Issue]) -> list[Issue]:
        retrievers = [name for (kind, name) in self.components if kind == "RETRIEVER"]
        issues = []
        for name in retrievers:
            empty = self.stats(
                f"`{name}` calls that returned no documents",
                kind="RETRIEVER",
                name=name,
                attr_missing=DOCUMENT_KEY,
                baseline="previous",
            )["total"]
            totals, baseline = self.name_totals(name)
            if (empty.get("spans") or 0) < MIN_ERRORS or not totals.get("spans"):
                continue
            if empty["spans"] >= totals["spans"]:
                continue  # it never records documents the OpenInference way: nothing to tell
            rate = empty["spans"] / totals["spans"]
            b_empty = (empty.get("baseline") or {}).get("spans") or 0
            b_rate = b_empty / baseline["spans"] if baseline.get("spans") else None
            if rate < 0.01:
                continue
            empty_sample = self.spans(
                f"traces where `{name}` returned nothing",
                500,
                kind="RETRIEVER",
                name=name,
                attr_missing=DOCUMENT_KEY,
            )
            empty_traces = {s.get("trace_id") for s in empty_sample}
            # The evals' failures in the same stretch of time as that sample (the
            # newest of each would barely overlap on a busy project).
            times = [parse_time(s["start_time"]) for s in empty_sample if s.get("start_time")]
            stretch = self.window(min(times), max(times) + timedelta(seconds=1)) if times else {}
            tied = ""
            eval_failures = [i for i in found if i.cls == "eval_failure"]
            ties = []
            for other in eval_failures:
                failing = {
                    s.get("trace_id")
                    for s in self.spans(
                        f"traces failing {other.filters['annotation']}",
                        5000,
                        annotation=other.filters["annotation"],
                        **stretch,
                    )
                }
                overlap = len(empty_traces & failing)
                if failing and overlap >= max(2, 0.3 * len(empty_traces)):
                    ties.append((overlap, other, len(failing)))
            tied_eval = None
            if ties:
                # The eval that fails most more often after an empty retrieval than
                # anywhere else (its rate there over its rate overall), not merely the
                # commonest one.
                sampled = len(empty_traces)
                overlap, other, n_failing = max(
                    ties,
                    key=lambda t: (t[0] / sampled) / max(t[1].how_much.get("rate") or 0, 1e-6),
                )
                tied_eval = getattr(other, "eval", None)
                tied = (
                    f" {overlap} of the {len(empty_traces)} traces sampled with an empty "
                    f"retrieval also fail `{other.filters['annotation']}` later in the trace "
                    f"({overlap / max(1, n_failing):.0%} of that eval's failures sampled)."
                )
            issue = Issue(
                fingerprint=f"retrieval_gap:{name}",
                cls="retrieval_gap",
                title=f"`{name}` returns no documents in {rate:.1%} of calls",
                component={"kind": "retriever", "name": name},
                filters={"kind": "RETRIEVER", "name": name, "attr_missing": DOCUMENT_KEY},
                how_much={
                    "rate": round(rate, 4),
                    "baseline_rate": None if b_rate is None else round(b_rate, 4),
                    "affected_traces": empty.get("traces") or 0,
                    "spans": empty["spans"],
                    "share_of_traffic": _share(empty.get("traces"), self.totals.get("traces")),
                    "cost_usd": None,
                },
            )
            issue.tied_to = [t[1].fingerprint for t in ties]
            issue.tied_eval = tied_eval  # its evidence shows the empty retrieval and that failure
            issue.where = self.concentration(
                {"kind": "RETRIEVER", "name": name},
                failing={"kind": "RETRIEVER", "name": name, "attr_missing": DOCUMENT_KEY},
            )
            found_shape = self.shape(
                {"kind": "RETRIEVER", "name": name},
                failing={"kind": "RETRIEVER", "name": name, "attr_missing": DOCUMENT_KEY},
            )
            _apply_shape(issue, found_shape, self.bucket_seconds)
            self._rate_in_window(
                issue,
                {"kind": "RETRIEVER", "name": name},
                failing={"kind": "RETRIEVER", "name": name, "attr_missing": DOCUMENT_KEY},
            )
            issue.overview = [
                f"{empty['spans']} of {totals['spans']} `{name}` calls returned no documents."
                + tied
            ]
            issue.proposed_fix = (
                f"When `{name}` finds nothing, the answer is made up from no context: check the "
                "index and the query it builds (filters, embedding model), and make the agent "
                "say it found nothing instead of answering."
            )
            issues.append(issue)
        return issues

    def loop_issues(self) -> list[Issue]:
        calls = self.stats(
            "tool calls per trace and tool",
            kind="TOOL",
            group_by=["trace_id", "name"],
            limit=100,
        )
        per_tool: dict[str, list[dict]] = {}
        for group in calls["groups"]:
            per_tool.setdefault(group["key"]["name"], []).append(group)
        issues = []
        for name, groups in per_tool.items():
            totals, _ = self.name_totals(name)
            typical = (totals.get("spans") or 0) / max(1, totals.get("traces") or 1)
            looping = [g for g in groups if g["spans"] >= max(LOOP_MIN_CALLS, 3 * typical)]
            if len(looping) < 2:
                continue
            biggest = max(g["spans"] for g in looping)
            issue = Issue(
                fingerprint=f"tool_loop:{name}",
                cls="tool_loop",
                title=f"`{name}` is called in a loop (up to {biggest} times in one trace)",
                component={"kind": "tool", "name": name},
                filters={"kind": "TOOL", "name": name},
                how_much={
                    "rate": round(len(looping) / max(1, totals.get("traces") or 1), 4),
                    "baseline_rate": None,
                    "affected_traces": len(looping),
                    "spans": sum(g["spans"] for g in looping),
                    "share_of_traffic": _share(len(looping), self.totals.get("traces")),
                    "cost_usd": None,
                    "calls_per_trace_typical": round(typical, 2),
                },
            )
            issue.evidence_traces = [
                g["key"]["trace_id"] for g in sorted(looping, key=lambda g: -g["spans"])
            ]
            issue.overview = [
                f"In {len(looping)} traces `{name}` ran {LOOP_MIN_CALLS} or more times "
                f"(up to {biggest}), where a trace usually calls it {typical:.1f} times."
            ]
            issue.proposed_fix = (
                f"Stop the agent re-calling `{name}` with the same input: cap tool calls per "
                "turn, return its result in a form the model accepts, and tell the model in the "
                "prompt that a repeated call returns the same answer."
            )
            issues.append(issue)
        return issues

    # -- evidence ------------------------------------------------------------------------

    def _before_broad_onsets(self, issue, issues, window):
        """The issue's evidence window, ended before another issue that touches most
        traces from its onset on (a latency or token rise) begins, where it can."""
        start = window[0] if window else self.start
        end = (window[1] if window else None) or self.end
        onsets = [
            parse_time(other.since["onset"])
            for other in issues
            if other is not issue
            and other.cls in TIMED_CLASSES
            and other.since.get("onset")
            and start + timedelta(minutes=30) < parse_time(other.since["onset"]) < end
        ]
        if onsets:
            # An onset is found to within a fine bucket: keep clear of where it may be.
            end = min(onsets) - ONSET_MARGIN
        return (start, end)

    def assign_evidence(self, issues: list[Issue]) -> None:
        """Up to EVIDENCE traces per issue that show it and no other issue found.

        The candidates are the newest traces matching the issue's own filter in
        its window; each is read whole, and kept only when no other issue's
        symptom (`shows`) is in it: a trace of the last two hours may hold the
        slow reranker *and* the tool's timeout, and proves neither alone."""
        fetched = 0
        for issue in issues:
            if getattr(issue, "evidence_traces", None):
                candidates = list(issue.evidence_traces)
            else:
                window = issue.evidence_window
                if issue.since.get("onset"):
                    window = (
                        parse_time(issue.since["onset"]),
                        parse_time(issue.since.get("end")) or self.end,
                    )
                window = self._before_broad_onsets(issue, issues, window)
                spans = self.spans(
                    f"evidence for {issue.title}",
                    4 * EVIDENCE,
                    **issue.filters,
                    **(self.window(window[0], window[1] or self.end) if window else {}),
                )
                candidates = list(
                    OrderedDict.fromkeys(s.get("trace_id") for s in spans if s.get("trace_id"))
                )
            # Only issues that matter compete for evidence: background noise (low)
            # is in many traces and proves nothing.
            others = [o for o in issues if o is not issue and o.severity != "low"]
            chosen = []
            for trace_id in candidates:
                if len(chosen) >= EVIDENCE or fetched >= MAX_TRACES_READ:
                    break
                fetched += 1
                self.queries += 1
                trace_spans = self.trace_spans.get(trace_id)
                if trace_spans is None:
                    trace_spans = flatten_trace(self.source.trace(trace_id))
                    self.trace_spans[trace_id] = trace_spans
                if not shows(issue, trace_spans):
                    continue
                if any(shows(other, trace_spans) for other in others):
                    continue
                chosen.append(trace_id)
            issue.evidence = chosen


def flatten_trace(trace: dict) -> list[dict]:
    """The spans of a trace as the trace API answers it (a tree), in a flat list."""
    spans, stack = [], [n for n in [trace.get("root"), *(trace.get("orphans") or [])] if n]
    while stack:
        node = stack.pop()
        spans.append(node)
        stack.extend(node.get("children") or [])
    return spans


def _exception_type(span: dict) -> str | None:
    for event in span.get("events") or []:
        attributes = event.get("attributes") or {}
        if event.get("name") == "exception" or "exception.type" in attributes:
            return str(attributes.get("exception.type") or "")
    return None


def shows(issue: Issue, spans: list[dict]) -> bool:
    """Whether a trace (its spans) shows the issue's symptom, wherever and whenever.

    Broader than the issue's filter on purpose (no dimension, no window but an
    onset's): it decides which traces are evidence of one issue only."""
    name = issue.component.get("name")
    mine = [s for s in spans if s.get("name") == name]
    if not mine:
        return False
    onset = parse_time(issue.since.get("onset")) if issue.cls in TIMED_CLASSES else None
    if onset is not None:
        onset -= ONSET_MARGIN  # the true onset may lie a fine bucket earlier
        mine = [s for s in mine if (parse_time(s.get("start_time")) or onset) >= onset]
    if issue.cls == "latency_regression":
        return bool(mine)
    if issue.cls == "token_blowup":
        model = issue.where[0]["value"] if issue.where else None
        return any(s.get("kind") == "LLM" and (model is None or s.get("model_name") == model)
                   for s in mine)  # fmt: skip
    if issue.cls == "eval_failure":
        eval_name, label = getattr(issue, "eval", (None, None))
        return any(
            a.get("name") == eval_name and (a.get("label") or "") == label
            for s in mine
            for a in s.get("annotations") or []
        )
    if issue.cls == "retrieval_gap":
        empty = any(DOCUMENT_KEY not in (s.get("attributes") or {}) for s in mine)
        tied = getattr(issue, "tied_eval", None)
        if not empty or tied is None:
            return empty
        return any(
            a.get("name") == tied[0] and (a.get("label") or "") == tied[1]
            for s in spans
            for a in s.get("annotations") or []
        )
    if issue.cls == "tool_loop":
        return len(mine) >= LOOP_MIN_CALLS
    exception = getattr(issue, "exception", None)
    return any(
        s.get("status_code") == "ERROR"
        and (exception in (None, "an error") or _exception_type(s) == exception)
        for s in mine
    )


TIMED_CLASSES = {"latency_regression", "token_blowup"}
ONSET_MARGIN = timedelta(minutes=15)
MAX_TRACES_READ = 300


DOCUMENT_KEY = "retrieval.documents.0.document.id"


class Point:
    def __init__(self, start: datetime, length: timedelta, count: int, failing: int):
        self.start, self.length, self.count, self.failing = start, length, count, failing

    @classmethod
    def of(cls, bucket: dict, failing: int, length: timedelta) -> Point:
        return cls(parse_time(bucket["start"]), length, bucket.get("spans") or 0, failing)

    @property
    def rate(self) -> float | None:
        return self.failing / self.count if self.count else None


SHAPE_EVIDENCE = 10.0  # log-likelihood ratio a change must reach (p well below 1e-4)
SHAPE_LIFT = 3.0  # and the rate must be this many times the rest's (plus 2 points)


def _loglik(failing: int, count: int) -> float:
    if count == 0:
        return 0.0
    p = min(max(failing / count, 1e-9), 1 - 1e-9)
    return failing * math.log(p) + (count - failing) * math.log(1 - p)


def _lift_ok(f_in, c_in, f_out, c_out) -> bool:
    if c_in == 0 or f_in < 4:
        return False
    rate_in = f_in / c_in
    rate_out = f_out / c_out if c_out else 0.0
    return rate_in >= SHAPE_LIFT * rate_out + 0.02


def best_split(series: list[Point]):
    """(at, evidence) of the split after which the rate is highest against before, or None."""
    best = None
    total_f = sum(p.failing for p in series)
    total_c = sum(p.count for p in series)
    f_before = c_before = 0
    for index in range(1, len(series)):
        f_before += series[index - 1].failing
        c_before += series[index - 1].count
        f_after, c_after = total_f - f_before, total_c - c_before
        if not _lift_ok(f_after, c_after, f_before, c_before):
            continue
        ratio = _loglik(f_before, c_before) + _loglik(f_after, c_after) - _loglik(total_f, total_c)
        if best is None or ratio > best[1]:
            best = (series[index].start, ratio)
    return best


def best_segment(series: list[Point], max_share: float = 1.0):
    """(start, end, evidence) of the stretch of buckets whose rate stands out most, or None."""
    best = None
    total_f = sum(p.failing for p in series)
    total_c = sum(p.count for p in series)
    longest = max(1, int(max_share * len(series)))
    for first in range(len(series)):
        f_in = c_in = 0
        for last in range(first, min(len(series), first + longest)):
            f_in += series[last].failing
            c_in += series[last].count
            f_out, c_out = total_f - f_in, total_c - c_in
            if not _lift_ok(f_in, c_in, f_out, c_out):
                continue
            ratio = _loglik(f_in, c_in) + _loglik(f_out, c_out) - _loglik(total_f, total_c)
            if best is None or ratio > best[2]:
                end = series[last].start + series[last].length
                best = (series[first].start, end, ratio)
    return best


def find_shape(series: list[Point]):
    """("onset", at) | ("burst", start, end) | None, from failing/count per bucket.

    A burst is a stretch of at most a third of the window, after which the rate
    falls back; an onset a rise that lasts to the window's end. Whichever
    explains the counts better wins, if it is strong enough (SHAPE_EVIDENCE)."""
    if len(series) < 4:
        return None
    onset = best_split(series)
    burst = best_segment(series, max_share=0.35)
    if burst and burst[1] >= series[-1].start + series[-1].length - 2 * series[-1].length:
        burst = None  # it lasts to the end: an onset, not a burst
    if burst and burst[0] <= series[0].start:
        burst = None  # up from the window's start: no shape to tell
    candidates = []
    if onset and onset[1] >= SHAPE_EVIDENCE:
        candidates.append((onset[1], ("onset", onset[0])))
    if burst and burst[2] >= SHAPE_EVIDENCE:
        # One more change point: it must explain clearly more than the onset does.
        candidates.append((burst[2] - 5.0, ("burst", burst[0], burst[1])))
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0])[1]


def _minus(bucket: dict, part: dict) -> dict:
    """A bucket's totals without those of its `part` (the same keys, or absent)."""
    return {**bucket, **{key: (bucket.get(key) or 0) - value for key, value in part.items()}}


def _onset_index(up: list[bool]) -> int | None:
    """The first index from which the flags stay mostly up, after a start that was down."""
    if len(up) < 6 or sum(up[: max(2, len(up) // 6)]) > 0:
        return None
    for index in range(1, len(up)):
        after = up[index:]
        if up[index] and len(after) >= 2 and sum(after) / len(after) >= 0.75:
            return index
    return None


def _apply_shape(issue: Issue, found, bucket_seconds: int) -> None:
    if found is None:
        return
    if found[0] == "burst":
        issue.since = {"onset": iso(found[1]), "end": iso(found[2])}
        issue.burst = True
        issue.evidence_window = (found[1], found[2])
    else:
        issue.since = {"onset": iso(found[1]), "end": None}
        issue.evidence_window = (found[1], None)


# -- words -----------------------------------------------------------------------------------------


def describe(filters: dict) -> str:
    parts = []
    for key, value in filters.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append(f"{key}={item}")
    return "spans " + ", ".join(parts) if parts else "all spans"


COMPONENT_KINDS = {
    "TOOL": "tool",
    "RETRIEVER": "retriever",
    "LLM": "llm",
    "RERANKER": "reranker",
    "EMBEDDING": "embedding",
    "AGENT": "agent",
    "CHAIN": "chain",
}


def component_kind(kind: str) -> str:
    return COMPONENT_KINDS.get(kind, "span")


def error_class(issue: Issue, exc: str) -> str:
    if getattr(issue, "burst", False):
        return "error_burst"  # rate limits and 5xx alike; the title and fix say which
    if issue.where and "prompt_template" in issue.where[0]["dimension"]:
        issue.component = {"kind": "prompt", "name": issue.component["name"]}
        return "prompt_regression"
    if issue.where:
        return "error_concentration"
    if issue.since.get("onset"):
        return "error_onset"
    if issue.component.get("kind") == "tool":
        return "tool_error"
    return "errors"


def error_overview(issue: Issue, exc: str, spans: int) -> list[str]:
    how = issue.how_much
    lines = [
        f"{how['spans']} of {spans} `{issue.component['name']}` spans raised {exc} "
        f"({how['rate']:.1%}"
        + (
            f"; {how['baseline_rate']:.1%} in the window before"
            if how.get("baseline_rate") is not None
            else ""
        )
        + f"), in {how['affected_traces']} traces."
    ]
    if issue.where:
        w = issue.where[0]
        lines.append(
            f"{w['share']:.0%} of the errors come from {w['dimension']}={w['value']}, where the "
            f"error rate is {w['lift']:.1f}× the rest's."
        )
    if issue.since.get("end"):
        lines.append(f"A burst from {issue.since['onset']} to {issue.since['end']}.")
    elif issue.since.get("onset"):
        lines.append(f"Since {issue.since['onset']}.")
    return lines


def error_fix(issue: Issue, exc: str, kind: str) -> str:
    name = issue.component["name"]
    word = exc.lower().replace(" ", "")
    where = ""
    if issue.where:
        w = issue.where[0]
        where = f" for {w['dimension'].removeprefix('attr:')}={w['value']}"
    if any(w in word for w in RATE_LIMIT_WORDS):
        return (
            f"`{name}` hits the provider's rate limit{where}: retry with exponential backoff "
            "and jitter, lower the concurrency, or raise the quota; queue rather than fail."
        )
    if any(w in word for w in TIMEOUT_WORDS):
        return (
            f"`{name}` times out{where}: find the slow dependency in the evidence traces, then "
            "raise the timeout only if the work is legitimately long, else add a retry with "
            "backoff and a fallback answer."
        )
    if kind == "TOOL":
        return (
            f"The tool `{name}` fails with {exc}{where}: check the service or endpoint it calls"
            f"{where} (configuration, credentials, availability), handle the error in the tool "
            "and give the model a usable message instead of an exception."
        )
    return (
        f"`{name}` raises {exc}{where}: read the exception events of the evidence spans and "
        "fix the cause in that component; until then catch it and degrade gracefully."
    )


def eval_fix(name, eval_name, label, kind, where) -> str:
    place = ""
    if where:
        place = f" for {where[0]['dimension'].removeprefix('attr:')}={where[0]['value']}"
    if "halluc" in eval_name.lower() or "halluc" in label.lower() or "faith" in eval_name.lower():
        return (
            f"The answers of `{name}` are judged {label}{place}: ground them — tell the prompt to "
            "answer only from the retrieved documents and to say when they do not cover the "
            "question; check the retrieval feeding it in the evidence traces."
        )
    return (
        f"`{name}` fails `{eval_name}`{place}: compare the failing inputs and outputs in the "
        f"evidence with passing ones, and change the prompt of `{name}` (instructions, examples) "
        "for what they get wrong."
    )


# -- issues, not rows ------------------------------------------------------------------------------


def merge_restatements(issues: list[Issue]) -> list[Issue]:
    """Fold a root span's copy of a child's error into the child's issue, a root eval
    failing where a step's issue is into that issue, and a latency rise of a span name
    into that name's timeout issue."""
    by_exception: dict[str, list[Issue]] = {}
    for issue in issues:
        if getattr(issue, "is_error", False):
            by_exception.setdefault(getattr(issue, "exception", ""), []).append(issue)
    kept = []
    for issue in issues:
        if issue.cls == "eval_failure" and issue.component.get("kind") in ("agent", "chain"):
            # The judge of the whole answer fails where a step's own problem is: the
            # root's eval failing in the same place restates that step's issue.
            same_place = [
                other
                for other in issues
                if other is not issue
                and other.where
                and issue.where
                and other.component.get("kind") not in ("agent", "chain")
                and (other.where[0]["dimension"], other.where[0]["value"])
                == (issue.where[0]["dimension"], issue.where[0]["value"])
            ]
            if same_place:
                same_place[0].merged.append(issue.title)
                continue
        if getattr(issue, "is_root_copy", False):
            children = [i for i in by_exception.get(issue.exception, []) if i is not issue
                        and not getattr(i, "is_root_copy", False)]  # fmt: skip
            if children:
                child = max(children, key=lambda i: i.affected)
                child.merged.append(issue.title)
                continue
        if issue.cls == "latency_regression":
            name = issue.component["name"]
            timeouts = [
                other
                for other in issues
                if other is not issue
                and other.component.get("name") == name
                and any(w in getattr(other, "exception", "").lower() for w in TIMEOUT_WORDS)
            ]
            if timeouts:
                timeouts[0].merged.append(issue.title)
                continue
        kept.append(issue)
    return kept


def severity_of(issue: Issue, totals: dict) -> str:
    """high / medium / low from rate × reach against the baseline.

    A failure that is flat in time, spread over every dimension and no higher than
    before is the app's background (low) unless its rate alone is alarming; one
    that started, burst, concentrates or rose is judged by its rate where and
    when it happens and by how many traces it reached."""
    how = issue.how_much
    affected = issue.affected
    if how.get("affected_during") is not None:
        affected = how["affected_during"]  # a burst is as big as the traces it reached
    reach = affected / (totals.get("traces") or 1)
    rate = how.get("rate") or 0.0
    baseline = how.get("baseline_rate")
    if issue.cls in ("latency_regression", "token_blowup"):
        if rate >= 3 and affected >= 20:
            return "high"
        if rate >= 2 and affected >= 10:
            return "medium"
        return "low"
    if issue.cls == "tool_loop":
        return "high" if affected >= 10 else "medium" if affected >= 3 else "low"
    timed = bool(issue.since.get("onset"))
    concentrated = bool(issue.where)
    rose = baseline is not None and rate >= 3 * max(baseline, 0.001)
    if not (timed or concentrated or rose):
        if rate >= 0.25 and affected >= 8:
            return "medium"  # a quarter of the calls failing is never background
        alarming = 0.25 if issue.cls == "eval_failure" else 0.10
        return "medium" if rate >= alarming and affected >= 20 else "low"
    if rate < 0.01:
        return "low"
    if affected >= 10 and rate >= 0.2:
        return "high"
    if affected >= 30 and (rate >= 0.05 or reach >= 0.02):
        return "high"
    if affected >= 8 and rate >= 0.02:
        return "medium"
    return "low"


# -- helpers ------------------------------------------------------------------------------------


def _determines(sample: list[dict], a: str, b: str) -> bool:
    """Whether, on these spans, the value of attribute `a` always decides `b`'s."""
    seen: dict = {}
    for span in sample:
        attributes = span.get("attributes") or {}
        if a in attributes and b in attributes:
            if seen.setdefault(str(attributes[a]), str(attributes[b])) != str(attributes[b]):
                return False
    return bool(seen)


def _skip_key(key: str) -> bool:
    parts = key.lower().replace("-", "_").split(".")
    last = parts[-1]
    if last.endswith("_id") or last == "id" or key.startswith("openinference.span.kind"):
        return True
    return any(p in _SKIP_KEY_PARTS for p in parts) or any(c.isdigit() for c in parts)


def _label(dimension: str) -> str:
    return dimension


def _attr_key(dimension: str) -> str:
    return dimension.removeprefix("attr:")


def _attr_filter(where: list[dict]) -> dict:
    if not where:
        return {}
    w = where[0]
    return {"attr": [f"{_attr_key(w['dimension'])}={w['value']}"]}


def _share(part, whole) -> float | None:
    if not part or not whole:
        return None
    return round(part / whole, 4)


def _seconds(interval: str) -> int:
    unit = {"s": 1, "m": 60, "h": 3600}[interval[-1]]
    return int(interval[:-1]) * unit
