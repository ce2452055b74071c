"""Agent presets: how they become a run's config, and changing them.

For the session form and automations (who may see a preset: agentloop.presets.access):

    preset_to_config(preset) -> dict          the config normalize_config() takes
    config_from_preset(user, project, preset_id, overrides=None) -> (preset, dict)
        what start_session(user, project, config, prompt, preset) should get for a
        session started from a preset: checks the user may use presets of the
        project's space and that the preset belongs to it (ValidationError with a
        clear message otherwise), then lays `overrides` (OVERRIDABLE keys only) on top.

    preset, config = config_from_preset(request.user, project, form.cleaned_data["preset"])
    run = start_session(request.user, project, config, prompt, preset=preset)

The run keeps a snapshot: editing or deleting the preset later changes nothing
in it; `run.preset_id` is set (and cleared when the preset is deleted) while
`run.preset_name` stays.

Changing presets (admins of the space): save_preset, duplicate_preset, delete_preset.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone

from agentloop.presets.access import get_preset_for_user
from agentloop.presets.models import AgentPreset
from agentloop.runs.actions import start_session
from agentloop.runs.config import normalize_config
from agentloop.runs.models import Run
from agentloop.teams.access import get_space_for_user

# What a session may change when it starts from a preset. Skills, repository and
# sandbox stay the preset's: they carry credentials and the push target.
OVERRIDABLE = frozenset(
    {
        "model",
        "system_prompt",
        "allowed_tools",
        "max_turns",
        "time_limit_seconds",
        "token_budget",
        "cost_budget_usd",
    }
)
GITHUB_KIND = "github"


def _money(value) -> str | None:
    return None if value is None else str(Decimal(value).normalize())


def preset_to_config(preset: AgentPreset, skill_ids: list[int] | None = None) -> dict:
    """The run config this preset describes (input of normalize_config)."""
    limits = {}
    if preset.cpu is not None:
        limits["cpu"] = float(preset.cpu)
    if preset.memory_mb is not None:
        limits["memory_mb"] = int(preset.memory_mb)
    if skill_ids is None:
        skill_ids = sorted(preset.skills.values_list("pk", flat=True)) if preset.pk else []
    config = {
        "harness": preset.harness,
        "model": preset.model,
        "llm_provider": preset.llm_provider,
        "system_prompt": preset.system_prompt,
        "allowed_tools": list(preset.allowed_tools or []),
        "max_turns": preset.max_turns,
        "time_limit_seconds": preset.time_limit_seconds,
        "limits": limits,
        "skills": list(skill_ids),
        "repository": preset.repository,
        "token_budget": preset.token_budget,
        "cost_budget_usd": _money(preset.cost_budget_usd),
    }
    if preset.sandbox:
        config["sandbox"] = preset.sandbox
    if preset.network:
        config["network"] = preset.network
    if preset.egress_hosts:
        config["egress_hosts"] = list(preset.egress_hosts)
    return config


def config_from_preset(
    user, project, preset_id, overrides: dict | None = None
) -> tuple[AgentPreset, dict]:
    """The config for a session of `project` started from this preset; see the module docstring."""
    try:
        preset = get_preset_for_user(user, preset_id, "view")
    except Http404:
        raise ValidationError({"preset": "No such preset."}) from None
    if preset.space_id != project.space_id:
        raise ValidationError(
            {
                "preset": f"The preset {preset.name} belongs to {preset.space.name}; "
                f"{project.name} is in {project.space.name}. Use a preset of that space."
            }
        )
    get_space_for_user(user, preset.space_id, "use")  # viewers may look, not run
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - OVERRIDABLE)
    if unknown:
        raise ValidationError(
            {"preset": f"A session cannot change {', '.join(unknown)} of a preset."}
        )
    return preset, {**preset_to_config(preset), **overrides}


def start_session_from_preset(
    user, project, preset_id, prompt: str, overrides: dict | None = None
) -> Run:
    """A session of `project` from this preset (config_from_preset's checks), linked to it."""
    preset, config = config_from_preset(user, project, preset_id, overrides)
    return start_session(user, project, config, prompt, preset=preset)


def check_preset(preset: AgentPreset, skills) -> None:
    """ValidationError (per field) unless this preset would start a valid run."""
    errors: dict[str, list[str]] = {}
    skills = list(skills)
    foreign = [s.name for s in skills if s.space_id != preset.space_id]
    if foreign:
        errors["skills"] = [f"Skills of another space: {', '.join(foreign)}."]
    if preset.repository_url and not any(s.kind == GITHUB_KIND for s in skills):
        errors["repository_url"] = [
            "A repository needs a GitHub skill: attach one, or leave the repository empty."
        ]
    try:
        normalize_config(preset_to_config(preset, [s.pk for s in skills]))
    except ValidationError as error:
        for field, messages in error.message_dict.items():
            errors.setdefault(_FORM_FIELD.get(field, field), []).extend(messages)
    if errors:
        raise ValidationError(errors)


# normalize_config's names → the preset's.
_FORM_FIELD = {
    "repository.url": "repository_url",
    "repository.base_branch": "base_branch",
    "limits.cpu": "cpu",
    "limits.memory_mb": "memory_mb",
    "egress_hosts": "egress_hosts_text",
}


def _require_manage(user, preset: AgentPreset) -> None:
    """docs/roles.md: members create presets and change their own; admins any."""
    if preset.pk is None:
        get_space_for_user(user, preset.space_id, "use")
    else:
        get_preset_for_user(user, preset.pk, "manage")


def save_preset(user, preset: AgentPreset, skills) -> AgentPreset:
    """Create (members) or update (its creator, or an admin) a preset; ValidationError
    stores nothing."""
    _require_manage(user, preset)
    skills = list(skills)
    check_preset(preset, skills)
    now = timezone.now()
    if preset.pk is None:
        preset.created_by = user
        preset.created_at = now
    preset.updated_at = now
    try:
        with transaction.atomic():
            preset.save()
            preset.skills.set(skills)
    except IntegrityError:
        raise ValidationError(
            {"name": f"{preset.space.name} already has a preset named {preset.name}."}
        ) from None
    return preset


def _copy_name(preset: AgentPreset) -> str:
    taken = set(AgentPreset.objects.filter(space=preset.space).values_list("name", flat=True))
    base = f"Copy of {preset.name}"[:190]
    name, n = base, 2
    while name in taken:
        name, n = f"{base} ({n})", n + 1
    return name


def duplicate_preset(user, preset: AgentPreset) -> AgentPreset:
    """A copy named "Copy of …", visible in the picker, created by `user` (a member)."""
    get_space_for_user(user, preset.space_id, "use")
    skills = list(preset.skills.all())
    copy = AgentPreset.objects.get(pk=preset.pk)
    copy.pk = None
    copy.id = None
    copy._state.adding = True
    copy.name = _copy_name(preset)
    copy.hidden = False
    copy.created_by = None
    return save_preset(user, copy, skills)


def delete_preset(user, preset: AgentPreset) -> str:
    """Delete it; runs started from it keep their snapshot (and its name). Returns the name."""
    _require_manage(user, preset)
    name = preset.name
    with transaction.atomic():
        Run.objects.filter(space_id=preset.space_id, preset_id=preset.pk).update(preset_id=None)
        preset.delete()
    return name
