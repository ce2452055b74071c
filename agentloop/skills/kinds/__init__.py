"""The registry of skill kinds: one small module per kind, each with a KIND."""

from __future__ import annotations

from agentloop.skills.kinds import custom, datadog, github, traces_api
from agentloop.skills.kinds.base import SkillKind

KINDS: dict[str, SkillKind] = {
    module.KIND.key: module.KIND for module in (github, traces_api, datadog, custom)
}


def get_kind(key: str) -> SkillKind:
    try:
        return KINDS[key]
    except KeyError:
        raise LookupError(f"Unknown skill kind {key!r}.") from None


def kind_choices() -> list[tuple[str, str]]:
    return [(kind.key, kind.label) for kind in KINDS.values()]
