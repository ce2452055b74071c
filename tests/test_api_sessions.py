"""What the session, preset and automation routes answer beyond who may call them:
per-field errors, one pagination, events after a seq, conflicts as 409."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from agentloop.automations.models import Automation
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions as run_actions
from agentloop.runs.models import EventKind, EventSource, Run, RunStatus
from agentloop.teams.models import PersonalToken


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    monkeypatch.setattr(run_actions, "enqueue_launch", lambda run: None)


@pytest.fixture
def api(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {PersonalToken.mint(alice, 't')[1]}")
    return client


def make_run(project, status=RunStatus.RUNNING, **fields) -> Run:
    return Run.objects.create(
        space=project.space, project=project, config={"harness": "analyst"}, prompt="p",
        status=status, **fields,
    )  # fmt: skip


def test_a_bad_start_names_each_field(api, project):
    answer = api.post(
        "/api/v1/sessions/",
        {"project": project.pk, "prompt": "Go.", "config": {"harness": "nope", "max_turns": 0}},
        format="json",
    )
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert set(errors) >= {"harness", "max_turns"}
    assert answer.json()["detail"].startswith(("harness: ", "max_turns: "))
    missing = api.post("/api/v1/sessions/", {"project": project.pk}, format="json")
    assert missing.status_code == 400 and missing.json()["errors"] == {
        "prompt": ["This field is required."]
    }
    assert not Run.objects.exists()


def test_a_body_that_is_not_json_is_a_400_not_a_500(api):
    answer = api.generic("POST", "/api/v1/sessions/", "not json", content_type="application/json")
    assert answer.status_code == 400 and "JSON" in answer.json()["detail"]
    listed = api.get("/api/v1/sessions/?status=bogus")
    assert listed.status_code == 400 and listed.json()["detail"].startswith("status: unknown")


def test_sessions_page_by_cursor_without_repeats(api, project):
    runs = [make_run(project) for _ in range(5)]
    first = api.get("/api/v1/sessions/?limit=2").json()
    second = api.get(f"/api/v1/sessions/?limit=2&cursor={first['next_cursor']}").json()
    third = api.get(f"/api/v1/sessions/?limit=2&cursor={second['next_cursor']}").json()
    ids = [r["id"] for page in (first, second, third) for r in page["data"]]
    assert ids == [
        str(r.code) for r in sorted(runs, key=lambda r: (r.created_at, r.pk), reverse=True)
    ]
    assert third["next_cursor"] is None


def test_events_page_after_a_seq(api, project):
    run = make_run(project)
    for n in range(5):
        run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": f"e{n}"})
    page = api.get(f"/api/v1/sessions/{run.code}/events?after=1&limit=2").json()
    assert [e["seq"] for e in page["data"]] == [2, 3] and page["next_cursor"] == "3"
    rest = api.get(f"/api/v1/sessions/{run.code}/events?after={page['next_cursor']}").json()
    assert [e["seq"] for e in rest["data"]] == [4, 5] and rest["next_cursor"] is None


def test_the_stream_ends_with_the_outcome_of_a_finished_run(api, project):
    run = make_run(project, status=RunStatus.SUCCEEDED)
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "done"})
    answer = api.get(
        f"/api/v1/sessions/{run.code}/stream",
        HTTP_LAST_EVENT_ID="0",
        HTTP_ACCEPT="text/event-stream",
    )
    assert answer["Content-Type"] == "text/event-stream"
    body = answer.content.decode()
    assert body.startswith("id: 1\nevent: message\n")
    assert body.endswith(
        'event: end\ndata: {"status": "succeeded", "exit_reason": "", "last_seq": 1}\n\n'
    )


def test_a_follow_up_to_a_finished_run_continues_it(api, project):
    run = make_run(project, status=RunStatus.FAILED)
    answer = api.post(f"/api/v1/sessions/{run.code}/messages", {"text": "More?"}, format="json")
    assert answer.status_code == 201
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED  # launched again, its transcript carried on
    assert run.events.filter(kind="message", payload__text="More?").exists()


def test_a_trigger_refused_by_admission_is_409_with_the_reason(api, project, space, alice):
    preset = AgentPreset.objects.create(space=space, name="p", harness="analyst")
    automation = Automation.objects.create(
        space=space, project=project, preset=preset, name="a", prompt="Look.",
        cron_expression="0 3 * * *", max_concurrent=1, created_by=alice,
    )  # fmt: skip
    first = api.post(f"/api/v1/automations/{automation.pk}/trigger")
    assert first.status_code == 201 and first.json()["session"]["status"] == "queued"
    second = api.post(f"/api/v1/automations/{automation.pk}/trigger")
    assert second.status_code == 409
    assert second.json() == {
        "detail": "Not started. 1 of its runs are still going (at most 1 at once)."
    }
    assert automation.fires.count() == 1


def test_a_preset_in_another_space_cannot_take_a_skill_of_ours(api, space, other_space):
    preset = AgentPreset.objects.create(space=space, name="p", harness="analyst")
    answer = api.patch(f"/api/v1/presets/{preset.pk}/", {"skills": [999]}, format="json")
    assert answer.status_code == 400
    assert answer.json()["errors"] == {"skills": ["No skill 999 in Acme."]}
    taken = api.post(
        "/api/v1/presets/", {"space": space.pk, "name": "p", "harness": "analyst"}, format="json"
    )
    assert taken.status_code == 400
    assert taken.json()["errors"] == {"name": ["Acme already has a preset named p."]}
