"""Agent presets: a named run configuration of a space that people share.

A preset is only a template. Starting a run turns it into a config snapshot
(studio.presets.preset_to_config → agentloop.runs.config.normalize_config) that
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
    sandbox = models.CharField(max_length=32, blank=True, default="")  # "": the default provider
    model = models.CharField(max_length=200, default=DEFAULT_MODEL)
    system_prompt = models.TextField(blank=True, default="", max_length=MAX_SYSTEM_PROMPT_LENGTH)
    skills = models.ManyToManyField("skills.Skill", blank=True, related_name="presets")
    # Cloned at base_branch before the agent starts; only with a GitHub skill attached.
    repository_url = models.CharField(max_length=500, blank=True, default="")
    base_branch = models.CharField(max_length=200, blank=True, default="")
    allowed_tools = models.JSONField(default=list, blank=True)
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


# --- Automations (helper "automations"; the logic lives in studio/automations.py) ---


class Automation(models.Model):
    """A preset run against a project, started by a trigger (cron or metric).

    State changes go through studio.automations (tick, fire, pause, resume);
    the schedule (`next_fire_at`) only moves forward when a scheduled slot is
    claimed, never for "run now".
    """

    CRON = "cron"
    METRIC = "metric"
    TRIGGER_CHOICES = [(CRON, "Cron"), (METRIC, "Metric")]

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="automations")
    project = models.ForeignKey(
        "teams.Project", on_delete=models.CASCADE, related_name="automations"
    )
    # Required, but a preset deleted later leaves the automation paused, not gone.
    preset = models.ForeignKey(
        AgentPreset, null=True, on_delete=models.SET_NULL, related_name="automations"
    )
    name = models.CharField(max_length=200)
    prompt = models.TextField()
    trigger = models.CharField(max_length=8, choices=TRIGGER_CHOICES, default=CRON)
    cron_expression = models.CharField(max_length=200, blank=True, default="")
    time_zone = models.CharField(max_length=64, default="UTC")
    # Metric trigger (see studio.metrics for the names).
    metric = models.CharField(max_length=32, blank=True, default="")
    comparison = models.CharField(max_length=2, blank=True, default=">")
    threshold = models.FloatField(null=True, blank=True)
    window_minutes = models.PositiveIntegerField(default=60)
    every_minutes = models.PositiveIntegerField(default=5)
    min_spans = models.PositiveIntegerField(default=10)
    filter_kind = models.CharField(max_length=16, blank=True, default="")
    filter_name = models.CharField(max_length=500, blank=True, default="")
    filter_attribute = models.CharField(max_length=200, blank=True, default="")
    filter_value = models.CharField(max_length=500, blank=True, default="")
    eval_name = models.CharField(max_length=200, blank=True, default="")
    eval_label = models.CharField(max_length=200, blank=True, default="")
    # Admission.
    cooldown_minutes = models.PositiveIntegerField(default=0)
    max_concurrent = models.PositiveIntegerField(default=1)
    max_consecutive_failures = models.PositiveIntegerField(default=3)
    enabled = models.BooleanField(default=True)
    paused_reason = models.TextField(blank=True, default="")
    # Failures before this moment do not count towards auto-pause (set on resume).
    failures_counted_since = models.DateTimeField(null=True, blank=True)
    next_fire_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    # Signal's own automations: "" for ordinary ones, else cadence|errors|evals.
    signal_role = models.CharField(max_length=16, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["space", "name"]
        indexes = [models.Index(fields=["enabled", "next_fire_at"], name="automation_due")]

    def __str__(self) -> str:
        return f"automation {self.name}"


class AutomationFire(models.Model):
    """One firing of an automation. (automation, scheduled_at) is the fire key:
    the database, not a lock in memory, makes a fire happen once even when two
    schedulers tick at the same moment."""

    STARTED = "started"
    SKIPPED = "skipped"
    FAILED = "failed"
    OUTCOMES = [(STARTED, "Run started"), (SKIPPED, "Skipped"), (FAILED, "Could not start")]

    automation = models.ForeignKey(Automation, on_delete=models.CASCADE, related_name="fires")
    scheduled_at = models.DateTimeField()
    fired_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=16)  # cron | metric | manual
    outcome = models.CharField(max_length=8, choices=OUTCOMES, default=STARTED)
    detail = models.TextField(blank=True, default="")
    context = models.JSONField(default=dict, blank=True)
    run = models.OneToOneField(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="automation_fire"
    )
    fired_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-fired_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["automation", "scheduled_at"], name="automation_fire_key"
            )
        ]

    def __str__(self) -> str:
        return f"fire of automation {self.automation_id} at {self.scheduled_at:%Y-%m-%d %H:%M}"


class ArtifactReview(models.Model):
    """The audit log of reviews: who approved or rejected which artifact, when, why."""

    artifact = models.ForeignKey("runs.Artifact", on_delete=models.CASCADE, related_name="reviews")
    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_name = models.CharField(max_length=150)
    decision = models.CharField(max_length=16)  # approved | rejected
    comment = models.TextField(blank=True, default="")
    effect = models.TextField(blank=True, default="")  # e.g. "wrote 3 annotations"
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.reviewer_name} {self.decision} artifact {self.artifact_id}"


class SignalIssue(models.Model):
    """A failure Signal found in a project, kept across runs by its key
    (span name + exception type, or the finding title for other kinds)."""

    project = models.ForeignKey(
        "teams.Project", on_delete=models.CASCADE, related_name="signal_issues"
    )
    key = models.CharField(max_length=600)
    title = models.CharField(max_length=600)
    kind = models.CharField(max_length=16, default="error")
    overview = models.TextField(blank=True, default="")
    proposed_fix = models.TextField(blank=True, default="")
    trace_ids = models.JSONField(default=list, blank=True)
    reproduce = models.TextField(blank=True, default="")
    span_filter = models.JSONField(default=dict, blank=True)
    affected_traces = models.PositiveIntegerField(default=0)
    span_count = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    last_run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-affected_traces", "-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="signal_issue_key_unique")
        ]

    def __str__(self) -> str:
        return self.title


class SignalSighting(models.Model):
    """One run seeing one issue: the issue's volume over time."""

    issue = models.ForeignKey(SignalIssue, on_delete=models.CASCADE, related_name="sightings")
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(default=timezone.now)
    affected_traces = models.PositiveIntegerField(default=0)
    span_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["issue", "run"], name="signal_sighting_once")
        ]

    def __str__(self) -> str:
        return f"{self.issue_id} seen by run {self.run_id}"
