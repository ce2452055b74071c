"""Secrets are replaced before anything is stored, even when split across events."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from agentloop.runs import actions
from agentloop.runs.models import Artifact, RunStatus
from agentloop.runs.redaction import prepare, redact, redact_batch
from agentloop.runs.tasks import launch_run
from tests.asgi_client import asgi_request

# fake_provider; served_db, for the event post, whose app stores on its own thread
pytest_plugins = ["tests.fake_sandbox", "tests.gateway_server"]

SECRETS = prepare(
    [("GITHUB_TOKEN", "ghp_abcdef123456"), ("AGENTLOOP_RUN_TOKEN", "al_sk_xyz987654")]
)


def test_it_replaces_secrets_in_every_string_recursively():
    payload = {
        "text": "token ghp_abcdef123456 and al_sk_xyz987654",
        "nested": [{"deep": "x=ghp_abcdef123456;"}, 42, None, True],
        "ghp_abcdef123456": "as a key",
    }
    assert redact(payload, SECRETS) == {
        "text": "token [REDACTED:GITHUB_TOKEN] and [REDACTED:AGENTLOOP_RUN_TOKEN]",
        "nested": [{"deep": "x=[REDACTED:GITHUB_TOKEN];"}, 42, None, True],
        "[REDACTED:GITHUB_TOKEN]": "as a key",
    }


def test_it_ignores_values_too_short_to_be_secrets():
    assert prepare([("FLAG", "yes"), ("EMPTY", "")]) == []
    assert redact({"text": "yes"}, prepare([("FLAG", "yes")])) == {"text": "yes"}


def test_the_longer_secret_wins_when_one_contains_another():
    secrets = prepare([("SHORT", "abcdef"), ("LONG", "abcdef-ghijkl")])
    assert redact("x abcdef-ghijkl y abcdef", secrets) == "x [REDACTED:LONG] y [REDACTED:SHORT]"


@pytest.mark.parametrize("cut", [1, 5, 8, 15])
def test_a_secret_split_across_two_events_is_redacted_in_both(cut):
    secret = "ghp_abcdef123456"
    payloads = [
        {"role": "assistant", "text": "the token is " + secret[:cut]},
        {"role": "assistant", "text": secret[cut:] + " — use it"},
    ]
    first, second = redact_batch(payloads, SECRETS)
    assert first == {"role": "assistant", "text": "the token is [REDACTED:GITHUB_TOKEN]"}
    assert second == {"role": "assistant", "text": "[REDACTED:GITHUB_TOKEN] — use it"}
    assert payloads[0]["text"].endswith(secret[:cut])  # the caller's data is not changed


def test_harmless_neighbours_are_left_alone():
    payloads = [{"text": "ends with ghp_"}, {"text": "starts differently"}]
    assert redact_batch(payloads, SECRETS) == payloads


@pytest.fixture
def runner(project, alice, fake_provider, monkeypatch):
    # Launched here, not at commit: the test that commits (served_db) would launch twice.
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)
    config = {
        "harness": "analyst",
        "sandbox": "fake",
        "secret_env": {"GITHUB_TOKEN": "ghp_abcdef123456"},
    }
    run = actions.start_session(alice, project, config, "go")
    launch_run(run.pk)
    token = fake_provider.started[0].env["AGENTLOOP_RUN_TOKEN"]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def post(path, body):
        if path == "events":  # a plain ASGI app, not a Django view (runs/events_app.py)
            headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
            return asgi_request(
                "POST", "/api/runner/v1/events", content=json.dumps(body), headers=headers
            )
        return client.post(
            f"/api/runner/v1/{path}", json.dumps(body), content_type="application/json"
        )

    post("status", {"state": "running"})
    run.refresh_from_db()
    return run, token, post


def test_the_runner_api_stores_events_redacted(runner, served_db):
    run, token, post = runner
    half = len(token) // 2
    batch = [
        {
            "key": "1",
            "kind": "tool_result",
            "payload": {"output": f"export T={token}", "is_error": False},
        },
        {"key": "2", "kind": "message", "payload": {"text": "GITHUB_TOKEN=ghp_abcdef123456"}},
        {"key": "3", "kind": "message", "payload": {"text": "part " + token[:half]}},
        {"key": "4", "kind": "message", "payload": {"text": token[half:] + " end"}},
    ]
    assert post("events", {"events": batch}).status_code == 200
    stored = {e.key: e.payload for e in run.events.filter(source="agent")}
    assert stored["1"]["output"] == "export T=[REDACTED:AGENTLOOP_RUN_TOKEN]"
    assert stored["2"]["text"] == "GITHUB_TOKEN=[REDACTED:GITHUB_TOKEN]"
    assert stored["3"]["text"] == "part [REDACTED:AGENTLOOP_RUN_TOKEN]"
    assert stored["4"]["text"] == "[REDACTED:AGENTLOOP_RUN_TOKEN] end"
    everything = json.dumps([e.payload for e in run.events.all()])
    assert token not in everything and "ghp_abcdef123456" not in everything


def test_the_runner_api_stores_artifacts_and_exit_reasons_redacted(runner):
    run, token, post = runner
    post(
        "artifacts",
        {
            "key": "a",
            "kind": "investigation",
            "name": "uses ghp_abcdef123456",
            "content": f"curl -H 'Authorization: Bearer {token}'",
            "metadata": {"env": {"GITHUB_TOKEN": "ghp_abcdef123456"}},
        },
    )
    artifact = Artifact.objects.get()
    assert artifact.name == "uses [REDACTED:GITHUB_TOKEN]"
    assert artifact.content == "curl -H 'Authorization: Bearer [REDACTED:AGENTLOOP_RUN_TOKEN]'"
    assert artifact.metadata == {"env": {"GITHUB_TOKEN": "[REDACTED:GITHUB_TOKEN]"}}
    post("status", {"state": "failed", "exit_reason": f"auth failed for {token}"})
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.exit_reason == "auth failed for [REDACTED:AGENTLOOP_RUN_TOKEN]"


def test_followups_are_stored_redacted(runner, alice):
    run, token, post = runner
    event = actions.send_followup(alice, run, "try ghp_abcdef123456")
    assert event.payload["text"] == "try [REDACTED:GITHUB_TOKEN]"
