"""POST /v1/traces: the OTLP/HTTP trace receiver (protobuf and JSON).

Sent into agentloop.asgi.application, which serves this path with
agentloop/traces/ingest_app.py (there is no Django view of it); the spans are
stored on its database thread, so these tests commit their data (`served_db`).
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agentloop.teams.models import ApiKeyRefusal, Project, ProjectApiKey
from agentloop.traces import ingest, otlp
from agentloop.traces.models import Span, Trace
from tests.asgi_client import asgi_request
from tests.otlp_payloads import (
    MS,
    T0_NS,
    export_request,
    new_span_id,
    new_trace_id,
    span,
    to_otlp_json,
)

pytest_plugins = ["tests.gateway_server"]  # served_db

URL = "/v1/traces"
PB = "application/x-protobuf"
JSON = "application/json"
T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.fixture
def api_key(project):
    key, raw = ProjectApiKey.mint(project, "ingest")
    return raw


@pytest.fixture
def post(api_key, served_db):
    def send(body: bytes, content_type: str = PB, key: str | None = "default", headers=None):
        headers = {"content-type": content_type, **(headers or {})}
        if key == "default":
            key = api_key
        if key is not None:
            headers.setdefault("authorization", f"Bearer {key}")
        return asgi_request("POST", URL, content=body, headers=headers)

    return send


def agent_trace():
    """A root AGENT span and a failing LLM child with an exception event."""
    trace_id, root_id, llm_id = new_trace_id(), new_span_id(), new_span_id()
    root = span(
        trace_id=trace_id,
        span_id=root_id,
        name="support.answer",
        duration_ms=250,
        attributes={"openinference.span.kind": "AGENT", "input.value": "Where is my order?"},
        status=(1, ""),
    )
    llm = span(
        trace_id=trace_id,
        span_id=llm_id,
        parent_span_id=root_id,
        name="ChatCompletion",
        start_ns=T0_NS + 20 * MS,
        duration_ms=120.5,
        attributes={
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 120,
            "llm.token_count.completion": 40,
            "llm.token_count.total": 160,
            "llm.input_messages.0.message.role": "user",
            "session.id": "sess-1",
            "user.id": "user-7",
            "tag.tags": ["billing", "urgent"],
            "metadata": {"tier": "gold", "retries": 2},
            "llm.temperature": 0.25,
            "llm.stream": False,
        },
        status=(2, "rate limited"),
        events=[
            (
                "exception",
                T0_NS + 100 * MS,
                {"exception.type": "RateLimitError", "exception.message": "429 Too Many Requests"},
            )
        ],
    )
    request = export_request(({"service.name": "support-bot", "deployment": "prod"}, [root, llm]))
    return request, trace_id, root_id, llm_id


def assert_agent_trace_stored(project, trace_id, root_id, llm_id):
    root = Span.objects.get(project=project, trace_id=trace_id, span_id=root_id)
    llm = Span.objects.get(project=project, trace_id=trace_id, span_id=llm_id)

    assert root.name == "support.answer"
    assert root.kind == "AGENT"
    assert root.parent_span_id == ""
    assert root.status_code == "OK"
    assert root.start_time == T0
    assert root.end_time == T0 + timedelta(milliseconds=250)
    assert root.input_value == "Where is my order?"

    assert llm.parent_span_id == root_id
    assert llm.kind == "LLM"
    assert llm.status_code == "ERROR"
    assert llm.status_message == "rate limited"
    assert llm.start_time == T0 + timedelta(milliseconds=20)
    assert llm.duration_ms == pytest.approx(120.5)
    assert llm.model_name == "gpt-4o-mini"
    assert (llm.prompt_tokens, llm.completion_tokens, llm.total_tokens) == (120, 40, 160)
    assert (llm.session_id, llm.user_id) == ("sess-1", "user-7")
    assert llm.attributes == {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.token_count.prompt": 120,
        "llm.token_count.completion": 40,
        "llm.token_count.total": 160,
        "llm.input_messages.0.message.role": "user",
        "session.id": "sess-1",
        "user.id": "user-7",
        "tag.tags": ["billing", "urgent"],
        "metadata.tier": "gold",
        "metadata.retries": 2,
        "llm.temperature": 0.25,
        "llm.stream": False,
    }
    assert llm.events == [
        {
            "name": "exception",
            "time": "2025-01-02T03:04:05.223456+00:00",
            "attributes": {
                "exception.type": "RateLimitError",
                "exception.message": "429 Too Many Requests",
            },
        }
    ]
    assert llm.resource == {"service.name": "support-bot", "deployment": "prod"}

    trace = Trace.objects.get(project=project, trace_id=trace_id)
    assert trace.start_time == T0
    assert trace.end_time == T0 + timedelta(milliseconds=250)


# --- round trips --------------------------------------------------------------


def test_it_stores_protobuf_spans_and_answers_in_protobuf(post, project):
    request, trace_id, root_id, llm_id = agent_trace()

    response = post(request.SerializeToString())

    assert response.status_code == 200
    assert response.headers["content-type"] == PB
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")
    assert_agent_trace_stored(project, trace_id, root_id, llm_id)


def test_it_stores_json_spans_and_answers_in_json(post, project):
    request, trace_id, root_id, llm_id = agent_trace()

    response = post(to_otlp_json(request), content_type=JSON)

    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.json() == {}
    assert_agent_trace_stored(project, trace_id, root_id, llm_id)


def test_it_reads_hand_written_otlp_json(post, project):
    # As another SDK would write it: int64 as strings and as numbers, upper-case
    # hex, AnyValue objects, a charset in the content type.
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js-app"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "",
                                "name": "retrieve",
                                "kind": 1,
                                "startTimeUnixNano": "1735787045123456000",
                                "endTimeUnixNano": 1735787045173456000,
                                "attributes": [
                                    {
                                        "key": "openinference.span.kind",
                                        "value": {"stringValue": "RETRIEVER"},
                                    },
                                    {
                                        "key": "retrieval.documents.0.document.score",
                                        "value": {"doubleValue": 0.5},
                                    },
                                    {"key": "retrieval.top_k", "value": {"intValue": "3"}},
                                    {"key": "llm.token_count.total", "value": {"intValue": 42}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                    {
                                        "key": "ids",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"intValue": "1"}, {"stringValue": "b"}]
                                            }
                                        },
                                    },
                                ],
                                "status": {"code": 2, "message": "timeout"},
                            }
                        ],
                    }
                ],
            }
        ]
    }

    response = post(json.dumps(body).encode(), content_type="application/json; charset=utf-8")

    assert response.status_code == 200, response.content
    stored = Span.objects.get(project=project)
    assert stored.trace_id == "5b8efff798038103d269b633813fc60c"
    assert stored.span_id == "eee19b7ec3c1b174"
    assert stored.kind == "RETRIEVER"
    assert stored.status_code == "ERROR"
    assert stored.status_message == "timeout"
    assert stored.start_time == T0
    assert stored.duration_ms == pytest.approx(50)
    assert stored.total_tokens == 42
    assert stored.attributes == {
        "openinference.span.kind": "RETRIEVER",
        "retrieval.documents.0.document.score": 0.5,
        "retrieval.top_k": 3,
        "llm.token_count.total": 42,
        "ok": True,
        "ids": [1, "b"],
    }
    assert stored.resource == {"service.name": "js-app"}


@pytest.mark.parametrize("content_type", [PB, JSON])
def test_it_accepts_gzip_bodies(post, project, content_type):
    request, trace_id, root_id, llm_id = agent_trace()
    body = request.SerializeToString() if content_type == PB else to_otlp_json(request)

    response = post(
        gzip.compress(body), content_type=content_type, headers={"content-encoding": "gzip"}
    )

    assert response.status_code == 200
    assert_agent_trace_stored(project, trace_id, root_id, llm_id)


# Both spellings: the 401 answer asks for "an `api_key` header"; HTTP clients often send api-key.
@pytest.mark.parametrize("header", ["api-key", "api_key"])
def test_it_accepts_the_api_key_header(post, project, api_key, header):
    request, trace_id, root_id, llm_id = agent_trace()

    response = post(request.SerializeToString(), key=None, headers={header: api_key})

    assert response.status_code == 200
    assert Span.objects.filter(project=project).count() == 2


def test_unknown_span_kinds_become_unknown(post, project):
    trace_id = new_trace_id()
    spans = [
        span(trace_id=trace_id, name="a", attributes={"openinference.span.kind": "WIZARD"}),
        span(trace_id=trace_id, name="b"),
        span(trace_id=trace_id, name="c", attributes={"openinference.span.kind": "tool"}),
    ]

    post(export_request(({}, spans)).SerializeToString())

    kinds = dict(Span.objects.filter(project=project).values_list("name", "kind"))
    assert kinds == {"a": "UNKNOWN", "b": "UNKNOWN", "c": "TOOL"}


def test_it_marks_the_key_as_used(post, project, api_key):
    request, *_ = agent_trace()

    post(request.SerializeToString())

    key = ProjectApiKey.objects.get(project=project)
    assert key.last_used_at is not None
    assert timezone.now() - key.last_used_at < timedelta(minutes=1)


# --- idempotence and trace bounds ----------------------------------------------


def test_a_resent_export_is_not_duplicated(post, project):
    request, trace_id, *_ = agent_trace()
    body = request.SerializeToString()

    assert post(body).status_code == 200
    assert post(body).status_code == 200

    assert Span.objects.filter(project=project).count() == 2
    assert Trace.objects.filter(project=project, trace_id=trace_id).count() == 1


def test_trace_bounds_grow_across_batches(post, project):
    trace_id, root_id = new_trace_id(), new_span_id()
    child = span(
        trace_id=trace_id, parent_span_id=root_id, start_ns=T0_NS + 50 * MS, duration_ms=10
    )
    root = span(trace_id=trace_id, span_id=root_id, start_ns=T0_NS, duration_ms=30)
    late = span(trace_id=trace_id, parent_span_id=root_id, start_ns=T0_NS + 100 * MS, duration_ms=5)

    for batch in ([child], [root], [late]):
        assert post(export_request(({}, batch)).SerializeToString()).status_code == 200

    trace = Trace.objects.get(project=project, trace_id=trace_id)
    assert trace.start_time == T0
    assert trace.end_time == T0 + timedelta(milliseconds=105)
    assert trace.spans.count() == 3


# --- partial success -------------------------------------------------------------


def test_spans_with_invalid_ids_are_rejected_by_partial_success(post, project):
    trace_id = new_trace_id()
    good = span(trace_id=trace_id, name="good")
    zero_trace = span(trace_id="", name="zero", raw_ids=(bytes(16), bytes.fromhex(new_span_id())))
    short_span = span(trace_id="", name="short", raw_ids=(bytes.fromhex(trace_id), b"\x01\x02"))

    response = post(export_request(({}, [good, zero_trace, short_span])).SerializeToString())

    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 2
    assert answer.partial_success.error_message == (
        "Rejected 1 span: invalid span id (must be 8 bytes, not all zero); "
        "1 span: invalid trace id (must be 16 bytes, not all zero)"
    )
    assert list(Span.objects.filter(project=project).values_list("name", flat=True)) == ["good"]


def test_json_partial_success_for_a_bad_hex_id(post, project):
    request, *_ = agent_trace()
    data = json.loads(to_otlp_json(request))
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["spanId"] = "not-hex!"

    response = post(json.dumps(data).encode(), content_type=JSON)

    assert response.status_code == 200
    assert response.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "Rejected 1 span: invalid span id (must be 8 bytes, not all zero)",
        }
    }
    assert list(Span.objects.filter(project=project).values_list("name", flat=True)) == [
        "support.answer"
    ]


def test_spans_that_end_before_they_start_are_rejected(post, project):
    bad = span(trace_id=new_trace_id(), name="bad")
    bad.end_time_unix_nano = 0  # an unended span

    response = post(export_request(({}, [bad])).SerializeToString())

    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "ends before it starts" in answer.partial_success.error_message
    assert not Span.objects.exists()
    assert not Trace.objects.exists()


# --- project routing -----------------------------------------------------------------


def test_a_resource_can_name_another_project_of_the_same_space(post, project, space):
    evals = Project.objects.create(space=space, name="support-bot-evals")
    trace_id = new_trace_id()
    own = span(trace_id=trace_id, name="own")
    routed = span(trace_id=new_trace_id(), name="routed")
    named_own = span(trace_id=trace_id, name="named-own")

    response = post(
        export_request(
            ({}, [own]),
            ({"openinference.project.name": "support-bot-evals"}, [routed]),
            ({"openinference.project.name": "support-bot"}, [named_own]),
        ).SerializeToString()
    )

    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert sorted(Span.objects.filter(project=project).values_list("name", flat=True)) == [
        "named-own",
        "own",
    ]
    assert list(Span.objects.filter(project=evals).values_list("name", flat=True)) == ["routed"]
    assert Trace.objects.filter(project=evals).count() == 1


def test_another_spaces_project_is_not_reachable_by_name(post, project, space, other_project):
    # The name creates a project of that name in the key's own space instead.
    response = post(
        export_request(
            ({}, [span(trace_id=new_trace_id(), name="own")]),
            ({"openinference.project.name": "other-bot"}, [span(trace_id=new_trace_id())]),
        ).SerializeToString()
    )

    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert not Span.objects.filter(project=other_project).exists()
    assert not Trace.objects.filter(project=other_project).exists()
    created = Project.objects.get(space=space, name="other-bot")
    assert Span.objects.filter(project=created).count() == 1
    assert list(Span.objects.filter(project=project).values_list("name", flat=True)) == ["own"]


def test_the_worker_project_is_not_reachable_by_name(post, project, space):
    # The space's worker project holds the runs' own traces; an app's key must
    # not forge spans into them by naming it: the name makes a project of its own.
    worker = space.worker_project()

    response = post(
        export_request(
            ({"openinference.project.name": worker.name}, [span(trace_id=new_trace_id())]),
        ).SerializeToString()
    )

    assert response.status_code == 200
    assert not Span.objects.filter(project=worker).exists()
    namesake = Project.objects.get(space=space, name=worker.name, internal=False)
    assert Span.objects.filter(project=namesake).count() == 1


def test_an_unknown_project_name_creates_the_project_in_the_keys_space(post, project, space):
    # phoenix.otel.register() without a project name sends "default".
    spans = [span(trace_id=new_trace_id()) for _ in range(3)]

    response = post(
        to_otlp_json(export_request(({"openinference.project.name": "default"}, spans))),
        content_type=JSON,
    )

    assert response.status_code == 200
    assert response.json() == {}
    created = Project.objects.get(space=space, name="default")
    assert created.internal is False
    assert Span.objects.filter(project=created).count() == 3
    assert Trace.objects.filter(project=created).count() == 3
    assert not ApiKeyRefusal.objects.exists()

    # A second export finds it instead of creating another.
    again = span(trace_id=new_trace_id())
    post(export_request(({"openinference.project.name": "default"}, [again])).SerializeToString())
    assert Project.objects.filter(space=space, name="default").count() == 1
    assert Span.objects.filter(project=created).count() == 4


def test_a_space_that_refuses_unknown_names_counts_the_refusal_per_key(post, project, space):
    space.refuse_unknown_projects = True
    space.save()
    spans = [span(trace_id=new_trace_id()) for _ in range(3)]

    for _ in range(2):
        response = post(
            to_otlp_json(export_request(({"openinference.project.name": "typo-bot"}, spans))),
            content_type=JSON,
        )
        assert response.status_code == 200

    reason = "no project named 'typo-bot' in this space, which refuses unknown project names"
    assert response.json()["partialSuccess"] == {
        "rejectedSpans": "3",
        "errorMessage": f"Rejected 3 spans: {reason}",
    }
    assert not Span.objects.exists()
    assert not Project.objects.filter(name="typo-bot").exists()
    [refusal] = ApiKeyRefusal.objects.all()
    assert refusal.key.project == project
    assert (refusal.reason, refusal.spans, refusal.exports) == (reason, 6, 2)


def test_a_name_too_long_for_a_project_is_refused(post, project, space):
    response = post(
        export_request(
            ({"openinference.project.name": "x" * 201}, [span(trace_id=new_trace_id())])
        ).SerializeToString()
    )

    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.error_message == (
        "Rejected 1 span: project name longer than 200 characters"
    )
    assert Project.objects.filter(space=space).count() == 1


def test_a_whole_refused_export_is_counted_for_its_key(post, project):
    post(b"\x0a\x05nope", content_type=PB)
    post(b"{}", content_type="text/plain")

    refusals = dict(ApiKeyRefusal.objects.values_list("reason", "exports"))
    assert refusals == {
        "whole export refused: not a valid OTLP trace export": 1,
        "whole export refused: unsupported Content-Type": 1,
    }


# --- refused requests ----------------------------------------------------------------


def rpc_status(response) -> RpcStatus:
    return RpcStatus.FromString(response.content)


def test_it_refuses_other_content_types(post):
    request, *_ = agent_trace()

    response = post(request.SerializeToString(), content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["message"] == (
        "Unsupported Content-Type 'text/plain': send application/x-protobuf or application/json."
    )
    assert not Span.objects.exists()


def test_it_refuses_other_content_encodings(post):
    request, *_ = agent_trace()

    response = post(request.SerializeToString(), headers={"content-encoding": "br"})

    assert response.status_code == 415
    assert (
        rpc_status(response).message
        == "Unsupported Content-Encoding 'br': send gzip or no encoding."
    )
    assert not Span.objects.exists()


def test_it_refuses_an_undecodable_protobuf_body(post):
    response = post(b"\xff\xff\xff not protobuf")

    assert response.status_code == 400
    assert response.headers["content-type"] == PB
    status = rpc_status(response)
    assert status.code == 3  # INVALID_ARGUMENT
    assert status.message.startswith(
        "Invalid OTLP trace export: the body is not a protobuf ExportTraceServiceRequest"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Invalid OTLP trace export: the body is not valid JSON"),
        (b"[1, 2]", "Invalid OTLP trace export: the body must be a JSON object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            "Invalid OTLP trace export: the body is not an OTLP JSON trace export "
            "(resourceSpans.scopeSpans.spans.startTimeUnixNano: "
            "invalid literal for int() with base 10: 'soon').",
        ),
    ],
)
def test_it_refuses_an_undecodable_json_body(post, body, message):
    response = post(body, content_type=JSON)

    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert response.json()["message"].startswith(message)


def test_it_refuses_a_body_that_is_not_gzip(post):
    request, *_ = agent_trace()

    response = post(request.SerializeToString(), headers={"content-encoding": "gzip"})

    assert response.status_code == 400
    assert rpc_status(response).message.startswith(
        "Invalid OTLP trace export: the body is not valid gzip"
    )


def test_it_refuses_a_truncated_gzip_body(post):
    request, *_ = agent_trace()
    body = gzip.compress(request.SerializeToString())[:-12]

    response = post(body, headers={"content-encoding": "gzip"})

    assert response.status_code == 400
    assert rpc_status(response).message == "Invalid OTLP trace export: the gzip body is truncated."
    assert not Span.objects.exists()


def test_it_refuses_a_body_over_the_limit(post, settings):
    settings.OTLP_MAX_BODY_BYTES = 1000
    spans = [span(trace_id=new_trace_id(), name="x" * 100) for _ in range(20)]
    body = export_request(({}, spans)).SerializeToString()
    assert len(body) > 1000

    response = post(body)

    assert response.status_code == 413
    assert rpc_status(response).message == (
        "Request too large: the body is larger than 1000 bytes."
    )
    assert not Span.objects.exists()


def test_it_refuses_a_gzip_bomb(post, settings):
    settings.OTLP_MAX_BODY_BYTES = 1_000_000
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)
    assert len(bomb) < 100_000

    response = post(bomb, headers={"content-encoding": "gzip"})

    assert response.status_code == 413
    assert rpc_status(response).message == (
        "Request too large: the decompressed body is larger than 1000000 bytes."
    )
    assert not Span.objects.exists()


def test_gzip_is_inflated_in_bounded_steps():
    bomb = gzip.compress(b"\0" * 20_000_000, compresslevel=9)

    tracemalloc.start()
    try:
        with pytest.raises(otlp.BodyTooLarge):
            otlp.gunzip_bounded(bomb, limit=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # The limit plus a chunk or two, never the 20 MB the bomb expands to.
    assert peak < 3_000_000


@pytest.mark.parametrize(
    ("key", "headers", "message"),
    [
        (
            None,
            {},
            "Send a project API key: `Authorization: Bearer al_pk_…` or an `api_key` header.",
        ),
        ("al_pk_not-a-real-key", {}, "Unknown or revoked API key."),
        (None, {"authorization": "Basic YWxpY2U6cHc="}, "Send a project API key"),
    ],
)
def test_it_refuses_requests_without_a_valid_key(post, key, headers, message):
    request, *_ = agent_trace()

    response = post(request.SerializeToString(), key=key, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="agentloop"'
    assert rpc_status(response).message.startswith(message)
    assert not Span.objects.exists()


def test_it_refuses_a_revoked_key(post, project, api_key):
    ProjectApiKey.objects.get(project=project).revoke()
    request, *_ = agent_trace()

    response = post(request.SerializeToString())

    assert response.status_code == 401
    assert rpc_status(response).message == "Unknown or revoked API key."
    assert not Span.objects.exists()


def test_it_only_accepts_post(api_key, served_db):
    response = asgi_request("GET", URL, headers={"authorization": f"Bearer {api_key}"})

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


# --- nothing half-written ----------------------------------------------------------------


def test_a_body_malformed_after_valid_spans_stores_nothing(post):
    request, *_ = agent_trace()
    data = json.loads(to_otlp_json(request))
    data["resourceSpans"].append({"scopeSpans": [{"spans": [{"endTimeUnixNano": {"a": 1}}]}]})

    response = post(json.dumps(data).encode(), content_type=JSON)

    assert response.status_code == 400
    assert not Span.objects.exists()
    assert not Trace.objects.exists()


def test_a_failure_while_storing_stores_nothing(post, monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest, "_upsert_traces", fail)
    request, *_ = agent_trace()

    response = post(request.SerializeToString())

    # The exporter is told to retry; the error itself goes to the log.
    assert response.status_code == 500
    assert response.json() == {"code": 13, "message": "Storing the spans failed."}
    assert "disk full" in caplog.text

    # The spans were inserted before the failure, in the same transaction.
    assert not Span.objects.exists()
    assert not Trace.objects.exists()


def test_values_json_cannot_hold_are_stored_as_text(post, project):
    nameless = span(
        trace_id=new_trace_id(),
        attributes={"score": float("nan"), "limit": float("inf"), "blob": b"\x00\xff"},
    )
    nameless.attributes.add(key="empty")  # an AnyValue with nothing set

    assert post(export_request(({}, [nameless])).SerializeToString()).status_code == 200

    assert Span.objects.get(project=project).attributes == {
        "score": "nan",
        "limit": "inf",
        "blob": "AP8=",
        "empty": None,
    }


def test_a_nul_character_is_stored_as_the_replacement_character(post, project):
    """PostgreSQL text cannot hold NUL (nor jsonb the \\u0000 escape): such a span must
    not cost the batch. SQLite stores NUL as it came; PostgreSQL gets U+FFFD."""
    trace_id = new_trace_id()
    spans = [
        span(
            trace_id=trace_id,
            name="tool\x00call",
            status=(2, "broke\x00here"),
            attributes={
                "output.value": "binary\x00leak",
                "odd\x00key": 1,
                "literal": "a\\u0000b",  # a backslash, then the letters u0000: kept as is
            },
        ),
        span(trace_id=trace_id, name="clean"),
    ]
    response = post(export_request(({"service.name": "shop"}, spans)).SerializeToString())
    assert response.status_code == 200
    stored = Span.objects.get(project=project, name__startswith="tool")
    nul = "\x00" if connection.vendor == "sqlite" else "\ufffd"
    assert stored.name == f"tool{nul}call"
    assert stored.status_message == f"broke{nul}here"
    assert stored.attributes["output.value"] == f"binary{nul}leak"
    assert stored.attributes[f"odd{nul}key"] == 1
    assert stored.attributes["literal"] == "a\\u0000b"
    assert Span.objects.filter(project=project).count() == 2


def test_a_nul_in_an_event_or_the_resource_does_not_cost_the_batch(post, project):
    """The NUL check reads a few columns per row (and the resource once per group):
    these are the two it reads besides the text columns and the attributes."""
    trace_id = new_trace_id()
    spans = [
        span(trace_id=trace_id, name="evented", events=[("said", T0_NS, {"text": "a\x00b"})]),
        span(trace_id=trace_id, name="plain"),
    ]
    response = post(export_request(({"host.name": "box\x00one"}, spans)).SerializeToString())
    assert response.status_code == 200
    nul = "\x00" if connection.vendor == "sqlite" else "\ufffd"
    evented = Span.objects.get(project=project, name="evented")
    assert evented.events[0]["attributes"] == {"text": f"a{nul}b"}
    plain = Span.objects.get(project=project, name="plain")
    assert plain.resource == {"host.name": f"box{nul}one"}


def test_postgresqls_staging_table_is_kept_per_connection_and_left_empty(project):
    """Created once per connection (not per batch), and emptied after each batch
    even inside an outer transaction, where ON COMMIT does not run."""
    if connection.vendor != "postgresql":
        pytest.skip("the COPY staging table is PostgreSQL's")

    def store(name):
        body = export_request(({}, [span(trace_id=new_trace_id(), name=name)]))
        decoded = otlp.decode_export(body.SerializeToString(), PB, attribute_tokens=True)
        ingest.ingest_export(project, decoded)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'span_ingest'::regclass::oid, count(*) FROM span_ingest")
            return cursor.fetchone()

    first_table, first_left = store("first")
    second_table, second_left = store("second")
    assert (first_left, second_left) == (0, 0)
    assert second_table == first_table
    assert sorted(Span.objects.filter(project=project).values_list("name", flat=True)) == [
        "first",
        "second",
    ]


# --- OpenInference metadata ------------------------------------------------------------


def test_metadata_sent_as_a_json_string_becomes_filterable_keys(post, project):
    from agentloop.traces.queries import filter_spans, parse_span_filter

    gold = span(
        trace_id=new_trace_id(),
        name="gold",
        attributes={
            "metadata": json.dumps({"tier": "gold", "retries": 2, "ab": {"arm": "b"}}),
            "metadata.retries": 3,  # sent as its own attribute too: that one is kept
        },
    )
    silver = span(trace_id=new_trace_id(), name="silver", attributes={"metadata": '{"tier": "x"}'})
    not_json = span(trace_id=new_trace_id(), name="text", attributes={"metadata": "{oops"})

    post(export_request(({}, [gold, silver, not_json])).SerializeToString())

    stored = Span.objects.get(name="gold")
    assert stored.attributes == {
        "metadata.tier": "gold",
        "metadata.retries": 3,
        "metadata.ab.arm": "b",
    }
    assert Span.objects.get(name="text").attributes == {"metadata": "{oops"}

    def matching(attr):
        return [s.name for s in filter_spans(project, parse_span_filter({"attr": attr}))]

    assert matching("metadata.tier=gold") == ["gold"]
    assert matching("metadata.ab.arm=b") == ["gold"]
