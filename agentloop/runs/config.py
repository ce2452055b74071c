"""A run's configuration: validated once at start and snapshotted on the Run.

`normalize_config()` turns what a person, preset or automation asked for into
the full snapshot (every key present, defaults filled in), or raises
ValidationError with a message per field. What may be asked is one pydantic
schema, `RunConfig` (limits as Field constraints, the lenient parsing of form
values — "" means the default, "600" is 600 — as before-validators); the
skill ids alone are checked outside it, against the space (skills.runtime).
Secret env values are split off: they are stored encrypted on the Run, and only
their names stay in the snapshot.

Budgets: `token_budget` (input + output tokens) and `cost_budget_usd` (a float)
are None when unlimited; the LLM gateway enforces them. `repository` is None
or {"url", "base_branch"} (https://, or file:// when
AGENTLOOP_ALLOW_FILE_REPOSITORIES is set, for tests and local mirrors).
`preset_id`/`preset_name` record which preset the snapshot came from; only
`create_run` sets them, from the preset it is given.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic
from django.conf import settings
from django.core.exceptions import ValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from agentloop.runner.repo import repository_url_problem, valid_branch_name
from agentloop.runs import protocol
from agentloop.runs.providers import provider_names
from agentloop.sandboxes.egress import RuleError, parse_rule
from agentloop.skills.runtime import check_skill_ids

HARNESSES = protocol.HARNESSES
HARNESS_PROVIDERS = protocol.HARNESS_PROVIDERS
DEFAULT_MODEL = "claude-sonnet-4-5"
# A blank model is the provider's default.
DEFAULT_MODELS = {"anthropic": DEFAULT_MODEL, "openai": "gpt-5", "gemini": "gemini-2.5-pro"}
DEFAULT_TIME_LIMIT_SECONDS = 30 * 60
MAX_TIME_LIMIT_SECONDS = 24 * 3600
MAX_EGRESS_HOSTS = 50
DEFAULT_MAX_TURNS = 50
MAX_TURNS = 10_000
MAX_TOKEN_BUDGET = 10**12
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
RESERVED_ENV = {"AGENTLOOP_URL", "AGENTLOOP_RUN_TOKEN"}
MAX_COST_BUDGET_USD = Decimal("100000")
MAX_SYSTEM_PROMPT_LENGTH = 100_000

EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME.pattern)]


def _problem(text: str) -> PydanticCustomError:
    """An error whose message follows the field's name: "max_turns must be …"."""
    return PydanticCustomError("problem", text)


def _sentence(text: str) -> PydanticCustomError:
    """An error that is a whole sentence of its own."""
    return PydanticCustomError("sentence", text)


def _blank(value) -> bool:
    return value is None or value == ""


def _whole_number(value, maximum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _problem("must be a whole number.") from None
    if not 1 <= number <= maximum:
        raise _problem(f"must be between 1 and {maximum}.")
    return number


def _env(value) -> dict[str, str]:
    if _blank(value):
        return {}
    if not isinstance(value, dict):
        raise _problem("must be an object of NAME: value.")
    bad = [k for k in value if not isinstance(k, str) or not ENV_NAME.match(k) or k in RESERVED_ENV]
    if bad:
        raise _problem(f"has names that are not allowed: {', '.join(map(str, bad))}.")
    return {k: str(v) for k, v in value.items()}


class Limits(BaseModel):
    """Sandbox resources; a limit left out is the provider's default."""

    model_config = ConfigDict(extra="ignore")

    cpu: Annotated[float, Field(gt=0)] | None = Field(default=None, description="cores")
    memory_mb: Annotated[int, Field(gt=0)] | None = None
    processes: Annotated[int, Field(gt=0)] | None = None
    disk_mb: Annotated[int, Field(gt=0)] | None = None


class RepositoryConfig(BaseModel):
    """What the runner clones, and pushes agentloop/<run-code> to."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    url: str = Field(
        default="",
        description="https:// (file:// when AGENTLOOP_ALLOW_FILE_REPOSITORIES is set)",
    )
    base_branch: str = "main"

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value):
        url = str(value or "").strip()
        allow_file = getattr(settings, "AGENTLOOP_ALLOW_FILE_REPOSITORIES", False)
        problem = repository_url_problem(url, allow_file=allow_file)
        if problem:
            raise _sentence(problem)
        return url

    @field_validator("base_branch", mode="before")
    @classmethod
    def _base_branch(cls, value):
        base = str(value or "main").strip()
        if not valid_branch_name(base):
            raise _sentence(f"{base!r} is not a branch name.")
        return base


class RunConfig(BaseModel):
    """What a person, preset or automation may ask of a run (normalize_config's input).

    Blank values ("" or null) mean the default, as a form sends them. `skills`
    (skill ids) is checked against the space by normalize_config, not here.
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    harness: Literal["analyst", "claude-code", "codex", "opencode", "gemini"] = "analyst"
    llm_provider: str = Field(
        default="", description="the model API (anthropic, openai, gemini); blank: the harness's"
    )
    sandbox: str = Field(default="", description="a sandbox provider; blank: the default one")
    model: str = DEFAULT_MODEL
    system_prompt: Annotated[str, Field(max_length=MAX_SYSTEM_PROMPT_LENGTH)] = ""
    allowed_tools: list[str] = Field(default_factory=list)
    max_turns: Annotated[int, Field(ge=1, le=MAX_TURNS)] = DEFAULT_MAX_TURNS
    time_limit_seconds: Annotated[int, Field(ge=1, le=MAX_TIME_LIMIT_SECONDS)] = (
        DEFAULT_TIME_LIMIT_SECONDS
    )
    limits: Limits = Field(default_factory=Limits)
    env: dict[EnvName, str] = Field(default_factory=dict)
    secret_env: dict[EnvName, str] = Field(
        default_factory=dict, description="stored encrypted on the run; only names in the snapshot"
    )
    repository: RepositoryConfig | None = None
    token_budget: Annotated[int, Field(ge=1, le=MAX_TOKEN_BUDGET)] | None = Field(
        default=None, description="input + output tokens; null: unlimited"
    )
    cost_budget_usd: Annotated[float, Field(gt=0, le=float(MAX_COST_BUDGET_USD))] | None = Field(
        default=None, description="US dollars, at most 6 decimals; null: unlimited"
    )
    skills: Any = Field(default=None, description="skill ids of the run's space")
    preset_id: int | None = None
    preset_name: str = ""
    image: str | None = None
    network: Literal["open", "runner-only"] | None = Field(
        default=None,
        description="blank: runner-only; open reaches all the host reaches (trusted only)",
    )
    egress_hosts: list[str] = Field(
        default_factory=list,
        description="runner-only: host names reachable through the egress proxy "
        "(github.com, pypi.org:443, *.pythonhosted.org); the repository's host is added",
    )
    llm_base_url: str = ""

    @field_validator("harness", mode="before")
    @classmethod
    def _harness(cls, value):
        harness = value or "analyst"
        if harness not in HARNESSES:
            raise _sentence(f"Unknown harness {harness!r}; choose one of {', '.join(HARNESSES)}.")
        return harness

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox(cls, value):
        sandbox = value or settings.SANDBOX_PROVIDER_DEFAULT
        known = provider_names()
        if sandbox not in known:
            names = ", ".join(sorted(known)) or "none"
            raise _sentence(f"Unknown sandbox provider {sandbox!r}; known: {names}.")
        return sandbox

    @field_validator("model", "llm_provider", mode="before")
    @classmethod
    def _text(cls, value):
        return str(value or "")

    @model_validator(mode="after")
    def _provider_and_model(self):
        speaks = HARNESS_PROVIDERS.get(self.harness, ())
        if self.llm_provider and self.llm_provider not in speaks:
            if not speaks:
                raise _sentence(
                    f"The {self.harness} harness calls no model: leave the provider blank."
                )
            raise _sentence(
                f"The {self.harness} harness speaks {', '.join(speaks)}, not {self.llm_provider}."
            )
        self.llm_provider = self.llm_provider or (speaks[0] if speaks else "")
        self.model = self.model or DEFAULT_MODELS.get(self.llm_provider, DEFAULT_MODEL)
        return self

    @field_validator("system_prompt", mode="before")
    @classmethod
    def _system_prompt(cls, value):
        text = str(value or "")
        if len(text) > MAX_SYSTEM_PROMPT_LENGTH:
            raise _problem(f"is longer than {MAX_SYSTEM_PROMPT_LENGTH:,} characters.")
        return text

    @field_validator("allowed_tools", mode="before")
    @classmethod
    def _allowed_tools(cls, value):
        tools = value or []
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise _problem("must be a list of tool names.")
        return tools

    @field_validator("max_turns", mode="before")
    @classmethod
    def _max_turns(cls, value):
        return _whole_number(value, MAX_TURNS)

    @field_validator("time_limit_seconds", mode="before")
    @classmethod
    def _time_limit(cls, value):
        return _whole_number(value, MAX_TIME_LIMIT_SECONDS)

    @field_validator("limits", mode="before")
    @classmethod
    def _limits(cls, value):
        return {} if _blank(value) else value

    @field_validator("env", "secret_env", mode="before")
    @classmethod
    def _env_names(cls, value):
        return _env(value)

    @field_validator("repository", mode="before")
    @classmethod
    def _repository(cls, value):
        if value in (None, "", {}):
            return None
        if not isinstance(value, dict):
            raise _problem("must be an object with url and base_branch, or null.")
        return value

    @field_validator("token_budget", mode="before")
    @classmethod
    def _token_budget(cls, value):
        return None if _blank(value) else _whole_number(value, MAX_TOKEN_BUDGET)

    @field_validator("cost_budget_usd", mode="before")
    @classmethod
    def _cost(cls, value):
        if _blank(value):
            return None
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise _problem("must be a number of dollars.") from None
        if not amount.is_finite() or amount <= 0 or amount > MAX_COST_BUDGET_USD:
            raise _problem(f"must be more than 0 and at most {MAX_COST_BUDGET_USD}.")
        return float(round(amount, 6))

    @field_validator("egress_hosts", mode="before")
    @classmethod
    def _egress_hosts(cls, value):
        if _blank(value):
            return []
        if isinstance(value, str):
            value = [part for line in value.splitlines() for part in line.split(",")]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _problem("must be a list of host names.")
        hosts = []
        for entry in value:
            if not entry.strip():
                continue
            try:
                host, port = parse_rule(entry)
            except RuleError as error:
                raise _sentence(str(error)) from None
            text = f"{host}:{port}" if port else host
            if text not in hosts:
                hosts.append(text)
        if len(hosts) > MAX_EGRESS_HOSTS:
            raise _problem(f"may hold at most {MAX_EGRESS_HOSTS} host names.")
        return hosts

    @field_validator("preset_id", "image", "network", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return value or None

    @field_validator("preset_name", "llm_base_url", mode="before")
    @classmethod
    def _blank_is_empty(cls, value):
        return value or ""


def _with_repository_host(hosts: list[str], repository: dict | None) -> list[str]:
    host = urlsplit(repository["url"]).hostname if repository else None
    if host and repository["url"].startswith("https://") and host not in hosts:
        return [*hosts, host]
    return hosts


def config_errors(error: pydantic.ValidationError) -> dict[str, str]:
    """pydantic's errors as {field: message}: the field as a form names it
    ("repository.url", "limits.cpu"), its first message."""
    errors: dict[str, str] = {}
    for item in error.errors(include_url=False):
        names = []
        for part in item["loc"]:
            if not isinstance(part, str):
                break  # allowed_tools[3]: the message is allowed_tools'
            names.append(part)
        errors.setdefault(".".join(names) or "__all__", protocol.describe(item))
    return errors


def normalize_config(config: dict, *, space=None, user=None) -> tuple[dict, dict[str, str]]:
    """Return (snapshot, secret_env) or raise ValidationError.

    With `space` (and `user`), skill ids must name skills of that space the user may use.
    """
    if not isinstance(config, dict):
        raise ValidationError("The configuration must be an object.")
    errors: dict[str, str] = {}
    try:
        asked = RunConfig.model_validate(config)
    except pydantic.ValidationError as error:
        asked = None
        errors.update(config_errors(error))
    skills, skills_problem = check_skill_ids(config.get("skills"), space, user)
    if skills_problem:
        errors["skills"] = skills_problem
    if errors:
        raise ValidationError(errors)
    repository = asked.repository.model_dump() if asked.repository else None
    snapshot = {
        "harness": asked.harness,
        "llm_provider": asked.llm_provider,
        "sandbox": asked.sandbox,
        "model": asked.model,
        "system_prompt": asked.system_prompt,
        "allowed_tools": asked.allowed_tools,
        "max_turns": asked.max_turns,
        "time_limit_seconds": asked.time_limit_seconds,
        "limits": asked.limits.model_dump(exclude_none=True),
        "env": asked.env,
        "secret_env_names": sorted(asked.secret_env),
        "skills": skills,
        "repository": repository,
        "token_budget": asked.token_budget,
        "cost_budget_usd": asked.cost_budget_usd,
        # Only create_run sets these, from the preset it is given: a config
        # that names a preset links nothing by itself.
        "preset_id": None,
        "image": asked.image,
        # Open reaches the host's own services: only when asked for. Cloning and
        # pushing need the git host, which goes on the egress proxy's allow-list.
        "network": asked.network or "runner-only",
        "egress_hosts": _with_repository_host(asked.egress_hosts, repository),
        "preset_name": "",
        "llm_base_url": asked.llm_base_url,
    }
    return snapshot, asked.secret_env
