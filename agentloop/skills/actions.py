"""Changes to skills, one function each: check access, validate, save, audit.

Secret values arrive as {field: value} with only the fields the admin typed
into; a field left blank keeps its stored value. Validation errors are raised
as ValidationError({field: message}) and nothing is stored.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentloop.skills import audit, crypto
from agentloop.skills.access import get_skill_for_user
from agentloop.skills.kinds import KINDS, get_kind
from agentloop.skills.kinds.base import ENV_NAME, RESERVED_ENV
from agentloop.skills.kinds.custom import ENV_PREFIX
from agentloop.skills.models import AuditAction, Skill, name_problem
from agentloop.teams.access import get_space_for_user


def _check(kind, name: str, config: dict, secrets: dict, space, skill_id=None) -> None:
    errors: dict[str, str] = {}
    problem = name_problem(name)
    if problem:
        errors["name"] = problem
    elif Skill.objects.filter(space=space, name=name).exclude(pk=skill_id).exists():
        errors["name"] = f"{space.name} already has a skill named {name!r}."
    for field in kind.plain_fields:
        value = config.get(field.name, "")
        if field.required and not value:
            errors[field.name] = f"{field.label} is required."
        elif len(value) > field.max_length:
            errors[field.name] = f"{field.label} is longer than {field.max_length} characters."
    for field in kind.secret_fields:
        if field.required and not secrets.get(field.name):
            errors[field.name] = f"{field.label} is required."
        elif len(secrets.get(field.name, "")) > field.max_length:
            errors[field.name] = f"{field.label} is longer than {field.max_length} characters."
    if kind.has_env_secrets:
        names = [n[len(ENV_PREFIX) :] for n in secrets if n.startswith(ENV_PREFIX)]
        bad = [n for n in names if not ENV_NAME.match(n) or n in RESERVED_ENV]
        if bad:
            errors["env_secrets"] = (
                f"Not allowed as environment variable names: {', '.join(bad)} (use A-Z, 0-9 "
                "and _, not starting with a digit; not HOME, PATH or AGENTLOOP_URL/RUN_TOKEN)."
            )
    for field, message in kind.clean(config, secrets).items():
        errors.setdefault(field, message)
    if errors:
        raise ValidationError(errors)


# The pages check a form's values with the same rules, so every problem shows at once.
check_skill = _check


def _plain(kind, values: dict) -> dict[str, str]:
    return {f.name: str(values.get(f.name) or "").strip() for f in kind.plain_fields}


def _allowed_secret(kind, name: str) -> bool:
    return name in {f.name for f in kind.secret_fields} or (
        kind.has_env_secrets and name.startswith(ENV_PREFIX)
    )


def create_skill(user, space_id, kind_key: str, name: str, config: dict, secrets: dict, now=None):
    space = get_space_for_user(user, space_id, "admin")
    if kind_key not in KINDS:
        raise ValidationError({"kind": f"Unknown skill kind {kind_key!r}."})
    kind = get_kind(kind_key)
    name = (name or "").strip()
    config = _plain(kind, config)
    secrets = {k: v for k, v in secrets.items() if v and _allowed_secret(kind, k)}
    _check(kind, name, config, secrets, space)
    now = now or timezone.now()
    skill = Skill(
        space=space,
        kind=kind.key,
        name=name,
        config=config,
        created_by=user,
        created_at=now,
        updated_at=now,
    )
    skill.set_secrets(secrets)
    try:
        with transaction.atomic():
            skill.save()
            changed = ["name", *(k for k, v in config.items() if v), *secrets]
            audit.record(skill, user, AuditAction.CREATED, changed, now=now)
    except IntegrityError:  # the same name, created a moment ago by someone else
        raise ValidationError(
            {"name": f"{space.name} already has a skill named {name!r}."}
        ) from None
    return skill


def update_skill(
    user, skill_id, name: str, config: dict, new_secrets: dict, remove=(), now=None
) -> tuple[Skill, list[str]]:
    """Apply an edit; returns the skill and the names of the fields that changed."""
    skill = get_skill_for_user(user, skill_id, "admin")
    kind = skill.kind_spec
    name = (name or "").strip()
    config = _plain(kind, config)
    try:
        old_secrets = skill.secrets()
    except crypto.SecretsUnreadable:
        old_secrets = {}  # lost key: the admin must type the secrets again
    typed = {k: v for k, v in new_secrets.items() if v and _allowed_secret(kind, k)}
    removed = {k for k in remove if k.startswith(ENV_PREFIX) and k in old_secrets}
    secrets = {k: v for k, v in old_secrets.items() if k not in removed}
    secrets.update(typed)
    _check(kind, name, config, secrets, skill.space, skill_id=skill.pk)

    changed = [k for k, v in config.items() if skill.config.get(k, "") != v]
    if name != skill.name:
        changed.append("name")
    changed += [k for k, v in typed.items() if old_secrets.get(k) != v]
    changed += sorted(removed)
    if not changed and skill.secrets_readable():
        return skill, []
    now = now or timezone.now()
    skill.name, skill.config, skill.updated_at = name, config, now
    skill.set_secrets(secrets)
    try:
        with transaction.atomic():
            skill.save()
            audit.record(skill, user, AuditAction.UPDATED, changed or ["secrets"], now=now)
    except IntegrityError:
        raise ValidationError({"name": f"Another skill is already named {name!r}."}) from None
    return skill, changed


def delete_skill(user, skill_id, now=None) -> Skill:
    skill = get_skill_for_user(user, skill_id, "admin")
    with transaction.atomic():
        audit.record(skill, user, AuditAction.DELETED, now=now)
        skill.delete()
    return skill
