"""Automations: a preset run against a project, started by a cron or metric trigger."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agentloop.teams.models import Space


class Automation(models.Model):
    """A preset run against a project, started by a trigger (cron or metric).

    State changes go through agentloop.automations.actions (tick, fire, pause, resume);
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
        "presets.AgentPreset", null=True, on_delete=models.SET_NULL, related_name="automations"
    )
    name = models.CharField(max_length=200)
    prompt = models.TextField()
    trigger = models.CharField(max_length=8, choices=TRIGGER_CHOICES, default=CRON)
    cron_expression = models.CharField(max_length=200, blank=True, default="")
    time_zone = models.CharField(max_length=64, default="UTC")
    # Metric trigger (see agentloop.automations.metrics for the names).
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
