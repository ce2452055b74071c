"""The review of artifacts: who approved or rejected what."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agentloop.teams.models import Space


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
