"""The LLM gateway over a real ASGI server (daphne), with the fake Anthropic server upstream.

What a sandbox sees (answers, errors) and what is stored (LLM spans in the
run's trace, run counters, the run ended for its budget), and that the run
token stays here while the real key goes only upstream.
"""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.db import connection, transaction
from django.utils import timezone

from agentloop.gateway import app as views
from agentloop.gateway.spans import CallRecord
from agentloop.runs.models import Run, RunStatus, ServiceKey
from agentloop.runs.worker_trace import root_span_id, trace_id_for
from agentloop.teams.models import ProjectApiKey
from agentloop.traces.models import Span, Trace
from tests import fake_anthropic
from tests.e2e_support import wait_for
from tests.fake_anthropic import FakeAnthropic, error, text, tool_use

pytest_plugins = ["tests.gateway_server"]  # asgi_server, upstream_model, gateway, real_key
# `production`: also run on PostgreSQL + Redis by `make test-production`.
pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

MODEL = "claude-sonnet-4-5"
# Sonnet: $3 / $15 per million tokens; the fake answers 12 input and 7 output tokens.
FAKE_CALL_COST = Decimal("0.000141")
TIMEOUT = httpx.Timeout(20.0)


def make_run(project, *, status=RunStatus.RUNNING, config=None, expires_in=timedelta(hours=1)):
    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "claude-code", **(config or {})},
        prompt="Fix the refund bug.",
        status=status,
    )
    _, token = ServiceKey.mint(run, expires_at=timezone.now() + expires_in)
    return run, token


def call(gateway_url, token, body, *, auth="x-api-key", path="/v1/messages?beta=true"):
    headers = {
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        "x-claude-code-session-id": "sess-1234",
        "connection": "keep-alive, x-private-hop",
        "x-private-hop": "not for upstream",
        "cookie": "sessionid=abc",
    }
    if token and auth == "x-api-key":
        headers["x-api-key"] = token
    elif token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(gateway_url + path, json=body, headers=headers, timeout=TIMEOUT)


def request_body(stream=False, content="What is 2+2?", tools=True):
    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": content}],
        "system": [{"type": "text", "text": "You are Claude Code."}],
    }
    if tools:  # the fake consumes its script only for agent-loop calls (with tools)
        body["tools"] = [{"name": "Bash", "input_schema": {"type": "object"}}]
    return body


def run_spans(run):
    """The run's LLM spans (its trace also gets a root span when the run ends)."""
    return Span.objects.filter(
        project=run.space.worker_project(), trace_id=trace_id_for(run), kind="LLM"
    )


# -- (1) a non-streamed call ------------------------------------------------------------


def test_a_call_is_answered_and_recorded_as_an_llm_span_in_the_runs_trace(
    gateway, upstream_model, project
):
    run, token = make_run(project)
    upstream_model.script([text("4")])

    response = call(gateway, token, request_body())

    assert response.status_code == 200
    message = response.json()
    assert message["content"] == [{"type": "text", "text": "4"}]
    assert message["usage"] == {"input_tokens": 12, "output_tokens": 7}

    (span,) = run_spans(run)
    assert span.kind == "LLM" and span.status_code == "OK"
    assert span.parent_span_id == root_span_id(run)
    assert (span.model_name, span.prompt_tokens, span.completion_tokens, span.total_tokens) == (
        MODEL,
        12,
        7,
        19,
    )
    attrs = span.attributes
    assert attrs["openinference.span.kind"] == "LLM"
    assert attrs["llm.model_name"] == MODEL
    assert attrs["llm.token_count.total"] == 19
    assert attrs["llm.cost.total"] == pytest.approx(float(FAKE_CALL_COST))
    assert json.loads(attrs["input.value"])["messages"] == [
        {"role": "user", "content": "What is 2+2?"}
    ]
    assert attrs["output.value"] == "4"
    assert json.loads(attrs["llm.invocation_parameters"]) == {
        "max_tokens": 1024,
        "model": MODEL,
        "stream": False,
    }
    assert span.session_id == "sess-1234"
    assert span.duration_ms >= 0
    trace = Trace.objects.get(project=run.space.worker_project(), trace_id=trace_id_for(run))
    assert trace.start_time <= span.start_time and trace.end_time >= span.end_time

    run.refresh_from_db()
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (12, 7, FAKE_CALL_COST)


def test_counters_add_up_over_calls(gateway, upstream_model, project):
    run, token = make_run(project)
    upstream_model.script([text("one"), text("two")])

    assert call(gateway, token, request_body()).status_code == 200
    assert call(gateway, token, request_body(stream=True)).status_code == 200

    run.refresh_from_db()
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (24, 14, 2 * FAKE_CALL_COST)
    assert run_spans(run).count() == 2


def test_count_tokens_is_forwarded_and_not_recorded(gateway, upstream_model, project):
    run, token = make_run(project)
    upstream_model.script([])

    response = call(gateway, token, request_body(), path="/v1/messages/count_tokens")

    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    assert upstream_model.requests[-1]["path"] == "/v1/messages/count_tokens"
    assert not run_spans(run).exists()
    run.refresh_from_db()
    assert run.input_tokens == 0


# -- (2) streaming passes through chunk by chunk --------------------------------------


class _HoldingHandler(fake_anthropic._Handler):
    """Sends message_start, then holds the rest of the stream until the test says so."""

    def _event(self, name, data):
        super()._event(name, data)
        if name == "message_start":
            self.fake.first_event_sent.set()
            assert self.fake.go_on.wait(30), "the test never released the stream"
        if name == "message_stop":
            self.fake.finished.set()


class HoldingFake(FakeAnthropic):
    def __init__(self):
        super().__init__()
        self.first_event_sent = threading.Event()
        self.go_on = threading.Event()
        self.finished = threading.Event()

    def start(self):
        handler = type("Handler", (_HoldingHandler,), {"fake": self})
        self._server = fake_anthropic._Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self):
        self.go_on.set()
        super().close()


@pytest.fixture
def holding_upstream(settings):
    server = HoldingFake().start()
    settings.AGENTLOOP_LLM_UPSTREAM_URL = server.url
    yield server
    server.close()


def test_a_stream_reaches_the_caller_before_the_upstream_has_finished(
    gateway, holding_upstream, project
):
    run, token = make_run(project)
    holding_upstream.script([tool_use("Bash", {"command": "ls"}, say="Let me look.")])
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}

    with httpx.stream(
        "POST",
        gateway + "/v1/messages?beta=true",
        json=request_body(stream=True),
        headers=headers,
        timeout=TIMEOUT,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.iter_raw()
        first = next(chunks)  # the upstream is holding the rest until we let it go
        assert b"event: message_start" in first
        assert not holding_upstream.finished.is_set()
        assert not run_spans(run).exists()  # recorded when the stream ends, not before
        holding_upstream.go_on.set()
        rest = b"".join(chunks)

    body = (first + rest).decode()
    # message_start, ping, 2 blocks × (start, 2 deltas, stop), message_delta, message_stop
    assert body.count("event: ") == 12
    assert "event: message_stop" in body and '"partial_json"' in body

    (span,) = run_spans(run)
    assert span.status_code == "OK"
    assert (span.prompt_tokens, span.completion_tokens) == (12, 7)
    assert span.attributes["output.value"] == 'Let me look.\n[tool_use Bash] {"command": "ls"}'
    assert span.attributes["llm.stop_reason"] == "tool_use"
    run.refresh_from_db()
    assert (run.input_tokens, run.output_tokens) == (12, 7)


# -- upstream errors ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_error_passes_through_and_is_recorded_as_an_error_span(
    gateway, upstream_model, project, stream
):
    run, token = make_run(project)
    upstream_model.script([error(529, "Overloaded", "overloaded_error")])

    response = call(gateway, token, request_body(stream=stream))

    assert response.status_code == 529
    assert response.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert response.headers["request-id"] == "req_fake"
    (span,) = run_spans(run)
    assert span.status_code == "ERROR"
    assert span.status_message == "HTTP 529: overloaded_error: Overloaded"
    assert span.attributes["http.status_code"] == 529
    run.refresh_from_db()
    assert run.input_tokens == 0 and run.status == RunStatus.RUNNING


def test_an_unreachable_upstream_is_a_502_and_an_error_span(gateway, settings, project):
    run, token = make_run(project)
    settings.AGENTLOOP_LLM_UPSTREAM_URL = "http://127.0.0.1:9"  # discard port: nobody there

    response = call(gateway, token, request_body())

    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
    assert "could not be reached" in response.json()["error"]["message"]
    (span,) = run_spans(run)
    assert span.status_code == "ERROR"


def test_an_answer_that_breaks_off_is_a_502_and_an_error_span(gateway, settings, project):
    """An upstream that promises 1,000 bytes of JSON, sends ten and hangs up."""
    run, token = make_run(project)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_once():
        peer, _ = listener.accept()
        with peer:
            peer.recv(65536)
            peer.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b'content-length: 1000\r\n\r\n{"id": "ms'
            )

    server = threading.Thread(target=serve_once, daemon=True)
    server.start()
    settings.AGENTLOOP_LLM_UPSTREAM_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        response = call(gateway, token, request_body())
    finally:
        server.join(10)
        listener.close()

    assert_refused(response, 502, "api_error", "the upstream answer broke off")
    (span,) = run_spans(run)
    assert span.status_code == "ERROR"
    assert span.status_message.startswith("the upstream answer broke off")


def test_without_an_upstream_key_the_gateway_says_so(gateway, settings, upstream_model, project):
    _, token = make_run(project)
    settings.AGENTLOOP_ANTHROPIC_API_KEY = ""
    upstream_model.script([])

    response = call(gateway, token, request_body())

    assert response.status_code == 503
    assert "AGENTLOOP_ANTHROPIC_API_KEY" in response.json()["error"]["message"]
    assert upstream_model.requests == []


# -- (3) keys: the real key goes upstream only, the run token never --------------------


def test_the_upstream_gets_the_real_key_and_never_the_run_token(
    gateway, upstream_model, project, real_key
):
    run, token = make_run(project)
    upstream_model.script([text("fine"), text("fine again")])
    # The agent echoed its token into the conversation: it must not be stored.
    leaky = request_body(content=f"my key is {token} and {real_key}")

    assert call(gateway, token, leaky).status_code == 200
    assert call(gateway, token, request_body(stream=True), auth="bearer").status_code == 200

    for seen in upstream_model.requests:
        headers = {name.lower(): value for name, value in seen["headers"].items()}
        assert headers["x-api-key"] == real_key
        assert "authorization" not in headers and "cookie" not in headers
        assert "x-private-hop" not in headers  # named in Connection: hop-by-hop
        assert headers["anthropic-version"] == "2023-06-01"
        assert headers["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"
        assert headers["x-claude-code-session-id"] == "sess-1234"
        assert token not in json.dumps(headers)
        assert seen["path"] == "/v1/messages?beta=true"
    assert token in json.dumps(upstream_model.requests[0]["body"])  # the body is the caller's

    stored = json.dumps(
        [
            [s.name, s.attributes, s.status_message, s.resource, s.session_id]
            for s in Span.objects.all()
        ]
    )
    assert token not in stored and real_key not in stored
    assert "[REDACTED:AGENTLOOP_RUN_TOKEN]" in stored
    assert "[REDACTED:AGENTLOOP_ANTHROPIC_API_KEY]" in stored


# -- (4) budget -------------------------------------------------------------------------


def test_the_call_that_crosses_the_token_budget_ends_the_run_and_later_calls_are_refused(
    gateway, upstream_model, project
):
    run, token = make_run(project, config={"token_budget": 30})
    upstream_model.script([text("first"), text("second"), text("never sent")])

    assert call(gateway, token, request_body()).status_code == 200  # 19 tokens
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert call(gateway, token, request_body(stream=True)).status_code == 200  # 38: over

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.exit_reason == "budget"
    assert run.stop_requested_at is not None
    last = run.events.order_by("-seq").first()
    assert last.payload["state"] == "failed"
    assert last.payload["detail"] == "The run has used 38 tokens of its budget of 30."

    refused = call(gateway, token, request_body())
    assert refused.status_code == 400
    assert refused.headers["x-should-retry"] == "false"
    assert refused.json() == {
        "type": "error",
        "error": {
            "type": "budget_exceeded",
            "message": "The run has used 38 tokens of its budget of 30. "
            "The run has been stopped (exit reason: budget).",
        },
    }
    assert len(upstream_model.main_requests()) == 2


def test_a_call_sent_before_the_last_streamed_call_is_recorded_waits_for_its_count(
    gateway, upstream_model, project, monkeypatch
):
    """Codex sends its next call as soon as it reads a stream's last event, before the
    gateway has recorded that call's usage: the next call must be checked against it."""
    run, token = make_run(project, config={"token_budget": 10})
    upstream_model.script([text("crosses the line"), text("never sent")])
    recording_started, release, second_checked = (threading.Event() for _ in range(3))
    finish, admit = views._finish, views._admit

    def slow_finish(*args):
        recording_started.set()
        assert release.wait(30), "the test never released the recording"
        finish(*args)

    def watched_admit(*args, **kwargs):
        caller = admit(*args, **kwargs)
        if recording_started.is_set():
            second_checked.set()  # the second call has read the run's counters
        return caller

    monkeypatch.setattr(views, "_finish", slow_finish)
    monkeypatch.setattr(views, "_admit", watched_admit)
    answers = {}

    def send(name, stream):
        answers[name] = call(gateway, token, request_body(stream=stream))

    first = threading.Thread(target=send, args=("first", True))
    first.start()
    assert recording_started.wait(30)  # the stream is relayed; its usage is not counted yet
    second = threading.Thread(target=send, args=("second", False))
    second.start()
    assert second_checked.wait(30)
    release.set()
    first.join(30)
    second.join(30)

    assert answers["first"].status_code == 200
    assert answers["second"].status_code == 400
    assert answers["second"].json()["error"]["type"] == "budget_exceeded"
    assert len(upstream_model.main_requests()) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.exit_reason == "budget"


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks: SQLite has one writer at a time"
)
def test_recording_a_call_while_the_run_moves_counts_its_tokens_without_a_deadlock(project):
    """The runner moves a run (its row, then its trace's) while the gateway records a
    call of it: the gateway takes the rows in the same order, so neither is aborted."""
    run, token = make_run(project, config={"token_budget": 1000})
    now = timezone.now()
    project_of_trace = run.space.worker_project()
    trace = Trace.objects.create(
        project=project_of_trace, trace_id=trace_id_for(run), start_time=now, end_time=now
    )
    record = CallRecord(
        request=request_body(),
        started_at=now,
        ended_at=now,
        model=MODEL,
        input_tokens=12,
        output_tokens=7,
    )
    run_locked, mover_may_go = threading.Event(), threading.Event()
    pids, errors = {}, []

    def mover():  # what lifecycle.move does: the run's row, then its trace's
        try:
            with transaction.atomic():
                Run.objects.filter(pk=run.pk).update(status=RunStatus.WAITING)
                run_locked.set()
                assert mover_may_go.wait(30)
                Trace.objects.filter(pk=trace.pk).update(end_time=timezone.now())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def recorder():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids["gateway"] = cursor.fetchone()[0]
            views._finish(run, token, "sk-ant-upstream", record)
        finally:
            connection.close()

    def gateway_waits_for_a_lock():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pids["gateway"]]
            )
            row = cursor.fetchone()
        return row is not None and row[0] == "Lock"

    threads = [threading.Thread(target=mover)]
    threads[0].start()
    assert run_locked.wait(30)
    threads.append(threading.Thread(target=recorder))
    threads[1].start()
    assert wait_for(lambda: "gateway" in pids and gateway_waits_for_a_lock(), 30)
    mover_may_go.set()
    for thread in threads:
        thread.join(30)

    assert errors == []
    run.refresh_from_db()
    assert (run.input_tokens, run.output_tokens) == (12, 7)
    assert run_spans(run).count() == 1


def test_a_run_already_past_its_budget_is_refused_without_calling_upstream(
    gateway, upstream_model, project
):
    run, token = make_run(project, config={"token_budget": 1000})
    Run.objects.filter(pk=run.pk).update(input_tokens=900, output_tokens=100)
    upstream_model.script([text("never sent")])

    response = call(gateway, token, request_body())

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "budget_exceeded"
    assert "1,000 tokens of its budget of 1,000" in response.json()["error"]["message"]
    assert upstream_model.requests == []
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.exit_reason == "budget"
    assert not run_spans(run).exists()


def test_the_cost_budget_ends_the_run_too(gateway, upstream_model, project):
    run, token = make_run(project, config={"cost_budget_usd": "0.0001"})
    upstream_model.script([text("pricey")])

    assert call(gateway, token, request_body()).status_code == 200  # $0.000141

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.exit_reason == "budget"
    assert run.cost_usd == FAKE_CALL_COST


def test_a_run_without_a_budget_is_never_stopped_for_one(gateway, upstream_model, project):
    run, token = make_run(project, config={"token_budget": None})
    upstream_model.script([text("a"), text("b")])
    for _ in range(2):
        assert call(gateway, token, request_body()).status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.input_tokens == 24


# -- (5) who may call -------------------------------------------------------------------


def assert_refused(response, status, error_type, words):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type
    assert words in body["error"]["message"]
    assert response.headers["x-should-retry"] == "false"


def test_without_a_key_the_call_is_refused(gateway, upstream_model, project):
    upstream_model.script([])
    assert_refused(call(gateway, None, request_body()), 401, "authentication_error", "No run key")
    assert upstream_model.requests == []


def test_a_revoked_key_of_another_run_is_refused(gateway, upstream_model, project):
    other, other_token = make_run(project)
    ServiceKey.revoke_for_run(other)
    upstream_model.script([])
    response = call(gateway, other_token, request_body())
    assert_refused(response, 401, "authentication_error", "Unknown, expired or revoked")
    assert upstream_model.requests == []


def test_an_expired_key_is_refused(gateway, upstream_model, project):
    _, token = make_run(project, expires_in=timedelta(seconds=-1))
    upstream_model.script([])
    response = call(gateway, token, request_body(), auth="bearer")
    assert_refused(response, 401, "authentication_error", "Unknown, expired or revoked")


def test_an_unknown_key_is_refused(gateway, upstream_model, project):
    upstream_model.script([])
    response = call(gateway, "al_sk_made-up", request_body())
    assert_refused(response, 401, "authentication_error", "Unknown, expired or revoked")


def test_a_project_api_key_cannot_call_the_model(gateway, upstream_model, project, alice):
    _, raw = ProjectApiKey.mint(project, "ci", created_by=alice)
    upstream_model.script([])
    response = call(gateway, raw, request_body())
    assert_refused(response, 401, "authentication_error", "A project API key cannot")
    assert upstream_model.requests == []


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.QUEUED])
def test_a_run_that_is_not_running_cannot_call(gateway, upstream_model, project, status):
    _, token = make_run(project, status=status)
    upstream_model.script([])
    response = call(gateway, token, request_body())
    assert_refused(response, 409, "invalid_request_error", f"The run is {status}")
    assert upstream_model.requests == []


def test_a_waiting_run_may_call(gateway, upstream_model, project):
    _, token = make_run(project, status=RunStatus.WAITING)
    upstream_model.script([text("ok")])
    assert call(gateway, token, request_body()).status_code == 200


def test_bad_input_gets_a_clear_error_and_stores_nothing(gateway, upstream_model, project):
    run, token = make_run(project)
    upstream_model.script([])
    response = httpx.post(
        gateway + "/v1/messages",
        content=b"[not json",
        headers={"x-api-key": token},
        timeout=TIMEOUT,
    )
    assert_refused(response, 400, "invalid_request_error", "JSON object")
    get = httpx.get(gateway + "/v1/messages", headers={"x-api-key": token}, timeout=TIMEOUT)
    assert get.status_code == 405
    assert upstream_model.requests == [] and not run_spans(run).exists()


def test_a_body_over_the_limit_is_refused_before_anything_else(
    gateway, upstream_model, project, settings
):
    run, token = make_run(project)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    upstream_model.script([])
    big = request_body(content="x" * 2000)
    assert_refused(call(gateway, token, big), 413, "request_too_large", "larger than 1000 bytes")
    assert upstream_model.requests == [] and not run_spans(run).exists()


def test_an_unknown_gateway_path_is_a_404_in_the_anthropic_shape(gateway, upstream_model, project):
    _, token = make_run(project)
    upstream_model.script([])
    response = httpx.post(
        gateway + "/v1/complete", json={}, headers={"x-api-key": token}, timeout=TIMEOUT
    )
    assert_refused(response, 404, "not_found_error", "No such endpoint: /llm/anthropic/v1/complete")
    assert upstream_model.requests == []


def test_a_failure_of_the_gateway_itself_is_a_500_in_the_anthropic_shape(
    gateway, upstream_model, project, monkeypatch, caplog
):
    _, token = make_run(project)
    upstream_model.script([])

    def broken(*args):
        raise RuntimeError("a bug in the gateway")

    monkeypatch.setattr(views.upstream, "request_headers", broken)
    assert_refused(call(gateway, token, request_body()), 500, "api_error", "The LLM gateway failed")
    assert upstream_model.requests == []
    assert "a bug in the gateway" in caplog.text


def test_a_caller_hanging_up_mid_stream_is_recorded_as_an_error_span(
    gateway, holding_upstream, project, monkeypatch
):
    run, token = make_run(project)
    holding_upstream.script([text("a long answer nobody reads")])
    recorded = threading.Event()
    finish = views._finish

    def finish_and_tell(*args):
        finish(*args)
        recorded.set()

    monkeypatch.setattr(views, "_finish", finish_and_tell)
    headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}

    with httpx.stream(
        "POST",
        gateway + "/v1/messages",
        json=request_body(stream=True),
        headers=headers,
        timeout=TIMEOUT,
    ) as response:
        assert b"message_start" in next(response.iter_raw())
    # The caller is gone; the gateway notices, stops relaying and records what it saw.

    assert recorded.wait(20), "the gateway never recorded the abandoned call"
    holding_upstream.go_on.set()
    (span,) = run_spans(run)
    assert span.status_code == "ERROR"
    assert span.status_message == "the caller hung up before the answer ended"
    assert span.prompt_tokens == 12  # message_start's usage had arrived
    run.refresh_from_db()
    assert run.input_tokens == 12
