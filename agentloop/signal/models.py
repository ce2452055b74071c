"""Signal's issues, kept across its runs."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Severity(models.TextChoices):
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


SEVERITY_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}


class IssueState(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"
    REGRESSED = "regressed", "Regressed"


class SignalIssue(models.Model):
    """A failure Signal found in a project, kept across its runs by a fingerprint
    (what failed and where: class, component, the dimension it concentrates in).

    The state moves only through agentloop.signal.issues: open when first seen,
    resolved when its fingerprint stays absent from Signal's passes for a while,
    regressed when it comes back after that.
    """

    project = models.ForeignKey(
        "teams.Project", on_delete=models.CASCADE, related_name="signal_issues"
    )
    key = models.CharField(max_length=600)  # the fingerprint
    title = models.CharField(max_length=600)
    kind = models.CharField(max_length=32, default="error")  # the detector's class
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.LOW)
    state = models.CharField(max_length=10, choices=IssueState.choices, default=IssueState.OPEN)
    overview = models.TextField(blank=True, default="")
    proposed_fix = models.TextField(blank=True, default="")
    # What, where, since when, how much (the detector's own words; see signal/issues.py).
    component = models.JSONField(default=dict, blank=True)
    where = models.JSONField(default=list, blank=True)
    since = models.JSONField(default=dict, blank=True)
    how_much = models.JSONField(default=dict, blank=True)
    merged = models.JSONField(default=list, blank=True)  # titles of restatements folded in
    trace_ids = models.JSONField(default=list, blank=True)
    reproduce = models.TextField(blank=True, default="")
    span_filter = models.JSONField(default=dict, blank=True)
    affected_traces = models.PositiveIntegerField(default=0)
    span_count = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    regressed_at = models.DateTimeField(null=True, blank=True)
    times_regressed = models.PositiveIntegerField(default=0)
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

    @property
    def is_active(self) -> bool:
        return self.state != IssueState.RESOLVED

    def mark_seen(self, now) -> None:
        """A Signal pass saw it: a resolved issue that comes back has regressed."""
        if self.pk is not None and self.state == IssueState.RESOLVED:
            self.state = IssueState.REGRESSED
            self.regressed_at = now
            self.times_regressed += 1
        self.last_seen_at = now

    def mark_resolved(self, now) -> None:
        """Its fingerprint stayed absent long enough (agentloop.signal.issues.resolve_absent)."""
        self.state = IssueState.RESOLVED
        self.resolved_at = now


class SignalSighting(models.Model):
    """One Signal pass seeing one issue: the issue's volume over time."""

    issue = models.ForeignKey(SignalIssue, on_delete=models.CASCADE, related_name="sightings")
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="+")
    seen_at = models.DateTimeField(default=timezone.now)
    affected_traces = models.PositiveIntegerField(default=0)
    span_count = models.PositiveIntegerField(default=0)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.LOW)

    class Meta:
        ordering = ["seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["issue", "run"], name="signal_sighting_once")
        ]

    def __str__(self) -> str:
        return f"{self.issue_id} seen by run {self.run_id}"


class SignalPass(models.Model):
    """One Signal run read into the project's issues: what "absent since" counts against."""

    project = models.ForeignKey("teams.Project", on_delete=models.CASCADE, related_name="+")
    run = models.OneToOneField("runs.Run", on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    issues_seen = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["project", "-at"], name="signal_pass_project_at")]

    def __str__(self) -> str:
        return f"Signal pass of run {self.run_id}"
