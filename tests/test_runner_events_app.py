"""`POST /api/runner/v1/events` under daphne, as in production, and in process as tests send it.

agentloop/runs/events_app.py is the only implementation of this path (it
calls runner_api.post_events). The other runner API tests send their event
posts into agentloop.asgi.application in process (tests/asgi_client.py); each
case below goes both to daphne over a socket and in process, and must get the
same status and body; what got stored is checked too.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from agentloop.runs.models import Run, RunEvent, RunStatus, ServiceKey
from tests.asgi_client import asgi_request

pytest_plugins = ["tests.gateway_server"]  # asgi_server, served_db
pytestmark = pytest.mark.production  # also run on PostgreSQL + Redis

PATH = "/api/runner/v1/events"


@pytest.fixture
def running(project, served_db):
    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "secret_env": {}},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
    )
    _, token = ServiceKey.mint(run, expires_at=timezone.now() + timedelta(hours=1))
    return run, token


def message(key: str, text: str = "hello") -> dict:
    return {"key": key, "kind": "message", "source": "agent", "payload": {"text": text}}


def both_ways(asgi_server, token, body, *, method="POST", headers=None):
    """(status, json) from daphne and from the app in process, for the same request."""
    headers = {"Authorization": f"Bearer {token}", **(headers or {})} if token else headers or {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    served = httpx.request(method, asgi_server + PATH, content=content, headers=headers, timeout=20)
    in_process = asgi_request(
        method, PATH, content=content, headers={"content-type": "application/json", **headers}
    )
    return served, (served.status_code, served.json()), (in_process.status_code, in_process.json())


def test_a_batch_is_stored_once_and_the_answers_agree(asgi_server, running):
    run, token = running
    served, served_answer, in_process_answer = both_ways(
        asgi_server, token, {"events": [message("a"), message("b")]}
    )
    # The first post (daphne) stored both; the same batch again, in process, finds them.
    assert served_answer == (200, {"stored": 2, "duplicates": 0, "last_seq": 2, "seqs": [1, 2]})
    assert in_process_answer == (200, {"stored": 0, "duplicates": 2, "last_seq": 2, "seqs": [1, 2]})
    assert served.headers["content-type"] == "application/json"
    assert list(run.events.order_by("seq").values_list("key", flat=True)) == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "The body is not valid JSON ("),
        ({"events": []}, 400, "events is empty."),
        ({"events": [{"key": "a", "kind": "shout"}]}, 400, "kind must be one of"),
        ({"nothing": 1}, 400, "events is required."),
    ],
)
def test_bad_batches_get_the_same_clear_error_and_store_nothing(
    asgi_server, running, body, status, words
):
    run, token = running
    _, served_answer, in_process_answer = both_ways(asgi_server, token, body)
    assert served_answer == in_process_answer
    assert served_answer[0] == status and words in served_answer[1]["detail"]
    assert not RunEvent.objects.filter(run=run).exists()


def test_an_unknown_token_is_a_401_with_a_challenge(asgi_server, running):
    served, served_answer, in_process_answer = both_ways(
        asgi_server, "al_sk_made-up", {"events": []}
    )
    assert (
        served_answer
        == in_process_answer
        == (401, {"detail": "Unknown, expired or revoked run token."})
    )
    assert served.headers["www-authenticate"] == 'Bearer realm="agentloop"'
    served, served_answer, in_process_answer = both_ways(asgi_server, None, {"events": []})
    assert served_answer[0] == in_process_answer[0] == 401


def test_the_api_key_header_works_as_a_bearer_token(asgi_server, running):
    run, token = running
    _, served_answer, _ = both_ways(
        asgi_server, None, {"events": [message("k")]}, headers={"api-key": token}
    )
    assert served_answer[0] == 200 and run.events.get().key == "k"


def test_a_finished_run_takes_no_more_events(asgi_server, running):
    run, token = running
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    _, served_answer, in_process_answer = both_ways(
        asgi_server, token, {"events": [message("late")]}
    )
    assert (
        served_answer
        == in_process_answer
        == (409, {"detail": "The run has already finished (succeeded)."})
    )
    assert not RunEvent.objects.filter(run=run).exists()


def test_a_token_without_the_events_scope_is_refused(asgi_server, running):
    run, token = running
    ServiceKey.objects.filter(run=run).update(scopes=["traces:read"])
    _, served_answer, in_process_answer = both_ways(asgi_server, token, {"events": [message("a")]})
    assert (
        served_answer
        == in_process_answer
        == (403, {"detail": "This token lacks the events:write scope."})
    )


def test_the_wrong_method_is_a_405(asgi_server, running):
    _, token = running
    _, served_answer, in_process_answer = both_ways(asgi_server, token, b"", method="GET")
    assert served_answer == in_process_answer == (405, {"detail": "Use POST."})


def test_a_body_over_the_limit_is_a_413_and_stores_nothing(asgi_server, running, settings):
    run, token = running
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = {"events": [message("big", "x" * 2000)]}
    served = httpx.post(
        asgi_server + PATH, json=big, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    assert served.status_code == 413
    assert served.json() == {"detail": "The request body is larger than 1000 bytes."}
    assert not RunEvent.objects.filter(run=run).exists()


def test_on_sqlite_the_post_leaves_wal_checkpoints_to_their_thread(
    asgi_server, running, monkeypatch
):
    from django.db import connection

    from agentloop.traces import sqlite_wal

    if connection.vendor != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's")
    told = []
    monkeypatch.setattr(sqlite_wal.WalCheckpointer, "committed", lambda self: told.append(self))
    autocheckpoints = []
    real = sqlite_wal.checkpoints_left_to

    def watched(checkpointer, db_connection):
        autocheckpoints.append(checkpointer)
        return real(checkpointer, db_connection)

    monkeypatch.setattr(sqlite_wal, "checkpoints_left_to", watched)
    run, token = running
    _, served_answer, _ = both_ways(asgi_server, token, {"events": [message("w")]})
    assert served_answer[0] == 200
    # Each of the two posts (daphne, in process) left its commit's checkpoint to the thread.
    assert len(told) == 2 and autocheckpoints == told
