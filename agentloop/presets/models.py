"""Agent presets: a named run configuration of a space that people share.

A preset is only a template. Starting a run turns it into a config snapshot
(agentloop.presets.actions.preset_to_config → agentloop.runs.config.normalize_config) that
is stored on the Run, so editing or deleting the preset never changes a run
already started. Validation lives in normalize_config, once for presets,
ad-hoc sessions and automations alike.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agentloop.runs.config import (
    DEFAULT_MAX_TURNS,
    DEFAULT_MODEL,
    DEFAULT_TIME_LIMIT_SECONDS,
    MAX_SYSTEM_PROMPT_LENGTH,
)
from agentloop.teams.models import Space


class AgentPreset(models.Model):
    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="presets")
    name = models.CharField(max_length=200)
    harness = models.CharField(max_length=32, default="claude-code")
    # The model API ("anthropic", "openai", "gemini"); "": the harness's own.
    llm_provider = models.CharField(max_length=32, blank=True, default="")
    sandbox = models.CharField(max_length=32, blank=True, default="")  # "": the default provider
    model = models.CharField(max_length=200, default=DEFAULT_MODEL)
    system_prompt = models.TextField(blank=True, default="", max_length=MAX_SYSTEM_PROMPT_LENGTH)
    skills = models.ManyToManyField("skills.Skill", blank=True, related_name="presets")
    # Cloned at base_branch before the agent starts; only with a GitHub skill attached.
    repository_url = models.CharField(max_length=500, blank=True, default="")
    base_branch = models.CharField(max_length=200, blank=True, default="")
    allowed_tools = models.JSONField(default=list, blank=True)
    # "": runner-only. Open reaches everything the host reaches (its database too):
    # trusted workloads only. Runner-only runs reach egress_hosts through the proxy.
    network = models.CharField(max_length=16, blank=True, default="")
    egress_hosts = models.JSONField(default=list, blank=True)
    max_turns = models.PositiveIntegerField(default=DEFAULT_MAX_TURNS)
    time_limit_seconds = models.PositiveIntegerField(default=DEFAULT_TIME_LIMIT_SECONDS)
    token_budget = models.PositiveBigIntegerField(null=True, blank=True)
    cost_budget_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # Kubernetes resources; the local provider applies what it can.
    cpu = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    memory_mb = models.PositiveIntegerField(null=True, blank=True)
    # Built-in presets (Signal's) work like any other but stay out of the Studio picker.
    hidden = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["space", "name"]
        constraints = [
            models.UniqueConstraint(fields=["space", "name"], name="preset_name_unique_in_space"),
        ]

    def __str__(self) -> str:
        return f"preset {self.name}"

    @property
    def repository(self) -> dict | None:
        if not self.repository_url:
            return None
        return {"url": self.repository_url, "base_branch": self.base_branch or "main"}

    @property
    def time_limit_minutes(self) -> float:
        return self.time_limit_seconds / 60
