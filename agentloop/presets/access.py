"""Who may see a preset: the one access helper for presets.

presets_for_user(user, space=None)        presets the user may see (the Studio
                                          picker: hidden ones left out)
get_preset_for_user(user, id, need)       one preset, or Http404 / PermissionDenied
"""

from __future__ import annotations

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


def get_preset_for_user(user, preset_id, need: str = "view") -> AgentPreset:
    """The preset, or Http404 (none, or in a space the user cannot see) / PermissionDenied."""
    try:
        preset = AgentPreset.objects.get(pk=preset_id)
    except (AgentPreset.DoesNotExist, ValueError, TypeError):
        raise Http404("No such preset.") from None
    try:
        preset.space = get_space_for_user(user, preset.space_id, need)
    except Http404:
        raise Http404("No such preset.") from None
    return preset
