"""The Signal tab of a project (/projects/<id>/signal/) and its settings.

Members ("use") turn Signal on or off, run it now, choose its harness, and start
a session on an issue (Investigate) or a fix in the repository (Propose a fix);
admins attach a repository; viewers look; outsiders get 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agentloop.signal import actions as signal
from agentloop.signal import tab
from agentloop.teams.access import get_project_for_user
from agentloop.teams.models import Role


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


@login_required
def signal_tab(request, project_id):
    project = get_project_for_user(request.user, project_id, "view")
    context = {
        "project": project,
        "is_admin": project.space.role_of(request.user) == Role.ADMIN,
        "can_use": project.space.can_use(request.user),
        **tab.tab_context(project),
    }
    # While a Signal run is going the issues refresh themselves (htmx), one partial
    # for the first render and the refresh.
    template = "signal/tab.html#live" if request.htmx else "signal/tab.html"
    return render(request, template, context)


@login_required
@require_POST
def signal_run_now(request, project_id):
    project = get_project_for_user(request.user, project_id, "use")
    try:
        record = signal.run_now(request.user, project)
    except ValidationError as error:  # AutomationError too: a refused fire says why
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"Signal is looking now (run {record.run.code}).")
    return redirect("signal-tab", project.pk)


@login_required
@require_POST
def issue_investigate(request, project_id, issue_id):
    project = get_project_for_user(request.user, project_id, "use")
    issue = signal.get_issue_for_user(request.user, project, issue_id, "use")
    try:
        run = signal.investigate(request.user, issue)
    except ValidationError as error:
        messages.error(request, _error_text(error))
        return redirect("signal-tab", project.pk)
    return redirect("studio-session", code=run.code)


@login_required
@require_POST
def issue_propose_fix(request, project_id, issue_id):
    project = get_project_for_user(request.user, project_id, "use")
    issue = signal.get_issue_for_user(request.user, project, issue_id, "use")
    try:
        run = signal.propose_fix(request.user, issue)
    except ValidationError as error:
        messages.error(request, _error_text(error))
        return redirect("signal-tab", project.pk)
    messages.success(request, "A run is fixing it; its branch will wait in the review queue.")
    return redirect("studio-session", code=run.code)


@login_required
@require_POST
def signal_enable(request, project_id):
    project = get_project_for_user(request.user, project_id, "use")
    try:
        signal.enable(request.user, project)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"Signal watches {project.name} now.")
    return redirect("signal-tab", project.pk)


@login_required
@require_POST
def signal_disable(request, project_id):
    project = get_project_for_user(request.user, project_id, "use")
    signal.disable(request.user, project)
    messages.success(request, f"Signal no longer watches {project.name}.")
    return redirect("signal-tab", project.pk)


@login_required
@require_POST
def signal_harness(request, project_id):
    project = get_project_for_user(request.user, project_id, "use")
    harness = request.POST.get("harness", "")
    try:
        signal.use_harness(request.user, project, harness)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        label = "Claude Code" if harness == signal.CLAUDE_CODE else "the analyst"
        messages.success(request, f"Signal runs use {label} from now on.")
    return redirect("signal-tab", project.pk)


@login_required
@require_POST
def signal_repository(request, project_id):
    project = get_project_for_user(request.user, project_id, "view")
    try:
        signal.attach_repository(
            request.user,
            project,
            request.POST.get("skill", ""),
            request.POST.get("url", ""),
            request.POST.get("base_branch", ""),
        )
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, "Signal runs clone the repository and propose fixes as branches.")
    return redirect("signal-tab", project.pk)


@login_required
@require_POST
def signal_repository_detach(request, project_id):
    project = get_project_for_user(request.user, project_id, "view")
    signal.detach_repository(request.user, project)
    messages.success(request, "Signal runs no longer use a repository.")
    return redirect("signal-tab", project.pk)
