"""Automations: when they fire, whether a fire may start a run, and starting it.

    tick(now=None) -> list[AutomationFire]     the django-q2 schedule's task: every
                                               due automation is evaluated once
    run_now(user, automation, now=None)        a manual fire; same admission checks,
                                               does not move the next scheduled fire
    pause(user, automation, reason) / resume(user, automation, now=None)
    save_automation(user, automation)          validate + compute the first fire
    automations_for_user(user), get_automation_for_user(user, id, need)

Exactly one run per fire: a fire is a row keyed by (automation, scheduled
time) under a unique constraint. Whoever inserts it starts the run; a second
scheduler evaluating the same slot gets an IntegrityError and does nothing.
The scheduled time of a cron fire is the latest cron time at or before the
tick, so after downtime the missed fires collapse into one catch-up run.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from agentloop.automations import metrics, triggers
from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.actions import preset_to_config
from agentloop.runs.actions import create_run
from agentloop.runs.models import ACTIVE, RunKind, RunStatus, RunTrigger
from agentloop.teams.access import get_project_for_user, get_space_for_user, spaces_for_user

log = logging.getLogger(__name__)

RUNNING = ACTIVE | {RunStatus.QUEUED}
FAILED = {RunStatus.FAILED, RunStatus.TIMED_OUT}
TRIGGER_OF_REASON = {
    "cron": RunTrigger.CRON,
    "metric": RunTrigger.METRIC,
    "manual": RunTrigger.MANUAL,
    "signal": RunTrigger.SIGNAL,
}


class AutomationError(ValidationError):
    """The message says why, for the person who asked."""


# -- access -------------------------------------------------------------------------


def automations_for_user(user, need: str = "view") -> QuerySet[Automation]:
    return (
        Automation.objects.filter(space__in=spaces_for_user(user, need))
        .select_related("space", "project", "preset")
        .order_by("space__name", "name")
    )


def may_manage(user, automation: Automation) -> bool:
    """docs/roles.md: admins edit and delete any automation of their space; members the
    ones they created; Signal's own are changed through Signal's settings (admins)."""
    if automation.space.can_admin(user):
        return True
    return (
        not automation.signal_role
        and automation.space.can_use(user)
        and automation.created_by_id == getattr(user, "pk", None)
    )


def get_automation_for_user(user, automation_id, need: str = "view") -> Automation:
    """The automation, or Http404 / PermissionDenied; need "manage" (edit, delete) is
    may_manage's, "use" (pause, resume, run now) any member's."""
    try:
        automation = Automation.objects.select_related("project", "preset").get(pk=automation_id)
    except (Automation.DoesNotExist, ValueError, TypeError):
        raise Http404("No such automation.") from None
    try:
        space_need = "use" if need == "manage" else need
        automation.space = get_space_for_user(user, automation.space_id, space_need)
    except Http404:
        raise Http404("No such automation.") from None
    if need == "manage" and not may_manage(user, automation):
        raise PermissionDenied(
            "Only an admin of the space, or the member who created this automation, "
            "may change or delete it."
        )
    return automation


# -- schedule -----------------------------------------------------------------------


def next_fire(automation: Automation, after: datetime) -> datetime:
    if automation.trigger == Automation.CRON:
        return triggers.next_cron_fire(automation.cron_expression, automation.time_zone, after)
    return triggers.next_metric_evaluation(automation.every_minutes, after)


def due_slot(automation: Automation, now: datetime) -> datetime:
    """The scheduled time a tick at `now` stands for (the latest one passed)."""
    if automation.trigger == Automation.CRON:
        return triggers.latest_cron_fire(automation.cron_expression, automation.time_zone, now)
    step = automation.every_minutes * 60
    return datetime.fromtimestamp(int(now.timestamp()) // step * step, tz=now.tzinfo)


def check_automation(automation: Automation) -> None:
    """ValidationError per field unless the automation can be scheduled and run."""
    errors: dict[str, list[str]] = {}
    if automation.preset_id is None:
        errors["preset"] = ["Choose a preset."]
    elif automation.preset.space_id != automation.space_id:
        errors["preset"] = ["Choose a preset of the automation's space."]
    if automation.project_id and automation.project.space_id != automation.space_id:
        errors["project"] = ["Choose a project of the automation's space."]
    if not (automation.prompt or "").strip():
        errors["prompt"] = ["Enter the task the agent should do."]
    if automation.trigger == Automation.CRON:
        try:
            triggers.check_cron(automation.cron_expression, automation.time_zone)
        except ValidationError as error:
            field = "time_zone" if "time zone" in error.messages[0] else "cron_expression"
            errors[field] = error.messages
    elif automation.trigger == Automation.METRIC:
        if automation.metric not in metrics.METRICS:
            errors["metric"] = ["Choose a metric."]
        if automation.comparison not in metrics.COMPARISONS:
            errors["comparison"] = ["Choose a comparison."]
        if automation.threshold is None:
            errors["threshold"] = ["Enter a threshold, a number."]
        elif automation.metric in metrics.RATES and not 0 <= automation.threshold <= 1:
            errors["threshold"] = ["A rate is between 0 and 1: enter e.g. 0.2 for 20 %."]
        elif automation.threshold < 0:
            errors["threshold"] = ["This metric is never negative: enter 0 or more."]
        if automation.every_minutes not in triggers.EVERY_MINUTES:
            errors["every_minutes"] = [
                "Evaluate every " + ", ".join(map(str, triggers.EVERY_MINUTES)) + " minutes."
            ]
        if not 1 <= automation.window_minutes <= 7 * 24 * 60:
            errors["window_minutes"] = ["The window is 1 minute to 7 days (10080 minutes)."]
        if automation.metric in metrics.NEEDS_EVAL and not automation.eval_name:
            errors["eval_name"] = ["Name the eval (the annotation name) this metric reads."]
        if automation.metric == "eval_label_rate" and not automation.eval_label:
            errors["eval_label"] = ["Name the label whose rate this metric measures."]
        if automation.filter_attribute and not automation.filter_value:
            errors["filter_value"] = ["Give the attribute's value, or leave the attribute empty."]
    else:
        errors["trigger"] = ["Choose cron or metric."]
    if automation.max_concurrent < 1:
        errors["max_concurrent"] = ["At least 1 run at a time."]
    if automation.max_consecutive_failures < 1:
        errors["max_consecutive_failures"] = ["At least 1."]
    if errors:
        raise ValidationError(errors)


def save_automation(user, automation: Automation, *, now=None) -> Automation:
    """Create (members) or update (may_manage) an automation; ValidationError stores nothing."""
    now = now or timezone.now()
    get_space_for_user(user, automation.space_id, "use")
    if automation.pk is not None:
        get_automation_for_user(user, automation.pk, "manage")
    check_automation(automation)
    if automation.pk is None:
        automation.created_by = user
        automation.created_at = now
    automation.updated_at = now
    automation.next_fire_at = next_fire(automation, now) if automation.enabled else None
    automation.save()
    return automation


def pause(user, automation: Automation, reason: str = "", *, now=None) -> None:
    get_space_for_user(user, automation.space_id, "use")
    who = user.get_username()
    _pause(automation, reason or f"Paused by {who}.")


def _pause(automation: Automation, reason: str) -> None:
    Automation.objects.filter(pk=automation.pk).update(
        enabled=False, paused_reason=reason, next_fire_at=None
    )
    automation.refresh_from_db()


def resume(user, automation: Automation, *, now=None) -> None:
    """Enable again; earlier failures no longer count towards auto-pause."""
    get_space_for_user(user, automation.space_id, "use")
    now = now or timezone.now()
    if automation.preset_id is None:
        raise AutomationError("Its preset was deleted: choose another preset before resuming.")
    Automation.objects.filter(pk=automation.pk).update(
        enabled=True,
        paused_reason="",
        failures_counted_since=now,
        next_fire_at=next_fire(automation, now),
    )
    automation.refresh_from_db()


# -- admission and firing -------------------------------------------------------------


def admission_problem(automation: Automation, now: datetime) -> str:
    """Why a fire may not start a run now ("" when it may)."""
    if not automation.enabled:
        return automation.paused_reason or "The automation is paused."
    if automation.preset_id is None:
        return "Its preset was deleted."
    if automation.cooldown_minutes and automation.last_fired_at:
        ready = automation.last_fired_at + timedelta(minutes=automation.cooldown_minutes)
        if now < ready:
            return (
                f"Cooling down: the last run started at "
                f"{automation.last_fired_at:%Y-%m-%d %H:%M} UTC, "
                f"the next may start after {ready:%H:%M} UTC."
            )
    running = AutomationFire.objects.filter(automation=automation, run__status__in=RUNNING).count()
    if running >= automation.max_concurrent:
        return (
            f"{running} of its runs are still going (at most {automation.max_concurrent} at once)."
        )
    return ""


def _public(path: str) -> str:
    return settings.AGENTLOOP_PUBLIC_URL.rstrip("/") + path


def trigger_context(
    automation: Automation,
    reason: str,
    scheduled_at: datetime,
    now: datetime,
    measurement: metrics.Measurement | None = None,
) -> dict:
    """What the run's prompt is told about why it started (also stored on the fire)."""
    context = {"reason": reason, "scheduled_at": scheduled_at.isoformat()}
    if automation.trigger == Automation.CRON and reason != "manual":
        previous = automation.last_fired_at
        context["window"] = {
            "start": (previous or scheduled_at - timedelta(hours=24)).isoformat(),
            "end": scheduled_at.isoformat(),
        }
    if automation.trigger == Automation.METRIC:
        params = metrics.evidence_query(
            automation, now, errors_only=automation.metric == "error_rate"
        )
        context.update(
            metric=automation.metric,
            condition=metrics.describe(automation),
            threshold=automation.threshold,
            window={"start": params["start"], "end": params["end"]},
            evidence_filter=params,
            evidence_url=_public(
                reverse("traces-explorer", args=[automation.project_id]) + "?" + urlencode(params)
            ),
        )
        if measurement is not None:
            context.update(value=measurement.value, spans=measurement.spans)
    return context


def prompt_for(automation: Automation, context: dict) -> str:
    lines = [automation.prompt.strip(), "", "---", f"Started by automation “{automation.name}”."]
    if context["reason"] == "manual":
        lines.append(f"Run now, at {context['scheduled_at']}.")
    elif context["reason"] == "cron":
        lines.append(
            f"Scheduled fire at {context['scheduled_at']} ({automation.cron_expression}, "
            f"{automation.time_zone})."
        )
    if "window" in context:
        lines.append(f"Window: {context['window']['start']} to {context['window']['end']}.")
    if context.get("metric"):
        value = context.get("value")
        shown = "no data" if value is None else f"{value:g}"
        lines.append(
            f"Metric: {context['condition']}; value {shown}, threshold {context['threshold']:g}."
        )
        lines.append(f"Evidence spans: {context['evidence_url']}")
        filters = " ".join(f"--{k} {v}" for k, v in context["evidence_filter"].items())
        lines.append(f"Reproduce: agentloop-traces spans {filters}")
    return "\n".join(lines)


# One transaction: the fire and its run commit together (the run's launch is
# enqueued on commit), so a failure in between leaves neither and frees the key.
@transaction.atomic
def fire(
    automation: Automation,
    scheduled_at: datetime,
    reason: str,
    *,
    now: datetime,
    measurement=None,
    user=None,
    check: bool = True,
) -> AutomationFire | None:
    """Record the fire (automation, scheduled_at) and, if admitted, start its run.

    Returns None when this fire key was taken already (another scheduler won).
    """
    problem = admission_problem(automation, now) if check else ""
    context = trigger_context(automation, reason, scheduled_at, now, measurement)
    try:
        with transaction.atomic():
            record = AutomationFire.objects.create(
                automation=automation,
                scheduled_at=scheduled_at,
                fired_at=now,
                reason=reason,
                outcome=AutomationFire.SKIPPED if problem else AutomationFire.STARTED,
                detail=problem,
                context=context,
                fired_by=user,
            )
    except IntegrityError:
        return None
    if problem:
        return record
    try:
        config = preset_to_config(automation.preset)
        run = create_run(
            automation.project,
            config,
            prompt_for(automation, context),
            creator=automation.created_by,
            kind=RunKind.AUTOMATION,
            trigger=RunTrigger.SIGNAL if automation.signal_role else TRIGGER_OF_REASON[reason],
            preset=automation.preset,
        )
    except ValidationError as error:
        record.outcome = AutomationFire.FAILED
        record.detail = "The run could not start: " + " ".join(error.messages)
        record.save(update_fields=["outcome", "detail"])
        return record
    record.run = run
    record.save(update_fields=["run"])
    Automation.objects.filter(pk=automation.pk).update(last_fired_at=now)
    automation.last_fired_at = now
    return record


def run_now(user, automation: Automation, *, now=None) -> AutomationFire:
    """Fire by hand: the same admission checks, and the schedule stays as it was."""
    get_project_for_user(user, automation.project_id, "use")
    now = now or timezone.now()
    problem = admission_problem(automation, now)
    if problem:
        raise AutomationError(f"Not started. {problem}")
    record = fire(automation, now, "manual", now=now, user=user)
    if record is None:
        raise AutomationError("Not started: it was fired this very moment already.")
    if record.outcome != AutomationFire.STARTED:
        raise AutomationError(f"Not started. {record.detail}")
    return record


def process_due(
    automation: Automation, now: datetime, measurements: dict | None = None
) -> AutomationFire | None:
    """Evaluate one due automation: claim its slot, then fire if the trigger holds.

    `measurements` is the tick's memo (see _measure); None evaluates afresh.
    """
    scheduled = automation.next_fire_at
    slot = due_slot(automation, now)
    following = next_fire(automation, now)
    claim = Automation.objects.filter(pk=automation.pk, enabled=True, next_fire_at=scheduled)
    # Moving next_fire_at is a claim on this evaluation (skips double work); the
    # fire key below is what guarantees one run per fire.
    if automation.trigger == Automation.CRON:
        if not claim.update(next_fire_at=following, last_evaluated_at=now):
            return None
        return fire(automation, slot, "cron", now=now)
    # A metric is measured first (a read, shared by the tick's automations with the
    # same signature), so claiming and storing the value are one UPDATE: one commit
    # per automation instead of two, which is most of a 1,000-automation tick.
    measurement = _measure(automation, now, measurements)
    if not claim.update(
        next_fire_at=following, last_evaluated_at=now, last_value=measurement.value
    ):
        return None
    if not metrics.compare(measurement.value, automation.comparison, automation.threshold):
        return None
    return fire(automation, slot, "metric", now=now, measurement=measurement)


def _measure(automation: Automation, now: datetime, measurements: dict | None):
    """One evaluation per metric signature per tick: automations of a project with the
    same metric, window and filters read the same spans at the same `now`, so they
    share one result (1,000 automations are then a few dozen aggregate queries)."""
    if measurements is None:
        return metrics.evaluate(automation, now)
    key = (metrics.signature(automation), now)
    if key not in measurements:
        measurements[key] = metrics.evaluate(automation, now)
    return measurements[key]


def pause_failing(now: datetime) -> list[Automation]:
    """Pause enabled automations whose last N runs (since resumed) all failed."""
    candidates = (
        AutomationFire.objects.filter(automation__enabled=True, run__status__in=FAILED)
        .values_list("automation_id", flat=True)
        .distinct()
    )
    paused = []
    for automation in Automation.objects.filter(pk__in=list(candidates)):
        fires = AutomationFire.objects.filter(
            automation=automation, run__isnull=False, run__status__in=RunStatus.values
        ).exclude(run__status__in=RUNNING)
        if automation.failures_counted_since:
            fires = fires.filter(fired_at__gte=automation.failures_counted_since)
        n = automation.max_consecutive_failures
        last = list(fires.order_by("-fired_at", "-pk").values_list("run__status", flat=True)[:n])
        if len(last) == n and all(status in FAILED for status in last):
            _pause(
                automation,
                f"Paused after {n} failed runs in a row. Look at the last runs, fix the "
                "preset or the prompt, then resume.",
            )
            paused.append(automation)
    return paused


def tick(now: datetime | None = None) -> list[AutomationFire]:
    """Evaluate every due automation once (the django-q2 schedule calls this)."""
    now = now or timezone.now()
    pause_failing(now)
    fired = []
    due = Automation.objects.filter(enabled=True, next_fire_at__lte=now).select_related(
        "project", "preset", "space"
    )
    measurements: dict = {}
    for automation in due:
        try:
            record = process_due(automation, now, measurements)
        except Exception:  # one broken automation must not stop the others
            log.exception("automation %s: evaluation failed", automation.pk)
            continue
        if record is not None:
            fired.append(record)
    return fired


def tick_task() -> int:
    """The scheduled task: how many fires this tick recorded (a small, picklable result)."""
    return len(tick())


def delete_automation(user, automation: Automation) -> str:
    """Delete it (may_manage); its runs stay, their fire records go with it."""
    get_automation_for_user(user, automation.pk, "manage")
    name = automation.name
    automation.delete()
    return name
