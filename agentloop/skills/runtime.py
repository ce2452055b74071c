"""Skills at run time: checking a run's skill ids, and turning them into env at launch.

`check_skill_ids` runs when a run is created (through runs.config), so a person
learns at once that a skill is unknown or not theirs to use. `apply_skills`
runs when the run is launched, before any sandbox exists: it decrypts the
skills' secrets and writes them into the Run — secret values into its
encrypted secret env (so the runner's spec carries them and redaction replaces
them in everything stored), plain values into the snapshot's env, custom skill
sources into `skill_installs` for the runner. A skill that is gone or cannot be
decrypted raises SkillUnavailable with a message fit for the run's exit reason.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken

from agentloop.skills import crypto
from agentloop.skills.access import skills_for_user
from agentloop.skills.models import Skill


class SkillUnavailable(Exception):
    pass


def check_skill_ids(value, space, user=None) -> tuple[list[int], str | None]:
    """(ids, problem): the ids as ints, or a message saying what is wrong with them."""
    if value in (None, "", []):
        return [], None
    if not isinstance(value, list | tuple):
        return [], "skills must be a list of skill ids."
    ids: list[int] = []
    for item in value:
        if isinstance(item, bool) or not str(item).isdigit():
            return [], f"{item!r} is not a skill id."
        if int(item) not in ids:
            ids.append(int(item))
    if space is None:
        return ids, None
    usable = Skill.objects.filter(space=space, pk__in=ids)
    if user is not None:
        usable = usable.filter(pk__in=skills_for_user(user, "use", space=space).values("pk"))
    missing = sorted(set(ids) - set(usable.values_list("pk", flat=True)))
    if missing:
        return [], (
            f"No skill with id {', '.join(map(str, missing))} that you may use in {space.name}."
        )
    return ids, None


def resolve(run) -> tuple[dict[str, str], dict[str, str], list[dict], list[str]]:
    """(plain env, secret env, installs, names) of the run's skills, or SkillUnavailable."""
    ids = [int(i) for i in run.config.get("skills") or []]
    skills = {s.pk: s for s in Skill.objects.filter(space_id=run.space_id, pk__in=ids)}
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    installs: list[dict] = []
    origin: dict[str, str] = {}
    for skill_id in ids:
        skill = skills.get(skill_id)
        if skill is None:
            raise SkillUnavailable(
                f"Skill {skill_id} was deleted after this run was created; start it again."
            )
        try:
            secrets = skill.secrets()
        except crypto.SecretsUnreadable:
            raise SkillUnavailable(
                f"The secrets of skill {skill.name!r} cannot be decrypted with the configured "
                "keys (AGENTLOOP_FERNET_KEYS); an admin must enter them again."
            ) from None
        secret_values = set(secrets.values())
        for name, value in skill.kind_spec.env(skill.config, secrets).items():
            if name in origin:
                raise SkillUnavailable(
                    f"Skills {origin[name]!r} and {skill.name!r} both set {name}; "
                    "use only one of them."
                )
            origin[name] = skill.name
            (secret if value in secret_values else plain)[name] = value
        install = skill.install()
        if install:
            installs.append(install)
    return plain, secret, installs, [skills[i].name for i in ids]


def skill_secret_pairs(run) -> list[tuple[str, str]]:
    """(env name, value) of the secrets of the run's skills as they are now, best effort.

    For redacting before launch (the prompt), when the skills' secrets are not
    yet in the run's secret env. Unreadable skills are skipped: launch fails them.
    """
    pairs: list[tuple[str, str]] = []
    for skill in Skill.objects.filter(space_id=run.space_id, pk__in=run.config.get("skills") or []):
        try:
            secrets = skill.secrets()
        except crypto.SecretsUnreadable:
            continue
        values = set(secrets.values())
        pairs += [
            (n, v) for n, v in skill.kind_spec.env(skill.config, secrets).items() if v in values
        ]
    return pairs


def apply_skills(run) -> None:
    """Write the run's skills into the Run (see module docstring); SkillUnavailable if not."""
    try:
        own_secret_env = run.secret_env()
    except InvalidToken:
        raise SkillUnavailable(
            "The run's secret environment cannot be decrypted with the configured keys "
            "(AGENTLOOP_FERNET_KEYS)."
        ) from None
    if not run.config.get("skills"):
        return
    plain, secret, installs, names = resolve(run)

    config = dict(run.config)
    # The run's own env wins over a skill's plain value: the person asked for it.
    config["env"] = {**plain, **config.get("env", {})}
    config["skill_installs"] = installs
    config["skill_names"] = names
    config["secret_env_names"] = sorted({*config.get("secret_env_names", []), *secret})
    secret_env = {**secret, **own_secret_env}
    run.config = config
    run.set_secret_env(secret_env)
    # The run is the caller's (agentloop.runs, a layer above): save, not import it.
    run.save(update_fields=["config", "secret_env_encrypted"])
