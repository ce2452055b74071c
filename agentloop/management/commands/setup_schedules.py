"""Install the recurring django-q2 schedules (idempotent; `make run` calls it)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from agentloop.schedules import install_schedules


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules agentloop needs (run reconciliation)."

    def handle(self, *args, **options):
        created = install_schedules()
        self.stdout.write(
            "Installed the reconcile schedule." if created else "Schedules up to date."
        )
