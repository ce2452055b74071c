"""The one access helper per resource.

Every view, API route and websocket consumer fetches spaces and projects (and,
through them, everything inside) with these functions. They return the object
or raise: Http404 when the caller may not even see it (no leak of what exists),
PermissionDenied when they may see it but not do what they asked.

`need` is one of "view", "use", "admin" (see teams.models.ROLE_PERMISSIONS).
`user` may be a Django user or a KeyPrincipal (project API key, service key).
A user authenticated by a personal token limited to some spaces carries
`limited_to_spaces` (agentloop.teams.authentication): everything outside those
spaces is then as if the user were not a member (404).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404
from guardian.shortcuts import get_objects_for_user

from agentloop.teams.models import Project, Space
from agentloop.teams.principals import KeyPrincipal

NEEDS = ("view", "use", "admin")


def _check_need(need: str) -> str:
    if need not in NEEDS:
        raise ValueError(f"unknown access need {need!r}")
    return f"teams.{need}_space"


def _outside_token_limit(user, space_id) -> bool:
    limit = getattr(user, "limited_to_spaces", None)
    return limit is not None and space_id not in limit


def spaces_for_user(user, need: str = "view") -> QuerySet[Space]:
    perm = _check_need(need)
    if isinstance(user, KeyPrincipal):
        return Space.objects.none()
    if not user.is_authenticated:
        return Space.objects.none()
    spaces = get_objects_for_user(user, perm, klass=Space, accept_global_perms=False)
    limit = getattr(user, "limited_to_spaces", None)
    return spaces if limit is None else spaces.filter(pk__in=limit)


def projects_for_user(user, need: str = "view") -> QuerySet[Project]:
    _check_need(need)
    if isinstance(user, KeyPrincipal):
        if not user.allows(need):
            return Project.objects.none()
        if user.space_wide:
            return Project.objects.filter(
                Q(pk=user.project_id) | Q(space_id=user.space_id, internal=False)
            ).select_related("space")
        return Project.objects.filter(pk=user.project_id)
    # Internal projects (a space's worker traces) are reached through their runs,
    # never listed as projects to investigate.
    return Project.objects.filter(
        space__in=spaces_for_user(user, need), internal=False
    ).select_related("space")


def get_space_for_user(user, space_id, need: str = "view") -> Space:
    perm = _check_need(need)
    if isinstance(user, KeyPrincipal) or not user.is_authenticated:
        raise Http404("No such space.")
    try:
        space = Space.objects.get(pk=space_id)
    except (Space.DoesNotExist, ValueError, TypeError):
        raise Http404("No such space.") from None
    if _outside_token_limit(user, space.pk) or not user.has_perm("teams.view_space", space):
        raise Http404("No such space.")
    if not user.has_perm(perm, space):
        raise PermissionDenied(f"Your role in {space.name} does not allow this.")
    return space


def _same_pk(project_id, principal: KeyPrincipal) -> bool:
    return str(project_id) == str(principal.project_id)


def get_project_for_user(user, project_id, need: str = "view") -> Project:
    perm = _check_need(need)
    if isinstance(user, KeyPrincipal) and user.project is not None and _same_pk(project_id, user):
        project = user.project  # loaded by the key check of this request
    else:
        try:
            project = Project.objects.select_related("space").get(pk=project_id)
        except (Project.DoesNotExist, ValueError, TypeError):
            raise Http404("No such project.") from None
    if isinstance(user, KeyPrincipal):
        in_space = user.space_wide and project.space_id == user.space_id and not project.internal
        if project.pk != user.project_id and not in_space:
            raise Http404("No such project.")
        if not user.allows(need):
            raise PermissionDenied("This key's scopes do not allow this.")
        return project
    if (
        not user.is_authenticated
        or _outside_token_limit(user, project.space_id)
        or not user.has_perm("teams.view_space", project.space)
    ):
        raise Http404("No such project.")
    if not user.has_perm(perm, project.space):
        raise PermissionDenied(f"Your role in {project.space.name} does not allow this.")
    return project
