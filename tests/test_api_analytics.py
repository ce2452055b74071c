"""GET /api/v1/projects/<id>/analytics: who may read it, what it answers, bad parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from django.test import Client
from django.utils import timezone

from agentloop.runs.models import Run, ServiceKey
from agentloop.teams.models import ProjectApiKey
from tests.span_factory import make_span

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
CALLERS = ["owner", "member", "viewer", "outsider", "anonymous", "project_key", "other_key"]
READERS = {"owner", "member", "viewer", "project_key"}


@pytest.fixture
def world(project, other_project):
    make_span(project, name="ours", status="ERROR", start=T0, attributes={"region": "eu"})
    make_span(project, name="ours", status="OK", start=T0 + timedelta(minutes=1))
    make_span(other_project, name="theirs", status="ERROR", start=T0)


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


def url(project) -> str:
    return f"/api/v1/projects/{project.pk}/analytics"


@pytest.mark.parametrize("who", CALLERS)
def test_who_may_read_the_analytics(caller, who, world, project):
    response = caller(who).get(url(project), {**WINDOW, "group_by": "name"})

    if who in READERS:
        assert response.status_code == 200
        body = response.json()
        assert [(g["key"], g["spans"], g["errors"]) for g in body["groups"]] == [
            ({"name": "ours"}, 2, 1)
        ]
    elif who == "anonymous":
        assert response.status_code == 401
    else:
        assert response.status_code == 404
        assert response.json() == {"detail": "No such project."}
    assert "theirs" not in response.content.decode()


def test_a_runs_service_key_reads_its_own_project_only(world, project, other_project):
    run = Run.objects.create(space=project.space, project=project, config={}, prompt="x")
    _, raw = ServiceKey.mint(run, expires_at=timezone.now() + timedelta(hours=1))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    ours = client.get(url(project), WINDOW)
    theirs = client.get(url(other_project), WINDOW)

    assert ours.status_code == 200
    assert ours.json()["total"]["spans"] == 2
    assert theirs.status_code == 404


def test_the_answer_has_buckets_baseline_and_times_as_iso(client_for, alice, world, project):
    response = client_for(alice).get(
        url(project),
        {**WINDOW, "group_by": "attr:region", "bucket": "6h", "baseline": "previous"},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["window"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
    assert body["baseline_window"]["start"] == "2025-12-31T00:00:00Z"
    assert body["bucket_seconds"] == 6 * 3600
    assert [b["spans"] for b in body["total"]["buckets"]] == [0, 0, 2, 0]
    eu = next(g for g in body["groups"] if g["key"] == {"attr:region": "eu"})
    assert eu["error_rate"] == 1.0
    assert eu["baseline"]["spans"] == 0
    assert eu["vs_baseline"]["error_rate_ratio"] is None


@pytest.mark.parametrize(
    "params, message",
    [
        ({"group_by": "colour"}, "group_by: expected one of"),
        ({"bucket": "1s"}, "bucket: 1s makes 86400 buckets"),
        ({"baseline": "yesterday"}, "baseline: expected a duration"),
        ({"limit": "lots"}, "limit: must be a whole number"),
        ({"status": "BROKEN"}, "status: must be one of"),
        ({"min_duration_ms": "-1"}, "min_duration_ms: must be a number of milliseconds >= 0"),
        ({"start": "yesterday"}, "start: not an ISO 8601 time"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(client_for, alice, world, project, params, message):
    response = client_for(alice).get(url(project), {**WINDOW, **params})

    assert response.status_code == 400
    assert response.json()["detail"].startswith(message)


def test_the_spans_endpoint_takes_the_duration_and_exception_filters(client_for, alice, project):
    events = [{"name": "exception", "attributes": {"exception.type": "TimeoutError"}}]
    make_span(project, name="slow", start=T0, duration_ms=3000, events=events)
    make_span(project, name="quick", start=T0, duration_ms=30)
    client = client_for(alice)
    spans = f"/api/v1/projects/{project.pk}/spans"

    slow = client.get(spans, {"min_duration_ms": "1000"}).json()["data"]
    quick = client.get(spans, {"max_duration_ms": "1000"}).json()["data"]
    timeouts = client.get(spans, {"exception_type": "TimeoutError"}).json()["data"]

    assert [s["name"] for s in slow] == ["slow"]
    assert [s["name"] for s in quick] == ["quick"]
    assert [s["name"] for s in timeouts] == ["slow"]


def test_the_schema_documents_the_route_and_its_parameters(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = yaml.safe_load(response.content)

    operation = schema["paths"]["/api/v1/projects/{project_id}/analytics"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {
        "group_by",
        "bucket",
        "baseline",
        "baseline_start",
        "baseline_end",
        "limit",
        "min_duration_ms",
        "max_duration_ms",
        "exception_type",
        "annotation",
        "attr",
        "start",
        "end",
    } <= names
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Analytics"}


def test_a_nul_character_in_a_filter_is_a_400_not_a_500(client, alice, project):
    # PostgreSQL text cannot hold NUL: found by tests/test_schemathesis.py.
    client.force_login(alice)
    response = client.get(f"/api/v1/projects/{project.pk}/analytics", {"annotation": "\x00"})
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
