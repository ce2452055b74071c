"""GET and POST /api/v1/projects/<id>/annotations: listing, upsert, validation, atomicity."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from agentloop.teams.models import ProjectApiKey
from agentloop.traces.models import SpanAnnotation
from tests.span_factory import make_span

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def span(project):
    return make_span(project, trace_id="e" * 32, span_id="e000000000000001", name="llm")


@pytest.fixture
def other_span(project):
    return make_span(project, trace_id="f" * 32, span_id="f000000000000001", name="tool")


@pytest.fixture
def post(client_for, bob, project):
    client = client_for(bob)

    def send(body, project=project, **headers):
        return client.post(
            f"/api/v1/projects/{project.pk}/annotations",
            json.dumps(body),
            content_type="application/json",
            **headers,
        )

    return send


def label(span_id="e000000000000001", **fields):
    return {
        "span_id": span_id,
        "name": "correctness",
        "label": "incorrect",
        "annotator_kind": "HUMAN",
        **fields,
    }


def test_a_member_writes_an_annotation(post, project, span, bob):
    response = post(label(score=0, explanation="made up a refund policy", metadata={"k": 1}))
    assert response.status_code == 201
    (data,) = response.json()["data"]
    assert data["span_id"] == span.span_id
    assert data["trace_id"] == span.trace_id
    assert data["label"] == "incorrect"
    assert data["created_by"] == "bob"
    stored = SpanAnnotation.objects.get()
    assert stored.project == project
    assert stored.span == span
    assert (stored.name, stored.label, stored.score) == ("correctness", "incorrect", 0.0)
    assert stored.explanation == "made up a refund policy"
    assert stored.metadata == {"k": 1}
    assert stored.annotator_kind == "HUMAN"
    assert stored.created_by == bob
    assert stored.provenance == {"user": "bob"}


def test_writing_the_same_name_and_identifier_again_updates_in_place(post, span):
    post(label())
    response = post(label(label="correct", score=1))
    assert response.status_code == 200  # nothing new was created
    stored = SpanAnnotation.objects.get()
    assert (stored.label, stored.score) == ("correct", 1.0)


def test_a_different_identifier_is_a_second_annotation(post, span):
    post(label(identifier="judge-a"))
    post(label(identifier="judge-b", label="correct"))
    assert sorted(SpanAnnotation.objects.values_list("identifier", "label")) == [
        ("judge-a", "incorrect"),
        ("judge-b", "correct"),
    ]


def test_a_batch_writes_many(post, span, other_span):
    response = post(
        {
            "data": [
                label(),
                label(span_id=other_span.span_id, name="tool_ok", label="", score=0.25),
            ]
        }
    )
    assert response.status_code == 201
    assert [a["span_id"] for a in response.json()["data"]] == [span.span_id, other_span.span_id]
    assert SpanAnnotation.objects.get(span=other_span).score == 0.25
    assert SpanAnnotation.objects.count() == 2


def test_a_batch_with_one_unknown_span_stores_nothing(post, span, other_span):
    response = post({"data": [label(), label(span_id="0000000000000bad")]})
    assert response.status_code == 400
    assert "0000000000000bad" in response.json()["detail"]
    assert SpanAnnotation.objects.count() == 0


def test_a_batch_with_one_invalid_item_stores_nothing_and_names_it(post, span):
    response = post({"data": [label(), label(score="high")]})
    assert response.status_code == 400
    assert response.json()["detail"] == "data[1].score: must be a number."
    assert SpanAnnotation.objects.count() == 0


def test_a_batch_that_would_update_rolls_back_the_update_too(post, span, other_span):
    post(label(label="before"))
    response = post({"data": [label(label="after"), label(span_id="0000000000000bad")]})
    assert response.status_code == 400
    assert SpanAnnotation.objects.get().label == "before"


def test_a_span_of_another_project_is_unknown_here(post, other_project):
    theirs = make_span(other_project, span_id="9000000000000001")
    response = post(label(span_id=theirs.span_id))
    assert response.status_code == 400
    assert response.json()["detail"] == ("span_id 9000000000000001: no such span in this project.")
    assert SpanAnnotation.objects.count() == 0


def test_a_span_id_in_two_traces_needs_the_trace_id(post, project):
    make_span(project, trace_id="1" * 32, span_id="dup0000000000001")
    second = make_span(project, trace_id="2" * 32, span_id="dup0000000000001")
    response = post(label(span_id="dup0000000000001"))
    assert response.status_code == 400
    assert "give its trace_id" in response.json()["detail"]
    response = post(label(span_id="dup0000000000001", trace_id="2" * 32))
    assert response.status_code == 201
    assert SpanAnnotation.objects.get().span == second


@pytest.mark.parametrize(
    "body, message",
    [
        (label(annotator_kind="ROBOT"), "annotator_kind:"),
        (label(score="0.5"), "score: must be a number."),
        (label(score=True), "score: must be a number."),
        (label(label="", score=None), "give a label or a score"),
        (
            {"name": "x", "label": "y", "annotator_kind": "HUMAN"},
            "span_id: This field is required.",
        ),
        (label(name=""), "name:"),
        ({"data": []}, "data: must be a non-empty list"),
        ({"data": "x"}, "data: must be a non-empty list"),
        ([label()], 'expected an annotation object or {"data": [...]}'),
    ],
)
def test_bad_input_is_400_with_a_message_and_stores_nothing(post, span, body, message):
    response = post(body)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert SpanAnnotation.objects.count() == 0


def test_a_batch_over_the_limit_is_refused(post, span):
    response = post({"data": [label(identifier=str(i)) for i in range(1001)]})
    assert response.status_code == 400
    assert "at most 1000" in response.json()["detail"]
    assert SpanAnnotation.objects.count() == 0


def test_a_score_alone_is_enough(post, span):
    response = post(label(label="", score=0.75))
    assert response.status_code == 201
    assert SpanAnnotation.objects.get().score == 0.75


def test_an_api_key_writes_without_a_person(client, project, span):
    _, raw = ProjectApiKey.mint(project, "evals")
    response = client.post(
        f"/api/v1/projects/{project.pk}/annotations",
        json.dumps(label(annotator_kind="LLM")),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 201
    stored = SpanAnnotation.objects.get()
    assert stored.created_by is None
    assert stored.provenance == {"key": "project key evals"}
    assert stored.annotator_kind == "LLM"


# Listing


@pytest.fixture
def listed(project, span, other_span, alice, monkeypatch):
    """Three annotations created a minute apart (time controlled, not slept)."""
    rows = [
        (span, "correctness", "incorrect", "HUMAN"),
        (span, "tone", "rude", "LLM"),
        (other_span, "correctness", "correct", "CODE"),
    ]
    for minute, (target, name, value, kind) in enumerate(rows):
        moment = T0 + timedelta(minutes=minute)
        monkeypatch.setattr(timezone, "now", lambda moment=moment: moment)
        SpanAnnotation.objects.create(
            project=project, span=target, name=name, label=value, annotator_kind=kind
        )


def get_labels(client, project, **params):
    response = client.get(f"/api/v1/projects/{project.pk}/annotations", params)
    assert response.status_code == 200, response.content
    return [(a["name"], a["label"]) for a in response.json()["data"]]


def test_it_lists_annotations_newest_first(client_for, carol, project, listed):
    assert get_labels(client_for(carol), project) == [
        ("correctness", "correct"),
        ("tone", "rude"),
        ("correctness", "incorrect"),
    ]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"name": "correctness"}, [("correctness", "correct"), ("correctness", "incorrect")]),
        ({"label": "rude"}, [("tone", "rude")]),
        ({"span_id": "f000000000000001"}, [("correctness", "correct")]),
        ({"trace_id": "e" * 32}, [("tone", "rude"), ("correctness", "incorrect")]),
        ({"annotator_kind": "code"}, [("correctness", "correct")]),
        ({"name": "correctness", "label": "incorrect"}, [("correctness", "incorrect")]),
    ],
)
def test_it_filters_annotations(client_for, carol, project, listed, params, expected):
    assert get_labels(client_for(carol), project, **params) == expected


def test_annotations_page_with_a_cursor(client_for, carol, project, listed):
    client = client_for(carol)
    url = f"/api/v1/projects/{project.pk}/annotations"
    first = client.get(url, {"limit": 2}).json()
    second = client.get(url, {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [a["label"] for a in first["data"]] == ["correct", "rude"]
    assert [a["label"] for a in second["data"]] == ["incorrect"]
    assert second["next_cursor"] is None


def test_a_bad_annotator_kind_filter_is_400(client_for, carol, project, listed):
    response = client_for(carol).get(
        f"/api/v1/projects/{project.pk}/annotations", {"annotator_kind": "ROBOT"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("annotator_kind: must be one of")
