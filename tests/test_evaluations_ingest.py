"""Evaluations as data: EVALUATOR spans sent over OTLP become annotations on the span they
judge, through the production ingest path, and read back through the annotations API."""

from __future__ import annotations

import pytest
from django.test import Client

from agentloop.teams.models import ProjectApiKey
from agentloop.traces.models import Span, SpanAnnotation
from tests.asgi_client import asgi_request
from tests.otlp_payloads import export_request, new_span_id, new_trace_id, span

pytest_plugins = ["tests.gateway_server"]  # served_db: ingest stores on its own threads
URL = "/v1/traces"
PB = "application/x-protobuf"


@pytest.fixture
def post(project, alice, served_db):
    _, key = ProjectApiKey.mint(project, "ingest")

    def send(*spans):
        body = export_request(({"service.name": "support-bot"}, list(spans))).SerializeToString()
        headers = {"content-type": PB, "authorization": f"Bearer {key}"}
        response = asgi_request("POST", URL, content=body, headers=headers)
        assert response.status_code == 200, response.text
        return response

    return send


def judge(trace_id, parent, **verdict):
    attributes = {"openinference.span.kind": "EVALUATOR", **verdict}
    return span(trace_id=trace_id, parent_span_id=parent, name="llm_judge", attributes=attributes)


def test_an_evaluator_span_annotates_the_span_it_names(post, project):
    trace_id, answer_id, root_id = new_trace_id(), new_span_id(), new_span_id()
    root = span(trace_id=trace_id, span_id=root_id, name="support_agent")
    answer = span(trace_id=trace_id, span_id=answer_id, parent_span_id=root_id, name="compose")
    verdict = judge(
        trace_id,
        root_id,
        **{
            "evaluation.name": "hallucination",
            "evaluation.label": "hallucinated",
            "evaluation.score": 0.0,
            "evaluation.explanation": "Invents a warranty policy.",
            "evaluation.annotator_kind": "LLM",
            "eval.target.trace_id": trace_id,
            "eval.target.span_id": answer_id,
        },
    )

    post(root, answer, verdict)

    (annotation,) = SpanAnnotation.objects.all()
    assert annotation.span.span_id == answer_id and annotation.project == project
    assert (annotation.name, annotation.label, annotation.score) == (
        "hallucination",
        "hallucinated",
        0.0,
    )
    assert annotation.explanation == "Invents a warranty policy."
    assert annotation.annotator_kind == "LLM"
    assert annotation.provenance["source"] == "evaluation span"
    assert Span.objects.filter(kind="EVALUATOR").count() == 1  # the verdict's own span stays


def test_a_judge_that_runs_again_replaces_its_verdict_and_eval_keys_work_too(post):
    trace_id, answer_id = new_trace_id(), new_span_id()
    post(span(trace_id=trace_id, span_id=answer_id, name="compose"))
    post(judge(trace_id, answer_id, **{"eval.name": "correctness", "eval.label": "incorrect"}))
    post(judge(trace_id, answer_id, **{"eval.name": "correctness", "eval.label": "correct"}))

    (annotation,) = SpanAnnotation.objects.all()
    assert annotation.span.span_id == answer_id  # no target: the judge's parent
    assert annotation.label == "correct"


def test_a_verdict_for_a_span_not_yet_sent_is_kept_on_its_own_span(post):
    trace_id = new_trace_id()
    post(
        judge(
            trace_id,
            "",
            **{
                "eval.name": "correctness",
                "eval.score": 1,
                "eval.target.span_id": new_span_id(),
            },
        )
    )

    assert not SpanAnnotation.objects.exists()
    (stored,) = Span.objects.filter(kind="EVALUATOR")
    assert stored.attributes["eval.name"] == "correctness"


def test_an_evaluator_span_without_a_verdict_writes_nothing(post):
    trace_id, answer_id = new_trace_id(), new_span_id()
    post(span(trace_id=trace_id, span_id=answer_id, name="compose"))
    post(judge(trace_id, answer_id, **{"eval.name": "correctness", "eval.score": "high"}))

    assert not SpanAnnotation.objects.exists()


def test_the_annotations_api_lists_them_like_any_other(post, project, alice):
    trace_id, answer_id = new_trace_id(), new_span_id()
    post(
        span(trace_id=trace_id, span_id=answer_id, name="compose"),
        judge(trace_id, answer_id, **{"eval.name": "relevance", "eval.score": 0.25}),
    )
    client = Client()
    client.force_login(alice)

    answer = client.get(f"/api/v1/projects/{project.pk}/annotations", {"name": "relevance"})

    assert answer.status_code == 200
    (item,) = answer.json()["data"]
    assert (item["span_id"], item["score"], item["annotator_kind"]) == (answer_id, 0.25, "LLM")
