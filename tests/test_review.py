"""Human review: approving eval labels writes annotations, rejecting writes nothing,
every decision is audited, and only members review (functions and pages)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.urls import reverse

from agentloop.review.actions import approve, pending_for_user, reject
from agentloop.review.models import ArtifactReview
from agentloop.runs.models import Artifact, ReviewState, Run
from agentloop.traces.models import SpanAnnotation
from tests.span_factory import make_span

TRACE = "a" * 32


@pytest.fixture
def run(project, alice):
    return Run.objects.create(
        space=project.space,
        project=project,
        prompt="look",
        creator=alice,
        status="succeeded",
        config={"harness": "analyst"},
    )


@pytest.fixture
def spans(project):
    return [
        make_span(project, trace_id=TRACE, span_id="1" * 16, name="chat", kind="LLM"),
        make_span(project, trace_id=TRACE, span_id="2" * 16, name="chat", kind="LLM"),
    ]


@pytest.fixture
def labels(run, spans):
    proposals = [
        {
            "span_id": s.span_id,
            "trace_id": TRACE,
            "name": "correctness",
            "label": "incorrect",
            "score": 0,
            "explanation": "The call failed.",
        }
        for s in spans
    ]
    return Artifact.objects.create(
        run=run,
        key="labels",
        kind="eval_labels",
        name="eval_labels.json",
        content=json.dumps(proposals),
    )


def test_approving_eval_labels_writes_agent_annotations(run, labels, spans, bob):
    approve(bob, labels, "Right.")
    labels.refresh_from_db()
    assert labels.review_state == ReviewState.APPROVED
    assert labels.reviewer == bob and labels.reviewed_at and labels.review_comment == "Right."
    written = SpanAnnotation.objects.order_by("span__span_id")
    assert [(a.span_id, a.name, a.label, a.score) for a in written] == [
        (spans[0].pk, "correctness", "incorrect", 0.0),
        (spans[1].pk, "correctness", "incorrect", 0.0),
    ]
    assert {a.annotator_kind for a in written} == {"AGENT"}
    assert [a.provenance for a in written] == [
        {"run": str(run.code), "artifact": labels.pk, "approved_by": "bob"}
    ] * 2
    (entry,) = ArtifactReview.objects.all()
    assert (entry.reviewer_name, entry.decision, entry.comment) == ("bob", "approved", "Right.")
    assert entry.effect == "Wrote 2 annotations."


def test_rejecting_writes_nothing_but_the_audit(labels, bob):
    reject(bob, labels, "Not convinced.")
    labels.refresh_from_db()
    assert labels.review_state == ReviewState.REJECTED
    assert SpanAnnotation.objects.count() == 0
    (entry,) = ArtifactReview.objects.all()
    assert (entry.decision, entry.comment) == ("rejected", "Not convinced.")


def test_a_decision_is_made_once(labels, alice, bob):
    approve(bob, labels)
    with pytest.raises(ValidationError, match="already approved"):
        reject(alice, Artifact.objects.get(pk=labels.pk))
    assert ArtifactReview.objects.count() == 1


def test_labels_naming_a_missing_span_write_nothing(run, spans, bob):
    bad = Artifact.objects.create(
        run=run,
        key="bad",
        kind="eval_labels",
        name="bad.json",
        content=json.dumps(
            [
                {"span_id": spans[0].span_id, "name": "correctness", "label": "incorrect"},
                {"span_id": "f" * 16, "name": "correctness", "label": "incorrect"},
            ]
        ),
    )
    with pytest.raises(ValidationError, match="no such span"):
        approve(bob, bad)
    bad.refresh_from_db()
    assert bad.review_state == ReviewState.PENDING
    assert SpanAnnotation.objects.count() == 0 and ArtifactReview.objects.count() == 0


def test_malformed_labels_get_a_clear_error(run, bob):
    bad = Artifact.objects.create(run=run, key="x", kind="eval_labels", name="x", content="{nope")
    with pytest.raises(ValidationError, match="not valid JSON"):
        approve(bob, bad)


def test_approving_an_investigation_only_marks_it(run, bob):
    investigation = Artifact.objects.create(
        run=run, key="i", kind="investigation", name="investigation.md", content="# Findings"
    )
    approve(bob, investigation)
    investigation.refresh_from_db()
    assert investigation.review_state == ReviewState.APPROVED
    assert ArtifactReview.objects.get().effect == "Marked approved."


@pytest.mark.parametrize(
    "role,raises",
    [
        ("owner", None),
        ("member", None),
        ("viewer", PermissionDenied),
        ("outsider", Http404),
        ("anonymous", Http404),
    ],
)
def test_who_may_approve(labels, users, role, raises):
    user = AnonymousUser() if role == "anonymous" else users[role]
    if raises:
        with pytest.raises(raises):
            approve(user, labels)
    else:
        approve(user, labels)
    assert SpanAnnotation.objects.count() == (0 if raises else 2)
    assert ArtifactReview.objects.count() == (0 if raises else 1)


# -- pages --


@pytest.mark.parametrize(
    "role,status,written",
    [
        ("owner", 302, 2),
        ("member", 302, 2),
        ("viewer", 403, 0),
        ("outsider", 404, 0),
        ("anonymous", 302, 0),
    ],
)
def test_approve_page_permissions(labels, users, client_for, role, status, written):
    client = client_for(None if role == "anonymous" else users[role])
    response = client.post(reverse("artifact-approve", args=[labels.pk]), {"comment": "ok"})
    assert response.status_code == status
    if role == "anonymous":
        assert "/login/" in response["Location"]
    assert SpanAnnotation.objects.count() == written


@pytest.mark.parametrize(
    "role,status,state",
    [
        ("owner", 302, "rejected"),
        ("member", 302, "rejected"),
        ("viewer", 403, "pending"),
        ("outsider", 404, "pending"),
        ("anonymous", 302, "pending"),
    ],
)
def test_reject_page_permissions(labels, users, client_for, role, status, state):
    client = client_for(None if role == "anonymous" else users[role])
    response = client.post(reverse("artifact-reject", args=[labels.pk]), {"next": "queue"})
    assert response.status_code == status
    labels.refresh_from_db()
    assert labels.review_state == state


def test_review_queue_lists_pending_artifacts_of_reviewable_spaces(labels, users, client_for):
    page = client_for(users["member"]).get(reverse("review-queue")).content.decode()
    assert f'data-artifact="{labels.pk}"' in page and "eval_labels.json" in page
    assert list(pending_for_user(users["viewer"])) == []
    assert list(pending_for_user(users["outsider"])) == []
    viewer_page = client_for(users["viewer"]).get(reverse("review-queue")).content.decode()
    assert f'data-artifact="{labels.pk}"' not in viewer_page
    client_for(users["member"]).post(
        reverse("artifact-approve", args=[labels.pk]), {"next": "queue", "comment": "fine"}
    )
    page = client_for(users["member"]).get(reverse("review-queue")).content.decode()
    assert f'data-artifact="{labels.pk}"' not in page
    assert "Nothing waits for review." in page
    assert "<strong>bob</strong> approved" in page and "Wrote 2 annotations." in page


def test_investigation_page_is_sanitized_with_trace_links(run, project, users, client_for):
    text = f"# Findings\n\nSee trace `{TRACE}`.\n\n<script>alert(1)</script>\n"
    investigation = Artifact.objects.create(
        run=run, key="i", kind="investigation", name="investigation.md", content=text
    )
    page = (
        client_for(users["viewer"])
        .get(reverse("artifact-review", args=[investigation.pk]))
        .content.decode()
    )
    assert reverse("trace-detail", args=[project.pk, TRACE]) in page
    assert "<script>alert(1)</script>" not in page
    assert "Approve" not in page  # viewers look, they do not review
    assert (
        client_for(users["outsider"])
        .get(reverse("artifact-review", args=[investigation.pk]))
        .status_code
        == 404
    )


def labels_of_another_run(project, alice, spans, label="incorrect"):
    other = Run.objects.create(
        space=project.space, project=project, prompt="again", creator=alice,
        status="succeeded", config={"harness": "analyst"},
    )  # fmt: skip
    proposals = [
        {"span_id": s.span_id, "trace_id": TRACE, "name": "correctness", "label": label,
         "score": 0, "explanation": "The call failed."}
        for s in spans
    ]  # fmt: skip
    return Artifact.objects.create(
        run=other, key="labels", kind="eval_labels", name="eval_labels.json",
        content=json.dumps(proposals),
    )  # fmt: skip


def test_labels_already_applied_are_skipped_not_written_twice(project, alice, labels, spans, bob):
    approve(bob, labels)
    again = labels_of_another_run(project, alice, spans)
    approve(bob, again)
    assert SpanAnnotation.objects.count() == 2
    assert ArtifactReview.objects.get(artifact=again).effect == (
        "Wrote 0 annotations. Skipped 2 labels already applied."
    )
    # The first approval's provenance stays: nothing was rewritten.
    assert {a.provenance["artifact"] for a in SpanAnnotation.objects.all()} == {labels.pk}


def test_a_reviewer_keeps_edits_and_rejects_labels_one_by_one(labels, spans, bob):
    approve(bob, labels, keep={1}, edits={1: "partially_correct"})
    (written,) = SpanAnnotation.objects.all()
    assert (written.span_id, written.label) == (spans[1].pk, "partially_correct")
    assert ArtifactReview.objects.get().effect == "Wrote 1 annotation. Rejected 1 label."


def test_per_label_choices_from_the_artifact_page(labels, spans, users, client_for):
    client = client_for(users["member"])
    page = client.get(reverse("artifact-review", args=[labels.pk])).content.decode()
    assert 'name="keep" value="0"' in page and 'name="label-1"' in page
    client.post(
        reverse("artifact-approve", args=[labels.pk]),
        {"per_label": "1", "keep": ["0"], "label-0": "incorrect", "label-1": "x"},
    )
    assert [a.span_id for a in SpanAnnotation.objects.all()] == [spans[0].pk]


def test_the_queue_groups_one_finding_of_many_runs_and_decides_it_at_once(
    project, alice, labels, spans, users, client_for
):
    again = labels_of_another_run(project, alice, spans)
    client = client_for(users["member"])
    page = client.get(reverse("review-queue")).content.decode()
    assert page.count('class="card review-group"') == 1
    assert "2 items from 2 runs" in page
    ids = ",".join(str(pk) for pk in sorted([labels.pk, again.pk]))
    assert (
        f'name="ids" value="{ids}"' in page or f'name="ids" value="{again.pk},{labels.pk}"' in page
    )
    response = client.post(reverse("review-bulk-approve"), {"ids": ids})
    assert response.status_code == 302
    labels.refresh_from_db()
    again.refresh_from_db()
    assert (labels.review_state, again.review_state) == ("approved", "approved")
    assert SpanAnnotation.objects.count() == 2  # the second one's labels were already applied
    page = client.get(reverse("review-queue")).content.decode()
    assert "Nothing waits for review." in page


@pytest.mark.parametrize(
    ("role", "status", "state"),
    [("owner", 302, "rejected"), ("member", 302, "rejected"), ("viewer", 403, "pending"),
     ("outsider", 404, "pending")],
)  # fmt: skip
def test_who_may_decide_in_bulk(labels, users, client_for, role, status, state):
    response = client_for(users[role]).post(reverse("review-bulk-reject"), {"artifact": labels.pk})
    assert response.status_code == status
    labels.refresh_from_db()
    assert labels.review_state == state


def test_an_annotation_names_its_run_and_approver_on_the_span_page(
    run, labels, spans, bob, client_for, project
):
    approve(bob, labels)
    url = reverse("span-detail", args=[project.pk, spans[0].span_id])
    page = client_for(bob).get(url).content.decode()
    assert f'href="/studio/sessions/{run.code}/"' in page and "approved by bob" in page
