"""Runs, their events and artifacts, and the service keys runners call back with.

A Run owns its status: every change goes through `Run.transition()`, a
conditional UPDATE on the status the caller saw, so two workers (or a worker
and the reconciler) can never both move the same run. Each transition appends
a `status` RunEvent in the same transaction, and does nothing else: what else
follows a move (the run's own trace) is `agentloop.runs.lifecycle.move`'s, the
one function the rest of the code moves runs with.

RunEvent `seq` is assigned by the server from the `next_seq` counter on Run,
bumped with an F() UPDATE inside the writer's transaction: the UPDATE takes the
row lock (PostgreSQL) or the database write lock (SQLite, IMMEDIATE
transactions), so concurrent writers get disjoint, gap-free ranges.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import datetime

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from agentloop.key_lookup import object_for_key
from agentloop.runs.notify import ring
from agentloop.teams.models import Project, Space


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for you"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


TERMINAL = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)
ACTIVE = frozenset({RunStatus.PROVISIONING, RunStatus.RUNNING, RunStatus.WAITING})

# The whole state machine. Anything not listed raises IllegalTransition.
TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.PROVISIONING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.PROVISIONING: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.WAITING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.TIMED_OUT,
        }
    ),
    RunStatus.WAITING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.TIMED_OUT,
        }
    ),
}
# A finished session is continued by a person's message (runs.actions.send_followup):
# it goes back to queued and is launched again, its transcript going on.
for _finished in TERMINAL:
    TRANSITIONS[_finished] = frozenset({RunStatus.QUEUED})
# What a continued run starts from again: the fields of its last launch.
RELAUNCH_CLEARS = {
    "finished_at": None,
    "exit_reason": "",
    "stop_requested_at": None,
    "deadline": None,
    "launched_at": None,
    "last_heartbeat_at": None,
    # The new sandbox's runner reads the spec's secrets once, as the first did.
    "secrets_handed_out_at": None,
}


class IllegalTransition(Exception):
    """The state machine does not allow this move (e.g. succeeded → running)."""

    def __init__(self, run_status: str, to: str):
        super().__init__(f"A run cannot go from {run_status} to {to}.")
        self.from_status = run_status
        self.to_status = to


def is_legal(from_status: str, to: str) -> bool:
    return to in TRANSITIONS.get(from_status, frozenset())


class RunKind(models.TextChoices):
    SESSION = "session", "Session"
    AUTOMATION = "automation", "Automation"


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    CRON = "cron", "Cron"
    METRIC = "metric", "Metric"
    SIGNAL = "signal", "Signal"
    API = "api", "API"


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.FERNET_KEYS])


class Run(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="runs")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=16, choices=RunKind.choices, default=RunKind.SESSION)
    trigger = models.CharField(max_length=16, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    # Snapshot of the whole configuration at start (see runs.config); a preset
    # edited or deleted later never changes a run already started.
    config = models.JSONField(default=dict)
    # The preset the snapshot came from, for "runs of this preset". A plain
    # number, not a foreign key: presets are a layer above runs (they build
    # configs; runs never read them). agentloop.presets clears it when the
    # preset is deleted; the run keeps its preset_name.
    preset_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # Secret env values (skills), MultiFernet-encrypted JSON {NAME: value}. The
    # runner gets them in its spec; redaction replaces them in everything stored.
    secret_env_encrypted = models.TextField(blank=True, default="")
    # The spec hands the secret values out once, to the runner's first GET at
    # start; later answers leave them out (agentloop.runs.runner_api.spec).
    secrets_handed_out_at = models.DateTimeField(null=True, blank=True)
    prompt = models.TextField()
    status = models.CharField(
        max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    creator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    launched_at = models.DateTimeField(null=True, blank=True)  # claimed by launch_run
    started_at = models.DateTimeField(null=True, blank=True)  # first time running
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.TextField(blank=True, default="")
    harness_session_id = models.CharField(max_length=200, blank=True, default="")
    # The harness's own record of that session (claude-code's session JSONL),
    # redacted: a continued run's new sandbox restores it and resumes the session.
    harness_state = models.TextField(blank=True, default="")
    sandbox = models.JSONField(null=True, blank=True)  # SandboxHandle.to_json()
    sandbox_cleaned_at = models.DateTimeField(null=True, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    # Highest seq handed out to this run's events (see module docstring).
    next_seq = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="run_project_created"),
            models.Index(fields=["space", "-created_at"], name="run_space_created"),
        ]

    def __str__(self) -> str:
        return f"run {self.code} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def preset_name(self) -> str:
        return self.config.get("preset_name") or ""

    # --- secrets ---------------------------------------------------------

    def set_secret_env(self, values: dict[str, str]) -> None:
        self.secret_env_encrypted = (
            _fernet().encrypt(json.dumps(values).encode()).decode() if values else ""
        )

    def secret_env(self) -> dict[str, str]:
        if not self.secret_env_encrypted:
            return {}
        return json.loads(_fernet().decrypt(self.secret_env_encrypted.encode()))

    # --- events ----------------------------------------------------------

    def allocate_seqs(self, count: int) -> list[int]:
        """Reserve `count` consecutive seqs; call inside transaction.atomic()."""
        if count <= 0:
            return []
        Run.objects.filter(pk=self.pk).update(next_seq=F("next_seq") + count)
        last = Run.objects.filter(pk=self.pk).values_list("next_seq", flat=True).get()
        return list(range(last - count + 1, last + 1))

    def append_event(
        self, source: str, kind: str, payload: dict, key: str | None = None
    ) -> RunEvent:
        with transaction.atomic():
            (seq,) = self.allocate_seqs(1)
            event = RunEvent.objects.create(
                run=self,
                seq=seq,
                key=key or f"server-{uuid.uuid4().hex}",
                source=source,
                kind=kind,
                payload=payload,
            )
            ring(self.code, seq)  # sent once this transaction commits
            return event

    # --- the state machine -------------------------------------------------

    def transition(
        self, to: str, *, detail: str = "", now: datetime | None = None, **fields
    ) -> RunEvent | None:
        """Move this run from the status we loaded to `to`: the status and its event.

        Raises IllegalTransition when the machine forbids it. Returns the status
        event, or None when someone else moved the run first (the conditional
        UPDATE matched no row); the instance is then refreshed so the caller
        sees the new status. Callers outside this module use lifecycle.move.
        """
        if not is_legal(self.status, to):
            raise IllegalTransition(self.status, to)
        now = now or timezone.now()
        updates = dict(fields)
        if to == RunStatus.PROVISIONING:
            updates.setdefault("launched_at", now)
        if to == RunStatus.RUNNING and self.started_at is None:
            updates.setdefault("started_at", now)
        if to in TERMINAL:
            updates.setdefault("finished_at", now)
        if self.status in TERMINAL:  # continued: launched again from a clean slate
            for name, value in RELAUNCH_CLEARS.items():
                updates.setdefault(name, value)
        with transaction.atomic():
            moved = Run.objects.filter(pk=self.pk, status=self.status).update(status=to, **updates)
            if moved != 1:
                self.refresh_from_db()
                return None
            if to in TERMINAL:
                # A finished run's keys die with the move, not at teardown a
                # reconciler tick later: nothing may read its spec or post as it.
                ServiceKey.revoke_for_run(self, now)
            from_status = self.status
            self.status = to
            for name, value in updates.items():
                setattr(self, name, value)
            payload = {
                "state": to,
                "from": from_status,
                "detail": detail or updates.get("exit_reason", ""),
            }
            return self.append_event(EventSource.SYSTEM, EventKind.STATUS, payload)

    def request_stop(self, now: datetime | None = None) -> bool:
        """Mark that a person asked this run to stop; False if already asked."""
        now = now or timezone.now()
        updated = Run.objects.filter(pk=self.pk, stop_requested_at__isnull=True).update(
            stop_requested_at=now
        )
        self.refresh_from_db(fields=["stop_requested_at"])
        return updated == 1

    @property
    def stop_wanted(self) -> bool:
        return self.stop_requested_at is not None or self.is_terminal


class EventSource(models.TextChoices):
    USER = "user", "User"
    AGENT = "agent", "Agent"
    SYSTEM = "system", "System"


class EventKind(models.TextChoices):
    MESSAGE = "message", "Message"
    TOOL_CALL = "tool_call", "Tool call"
    TOOL_RESULT = "tool_result", "Tool result"
    STATUS = "status", "Status"
    ARTIFACT = "artifact", "Artifact"
    ERROR = "error", "Error"


class RunEvent(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField()
    # Client idempotency key: a batch posted twice is stored once.
    key = models.CharField(max_length=200)
    source = models.CharField(max_length=8, choices=EventSource.choices)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="runevent_seq_unique"),
            models.UniqueConstraint(fields=["run", "key"], name="runevent_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.source} {self.kind}"


class ArtifactKind(models.TextChoices):
    INVESTIGATION = "investigation", "Investigation"
    EVAL_LABELS = "eval_labels", "Eval labels"
    FILE = "file", "File"
    BRANCH = "branch", "Branch"
    PULL_REQUEST = "pull_request", "Pull request"


class ReviewState(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class Artifact(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifacts")
    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ArtifactKind.choices)
    name = models.CharField(max_length=300)
    content = models.TextField(blank=True, default="")
    file = models.FileField(upload_to="artifacts/%Y/%m/", blank=True)
    url = models.URLField(max_length=1000, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    review_state = models.CharField(
        max_length=16, choices=ReviewState.choices, default=ReviewState.PENDING
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["run", "created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="artifact_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.name}"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ServiceKeyQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ServiceKey(models.Model):
    """A run's token: reads its project's spans, writes its own events and artifacts.

    Each run has two: the runner's (RUN_SCOPES) and the harness key (HARNESS_SCOPES).
    Only the SHA-256 is stored (the token is long and random, so a fast hash is
    enough). Both expire at the run's deadline and are revoked the moment the run
    reaches a terminal state (Run.transition).
    """

    PREFIX = "al_sk_"
    # The runner's own token; it never leaves the runner process (agentloop.runner.credentials).
    RUN_SCOPES = ("traces:read", "events:write", "artifacts:write", "spec:read", "llm")
    # The harness key the agent's processes hold: the span API and the LLM gateway only.
    HARNESS_SCOPES = ("traces:read", "llm")

    key_hash = models.CharField(max_length=64, unique=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="service_keys")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ServiceKeyQuerySet.as_manager()

    def __str__(self) -> str:
        return f"service key of {self.run_id}"

    @classmethod
    def mint(
        cls, run: Run, expires_at: datetime | None, scopes=RUN_SCOPES
    ) -> tuple[ServiceKey, str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            key_hash=hash_token(raw),
            run=run,
            project_id=run.project_id,
            scopes=list(scopes),
            expires_at=expires_at,
        )
        return key, raw

    @classmethod
    def authenticate(cls, raw: str, now: datetime | None = None) -> ServiceKey | None:
        if not raw or not raw.startswith(cls.PREFIX):
            return None
        now = now or timezone.now()
        key = (
            cls.objects.usable(now)
            .select_related("run", "project__space")
            .filter(key_hash=hash_token(raw))
            .first()
        )
        if key is not None and (
            key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60
        ):
            # At most one write a minute: runners call several times a second.
            cls.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key

    @classmethod
    def run_for_token(cls, raw: str, now: datetime | None = None) -> tuple[Run, list[str]] | None:
        """(run, the key's scopes) for a usable run token, or None — in one precompiled query.

        The same answer as `authenticate()` for the two hot paths a sandbox
        calls on every model call and every transcript line (the LLM gateway's
        admission, the runner's event post; agentloop/key_lookup.py). The run
        comes back with all its own fields; its project and space load
        on access.
        """
        if not raw or not raw.startswith(cls.PREFIX):
            return None
        found = object_for_key(
            cls, Run, hash_token(raw), now or timezone.now(), key_columns=("scopes",), expiring=True
        )
        if found is None:
            return None
        run, key = found
        scopes = json.loads(key["scopes"]) if isinstance(key["scopes"], str) else key["scopes"]
        return run, list(scopes or [])

    def revoke(self, now: datetime | None = None) -> None:
        if self.revoked_at is None:
            self.revoked_at = now or timezone.now()
            ServiceKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
                revoked_at=self.revoked_at
            )

    @classmethod
    def revoke_for_run(cls, run: Run, now: datetime | None = None) -> int:
        return cls.objects.filter(run=run, revoked_at__isnull=True).update(
            revoked_at=now or timezone.now()
        )
