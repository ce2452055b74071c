"""Who may see a preset: the one access helper for presets.

presets_for_user(user, space=None)        presets the user may see (the Studio
                                          picker: hidden ones left out)
get_preset_for_user(user, id, need)       one preset, or Http404 / PermissionDenied;
                                          need "manage" (edit, delete): a space admin,
                                          or the member who created it (docs/roles.md)
may_manage(user, preset)                  the same question, for pages' buttons
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from agentloop.presets.models import AgentPreset
from agentloop.teams.access import get_space_for_user, spaces_for_user


def presets_for_user(
    user, space=None, *, include_hidden: bool = False, need: str = "view"
) -> QuerySet[AgentPreset]:
    presets = AgentPreset.objects.filter(space__in=spaces_for_user(user, need))
    if space is not None:
        presets = presets.filter(space=space)
    if not include_hidden:
        presets = presets.filter(hidden=False)
    return presets.select_related("space").order_by("space__name", "name")


def may_manage(user, preset: AgentPreset) -> bool:
    """Admins manage every preset of their space; members the ones they created."""
    if preset.space.can_admin(user):
        return True
    return preset.space.can_use(user) and preset.created_by_id == getattr(user, "pk", None)


def get_preset_for_user(user, preset_id, need: str = "view") -> AgentPreset:
    """The preset, or Http404 (none, or in a space the user cannot see) / PermissionDenied."""
    try:
        preset = AgentPreset.objects.get(pk=preset_id)
    except (AgentPreset.DoesNotExist, ValueError, TypeError):
        raise Http404("No such preset.") from None
    try:
        preset.space = get_space_for_user(
            user, preset.space_id, "use" if need == "manage" else need
        )
    except Http404:
        raise Http404("No such preset.") from None
    if need == "manage" and not may_manage(user, preset):
        raise PermissionDenied(
            "Only an admin of the space, or the member who created this preset, may change it."
        )
    return preset
