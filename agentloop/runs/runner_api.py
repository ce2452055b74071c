"""The runner API (docs/runner-protocol.md): what a runner in a sandbox calls.

Plain Django JSON views. The bearer token (a ServiceKey) identifies the run;
every answer is JSON and every error is `{"detail": "..."}`. Each view parses
and checks its input, then calls one function of the runs app. `POST events`
and `GET inbox` have no view: agentloop/runs/events_app.py serves the first as
plain ASGI and calls `post_events` here, agentloop/runs/inbox_app.py the second.
"""

from __future__ import annotations

from functools import wraps

import pydantic
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from agentloop import safe_json
from agentloop.runs import actions, lifecycle, protocol, recording
from agentloop.runs.models import (
    IllegalTransition,
    Run,
    RunStatus,
    ServiceKey,
)
from agentloop.runs.redaction import redact_text, run_secrets
from agentloop.teams.authentication import bearer_token


def _error(status: int, detail: str) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="agentloop"'
    return response


def runner_route(method: str, *, scope: str = "events:write", refuse_finished: bool = False):
    """Authenticate the run token, parse JSON, load the run; then call the view
    as view(request, run, token, body)."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request):
            if request.method != method:
                return _error(405, f"Use {method}.")
            token = bearer_token(request)
            key = ServiceKey.authenticate(token or "")
            if key is None:
                return _error(401, "Unknown, expired or revoked run token.")
            if scope not in key.scopes:
                return _error(403, f"This token lacks the {scope} scope.")
            body = None
            if method == "POST":
                try:
                    body = safe_json.loads(request.body or b"{}")
                except safe_json.JsonError as error:
                    return _error(400, str(error))
            run = Run.objects.select_related("project").get(pk=key.run_id)
            if refuse_finished and run.is_terminal:
                return _error(409, f"The run has already finished ({run.status}).")
            try:
                return view(request, run, token, body)
            except ValidationError as error:
                return _error(400, " ".join(error.messages))

        return wrapper

    return decorate


def llm_provider(config: dict) -> str:
    """The run's model API; a snapshot from before providers is its harness's first."""
    speaks = protocol.HARNESS_PROVIDERS.get(config.get("harness") or "", ())
    return config.get("llm_provider") or (speaks[0] if speaks else "")


def _public_url() -> str:
    return settings.AGENTLOOP_PUBLIC_URL.rstrip("/")


@runner_route("GET", scope="spec:read")
def spec(request, run: Run, token, body):
    """The run's spec. Its secret values only in the first answer: claimed with a
    conditional update, so a token that leaks later reads names, not secrets."""
    config = run.config
    first = (
        Run.objects.filter(pk=run.pk, secrets_handed_out_at__isnull=True).update(
            secrets_handed_out_at=timezone.now()
        )
        == 1
    )
    secrets = run.secret_env() if first else {}
    provider = llm_provider(config)
    if provider == "anthropic":
        default = getattr(settings, "AGENTLOOP_LLM_BASE_URL", f"{_public_url()}/llm/anthropic")
    else:
        default = f"{_public_url()}/llm/{provider or 'anthropic'}"
    llm_base_url = config.get("llm_base_url") or default
    continued = actions.continuation(run)
    return JsonResponse(
        {
            "run": str(run.code),
            "project": {"id": run.project_id, "name": run.project.name},
            "harness": config["harness"],
            "model": config.get("model"),
            "system_prompt": config.get("system_prompt", ""),
            "prompt": continued.get("prompt") or run.prompt,
            "max_turns": config.get("max_turns"),
            "allowed_tools": config.get("allowed_tools", []),
            "time_limit_seconds": config.get("time_limit_seconds"),
            "api_url": f"{_public_url()}/api/v1/projects/{run.project_id}/",
            "llm_base_url": llm_base_url,
            "llm_provider": provider,
            "env": {**config.get("env", {}), **secrets},
            "secrets_withheld": [] if first else sorted(run.secret_env()),
            "repository": config.get("repository"),
            "skills": config.get("skill_installs") or [],  # custom skills to install
            "status": run.status,
            "continued": bool(continued),
            "history": continued.get("history", []),
            "inbox_after": continued.get("inbox_after", 0),
            "harness_session_id": run.harness_session_id or None,
            "harness_state": (run.harness_state or None) if continued else None,
        }
    )


def post_events(token: str, body: bytes) -> tuple[int, dict]:
    """A runner's event batch, whole: (HTTP status, JSON answer). Idempotent.

    The checks and their order are runner_route's: token, scope, JSON, a run
    still going; then the batch is validated and stored.
    """
    found = ServiceKey.run_for_token(token)
    if found is None:
        return 401, {"detail": "Unknown, expired or revoked run token."}
    run, scopes = found
    if "events:write" not in scopes:
        return 403, {"detail": "This token lacks the events:write scope."}
    try:
        data = safe_json.loads(body or b"{}")
    except safe_json.JsonError as error:
        return 400, {"detail": str(error)}
    if run.is_terminal:
        return 409, {"detail": f"The run has already finished ({run.status})."}
    try:
        batch = recording.validate_events(data)
        result = recording.record_events(run, batch, run_secrets(run, token))
    except ValidationError as error:
        return 400, {"detail": " ".join(error.messages)}
    return 200, {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "last_seq": result.last_seq,
        "seqs": result.seqs,
    }


@runner_route("POST", scope="artifacts:write", refuse_finished=True)
def artifacts(request, run: Run, token, body):
    artifact = recording.validate_artifact(body)
    stored, created = recording.record_artifact(run, artifact, run_secrets(run, token))
    return JsonResponse({"id": stored.pk, "created": created}, status=201 if created else 200)


@runner_route("POST")
def heartbeat(request, run: Run, token, body):
    # A finished run answers stop instead of 409: the runner learns to end.
    if not run.is_terminal:
        Run.objects.filter(pk=run.pk).update(last_heartbeat_at=timezone.now())
    return JsonResponse({"status": run.status, "stop": run.stop_wanted})


def _usage_fields(usage: protocol.Usage | None) -> dict:
    return usage.model_dump(exclude_none=True) if usage is not None else {}


@runner_route("POST")
def status(request, run: Run, token, body):
    try:
        post = protocol.StatusPost.model_validate(body)
    except pydantic.ValidationError as error:
        raise ValidationError(protocol.problem(error)) from None
    state = post.state
    # Usage is the run's running total so far, so a retried post changes nothing.
    fields = _usage_fields(post.usage)
    if post.harness_session_id:
        fields["harness_session_id"] = post.harness_session_id[: protocol.MAX_SESSION_ID_LENGTH]
    secrets = run_secrets(run, token)
    if post.harness_state:
        fields["harness_state"] = redact_text(post.harness_state, secrets)
    exit_reason = redact_text(post.exit_reason or "", secrets)
    if state == run.status:  # a retry of a post whose answer was lost
        if fields:
            Run.objects.filter(pk=run.pk).update(**fields)
        return JsonResponse({"status": run.status})
    if run.is_terminal:
        return _error(409, f"The run has already finished ({run.status}).")
    if state in (RunStatus.RUNNING, RunStatus.WAITING):
        fields["last_heartbeat_at"] = timezone.now()
    if exit_reason:
        fields["exit_reason"] = exit_reason
    try:
        moved = lifecycle.move(run, state, **fields)
    except IllegalTransition as error:
        return _error(409, str(error))
    if not moved:
        return _error(409, f"The run moved to {run.status} meanwhile.")
    return JsonResponse({"status": run.status})
