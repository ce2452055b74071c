"""A run group: one task started on several harnesses/models at once, to compare side by side."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agentloop.runs.models import Run
from agentloop.teams.models import Project, Space


class RunGroup(models.Model):
    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="run_groups")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="run_groups")
    prompt = models.TextField()
    runs = models.ManyToManyField(Run, related_name="groups")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"group {self.pk} of {self.project}"
