"""Who is calling the gateway: a run, by its service key.

Claude Code sends its API key in `x-api-key`, Codex and OpenCode in
`Authorization: Bearer`, Gemini CLI in `x-goog-api-key` (the provider finds it:
agentloop/gateway/providers.py). Only a run's service key (al_sk_…) is accepted — a
project API key reads traces, it does not spend model tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentloop.gateway import budget
from agentloop.runs.models import Run, RunStatus, ServiceKey, hash_token
from agentloop.teams.models import ProjectApiKey

CALLABLE_STATES = (RunStatus.RUNNING, RunStatus.WAITING)


@dataclass
class Refusal:
    status: int
    error_type: str
    message: str


def presented_key(headers) -> str:
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return ""


def authenticate(headers) -> tuple[Run, str] | Refusal:
    """(run, raw token) of the caller, or why it may not call (sync: the admission thread)."""
    return authenticate_key(presented_key(headers))


def authenticate_key(raw: str) -> tuple[Run, str] | Refusal:
    """The same for a key the provider found (x-api-key, Bearer, x-goog-api-key, ?key=)."""
    if not raw:
        return Refusal(
            401,
            "authentication_error",
            "No run key: send the run's service key as the API key "
            "(x-api-key, Authorization: Bearer or x-goog-api-key).",
        )
    if raw.startswith(ProjectApiKey.PREFIX):
        return Refusal(
            401,
            "authentication_error",
            "A project API key cannot call the LLM gateway; only a run's service key can.",
        )
    # One precompiled query: admission runs before every call's first byte.
    found = ServiceKey.run_for_token(raw)
    if found is None:
        # A run's keys die when it ends: say why when that is the reason (the
        # run's own key, so this tells its holder nothing new).
        ended = ServiceKey.objects.filter(key_hash=hash_token(raw)).select_related("run").first()
        if ended is not None and ended.run.is_terminal:
            if budget.ended_for_budget(ended.run):
                return Refusal(400, "budget_exceeded", budget_message(ended.run))
            return Refusal(
                409,
                "invalid_request_error",
                f"The run is {ended.run.status}, not running: it cannot call the model.",
            )
        return Refusal(401, "authentication_error", "Unknown, expired or revoked run key.")
    run, _ = found
    if budget.ended_for_budget(run):
        return Refusal(400, "budget_exceeded", budget_message(run))
    if run.status not in CALLABLE_STATES:
        return Refusal(
            409,
            "invalid_request_error",
            f"The run is {run.status}, not running: it cannot call the model.",
        )
    return run, raw


def budget_message(run: Run) -> str:
    why = budget.exceeded(run) or "The run has used its budget."
    return f"{why} The run has been stopped (exit reason: budget)."
