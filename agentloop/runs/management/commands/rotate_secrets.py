"""manage.py rotate_secrets: re-encrypt skill secrets and run secret env under the first key.

Put the new key first in AGENTLOOP_FERNET_KEYS (keeping the old ones after it),
run this, then drop the old keys.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from agentloop.runs.rotation import rotate_all


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the current (first) AGENTLOOP_FERNET_KEYS key."

    def handle(self, *args, **options):
        result = rotate_all()
        for label, count in result.rotated.items():
            self.stdout.write(f"{label}: {count} re-encrypted")
        if result.unreadable:
            raise CommandError(
                "These rows cannot be decrypted with any configured key and were left as they "
                f"are: {', '.join(result.unreadable)}. Add back the key they were encrypted "
                "with, or re-enter their secrets."
            )
        self.stdout.write(self.style.SUCCESS("All secrets are under the current key."))
