"""The real OpenTelemetry Python SDK exports to a live agentloop, and the spans read back."""

from __future__ import annotations

import json
import urllib.request

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agentloop.teams.models import ProjectApiKey

# asgi_server: daphne serving agentloop.asgi (the hot paths have no Django views)
pytest_plugins = ["tests.gateway_server"]


def test_the_otel_sdk_exports_openinference_spans(asgi_server, served_db, project):
    _, raw_key = ProjectApiKey.mint(project, "sdk")
    exporter = OTLPSpanExporter(
        endpoint=f"{asgi_server}/v1/traces",
        headers={"Authorization": f"Bearer {raw_key}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("agentloop.tests")

    try:
        with tracer.start_as_current_span(
            "support.answer",
            attributes={
                "openinference.span.kind": "AGENT",
                "input.value": "Where is my order?",
                "session.id": "sess-42",
            },
        ) as root:
            with tracer.start_as_current_span(
                "ChatCompletion",
                attributes={
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "claude-sonnet-4",
                    "llm.token_count.prompt": 321,
                    "llm.token_count.completion": 54,
                    "llm.token_count.total": 375,
                    "llm.invocation_parameters": '{"temperature": 0}',
                    "tag.tags": ["support", "orders"],
                },
            ):
                raise TimeoutError("model took too long")
    except TimeoutError:
        pass
    trace_id = format(root.get_span_context().trace_id, "032x")
    root_id = format(root.get_span_context().span_id, "016x")

    assert provider.force_flush(timeout_millis=10_000)
    provider.shutdown()

    # Read back through the REST API with the same key, as a user's script would.
    request = urllib.request.Request(
        f"{asgi_server}/api/v1/projects/{project.pk}/spans?trace_id={trace_id}",
        headers={"Authorization": f"Bearer {raw_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        spans = {s["name"]: s for s in json.load(response)["data"]}

    assert set(spans) == {"support.answer", "ChatCompletion"}
    agent, llm = spans["support.answer"], spans["ChatCompletion"]
    assert agent["span_id"] == root_id
    assert agent["parent_span_id"] == ""
    assert agent["kind"] == "AGENT"
    assert agent["session_id"] == "sess-42"
    assert agent["attributes"]["input.value"] == "Where is my order?"
    # The exception left both spans through their `with` blocks: both failed.
    assert agent["status_code"] == "ERROR"

    assert llm["parent_span_id"] == root_id
    assert llm["trace_id"] == trace_id
    assert llm["kind"] == "LLM"
    assert llm["model_name"] == "claude-sonnet-4"
    assert (llm["prompt_tokens"], llm["completion_tokens"], llm["total_tokens"]) == (321, 54, 375)
    assert llm["attributes"]["tag.tags"] == ["support", "orders"]
    assert llm["status_code"] == "ERROR"
    assert llm["status_message"] == "TimeoutError: model took too long"
    [exception] = [e for e in llm["events"] if e["name"] == "exception"]
    assert exception["attributes"]["exception.type"] == "TimeoutError"
    assert exception["attributes"]["exception.message"] == "model took too long"
    assert "Traceback" in exception["attributes"]["exception.stacktrace"]
    assert llm["duration_ms"] >= 0
