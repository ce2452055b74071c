"""Delete spans older than each project's retention (agentloop/traces/retention.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from agentloop.teams.models import Project
from agentloop.traces import retention


class Command(BaseCommand):
    help = "Delete the spans of projects with a retention that are older than it, in batches."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, help="only this project (its id)")
        parser.add_argument(
            "--batch", type=int, default=retention.BATCH, help="spans per transaction"
        )
        parser.add_argument(
            "--pause", type=float, default=0.0, help="seconds to wait between batches"
        )

    def handle(self, *args, project, batch, pause, **options):
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        if project is not None:
            found = Project.objects.filter(pk=project).first()
            if found is None:
                raise CommandError(f"No project with id {project}.")
            if found.retention_days is None:
                raise CommandError(f"{found.name} keeps its spans (no retention set).")
            purged = [retention.purge_project(found, batch=batch, pause=pause)]
        else:
            purged = retention.purge_all(batch=batch, pause=pause)
        for p in purged:
            self.stdout.write(
                f"{p.project.name}: deleted {p.spans} spans and {p.traces} traces "
                f"that started before {p.cutoff:%Y-%m-%d %H:%M} UTC"
                + (
                    f" ({p.dropped_partitions} week partitions dropped)"
                    if p.dropped_partitions
                    else ""
                )
            )
        if not purged:
            self.stdout.write("No project has a retention.")
