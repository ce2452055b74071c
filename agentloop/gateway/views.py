"""The Anthropic-compatible endpoints sandboxes call (async: streams pass straight through).

A call is authenticated by the run's service key, checked against the run's
budget, forwarded upstream with the real key, and answered with the upstream's
status, headers and body. A streamed answer is relayed chunk by chunk as it
arrives while a collector reads usage and text from it; when it ends, the call
is recorded (LLM span + run counters) before the response closes.
Errors of the gateway itself are Anthropic-shaped, with `x-should-retry: false`
so SDK clients do not retry what cannot succeed.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from agentloop.gateway import auth, budget, upstream
from agentloop.gateway.spans import CallRecord, StreamCollector, collect_message, error_message
from agentloop.gateway.spans import record_call as store_span
from agentloop.runs.redaction import prepare, run_secrets

log = logging.getLogger(__name__)


def anthropic_error(status: int, error_type: str, message: str) -> JsonResponse:
    response = JsonResponse(
        {"type": "error", "error": {"type": error_type, "message": message}}, status=status
    )
    response["x-should-retry"] = "false"
    return response


@csrf_exempt
async def messages(request):
    return await _proxy(request, "/v1/messages", record=True)


@csrf_exempt
async def count_tokens(request):
    # Counting tokens is free and generates nothing: forwarded, not recorded.
    return await _proxy(request, "/v1/messages/count_tokens", record=False)


async def _proxy(request, path: str, *, record: bool):
    if request.method != "POST":
        return anthropic_error(405, "invalid_request_error", "Use POST.")
    try:
        payload = json.loads(request.body or b"")
        if not isinstance(payload, dict):
            raise ValueError
    except ValueError:
        payload = None
    # One hop to the database thread for both checks: each hop costs latency.
    caller = await sync_to_async(_admit)(request.headers, check_budget=record)
    if isinstance(caller, auth.Refusal):
        return anthropic_error(caller.status, caller.error_type, caller.message)
    run, token = caller
    if payload is None:
        return anthropic_error(400, "invalid_request_error", "The body must be a JSON object.")
    try:
        key = upstream.real_key()
    except upstream.UpstreamNotConfigured as exc:
        return anthropic_error(503, "api_error", str(exc))

    call = CallRecord(
        request=payload,
        started_at=timezone.now(),
        session_id=request.headers.get("x-claude-code-session-id", ""),
    )
    headers = upstream.request_headers(dict(request.headers), key)
    try:
        answer = await upstream.open_call(
            path, request.META.get("QUERY_STRING", ""), headers, request.body
        )
    except httpx.HTTPError as exc:
        call.error = f"the LLM upstream could not be reached ({type(exc).__name__})"
        call.ended_at = timezone.now()
        if record:
            await sync_to_async(_finish)(run, token, key, call)
        return anthropic_error(502, "api_error", f"The LLM gateway: {call.error}.")

    call.http_status = answer.status_code
    content_type = answer.headers.get("content-type", "")
    if answer.status_code == 200 and content_type.startswith("text/event-stream"):
        response = StreamingHttpResponse(
            _relay(answer, run, token, key, call, record),
            status=200,
            headers=dict(upstream.response_headers(answer)),
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy in front must not buffer either
        return response

    try:
        body = await answer.aread()
    finally:
        await answer.aclose()
    call.ended_at = timezone.now()
    if answer.is_success:
        try:
            collect_message(call, json.loads(body))
        except (ValueError, AttributeError):
            call.error = "the upstream answered something that is not a JSON message"
    else:
        call.error = f"HTTP {answer.status_code}: {error_message(body)}"
    if record:
        await sync_to_async(_finish)(run, token, key, call)
    return HttpResponse(
        body, status=answer.status_code, headers=dict(upstream.response_headers(answer))
    )


async def _relay(answer: httpx.Response, run, token: str, key: str, call: CallRecord, record):
    collector = StreamCollector(call)
    try:
        async for chunk in answer.aiter_bytes():
            collector.feed(chunk)
            yield chunk
    except httpx.HTTPError as exc:
        call.error = f"the upstream stream broke off ({type(exc).__name__})"
    except (asyncio.CancelledError, GeneratorExit):
        call.error = "the caller hung up before the answer ended"
        raise
    finally:
        await answer.aclose()
        collector.finish()
        call.ended_at = timezone.now()
        if record:
            # Shielded: a caller hanging up must not cancel the bookkeeping.
            await asyncio.shield(sync_to_async(_finish)(run, token, key, call))


def _admit(headers, *, check_budget: bool):
    """(run, token) of a caller that may call now, or the Refusal to answer."""
    caller = auth.authenticate(headers)
    if isinstance(caller, auth.Refusal) or not check_budget:
        return caller
    run, _ = caller
    why = budget.exceeded(run, reload=False)  # authenticate loaded the run just now
    if why:
        budget.end_run(run, why)
        return auth.Refusal(400, "budget_exceeded", auth.budget_message(run))
    return caller


def _finish(run, token: str, key: str, call: CallRecord) -> None:
    """Record the call: its span, the run's counters, and the budget verdict."""
    secrets = prepare([*run_secrets(run, token), ("AGENTLOOP_ANTHROPIC_API_KEY", key)])
    try:
        with transaction.atomic():
            store_span(run, call, secrets)
            if call.total_tokens:
                prompt_cost, completion_cost = call.cost()
                budget.add_usage(
                    run, call.prompt_tokens, call.output_tokens, prompt_cost + completion_cost
                )
        why = budget.exceeded(run)
        if why:
            budget.end_run(run, why)
    except Exception:
        # The answer has reached the caller; a failed record must not turn it into an error.
        log.exception("LLM gateway: could not record a call of run %s", run.code)
