"""Automations pages, at /automations/.

Members ("use") create, change, pause, resume and run automations;
viewers look; outsiders get 404. Each view fetches through the
access helpers (via agentloop.automations.actions / runs.access) and calls one function.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from agentloop.automations import actions as automations
from agentloop.automations import metrics, triggers
from agentloop.automations.forms import AutomationForm
from agentloop.automations.models import Automation, AutomationFire
from agentloop.teams.access import get_space_for_user, spaces_for_user


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


# -- automations ----------------------------------------------------------------------------


@login_required
def automation_list(request):
    spaces = list(spaces_for_user(request.user).order_by("name"))
    rows = list(automations.automations_for_user(request.user))
    last_fires = {}
    for fire in (
        AutomationFire.objects.filter(automation__in=rows, run__isnull=False)
        .select_related("run")
        .order_by("automation_id", "-fired_at")
    ):
        last_fires.setdefault(fire.automation_id, fire)
    sections = []
    for space in spaces:
        items = [a for a in rows if a.space_id == space.pk]
        for a in items:
            a.last_run_fire = last_fires.get(a.pk)
            a.trigger_text = _trigger_text(a)
        sections.append(
            {"space": space, "automations": items, "can_use": space.can_use(request.user)}
        )
    return render(request, "automations/list.html", {"sections": sections})


def _trigger_text(automation: Automation) -> str:
    if automation.trigger == Automation.CRON:
        return f"cron {automation.cron_expression} ({automation.time_zone})"
    if automation.threshold is None:
        return "metric"
    return f"{metrics.describe(automation)}, every {automation.every_minutes} min"


@login_required
def automation_detail(request, automation_id):
    automation = automations.get_automation_for_user(request.user, automation_id, "view")
    fires = automation.fires.select_related("run", "fired_by")[:100]
    upcoming = []
    if automation.enabled and automation.trigger == Automation.CRON:
        upcoming = triggers.next_cron_fires(
            automation.cron_expression, automation.time_zone, timezone.now(), 5
        )
    context = {
        "automation": automation,
        "trigger_text": _trigger_text(automation),
        "fires": fires,
        "upcoming": upcoming,
        "can_use": automation.space.can_use(request.user),
        "can_manage": automations.may_manage(request.user, automation),
    }
    return render(request, "automations/detail.html", context)


def _preview_zone(form) -> str:
    data = form.data if form.is_bound else None
    return (data.get("time_zone") if data else form.instance.time_zone) or "UTC"


def _preview(form) -> list:
    """The next fire times for the cron the form holds (shown while editing)."""
    data = form.data if form.is_bound else None
    expression = (data.get("cron_expression") if data else form.instance.cron_expression) or ""
    zone_name = (data.get("time_zone") if data else form.instance.time_zone) or "UTC"
    try:
        triggers.check_cron(expression, zone_name)
    except ValidationError:
        return []
    return triggers.next_cron_fires(expression, zone_name, timezone.now(), 5)


def _form_page(request, form, space, automation=None):
    status = 400 if form.errors else 200
    context = {
        "form": form,
        "space": space,
        "automation": automation,
        "preview": _preview(form),
        "preview_zone": _preview_zone(form),
    }
    return render(request, "automations/form.html", context, status=status)


def _save(request, form) -> Automation | None:
    try:
        return automations.save_automation(request.user, form.instance)
    except ValidationError as error:
        for field, errors in error.message_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def automation_create(request, space_id):
    space = get_space_for_user(request.user, space_id, "use")
    form = AutomationForm(
        request.POST or None, space=space, user=request.user, instance=Automation(space=space)
    )
    if request.method == "POST" and form.is_valid():
        automation = _save(request, form)
        if automation:
            messages.success(request, f"Created automation {automation.name}.")
            return redirect("automation-detail", automation.pk)
    return _form_page(request, form, space)


@login_required
@require_http_methods(["GET", "POST"])
def automation_edit(request, automation_id):
    automation = automations.get_automation_for_user(request.user, automation_id, "manage")
    form = AutomationForm(
        request.POST or None, space=automation.space, user=request.user, instance=automation
    )
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form)
        if saved:
            messages.success(request, f"Saved automation {saved.name}.")
            return redirect("automation-detail", saved.pk)
    return _form_page(request, form, automation.space, automation)


@login_required
@require_POST
def automation_pause(request, automation_id):
    automation = automations.get_automation_for_user(request.user, automation_id, "use")
    automations.pause(request.user, automation, request.POST.get("reason", "").strip()[:500])
    messages.success(request, f"Paused {automation.name}.")
    return redirect("automation-detail", automation.pk)


@login_required
@require_POST
def automation_resume(request, automation_id):
    automation = automations.get_automation_for_user(request.user, automation_id, "use")
    try:
        automations.resume(request.user, automation)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"Resumed {automation.name}.")
    return redirect("automation-detail", automation.pk)


@login_required
@require_POST
def automation_run_now(request, automation_id):
    automation = automations.get_automation_for_user(request.user, automation_id, "use")
    try:
        record = automations.run_now(request.user, automation)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"Started run {record.run.code}.")
    return redirect("automation-detail", automation.pk)


@login_required
@require_POST
def automation_delete(request, automation_id):
    automation = automations.get_automation_for_user(request.user, automation_id, "manage")
    name = automations.delete_automation(request.user, automation)
    messages.success(request, f"Deleted automation {name}; its runs stay.")
    return redirect("automation-list")
