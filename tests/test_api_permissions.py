"""Who may do what on every /api/v1/ route.

Callers: the space's owner (admin), a member, a viewer, an outsider (admin of
another space), anonymous, an API key of this project and an API key of
another project. Reads need "view", annotation writes need "use". A project the
caller may not see is 404 (whether or not it exists), a role that may see but
not write is 403, no credentials is 401.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from agentloop.teams.models import ProjectApiKey
from agentloop.teams.principals import KeyPrincipal
from agentloop.traces.models import SpanAnnotation
from tests.span_factory import make_span

TRACE = "a" * 32
SPAN = "a000000000000001"
CALLERS = ["owner", "member", "viewer", "outsider", "anonymous", "project_key", "other_key"]
READERS = {"owner", "member", "viewer", "project_key"}
WRITERS = {"owner", "member", "project_key"}


@pytest.fixture
def world(project, other_project):
    make_span(project, trace_id=TRACE, span_id=SPAN, name="ours")
    theirs = make_span(other_project, trace_id="b" * 32, span_id="b000000000000001", name="theirs")
    SpanAnnotation.objects.create(
        project=other_project, span=theirs, name="secret", label="x", annotator_kind="HUMAN"
    )


@pytest.fixture
def caller(users, client_for, project, other_project):
    def make(who: str) -> Client:
        if who in users:
            return client_for(users[who])
        if who == "anonymous":
            return Client()
        key_project = project if who == "project_key" else other_project
        _, raw = ProjectApiKey.mint(key_project, f"key for {who}")
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    return make


def refused(response, who: str, project_visible: bool = False):
    """Check the refusal code for a caller that may not read, and that it leaks nothing."""
    if who == "anonymous":
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="agentloop"'
    elif project_visible:
        assert response.status_code == 403
    else:
        assert response.status_code == 404
        assert response.json() == {"detail": "No such project."}
    assert "ours" not in response.content.decode()


@pytest.mark.parametrize("who", CALLERS)
def test_project_list(caller, who, world, project, other_project, space):
    response = caller(who).get("/api/v1/projects/")
    if who == "anonymous":
        assert response.status_code == 401
        return
    assert response.status_code == 200
    expected = {
        "owner": [project],
        "member": [project],
        "viewer": [project],
        "project_key": [project],
        "outsider": [other_project],
        "other_key": [other_project],
    }[who]
    assert response.json()["data"] == [
        {"id": p.pk, "name": p.name, "space": {"id": p.space_id, "name": p.space.name}}
        for p in expected
    ]


@pytest.mark.parametrize("who", CALLERS)
def test_span_list(caller, who, world, project):
    response = caller(who).get(f"/api/v1/projects/{project.pk}/spans")
    if who in READERS:
        assert response.status_code == 200
        assert [s["name"] for s in response.json()["data"]] == ["ours"]
    else:
        refused(response, who)


@pytest.mark.parametrize("who", CALLERS)
def test_trace_detail(caller, who, world, project):
    response = caller(who).get(f"/api/v1/projects/{project.pk}/traces/{TRACE}")
    if who in READERS:
        assert response.status_code == 200
        assert response.json()["root"]["name"] == "ours"
    else:
        refused(response, who)


@pytest.mark.parametrize("who", CALLERS)
def test_annotation_list(caller, who, world, project):
    SpanAnnotation.objects.create(
        project=project,
        span=project.spans.get(),
        name="correctness",
        label="ours",
        annotator_kind="HUMAN",
    )
    response = caller(who).get(f"/api/v1/projects/{project.pk}/annotations")
    if who in READERS:
        assert response.status_code == 200
        assert [(a["name"], a["label"]) for a in response.json()["data"]] == [
            ("correctness", "ours")
        ]
    else:
        refused(response, who)


@pytest.mark.parametrize("who", CALLERS)
def test_annotation_write(caller, who, world, project, users):
    body = {"span_id": SPAN, "name": "correctness", "label": "ok", "annotator_kind": "HUMAN"}
    response = caller(who).post(
        f"/api/v1/projects/{project.pk}/annotations",
        json.dumps(body),
        content_type="application/json",
    )
    stored = SpanAnnotation.objects.filter(project=project)
    if who in WRITERS:
        assert response.status_code == 201
        annotation = stored.get()
        assert (annotation.name, annotation.label) == ("correctness", "ok")
        assert annotation.created_by == users.get(who)  # None for a key
    else:
        refused(response, who, project_visible=(who == "viewer"))
        assert not stored.exists()
    if who == "viewer":
        assert response.json()["detail"] == "Your role in Acme does not allow this."


@pytest.mark.parametrize(
    "path",
    ["spans", f"traces/{TRACE}", "annotations"],
)
def test_an_unknown_project_is_404_like_a_hidden_one(client_for, alice, world, path):
    response = client_for(alice).get(f"/api/v1/projects/999999/{path}")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such project."}


def test_a_revoked_key_is_401(client, project, world):
    key, raw = ProjectApiKey.mint(project, "old")
    key.revoke()
    response = client.get(
        f"/api/v1/projects/{project.pk}/spans", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 401
    assert "ours" not in response.content.decode()


def test_an_unknown_key_is_401(client, project, world):
    response = client.get(
        f"/api/v1/projects/{project.pk}/spans", HTTP_API_KEY="al_pk_not-a-real-key"
    )
    assert response.status_code == 401


def test_the_api_key_header_works_like_bearer(client, project, world):
    _, raw = ProjectApiKey.mint(project, "header")
    response = client.get(f"/api/v1/projects/{project.pk}/spans", HTTP_API_KEY=raw)
    assert response.status_code == 200
    assert [s["name"] for s in response.json()["data"]] == ["ours"]


# A run's service key reaches the views as a KeyPrincipal, like a project key,
# but with the run's scopes: it reads its bound project and may not annotate.


@pytest.fixture
def run_principal(project):
    def make(bound_project=project):
        client = APIClient()
        client.force_authenticate(
            KeyPrincipal(
                project_id=bound_project.pk,
                space_id=bound_project.space_id,
                scopes=frozenset({"traces:read", "events:write", "artifacts:write"}),
                label="run abc123",
            )
        )
        return client

    return make


def test_a_run_key_reads_its_bound_project(run_principal, project, world):
    client = run_principal()
    assert [
        s["name"] for s in client.get(f"/api/v1/projects/{project.pk}/spans").json()["data"]
    ] == ["ours"]
    assert client.get(f"/api/v1/projects/{project.pk}/traces/{TRACE}").status_code == 200
    assert client.get("/api/v1/projects/").json()["data"][0]["id"] == project.pk


def test_a_run_key_cannot_read_another_project(run_principal, project, other_project, world):
    response = run_principal().get(f"/api/v1/projects/{other_project.pk}/spans")
    assert response.status_code == 404


def test_a_run_key_without_annotations_write_cannot_annotate(run_principal, project, world):
    response = run_principal().post(
        f"/api/v1/projects/{project.pk}/annotations",
        {"span_id": SPAN, "name": "n", "label": "l", "annotator_kind": "AGENT"},
        format="json",
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "This key's scopes do not allow this."
    assert not SpanAnnotation.objects.filter(project=project).exists()
