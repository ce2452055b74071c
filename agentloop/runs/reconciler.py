"""Bring runs in line with reality; runs every ~15 s and is safe to run twice.

For each active run, in order (the first that applies wins):
  1. a stop was requested and the grace period passed  → cancelled (sandbox stopped below)
  2. past its deadline                                → timed_out (failed while provisioning)
  3. no heartbeat for HEARTBEAT_TIMEOUT (provisioning: PROVISIONING_TIMEOUT since launch)
                                                      → failed "runner stopped heart-beating"
  4. its sandbox exited or is gone                    → failed "sandbox exited with code N"
Then, for every finished run whose sandbox is not cleaned yet: provider.stop,
provider.cleanup, revoke its service keys. A provider error leaves the run for
the next pass.

Every move is Run.transition(): if the runner reported meanwhile, the
conditional update loses and nothing is overwritten.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from agentloop.runs import lifecycle
from agentloop.runs.models import ACTIVE, TERMINAL, IllegalTransition, Run, RunStatus, ServiceKey
from agentloop.runs.providers import get_provider
from agentloop.sandboxes.base import SandboxHandle, SandboxState

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = timedelta(seconds=getattr(settings, "RUN_HEARTBEAT_TIMEOUT_SECONDS", 120))
PROVISIONING_TIMEOUT = timedelta(seconds=getattr(settings, "RUN_PROVISIONING_TIMEOUT_SECONDS", 600))
CANCEL_GRACE = timedelta(seconds=getattr(settings, "RUN_CANCEL_GRACE_SECONDS", 30))


def _verdict(run: Run, now) -> tuple[str, str] | None:
    """(new status, exit reason) for an active run that must end, else None."""
    if run.stop_requested_at and now - run.stop_requested_at >= CANCEL_GRACE:
        return RunStatus.CANCELLED, "Stopped on request; the runner did not stop in time."
    if run.deadline and now >= run.deadline:
        if run.status == RunStatus.PROVISIONING:
            return RunStatus.FAILED, "The time limit passed before the runner started."
        return RunStatus.TIMED_OUT, "The run reached its time limit."
    if run.status == RunStatus.PROVISIONING:
        since = run.last_heartbeat_at or run.launched_at or run.created_at
        if now - since >= PROVISIONING_TIMEOUT:
            return RunStatus.FAILED, "The runner did not start in time."
    else:
        since = run.last_heartbeat_at or run.started_at or run.launched_at or run.created_at
        if now - since >= HEARTBEAT_TIMEOUT:
            return RunStatus.FAILED, "The runner stopped heart-beating."
    return None


def _sandbox_verdict(run: Run) -> tuple[str, str] | None:
    if not run.sandbox:
        return None
    handle = SandboxHandle.from_json(run.sandbox)
    status = get_provider(handle.provider).status(handle)
    if status.state == SandboxState.EXITED:
        return RunStatus.FAILED, f"The sandbox exited with code {status.exit_code}."
    if status.state == SandboxState.GONE:
        return RunStatus.FAILED, f"The sandbox disappeared. {status.detail}".strip()
    return None


def _end(run: Run, verdict: tuple[str, str], now) -> bool:
    to, reason = verdict
    try:
        return lifecycle.move(run, to, exit_reason=reason, now=now)
    except IllegalTransition:
        return False  # it moved to a state we may not leave that way; next pass sees it


def _recorded_or_found_handle(run: Run) -> SandboxHandle | None:
    if run.sandbox:
        return SandboxHandle.from_json(run.sandbox)
    if run.launched_at and run.config.get("sandbox"):
        # launch_run claimed the run but never stored a handle: it may have died
        # after (or while) starting the sandbox. Look for it by the run's code.
        return get_provider(run.config["sandbox"]).handle_for(str(run.code))
    return None


def _clean_up(run: Run, now) -> bool:
    try:
        handle = _recorded_or_found_handle(run)
        if handle is not None:
            provider = get_provider(handle.provider)
            provider.stop(handle)
            provider.cleanup(handle)
    except Exception:
        log.exception("run %s: sandbox cleanup failed; will retry", run.code)
        return False
    ServiceKey.revoke_for_run(run, now)
    Run.objects.filter(pk=run.pk).update(sandbox_cleaned_at=now)
    return True


def reconcile(now=None) -> dict:
    now = now or timezone.now()
    counts = {"ended": 0, "cleaned": 0}
    for run in Run.objects.filter(status__in=ACTIVE).order_by("pk"):
        verdict = _verdict(run, now)
        if verdict is None:
            try:
                verdict = _sandbox_verdict(run)
            except Exception:
                log.exception("run %s: cannot read sandbox status", run.code)
        if verdict is not None and _end(run, verdict, now):
            counts["ended"] += 1
    finished = Run.objects.filter(status__in=TERMINAL, sandbox_cleaned_at__isnull=True).order_by(
        "pk"
    )
    for run in finished:
        if not Run.objects.filter(pk=run.pk, status__in=TERMINAL).exists():
            continue  # continued meanwhile: launch_run cleans its last sandbox itself
        if _clean_up(run, now):
            counts["cleaned"] += 1
    return counts
