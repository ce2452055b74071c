"""A run's configuration: validated once at start and snapshotted on the Run.

`normalize_config()` turns what a person, preset or automation asked for into
the full snapshot (every key present, defaults filled in), or raises
ValidationError with a message per field. Secret env values are split off: they
are stored encrypted on the Run, and only their names stay in the snapshot.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError

from agentloop.runs.providers import provider_names

HARNESSES = ("analyst", "claude-code")
DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_TIME_LIMIT_SECONDS = 30 * 60
MAX_TIME_LIMIT_SECONDS = 24 * 3600
DEFAULT_MAX_TURNS = 50
LIMIT_KEYS = {"cpu": float, "memory_mb": int, "processes": int, "disk_mb": int}
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
RESERVED_ENV = {"AGENTLOOP_URL", "AGENTLOOP_RUN_TOKEN"}


def _positive_int(value, field: str, errors: dict, maximum: int | None = None) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        errors[field] = f"{field} must be a whole number."
        return None
    if number <= 0 or (maximum is not None and number > maximum):
        errors[field] = f"{field} must be between 1 and {maximum or 'any'}."
        return None
    return number


def _env(value, field: str, errors: dict) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        errors[field] = f"{field} must be an object of NAME: value."
        return {}
    bad = [k for k in value if not isinstance(k, str) or not ENV_NAME.match(k) or k in RESERVED_ENV]
    if bad:
        errors[field] = f"{field} has names that are not allowed: {', '.join(map(str, bad))}."
        return {}
    return {k: str(v) for k, v in value.items()}


def normalize_config(config: dict) -> tuple[dict, dict[str, str]]:
    """Return (snapshot, secret_env) or raise ValidationError."""
    if not isinstance(config, dict):
        raise ValidationError("The configuration must be an object.")
    errors: dict[str, str] = {}
    harness = config.get("harness") or "analyst"
    if harness not in HARNESSES:
        errors["harness"] = f"Unknown harness {harness!r}; choose one of {', '.join(HARNESSES)}."
    sandbox = config.get("sandbox") or settings.SANDBOX_PROVIDER_DEFAULT
    known = provider_names()
    if sandbox not in known:
        errors["sandbox"] = (
            f"Unknown sandbox provider {sandbox!r}; known: {', '.join(sorted(known)) or 'none'}."
        )
    time_limit = _positive_int(
        config.get("time_limit_seconds", DEFAULT_TIME_LIMIT_SECONDS),
        "time_limit_seconds",
        errors,
        MAX_TIME_LIMIT_SECONDS,
    )
    max_turns = _positive_int(
        config.get("max_turns", DEFAULT_MAX_TURNS), "max_turns", errors, 10_000
    )
    allowed_tools = config.get("allowed_tools") or []
    if not isinstance(allowed_tools, list) or not all(isinstance(t, str) for t in allowed_tools):
        errors["allowed_tools"] = "allowed_tools must be a list of tool names."
    limits = {}
    for name, cast in LIMIT_KEYS.items():
        if name in (config.get("limits") or {}):
            try:
                limits[name] = cast(config["limits"][name])
            except (TypeError, ValueError):
                errors[f"limits.{name}"] = f"limits.{name} must be a number."
    env = _env(config.get("env"), "env", errors)
    secret_env = _env(config.get("secret_env"), "secret_env", errors)
    repository = config.get("repository")
    if repository is not None and not isinstance(repository, dict):
        errors["repository"] = "repository must be an object or null."
    if errors:
        raise ValidationError(errors)
    snapshot = {
        "harness": harness,
        "sandbox": sandbox,
        "model": str(config.get("model") or DEFAULT_MODEL),
        "system_prompt": str(config.get("system_prompt") or ""),
        "allowed_tools": allowed_tools,
        "max_turns": max_turns,
        "time_limit_seconds": time_limit,
        "limits": limits,
        "env": env,
        "secret_env_names": sorted(secret_env),
        "skills": list(config.get("skills") or []),
        "repository": repository,
        "image": config.get("image") or None,
        "network": config.get("network") or "runner-only",
        "preset_name": config.get("preset_name") or "",
        "llm_base_url": config.get("llm_base_url") or "",
    }
    return snapshot, secret_env
