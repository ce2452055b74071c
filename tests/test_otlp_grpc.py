"""OTLP/gRPC: the real OpenTelemetry gRPC exporter (and a raw gRPC channel) against
the receiver on a port of this process; spans stored as the HTTP receiver stores them."""

from __future__ import annotations

import gzip

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from agentloop.teams.models import ApiKeyRefusal, Project, ProjectApiKey
from agentloop.traces import otlp_grpc
from agentloop.traces.models import Span
from tests.grpc_support import Receiver
from tests.otlp_payloads import export_request, new_trace_id, span

pytest_plugins = ["tests.gateway_server"]  # served_db, asgi_server

EXPORT = f"/{otlp_grpc.SERVICE}/Export"


@pytest.fixture
def receiver(served_db):
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def grpc_key(project):
    return ProjectApiKey.mint(project, "grpc")[1]


def export_openinference_trace(exporter, service="support-bot"):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("agentloop.tests")
    with tracer.start_as_current_span(
        "support.answer",
        attributes={"openinference.span.kind": "AGENT", "input.value": "Where is my order?"},
    ):
        with tracer.start_as_current_span(
            "ChatCompletion",
            attributes={
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.token_count.total": 160,
                "tag.tags": ["billing", "urgent"],
            },
        ):
            pass
    provider.shutdown()


def comparable(spans):
    # What a person reads of a span, without its random ids and times.
    return sorted(
        (
            s.name,
            s.kind,
            s.status_code,
            s.model_name,
            s.total_tokens,
            s.parent_span_id == "",
            {k: v for k, v in s.attributes.items()},
            {k: v for k, v in s.resource.items() if not k.startswith("telemetry.")},
        )
        for s in spans
    )


def test_the_otel_grpc_exporter_stores_spans_as_the_http_exporter_does(
    receiver, asgi_server, project, space, grpc_key
):
    over_http = Project.objects.create(space=space, name="over-http")
    http_key = ProjectApiKey.mint(over_http, "http")[1]

    export_openinference_trace(
        GrpcExporter(
            endpoint=f"127.0.0.1:{receiver.port}",
            insecure=True,
            headers=(("authorization", f"Bearer {grpc_key}"),),
            compression=grpc.Compression.Gzip,
            timeout=10,
        )
    )
    export_openinference_trace(
        HttpExporter(
            endpoint=f"{asgi_server}/v1/traces",
            headers={"Authorization": f"Bearer {http_key}"},
            timeout=10,
        )
    )

    by_grpc = list(Span.objects.filter(project=project))
    assert {s.name for s in by_grpc} == {"support.answer", "ChatCompletion"}
    llm = next(s for s in by_grpc if s.kind == "LLM")
    assert llm.attributes["tag.tags"] == ["billing", "urgent"]
    assert llm.total_tokens == 160
    assert comparable(by_grpc) == comparable(Span.objects.filter(project=over_http))


def test_the_exporter_is_told_of_a_bad_key_and_nothing_is_stored(receiver, project):
    exporter = GrpcExporter(
        endpoint=f"127.0.0.1:{receiver.port}",
        insecure=True,
        headers=(("authorization", "Bearer al_pk_nope"),),
        timeout=5,
    )
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("x") as one:
        pass
    assert exporter.export([one]) == SpanExportResult.FAILURE
    assert not Span.objects.exists()


def call(receiver, body: bytes, metadata=(), compression=None):
    with grpc.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        stub = channel.unary_unary(EXPORT)
        return stub(body, metadata=metadata, timeout=10, compression=compression)


def status_of(receiver, body, metadata=()):
    with pytest.raises(grpc.RpcError) as raised:
        call(receiver, body, metadata)
    return raised.value.code(), raised.value.details()


def test_the_key_is_read_from_either_header(receiver, project, grpc_key):
    for metadata in ((("authorization", f"Bearer {grpc_key}"),), (("api_key", grpc_key),)):
        body = export_request(({}, [span(trace_id=new_trace_id())])).SerializeToString()
        answer = ExportTraceServiceResponse.FromString(call(receiver, body, metadata))
        assert not answer.HasField("partial_success")
    assert Span.objects.filter(project=project).count() == 2


def test_a_missing_key_is_unauthenticated(receiver):
    body = export_request(({}, [span(trace_id=new_trace_id())])).SerializeToString()
    code, details = status_of(receiver, body)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "Send a project API key" in details
    assert not Span.objects.exists()


def test_an_undecodable_body_is_an_invalid_argument_counted_for_the_key(receiver, grpc_key):
    code, details = status_of(receiver, b"\x0a\x05nope", (("api_key", grpc_key),))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("Invalid OTLP trace export")
    assert list(ApiKeyRefusal.objects.values_list("reason", flat=True)) == [
        "whole export refused: not a valid OTLP trace export"
    ]


def test_a_gzip_compressed_message_is_stored(receiver, project, grpc_key):
    body = export_request(({}, [span(trace_id=new_trace_id())])).SerializeToString()
    call(receiver, body, (("api_key", grpc_key),), compression=grpc.Compression.Gzip)
    assert Span.objects.filter(project=project).count() == 1


def test_a_message_over_the_limit_is_refused_even_compressed(settings, served_db, grpc_key):
    settings.OTLP_MAX_BODY_BYTES = 10_000
    small = Receiver()  # reads the limit when it starts
    try:
        many = [
            span(trace_id=new_trace_id(), attributes={"input.value": "a" * 200}) for _ in range(80)
        ]
        body = export_request(({}, many)).SerializeToString()
        assert len(body) > 10_000 and len(gzip.compress(body)) < 10_000
        with pytest.raises(grpc.RpcError) as raised:
            call(small, body, (("api_key", grpc_key),), compression=grpc.Compression.Gzip)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        small.stop()
    assert not Span.objects.exists()


def test_refused_spans_are_a_partial_success(receiver, project, space, grpc_key):
    space.refuse_unknown_projects = True
    space.save()
    body = export_request(
        ({"openinference.project.name": "typo-bot"}, [span(trace_id=new_trace_id())]),
        ({}, [span(trace_id=new_trace_id())]),
    ).SerializeToString()

    answer = ExportTraceServiceResponse.FromString(call(receiver, body, (("api_key", grpc_key),)))

    assert answer.partial_success.rejected_spans == 1
    assert "typo-bot" in answer.partial_success.error_message
    assert Span.objects.filter(project=project).count() == 1
