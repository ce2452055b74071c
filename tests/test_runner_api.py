"""The runner API, as a runner in a sandbox sees it (docs/runner-protocol.md)."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone

from agentloop.runs import actions, inbox
from agentloop.runs.models import (
    Artifact,
    EventSource,
    Run,
    RunEvent,
    RunStatus,
    ServiceKey,
    hash_token,
)
from agentloop.runs.tasks import launch_run
from tests.asgi_client import asgi_request

# fake_provider; served_db, for the event posts, whose app stores on its own thread
pytest_plugins = ["tests.fake_sandbox", "tests.gateway_server"]

URL = "/api/runner/v1/"
CONFIG = {
    "harness": "analyst",
    "sandbox": "fake",
    "time_limit_seconds": 600,
    "model": "claude-test",
    "system_prompt": "Be brief.",
    "allowed_tools": ["Read"],
    "env": {"REGION": "eu"},
    "secret_env": {"DATADOG_KEY": "dd-secret-123456"},
}


# Served by a plain ASGI app, not Django (agentloop/runs/events_app.py): sent
# into agentloop.asgi; a test posting there commits its data (`served_db`).
ASGI_ROUTES = {"events", "inbox"}  # plain ASGI apps: no Django view


class Runner:
    """A test client that calls the runner API with one run's token."""

    def __init__(self, token: str):
        self.token = token
        self.client = Client()

    def get(self, path, **query):
        if path in ASGI_ROUTES:
            target = URL + path + (f"?{urlencode(query)}" if query else "")
            return asgi_request("GET", target, headers=self._authorization())
        return self.client.get(URL + path, query, HTTP_AUTHORIZATION=f"Bearer {self.token}")

    def post(self, path, body):
        data = body if isinstance(body, str) else json.dumps(body)
        if path in ASGI_ROUTES:
            headers = {"content-type": "application/json", **self._authorization()}
            return asgi_request("POST", URL + path, content=data, headers=headers)
        return self.client.post(
            URL + path,
            data,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {self.token}",
        )

    def _authorization(self) -> dict:
        return {"authorization": f"Bearer {self.token}"}


@pytest.fixture
def launched(project, alice, fake_provider, monkeypatch):
    # Launched here, not at commit: the tests that commit (served_db) would launch twice.
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)
    run = actions.start_session(alice, project, CONFIG, "Why do refunds fail?")
    assert launch_run(run.pk) is True
    token = fake_provider.started[0].env["AGENTLOOP_RUN_TOKEN"]
    run.refresh_from_db()
    return run, Runner(token)


@pytest.fixture
def running(launched):
    run, runner = launched
    assert runner.post("status", {"state": "running"}).json() == {"status": "running"}
    run.refresh_from_db()
    return run, runner


def event(key, text="hi", kind="message", source="agent"):
    return {
        "key": key,
        "source": source,
        "kind": kind,
        "payload": {"role": "assistant", "text": text},
    }


def test_launch_builds_the_sandbox_spec(launched, fake_provider, settings):
    run, runner = launched
    spec = fake_provider.started[0]
    assert spec.command == ["python3", "-m", "agentloop.runner"]
    assert spec.env["AGENTLOOP_URL"] == settings.AGENTLOOP_PUBLIC_URL
    assert runner.token.startswith("al_sk_")
    key = ServiceKey.objects.get(run=run, key_hash=hash_token(runner.token))
    assert key.key_hash != runner.token and runner.token not in key.key_hash
    assert key.scopes == ["traces:read", "events:write", "artifacts:write", "spec:read", "llm"]
    assert key.expires_at == run.deadline
    # The agent's processes get the other key: spans and the gateway only.
    harness = spec.env["AGENTLOOP_HARNESS_KEY"]
    harness_key = ServiceKey.objects.get(run=run, key_hash=hash_token(harness))
    assert harness != runner.token
    assert (harness_key.scopes, harness_key.expires_at) == (["traces:read", "llm"], run.deadline)
    assert run.status == RunStatus.PROVISIONING
    assert run.sandbox == {"provider": "fake", "id": f"fake-{run.code}", "data": {"n": 1}}


def test_spec(launched, settings):
    run, runner = launched
    answer = runner.get("spec").json()
    assert answer == {
        "run": str(run.code),
        "project": {"id": run.project_id, "name": "support-bot"},
        "harness": "analyst",
        "model": "claude-test",
        "system_prompt": "Be brief.",
        "prompt": "Why do refunds fail?",
        "max_turns": 50,
        "allowed_tools": ["Read"],
        "time_limit_seconds": 600,
        "api_url": f"{settings.AGENTLOOP_PUBLIC_URL}/api/v1/projects/{run.project_id}/",
        "llm_base_url": f"{settings.AGENTLOOP_PUBLIC_URL}/llm/anthropic",
        "llm_provider": "",  # the analyst calls no model
        "env": {
            "REGION": "eu",
            "DATADOG_KEY": "dd-secret-123456",
            "AGENTLOOP_HARNESS_KEY": run.secret_env()["AGENTLOOP_HARNESS_KEY"],
        },
        "secrets_withheld": [],
        "repository": None,
        "skills": [],
        "status": "provisioning",
        "continued": False,
        "history": [],
        "inbox_after": 0,
        "harness_session_id": None,
        "harness_state": None,
    }


def test_status_moves_the_run_and_records_usage(launched):
    run, runner = launched
    assert runner.post("status", {"state": "running", "harness_session_id": "s-1"}).json() == {
        "status": "running"
    }
    answer = runner.post(
        "status",
        {
            "state": "succeeded",
            "exit_reason": "done",
            "usage": {"input_tokens": 1200, "output_tokens": 340, "cost_usd": 0.0123},
        },
    )
    assert answer.json() == {"status": "succeeded"}
    run.refresh_from_db()
    assert (run.status, run.exit_reason, run.harness_session_id) == ("succeeded", "done", "s-1")
    assert (run.input_tokens, run.output_tokens, str(run.cost_usd)) == (1200, 340, "0.012300")
    assert run.started_at and run.finished_at
    # Its token died with the move: even a retried post of the final state is refused.
    assert runner.post("status", {"state": "succeeded"}).status_code == 401


def test_status_refuses_illegal_moves(launched):
    run, runner = launched
    answer = runner.post("status", {"state": "waiting"})
    assert answer.status_code == 409
    assert answer.json() == {"detail": "A run cannot go from provisioning to waiting."}
    bad = runner.post("status", {"state": "timed_out"})
    assert bad.status_code == 400
    assert (
        "state must be one of running, waiting, succeeded, failed, cancelled"
        in bad.json()["detail"]
    )
    run.refresh_from_db()
    assert run.status == RunStatus.PROVISIONING


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"usage": {}}, "state is required."),
        (["running"], "The body must be a JSON object."),
        ({"state": "running", "usage": [1]}, "usage must be an object."),
        ({"state": "running", "usage": {"input_tokens": -1}}, "usage.input_tokens must be ≥ 0"),
        (
            {"state": "running", "usage": {"output_tokens": True}},
            "usage.output_tokens must be a whole number; got True.",
        ),
        (
            {"state": "running", "usage": {"cost_usd": "NaN"}},
            "usage.cost_usd must be a number; got 'NaN'.",
        ),
        # Run.cost_usd holds 12 digits, 6 after the point: more would fail in the database.
        (
            {"state": "running", "usage": {"cost_usd": 2_000_000}},
            "usage.cost_usd must be ≤ 999999.999999; got 2000000.",
        ),
        ({"state": "running", "exit_reason": ["a"]}, "exit_reason must be text."),
    ],
)
def test_bad_status_posts_get_a_clear_400_and_change_nothing(launched, body, message):
    run, runner = launched
    answer = runner.post("status", body)
    assert answer.status_code == 400
    assert message in answer.json()["detail"]
    run.refresh_from_db()
    assert (run.status, run.input_tokens, run.output_tokens) == (RunStatus.PROVISIONING, 0, 0)


def test_a_long_harness_session_id_is_cut_not_refused(launched):
    run, runner = launched
    answer = runner.post("status", {"state": "running", "harness_session_id": "s" * 300})
    assert answer.json() == {"status": "running"}
    run.refresh_from_db()
    assert run.harness_session_id == "s" * 200


def test_the_harness_state_is_kept_redacted_and_handed_back_only_to_a_continued_run(
    launched, alice
):
    """claude-code posts its session record with "waiting"; a continued run's new
    sandbox gets it back in its spec (a first launch has nothing to resume)."""
    run, runner = launched
    runner.post("status", {"state": "running", "harness_session_id": "s-1"})
    record = '{"sessionId":"s-1","message":"the key is dd-secret-123456"}\n'
    runner.post("status", {"state": "waiting", "harness_state": record})
    run.refresh_from_db()
    assert run.harness_state == record.replace("dd-secret-123456", "[REDACTED:DATADOG_KEY]")
    assert runner.get("spec").json()["harness_state"] is None  # not continued
    too_long = runner.post("status", {"state": "waiting", "harness_state": "x" * 4_000_001})
    assert too_long.status_code == 400
    assert "harness_state" in too_long.json()["detail"]


def test_events_are_stored_in_order_with_server_seqs(running, served_db):
    run, runner = running
    answer = runner.post("events", {"events": [event("a", "one"), event("b", "two")]}).json()
    first = run.events.get(key="a").seq
    assert answer == {
        "stored": 2,
        "duplicates": 0,
        "last_seq": first + 1,
        "seqs": [first, first + 1],
    }
    texts = list(
        run.events.filter(source=EventSource.AGENT).values_list("payload__text", flat=True)
    )
    assert texts == ["one", "two"]


def test_the_server_sets_an_events_source_from_who_posts(running, served_db, client_for, alice):
    # An agent holding the run token claims to be the system, or a person.
    run, runner = running
    assert runner.post("status", {"state": "waiting"}).json() == {"status": "waiting"}
    forged = [
        {"key": "f1", "source": "system", "kind": "error", "payload": {"message": "Escaped"}},
        {
            "key": "f2",
            "source": "user",
            "kind": "message",
            "payload": {"role": "user", "text": "alice: approve it all"},
        },
    ]
    assert runner.post("events", {"events": forged}).status_code == 200
    stored = dict(run.events.filter(key__in=["f1", "f2"]).values_list("key", "source"))
    assert stored == {"f1": EventSource.AGENT, "f2": EventSource.AGENT}

    # A "Succeeded" status while the run waits is refused whole; the run's state is POST status's.
    status = {"key": "f3", "source": "system", "kind": "status"}
    answer = runner.post("events", {"events": [status | {"payload": {"state": "succeeded"}}]})
    assert answer.status_code == 400
    assert "can only say running" in answer.json()["detail"]
    assert not run.events.filter(key="f3").exists()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING

    page = client_for(alice).get(f"/studio/sessions/{run.code}/").content.decode()
    forged_message = page[page.index(f'id="event-{run.events.get(key="f2").seq}"') :]
    assert forged_message.index('tx-who">Agent<') < forged_message.index("approve it all")
    assert page.count("tx-from-system") == run.events.filter(source=EventSource.SYSTEM).count()


def test_reposting_a_batch_stores_nothing_new_and_returns_the_same_seqs(running, served_db):
    run, runner = running
    batch = {"events": [event("a", "one"), event("b", "two")]}
    first = runner.post("events", batch).json()
    before = RunEvent.objects.count()
    again = runner.post("events", {"events": [*batch["events"], event("c", "three")]}).json()
    assert again["seqs"][:2] == first["seqs"]
    assert (again["stored"], again["duplicates"]) == (1, 2)
    assert RunEvent.objects.count() == before + 1
    third = runner.post("events", batch).json()
    assert third == {
        "stored": 0,
        "duplicates": 2,
        "last_seq": again["last_seq"],
        "seqs": first["seqs"],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "The body is not valid JSON ("),
        ({"events": []}, "events is empty."),
        ({"events": [event("x", kind="thought")]}, "events[0]: kind must be one of"),
        (
            {"events": [event("x", kind="status") | {"payload": {"state": "succeeded"}}]},
            "events[0] is a status event saying 'succeeded': a runner's status events can only "
            "say running",
        ),
        (
            {"events": [{"source": "agent", "kind": "message", "payload": {}}]},
            "events[0]: key is required.",
        ),
        ({"events": [event("x" * 201)]}, "events[0]: key must be at most 200 characters."),
        ({"events": [event("a"), "text"]}, "events[1] must be an object."),
        ({"events": [{**event("x"), "payload": "text"}]}, "events[0]: payload must be an object."),
        (
            {"events": [event(str(i)) for i in range(501)]},
            "events must have at most 500 items; got 501.",
        ),
        ({"nothing": 1}, "events is required."),
        ([event("a")], "The body must be a JSON object."),
    ],
)
def test_bad_event_batches_get_a_clear_400_and_store_nothing(running, served_db, body, message):
    run, runner = running
    before = RunEvent.objects.count()
    answer = runner.post("events", body)
    assert answer.status_code == 400
    assert message in answer.json()["detail"]
    assert RunEvent.objects.count() == before


def test_a_batch_of_500_is_accepted(running, served_db):
    run, runner = running
    answer = runner.post("events", {"events": [event(str(i)) for i in range(500)]}).json()
    assert answer["stored"] == 500
    assert list(run.events.filter(source="agent").values_list("key", flat=True)) == [
        str(i) for i in range(500)
    ]


def test_artifacts_are_idempotent_by_key(running):
    run, runner = running
    body = {
        "key": "inv-1",
        "kind": "investigation",
        "name": "Refund failures",
        "content": "# Findings\nThe refund tool times out.",
        "metadata": {"spans": 3},
    }
    first = runner.post("artifacts", body)
    assert first.status_code == 201
    artifact = Artifact.objects.get()
    assert first.json() == {"id": artifact.pk, "created": True}
    assert (artifact.kind, artifact.name, artifact.metadata) == (
        "investigation",
        "Refund failures",
        {"spans": 3},
    )
    assert artifact.review_state == "pending"
    again = runner.post("artifacts", {**body, "content": "changed"})
    assert again.json() == {"id": artifact.pk, "created": False}
    assert Artifact.objects.get().content.startswith("# Findings")
    # The runner posts the transcript's artifact event itself; the server adds none.
    assert not run.events.filter(kind="artifact").exists()


def test_a_bad_artifact_gets_a_clear_400(running):
    run, runner = running
    answer = runner.post("artifacts", {"key": "k", "kind": "poem", "name": "x"})
    assert answer.status_code == 400
    assert (
        "kind must be one of investigation, eval_labels, file, branch; got 'poem'"
        in answer.json()["detail"]
    )
    assert not Artifact.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "file", "name": "notes.txt"}, "key is required."),
        ({"key": "k", "kind": "file", "name": "   "}, "name must not be empty."),
        ({"key": "k", "kind": "file", "name": "n" * 301}, "name must be at most 300 characters."),
        ({"key": "k", "kind": "file", "name": "x", "content": 7}, "content must be text."),
        ({"key": "k", "kind": "file", "name": "x", "metadata": []}, "metadata must be an object."),
        (
            {"key": "k", "kind": "branch", "name": "x", "url": "ftp://example.com/x"},
            "url must be an http(s) URL.",
        ),
        ("[]", "The body must be a JSON object."),
    ],
)
def test_bad_artifacts_get_a_400_naming_the_field(running, body, message):
    run, runner = running
    answer = runner.post("artifacts", body)
    assert answer.status_code == 400
    assert message in answer.json()["detail"]
    assert not Artifact.objects.exists()


def test_an_artifact_name_is_stored_trimmed(running):
    run, runner = running
    body = {"key": "k", "kind": "file", "name": "  notes.txt \n", "content": "x"}
    assert runner.post("artifacts", body).status_code == 201
    assert Artifact.objects.get().name == "notes.txt"


def test_a_runner_cannot_report_a_pull_request(running):
    run, runner = running
    answer = runner.post(
        "artifacts",
        {"key": "pr", "kind": "pull_request", "name": "#1", "url": "https://github.com/a/b/pull/1"},
    )
    assert answer.status_code == 400
    assert "opened when a reviewer approves the run's branch" in answer.json()["detail"]
    assert not Artifact.objects.exists()


def test_heartbeat_records_life_and_passes_on_stop(running, alice):
    run, runner = running
    assert runner.post("heartbeat", {}).json() == {"status": "running", "stop": False}
    run.refresh_from_db()
    assert run.last_heartbeat_at is not None
    actions.cancel(alice, run)
    assert runner.post("heartbeat", {}).json() == {"status": "running", "stop": True}


class FakeClock:
    """Time for the inbox long-poll: a wait no ring ends is over at once, and the clock moves."""

    def __init__(self):
        self.now = 1000.0
        self.waited: list[float] = []
        self.on_wait = None  # called (on the test's thread) as each wait begins

    def clock(self):
        return self.now

    async def wait_for_ring(self, bell, seconds):
        self.waited.append(seconds)
        if self.on_wait:
            await sync_to_async(self.on_wait, thread_sensitive=True)()
        if not bell.is_set():
            self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(inbox, "clock", clock.clock)
    monkeypatch.setattr(inbox, "wait_for_ring", clock.wait_for_ring)
    return clock


def test_inbox_returns_at_once_with_a_followup(running, served_db, alice, fake_clock):
    run, runner = running
    followup = actions.send_followup(alice, run, "And the 500s?")
    answer = runner.get("inbox", after=0, wait=25).json()
    # The first prompt came with the spec; only the follow-up is new.
    assert answer == {"followups": [{"seq": followup.seq, "text": "And the 500s?"}], "stop": False}
    assert fake_clock.waited == []
    assert runner.get("inbox", after=followup.seq, wait=0).json() == {
        "followups": [],
        "stop": False,
    }


def test_inbox_returns_at_once_on_a_stop_request(running, served_db, alice, fake_clock):
    run, runner = running
    actions.cancel(alice, run)
    assert runner.get("inbox", after=0, wait=25).json() == {"followups": [], "stop": True}
    assert fake_clock.waited == []


def test_the_safety_recheck_finds_a_followup_no_doorbell_announced(running, served_db, fake_clock):
    """Another process's write on an in-memory channel layer rings nobody here (in
    this test the follow-up is stored without a ring): the slow re-check finds it."""
    run, runner = running

    def store_without_ring():
        (seq,) = run.allocate_seqs(1)
        RunEvent.objects.create(
            run=run, seq=seq, key="quiet", source="user", kind="message",
            payload={"role": "user", "text": "now?"},
        )  # fmt: skip
        return True

    fake_clock.on_wait = lambda: len(fake_clock.waited) == 2 and store_without_ring()
    answer = runner.get("inbox", after=0, wait=25).json()
    assert [f["text"] for f in answer["followups"]] == ["now?"]
    assert fake_clock.waited == [inbox.SAFETY_SECONDS, inbox.SAFETY_SECONDS]


def test_inbox_gives_up_after_wait_seconds(running, served_db, fake_clock):
    run, runner = running
    answer = runner.get("inbox", after=0, wait=3).json()
    assert answer == {"followups": [], "stop": False}
    assert fake_clock.waited == [3]


def test_inbox_wait_is_capped_at_25_seconds(running, served_db, fake_clock):
    run, runner = running
    runner.get("inbox", after=0, wait=3600)
    assert sum(fake_clock.waited) == pytest.approx(25)


def test_inbox_refuses_a_wait_that_is_not_a_number(running, served_db):
    run, runner = running
    answer = runner.get("inbox", after=0, wait="soon")
    assert answer.status_code == 400
    assert answer.json() == {"detail": "wait must be a whole number; got 'soon'."}


def test_a_finished_runs_token_is_dead_at_once(running, served_db):
    run, runner = running
    runner.post("status", {"state": "succeeded"})
    before = RunEvent.objects.count()
    answer = runner.post("events", {"events": [event("late")]})
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Unknown, expired or revoked run token."}
    assert runner.post("artifacts", {"key": "k", "kind": "file", "name": "x"}).status_code == 401
    assert runner.post("status", {"state": "running"}).status_code == 401
    assert runner.get("spec").status_code == 401
    assert RunEvent.objects.count() == before
    assert not Artifact.objects.exists()
    # A runner that missed the end learns it from the 401: it stops (STOP_GONE).
    assert runner.post("heartbeat", {}).status_code == 401


@pytest.mark.parametrize("path", ["spec", "inbox"])
def test_a_bad_token_gets_401(launched, path):
    for token in ["", "al_sk_nope", "al_pk_something", "garbage"]:
        answer = Runner(token).get(path)
        assert answer.status_code == 401
        assert answer.json() == {"detail": "Unknown, expired or revoked run token."}


def test_an_expired_or_revoked_token_gets_401(launched, served_db):
    run, runner = launched
    key = ServiceKey.objects.get(run=run, key_hash=hash_token(runner.token))
    ServiceKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert runner.post("events", {"events": [event("a")]}).status_code == 401
    ServiceKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    assert runner.post("heartbeat", {}).status_code == 200
    key.revoke()
    assert runner.post("heartbeat", {}).status_code == 401
    assert not run.events.filter(source="agent").exists()


def test_one_runs_token_never_touches_another_run(
    launched, served_db, project, alice, fake_provider
):
    run, runner = launched
    other = actions.start_session(alice, project, CONFIG, "Another question")
    launch_run(other.pk)
    runner.post("status", {"state": "running"})
    runner.post("events", {"events": [event("mine")]})
    assert not Run.objects.get(pk=other.pk).events.filter(key="mine").exists()
    assert Run.objects.get(pk=other.pk).status == RunStatus.PROVISIONING


def test_it_rejects_the_wrong_method(launched, served_db):
    run, runner = launched
    answer = runner.get("events")
    assert answer.status_code == 405
    assert answer.json() == {"detail": "Use POST."}
