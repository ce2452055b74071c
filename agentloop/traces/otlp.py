"""Decode OTLP trace exports (protobuf or JSON) into span rows ready to insert.

A span row is a tuple of `Span`'s column values in SPAN_ROW_FIELDS order
(trace_id, span_id, …, user_id): times as UTC text, attributes, events and
resource as JSON text, exactly what the INSERT binds on SQLite. Decoding
straight into rows, with no span dict in between, took decoding and row
building from ~45 to ~18 µs per span (docs/benchmarks.md). Nothing here
touches the database: `ingest.py` decides where spans go and stores them.

The OTLP JSON mapping is the proto3 JSON mapping except that trace and span
ids are hex instead of base64, so JSON is decoded by rewriting the ids to
base64 and letting protobuf's own JSON parser do the rest. Both encodings then
share one path from the protobuf message to span rows.
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
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agentloop import safe_json
from agentloop.traces.attribute_index import attribute_tokens
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
    resource: dict  # the resource's attributes (ingest routes by project name)
    rows: list[tuple]  # one tuple per valid span, in SPAN_ROW_FIELDS order


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


def decode_export(body: bytes, content_type: str, *, attribute_tokens: bool) -> DecodedExport:
    """`attribute_tokens`: fill the rows' attribute_tokens (PostgreSQL indexes
    them as they are stored); otherwise "" (SQLite's indexer fills them later)."""
    if content_type == PROTOBUF:
        return _from_message(_parse_protobuf(body), attribute_tokens)
    if content_type == JSON:
        return _from_message(_parse_json(body), attribute_tokens)
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
        data = safe_json.loads(body)
    except safe_json.JsonError as exc:
        why = str(exc).rstrip(".")  # "The body is …" inside "Invalid OTLP trace export: …"
        raise OtlpDecodeError(why[0].lower() + why[1:]) from None
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


# --- message to span rows ---------------------------------------------------

# The columns of one decoded span, in the order of the INSERT's values (ingest
# adds project_id before them and created_at after). Start and end times are
# UTC text as Django's SQLite backend stores an aware datetime: naive
# "YYYY-MM-DD HH:MM:SS.ffffff", without the fraction when it is zero; that
# text sorts like the times themselves. attributes, events and resource are
# JSON text.
SPAN_ROW_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "status_code",
    "status_message",
    "start_time",
    "end_time",
    "duration_ms",
    "attributes",
    "events",
    "resource",
    "model_name",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "session_id",
    "user_id",
    "attribute_tokens",
)
# Positions ingest reads back (trace bounds).
ROW_TRACE_ID = SPAN_ROW_FIELDS.index("trace_id")
ROW_START = SPAN_ROW_FIELDS.index("start_time")
ROW_END = SPAN_ROW_FIELDS.index("end_time")

_UNKNOWN_KIND = SpanKind.UNKNOWN.value
_UNSET = StatusCode.UNSET.value
_KIND_ATTRIBUTE = "openinference.span.kind"
_EPOCH_NAIVE = datetime(1970, 1, 1)
_BAD_TRACE_ID = "invalid trace id (must be 16 bytes, not all zero)"
_BAD_SPAN_ID = "invalid span id (must be 8 bytes, not all zero)"
_BAD_PARENT_ID = "invalid parent span id (must be 8 bytes or empty)"
_NO_START = "span has no start time"
_ENDS_BEFORE_START = "span ends before it starts (or has no end time)"


def _from_message(request: ExportTraceServiceRequest, with_tokens: bool = False) -> DecodedExport:
    """Every valid span as a row tuple (SPAN_ROW_FIELDS); invalid ones counted by reason.

    This loop runs for every span (with the JSON encoding, a fifth of ingest's
    server CPU), so it reads each protobuf field once, inline, and writes the
    row tuple directly: no intermediate span dict, no datetime objects.
    """
    decoded = DecodedExport()
    rejected = decoded.rejected
    # Names bound once: each is used several times per span.
    encode = _encode_json
    to_dict = attributes_to_dict
    token_count = _token_count
    kinds = _KINDS
    statuses = _STATUS
    int32_max = _INT32_MAX
    # Spans of a batch start and end within a few seconds of each other: the
    # "YYYY-MM-DD HH:MM:SS" of a second is formatted once, not twice per span.
    seconds_text: dict[int, str] = {}
    for rs in request.resource_spans:
        resource = to_dict(rs.resource.attributes)
        resource_json = encode(resource)
        rows: list[tuple] = []
        append = rows.append
        for ss in rs.scope_spans:
            for span in ss.spans:
                trace_id = span.trace_id
                span_id = span.span_id
                parent_span_id = span.parent_span_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
                    rejected[_BAD_TRACE_ID] += 1
                    continue
                if len(span_id) != 8 or span_id == _ZERO_SPAN:
                    rejected[_BAD_SPAN_ID] += 1
                    continue
                if parent_span_id and len(parent_span_id) != 8:
                    rejected[_BAD_PARENT_ID] += 1
                    continue
                start_ns = span.start_time_unix_nano
                end_ns = span.end_time_unix_nano
                if not start_ns:
                    rejected[_NO_START] += 1
                    continue
                if end_ns < start_ns:
                    rejected[_ENDS_BEFORE_START] += 1
                    continue

                attrs = to_dict(span.attributes)
                get = attrs.get
                if type(get("metadata")) is str:
                    _spread_metadata(attrs)
                kind = get(_KIND_ATTRIBUTE)
                kind = kind.upper() if type(kind) is str else ""
                status = span.status
                events = span.events
                model_name = get("llm.model_name")
                session_id = get("session.id")
                user_id = get("user.id")
                # Token counts are nearly always ints in range (or absent): the
                # check is inlined and _token_count converts anything else.
                prompt = get("llm.token_count.prompt")
                if type(prompt) is not int or not 0 <= prompt <= int32_max:
                    prompt = token_count(prompt)
                completion = get("llm.token_count.completion")
                if type(completion) is not int or not 0 <= completion <= int32_max:
                    completion = token_count(completion)
                total = get("llm.token_count.total")
                if type(total) is not int or not 0 <= total <= int32_max:
                    total = token_count(total)
                # _utc_text inlined (two calls per span).
                seconds, micros = divmod(start_ns // 1000, 1_000_000)
                start = seconds_text.get(seconds)
                if start is None:
                    start = seconds_text[seconds] = str(_EPOCH_NAIVE + timedelta(seconds=seconds))
                if micros:
                    start = f"{start}.{micros:06d}"
                seconds, micros = divmod(end_ns // 1000, 1_000_000)
                end = seconds_text.get(seconds)
                if end is None:
                    end = seconds_text[seconds] = str(_EPOCH_NAIVE + timedelta(seconds=seconds))
                if micros:
                    end = f"{end}.{micros:06d}"
                append(
                    (
                        trace_id.hex(),
                        span_id.hex(),
                        parent_span_id.hex(),
                        span.name[:_NAME_MAX],
                        kind if kind in kinds else _UNKNOWN_KIND,
                        statuses.get(status.code, _UNSET),
                        status.message,
                        start,
                        end,
                        (end_ns - start_ns) / 1e6,
                        encode(attrs),
                        encode(_events(events)) if events else "[]",
                        resource_json,
                        "" if model_name is None else str(model_name)[:_SHORT_MAX],
                        prompt,
                        completion,
                        total,
                        "" if session_id is None else str(session_id)[:_SHORT_MAX],
                        "" if user_id is None else str(user_id)[:_SHORT_MAX],
                        attribute_tokens(attrs) if with_tokens else "",
                    )
                )
        decoded.resources.append(ResourceSpans(resource=resource, rows=rows))
    return decoded


def _spread_metadata(attrs: dict) -> None:
    """OpenInference sends `metadata` as a JSON string; an object is stored as
    dotted `metadata.<key>` attributes instead, as an OTLP kvlist would be, so
    `attr=metadata.tier=gold` filters on it. Anything else stays the string."""
    text = attrs["metadata"]
    if not text.startswith("{"):
        return
    try:
        parsed = json.loads(text)
    except ValueError:
        return
    if not isinstance(parsed, dict):
        return
    del attrs["metadata"]
    for key, value in _dotted(parsed, "metadata"):
        attrs.setdefault(key, value)  # an attribute sent as metadata.<key> wins


def _dotted(value: dict, prefix: str):
    for key, item in value.items():
        if isinstance(item, dict) and item:
            yield from _dotted(item, f"{prefix}.{key}")
        elif isinstance(item, float) and not math.isfinite(item):
            yield f"{prefix}.{key}", str(item)
        else:
            yield f"{prefix}.{key}", item


def _events(events) -> list[dict]:
    return [
        {
            "name": event.name,
            "time": nanos_to_datetime(event.time_unix_nano).isoformat(),
            "attributes": attributes_to_dict(event.attributes),
        }
        for event in events
    ]


def _utc_text(nanos: int, seconds_text: dict[int, str]) -> str:
    """str() of the naive UTC datetime at `nanos` (microseconds kept), i.e. what
    Django's SQLite backend stores; `seconds_text` caches the text of each second."""
    seconds, micros = divmod(nanos // 1000, 1_000_000)
    text = seconds_text.get(seconds)
    if text is None:
        text = seconds_text[seconds] = str(_EPOCH_NAIVE + timedelta(seconds=seconds))
    return f"{text}.{micros:06d}" if micros else text


def nanos_to_datetime(nanos: int) -> datetime:
    # Integer arithmetic: a float of nanoseconds since 1970 loses microseconds.
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def _token_count(value) -> int | None:
    if type(value) is int:  # nearly always: skip the conversions below (not bool: a subclass)
        return value if 0 <= value <= _INT32_MAX else None
    if isinstance(value, bool) or value is None:
        return None
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return count if 0 <= count <= _INT32_MAX else None


# json.dumps with its default options builds a new C encoder on every call; one
# built once gives the same text (same separators, ASCII escapes, float repr,
# NaN allowed) for less. No circular-reference check: decoded values are trees.
if json.encoder.c_make_encoder is not None:
    _c_encoder = json.encoder.c_make_encoder(
        None,  # markers: no circular check
        json.JSONEncoder().default,  # never reached: values are JSON types only
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ": ",
        ", ",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )

    def _encode_json(value) -> str:
        """json.dumps(value) for a dict or list."""
        return "".join(_c_encoder(value, 0))

else:  # pragma: no cover - CPython always has the _json accelerator
    _encode_json = json.dumps


_which_oneof = AnyValue.WhichOneof  # unbound: skips upb's look-up of a field of that name


def attributes_to_dict(key_values) -> dict:
    """OTLP KeyValues as a flat dict: nested kvlists become dotted keys, arrays lists."""
    out: dict = {}
    for kv in key_values:
        value = kv.value
        # Strings and ints first, read directly: they are nearly every attribute
        # of a real span, and this loop runs ~13 times per span on the ingest hot
        # path. A oneof holds one value, so a non-empty string_value (non-zero
        # int_value) is the one set; anything else asks WhichOneof.
        # (ListFields() instead measured slower.)
        text = value.string_value
        if text:
            out[kv.key] = text
            continue
        number = value.int_value
        if number:
            out[kv.key] = number
            continue
        which = _which_oneof(value, "value")
        if which == "kvlist_value":
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
        return [_any_value(v, _which_oneof(v, "value")) for v in value.array_value.values]
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
