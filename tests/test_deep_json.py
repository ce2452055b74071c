"""A JSON body nested deeper than the server takes is a 400 with a message, on every JSON endpoint.

Python's JSON parser recurses once per level: about 1,000 levels raised
RecursionError inside it, a 500 on ingest, runner events, artifacts, status,
the gateway and the annotations API. Every request body is now parsed by
agentloop/safe_json.py, which measures the nesting first. Requests go through
the production ASGI application (tests/asgi_client.py), so the plain ASGI apps
and Django's views answer as they do under daphne.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from agentloop import safe_json
from agentloop.runs.models import Artifact, Run, RunEvent, RunStatus, ServiceKey
from agentloop.teams.models import ProjectApiKey
from agentloop.traces.models import Span, SpanAnnotation
from tests.asgi_client import asgi_request

pytest_plugins = ["tests.gateway_server"]  # served_db

DEEP = 1000


def nested(depth: int) -> str:
    """A JSON object whose "payload" holds lists nested `depth` levels deep."""
    return '{"payload": ' + "[" * depth + "]" * depth + "}"


@pytest.fixture
def running(project, served_db):
    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "claude-code", "secret_env": {}},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
    )
    _, token = ServiceKey.mint(run, expires_at=timezone.now() + timedelta(hours=1))
    return run, token


def post(path: str, body: str, **headers) -> tuple[int, str]:
    answer = asgi_request(
        "POST", path, content=body.encode(), headers={"content-type": "application/json", **headers}
    )
    return answer.status_code, answer.text


def test_the_depth_count_ignores_brackets_inside_strings():
    text = json.dumps({"a": ["\\", '"[', {"b": '\\\\"]]]'}], "c": "{{{{"})
    assert safe_json.nesting_depth(text.encode()) == 3
    assert safe_json.loads(text) == json.loads(text)
    assert safe_json.nesting_depth(b"12") == 0


def test_the_limit_is_exact_and_nan_is_not_json():
    assert safe_json.loads(nested(safe_json.MAX_DEPTH - 1))["payload"] is not None
    with pytest.raises(safe_json.JsonError, match="nested deeper than 100 levels"):
        safe_json.loads(nested(safe_json.MAX_DEPTH))
    with pytest.raises(safe_json.JsonError, match="NaN is not a JSON number"):
        safe_json.loads(b'{"score": NaN}')


def test_otlp_ingest_refuses_deep_json_with_a_400(project, served_db):
    _, key = ProjectApiKey.mint(project, "ingest")
    status, text = post("/v1/traces", nested(DEEP), authorization=f"Bearer {key}")
    assert status == 400
    assert json.loads(text)["message"] == (
        "Invalid OTLP trace export: the JSON is nested deeper than 100 levels."
    )
    assert not Span.objects.exists()


def test_runner_events_refuse_deep_json_with_a_400(running):
    run, token = running
    body = '{"events": [{"key": "a", "kind": "message", "source": "agent", "payload": '
    body += "[" * DEEP + "]" * DEEP + "}]}"
    status, text = post("/api/runner/v1/events", body, authorization=f"Bearer {token}")
    assert (status, json.loads(text)) == (
        400,
        {"detail": "The JSON is nested deeper than 100 levels."},
    )
    assert not RunEvent.objects.filter(run=run).exists()


@pytest.mark.parametrize("route", ["artifacts", "status", "heartbeat"])
def test_runner_api_views_refuse_deep_json_with_a_400(running, route):
    run, token = running
    status, text = post(f"/api/runner/v1/{route}", nested(DEEP), authorization=f"Bearer {token}")
    assert (status, json.loads(text)) == (
        400,
        {"detail": "The JSON is nested deeper than 100 levels."},
    )
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert not Artifact.objects.filter(run=run).exists()


def test_the_gateway_refuses_deep_json_with_a_400(running):
    _, token = running
    status, text = post("/llm/anthropic/v1/messages", nested(DEEP), **{"x-api-key": token})
    assert status == 400
    assert json.loads(text)["error"] == {
        "type": "invalid_request_error",
        "message": "The body must be a JSON object. The JSON is nested deeper than 100 levels.",
    }


def test_the_annotations_api_refuses_deep_json_with_a_400(project, served_db):
    _, key = ProjectApiKey.mint(project, "evals")
    status, text = post(
        f"/api/v1/projects/{project.pk}/annotations",
        nested(DEEP),
        authorization=f"Bearer {key}",
    )
    assert (status, json.loads(text)) == (
        400,
        {"detail": "The JSON is nested deeper than 100 levels."},
    )
    assert not SpanAnnotation.objects.exists()
