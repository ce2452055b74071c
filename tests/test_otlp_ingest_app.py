"""`POST /v1/traces` under daphne, as in production, and in process as the other tests send it.

agentloop/traces/ingest_app.py is the only implementation of this path. Most
ingest tests (tests/test_otlp_ingest.py) send their requests into
agentloop.asgi.application in process (tests/asgi_client.py); each case here
goes both to daphne over a socket and in process, and must get the same
status, content type and body, so what the in-process tests see is what an
exporter sees.
"""

from __future__ import annotations

import gzip
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from agentloop.teams.models import ProjectApiKey
from agentloop.traces.models import Span
from tests.asgi_client import asgi_request
from tests.otlp_payloads import export_request, new_trace_id, span

pytest_plugins = ["tests.gateway_server"]  # asgi_server, served_db

PATH = "/v1/traces"
PB = "application/x-protobuf"


@pytest.fixture
def key(project, alice, served_db):
    return ProjectApiKey.mint(project, "ingest", created_by=alice)[1]


def export(n: int = 3) -> bytes:
    trace_id = new_trace_id()
    spans = [span(trace_id=trace_id, name=f"step-{i}") for i in range(n)]
    return export_request(({"service.name": "shop"}, spans)).SerializeToString()


def both_ways(asgi_server, body: bytes, headers: dict):
    """(daphne, in process) as (status, content type, body) for the same request."""
    served = httpx.post(asgi_server + PATH, content=body, headers=headers, timeout=20)
    in_process = asgi_request("POST", PATH, content=body, headers=headers)
    return tuple(
        (answer.status_code, answer.headers.get("content-type"), answer.content)
        for answer in (served, in_process)
    )


def test_an_export_is_stored_once_and_both_ways_answer_alike(asgi_server, key, project):
    body = export(3)
    served, in_process = both_ways(
        asgi_server, body, {"content-type": PB, "authorization": f"Bearer {key}"}
    )
    assert served == in_process  # the second send is a re-send: stored once, same answer
    assert served[:2] == (200, PB)
    assert Span.objects.filter(project=project).count() == 3


def test_gzip_and_the_api_key_header_work(asgi_server, key, project):
    body = gzip.compress(export(2))
    served = httpx.post(
        asgi_server + PATH,
        content=body,
        headers={"content-type": PB, "content-encoding": "gzip", "api-key": key},
        timeout=20,
    )
    assert served.status_code == 200
    assert Span.objects.filter(project=project).count() == 2


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": PB}, export(1), 401),
        ({"content-type": PB, "authorization": "Bearer al_pk_made-up"}, export(1), 401),
        ({"content-type": "text/plain", "authorization": "KEY"}, b"hello", 415),
        ({"content-type": PB, "content-encoding": "br", "authorization": "KEY"}, b"x", 415),
        ({"content-type": PB, "authorization": "KEY"}, b"\xff\xff not protobuf", 400),
        ({"content-type": "application/json", "authorization": "KEY"}, b"{nope", 400),
    ],
)
def test_bad_requests_get_the_same_answer_both_ways_and_store_nothing(
    asgi_server, key, project, headers, body, status
):
    headers = {name: value.replace("KEY", f"Bearer {key}") for name, value in headers.items()}
    served, in_process = both_ways(asgi_server, body, headers)
    assert served == in_process
    assert served[0] == status
    assert not Span.objects.filter(project=project).exists()


def test_a_body_over_the_limit_is_a_413(asgi_server, key, project, settings):
    settings.OTLP_MAX_BODY_BYTES = 100
    served, in_process = both_ways(
        asgi_server, export(20), {"content-type": PB, "authorization": f"Bearer {key}"}
    )
    assert served == in_process and served[0] == 413
    assert not Span.objects.filter(project=project).exists()


def test_project_for_token_matches_authenticate(project, alice):
    key, raw = ProjectApiKey.mint(project, "ci", created_by=alice)
    assert ProjectApiKey.project_for_token(raw) == ProjectApiKey.authenticate(raw).project
    found = ProjectApiKey.project_for_token(raw)
    assert (found.name, found.space_id) == (project.name, project.space_id)
    assert not hasattr(found, "key_to_touch")
    assert ProjectApiKey.project_for_token(raw + "x") is None
    assert ProjectApiKey.project_for_token("al_sk_" + raw[6:]) is None
    assert ProjectApiKey.project_for_token(None) is None
    key.revoke()
    assert ProjectApiKey.project_for_token(raw) is None


def test_project_for_token_notes_the_use_at_most_once_a_minute(project, alice):
    key, raw = ProjectApiKey.mint(project, "ci", created_by=alice)
    start = timezone.now()
    ProjectApiKey.project_for_token(raw, now=start)
    key.refresh_from_db()
    assert key.last_used_at == start
    ProjectApiKey.project_for_token(raw, now=start + timedelta(seconds=59))
    key.refresh_from_db()
    assert key.last_used_at == start
    ProjectApiKey.project_for_token(raw, now=start + timedelta(seconds=61))
    key.refresh_from_db()
    assert key.last_used_at == start + timedelta(seconds=61)
