"""A run's service key reads its own project's spans and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agentloop.runs.models import Run, ServiceKey, hash_token
from agentloop.teams.access import get_project_for_user, projects_for_user
from agentloop.teams.models import Project
from agentloop.traces.models import Span, SpanAnnotation


def add_span(project, name):
    now = timezone.now()
    return Span.objects.create(
        project=project,
        trace_id="a" * 32,
        span_id=f"{project.pk:016x}",
        name=name,
        start_time=now,
        end_time=now,
        duration_ms=0,
    )


@pytest.fixture
def run(project):
    return Run.objects.create(space=project.space, project=project, config={}, prompt="x")


@pytest.fixture
def token(run):
    _, raw = ServiceKey.mint(run, expires_at=timezone.now() + timedelta(hours=1))
    return raw


def get(token, path):
    return Client().get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_key_is_stored_hashed_with_the_run_scopes(run):
    key, raw = ServiceKey.mint(run, expires_at=None)
    assert raw.startswith("al_sk_") and len(raw) > 40
    assert key.key_hash == hash_token(raw)
    assert not ServiceKey.objects.filter(key_hash__contains=raw[6:]).exists()
    assert key.scopes == ["traces:read", "events:write", "artifacts:write", "spec:read", "llm"]
    assert ServiceKey.authenticate(raw) == key
    assert ServiceKey.authenticate(raw + "x") is None


def test_the_key_reads_its_own_projects_spans(token, project):
    add_span(project, "refund-tool")
    answer = get(token, f"/api/v1/projects/{project.pk}/spans")
    assert answer.status_code == 200
    assert [span["name"] for span in answer.json()["data"]] == ["refund-tool"]
    listed = get(token, "/api/v1/projects/").json()["data"]
    assert [p["id"] for p in listed] == [project.pk]


def test_the_key_gets_404_for_another_project_of_the_same_space(token, space):
    sibling = Project.objects.create(space=space, name="sales-bot")
    add_span(sibling, "secret-span")
    answer = get(token, f"/api/v1/projects/{sibling.pk}/spans")
    assert answer.status_code == 404
    assert "secret-span" not in answer.content.decode()


def test_the_key_gets_404_for_a_project_of_another_space(token, other_project):
    add_span(other_project, "secret-span")
    assert get(token, f"/api/v1/projects/{other_project.pk}/spans").status_code == 404


def test_the_key_may_not_write_annotations(token, project):
    span = add_span(project, "refund-tool")
    answer = Client().post(
        f"/api/v1/projects/{project.pk}/annotations",
        {"span_id": span.span_id, "name": "quality", "label": "bad", "annotator_kind": "LLM"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 403
    assert not SpanAnnotation.objects.exists()


def test_an_expired_key_gets_401(token, run, project):
    ServiceKey.objects.filter(run=run).update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = get(token, f"/api/v1/projects/{project.pk}/spans")
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Unknown, expired or revoked service key."}


def test_a_revoked_key_gets_401(token, run, project):
    ServiceKey.objects.get(run=run).revoke()
    assert get(token, f"/api/v1/projects/{project.pk}/spans").status_code == 401


def test_the_principal_goes_through_the_access_helpers(token, project, other_project):
    from django.http import Http404

    from agentloop.runs.authentication import principal_for_service_key

    principal = principal_for_service_key(ServiceKey.authenticate(token))
    assert principal.scopes == frozenset(ServiceKey.RUN_SCOPES)
    assert get_project_for_user(principal, project.pk, "view") == project
    assert list(projects_for_user(principal)) == [project]
    with pytest.raises(Http404):
        get_project_for_user(principal, other_project.pk, "view")


# --- run_for_token: the hot paths' one-query lookup --------------------------


def test_run_for_token_finds_the_run_with_the_fields_admission_checks(run, token):
    Run.objects.filter(pk=run.pk).update(input_tokens=12, cost_usd="0.5")
    found, scopes = ServiceKey.run_for_token(token)
    assert found.pk == run.pk and found.code == run.code
    assert (found.status, found.input_tokens, str(found.cost_usd)) == (run.status, 12, "0.500000")
    assert found.config == run.config and found.project_id == run.project_id
    assert scopes == list(ServiceKey.RUN_SCOPES)
    assert found.prompt == "x" and found.get_deferred_fields() == set()
    assert not hasattr(found, "key_scopes") and not hasattr(found, "key_to_touch")


def test_run_for_token_refuses_what_authenticate_refuses(run, token):
    assert ServiceKey.run_for_token("") is None
    assert ServiceKey.run_for_token(token + "x") is None
    assert ServiceKey.run_for_token("al_pk_" + token[6:]) is None
    later = timezone.now() + timedelta(hours=2)
    assert ServiceKey.run_for_token(token, now=later) is None  # expired
    assert ServiceKey.authenticate(token, now=later) is None
    ServiceKey.objects.get(run=run).revoke()
    assert ServiceKey.run_for_token(token) is None
    assert ServiceKey.authenticate(token) is None


def test_run_for_token_accepts_a_key_without_expiry(run):
    _, raw = ServiceKey.mint(run, expires_at=None)
    assert ServiceKey.run_for_token(raw)[0].pk == run.pk


def test_run_for_token_notes_the_use_at_most_once_a_minute(run, token):
    key = ServiceKey.objects.get(run=run)
    start = timezone.now()
    ServiceKey.run_for_token(token, now=start)
    key.refresh_from_db()
    assert key.last_used_at == start
    ServiceKey.run_for_token(token, now=start + timedelta(seconds=59))
    key.refresh_from_db()
    assert key.last_used_at == start
    ServiceKey.run_for_token(token, now=start + timedelta(seconds=61))
    key.refresh_from_db()
    assert key.last_used_at == start + timedelta(seconds=61)
