"""A run's configuration: validated once at start and snapshotted on the Run.

`normalize_config()` turns what a person, preset or automation asked for into
the full snapshot (every key present, defaults filled in), or raises
ValidationError with a message per field. Secret env values are split off: they
are stored encrypted on the Run, and only their names stay in the snapshot.

Budgets: `token_budget` (input + output tokens) and `cost_budget_usd` (a float)
are None when unlimited; the LLM gateway enforces them. `repository` is None
or {"url", "base_branch"} (https://, or file:// when
AGENTLOOP_ALLOW_FILE_REPOSITORIES is set, for tests and local mirrors).
`preset_id`/`preset_name` record which preset the snapshot came from.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError

from agentloop.runner.repo import repository_url_problem, valid_branch_name
from agentloop.runs.providers import provider_names
from agentloop.skills.runtime import check_skill_ids

HARNESSES = ("analyst", "claude-code")
DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_TIME_LIMIT_SECONDS = 30 * 60
MAX_TIME_LIMIT_SECONDS = 24 * 3600
DEFAULT_MAX_TURNS = 50
LIMIT_KEYS = {"cpu": float, "memory_mb": int, "processes": int, "disk_mb": int}
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
RESERVED_ENV = {"AGENTLOOP_URL", "AGENTLOOP_RUN_TOKEN"}
MAX_COST_BUDGET_USD = Decimal("100000")
MAX_SYSTEM_PROMPT_LENGTH = 100_000


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


def _repository(value, errors: dict) -> dict | None:
    """{"url", "base_branch"} the runner clones and pushes agentloop/<run-code> to, or None."""
    if value in (None, "", {}):
        return None
    if not isinstance(value, dict):
        errors["repository"] = "repository must be an object with url and base_branch, or null."
        return None
    url = str(value.get("url") or "").strip()
    base = str(value.get("base_branch") or "main").strip()
    allow_file = getattr(settings, "AGENTLOOP_ALLOW_FILE_REPOSITORIES", False)
    problem = repository_url_problem(url, allow_file=allow_file)
    if problem:
        errors["repository.url"] = problem
    if not valid_branch_name(base):
        errors["repository.base_branch"] = f"{base!r} is not a branch name."
    return {"url": url, "base_branch": base}


def _cost(value, errors: dict) -> float | None:
    """A budget in US dollars (a float in the snapshot, at most 6 decimals), or None."""
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        errors["cost_budget_usd"] = "cost_budget_usd must be a number of dollars."
        return None
    if not amount.is_finite() or amount <= 0 or amount > MAX_COST_BUDGET_USD:
        errors["cost_budget_usd"] = (
            f"cost_budget_usd must be more than 0 and at most {MAX_COST_BUDGET_USD}."
        )
        return None
    return float(round(amount, 6))


def normalize_config(config: dict, *, space=None, user=None) -> tuple[dict, dict[str, str]]:
    """Return (snapshot, secret_env) or raise ValidationError.

    With `space` (and `user`), skill ids must name skills of that space the user may use.
    """
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
    if len(str(config.get("system_prompt") or "")) > MAX_SYSTEM_PROMPT_LENGTH:
        errors["system_prompt"] = (
            f"system_prompt is longer than {MAX_SYSTEM_PROMPT_LENGTH:,} characters."
        )
    env = _env(config.get("env"), "env", errors)
    secret_env = _env(config.get("secret_env"), "secret_env", errors)
    repository = _repository(config.get("repository"), errors)
    token_budget = None
    if config.get("token_budget") not in (None, ""):
        token_budget = _positive_int(config["token_budget"], "token_budget", errors, 10**12)
    cost_budget = _cost(config.get("cost_budget_usd"), errors)
    skills, skills_problem = check_skill_ids(config.get("skills"), space, user)
    if skills_problem:
        errors["skills"] = skills_problem
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
        "skills": skills,
        "repository": repository,
        "token_budget": token_budget,
        "cost_budget_usd": cost_budget,
        "preset_id": None,  # set by create_run from the preset it is given
        "image": config.get("image") or None,
        # Cloning and pushing need the git host: a run with a repository is "open"
        # unless its config says otherwise (there is no per-host policy yet).
        "network": config.get("network") or ("open" if repository else "runner-only"),
        "preset_name": "",
        "llm_base_url": config.get("llm_base_url") or "",
    }
    return snapshot, secret_env
