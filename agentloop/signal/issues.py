"""Signal's issues: what its runs found, kept across runs, and their lifecycle.

A Signal run (the analyst, or Claude Code with Signal's prompt) writes
`artifacts/signal-issues.json`: a list of issues in the shape below. Runs that
wrote only a markdown investigation (older runs, a model that ignored the
schema) are read from `investigation.md` instead (`parse_investigation`).

    {"fingerprint": "error:tool:lookup_order:ConnectionError@attr:region=eu-west",
     "class": "error_concentration", "title": "...", "severity": "high|medium|low",
     "component": {"kind": "tool", "name": "lookup_order"},
     "where": [{"dimension": "attr:region", "value": "eu-west", "lift": 11.3, "share": 0.92}],
     "since": {"onset": ISO-8601 | null, "end": ISO-8601 | null},
     "how_much": {"rate": 0.31, "baseline_rate": 0.004, "affected_traces": 130,
                  "share_of_traffic": 0.05, "spans": 140, "cost_usd": null},
     "evidence": [trace ids], "proposed_fix": "...", "overview": "...",
     "reproduce": "agentloop-traces spans ...", "span_filter": {...}, "merged": [titles]}

The fingerprint is the issue's identity (agentloop/runner/signal_method.py
makes it from what failed and where, never from counts or times), so the same
failure seen by the next run updates the same SignalIssue and adds a sighting.

Lifecycle (SignalIssue.state): an issue is open when first seen; resolved when
its fingerprint has been absent from at least RESOLVE_AFTER_PASSES passes over
at least RESOLVE_AFTER; regressed when a resolved issue is seen again. Every
collected run is a SignalPass, what "absent" is counted against.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import OrderedDict
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from agentloop.automations.models import AutomationFire
from agentloop.runs.models import ArtifactKind, RunStatus
from agentloop.signal.models import (
    IssueState,
    Severity,
    SignalIssue,
    SignalPass,
    SignalSighting,
)

ISSUES_FILE = "signal-issues.json"
RESOLVE_AFTER = timedelta(hours=1)
RESOLVE_AFTER_PASSES = 2
MAX_ISSUES = 100  # per run: more is a broken run, not a real list
MAX_EVIDENCE = 20
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")
SEVERITIES = {s.value for s in Severity}


# -- what a run wrote -------------------------------------------------------------------------


def _text(value, limit: int) -> str:
    return str(value or "")[:limit]


def _number(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def normalize_issue(raw) -> dict | None:
    """One issue as a run wrote it, checked and clipped; None if it is not one.

    A run's artifacts come from a sandbox: nothing is trusted, nothing raises.
    """
    if not isinstance(raw, dict):
        return None
    title = _text(raw.get("title"), 600).strip()
    fingerprint = _text(raw.get("fingerprint"), 600).strip()
    if not title or not fingerprint:
        return None
    component = raw.get("component") if isinstance(raw.get("component"), dict) else {}
    where = []
    for entry in raw.get("where") if isinstance(raw.get("where"), list) else []:
        if isinstance(entry, dict) and entry.get("dimension"):
            where.append(
                {
                    "dimension": _text(entry.get("dimension"), 200),
                    "value": _text(entry.get("value"), 500),
                    "lift": _number(entry.get("lift")),
                    "share": _number(entry.get("share")),
                }
            )
    since = raw.get("since") if isinstance(raw.get("since"), dict) else {}
    how_much = raw.get("how_much") if isinstance(raw.get("how_much"), dict) else {}
    evidence = [
        str(t).lower()
        for t in (raw.get("evidence") if isinstance(raw.get("evidence"), list) else [])
        if isinstance(t, str) and _TRACE_ID.match(t)
    ]
    severity = raw.get("severity") if raw.get("severity") in SEVERITIES else Severity.LOW
    span_filter = raw.get("span_filter") if isinstance(raw.get("span_filter"), dict) else {}
    return {
        "fingerprint": fingerprint,
        "class": _text(raw.get("class"), 32) or "other",
        "title": title,
        "severity": severity,
        "component": {
            "kind": _text(component.get("kind"), 32),
            "name": _text(component.get("name"), 500),
        },
        "where": where[:5],
        "since": {
            "onset": _text(since.get("onset"), 40) or None,
            "end": _text(since.get("end"), 40) or None,
        },
        "how_much": {k: _number(v) for k, v in how_much.items() if isinstance(k, str)},
        "evidence": list(OrderedDict.fromkeys(evidence))[:MAX_EVIDENCE],
        "proposed_fix": _text(raw.get("proposed_fix"), 4000),
        "overview": _text(raw.get("overview"), 8000),
        "reproduce": _text(raw.get("reproduce"), 1000),
        "span_filter": {
            str(k)[:40]: str(v)[:500] for k, v in span_filter.items() if k in FILTER_KEYS
        },
        "merged": [_text(t, 600) for t in raw.get("merged") or [] if isinstance(t, str)][:20],
    }


def issues_from_json(text: str) -> list[dict] | None:
    """The issues of a signal-issues.json, or None when it is not valid JSON."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("issues")
    if not isinstance(data, list):
        return None
    return [issue for raw in data[:MAX_ISSUES] if (issue := normalize_issue(raw))]


def issues_of_run(run) -> list[dict] | None:
    """What a finished Signal run found, or None when it wrote nothing readable."""
    artifacts = run.artifacts.order_by("-pk")
    structured = artifacts.filter(kind=ArtifactKind.FILE, name=ISSUES_FILE).first()
    if structured is not None:
        issues = issues_from_json(structured.content)
        if issues is not None:
            return issues
    investigation = artifacts.filter(kind=ArtifactKind.INVESTIGATION).first()
    if investigation is None:
        return None
    return parse_investigation(investigation.content)


# -- the markdown fallback ----------------------------------------------------------------------

_HEADING = re.compile(r"^### \d+\. (?P<title>.+)$")
_AFFECTS = re.compile(r"^Affects (?P<traces>\d+) traces? \((?P<spans>\d+) spans?\)\.")
_TRACE = re.compile(r"^- trace `(?P<id>[0-9a-fA-F]{1,32})`")
_REPRODUCE = re.compile(r"^- reproduce: `(?P<cmd>.+)`$")
_ERROR_TITLE = re.compile(r"^`(?P<name>.+)` fails with (?P<exc>.+)$")
FILTER_KEYS = {"status", "name", "kind", "annotation", "session_id", "user_id", "attr"}


def parse_investigation(text: str) -> list[dict]:
    """The findings of an investigation.md, in its order, as issues (severity unknown: low)."""
    findings, current, section = [], None, ""
    fixes: list[str] = []
    for line in (text or "").splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
            current = None
            continue
        heading = _HEADING.match(line)
        if heading and section == "findings":
            current = {"title": heading["title"].strip(), "overview": [], "evidence": [],
                       "reproduce": "", "traces": 0, "spans": 0}  # fmt: skip
            findings.append(current)
            continue
        if section == "what to look at":
            match = re.match(r"^\d+\. (.+)$", line)
            if match:
                fixes.append(match[1].strip())
            continue
        if current is None:
            continue
        if m := _AFFECTS.match(line):
            current["traces"], current["spans"] = int(m["traces"]), int(m["spans"])
        elif m := _TRACE.match(line):
            current["evidence"].append(m["id"])
        elif m := _REPRODUCE.match(line):
            current["reproduce"] = m["cmd"]
        elif line.strip() and line.strip() != "Evidence:" and not line.startswith("- and "):
            current["overview"].append(line.strip())
    issues = []
    for number, finding in enumerate(findings):
        kind, key = issue_key(finding["title"])
        issue = normalize_issue(
            {
                "fingerprint": key,
                "class": kind,
                "title": finding["title"],
                "severity": Severity.LOW,
                "evidence": finding["evidence"],
                "proposed_fix": fixes[number] if number < len(fixes) else "",
                "overview": "\n".join(finding["overview"]),
                "reproduce": finding["reproduce"],
                "span_filter": span_filter_of(finding["reproduce"]),
                "how_much": {
                    "affected_traces": max(finding["traces"], len(finding["evidence"])),
                    "spans": finding["spans"],
                },
            }
        )
        if issue:
            issues.append(issue)
    return issues


def issue_key(title: str) -> tuple[str, str]:
    """(kind, key) of a markdown finding: errors by span name + exception type, else title."""
    if m := _ERROR_TITLE.match(title):
        return "error", f"error:{m['name']}:{m['exc']}"
    if title.startswith("eval "):
        return "eval", f"eval:{title}"
    if "slow" in title:
        return "latency", f"latency:{title}"
    if "token" in title:
        return "tokens", f"tokens:{title}"
    return "other", f"other:{title}"


def span_filter_of(command: str) -> dict:
    """`agentloop-traces spans --status ERROR --name chat` → explorer parameters.

    The window (start/end) is left out: the issue is about the failure, and the
    explorer then shows its newest spans."""
    try:
        parts = shlex.split(command or "")
    except ValueError:
        return {}
    params = {}
    for flag, value in zip(parts, parts[1:], strict=False):
        if flag.startswith("--") and not value.startswith("--"):
            key = flag[2:].replace("-", "_")
            if key in FILTER_KEYS:
                params[key] = value
    return params


# -- keeping them ------------------------------------------------------------------------------


def record_run(run, issues: list[dict], *, now=None) -> list[SignalIssue]:
    """Upsert what one Signal run found, then resolve what stayed absent long enough."""
    now = now or timezone.now()
    kept = []
    with transaction.atomic():
        signal_pass, created = SignalPass.objects.get_or_create(
            run=run, defaults={"project_id": run.project_id, "at": now}
        )
        if not created:  # read already: reading twice changes nothing
            return list(SignalIssue.objects.filter(project_id=run.project_id, last_run=run))
        for found in issues:
            issue = (
                SignalIssue.objects.select_for_update()
                .filter(project_id=run.project_id, key=found["fingerprint"])
                .first()
            ) or SignalIssue(project_id=run.project_id, key=found["fingerprint"], first_seen_at=now)
            _apply(issue, found, run, now)
            SignalSighting.objects.get_or_create(
                issue=issue,
                run=run,
                defaults={
                    "seen_at": now,
                    "affected_traces": issue.affected_traces,
                    "span_count": issue.span_count,
                    "severity": issue.severity,
                },
            )
            kept.append(issue)
        signal_pass.issues_seen = len(kept)
        signal_pass.save(update_fields=["issues_seen"])
        resolve_absent(run.project_id, now, seen={i.pk for i in kept})
    return kept


def _apply(issue: SignalIssue, found: dict, run, now) -> None:
    how_much = found["how_much"]
    issue.title = found["title"]
    issue.kind = found["class"]
    issue.severity = found["severity"]
    issue.component = found["component"]
    issue.where = found["where"]
    issue.since = found["since"]
    issue.how_much = how_much
    issue.merged = found["merged"]
    issue.overview = found["overview"]
    issue.proposed_fix = found["proposed_fix"] or issue.proposed_fix
    issue.trace_ids = found["evidence"] or issue.trace_ids
    issue.reproduce = found["reproduce"]
    issue.span_filter = found["span_filter"]
    issue.affected_traces = int(how_much.get("affected_traces") or len(found["evidence"]))
    issue.span_count = int(how_much.get("spans") or 0)
    issue.last_run = run
    issue.mark_seen(now)
    issue.save()


def resolve_absent(project_id, now, seen: set[int] = frozenset()) -> int:
    """Resolve the project's open or regressed issues that Signal has not seen for
    RESOLVE_AFTER and RESOLVE_AFTER_PASSES passes; how many it resolved."""
    resolved = 0
    active = SignalIssue.objects.filter(
        project_id=project_id, last_seen_at__lte=now - RESOLVE_AFTER
    )
    for issue in active.exclude(state=IssueState.RESOLVED).exclude(pk__in=seen):
        passes_since = SignalPass.objects.filter(
            project_id=project_id, at__gt=issue.last_seen_at
        ).count()
        if passes_since >= RESOLVE_AFTER_PASSES:
            issue.mark_resolved(now)
            issue.save(update_fields=["state", "resolved_at"])
            resolved += 1
    return resolved


def collect(now=None, *, project=None) -> int:
    """Read the Signal runs that finished since the last pass; how many it read.

    The schedule calls it every minute for all projects; the Signal tab calls it
    for its project before it renders, so a finished run shows at once.
    """
    now = now or timezone.now()
    fires = (
        AutomationFire.objects.filter(
            automation__signal_role__gt="", run__status=RunStatus.SUCCEEDED
        )
        .exclude(context__has_key="signal_collected")
        .select_related("run")
    )
    if project is not None:
        fires = fires.filter(automation__project=project)
    done = 0
    for fire in fires.order_by("run__finished_at", "pk")[:100]:
        issues = issues_of_run(fire.run)
        if issues is not None:
            record_run(fire.run, issues, now=now)
        fire.context = {**fire.context, "signal_collected": now.isoformat()}
        fire.save(update_fields=["context"])
        done += 1
    return done


def collect_task() -> int:
    """The scheduled task: how many finished Signal runs this pass read."""
    return collect()
