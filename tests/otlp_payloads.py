"""Build OTLP trace export requests for tests and benchmarks.

`export_request(...)` makes an ExportTraceServiceRequest message; `.SerializeToString()`
gives the protobuf body and `to_otlp_json(message)` the OTLP JSON body (hex ids).
"""

from __future__ import annotations

import base64
import json
import os

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

# 2025-01-02T03:04:05.123456Z in nanoseconds since the epoch.
T0_NS = 1_735_787_045_123_456_000
MS = 1_000_000


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def any_value(value) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(key_values(value))
        return out
    return AnyValue(string_value=str(value))


def key_values(attributes: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def span(
    *,
    trace_id: str,
    span_id: str | None = None,
    parent_span_id: str = "",
    name: str = "span",
    start_ns: int = T0_NS,
    duration_ms: float = 10,
    attributes: dict | None = None,
    status: tuple[int, str] = (0, ""),
    events: list[tuple[str, int, dict]] = (),
    raw_ids: tuple[bytes, bytes] | None = None,
) -> Span:
    """One span; `raw_ids=(trace_id_bytes, span_id_bytes)` overrides the ids (to send bad ones)."""
    out = Span(
        trace_id=raw_ids[0] if raw_ids else bytes.fromhex(trace_id),
        span_id=raw_ids[1] if raw_ids else bytes.fromhex(span_id or new_span_id()),
        parent_span_id=bytes.fromhex(parent_span_id),
        name=name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + int(duration_ms * MS),
        status=Status(code=status[0], message=status[1]),
    )
    out.attributes.extend(key_values(attributes or {}))
    for event_name, time_ns, event_attributes in events:
        event = out.events.add(name=event_name, time_unix_nano=time_ns)
        event.attributes.extend(key_values(event_attributes))
    return out


def export_request(*resources: tuple[dict, list[Span]]) -> ExportTraceServiceRequest:
    """resources: (resource attributes, spans) pairs, one ResourceSpans each."""
    request = ExportTraceServiceRequest()
    for resource_attributes, spans in resources:
        rs = ResourceSpans()
        rs.resource.attributes.extend(key_values(resource_attributes))
        rs.scope_spans.append(ScopeSpans(spans=spans))
        request.resource_spans.append(rs)
    return request


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """The OTLP JSON encoding: the proto3 JSON mapping with hex trace and span ids."""
    data = json_format.MessageToDict(request)
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = _b64_to_hex(s[key])
    return json.dumps(data).encode()


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def llm_span_attributes(i: int = 0) -> dict:
    """A typical OpenInference LLM span's attributes (what benchmarks send)."""
    return {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": 120 + i % 50,
        "llm.token_count.completion": 40 + i % 20,
        "llm.token_count.total": 160 + i % 70,
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": f"Where is my order #{i}?",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "It shipped yesterday and arrives tomorrow.",
        "input.value": f"Where is my order #{i}?",
        "output.value": "It shipped yesterday and arrives tomorrow.",
        "session.id": f"session-{i % 100}",
        "user.id": f"user-{i % 30}",
    }


def benchmark_request(n_spans: int = 512, spans_per_trace: int = 8, seed: int = 0) -> bytes:
    """A protobuf body of `n_spans` OpenInference spans in traces of `spans_per_trace`."""
    spans = []
    trace_id = root_id = ""
    for i in range(n_spans):
        if i % spans_per_trace == 0:
            trace_id, root_id = new_trace_id(), new_span_id()
            spans.append(
                span(
                    trace_id=trace_id,
                    span_id=root_id,
                    name="agent.run",
                    start_ns=T0_NS + seed * 1000 * MS + i * MS,
                    duration_ms=200,
                    attributes={"openinference.span.kind": "AGENT", "input.value": f"q{i}"},
                )
            )
        else:
            spans.append(
                span(
                    trace_id=trace_id,
                    parent_span_id=root_id,
                    name="llm.chat",
                    start_ns=T0_NS + seed * 1000 * MS + i * MS,
                    duration_ms=50,
                    attributes=llm_span_attributes(i),
                    status=(1, ""),
                )
            )
    return export_request(({"service.name": "bench"}, spans)).SerializeToString()
