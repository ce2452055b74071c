"""What a skill kind is: its typed fields, their validation, and the env it gives a run.

A kind never sees a request or a model: `clean()` takes and returns plain dicts,
`env()` turns a saved configuration and its decrypted secrets into environment
variables. Which of those variables are secret is decided by value: any env
value that equals one of the skill's secrets goes into the run's encrypted
secret env (and is redacted from everything stored); the rest is plain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Names the run's own plumbing sets; a skill may not override them.
RESERVED_ENV = frozenset({"AGENTLOOP_URL", "AGENTLOOP_RUN_TOKEN", "HOME", "PATH"})


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    secret: bool = False
    required: bool = True
    default: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""
    max_length: int = 1000


@dataclass(frozen=True)
class SkillKind:
    key: str
    label: str
    description: str
    fields: tuple[Field, ...] = field(default_factory=tuple)
    # Custom skills also carry extra env secrets (NAME=value lines).
    has_env_secrets: bool = False

    @property
    def plain_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.secret)

    @property
    def secret_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.secret)

    def initial(self) -> dict[str, str]:
        """Values a new skill of this kind starts with."""
        return {f.name: f.default for f in self.plain_fields if f.default}

    def clean(self, config: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
        """Kind-specific checks of the merged values; returns {field: message}."""
        return {}

    def env(self, config: dict, secrets: dict[str, str]) -> dict[str, str]:
        raise NotImplementedError

    def install(self, config: dict, name: str) -> dict | None:
        """What the runner installs in the sandbox for this skill (custom skills only)."""
        return None


def check_choices(kind: SkillKind, config: dict, errors: dict) -> None:
    for f in kind.plain_fields:
        if f.choices and config.get(f.name) not in {value for value, _ in f.choices}:
            errors[f.name] = f"Choose one of: {', '.join(label for _, label in f.choices)}."
