"""The gateway's OpenAI (Responses, Chat Completions) and Gemini endpoints, over daphne.

Upstream: the scripted servers of each API (tests/fake_openai.py,
tests/fake_gemini.py). What a caller sees (answers, streams, errors in its
API's shape), what the upstream sees (the real key in that API's header, never
the run token), and what is stored (an LLM span per call, the run's counters,
the run ended for its budget).
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from tests.fake_anthropic import error, text, tool_use
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeOpenAI
from tests.test_gateway import make_run, run_spans

pytest_plugins = ["tests.gateway_server"]
pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

OPENAI_KEY = "sk-proj-real-openai-key-0123456789"
GEMINI_KEY = "AIza-real-gemini-key-0123456789"
TIMEOUT = httpx.Timeout(20.0)
TOOLS_OPENAI = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]
TOOLS_CHAT = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}]
TOOLS_GEMINI = [{"functionDeclarations": [{"name": "run_shell_command"}, {"name": "read_file"}]}]


@pytest.fixture(scope="module")
def openai_upstream():
    server = FakeOpenAI().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gemini_upstream():
    server = FakeGemini().start()
    yield server
    server.close()


@pytest.fixture
def llm(settings, asgi_server, served_db, openai_upstream, gemini_upstream):
    settings.AGENTLOOP_OPENAI_UPSTREAM_URL = openai_upstream.url
    settings.AGENTLOOP_OPENAI_API_KEY = OPENAI_KEY
    settings.AGENTLOOP_GEMINI_UPSTREAM_URL = gemini_upstream.url
    settings.AGENTLOOP_GEMINI_API_KEY = GEMINI_KEY
    return f"{asgi_server}/llm"


def post(url, token, body, **headers):
    if token:
        headers.setdefault("authorization", f"Bearer {token}")
    return httpx.post(url, json=body, headers=headers, timeout=TIMEOUT)


def upstream_headers(server) -> list[dict]:
    return [{k.lower(): v for k, v in r["headers"].items()} for r in server.requests]


# -- OpenAI Responses (Codex) -----------------------------------------------------------


def test_a_responses_call_is_answered_and_recorded(llm, openai_upstream, project):
    run, token = make_run(project, config={"harness": "codex"})
    openai_upstream.script([text("4")])
    body = {"model": "gpt-5", "input": [{"role": "user", "content": "2+2?"}], "tools": TOOLS_OPENAI}

    response = post(f"{llm}/openai/v1/responses", token, body, **{"session-id": "thread-7"})

    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == "4"
    (span,) = run_spans(run)
    assert span.name == "openai.responses gpt-5"
    assert span.attributes["llm.provider"] == "openai"
    assert (span.prompt_tokens, span.completion_tokens) == (12, 7)
    assert span.attributes["output.value"] == "4"
    assert json.loads(span.attributes["input.value"])["input"][0]["content"] == "2+2?"
    assert span.attributes["llm.tools.count"] == 1
    assert span.session_id == "thread-7"
    # gpt-5: $1.25 / $10 per million tokens.
    run.refresh_from_db()
    assert run.cost_usd == Decimal("0.000085")
    (seen,) = upstream_headers(openai_upstream)
    assert seen["authorization"] == f"Bearer {OPENAI_KEY}"
    assert token not in json.dumps(seen)


def test_a_streamed_responses_call_is_relayed_and_its_tool_call_recorded(
    llm, openai_upstream, project
):
    run, token = make_run(project, config={"harness": "codex"})
    openai_upstream.script([tool_use("exec_command", {"cmd": "ls"}, say="Let me look.")])
    body = {"model": "gpt-5-codex", "input": [], "tools": TOOLS_OPENAI, "stream": True}

    with httpx.stream(
        "POST",
        f"{llm}/openai/v1/responses",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        streamed = b"".join(response.iter_raw()).decode()

    assert streamed.count("event: response.output_text.delta") == 2
    assert "event: response.completed" in streamed
    (span,) = run_spans(run)
    assert span.attributes["output.value"] == 'Let me look.\n[tool_use exec_command] {"cmd": "ls"}'
    assert span.attributes["llm.stop_reason"] == "completed"
    assert (span.prompt_tokens, span.completion_tokens) == (12, 7)


# -- OpenAI Chat Completions (OpenCode) --------------------------------------------------


def test_a_streamed_chat_completion_gets_usage_asked_for_and_counted(llm, openai_upstream, project):
    run, token = make_run(project, config={"harness": "opencode"})
    openai_upstream.script([tool_use("bash", {"command": "ls"}, say="Looking.")])
    body = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}],
            "tools": TOOLS_CHAT, "stream": True}  # fmt: skip

    response = post(f"{llm}/openai/v1/chat/completions", token, body)

    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")
    # The caller did not ask for usage; the gateway did, for the budget.
    (sent,) = openai_upstream.main_requests()
    assert sent["stream_options"] == {"include_usage": True}
    (span,) = run_spans(run)
    assert span.name == "openai.chat.completions gpt-5"
    assert span.attributes["output.value"] == 'Looking.\n[tool_use bash] {"command": "ls"}'
    assert span.attributes["llm.stop_reason"] == "tool_calls"
    run.refresh_from_db()
    assert (run.input_tokens, run.output_tokens) == (12, 7)


# -- Gemini (Gemini CLI) --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["x-goog-api-key", "query"])
def test_a_streamed_gemini_call_takes_the_run_key_where_google_clients_put_it(
    llm, gemini_upstream, project, where
):
    run, token = make_run(project, config={"harness": "gemini"})
    gemini_upstream.script([text("Hello there.")])
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "tools": TOOLS_GEMINI}
    url = f"{llm}/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": token} if where == "x-goog-api-key" else {}
    if where == "query":
        url += f"&key={token}"

    response = httpx.post(url, json=body, headers=headers, timeout=TIMEOUT)

    assert response.status_code == 200, response.text
    chunks = [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")
    ]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == (
        "Hello there."
    )
    (span,) = run_spans(run)
    assert span.name == "gemini.streamGenerateContent gemini-2.5-flash"
    assert span.model_name == "gemini-2.5-flash"
    assert span.attributes["llm.provider"] == "gemini"
    assert span.attributes["output.value"] == "Hello there."
    assert span.attributes["llm.tools.count"] == 2
    assert (span.prompt_tokens, span.completion_tokens) == (12, 7)
    (seen,) = gemini_upstream.requests
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    headers_seen = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers_seen["x-goog-api-key"] == GEMINI_KEY
    assert token not in json.dumps(seen)


def test_count_tokens_is_forwarded_and_not_recorded(llm, gemini_upstream, project):
    run, token = make_run(project, config={"harness": "gemini"})
    gemini_upstream.script([])
    url = f"{llm}/gemini/v1beta/models/gemini-2.5-pro:countTokens"

    response = httpx.post(url, json={"contents": []}, headers={"x-goog-api-key": token})

    assert response.status_code == 200 and response.json()["totalTokens"] >= 1
    assert not run_spans(run).exists()


def test_an_upstream_gemini_error_passes_through_and_is_an_error_span(
    llm, gemini_upstream, project
):
    run, token = make_run(project, config={"harness": "gemini"})
    gemini_upstream.script([error(429, "Quota exceeded for this minute.")])
    url = f"{llm}/gemini/v1beta/models/gemini-2.5-pro:generateContent"

    response = httpx.post(url, json={"contents": [], "tools": TOOLS_GEMINI},
                          headers={"x-goog-api-key": token})  # fmt: skip

    assert response.status_code == 429
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    (span,) = run_spans(run)
    assert span.status_code == "ERROR"
    assert span.status_message == "HTTP 429: RESOURCE_EXHAUSTED: Quota exceeded for this minute."


# -- refusals, each in its API's own shape ------------------------------------------------


def openai_error(response) -> dict:
    return response.json()["error"]


def gemini_error(response) -> dict:
    return response.json()["error"]


def test_without_a_run_key_each_api_answers_401_in_its_own_shape(llm, openai_upstream):
    openai_upstream.script([])
    response = post(f"{llm}/openai/v1/responses", None, {"model": "gpt-5"})
    assert response.status_code == 401
    assert openai_error(response)["type"] == "authentication_error"
    assert "No run key" in openai_error(response)["message"]

    response = httpx.post(f"{llm}/gemini/v1beta/models/gemini-2.5-pro:generateContent", json={})
    assert response.status_code == 401
    assert gemini_error(response) == {
        "code": 401,
        "message": gemini_error(response)["message"],
        "status": "UNAUTHENTICATED",
    }
    assert "No run key" in gemini_error(response)["message"]
    assert response.headers["x-should-retry"] == "false"
    assert openai_upstream.requests == []


def test_an_unknown_path_is_a_404_of_that_api(llm, project):
    _, token = make_run(project)
    response = post(f"{llm}/openai/v1/embeddings", token, {})
    assert response.status_code == 404 and "No such endpoint" in openai_error(response)["message"]
    response = httpx.post(f"{llm}/gemini/v1beta/models/x:embedContent", json={})
    assert response.status_code == 404 and gemini_error(response)["status"] == "NOT_FOUND"


def test_without_an_upstream_key_the_gateway_names_the_setting(llm, settings, project):
    _, token = make_run(project, config={"harness": "codex"})
    settings.AGENTLOOP_OPENAI_API_KEY = ""
    response = post(f"{llm}/openai/v1/responses", token, {"model": "gpt-5"})
    assert response.status_code == 503
    assert "AGENTLOOP_OPENAI_API_KEY" in openai_error(response)["message"]


@pytest.mark.parametrize("api", ["responses", "chat", "gemini"])
def test_the_call_that_crosses_the_budget_ends_the_run_and_the_next_is_refused(
    llm, openai_upstream, gemini_upstream, project, api
):
    run, token = make_run(project, config={"token_budget": 10})
    if api == "gemini":
        upstream = gemini_upstream
        url = f"{llm}/gemini/v1beta/models/gemini-2.5-pro:generateContent"
        body, headers = {"contents": [], "tools": TOOLS_GEMINI}, {"x-goog-api-key": token}
    else:
        upstream = openai_upstream
        path = "responses" if api == "responses" else "chat/completions"
        url = f"{llm}/openai/v1/{path}"
        tools = TOOLS_OPENAI if api == "responses" else TOOLS_CHAT
        body, headers = {"model": "gpt-5", "tools": tools}, {"authorization": f"Bearer {token}"}
    upstream.script([text("one"), text("two")])

    first = httpx.post(url, json=body, headers=headers, timeout=TIMEOUT)
    second = httpx.post(url, json=body, headers=headers, timeout=TIMEOUT)

    assert first.status_code == 200
    assert second.status_code == 400
    problem = second.json()["error"]
    if api == "gemini":
        assert problem["status"] == "FAILED_PRECONDITION"
    else:
        assert problem["code"] == "budget_exceeded"
    assert "exit reason: budget" in problem["message"]
    run.refresh_from_db()
    assert (run.status, run.exit_reason) == ("failed", "budget")
    assert len(upstream.main_requests()) == 1
