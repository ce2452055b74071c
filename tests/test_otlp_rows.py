"""Ingest's fast path stores exactly what the span-dict path before it stored.

Ingest used to decode each span into a dict (attributes as a dict, times as
aware datetimes), then build row tuples with json.dumps and Django's datetime
text. It now decodes straight into row tuples. `reference_rows` below is that
earlier path, kept verbatim as the specification; a payload with every kind of
attribute value, nested lists, events, odd times and bad ids goes through both,
and through a real POST, and every stored column must match.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from agentloop.teams.models import ProjectApiKey
from agentloop.traces import ingest, otlp
from agentloop.traces.attribute_index import attribute_tokens, tokens_at_ingest
from agentloop.traces.models import Span, Trace
from tests.asgi_client import asgi_request
from tests.otlp_payloads import MS, T0_NS, export_request, new_span_id, new_trace_id, span

pytest_plugins = ["tests.gateway_server"]  # served_db: ingest stores on its own thread

# --- the earlier span-dict path (the specification) -------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KINDS = {"LLM", "CHAIN", "TOOL", "AGENT", "RETRIEVER", "EMBEDDING", "RERANKER", "GUARDRAIL",
          "EVALUATOR", "UNKNOWN"}  # fmt: skip
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def ref_attributes(key_values) -> dict:
    out: dict = {}
    for kv in key_values:
        value = kv.value
        which = value.WhichOneof("value")
        if which == "kvlist_value":
            for sub_key, sub_value in ref_attributes(value.kvlist_value.values).items():
                out[f"{kv.key}.{sub_key}"] = sub_value
        else:
            out[kv.key] = ref_any_value(value, which)
    return out


def ref_any_value(value, which):
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [ref_any_value(v, v.WhichOneof("value")) for v in value.array_value.values]
    if which == "kvlist_value":
        return ref_attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def ref_datetime(nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def ref_short_text(value) -> str:
    return "" if value is None else str(value)[:200]


def ref_token_count(value):
    if isinstance(value, bool) or value is None:
        return None
    try:
        count = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return count if 0 <= count <= 2**31 - 1 else None


def ref_span_dict(s, resource: dict) -> dict:
    attrs = ref_attributes(s.attributes)
    kind = attrs.get("openinference.span.kind")
    kind = kind.upper() if isinstance(kind, str) else ""
    return {
        "trace_id": s.trace_id.hex(),
        "span_id": s.span_id.hex(),
        "parent_span_id": s.parent_span_id.hex(),
        "name": s.name[:500],
        "kind": kind if kind in _KINDS else "UNKNOWN",
        "status_code": _STATUS.get(s.status.code, "UNSET"),
        "status_message": s.status.message,
        "start_time": ref_datetime(s.start_time_unix_nano),
        "end_time": ref_datetime(s.end_time_unix_nano),
        "duration_ms": (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6,
        "attributes": attrs,
        "events": [
            {
                "name": e.name,
                "time": ref_datetime(e.time_unix_nano).isoformat(),
                "attributes": ref_attributes(e.attributes),
            }
            for e in s.events
        ],
        "resource": resource,
        "model_name": ref_short_text(attrs.get("llm.model_name")),
        "prompt_tokens": ref_token_count(attrs.get("llm.token_count.prompt")),
        "completion_tokens": ref_token_count(attrs.get("llm.token_count.completion")),
        "total_tokens": ref_token_count(attrs.get("llm.token_count.total")),
        "session_id": ref_short_text(attrs.get("session.id")),
        "user_id": ref_short_text(attrs.get("user.id")),
        # What the attribute index hashes, where ingest fills it (PostgreSQL;
        # SQLite's indexer fills it later; see test_attribute_index.py).
        "attribute_tokens": attribute_tokens(attrs) if tokens_at_ingest() else "",
    }


def ref_decode(request) -> tuple[list[dict], Counter]:
    spans, rejected = [], Counter()
    for rs in request.resource_spans:
        resource = ref_attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                if len(s.trace_id) != 16 or s.trace_id == bytes(16):
                    rejected["invalid trace id (must be 16 bytes, not all zero)"] += 1
                elif len(s.span_id) != 8 or s.span_id == bytes(8):
                    rejected["invalid span id (must be 8 bytes, not all zero)"] += 1
                elif s.parent_span_id and len(s.parent_span_id) != 8:
                    rejected["invalid parent span id (must be 8 bytes or empty)"] += 1
                elif not s.start_time_unix_nano:
                    rejected["span has no start time"] += 1
                elif s.end_time_unix_nano < s.start_time_unix_nano:
                    rejected["span ends before it starts (or has no end time)"] += 1
                else:
                    spans.append(ref_span_dict(s, resource))
    return spans, rejected


def ref_sqlite_datetime(value: datetime) -> str:
    # Django's SQLite backend: an aware datetime is stored as naive UTC str().
    return str(value.astimezone(UTC).replace(tzinfo=None))


def reference_rows(request) -> list[tuple]:
    """The row tuples the span-dict path inserted on SQLite (SPAN_FIELDS minus the
    project and created_at)."""
    spans, _ = ref_decode(request)
    return [
        (
            s["trace_id"],
            s["span_id"],
            s["parent_span_id"],
            s["name"],
            s["kind"],
            s["status_code"],
            s["status_message"],
            ref_sqlite_datetime(s["start_time"]),
            ref_sqlite_datetime(s["end_time"]),
            s["duration_ms"],
            json.dumps(s["attributes"]),
            json.dumps(s["events"]) if s["events"] else "[]",
            json.dumps(s["resource"]),
            s["model_name"],
            s["prompt_tokens"],
            s["completion_tokens"],
            s["total_tokens"],
            s["session_id"],
            s["user_id"],
            s["attribute_tokens"],
        )
        for s in spans
    ]


# --- a payload with everything in it ---------------------------------------------

WHOLE_SECOND_NS = (T0_NS // 10**9 + 7) * 10**9  # microseconds zero: no fraction in the text


def varied_request():
    trace_a, trace_b = new_trace_id(), new_trace_id()
    root_id = new_span_id()
    every_type = span(
        trace_id=trace_a,
        span_id=root_id,
        name="every type " + "n" * 600,  # cut to 500
        attributes={
            "openinference.span.kind": "llm",  # lower case: upper-cased
            "text": "plain",
            "empty text": "",
            # (Not NUL: PostgreSQL's jsonb refuses \u0000, on either path.)
            "unicode": 'héllo ☃ 😀 "quoted" back\\slash \n tab\t \x01 \u2028',
            "int": 42,
            "zero": 0,
            "negative": -7,
            "big": 2**62,
            "double": 0.1,
            "whole double": 3.0,
            "negative zero": -0.0,
            "tiny": 5e-324,
            "nan": float("nan"),
            "inf": float("inf"),
            "-inf": float("-inf"),
            "true": True,
            "false": False,
            "bytes": b"\x00\xff\x10",
            "empty bytes": b"",
            "array": ["a", 1, 2.5, True, b"\x01", float("nan"), ["nested"], {"k": "v"}],
            "empty array": [],
            "kv": {"a": 1, "b": {"c": "deep", "d": [1, 2]}, "e": {}},
            "empty kv": {},
            "llm.model_name": "m" * 300,  # cut to 200
            "llm.token_count.prompt": "12",  # a numeric string counts
            "llm.token_count.completion": 3.9,  # a float is truncated
            "llm.token_count.total": 2**31,  # too large for the column: None
            "session.id": 12345,  # not a string: its text
            "user.id": ["u", 1],  # a list: its text
        },
        status=(2, "boom ✗"),
        events=[
            ("exception", T0_NS + 5 * MS + 999, {"exception.type": "E", "n": 1.5, "x": [1]}),
            ("whole second", WHOLE_SECOND_NS, {}),
            ("epoch", 1, {"nested": {"k": b"\x02"}}),
        ],
    )
    # KeyValues the dict helper cannot make: an AnyValue with nothing set, repeated
    # keys (the last value wins, at the first key's place), a kvlist whose dotted
    # key repeats a flat one.
    every_type.attributes.add(key="unset")
    every_type.attributes.add(key="text", value=AnyValue(string_value="replaced"))
    every_type.attributes.add(key="kv.a", value=AnyValue(int_value=99))
    every_type.attributes.add(key="", value=AnyValue(string_value="empty key"))

    whole_second = span(
        trace_id=trace_a,
        parent_span_id=root_id,
        name="",
        start_ns=WHOLE_SECOND_NS,
        duration_ms=1000,  # ends on a whole second too
        attributes={"openinference.span.kind": "Agent", "llm.token_count.prompt": True},
        status=(1, ""),
    )
    sub_micro = span(
        trace_id=trace_b,
        name="sub-microsecond",
        start_ns=T0_NS + 123,  # nanoseconds below a microsecond are dropped
        duration_ms=0,
        attributes={"openinference.span.kind": 7, "llm.token_count.total": -1},
    )
    sub_micro.end_time_unix_nano = sub_micro.start_time_unix_nano + 999
    unknown_kind = span(
        trace_id=trace_b,
        name="unknown kind",
        start_ns=T0_NS - 10 * MS,  # earlier than the rest of trace b
        attributes={"openinference.span.kind": "planner", "llm.token_count.prompt": "x"},
        status=(5, "a status code OTLP does not define"),
    )
    bad = [
        span(trace_id="", raw_ids=(b"\x01" * 15, b"\x01" * 8)),  # short trace id
        span(trace_id="", raw_ids=(bytes(16), b"\x01" * 8)),  # zero trace id
        span(trace_id="", raw_ids=(b"\x01" * 16, bytes(8))),  # zero span id
        span(trace_id=new_trace_id(), parent_span_id="0102"),  # short parent id
        span(trace_id=new_trace_id(), start_ns=0),  # no start time
    ]
    ends_early = span(trace_id=new_trace_id())
    ends_early.end_time_unix_nano = ends_early.start_time_unix_nano - 1

    request = export_request(
        (
            {"service.name": "svc ☃", "deployment": {"env": "prod", "zone": 2}, "n": 1.25},
            [every_type, whole_second, *bad],
        ),
        ({}, [sub_micro, unknown_kind, ends_early]),
    )
    # A second scope in the first resource.
    request.resource_spans[0].scope_spans.add().spans.append(
        span(trace_id=trace_b, name="second scope", attributes={"input.value": "hi"})
    )
    return request


# --- decoding -------------------------------------------------------------------


def test_decoded_rows_are_the_span_dict_paths_rows():
    request = varied_request()

    decoded = otlp.decode_export(
        request.SerializeToString(), otlp.PROTOBUF, attribute_tokens=tokens_at_ingest()
    )

    rows = [row for group in decoded.resources for row in group.rows]
    expected = reference_rows(request)
    assert len(rows) == len(expected) == 5
    for row, want in zip(rows, expected, strict=True):
        assert dict(zip(otlp.SPAN_ROW_FIELDS, row, strict=True)) == dict(
            zip(otlp.SPAN_ROW_FIELDS, want, strict=True)
        )
    # Types too (1 == 1.0 == True would hide a change).
    assert [tuple(map(type, row)) for row in rows] == [tuple(map(type, r)) for r in expected]
    assert decoded.rejected == ref_decode(request)[1]
    assert sum(decoded.rejected.values()) == 6


def test_json_bodies_decode_to_the_same_rows():
    from tests.otlp_payloads import to_otlp_json

    request = varied_request()

    from_json = otlp.decode_export(
        to_otlp_json(request), otlp.JSON, attribute_tokens=tokens_at_ingest()
    )
    from_protobuf = otlp.decode_export(
        request.SerializeToString(), otlp.PROTOBUF, attribute_tokens=tokens_at_ingest()
    )

    assert [g.rows for g in from_json.resources] == [g.rows for g in from_protobuf.resources]


def test_a_few_spot_values_of_the_varied_payload():
    # Readable anchors next to the reference comparison above.
    decoded = otlp.decode_export(
        varied_request().SerializeToString(), otlp.PROTOBUF, attribute_tokens=tokens_at_ingest()
    )
    every_type, whole_second = decoded.resources[0].rows[:2]
    fields = dict(zip(otlp.SPAN_ROW_FIELDS, every_type, strict=True))
    attributes = json.loads(fields["attributes"])

    assert fields["kind"] == "LLM"
    assert len(fields["name"]) == 500
    assert fields["start_time"] == "2025-01-02 03:04:05.123456"
    assert (attributes["nan"], attributes["inf"], attributes["-inf"]) == ("nan", "inf", "-inf")
    assert attributes["bytes"] == "AP8Q"
    assert attributes["text"] == "replaced"
    assert list(attributes).index("text") == 1  # the first key's place
    assert attributes["kv.a"] == 99
    assert attributes["kv.b.c"] == "deep"
    assert attributes["unset"] is None
    assert (fields["prompt_tokens"], fields["completion_tokens"], fields["total_tokens"]) == (
        12,
        3,
        None,
    )
    assert json.loads(fields["events"])[1]["time"] == "2025-01-02T03:04:12+00:00"
    assert dict(zip(otlp.SPAN_ROW_FIELDS, whole_second, strict=True))["start_time"] == (
        "2025-01-02 03:04:12"
    )
    assert dict(zip(otlp.SPAN_ROW_FIELDS, whole_second, strict=True))["end_time"] == (
        "2025-01-02 03:04:13"
    )


# --- storing --------------------------------------------------------------------


@pytest.fixture
def api_key(project):
    return ProjectApiKey.mint(project, "rows")[1]


def test_stored_spans_match_the_span_dict_path(served_db, api_key, project):
    request = varied_request()
    expected, rejected = ref_decode(request)

    response = asgi_request(
        "POST",
        "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {api_key}"},
    )

    assert response.status_code == 200
    stored = {
        (s["trace_id"], s["span_id"]): s
        for s in Span.objects.filter(project=project).values(*ingest.SPAN_FIELDS[1:])
    }
    assert len(stored) == len(expected) == 5
    for want in expected:
        got = stored[(want["trace_id"], want["span_id"])]
        created_at = got.pop("created_at")
        assert created_at is not None
        # JSON columns read back as the values the dicts held (NaN as text).
        assert got == want
    # Trace bounds: the earliest start and latest end over each trace's spans.
    for trace in Trace.objects.filter(project=project):
        spans = [s for s in expected if s["trace_id"] == trace.trace_id]
        assert trace.start_time == min(s["start_time"] for s in spans)
        assert trace.end_time == max(s["end_time"] for s in spans)
    assert Trace.objects.filter(project=project).count() == 2


def test_sqlite_stores_the_same_text_as_the_span_dict_path(served_db, api_key, project):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite stores these columns as text; PostgreSQL as typed values")
    request = varied_request()

    asgi_request(
        "POST",
        "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {api_key}"},
    )

    # Django's SQLite connection parses columns declared datetime: read the text.
    columns = ", ".join(
        f"CAST({name} AS TEXT)" if name.endswith("_time") else name for name in otlp.SPAN_ROW_FIELDS
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM traces_span ORDER BY id")
        stored = [tuple(row) for row in cursor.fetchall()]
    want = reference_rows(request)
    for got_row, want_row in zip(stored, want, strict=True):
        for name, a, b in zip(otlp.SPAN_ROW_FIELDS, got_row, want_row, strict=True):
            assert (name, a) == (name, b)


def test_sqlite_time_text_sorts_like_the_times():
    # Trace bounds are computed on the decoded text: that is only right if the
    # text sorts like the times, with and without a fraction.
    seconds = {}
    nanos = sorted(
        [WHOLE_SECOND_NS, WHOLE_SECOND_NS + 1000, WHOLE_SECOND_NS - 1000, WHOLE_SECOND_NS + 10**9]
        + [T0_NS + i * 999_999_937 for i in range(50)]
    )
    texts = [otlp._utc_text(n, seconds) for n in nanos]

    assert texts == sorted(texts)
    assert texts == [ref_sqlite_datetime(ref_datetime(n)) for n in nanos]
