"""What people (views, API, automations) do to runs. One function per change.

Each checks access through the project's helper, validates, changes data, and
schedules slow work (launching a sandbox) only after the transaction commits.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agentloop.runs import lifecycle
from agentloop.runs.config import normalize_config
from agentloop.runs.models import (
    ACTIVE,
    EventKind,
    EventSource,
    Run,
    RunKind,
    RunStatus,
    RunTrigger,
)
from agentloop.runs.redaction import redact, run_secrets
from agentloop.teams.access import get_project_for_user

MAX_PROMPT_LENGTH = 100_000
# How much of the conversation a continued run is handed (its newest part).
MAX_HISTORY_CHARACTERS = 200_000


class RunNotActive(ValidationError):
    """The run is not in a state that accepts this (e.g. a follow-up to a finished run)."""


def _clean_text(text, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"The {what} is empty.")
    if len(text) > MAX_PROMPT_LENGTH:
        raise ValidationError(f"The {what} is longer than {MAX_PROMPT_LENGTH} characters.")
    return text.strip()


def enqueue_launch(run: Run) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "agentloop.runs.tasks.launch_run", run.pk, task_name=f"launch {run.code}"
        )
    )


def create_run(
    project,
    config: dict,
    prompt: str,
    *,
    creator=None,
    kind: str = RunKind.SESSION,
    trigger: str = RunTrigger.MANUAL,
    preset=None,
) -> Run:
    """Create a queued run with its snapshot and first message, and enqueue its launch.

    No access check: callers (start_session, automations) have done theirs.
    `preset` is the AgentPreset the config was made from, if any (presets are
    a layer above runs: this reads its pk, name and space, nothing else); a
    preset of another space links nothing.
    """
    prompt = _clean_text(prompt, "prompt")
    snapshot, secret_env = normalize_config(config, space=project.space, user=creator)
    if preset is not None and preset.space_id == project.space_id:
        snapshot["preset_id"], snapshot["preset_name"] = preset.pk, preset.name
    with transaction.atomic():
        run = Run(
            space_id=project.space_id,
            project=project,
            kind=kind,
            trigger=trigger,
            config=snapshot,
            preset_id=snapshot["preset_id"],
            prompt=prompt,
            creator=creator if getattr(creator, "pk", None) else None,
        )
        run.set_secret_env(secret_env)
        # The prompt is shown on pages too: stored redacted like every event.
        run.prompt = redact(prompt, run_secrets(run))
        run.save()
        payload = {"role": "user", "text": run.prompt}
        run.append_event(EventSource.USER, EventKind.MESSAGE, payload, key="prompt")
        enqueue_launch(run)
    return run


def start_session(user, project, config: dict, prompt: str, preset=None) -> Run:
    project = get_project_for_user(user, project.pk, "use")
    return create_run(project, config, prompt, creator=user, preset=preset)


def send_followup(user, run: Run, text: str):
    """A person's message to a session. A running or waiting run gets it through
    its inbox (a queued one after its first turn); a finished one is continued:
    the message is stored, the run goes back to queued and is launched again
    with its transcript (the harness resumes where it can, see `continuation`)."""
    get_project_for_user(user, run.project_id, "use")
    text = _clean_text(text, "message")
    payload = {
        "role": "user",
        "text": redact(text, run_secrets(run)),
        "author": user.get_username(),
    }
    with transaction.atomic():
        # The row lock (PostgreSQL; SQLite's write lock is taken by the first
        # write) keeps two people continuing a finished run from both reopening it.
        locked = Run.objects.select_for_update().get(pk=run.pk)
        run.refresh_from_db()
        if run.stop_requested_at is not None and not run.is_terminal:
            raise RunNotActive("This session is stopping; send your message once it has stopped.")
        event = run.append_event(EventSource.USER, EventKind.MESSAGE, payload)
        if locked.is_terminal:
            if not lifecycle.move(
                run,
                RunStatus.QUEUED,
                detail=f"Continued by {user.get_username()}.",
            ):
                raise RunNotActive("The session changed meanwhile; reload and try again.")
            enqueue_launch(run)
    return event


def continuation(run: Run) -> dict:
    """What a relaunched run's runner needs to go on where the run left off.

    {"prompt", "inbox_after", "history"} for a run that was continued (its last
    reopening status event), else {}: the prompt is the message that reopened
    it, the inbox starts after the reopening, the history is the conversation
    before (user and agent messages, newest kept when it is long).
    """
    reopened = (
        run.events.filter(kind=EventKind.STATUS, source=EventSource.SYSTEM, payload__state="queued")
        .order_by("-seq")
        .first()
    )
    if reopened is None or not reopened.payload.get("from"):
        return {}
    messages = list(
        run.events.filter(kind=EventKind.MESSAGE, seq__lt=reopened.seq)
        .order_by("seq")
        .values_list("source", "payload")
    )
    if not messages:
        return {}
    *earlier, (_, last) = messages
    history: list[dict] = []
    size = 0
    for source, payload in reversed(earlier):
        text = str(payload.get("text") or "")
        if not text or source == EventSource.SYSTEM:
            continue
        size += len(text)
        if size > MAX_HISTORY_CHARACTERS:
            break
        role = "user" if source == EventSource.USER else "assistant"
        history.append({"role": role, "text": text})
    history.reverse()
    return {"prompt": last.get("text") or "", "inbox_after": reopened.seq, "history": history}


def cancel(user, run: Run, now=None) -> bool:
    """Ask a run to stop. A queued run is cancelled at once; an active one is
    stopped by its runner (it sees `stop`) or, after a grace period, by the
    reconciler. Returns False when there was nothing to do."""
    get_project_for_user(user, run.project_id, "use")
    now = now or timezone.now()
    run.refresh_from_db()
    if run.is_terminal:
        return False
    who = user.get_username()
    if run.status == RunStatus.QUEUED:
        reason = f"Cancelled by {who}."
        if lifecycle.move(
            run, RunStatus.CANCELLED, exit_reason=reason, stop_requested_at=now, now=now
        ):
            return True
        # Lost the race with launch_run: fall through and stop the active run.
    if run.status in ACTIVE and run.request_stop(now):
        run.append_event(
            EventSource.SYSTEM,
            EventKind.STATUS,
            {"state": run.status, "detail": f"Stop requested by {who}."},
        )
        return True
    return False
