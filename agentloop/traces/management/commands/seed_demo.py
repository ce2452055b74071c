"""Seed the demo that `make run` shows: a login, a space, a project with traces.

Idempotent: running it again finds what is there and adds nothing. The login's
password is generated once and kept in var/demo-login.txt (mode 600), so every
`make run` prints the same one. The project API key's raw value can only be
shown when it is minted, so it is printed then and written to the same file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from agentloop.teams.models import Membership, Project, ProjectApiKey, Role, Space
from agentloop.traces.demo import write_demo_traces
from agentloop.traces.models import Span

USERNAME = "admin"
SPACE_SLUG = "demo"
PROJECT_NAME = "support-bot"
KEY_NAME = "demo"


def login_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-login.txt"


def read_login_file() -> dict[str, str]:
    path = login_file()
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            values[key.strip()] = value.strip()
    return values


def write_login_file(values: dict[str, str]) -> None:
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# agentloop demo login, written by `manage.py seed_demo`. Keep it private."]
    lines += [f"{key}: {value}" for key, value in values.items()]
    # Created with 600 from the start: the password is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    path.chmod(0o600)


class Command(BaseCommand):
    help = "Create the demo login, space 'Demo' and project 'support-bot' with traces (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--traces", type=int, default=200, help="Traces to generate (default 200)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Random seed of the generator.")

    def handle(self, *args, traces, seed, **options):
        if traces < 0:
            raise CommandError(f"--traces must be 0 or more, not {traces}.")
        stored = read_login_file()
        with transaction.atomic():
            user, password, password_note = self._user(stored)
            space = self._space(user)
            project, _ = Project.objects.get_or_create(
                space=space,
                name=PROJECT_NAME,
                defaults={"description": "Customer support agent (demo data)"},
            )
            raw_key, key_note = self._api_key(project, user, stored)
            added = 0
            if not Span.objects.filter(project=project).exists():
                added = len(write_demo_traces(project, traces=traces, seed=seed).traces)

        values = {"url": settings.AGENTLOOP_PUBLIC_URL, "username": USERNAME, "password": password}
        if raw_key or stored.get("api_key"):
            values["api_key"] = raw_key or stored["api_key"]
        write_login_file(values)

        spans = Span.objects.filter(project=project).count()
        self.stdout.write(
            f"Demo project '{space.name} / {project.name}': "
            + (f"added {added} traces, " if added else "already seeded, ")
            + f"{spans} spans."
        )
        if raw_key:
            self.stdout.write(
                f"Project API key (shown once; also saved in the login file):\n    {raw_key}"
            )
        elif key_note:
            self.stdout.write(key_note)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"  Open      {settings.AGENTLOOP_PUBLIC_URL}/"))
        self.stdout.write(self.style.SUCCESS(f"  Username  {USERNAME}"))
        self.stdout.write(self.style.SUCCESS(f"  Password  {password}"))
        if password_note:
            self.stdout.write(self.style.WARNING(password_note))
        self.stdout.write(f"  (kept in {login_file()})")

    def _user(self, stored):
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first()
        password = stored.get("password")
        note = ""
        if user is None:
            password = password or secrets.token_urlsafe(12)
            user = User.objects.create_user(username=USERNAME, password=password, is_staff=True)
        elif not password:
            # The login file is gone (a fresh var/ with an old database): the
            # password cannot be recovered, so issue a new one.
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save(update_fields=["password"])
        elif not user.check_password(password):
            # Someone changed it on purpose; don't take their login away.
            note = "  (the admin password was changed since; the one above no longer works)"
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        return user, password, note

    def _space(self, user):
        space = Space.objects.filter(slug=SPACE_SLUG).first()
        if space is None:
            return Space.create_with_owner("Demo", user)
        membership = Membership.objects.filter(space=space, user=user).first()
        if membership is None:
            Membership.objects.create(space=space, user=user, role=Role.ADMIN)
        elif membership.role != Role.ADMIN:
            membership.role = Role.ADMIN
            membership.save()
        return space

    def _api_key(self, project, user, stored):
        key = ProjectApiKey.objects.active().filter(project=project, name=KEY_NAME).first()
        if key is None:
            key, raw = ProjectApiKey.mint(project, KEY_NAME, created_by=user)
            return raw, ""
        if stored.get("api_key", "").endswith(key.hint):
            return "", f"Project API key: in the login file (…{key.hint})."
        return "", (
            f"Project API key '{KEY_NAME}' (…{key.hint}) exists but its raw value is lost; "
            "create a new key in the project settings."
        )
