"""Signal's issues, kept across its runs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
