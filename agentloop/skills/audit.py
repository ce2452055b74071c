"""The skills audit log: who changed which skill when, by field name, never by value."""

from __future__ import annotations

from agentloop.skills.models import AuditAction, Skill, SkillAuditEntry


def record(skill: Skill, actor, action: str, changed_fields=(), now=None) -> SkillAuditEntry:
    entry = SkillAuditEntry(
        space_id=skill.space_id,
        skill=skill if action != AuditAction.DELETED else None,
        skill_name=skill.name,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=actor.get_username() if getattr(actor, "pk", None) else "system",
        action=action,
        changed_fields=sorted(changed_fields),
    )
    if now is not None:
        entry.created_at = now
    entry.save()
    return entry


def entries_for_space(space, limit: int = 100):
    return SkillAuditEntry.objects.filter(space=space).select_related("actor")[:limit]
