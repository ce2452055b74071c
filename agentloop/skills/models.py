"""Skills: account-level integrations of a space, with their secrets encrypted at rest.

A Skill keeps its plain settings in `config` and its secret values, as one
MultiFernet-encrypted JSON object, in `secrets_encrypted`. Secret values leave
the model only through `secrets()`, called when a run is launched; pages see
`secret_hints` (whether a value is set, at most its last 4 characters).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db import models
from django.utils import timezone

from agentloop.skills import crypto
from agentloop.skills.kinds import get_kind, kind_choices
from agentloop.teams.models import Space

NAME = re.compile(r"^[A-Za-z0-9 ._-]{1,253}$")
NAME_RULE = "letters, digits, spaces, '-', '_' and '.', up to 253 characters"
# Only show the tail of a secret long enough that 4 characters give nothing away.
HINT_MIN_LENGTH = 12


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid skill name, or None. It becomes a directory name."""
    if not NAME.match(name or ""):
        return f"A skill name uses {NAME_RULE}."
    if name != name.strip():
        return "A skill name does not start or end with a space."
    if set(name) <= {"."}:
        return "A skill name is more than dots."
    return None


def hint_for(value: str) -> str:
    return f"…{value[-4:]}" if len(value) >= HINT_MIN_LENGTH else ""


class Skill(models.Model):
    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="skills")
    kind = models.CharField(max_length=32, choices=kind_choices())
    name = models.CharField(max_length=253)
    config = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="")
    # {secret field: "…abcd" or ""}: which secrets are set, for the pages.
    secret_hints = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["space", "name"]
        constraints = [
            models.UniqueConstraint(fields=["space", "name"], name="skill_name_unique_in_space"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} skill {self.name}"

    def __repr__(self) -> str:
        # Never the ciphertext or hints: reprs end up in logs and tracebacks.
        return f"<Skill {self.pk} {self.kind} {self.name!r}>"

    @property
    def kind_spec(self):
        return get_kind(self.kind)

    def secrets(self) -> dict[str, str]:
        """The decrypted secret values; raises crypto.SecretsUnreadable."""
        return crypto.decrypt_json(self.secrets_encrypted)

    def set_secrets(self, values: dict[str, str]) -> None:
        values = {k: v for k, v in values.items() if v}
        self.secrets_encrypted = crypto.encrypt_json(values)
        self.secret_hints = {k: hint_for(v) for k, v in sorted(values.items())}

    def secrets_readable(self) -> bool:
        try:
            self.secrets()
        except crypto.SecretsUnreadable:
            return False
        return True

    def env(self) -> dict[str, str]:
        """Environment variables this skill gives a run; raises crypto.SecretsUnreadable."""
        return self.kind_spec.env(self.config, self.secrets())

    def install(self) -> dict | None:
        return self.kind_spec.install(self.config, self.name)

    def env_secret_names(self) -> list[str]:
        """Names of a custom skill's env secrets (from the hints: no decryption)."""
        from agentloop.skills.kinds.custom import ENV_PREFIX

        return sorted(k[len(ENV_PREFIX) :] for k in self.secret_hints if k.startswith(ENV_PREFIX))


class AuditAction(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    DELETED = "deleted", "Deleted"


class SkillAuditEntry(models.Model):
    """Who changed which skill, when, and which fields — field names only, never values."""

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="skill_audit")
    # Kept when the skill is deleted: the log outlives what it describes.
    skill = models.ForeignKey(
        Skill, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit"
    )
    skill_name = models.CharField(max_length=253)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    changed_fields = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["space", "-created_at"], name="skillaudit_space_created")]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.skill_name}"
