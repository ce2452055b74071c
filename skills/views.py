"""The "Agent Skills" pages of a space: list with audit log, create, edit, delete.

Members and admins see the list (they use the skills in runs); only admins see
the forms and may change anything. Every view fetches the space or skill
through the access helpers and calls one function of agentloop.skills.actions.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from agentloop.skills import actions, audit
from agentloop.skills.access import get_skill_for_user
from agentloop.skills.kinds import KINDS
from agentloop.teams.access import get_space_for_user, spaces_for_user
from agentloop.teams.models import Role
from skills.forms import SkillForm


def _private(response):
    # Forms with secret fields: never from a shared or back-button cache.
    add_never_cache_headers(response)
    return response


@login_required
def index(request):
    spaces = list(spaces_for_user(request.user, "use").order_by("name"))
    if len(spaces) == 1:
        return redirect("skills-list", spaces[0].pk)
    return render(request, "skills/index.html", {"spaces": spaces})


@login_required
def skill_list(request, space_id):
    space = get_space_for_user(request.user, space_id, "use")
    skills = list(space.skills.order_by("name"))
    for skill in skills:
        skill.readable = skill.secrets_readable()
    context = {
        "space": space,
        "skills": skills,
        "is_admin": space.role_of(request.user) == Role.ADMIN,
        "kinds": KINDS.values(),
        "audit": audit.entries_for_space(space),
    }
    return _private(render(request, "skills/list.html", context))


def _again(form, space) -> None:
    """A form shown again: every problem at once, and the secrets typed kept (sealed)."""
    if not getattr(form, "_action_checked", False) and form.errors:
        form.collect_errors(space)
    form.keep_typed_secrets()


@login_required
@require_http_methods(["GET", "POST"])
def skill_create(request, space_id, kind):
    space = get_space_for_user(request.user, space_id, "admin")
    if kind not in KINDS:
        raise Http404("No such skill kind.")
    form = SkillForm(KINDS[kind], request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            skill = actions.create_skill(
                request.user,
                space.pk,
                kind,
                form.cleaned_data["name"],
                form.config(),
                form.secrets(),
            )
        except ValidationError as error:
            form.add_errors(error)
        else:
            messages.success(request, f"Added the {skill.get_kind_display()} skill {skill.name}.")
            return redirect("skills-list", space.pk)
    if request.method == "POST":
        _again(form, space)
    status = 400 if request.method == "POST" else 200
    context = {"space": space, "kind": KINDS[kind], "form": form, "skill": None}
    return _private(render(request, "skills/form.html", context, status=status))


@login_required
@require_http_methods(["GET", "POST"])
def skill_edit(request, space_id, skill_id):
    skill = get_skill_for_user(request.user, skill_id, "admin", space_id=space_id)
    form = SkillForm(skill.kind_spec, request.POST or None, skill=skill)
    if request.method == "POST" and form.is_valid():
        try:
            skill, changed = actions.update_skill(
                request.user,
                skill.pk,
                form.cleaned_data["name"],
                form.config(),
                form.secrets(),
                form.removed(),
            )
        except ValidationError as error:
            form.add_errors(error)
        else:
            if changed:
                messages.success(request, f"Saved {skill.name}: {', '.join(changed)} changed.")
            else:
                messages.info(request, f"Nothing changed in {skill.name}.")
            return redirect("skills-list", skill.space_id)
    if request.method == "POST":
        _again(form, skill.space)
    status = 400 if request.method == "POST" else 200
    context = {"space": skill.space, "kind": skill.kind_spec, "form": form, "skill": skill}
    return _private(render(request, "skills/form.html", context, status=status))


@login_required
@require_POST
def skill_delete(request, space_id, skill_id):
    skill = actions.delete_skill(
        request.user, get_skill_for_user(request.user, skill_id, "admin", space_id=space_id).pk
    )
    messages.success(request, f"Deleted the skill {skill.name}.")
    return redirect("skills-list", skill.space_id)
