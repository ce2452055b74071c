"""The model APIs sandboxes call (Anthropic, OpenAI, Gemini), as a plain ASGI app.

Served for `/llm/…` by agentloop.asgi without Django's request handling
(agentloop/fastpath.py says why: it cost more than the 5 ms the gateway may
add to a call's first byte). A call is authenticated by the run's service key,
checked against the run's budget, forwarded upstream with the real key, and
answered with the upstream's status, headers and body. A streamed answer is
relayed chunk by chunk as it arrives while a collector reads usage and text
from it; when it ends, the call is recorded (LLM span + run counters) before
the response closes. Errors of the gateway itself are in the shape of the
provider's own API (agentloop/gateway/providers.py), with `x-should-retry:
false` so SDK clients do not retry what cannot succeed.

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
from agentloop.gateway import auth, budget, providers, upstream
from agentloop.gateway.providers import Provider
from agentloop.gateway.spans import CallRecord
from agentloop.gateway.spans import record_call as store_span
from agentloop.runs.models import Run
from agentloop.runs.redaction import prepare, run_secrets

log = logging.getLogger(__name__)

PREFIX = "/llm/"
# Errors before the provider is known (an unknown /llm/<name>/) take Anthropic's shape.
ANTHROPIC = providers.PROVIDERS["anthropic"]

admission = DatabaseThreads("llm-gateway-admission")
recording = DatabaseThreads("llm-gateway-recording")

# Streamed calls whose answer has been relayed but whose usage is not yet recorded,
# by run id. A client may send its next call as soon as it reads the stream's last
# event (codex does, before the response closes); that call waits for these, so the
# budget it is checked against counts the call before it. Per process: calls of one
# run spread over several web processes, or sent side by side, can still each pass
# the check before the others are counted (the budget is then overshot by them).
_unrecorded: dict[int, set[asyncio.Future]] = {}


async def _error(send, provider: Provider, status: int, error_type: str, message: str) -> None:
    await fastpath.respond_json(
        send,
        status,
        provider.error_body(status, error_type, message),
        [("x-should-retry", "false")],
    )


async def _handle(scope, receive, send):
    provider, rest = providers.find(scope["path"])
    route = provider.route(rest, scope["method"]) if provider else None
    if route is None:
        provider = provider or ANTHROPIC
        return await _error(
            send, provider, 404, "not_found_error", f"No such endpoint: {scope['path']}."
        )
    if scope["method"] != route.method:
        return await _error(send, provider, 405, "invalid_request_error", f"Use {route.method}.")
    headers = fastpath.headers_of(scope)
    query = fastpath.query_string(scope)
    try:
        body = await fastpath.read_body(receive)
    except fastpath.BodyTooLarge as exc:
        return await _error(send, provider, 413, "request_too_large", str(exc))
    payload: dict | None = {}
    refusal = None
    if route.method == "POST":
        try:
            payload = safe_json.loads(body or b"")
            if not isinstance(payload, dict):
                refusal = "The body must be a JSON object."
        except safe_json.JsonError as exc:
            refusal = f"The body must be a JSON object. {exc}"
    # One hop to the admission thread for both checks: each hop costs latency.
    # A read (and at most an idempotent write): safe to retry on a new connection.
    presented = provider.presented_key(headers, query)
    caller = await admission.run(_admit, presented, check_budget=route.recorded, retry=True)
    if isinstance(caller, auth.Refusal):
        return await _error(send, provider, caller.status, caller.error_type, caller.message)
    run, token = caller
    if route.recorded and _unrecorded.get(run.pk):
        await asyncio.wait(set(_unrecorded[run.pk]))
        caller = await admission.run(_admit, presented, check_budget=True, retry=True)
        if isinstance(caller, auth.Refusal):
            return await _error(send, provider, caller.status, caller.error_type, caller.message)
        run, token = caller
    if refusal:
        return await _error(send, provider, 400, "invalid_request_error", refusal)
    try:
        key = upstream.real_key(provider)
    except upstream.UpstreamNotConfigured as exc:
        return await _error(send, provider, 503, "api_error", str(exc))

    call = CallRecord(
        request=payload,
        started_at=timezone.now(),
        session_id=next((headers[h] for h in provider.session_headers if headers.get(h)), ""),
        provider=provider.name,
        operation=route.operation,
        route_model=route.model,
    )
    changed = provider.prepare_body(payload, route)
    if changed is not None:
        body = json.dumps(changed).encode()
    record = route.recorded
    try:
        answer = await upstream.open_call(
            route.upstream_path,
            query,
            upstream.request_headers(headers, key, provider),
            body,
            provider,
            route.method,
        )
    except httpx.HTTPError as exc:
        why = f"the LLM upstream could not be reached ({type(exc).__name__})"
        return await _upstream_failed(send, provider, why, run, token, key, call, record)

    call.http_status = answer.status_code
    content_type = answer.headers.get("content-type", "")
    reader = provider.reader(route).start(call)
    if answer.status_code == 200 and content_type.startswith("text/event-stream"):
        return await _stream(receive, send, answer, reader, run, token, key, call, record)

    try:
        answer_body = await answer.aread()
    except httpx.HTTPError as exc:
        why = f"the upstream answer broke off ({type(exc).__name__})"
        return await _upstream_failed(send, provider, why, run, token, key, call, record)
    finally:
        await answer.aclose()
    call.ended_at = timezone.now()
    if answer.is_success:
        try:
            reader.read_json(json.loads(answer_body))
            reader.done()
        except (ValueError, AttributeError):
            call.error = "the upstream answered something that is not a JSON message"
    else:
        call.error = f"HTTP {answer.status_code}: {provider.error_message(answer_body)}"
    if record:
        await recording.run(_finish, run, token, key, call)
    await fastpath.respond(send, answer.status_code, answer_body, upstream.response_headers(answer))


async def _upstream_failed(
    send, provider: Provider, why: str, run, token, key, call: CallRecord, record
) -> None:
    """Record the failed call (an error span) and answer 502."""
    call.error = why
    call.ended_at = timezone.now()
    if record:
        await recording.run(_finish, run, token, key, call)
    await _error(send, provider, 502, "api_error", f"The LLM gateway: {why}.")


async def _stream(receive, send, answer: httpx.Response, reader, run, token, key, call, record):
    """Relay an SSE answer as it arrives; stop (and record why) if the caller hangs up."""
    relay = asyncio.create_task(_relay(send, answer, reader, call))
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
        call.ended_at = call.ended_at or timezone.now()
        # Started before any await: the caller may already be sending its next call.
        recorded = _record_soon(run, token, key, call) if record else None
        hang_up.cancel()
        await answer.aclose()
        if recorded is not None:
            # Shielded: the server cancelling this request must not cancel the bookkeeping.
            await asyncio.shield(recorded)
    if relayed:
        # Closed only now: once the caller has read the whole answer, its span exists.
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _record_soon(run, token: str, key: str, call: CallRecord) -> asyncio.Future:
    """Start recording a streamed call; the run's next call waits until it is done."""
    recorded = asyncio.ensure_future(recording.run(_finish, run, token, key, call))
    pending = _unrecorded.setdefault(run.pk, set())
    pending.add(recorded)

    def forget(done: asyncio.Future) -> None:
        pending.discard(done)
        if not pending and _unrecorded.get(run.pk) is pending:
            del _unrecorded[run.pk]

    recorded.add_done_callback(forget)
    return recorded


async def _relay(send, answer: httpx.Response, collector, call: CallRecord) -> None:
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


def _admit(presented: str, *, check_budget: bool):
    """(run, token) of a caller that may call now, or the Refusal to answer."""
    caller = auth.authenticate_key(presented)
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
    key_name = providers.PROVIDERS[call.provider].key_setting
    secrets = prepare([*run_secrets(run, token), (key_name, key)])
    try:
        with transaction.atomic():
            # The run's row first, then its trace's: the order lifecycle.move and
            # the runner's events take them in. The other order deadlocked with a
            # run moving to waiting, and the call's tokens went uncounted.
            if call.total_tokens:
                prompt_cost, completion_cost = call.cost()
                budget.add_usage(
                    run, call.prompt_tokens, call.output_tokens, prompt_cost + completion_cost
                )
            store_span(run, call, secrets)
        why = budget.exceeded(run)
        if why:
            budget.end_run(run, why)
    except Exception:
        # The answer has reached the caller; a failed record must not turn it into an error.
        log.exception("LLM gateway: could not record a call of run %s", run.code)


async def _answer_failure(send):
    await _error(send, ANTHROPIC, 500, "api_error", "The LLM gateway failed; see its log.")


application = fastpath.plain_app(_handle, _answer_failure, "LLM gateway")
