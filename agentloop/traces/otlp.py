"""Decode OTLP trace exports (protobuf or JSON) into plain span dicts.

A span dict has the keys of `Span`'s columns (trace_id, span_id, …, user_id),
with `start_time`/`end_time` as aware UTC datetimes. Nothing here touches the
database: `ingest.py` decides where spans go and stores them.

The OTLP JSON mapping is the proto3 JSON mapping except that trace and span
ids are hex instead of base64, so JSON is decoded by rewriting the ids to
base64 and letting protobuf's own JSON parser do the rest. Both encodings then
share one path from the protobuf message to span dicts.
"""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agentloop.traces.models import SpanKind, StatusCode

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)

# Resource attribute that sends a resource's spans to another project of the key's space.
PROJECT_NAME_ATTRIBUTE = "openinference.project.name"

_KINDS = frozenset(SpanKind.values)
_STATUS = {0: StatusCode.UNSET.value, 1: StatusCode.OK.value, 2: StatusCode.ERROR.value}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32_MAX = 2**31 - 1
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)

# Column widths of Span: PostgreSQL refuses a longer value, which would fail the whole batch.
_NAME_MAX = 500
_SHORT_MAX = 200


class OtlpDecodeError(ValueError):
    """The body is not an OTLP trace export; the message says why."""


class BodyTooLarge(ValueError):
    pass


@dataclass
class ResourceSpans:
    resource: dict
    spans: list[dict]


@dataclass
class DecodedExport:
    resources: list[ResourceSpans] = field(default_factory=list)
    # Why spans were refused while decoding (e.g. bad ids), reason -> count.
    rejected: Counter = field(default_factory=Counter)


# --- bodies -----------------------------------------------------------------


def gunzip_bounded(data: bytes, limit: int, chunk: int = 64 * 1024) -> bytes:
    """Decompress gzip data, refusing (BodyTooLarge) to produce more than `limit` bytes.

    Inflates at most `chunk` bytes per step, so a small gzip bomb is stopped as
    soon as it passes the limit instead of expanding in memory first.
    """
    out = bytearray()
    pending = data
    try:
        while pending:  # concatenated gzip members are one valid gzip body
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            while not inflater.eof:
                piece = inflater.decompress(pending, chunk)
                out += piece
                if len(out) > limit:
                    raise BodyTooLarge(f"the decompressed body is larger than {limit} bytes")
                pending = inflater.unconsumed_tail
                if not piece and not pending:
                    raise OtlpDecodeError("the gzip body is truncated")
            pending = inflater.unused_data
    except zlib.error as exc:
        raise OtlpDecodeError(f"the body is not valid gzip ({exc})") from None
    return bytes(out)


def decode_export(body: bytes, content_type: str) -> DecodedExport:
    if content_type == PROTOBUF:
        return _from_message(_parse_protobuf(body))
    if content_type == JSON:
        return _from_message(_parse_json(body))
    raise ValueError(f"unsupported content type {content_type}")


def _parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(
            f"the body is not a protobuf ExportTraceServiceRequest ({exc})"
        ) from None


def _parse_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpDecodeError(f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError("the body must be a JSON object with a 'resourceSpans' list")
    _hex_ids_to_base64(data)
    try:
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpDecodeError(
            f"the body is not an OTLP JSON trace export ({_readable_parse_error(exc)})"
        ) from None


_FIELD_CHAIN = re.compile(r"(?:Failed to parse (\w+) field: )")


def _readable_parse_error(exc: Exception) -> str:
    """protobuf's "Failed to parse a field: Failed to parse b field: why" as "a.b: why"."""
    text = str(exc)
    path = _FIELD_CHAIN.findall(text)
    reason = _FIELD_CHAIN.sub("", text).rstrip(".")
    return f"{'.'.join(path)}: {reason}" if path else reason


def _hex_ids_to_base64(data: dict) -> None:
    """Rewrite OTLP JSON's hex ids into the base64 that the proto3 JSON parser expects.

    An id that is not hex becomes empty, so that span is refused by the id check
    (partial success) instead of failing the whole request.
    """
    for rs in _objects(data.get("resourceSpans")):
        for ss in _objects(rs.get("scopeSpans")):
            for span in _objects(ss.get("spans")):
                _rewrite_ids(span, ("traceId", "spanId", "parentSpanId"))
                for link in _objects(span.get("links")):
                    _rewrite_ids(link, ("traceId", "spanId"))


def _objects(value) -> list:
    # Leave anything malformed to the protobuf parser, which says what is wrong.
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def _rewrite_ids(obj: dict, names: tuple[str, ...]) -> None:
    for name in names:
        value = obj.get(name)
        if isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raw = b"\xff"  # wrong length on purpose: refused as an invalid id
            obj[name] = base64.b64encode(raw).decode()


# --- message to span dicts --------------------------------------------------


def _from_message(request: ExportTraceServiceRequest) -> DecodedExport:
    decoded = DecodedExport()
    for rs in request.resource_spans:
        resource = attributes_to_dict(rs.resource.attributes)
        spans: list[dict] = []
        for ss in rs.scope_spans:
            for span in ss.spans:
                problem = _id_problem(span)
                if problem:
                    decoded.rejected[problem] += 1
                    continue
                if not span.start_time_unix_nano:
                    decoded.rejected["span has no start time"] += 1
                    continue
                if span.end_time_unix_nano < span.start_time_unix_nano:
                    decoded.rejected["span ends before it starts (or has no end time)"] += 1
                    continue
                spans.append(_span_dict(span, resource))
        decoded.resources.append(ResourceSpans(resource=resource, spans=spans))
    return decoded


def _id_problem(span) -> str | None:
    if len(span.trace_id) != 16 or span.trace_id == _ZERO_TRACE:
        return "invalid trace id (must be 16 bytes, not all zero)"
    if len(span.span_id) != 8 or span.span_id == _ZERO_SPAN:
        return "invalid span id (must be 8 bytes, not all zero)"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "invalid parent span id (must be 8 bytes or empty)"
    return None


def _span_dict(span, resource: dict) -> dict:
    attrs = attributes_to_dict(span.attributes)
    start_ns = span.start_time_unix_nano
    end_ns = span.end_time_unix_nano
    kind = attrs.get("openinference.span.kind")
    kind = kind.upper() if isinstance(kind, str) else ""
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name[:_NAME_MAX],
        "kind": kind if kind in _KINDS else SpanKind.UNKNOWN.value,
        "status_code": _STATUS.get(span.status.code, StatusCode.UNSET.value),
        "status_message": span.status.message,
        "start_time": nanos_to_datetime(start_ns),
        "end_time": nanos_to_datetime(end_ns),
        "duration_ms": (end_ns - start_ns) / 1e6,
        "attributes": attrs,
        "events": [
            {
                "name": event.name,
                "time": nanos_to_datetime(event.time_unix_nano).isoformat(),
                "attributes": attributes_to_dict(event.attributes),
            }
            for event in span.events
        ],
        "resource": resource,
        "model_name": _short_text(attrs.get("llm.model_name")),
        "prompt_tokens": _token_count(attrs.get("llm.token_count.prompt")),
        "completion_tokens": _token_count(attrs.get("llm.token_count.completion")),
        "total_tokens": _token_count(attrs.get("llm.token_count.total")),
        "session_id": _short_text(attrs.get("session.id")),
        "user_id": _short_text(attrs.get("user.id")),
    }


def nanos_to_datetime(nanos: int) -> datetime:
    # Integer arithmetic: a float of nanoseconds since 1970 loses microseconds.
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def _short_text(value) -> str:
    if value is None:
        return ""
    return str(value)[:_SHORT_MAX]


def _token_count(value) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return count if 0 <= count <= _INT32_MAX else None


def attributes_to_dict(key_values) -> dict:
    """OTLP KeyValues as a flat dict: nested kvlists become dotted keys, arrays lists."""
    out: dict = {}
    for kv in key_values:
        value = kv.value
        which = value.WhichOneof("value")
        # Strings and ints first, inline: they are nearly every attribute of a
        # real span, and this loop runs ~10 times per span on the ingest hot path.
        # (ListFields() instead of WhichOneof + getattr measured slower.)
        if which == "string_value":
            out[kv.key] = value.string_value
        elif which == "int_value":
            out[kv.key] = value.int_value
        elif which == "kvlist_value":
            for sub_key, sub_value in attributes_to_dict(value.kvlist_value.values).items():
                out[f"{kv.key}.{sub_key}"] = sub_value
        else:
            out[kv.key] = _any_value(value, which)
    return out


def _any_value(value, which: str | None):
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        # NaN and infinities are not JSON (PostgreSQL's jsonb refuses them).
        return number if math.isfinite(number) else str(number)
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [_any_value(v, v.WhichOneof("value")) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_to_dict(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


# --- responses --------------------------------------------------------------


def export_response(rejected: Counter, content_type: str) -> bytes:
    """ExportTraceServiceResponse in the request's encoding, with partial success if any."""
    message = ExportTraceServiceResponse()
    if rejected:
        message.partial_success.CopyFrom(
            ExportTracePartialSuccess(
                rejected_spans=sum(rejected.values()),
                error_message=describe_rejections(rejected),
            )
        )
    if content_type == PROTOBUF:
        return message.SerializeToString()
    body: dict = {}
    if rejected:
        body["partialSuccess"] = {
            # int64 as a string, per the proto3 JSON mapping.
            "rejectedSpans": str(message.partial_success.rejected_spans),
            "errorMessage": message.partial_success.error_message,
        }
    return json.dumps(body).encode()


def describe_rejections(rejected: Counter) -> str:
    parts = [
        f"{count} span{'s' if count != 1 else ''}: {reason}"
        for reason, count in sorted(rejected.items())
    ]
    return "Rejected " + "; ".join(parts)


# google.rpc.Status codes used in error bodies.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNAUTHENTICATED = 16


def status_body(code: int, message: str, content_type: str) -> bytes:
    """A google.rpc.Status, the OTLP error body, in the request's encoding."""
    if content_type == PROTOBUF:
        return _encode_status(code, message)
    return json.dumps({"code": code, "message": message}).encode()


def _encode_status(code: int, message: str) -> bytes:
    # google.rpc.Status is two fields (code=1 varint, message=2 string); encoded by
    # hand so the server needs no googleapis-common-protos for one tiny message.
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
