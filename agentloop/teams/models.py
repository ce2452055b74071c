"""Spaces (teams), their members and projects, and project API keys.

A member's role is stored on Membership and mirrored into django-guardian
object permissions on the Space, which is what access checks read. The role
is the one source of truth; `Membership.save()`/`delete()` keep guardian in step.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.text import slugify
from guardian.shortcuts import assign_perm, remove_perm

from agentloop.key_lookup import object_for_key


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# What each role may do in a space, as guardian permission codenames on Space.
#   view_space:  read projects, traces, runs, transcripts
#   use_space:   start runs, send follow-ups, write annotations
#   admin_space: manage members, API keys, skills, presets
ROLE_PERMISSIONS = {
    Role.ADMIN: ("view_space", "use_space", "admin_space"),
    Role.MEMBER: ("view_space", "use_space"),
    Role.VIEWER: ("view_space",),
}
ALL_SPACE_PERMISSIONS = ("view_space", "use_space", "admin_space")


class Space(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # What ingest does with spans naming a project (`openinference.project.name`)
    # the space does not have: create it, as Phoenix does (so a quick-start with
    # the default project name loses nothing), or refuse them, counted per key
    # (ApiKeyRefusal) on the key's project's settings page.
    refuse_unknown_projects = models.BooleanField(
        default=False,
        help_text="Refuse spans naming a project this space does not have, instead of creating it.",
    )

    class Meta:
        ordering = ["name"]
        default_permissions = ()
        permissions = [
            ("view_space", "Can read the space"),
            ("use_space", "Can start runs and write annotations"),
            ("admin_space", "Can manage the space"),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    @transaction.atomic
    def create_with_owner(cls, name: str, owner) -> Space:
        base = slugify(name) or "space"
        slug, n = base, 1
        while cls.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base}-{n}"
        space = cls.objects.create(name=name, slug=slug, created_by=owner)
        Membership.objects.create(space=space, user=owner, role=Role.ADMIN)
        return space

    def worker_project(self) -> Project:
        """The space's internal project holding its workers' own traces.

        Each run records its execution (turns, tool calls, LLM calls through the
        gateway) as one trace here, so "View traces" reuses the trace store and
        trace view, while the projects people investigate stay free of it.
        """
        project, _ = Project.objects.get_or_create(
            space=self,
            internal=True,
            defaults={"name": "agentloop workers", "description": "Traces of this space's runs."},
        )
        return project

    def can_use(self, user) -> bool:
        """May this user start runs, review and change automations here (member or admin)?"""
        return self.role_of(user) in (Role.ADMIN, Role.MEMBER)

    def can_admin(self, user) -> bool:
        return self.role_of(user) == Role.ADMIN

    def role_of(self, user) -> str | None:
        if not user.is_authenticated:
            return None
        return self.memberships.filter(user=user).values_list("role", flat=True).first()


class Membership(models.Model):
    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "user"], name="one_membership_per_user")
        ]
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.space} as {self.role}"

    def save(self, *args, **kwargs):
        with transaction.atomic():
            super().save(*args, **kwargs)
            self._sync_permissions(ROLE_PERMISSIONS[Role(self.role)])

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            self._sync_permissions(())
            return super().delete(*args, **kwargs)

    def _sync_permissions(self, granted: tuple[str, ...]) -> None:
        for codename in ALL_SPACE_PERMISSIONS:
            perm = f"teams.{codename}"
            if codename in granted:
                assign_perm(perm, self.user, self.space)
            else:
                remove_perm(perm, self.user, self.space)


class Project(models.Model):
    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # True for the space's worker-traces project (Space.worker_project): hidden
    # from project lists and pickers, reached only through a run. This flag, not
    # the name, is its identity: people may name a project anything, the worker
    # project's name included, and it stays one per space.
    internal = models.BooleanField(default=False)
    # Spans that started longer ago than this are deleted by `manage.py purge`
    # (scheduled daily; agentloop/traces/retention.py). None: kept forever.
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete spans older than this many days; empty: keep."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["space", "name"],
                condition=models.Q(internal=False),
                name="project_name_unique_in_space",
            ),
            models.UniqueConstraint(
                fields=["space"],
                condition=models.Q(internal=True),
                name="one_worker_project_per_space",
            ),
        ]

    def __str__(self) -> str:
        return self.name


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ProjectApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ProjectApiKey(models.Model):
    """A key that writes spans to (and reads the API of) one project.

    Only a SHA-256 of the key is stored; the raw key is shown once at creation.
    Keys are long random tokens, so a fast hash is enough (no brute force).
    """

    PREFIX = "al_pk_"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8, help_text="Last characters, to tell keys apart.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ProjectApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} (…{self.hint})"

    @classmethod
    def mint(cls, project: Project, name: str, created_by=None) -> tuple[ProjectApiKey, str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            project=project,
            name=name,
            key_hash=_hash_key(raw),
            hint=raw[-4:],
            created_by=created_by,
        )
        return key, raw

    @classmethod
    def authenticate(cls, raw: str) -> ProjectApiKey | None:
        if not raw or not raw.startswith(cls.PREFIX):
            return None
        key = (
            cls.objects.active()
            .select_related("project__space")
            .filter(key_hash=_hash_key(raw))
            .first()
        )
        if key is not None:
            key.touch()
        return key

    @classmethod
    def project_for_token(cls, raw: str | None, now=None) -> Project | None:
        """The project of an active key, in one precompiled query; None otherwise.

        The same answer as `authenticate(raw).project` for OTLP ingest, which
        authenticates every export (agentloop/key_lookup.py).
        """
        if not raw or not raw.startswith(cls.PREFIX):
            return None
        found = object_for_key(
            cls, Project, _hash_key(raw), now or timezone.now(), key_columns=("id", "name")
        )
        if found is None:
            return None
        project, key = found
        project.api_key_id = key["id"]  # the key that opened it: ingest counts its refusals
        project.api_key_name = key["name"]
        return project

    def touch(self) -> None:
        # Write last-used at most once a minute: ingest is a hot path.
        now = timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() > 60:
            ProjectApiKey.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class UserSettings(models.Model):
    """A person's own settings: the time zone pages show times in (UTC until chosen)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agentloop_settings"
    )
    time_zone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return f"settings of {self.user_id}"

    @classmethod
    def time_zone_of(cls, user) -> str:
        if not getattr(user, "is_authenticated", False):
            return "UTC"
        found = cls.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
        return found or "UTC"


class ApiKeyRefusal(models.Model):
    """Spans (or whole exports) that ingest refused from one key, counted by reason.

    An exporter is answered 200 with a partial-success note it usually does not
    log, so the refusal would otherwise be seen by nobody: the project's
    settings page shows these rows next to the key.
    """

    key = models.ForeignKey(ProjectApiKey, on_delete=models.CASCADE, related_name="refusals")
    reason = models.CharField(max_length=300)
    spans = models.BigIntegerField(default=0, help_text="Spans refused for this reason.")
    exports = models.BigIntegerField(default=0, help_text="Exports that had such spans.")
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_at"]
        constraints = [
            models.UniqueConstraint(fields=["key", "reason"], name="one_refusal_row_per_reason")
        ]

    def __str__(self) -> str:
        return f"{self.spans} spans from {self.key}: {self.reason}"

    @classmethod
    def count(cls, key_id: int, rejected, now=None) -> None:
        """Add one export's refusals (reason -> spans) to the key's counters.

        One upsert per reason, so concurrent exports add up instead of
        overwriting each other; only called when something was refused, so
        ingest's hot path pays nothing.
        """
        now = now or timezone.now()
        for reason, spans in rejected.items():
            reason = reason[:300]
            updated = cls.objects.filter(key_id=key_id, reason=reason).update(
                spans=models.F("spans") + spans, exports=models.F("exports") + 1, last_at=now
            )
            if updated:
                continue
            try:
                with transaction.atomic():
                    cls.objects.create(
                        key_id=key_id,
                        reason=reason,
                        spans=spans,
                        exports=1,
                        first_at=now,
                        last_at=now,
                    )
            except IntegrityError:  # another export created it meanwhile: add to it
                cls.objects.filter(key_id=key_id, reason=reason).update(
                    spans=models.F("spans") + spans, exports=models.F("exports") + 1, last_at=now
                )


class PersonalTokenQuerySet(models.QuerySet):
    def usable(self, now=None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class PersonalToken(models.Model):
    """A person's API token for scripts and the `agentloop` CLI (docs/cli.md).

    It acts as its owner, through the same access helpers as the pages: the
    owner's roles, never more. `spaces`, when any are set, narrows it to those
    spaces (agentloop.teams.access reads `limited_to_spaces` off the user the
    token authenticates). Only a SHA-256 is stored; the raw token is shown once.
    """

    PREFIX = "al_pt_"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8, help_text="Last characters, to tell tokens apart.")
    spaces = models.ManyToManyField(Space, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = PersonalTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (…{self.hint})"

    @classmethod
    def mint(cls, user, name: str, expires_at=None, spaces=()) -> tuple[PersonalToken, str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        with transaction.atomic():
            token = cls.objects.create(
                user=user, name=name, key_hash=_hash_key(raw), hint=raw[-4:], expires_at=expires_at
            )
            token.spaces.set(spaces)
        return token, raw

    @classmethod
    def authenticate(cls, raw: str, now=None) -> PersonalToken | None:
        if not raw or not raw.startswith(cls.PREFIX):
            return None
        now = now or timezone.now()
        token = (
            cls.objects.usable(now)
            .select_related("user")
            .filter(key_hash=_hash_key(raw), user__is_active=True)
            .first()
        )
        if token is not None and (
            token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60
        ):
            # At most one write a minute: a followed transcript calls often.
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token

    def space_ids(self) -> frozenset[int] | None:
        """The spaces it is limited to, or None for all of its owner's."""
        ids = frozenset(self.spaces.values_list("pk", flat=True))
        return ids or None

    def revoke(self, now=None) -> None:
        if self.revoked_at is None:
            self.revoked_at = now or timezone.now()
            PersonalToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
                revoked_at=self.revoked_at
            )

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
