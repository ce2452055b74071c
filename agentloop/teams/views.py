"""Pages of spaces, members, projects and project API keys.

Every view fetches its space or project through agentloop.teams.access (404 for
outsiders, 403 for a role that may look but not act), validates with a form,
calls one function of agentloop.teams.actions and redirects with a message.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from agentloop.teams import actions
from agentloop.teams.access import get_project_for_user, get_space_for_user, spaces_for_user
from agentloop.teams.forms import (
    ApiKeyForm,
    InviteForm,
    ProjectForm,
    RetentionForm,
    RoleForm,
    SpaceForm,
    TimeZoneForm,
    UnknownProjectsForm,
)
from agentloop.teams.models import ApiKeyRefusal, Project, Role, UserSettings

# Where the raw value of a just-minted key waits for the one page render that shows it.
NEW_KEY_SESSION_KEY = "new_project_api_key"


@login_required
def home(request):
    """The user's spaces and, in each, its projects: all they may see, nothing else."""
    spaces = list(
        spaces_for_user(request.user).prefetch_related(
            Prefetch("projects", queryset=Project.objects.filter(internal=False))
        )
    )
    return render(request, "teams/home.html", {"spaces": spaces})


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    """The person's own settings: the time zone of every page."""
    current = UserSettings.time_zone_of(request.user)
    form = TimeZoneForm(request.POST or None, initial={"time_zone": current})
    if request.method == "POST" and form.is_valid():
        actions.set_time_zone(request.user, form.cleaned_data["time_zone"])
        messages.success(request, f"Times are now shown in {form.cleaned_data['time_zone']}.")
        return redirect("account")
    return render(request, "teams/account.html", {"form": form, "current": current})


@login_required
@require_http_methods(["GET", "POST"])
def space_create(request):
    form = SpaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        space = actions.create_space(form.cleaned_data["name"], request.user)
        messages.success(request, f"Created {space.name}. You are its admin.")
        return redirect("space-detail", space.pk)
    return render(request, "teams/space_create.html", {"form": form})


def _render_space(request, space, invite_form=None, status=200):
    role = space.role_of(request.user)
    is_admin = role == Role.ADMIN
    context = {
        "space": space,
        "role": role,
        "is_admin": is_admin,
        "memberships": space.memberships.select_related("user").order_by("user__username"),
        "projects": space.projects.filter(internal=False),
        "roles": Role.choices,
        "invite_form": (invite_form or InviteForm()) if is_admin else None,
    }
    return render(request, "teams/space_detail.html", context, status=status)


@login_required
def space_detail(request, space_id):
    space = get_space_for_user(request.user, space_id, "view")
    return _render_space(request, space)


@login_required
@require_POST
def member_invite(request, space_id):
    space = get_space_for_user(request.user, space_id, "admin")
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            membership = actions.invite_member(
                space, form.cleaned_data["who"], form.cleaned_data["role"]
            )
        except actions.ActionError as e:
            form.add_error("who", str(e))
        else:
            messages.success(
                request,
                f"Added {membership.user.get_username()} as {membership.get_role_display()}.",
            )
            return redirect("space-detail", space.pk)
    return _render_space(request, space, invite_form=form, status=400)


@login_required
@require_POST
def member_role(request, space_id, membership_id):
    space = get_space_for_user(request.user, space_id, "admin")
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: admin, member or viewer.")
        return redirect("space-detail", space.pk)
    try:
        membership = actions.change_role(space, membership_id, form.cleaned_data["role"])
    except actions.ActionError as e:
        messages.error(request, str(e))
    else:
        messages.success(
            request,
            f"{membership.user.get_username()} is now {membership.get_role_display()}.",
        )
    return redirect("space-detail", space.pk)


@login_required
@require_POST
def member_remove(request, space_id, membership_id):
    space = get_space_for_user(request.user, space_id, "admin")
    try:
        membership = actions.remove_member(space, membership_id)
    except actions.ActionError as e:
        messages.error(request, str(e))
        return redirect("space-detail", space.pk)
    messages.success(request, f"Removed {membership.user.get_username()} from {space.name}.")
    if membership.user_id == request.user.pk:
        return redirect("home")  # an admin who left can no longer see the space
    return redirect("space-detail", space.pk)


@login_required
@require_POST
def space_unknown_projects(request, space_id):
    space = get_space_for_user(request.user, space_id, "admin")
    form = UnknownProjectsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose to refuse or to create unknown projects.")
        return redirect("space-detail", space.pk)
    space = actions.set_refuse_unknown_projects(space, form.cleaned_data["refuse_unknown_projects"])
    if space.refuse_unknown_projects:
        messages.success(request, "Spans naming an unknown project are now refused.")
    else:
        messages.success(request, "Spans naming an unknown project now create it.")
    return redirect("space-detail", space.pk)


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request, space_id):
    space = get_space_for_user(request.user, space_id, "admin")
    form = ProjectForm(request.POST or None, space=space)
    if request.method == "POST" and form.is_valid():
        try:
            project = actions.create_project(
                space, form.cleaned_data["name"], form.cleaned_data["description"]
            )
        except actions.ActionError as e:
            form.add_error("name", str(e))
        else:
            messages.success(request, f"Created {project.name}. Create an API key to send traces.")
            return redirect("project-settings", project.pk)
    status = 400 if form.is_bound else 200
    return render(
        request, "teams/project_create.html", {"space": space, "form": form}, status=status
    )


def _render_project_settings(request, project, key_form=None, status=200, retention_form=None):
    new_key = None
    pending = request.session.get(NEW_KEY_SESSION_KEY)
    if pending and pending.get("project") == project.pk:
        # Shown on this render only: gone from the session before the page is sent.
        del request.session[NEW_KEY_SESSION_KEY]
        new_key = pending
    context = {
        "project": project,
        "space": project.space,
        "keys": project.api_keys.select_related("created_by"),
        "refusals": ApiKeyRefusal.objects.filter(key__project=project).select_related("key"),
        "key_form": key_form or ApiKeyForm(),
        "retention_form": retention_form
        or RetentionForm(initial={"retention_days": project.retention_days}),
        "new_key": new_key,
        "otlp_endpoint": request.build_absolute_uri("/v1/traces"),
    }
    response = render(request, "teams/project_settings.html", context, status=status)
    if new_key:
        add_never_cache_headers(response)
    return response


@login_required
def project_settings(request, project_id):
    project = get_project_for_user(request.user, project_id, "admin")
    return _render_project_settings(request, project)


@login_required
@require_POST
def api_key_create(request, project_id):
    project = get_project_for_user(request.user, project_id, "admin")
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _render_project_settings(request, project, key_form=form, status=400)
    key, raw = actions.create_api_key(project, form.cleaned_data["name"], request.user)
    request.session[NEW_KEY_SESSION_KEY] = {
        "project": project.pk,
        "id": key.pk,
        "name": key.name,
        "raw": raw,
    }
    messages.success(request, f"Created the key {key.name}.")
    return redirect(reverse("project-settings", args=[project.pk]))


@login_required
@require_POST
def project_retention(request, project_id):
    project = get_project_for_user(request.user, project_id, "admin")
    form = RetentionForm(request.POST)
    if not form.is_valid():
        return _render_project_settings(request, project, retention_form=form, status=400)
    project = actions.set_retention(project, form.cleaned_data["retention_days"])
    if project.retention_days is None:
        messages.success(request, f"{project.name} keeps its spans forever.")
    else:
        messages.success(
            request,
            f"Spans of {project.name} older than {project.retention_days} days will be deleted.",
        )
    return redirect("project-settings", project.pk)


@login_required
@require_POST
def api_key_revoke(request, project_id, key_id):
    project = get_project_for_user(request.user, project_id, "admin")
    try:
        key = actions.revoke_api_key(project, key_id)
    except actions.ActionError as e:
        messages.error(request, str(e))
    else:
        messages.success(request, f"Revoked the key {key.name} (…{key.hint}).")
    return redirect("project-settings", project.pk)
