"""The access helpers for skills, built on the space's (agentloop.teams.access).

Admins of a space create, edit and delete its skills; members and admins use
them in runs ("use"); viewers and outsiders do neither.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from agentloop.skills.models import Skill
from agentloop.teams.access import get_space_for_user, spaces_for_user


def get_skill_for_user(user, skill_id, need: str = "use", space_id=None) -> Skill:
    """The skill, or Http404 (no such skill, or not in a space the user sees) /
    PermissionDenied (the user's role does not allow `need`)."""
    try:
        skill = Skill.objects.get(pk=skill_id)
    except (Skill.DoesNotExist, ValueError, TypeError):
        raise Http404("No such skill.") from None
    if space_id is not None and str(skill.space_id) != str(space_id):
        raise Http404("No such skill.")
    skill.space = get_space_for_user(user, skill.space_id, need)
    return skill


def skills_for_user(user, need: str = "use", space=None) -> QuerySet[Skill]:
    """Skills the user may use (need="use") or manage (need="admin"), in one space or all."""
    if need not in ("use", "admin"):
        raise ValueError(f"skills need 'use' or 'admin', not {need!r}")
    spaces = spaces_for_user(user, need)
    skills = Skill.objects.filter(space__in=spaces).select_related("space")
    if space is not None:
        skills = skills.filter(space=space)
    return skills.order_by("space__name", "name")
