"""One schema for the runner protocol (agentloop/runs/protocol.py): the doc is generated
from it, the server's answers fit it, the double agrees with the server, and what the
real (standard library only) runner sends validates against it."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pydantic
import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from agentloop.runner.client import RunnerClient
from agentloop.runner.harnesses.base import TurnResult
from agentloop.runner.harnesses.claude_code import StreamJsonParser
from agentloop.runs import actions, inbox, models, protocol, protocol_doc, recording, runner_api
from agentloop.runs.tasks import launch_run
from tests import runner_double
from tests.runner_double import WINDOW, RunnerDouble, synthetic_spans
from tests.test_runner_loop import make_runner

pytest_plugins = ["tests.fake_sandbox"]  # the fake_provider fixture

CLAUDE_FIXTURES = Path(__file__).parent / "fixtures" / "claude"


# -- the doc -------------------------------------------------------------------------------


def test_the_doc_section_is_what_the_models_say():
    in_doc = protocol_doc.current(protocol_doc.DOC.read_text())

    assert in_doc is not None, "docs/runner-protocol.md lost its generated-section markers"
    assert in_doc == protocol_doc.render(), (
        "docs/runner-protocol.md is stale: run python -m agentloop.runs.protocol_doc"
    )


def test_the_json_schema_file_is_what_the_models_say():
    assert protocol_doc.SCHEMA_FILE.read_text() == protocol_doc.schema_text(), (
        "docs/runner-protocol.schema.json is stale: run python -m agentloop.runs.protocol_doc"
    )


def test_a_changed_model_makes_the_doc_stale(monkeypatch):
    doc = protocol_doc.DOC.read_text()
    monkeypatch.setattr(protocol, "DOCUMENTED", (*protocol.DOCUMENTED[:-1],))

    assert protocol_doc.current(doc) != protocol_doc.render()


# -- one vocabulary --------------------------------------------------------------------------


def literal(model, field) -> tuple:
    return tuple(a for a in typing.get_args(model.model_fields[field].annotation) if a)


def test_the_vocabularies_are_the_run_models():
    assert protocol.RUN_STATUSES == tuple(models.RunStatus.values)
    assert protocol.EVENT_KINDS == tuple(models.EventKind.values)
    assert protocol.EVENT_SOURCES == tuple(models.EventSource.values)
    assert protocol.ARTIFACT_KINDS == tuple(
        k for k in models.ArtifactKind.values if k != models.ArtifactKind.PULL_REQUEST
    )
    assert literal(protocol.Event, "kind") == protocol.EVENT_KINDS
    assert "source" not in protocol.Event.model_fields  # the server's to say
    assert literal(protocol.Artifact, "kind") == protocol.ARTIFACT_KINDS
    assert literal(protocol.StatusPost, "state") == protocol.RUNNER_STATES
    assert set(protocol.PAYLOADS) == set(protocol.EVENT_KINDS)


def test_the_doubles_state_machine_is_the_servers():
    runner_states = set(protocol.RUNNER_STATES)
    for status, targets in runner_double.TRANSITIONS.items():
        assert targets == set(models.TRANSITIONS[status]) & runner_states, status
    # Every status a runner can find its run in while it may still move it.
    assert set(runner_double.TRANSITIONS) == {"provisioning", "running", "waiting"}
    assert runner_double.TERMINAL == set(models.TERMINAL)


# -- the server's answers ---------------------------------------------------------------------


CONFIG = {"harness": "analyst", "sandbox": "fake", "env": {"REGION": "eu"}}


class Runner:
    def __init__(self, token):
        self.token, self.client, self.auth = token, Client(), f"Bearer {token}"

    def get(self, path, **query):
        answer = self.client.get(f"/api/runner/v1/{path}", query, HTTP_AUTHORIZATION=self.auth)
        return answer.status_code, answer.json()

    def post(self, path, body):
        answer = self.client.post(
            f"/api/runner/v1/{path}",
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=self.auth,
        )
        return answer.status_code, answer.json()


def test_every_answer_of_the_server_fits_the_schema(project, alice, fake_provider, settings):
    settings.AGENTLOOP_ALLOW_FILE_REPOSITORIES = True
    config = {**CONFIG, "repository": {"url": "file:///srv/shop.git", "base_branch": "main"}}
    run = actions.start_session(alice, project, config, "Why do refunds fail?")
    assert launch_run(run.pk) is True
    runner = Runner(fake_provider.started[0].env["AGENTLOOP_RUN_TOKEN"])

    status, spec = runner.get("spec")
    assert status == 200 and protocol.Spec.model_validate(spec).repository.url.startswith("file:")
    status, answer = runner.post("status", {"state": "running", "usage": {"input_tokens": 1}})
    assert protocol.StatusAnswer.model_validate(answer).status == "running"
    event = {"key": "a", "kind": "message", "payload": {"role": "assistant", "text": "hi"}}
    # The function every events post goes through, whichever server answers the path.
    status, answer = runner_api.post_events(runner.token, json.dumps({"events": [event] * 2}))
    assert protocol.EventsAnswer.model_validate(answer).duplicates == 1
    actions.send_followup(alice, run, "And the 500s?")
    # What the inbox long-poll (plain ASGI, agentloop/runs/inbox_app.py) answers with.
    answer = inbox.look(run.pk, 0)
    assert protocol.InboxAnswer.model_validate(answer).followups[0].text == "And the 500s?"
    artifact = {"key": "f", "kind": "file", "name": "notes.txt", "content": "x"}
    status, answer = runner.post("artifacts", artifact)
    assert status == 201 and protocol.ArtifactAnswer.model_validate(answer).created
    status, answer = runner.post("heartbeat", {})
    assert protocol.HeartbeatAnswer.model_validate(answer).stop is False
    for status, answer in [
        runner_api.post_events(runner.token, b'{"events": []}'),
        runner.post("status", {"state": "queued"}),
        Runner("al_sk_nope").get("spec"),
    ]:
        assert status in (400, 401)
        assert protocol.ErrorBody.model_validate(answer).detail


# -- the double agrees with the server -------------------------------------------------------


BAD_BATCHES = [
    {"events": []},
    {"nothing": 1},
    {"events": [{"key": "", "kind": "message"}]},
    {"events": [{"key": "a", "kind": "thought", "source": "user"}]},
    {"events": [{"key": str(i), "kind": "message"} for i in range(501)]},
]


@pytest.mark.parametrize("body", BAD_BATCHES)
def test_the_double_refuses_a_batch_as_the_server_does(body):
    with pytest.raises(ValidationError) as server:
        recording.validate_events(body)
    with RunnerDouble() as double:
        client = RunnerClient(double.url, double.token, sleep=lambda s: None, log=lambda m: None)
        with pytest.raises(Exception) as raised:
            client.post("/api/runner/v1/events", body)

    assert raised.value.message == f"HTTP 400: {server.value.messages[0]}"
    assert double.events == []


def test_a_payload_off_its_kind_fails_the_test_using_the_double():
    double = RunnerDouble().start()
    client = RunnerClient(double.url, double.token, sleep=lambda s: None, log=lambda m: None)
    # The server stores it (any object); the runner must never write it.
    client.post_events([{"key": "a", "kind": "message", "payload": {"txt": "typo"}}])
    double.close()

    with pytest.raises(AssertionError, match=r"event a \(message\) has a payload off the schema"):
        double.check_protocol()


def test_a_spec_the_server_could_not_send_is_refused_at_once():
    with pytest.raises(AssertionError, match="off the schema"):
        RunnerDouble(spec={"allowed_tools": "Read"})


# -- what the real runner sends -------------------------------------------------------------


def request_bodies(double) -> list[tuple[str, dict]]:
    return [
        (r["path"].rsplit("/", 1)[-1], json.loads(r["raw"] or b"{}"))
        for r in double.requests
        if r["method"] == "POST"
    ]


REQUESTS = {
    "events": protocol.EventBatch,
    "artifacts": protocol.Artifact,
    "status": protocol.StatusPost,
}


def assert_fits(route: str, body: dict) -> None:
    if route == "heartbeat":
        assert body == {}
        return
    REQUESTS[route].model_validate(body)
    for event in body.get("events", []) if route == "events" else []:
        protocol.PAYLOADS[event["kind"]].model_validate(event["payload"])


class UsageHarness:
    """A one-turn harness that reports usage and a session, so the final status carries both."""

    name = "usage"
    interactive = False

    def __init__(self, spec, workspace, env, sink):
        self.workspace, self.sink = workspace, sink

    def run_turn(self, prompt):
        self.sink.emit("status", {"state": "running", "detail": "thinking"})
        (self.workspace / "artifacts" / "notes.md").write_text("# Notes\n")
        usage = {"input_tokens": 1200, "output_tokens": 340, "cost_usd": 0.0123}
        return TurnResult(ok=True, session_id="sess-1", usage=usage)

    def stop(self):
        pass


@pytest.mark.parametrize(
    ("spec", "spans", "harness"),
    [
        ({"harness": "analyst", "window": WINDOW}, synthetic_spans(), None),
        ({"harness": "usage"}, [], UsageHarness),
        ({"harness": "gpt-pilot"}, [], None),  # an unknown harness: error event, failed
    ],
    ids=["analyst", "usage", "unknown-harness"],
)
def test_what_the_real_runner_posts_fits_the_schema(tmp_path, spec, spans, harness):
    with RunnerDouble(spec=spec, spans=spans) as double:
        code = make_runner(double, tmp_path, harness).run()
        bodies = request_bodies(double)

    assert code in (0, 1)
    assert {route for route, _ in bodies} >= {"events", "status"}
    for route, body in bodies:
        assert_fits(route, body)
    assert double.protocol_problems == []


def test_the_runner_clients_bodies_fit_the_schema():
    sent: list[tuple[str, dict]] = []

    class Recording(RunnerClient):
        def post(self, path, body, **kwargs):
            sent.append((path.rsplit("/", 1)[-1], body))
            return {}

    client = Recording("http://127.0.0.1:9", "al_sk_x")
    client.post_status(
        "failed",
        exit_reason="the time limit passed",
        harness_session_id="sess-1",
        usage={"input_tokens": 5, "output_tokens": 2, "cost_usd": 0.000123},
    )
    client.post_status("running", exit_reason=None, harness_session_id=None, usage=None)
    client.post_artifact("branch-1", "branch", "agentloop/x", "3 commits", {"commits": 3})
    client.post_artifact("file-1", "file", "notes.txt", "x")
    client.heartbeat()

    for route, body in sent:
        assert_fits(route, body)
    assert [route for route, _ in sent] == [
        "status",
        "status",
        "artifacts",
        "artifacts",
        "heartbeat",
    ]


class SchemaSink:
    def __init__(self):
        self.kinds: list[str] = []

    def emit(self, kind: str, payload: dict, source: str = "agent") -> None:
        protocol.Event.model_validate({"key": "k", "kind": kind, "payload": payload})
        protocol.PAYLOADS[kind].model_validate(json.loads(json.dumps(payload)))
        self.kinds.append(kind)


@pytest.mark.parametrize("fixture", sorted(p.name for p in CLAUDE_FIXTURES.glob("*.jsonl")))
def test_claude_code_events_fit_the_payload_schema(fixture):
    # Real Claude Code output (tests/fixtures/claude/), turned into events as the harness does.
    sink = SchemaSink()
    parser = StreamJsonParser(sink)
    for line in (CLAUDE_FIXTURES / fixture).read_text().splitlines(keepends=True):
        parser.feed(line)

    assert sink.kinds


# -- messages ---------------------------------------------------------------------------------


def problem_of(model, data) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(data)
    return protocol.problem(caught.value)


def test_a_message_names_the_first_three_problems_and_counts_the_rest():
    events = [{"key": "", "kind": "message"} for _ in range(5)]

    message = problem_of(protocol.EventBatch, {"events": events})

    assert message == (
        "events[0]: key must not be empty. events[1]: key must not be empty. "
        "events[2]: key must not be empty. (2 more problems.)"
    )


def test_what_was_sent_is_quoted_clipped():
    message = problem_of(protocol.EventBatch, {"events": [{"key": "a", "kind": "x" * 10_000}]})

    assert message.startswith("events[0]: kind must be one of message, tool_call,")
    assert message.endswith("; got '" + "x" * 56 + "....")


def test_nested_fields_are_named_with_dots():
    message = problem_of(protocol.StatusPost, {"state": "running", "usage": {"cost_usd": "x"}})

    assert message == "usage.cost_usd must be a number; got 'x'."
