"""Phoenix's own client (`arize-phoenix-client`) reads and annotates agentloop's
spans over a live server, after spans were sent the way Phoenix's quick-start
sends them (resource `openinference.project.name="default"`)."""

from __future__ import annotations

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from phoenix.client import Client

from agentloop.teams.models import Project, ProjectApiKey
from agentloop.traces.models import Span, SpanAnnotation
from tests.span_factory import make_span

pytest_plugins = ["tests.gateway_server"]  # served_db, asgi_server


@pytest.fixture
def raw_key(project):
    return ProjectApiKey.mint(project, "phoenix")[1]


@pytest.fixture
def phoenix(asgi_server, served_db, raw_key):
    return Client(base_url=asgi_server, api_key=raw_key)


def send_quickstart_trace(asgi_server, raw_key) -> str:
    """Two spans as phoenix.otel.register() with its defaults sends them; the trace id."""
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": "default"}))
    exporter = OTLPSpanExporter(
        endpoint=f"{asgi_server}/v1/traces", headers={"authorization": f"Bearer {raw_key}"}
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("quickstart")
    with tracer.start_as_current_span(
        "agent", attributes={"openinference.span.kind": "AGENT", "input.value": "hi"}
    ) as root:
        with tracer.start_as_current_span(
            "ChatCompletion",
            attributes={"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini"},
        ):
            pass
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def test_the_client_lists_the_project_the_quickstart_created(
    phoenix, asgi_server, raw_key, project
):
    send_quickstart_trace(asgi_server, raw_key)

    names = {p["name"]: p for p in phoenix.projects.list()}

    assert set(names) == {"default", "support-bot"}
    default = Project.objects.get(name="default")
    assert phoenix.projects.get(project_id=names["default"]["id"])["name"] == "default"
    assert default.space_id == project.space_id


def test_get_spans_reads_back_what_was_sent(phoenix, asgi_server, raw_key):
    trace_id = send_quickstart_trace(asgi_server, raw_key)

    spans = phoenix.spans.get_spans(project_identifier="default", limit=10)

    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"agent", "ChatCompletion"}
    llm, agent = by_name["ChatCompletion"], by_name["agent"]
    assert llm["context"] == {
        "trace_id": trace_id,
        "span_id": Span.objects.get(name="ChatCompletion").span_id,
    }
    assert llm["parent_id"] == agent["context"]["span_id"]
    assert "parent_id" not in agent
    assert llm["span_kind"] == "LLM"
    assert llm["attributes"]["llm.model_name"] == "gpt-4o-mini"
    assert agent["status_code"] == "UNSET"

    only_llm = phoenix.spans.get_spans(project_identifier="default", span_kind="LLM")
    assert [s["name"] for s in only_llm] == ["ChatCompletion"]
    by_trace = phoenix.spans.get_spans(project_identifier="default", trace_ids=[trace_id])
    assert len(by_trace) == 2
    by_attribute = phoenix.spans.get_spans(
        project_identifier="default", attributes={"llm.model_name": "gpt-4o-mini"}
    )
    assert [s["name"] for s in by_attribute] == ["ChatCompletion"]


def test_get_spans_pages_through_more_than_a_page(phoenix, project):
    for i in range(130):
        make_span(project, trace_id=f"{i:032x}", span_id=f"{i + 1:016x}", name=f"s{i}")

    spans = phoenix.spans.get_spans(project_identifier="support-bot", limit=125)

    assert len(spans) == 125
    assert len({s["context"]["span_id"] for s in spans}) == 125


def test_get_spans_dataframe(phoenix, asgi_server, raw_key):
    send_quickstart_trace(asgi_server, raw_key)

    frame = phoenix.spans.get_spans_dataframe(project_identifier="default")

    assert frame.index.name == "context.span_id"
    assert sorted(frame["name"]) == ["ChatCompletion", "agent"]
    llm = frame[frame["name"] == "ChatCompletion"].iloc[0]
    assert llm["span_kind"] == "LLM"
    assert llm["attributes.llm.model_name"] == "gpt-4o-mini"
    assert str(llm["start_time"].tz) == "UTC"

    roots = phoenix.spans.get_spans_dataframe(project_identifier="default", root_spans_only=True)
    assert list(roots["name"]) == ["agent"]


def test_a_query_it_cannot_answer_is_refused_not_ignored(phoenix, asgi_server, raw_key):
    from phoenix.client.types.spans import SpanQuery

    send_quickstart_trace(asgi_server, raw_key)
    with pytest.raises(httpx.HTTPStatusError) as raised:
        phoenix.spans.get_spans_dataframe(
            project_identifier="default", query=SpanQuery().where("span_kind == 'LLM'")
        )
    assert raised.value.response.status_code == 400
    assert "filter" in raised.value.response.json()["detail"]


def test_span_annotations_are_written_and_read_back(phoenix, asgi_server, raw_key):
    send_quickstart_trace(asgi_server, raw_key)
    llm = Span.objects.get(name="ChatCompletion")

    phoenix.spans.add_span_annotation(
        span_id=llm.span_id,
        annotation_name="correctness",
        annotator_kind="LLM",
        label="correct",
        score=1.0,
        explanation="matches the reference",
        sync=True,
    )

    stored = SpanAnnotation.objects.get(span=llm)
    assert (stored.name, stored.label, stored.score, stored.annotator_kind) == (
        "correctness",
        "correct",
        1.0,
        "LLM",
    )
    assert stored.project.name == "default"
    [read] = phoenix.spans.get_span_annotations(
        span_ids=[llm.span_id], project_identifier="default"
    )
    assert read["span_id"] == llm.span_id
    assert read["result"] == {
        "label": "correct",
        "score": 1.0,
        "explanation": "matches the reference",
    }
    frame = phoenix.spans.get_span_annotations_dataframe(
        span_ids=[llm.span_id], project_identifier="default"
    )
    assert list(frame["annotation_name"]) == ["correctness"]


def test_an_annotation_of_an_unknown_span_is_refused(phoenix):
    with pytest.raises(httpx.HTTPStatusError) as raised:
        phoenix.spans.add_span_annotation(
            span_id="00000000000000ff", annotation_name="x", label="y", sync=True
        )
    assert raised.value.response.status_code == 400
    assert "no such span" in raised.value.response.json()["detail"]
    assert not SpanAnnotation.objects.exists()


def test_another_spaces_key_reads_nothing_of_this_space(
    asgi_server, served_db, raw_key, other_project, space
):
    send_quickstart_trace(asgi_server, raw_key)
    theirs = Client(base_url=asgi_server, api_key=ProjectApiKey.mint(other_project, "x")[1])

    assert [p["name"] for p in theirs.projects.list()] == ["other-bot"]
    with pytest.raises(httpx.HTTPStatusError) as raised:
        theirs.spans.get_spans(project_identifier="default")
    assert raised.value.response.status_code == 404


def test_the_worker_project_stays_out_of_reach(phoenix, space):
    worker = space.worker_project()
    make_span(worker, trace_id="c" * 32, span_id="c" * 16, name="run step")

    assert worker.name not in {p["name"] for p in phoenix.projects.list()}
    with pytest.raises(httpx.HTTPStatusError) as raised:
        phoenix.spans.get_spans(project_identifier=str(worker.pk))
    assert raised.value.response.status_code == 404


def test_without_a_key_it_is_refused(asgi_server, served_db):
    anonymous = Client(base_url=asgi_server, api_key=None)
    with pytest.raises(httpx.HTTPStatusError) as raised:
        anonymous.projects.list()
    assert raised.value.response.status_code == 401


def test_phoenix_register_over_http_and_grpc_lands_alike_and_reads_back(
    asgi_server, served_db, raw_key, phoenix
):
    # Phoenix's quick-start: register() with its defaults (project "default"),
    # only the endpoint and the key given; once over HTTP, once over gRPC.
    from phoenix.otel import register

    from tests.grpc_support import Receiver

    receiver = Receiver()
    try:
        for protocol, endpoint in (
            ("http/protobuf", f"{asgi_server}/v1/traces"),
            ("grpc", f"http://127.0.0.1:{receiver.port}"),
        ):
            provider = register(
                endpoint=endpoint,
                protocol=protocol,
                api_key=raw_key,
                set_global_tracer_provider=False,
                verbose=False,
            )
            tracer = provider.get_tracer("quickstart")
            with tracer.start_as_current_span(
                f"answer over {protocol}",
                attributes={"openinference.span.kind": "CHAIN", "input.value": "hello"},
            ):
                pass
            provider.shutdown()
    finally:
        receiver.stop()

    spans = phoenix.spans.get_spans(project_identifier="default")
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"answer over http/protobuf", "answer over grpc"}
    assert {s["span_kind"] for s in spans} == {"CHAIN"}
    assert {s["attributes"]["input.value"] for s in spans} == {"hello"}


def test_a_project_key_reads_its_spaces_projects_on_the_rest_api_too(
    asgi_server, served_db, raw_key, space
):
    sibling = Project.objects.create(space=space, name="support-bot-evals")
    make_span(sibling, trace_id="d" * 32, span_id="d" * 16, name="eval")

    response = httpx.get(
        f"{asgi_server}/api/v1/projects/{sibling.pk}/spans",
        headers={"authorization": f"Bearer {raw_key}"},
    )

    assert response.status_code == 200
    assert [s["name"] for s in response.json()["data"]] == ["eval"]


@pytest.mark.django_db
def test_a_keys_read_of_its_own_project_by_name_opens_it_without_a_query_of_its_own(
    client, project, raw_key
):
    """The key check loads the key's project; the access helper reuses it (one
    query fewer on the span read Phoenix's client makes for every trace)."""
    make_span(project, trace_id="e" * 32, span_id="e" * 16, name="agent")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    path = f"/v1/projects/{project.name}/spans?trace_id={'e' * 32}"
    client.get(path, **headers)  # the key's last use is written at most once a minute

    with CaptureQueriesContext(connection) as queries:
        answer = client.get(path, **headers)

    assert answer.status_code == 200
    assert [s["name"] for s in answer.json()["data"]] == ["agent"]
    tables = [q["sql"].split(" FROM ")[1].split()[0].strip('"') for q in queries]
    assert tables == ["teams_projectapikey", "traces_span"]
