"""django-q2 tasks: launch a run's sandbox, and reconcile runs with reality."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from agentloop.runs import lifecycle
from agentloop.runs.models import Run, RunStatus, ServiceKey
from agentloop.runs.providers import get_provider
from agentloop.sandboxes.base import Limits, NetworkPolicy, SandboxHandle, SandboxSpec
from agentloop.skills.runtime import SkillUnavailable, apply_skills

log = logging.getLogger(__name__)

RUNNER_COMMAND = ["python3", "-m", "agentloop.runner"]
HARNESS_KEY_ENV = "AGENTLOOP_HARNESS_KEY"  # agentloop.runner.credentials.HARNESS_KEY
# The sandbox lives a little past the run's deadline, so the reconciler (which
# marks the run timed out at the deadline) stops it, not the provider's kill.
SANDBOX_GRACE_SECONDS = 60


def build_spec(run: Run, token: str) -> SandboxSpec:
    config = run.config
    limits = Limits(
        **config.get("limits", {}),
        wall_seconds=config["time_limit_seconds"] + SANDBOX_GRACE_SECONDS,
    )
    # The run's env and secret env (skills included, see agentloop.skills.runtime) are the
    # sandbox's environment; the runner's own two variables come last and win.
    env = {
        **config.get("env", {}),
        **run.secret_env(),
        "AGENTLOOP_URL": settings.AGENTLOOP_PUBLIC_URL,
        "AGENTLOOP_RUN_TOKEN": token,
    }
    return SandboxSpec(
        run_code=str(run.code),
        command=list(RUNNER_COMMAND),
        env=env,
        image=config.get("image") or None,
        limits=limits,
        network=NetworkPolicy(config.get("network") or NetworkPolicy.RUNNER_ONLY),
        egress_hosts=tuple(config.get("egress_hosts") or ()),
    )


def launch_run(run_id: int, now=None) -> bool:
    """Claim a queued run, mint its key and start its sandbox. False if not ours."""
    now = now or timezone.now()
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.QUEUED:
        return False  # cancelled meanwhile, or another worker has it
    if run.sandbox and run.sandbox_cleaned_at is None:
        # A continued run (runs.actions.send_followup): its last sandbox goes
        # first, with its keys; a provider error leaves the run queued for a retry.
        _clean_up_previous(run, now)
    deadline = now + timedelta(seconds=run.config["time_limit_seconds"])
    if not lifecycle.move(
        run, RunStatus.PROVISIONING, deadline=deadline, detail="Starting the sandbox.", now=now
    ):
        return False
    try:
        apply_skills(run)  # before any sandbox: a skill we cannot decrypt fails the run here
    except SkillUnavailable as error:
        log.warning("run %s: %s", run.code, error)
        lifecycle.move(run, RunStatus.FAILED, exit_reason=str(error), now=now)
        return False
    key, token = ServiceKey.mint(run, expires_at=deadline)
    # The agent's processes get the harness key, never the runner's token; kept
    # (encrypted) with the run's secrets so redaction knows it too.
    _, harness_key = ServiceKey.mint(run, expires_at=deadline, scopes=ServiceKey.HARNESS_SCOPES)
    run.set_secret_env({**run.secret_env(), HARNESS_KEY_ENV: harness_key})
    Run.objects.filter(pk=run.pk).update(secret_env_encrypted=run.secret_env_encrypted)
    try:
        provider = get_provider(run.config["sandbox"])
        handle = provider.start(build_spec(run, token))
    except Exception as error:  # any start failure ends the run with the reason
        log.warning("run %s: sandbox did not start: %s", run.code, error)
        lifecycle.move(
            run, RunStatus.FAILED, exit_reason=f"The sandbox did not start: {error}", now=now
        )
        ServiceKey.revoke_for_run(run, now)
        return False
    Run.objects.filter(pk=run.pk).update(sandbox=handle.to_json(), sandbox_cleaned_at=None)
    return True


def _clean_up_previous(run: Run, now) -> None:
    handle = SandboxHandle.from_json(run.sandbox)
    provider = get_provider(handle.provider)
    provider.stop(handle)
    provider.cleanup(handle)
    ServiceKey.revoke_for_run(run, now)
    Run.objects.filter(pk=run.pk).update(sandbox_cleaned_at=now)
    run.sandbox_cleaned_at = now


def reconcile(now=None) -> dict:
    from agentloop.runs.reconciler import reconcile as _reconcile

    return _reconcile(now=now)


def reconcile_loop(ticks: int = 3, interval: float = 15.0) -> None:
    """The scheduled task: django-q2 schedules at most once a minute, so each
    scheduled call reconciles `ticks` times, `interval` seconds apart."""
    for tick in range(ticks):
        if tick:
            time.sleep(interval)
        try:
            reconcile()
        except Exception:  # one bad tick must not skip the next
            log.exception("reconcile failed")
