"""Phoenix's quick-start against a live agentloop: `register()` with its defaults
and the OpenInference OpenAI instrumentor, real `openai` calls to a scripted
OpenAI-compatible server on loopback, exported over gRPC (register()'s default)
and over HTTP, configured only by the endpoint and the key; the spans land in
the project Phoenix names (`default`) and Phoenix's own client reads them back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from phoenix.client import Client

from agentloop.teams.models import Project, ProjectApiKey
from agentloop.traces.models import Span
from tests.fake_anthropic import text
from tests.fake_openai import FakeOpenAI
from tests.grpc_support import Receiver

pytest_plugins = ["tests.gateway_server"]  # served_db, asgi_server

QUICKSTART = Path(__file__).with_name("phoenix_quickstart.py")


@pytest.fixture
def model():
    fake = FakeOpenAI().start()
    fake.script([text("Paris is the capital of France.", input_tokens=31, output_tokens=9)])
    yield fake
    fake.close()


@pytest.fixture
def receiver(served_db):
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def raw_key(project):
    return ProjectApiKey.mint(project, "quickstart")[1]


def run_quickstart(transport: str, env: dict, cwd: Path) -> str:
    # A clean environment: only what a user sets, no OTEL_* or PHOENIX_* of ours.
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), transport],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_the_phoenix_quickstart_lands_llm_spans_the_phoenix_client_reads_back(
    transport, asgi_server, receiver, raw_key, model, project, tmp_path
):
    env = {
        "PHOENIX_COLLECTOR_ENDPOINT": asgi_server,
        "PHOENIX_API_KEY": raw_key,
        "OPENAI_BASE_URL": f"{model.url}/v1",
        "OPENAI_API_KEY": "sk-test",
    }
    if transport == "grpc":
        # Where `serve` listens (4317) is what register() assumes; the test's
        # receiver has a free port instead, which Phoenix reads from here.
        env["PHOENIX_GRPC_PORT"] = str(receiver.port)

    out = run_quickstart(transport, env, tmp_path)

    # register() prints what it set up (Phoenix's banner), then the answers.
    assert f"Transport: {'gRPC' if transport == 'grpc' else 'HTTP + protobuf'}" in out
    assert out.splitlines()[-2:] == ["Paris is the capital of France.", "ok"]
    assert len(model.main_requests()) == 1  # the scripted answer went to the first call
    # Stored: in the project Phoenix's default names, created in the key's space.
    default = Project.objects.get(space=project.space, name="default")
    stored = list(Span.objects.filter(project=default).order_by("start_time"))
    assert [s.kind for s in stored] == ["LLM", "LLM"]
    assert [s.model_name for s in stored] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert (stored[0].prompt_tokens, stored[0].completion_tokens) == (31, 9)
    assert stored[0].total_tokens == 40
    assert Span.objects.filter(project=project).count() == 0

    spans = Client(base_url=asgi_server, api_key=raw_key).spans.get_spans(
        project_identifier="default", limit=10
    )

    by_content = {s["attributes"]["llm.input_messages.0.message.content"]: s for s in spans}
    chat = by_content["You answer in one sentence."]
    attributes = chat["attributes"]
    assert chat["span_kind"] == "LLM"
    assert chat["name"] == "ChatCompletion"
    assert chat["status_code"] == "OK"
    assert attributes["llm.input_messages.0.message.role"] == "system"
    assert attributes["llm.input_messages.1.message.role"] == "user"
    assert attributes["llm.input_messages.1.message.content"] == "What is the capital of France?"
    assert attributes["llm.output_messages.0.message.role"] == "assistant"
    assert attributes["llm.output_messages.0.message.content"] == (
        "Paris is the capital of France."
    )
    assert attributes["llm.token_count.prompt"] == 31
    assert attributes["llm.token_count.completion"] == 9
    assert attributes["llm.token_count.total"] == 40
    assert attributes["llm.tools.0.tool.json_schema"].startswith('{"type": "function"')
    streamed = by_content["Say ok."]["attributes"]
    assert streamed["llm.output_messages.0.message.content"] == "ok"
    assert streamed["llm.token_count.total"] == 19  # the fake's usage chunk: 12 + 7
