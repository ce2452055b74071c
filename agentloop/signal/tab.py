"""What the Signal tab of a project shows: state, issues, and their counts over time.

The chart is drawn as SVG by the template from the geometry computed here (no
chart library, nothing loaded from outside): one stacked bar per day of the
last CHART_DAYS days, the issues Signal saw that day by severity, with a value
axis and each bar's total written above it.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.utils import timezone

from agentloop.runs.models import ACTIVE, RunStatus
from agentloop.signal import actions, issues
from agentloop.signal.models import (
    SEVERITY_RANK,
    IssueState,
    Severity,
    SignalIssue,
    SignalPass,
    SignalSighting,
)

CHART_DAYS = 14
CHART = {"width": 640, "height": 200, "left": 36, "bottom": 24, "top": 16}
SEVERITY_ORDER = [Severity.HIGH, Severity.MEDIUM, Severity.LOW]


def _nice_top(peak: int) -> int:
    """The value axis' top: the peak rounded up to 1, 2 or 5 × a power of ten."""
    if peak <= 4:
        return 4
    power = 10 ** math.floor(math.log10(peak))
    for step in (1, 2, 5, 10):
        if peak <= step * power:
            return step * power
    return 10 * power


def chart(project, now) -> dict:
    """Issues seen per day by severity: bars, axis ticks and labels, in SVG units."""
    start = timezone.localdate(now) - timedelta(days=CHART_DAYS - 1)
    days = [start + timedelta(days=i) for i in range(CHART_DAYS)]
    counts = {day: dict.fromkeys(SEVERITY_ORDER, 0) for day in days}
    seen: set[tuple] = set()
    sightings = SignalSighting.objects.filter(
        issue__project=project, seen_at__date__gte=start
    ).values_list("issue_id", "seen_at", "severity")
    for issue_id, seen_at, severity in sightings:
        day = timezone.localdate(seen_at)
        if day in counts and (issue_id, day) not in seen:  # an issue counts once a day
            seen.add((issue_id, day))
            counts[day][severity if severity in counts[day] else Severity.LOW] += 1
    top = _nice_top(max((sum(c.values()) for c in counts.values()), default=0))
    plot_w = CHART["width"] - CHART["left"] - 8
    plot_h = CHART["height"] - CHART["top"] - CHART["bottom"]
    slot = plot_w / CHART_DAYS
    bars = []
    for n, day in enumerate(days):
        x = CHART["left"] + n * slot + slot * 0.15
        y = CHART["top"] + plot_h
        segments = []
        for severity in reversed(SEVERITY_ORDER):  # low at the bottom, high on top
            value = counts[day][severity]
            height = plot_h * value / top
            y -= height
            if value:
                segments.append(
                    {"severity": severity, "value": value, "y": round(y, 1), "h": round(height, 1)}
                )
        total = sum(counts[day].values())
        bars.append(
            {
                "day": day,
                "x": round(x, 1),
                "w": round(slot * 0.7, 1),
                "cx": round(x + slot * 0.35, 1),
                "total": total,
                "total_y": round(y - 4, 1),
                "segments": segments,
                "counts": counts[day],
            }
        )
    ticks = [
        {"value": value, "y": round(CHART["top"] + plot_h - plot_h * value / top, 1)}
        for value in range(0, top + 1, max(1, top // 4))
    ]
    return {
        **CHART,
        "plot_bottom": CHART["top"] + plot_h,
        "plot_right": CHART["left"] + plot_w,
        "label_y": CHART["height"] - 6,
        "bars": bars,
        "ticks": ticks,
        "total": sum(bar["total"] for bar in bars),
    }


def _order(issue: SignalIssue) -> tuple:
    return (
        issue.state == IssueState.RESOLVED,
        SEVERITY_RANK.get(issue.severity, 3),
        -issue.affected_traces,
        -issue.last_seen_at.timestamp(),
    )


def tab_context(project, *, now=None) -> dict:
    now = now or timezone.now()
    # A Signal run that finished since the schedule's last pass shows at once.
    issues.collect(now, project=project)
    found = sorted(
        SignalIssue.objects.filter(project=project).select_related("last_run"), key=_order
    )
    active = [i for i in found if i.state != IssueState.RESOLVED]
    notable = [i for i in active if i.severity in (Severity.HIGH, Severity.MEDIUM)]
    last_pass = SignalPass.objects.filter(project=project).first()
    running = (
        actions.automations_of(project)
        .filter(fires__run__status__in=[RunStatus.QUEUED, *ACTIVE])
        .exists()
    )
    preset = actions.preset_of(project)
    return {
        "signal_preset": preset,
        "signal_skills": list(preset.skills.all()) if preset else [],
        "github_skills": list(actions.github_skills(project.space)),
        "model_configured": actions.model_configured(),
        "signal_enabled": actions.is_enabled(project),
        "signal_automations": list(actions.automations_of(project).order_by("signal_role")),
        "signal_running": running,
        "last_pass": last_pass,
        "issues": found,
        "active_count": len(active),
        "notable_count": len(notable),
        "resolved_count": len(found) - len(active),
        "nothing_notable": last_pass is not None and not notable,
        "can_propose_fix": bool(
            preset and preset.repository_url and preset.harness == actions.CLAUDE_CODE
        ),
        "chart": chart(project, now),
    }
