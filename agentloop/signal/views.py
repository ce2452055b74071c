"""The Signal tab of a project (/projects/<id>/signal/) and its settings.

Members ("use") turn Signal on or off and choose its harness; admins attach a
repository; viewers look; outsiders get 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agentloop.signal import actions as signal
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
        **signal.tab_context(project),
    }
    return render(request, "signal/tab.html", context)


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
