"""The Anthropic-compatible endpoints sandboxes call, as a plain ASGI app.

Served for `/llm/…` by agentloop.asgi without Django's request handling
(agentloop/fastpath.py says why: it cost more than the 5 ms the gateway may
add to a call's first byte). A call is authenticated by the run's service key,
checked against the run's budget, forwarded upstream with the real key, and
answered with the upstream's status, headers and body. A streamed answer is
relayed chunk by chunk as it arrives while a collector reads usage and text
from it; when it ends, the call is recorded (LLM span + run counters) before
the response closes. Errors of the gateway itself are Anthropic-shaped, with
`x-should-retry: false` so SDK clients do not retry what cannot succeed.

Database work runs on two pools of threads whose connections stay open
(agentloop/database_threads.py): admission (before the first byte, so it
never queues behind a recording waiting for SQLite's write lock) and
recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import httpx
from django.db import transaction
from django.utils import timezone

from agentloop import fastpath, safe_json
from agentloop.database_threads import DatabaseThreads
from agentloop.gateway import auth, budget, upstream
from agentloop.gateway.spans import CallRecord, StreamCollector, collect_message, error_message
from agentloop.gateway.spans import record_call as store_span
from agentloop.runs.models import Run
from agentloop.runs.redaction import prepare, run_secrets

log = logging.getLogger(__name__)

PREFIX = "/llm/"
# Gateway path -> (upstream path, recorded and counted?). Counting tokens is
# free and generates nothing: forwarded, not recorded.
ROUTES = {
    "/llm/anthropic/v1/messages": ("/v1/messages", True),
    "/llm/anthropic/v1/messages/count_tokens": ("/v1/messages/count_tokens", False),
}

admission = DatabaseThreads("llm-gateway-admission")
recording = DatabaseThreads("llm-gateway-recording")


async def _error(send, status: int, error_type: str, message: str) -> None:
    await fastpath.respond_json(
        send,
        status,
        {"type": "error", "error": {"type": error_type, "message": message}},
        [("x-should-retry", "false")],
    )


async def _handle(scope, receive, send):
    route = ROUTES.get(scope["path"])
    if route is None:
        return await _error(send, 404, "not_found_error", f"No such endpoint: {scope['path']}.")
    path, record = route
    if scope["method"] != "POST":
        return await _error(send, 405, "invalid_request_error", "Use POST.")
    headers = fastpath.headers_of(scope)
    try:
        body = await fastpath.read_body(receive)
    except fastpath.BodyTooLarge as exc:
        return await _error(send, 413, "request_too_large", str(exc))
    try:
        payload = safe_json.loads(body or b"")
        refusal = None if isinstance(payload, dict) else "The body must be a JSON object."
    except safe_json.JsonError as exc:
        refusal = f"The body must be a JSON object. {exc}"
    # One hop to the admission thread for both checks: each hop costs latency.
    # A read (and at most an idempotent write): safe to retry on a new connection.
    caller = await admission.run(_admit, headers, check_budget=record, retry=True)
    if isinstance(caller, auth.Refusal):
        return await _error(send, caller.status, caller.error_type, caller.message)
    run, token = caller
    if refusal:
        return await _error(send, 400, "invalid_request_error", refusal)
    try:
        key = upstream.real_key()
    except upstream.UpstreamNotConfigured as exc:
        return await _error(send, 503, "api_error", str(exc))

    call = CallRecord(
        request=payload,
        started_at=timezone.now(),
        session_id=headers.get("x-claude-code-session-id", ""),
    )
    try:
        answer = await upstream.open_call(
            path,
            fastpath.query_string(scope),
            upstream.request_headers(headers, key),
            body,
        )
    except httpx.HTTPError as exc:
        why = f"the LLM upstream could not be reached ({type(exc).__name__})"
        return await _upstream_failed(send, why, run, token, key, call, record)

    call.http_status = answer.status_code
    content_type = answer.headers.get("content-type", "")
    if answer.status_code == 200 and content_type.startswith("text/event-stream"):
        return await _stream(receive, send, answer, run, token, key, call, record)

    try:
        answer_body = await answer.aread()
    except httpx.HTTPError as exc:
        why = f"the upstream answer broke off ({type(exc).__name__})"
        return await _upstream_failed(send, why, run, token, key, call, record)
    finally:
        await answer.aclose()
    call.ended_at = timezone.now()
    if answer.is_success:
        try:
            collect_message(call, json.loads(answer_body))
        except (ValueError, AttributeError):
            call.error = "the upstream answered something that is not a JSON message"
    else:
        call.error = f"HTTP {answer.status_code}: {error_message(answer_body)}"
    if record:
        await recording.run(_finish, run, token, key, call)
    await fastpath.respond(send, answer.status_code, answer_body, upstream.response_headers(answer))


async def _upstream_failed(send, why: str, run, token, key, call: CallRecord, record) -> None:
    """Record the failed call (an error span) and answer 502."""
    call.error = why
    call.ended_at = timezone.now()
    if record:
        await recording.run(_finish, run, token, key, call)
    await _error(send, 502, "api_error", f"The LLM gateway: {why}.")


async def _stream(receive, send, answer: httpx.Response, run, token, key, call, record):
    """Relay an SSE answer as it arrives; stop (and record why) if the caller hangs up."""
    relay = asyncio.create_task(_relay(send, answer, call))
    hang_up = asyncio.create_task(_wait_for_disconnect(receive))
    relayed = False
    try:
        done, _ = await asyncio.wait({relay, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        if relay in done:
            relay.result()  # raises whatever broke the relay
            relayed = True
        else:
            call.error = "the caller hung up before the answer ended"
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
    except asyncio.CancelledError:  # the server gave up on the request
        call.error = call.error or "the caller hung up before the answer ended"
        relay.cancel()
        raise
    finally:
        hang_up.cancel()
        await answer.aclose()
        call.ended_at = call.ended_at or timezone.now()
        if record:
            # Shielded: the server cancelling this request must not cancel the bookkeeping.
            await asyncio.shield(recording.run(_finish, run, token, key, call))
    if relayed:
        # Closed only now: once the caller has read the whole answer, its span exists.
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _relay(send, answer: httpx.Response, call: CallRecord) -> None:
    collector = StreamCollector(call)
    response_headers = [
        *upstream.response_headers(answer),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),  # a proxy in front must not buffer either
    ]
    await fastpath.start_response(send, 200, response_headers)
    try:
        async for chunk in answer.aiter_bytes():
            collector.feed(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError as exc:
        call.error = f"the upstream stream broke off ({type(exc).__name__})"
    finally:
        collector.finish()
        call.ended_at = timezone.now()


async def _wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


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
    # Admission loaded only the fields it checks: load the whole run here, off
    # the caller's first byte.
    run = Run.objects.select_related("project__space", "space").get(pk=run.pk)
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


async def _answer_failure(send):
    await _error(send, 500, "api_error", "The LLM gateway failed; see its log.")


application = fastpath.plain_app(_handle, _answer_failure, "LLM gateway")
