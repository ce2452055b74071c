"""What the session page and the websocket consumer both render.

The first page load and every websocket push use the same partials of
studio/transcript.html, fed by the functions here, so an event looks the same
whether it was there at load time or arrived live.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import timezone

from agentloop.formatting import zone_named
from agentloop.review.actions import ReviewError, label_items
from agentloop.runs.models import EventKind, Run, RunEvent

# One websocket frame carries at most this many events; a consumer that is
# further behind sends several frames in a row.
FRAME_EVENTS = 200
CONTROLS_KEYS = ("open", "stopping", "ended")
PANEL_KINDS = {EventKind.ARTIFACT, EventKind.STATUS}


def facts_key(run: Run) -> tuple:
    """What the facts panel shows that can change while a run goes on: a frame
    carries the panel only when this differs from what the watcher has."""
    return (
        run.status,
        run.exit_reason,
        run.started_at,
        run.finished_at,
        run.input_tokens,
        run.output_tokens,
        run.cost_usd,
    )


def accepts_followups(run: Run) -> bool:
    """Whether a message now reaches the agent, or (finished) continues the session."""
    return run.stop_requested_at is None or run.is_terminal


def controls_key(run: Run) -> str:
    """What the controls show: a watcher gets them again whenever this changes.

    "open": a message goes to the agent, Stop is there; "stopping": asked to
    stop, nothing to press; "ended": a message continues the session.
    """
    if run.is_terminal:
        return "ended"
    if run.stop_requested_at is not None:
        return "stopping"
    return "open"


def tool_names(run_id: int, events) -> dict[str, str]:
    """tool_call id → tool name for the tool results among `events` (one query)."""
    wanted = {
        str(e.payload.get("tool_call_id"))
        for e in events
        if e.kind == EventKind.TOOL_RESULT and e.payload.get("tool_call_id")
    }
    if not wanted:
        return {}
    names = {}
    calls = RunEvent.objects.filter(run_id=run_id, kind=EventKind.TOOL_CALL).values_list(
        "payload", flat=True
    )
    for payload in calls:
        call_id = str(payload.get("id", ""))
        if call_id in wanted:
            names[call_id] = payload.get("name", "")
    return names


def events_after(
    run_id: int, after: int, limit: int | None = None, upto: int | None = None
) -> list[RunEvent]:
    rows = RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")
    if upto is not None:
        rows = rows.filter(seq__lte=upto)
    return list(rows[:limit] if limit else rows)


def _run_with_relations(run_id: int) -> Run:
    return Run.objects.select_related("project__space", "creator").get(pk=run_id)


def controls_context(run: Run, can_use: bool) -> dict:
    return {"run": run, "can_use": can_use, "controls": controls_key(run)}


def artifact_panels(artifacts) -> list[dict]:
    """Each artifact with what its panel shows in place: eval labels as rows
    (or the reason they cannot be read), the rest as it is."""
    panels = []
    for artifact in artifacts:
        panel = {"artifact": artifact, "labels": [], "labels_problem": ""}
        if artifact.kind == "eval_labels":
            try:
                panel["labels"] = label_items(artifact)
            except ReviewError as error:
                panel["labels_problem"] = " ".join(error.messages)
        panels.append(panel)
    return panels


def page_context(run: Run, user) -> dict:
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    from agentloop.teams.access import get_project_for_user

    try:
        get_project_for_user(user, run.project_id, "use")
        can_use = True
    except (PermissionDenied, Http404):
        can_use = False
    run = _run_with_relations(run.pk)
    events = events_after(run.pk, 0)
    return {
        **controls_context(run, can_use),
        "events": events,
        "tool_names": tool_names(run.pk, events),
        "last_seq": events[-1].seq if events else 0,
        "artifacts": artifact_panels(run.artifacts.all()),
    }


def render_frame(
    run_id: int,
    after: int,
    can_use: bool,
    controls_shown: str | None,
    upto: int | None = None,
    facts_shown: tuple | None = None,
    zone: str = "UTC",
) -> dict:
    """The next websocket frame for a watcher who has seen everything up to `after`
    (and, with `upto`, of the events up to that seq only: a frame the consumer
    shares between watchers must not depend on when it was rendered).

    Returns {"html", "last_seq", "controls", "facts", "more"}; html is "" when
    there is nothing new, "more" when the frame is full and more events may
    follow. The facts panel (status, tokens, cost) comes when its facts differ
    from `facts_shown` (the watcher's last: "facts" in the answer), the
    artifacts panel when an artifact or status event is among the new ones, the
    controls when what they show (controls_key) changed since the watcher's
    last frame: Stop turns into "Stopping…" and, once the run ends, into the
    box that continues it, without a reload. (Fifty watchers of a run get
    each frame: a panel repeated for nothing was most of a frame's bytes and a
    good part of its render.)
    """
    events = events_after(run_id, after, FRAME_EVENTS, upto)
    run = _run_with_relations(run_id)
    controls = controls_key(run)
    controls_changed = controls_shown is not None and controls != controls_shown
    facts = facts_key(run)
    if not events and not controls_changed:
        return {
            "html": "",
            "last_seq": after,
            "controls": controls,
            "facts": facts_shown,
            "more": False,
        }
    artifacts_changed = any(e.kind in PANEL_KINDS for e in events)
    context = {
        **controls_context(run, can_use),
        "events": events,
        "tool_names": tool_names(run_id, events),
        "last_seq": events[-1].seq if events else after,
        "artifacts": artifact_panels(run.artifacts.all()) if artifacts_changed else [],
        "artifacts_changed": artifacts_changed,
        "controls_changed": controls_changed and can_use,
        "facts_changed": facts != facts_shown,
        "oob": True,
    }
    # Times in the watcher's zone: frames are shared per zone (consumers.FrameCache).
    with timezone.override(zone_named(zone)):
        html = render_to_string("studio/transcript.html#frame", context)
    return {
        "html": html,
        "last_seq": context["last_seq"],
        "controls": controls,
        "facts": facts,
        "more": len(events) == FRAME_EVENTS,
    }
