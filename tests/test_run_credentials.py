"""A run's two keys (issue 13): the runner's token reads the spec and posts as the
runner; the harness key the agent holds reaches the span API and the LLM gateway
and nothing else. The spec's secrets are handed out once. Both keys die the moment
the run ends."""

from __future__ import annotations

import pytest
from django.test import Client

from agentloop.gateway.auth import Refusal, authenticate
from agentloop.runs import lifecycle
from agentloop.runs.models import RunStatus
from tests.test_runner_api import CONFIG, Runner, event, launched  # noqa: F401

pytest_plugins = ["tests.fake_sandbox", "tests.gateway_server"]


@pytest.fixture
def keys(launched, fake_provider):  # noqa: F811
    run, runner = launched
    harness = Runner(fake_provider.started[0].env["AGENTLOOP_HARNESS_KEY"])
    return run, runner, harness


def spans(run, key: str):
    return Client().get(
        f"/api/v1/projects/{run.project_id}/spans", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def test_the_harness_key_reads_spans_and_calls_the_gateway_but_never_acts_as_the_runner(
    keys, served_db
):
    run, runner, harness = keys
    runner.post("status", {"state": "running"})

    assert spans(run, harness.token).status_code == 200
    admitted = authenticate({"x-api-key": harness.token})
    assert not isinstance(admitted, Refusal) and admitted[0].pk == run.pk
    for answer in (
        harness.get("spec"),
        harness.post("events", {"events": [event("forged")]}),
        harness.post("artifacts", {"key": "k", "kind": "file", "name": "x", "content": "y"}),
        harness.post("status", {"state": "succeeded"}),
        harness.post("heartbeat", {}),
        harness.get("inbox", wait=0),
    ):
        assert answer.status_code == 403, answer.content
        assert "lacks the" in answer.json()["detail"]
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert not run.events.filter(key="forged").exists()
    assert not run.artifacts.exists()


def test_the_specs_secrets_are_handed_out_once(keys):
    run, runner, _ = keys

    first = runner.get("spec").json()
    second = runner.get("spec").json()

    assert first["env"]["DATADOG_KEY"] == "dd-secret-123456"
    assert first["secrets_withheld"] == []
    assert second["env"] == {"REGION": "eu"}  # the plain env stays
    assert second["secrets_withheld"] == ["AGENTLOOP_HARNESS_KEY", "DATADOG_KEY"]
    assert "dd-secret-123456" not in str(second)
    run.refresh_from_db()
    assert run.secrets_handed_out_at is not None


@pytest.mark.parametrize("end", [RunStatus.SUCCEEDED, RunStatus.CANCELLED, RunStatus.TIMED_OUT])
def test_both_keys_die_the_moment_the_run_ends(keys, end):
    run, runner, harness = keys
    runner.post("status", {"state": "running"})
    assert spans(run, harness.token).status_code == 200

    run.refresh_from_db()
    assert lifecycle.move(run, end) is True

    assert runner.get("spec").status_code == 401
    assert runner.post("heartbeat", {}).status_code == 401
    assert spans(run, harness.token).status_code == 401
    assert spans(run, runner.token).status_code == 401
    refused = authenticate({"x-api-key": harness.token})
    assert isinstance(refused, Refusal) and refused.status == 409
    assert f"The run is {end}" in refused.message
