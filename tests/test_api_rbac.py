"""Who may do what on every REST route the CLI uses (sessions, presets, skills,
automations, Signal, review), for the space's owner (admin), a member, a
viewer, an outsider (admin of another space) and anonymous.

Each caller uses a personal token, as the CLI does. The rule is the pages':
a thing the caller may not see is 404 (whether or not it exists), a role that
may see it but not do this is 403, no credentials is 401. A success is checked
by what it answers or stored, not only its status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from rest_framework.test import APIClient

from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions as run_actions
from agentloop.runs.models import Artifact, EventKind, EventSource, Run, RunStatus
from agentloop.signal.models import SignalIssue
from agentloop.skills.models import Skill
from agentloop.teams.models import PersonalToken
from tests.skill_factory import custom_skill

CALLERS = ["owner", "member", "viewer", "outsider", "anonymous"]
CAN = {
    "view": {"owner", "member", "viewer"},
    "use": {"owner", "member"},
    "admin": {"owner"},
}
SECRET = "s3cret-value-never-returned"


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    # Who may start a run is the question here, not the sandbox (tests/test_cli_live.py).
    monkeypatch.setattr(run_actions, "enqueue_launch", lambda run: None)


@pytest.fixture
def world(project, alice, space):
    run = Run.objects.create(
        space=space,
        project=project,
        config={"harness": "analyst", "model": "m"},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
        creator=alice,
    )
    run.append_event(EventSource.USER, EventKind.MESSAGE, {"role": "user", "text": "Why?"})
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "Because ours."})
    artifact = Artifact.objects.create(
        run=run, key="inv", kind="investigation", name="ours.md", content="# ours"
    )
    preset = AgentPreset.objects.create(space=space, name="ours", harness="analyst")
    skill = custom_skill(
        space, alice, "ours-skill", "https://example.com/skill.git", env={"TOKEN": SECRET}
    )
    automation = Automation.objects.create(
        space=space,
        project=project,
        preset=preset,
        name="ours-nightly",
        prompt="Look.",
        cron_expression="0 3 * * *",
        created_by=alice,
    )
    issue = SignalIssue.objects.create(project=project, key="k", title="ours failing")
    return {
        "run": run,
        "artifact": artifact,
        "preset": preset,
        "skill": skill,
        "automation": automation,
        "issue": issue,
        "project": project,
        "space": space,
    }


@pytest.fixture
def caller(users):
    def make(who: str) -> APIClient:
        client = APIClient()
        if who != "anonymous":
            _, raw = PersonalToken.mint(users[who], f"{who}'s laptop")
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@dataclass
class Route:
    method: str
    path: str
    need: str
    body: dict | None = None
    status: int = 200
    check: object = None  # check(world, response) for a caller that may
    listing: bool = False  # a list: those who may not see get an empty one, not 404
    params: dict = field(default_factory=dict)


def _ids(response) -> list:
    return [row["id"] for row in response.json()["data"]]


def _check_run_started(w, r):
    run = Run.objects.get(code=r.json()["id"])
    assert run.prompt == "Count the refunds." and run.project_id == w["project"].pk
    assert r.json()["status"] == "queued"
    return True


ROUTES = {
    "sessions list": Route(
        "get",
        "/api/v1/sessions/",
        "view",
        listing=True,
        check=lambda w, r: _ids(r) == [str(w["run"].code)],
    ),
    "session start": Route(
        "post",
        "/api/v1/sessions/",
        "use",
        body=lambda w: {
            "project": w["project"].pk,
            "prompt": "Count the refunds.",
            "config": {"harness": "analyst"},
        },
        status=201,
        check=_check_run_started,
    ),
    "session start from preset": Route(
        "post",
        "/api/v1/sessions/",
        "use",
        body=lambda w: {
            "project": w["project"].pk,
            "prompt": "Count the refunds.",
            "preset": w["preset"].pk,
        },
        status=201,
        check=lambda w, r: Run.objects.get(code=r.json()["id"]).preset_id == w["preset"].pk,
    ),
    "session show": Route(
        "get",
        "/api/v1/sessions/{run}/",
        "view",
        check=lambda w, r: r.json()["prompt"] == "Why do refunds fail?",
    ),
    "session events": Route(
        "get",
        "/api/v1/sessions/{run}/events?after=1",
        "view",
        check=lambda w, r: [e["payload"]["text"] for e in r.json()["data"]] == ["Because ours."],
    ),
    "session stream": Route(
        "get",
        "/api/v1/sessions/{run}/stream?after=1",
        "view",
        check=lambda w, r: "id: 2\nevent: message\n" in r.content.decode(),
    ),
    "session follow-up": Route(
        "post",
        "/api/v1/sessions/{run}/messages",
        "use",
        body={"text": "And ours?"},
        status=201,
        check=lambda w, r: w["run"].events.order_by("-seq").first().payload["text"] == "And ours?",
    ),
    "session stop": Route(
        "post",
        "/api/v1/sessions/{run}/stop",
        "use",
        check=lambda w, r: (
            r.json()["stopping"] and Run.objects.get(pk=w["run"].pk).stop_requested_at is not None
        ),
    ),
    "session artifacts": Route(
        "get",
        "/api/v1/sessions/{run}/artifacts",
        "view",
        check=lambda w, r: [a["name"] for a in r.json()["data"]] == ["ours.md"],
    ),
    "artifact content": Route(
        "get",
        "/api/v1/sessions/{run}/artifacts/{artifact}/content",
        "view",
        check=lambda w, r: r.content == b"# ours",
    ),
    "presets list": Route(
        "get",
        "/api/v1/presets/",
        "view",
        listing=True,
        check=lambda w, r: _ids(r) == [w["preset"].pk],
    ),
    # Members create presets and duplicate any; they change or delete only their
    # own, and "ours" has no creator: an admin's (docs/roles.md, as the pages).
    "preset create": Route(
        "post",
        "/api/v1/presets/",
        "use",
        body=lambda w: {"space": w["space"].pk, "name": "new one", "harness": "analyst"},
        status=201,
        check=lambda w, r: AgentPreset.objects.filter(space=w["space"], name="new one").exists(),
    ),
    "preset show": Route(
        "get", "/api/v1/presets/{preset}/", "view", check=lambda w, r: r.json()["name"] == "ours"
    ),
    "preset update": Route(
        "patch",
        "/api/v1/presets/{preset}/",
        "admin",
        body={"max_turns": 7},
        check=lambda w, r: AgentPreset.objects.get(pk=w["preset"].pk).max_turns == 7,
    ),
    "preset duplicate": Route(
        "post",
        "/api/v1/presets/{preset}/duplicate",
        "use",
        status=201,
        check=lambda w, r: r.json()["name"] == "Copy of ours",
    ),
    "preset delete": Route(
        "delete",
        "/api/v1/presets/{preset}/",
        "admin",
        status=204,
        check=lambda w, r: not AgentPreset.objects.filter(pk=w["preset"].pk).exists(),
    ),
    "skills list": Route(
        "get",
        "/api/v1/skills/",
        "use",
        listing=True,
        check=lambda w, r: _ids(r) == [w["skill"].pk] and SECRET not in r.content.decode(),
    ),
    "skill create": Route(
        "post",
        "/api/v1/skills/",
        "admin",
        body=lambda w: {
            "space": w["space"].pk,
            "kind": "custom",
            "name": "fresh",
            "config": {"repo_url": "https://example.com/fresh.git", "ref": "main"},
            "secrets": {"env.API_KEY": SECRET},
        },
        status=201,
        check=lambda w, r: (
            SECRET not in r.content.decode()
            and Skill.objects.get(name="fresh").secrets() == {"env.API_KEY": SECRET}
        ),
    ),
    "skill show": Route(
        "get",
        "/api/v1/skills/{skill}/",
        "use",
        check=lambda w, r: (
            r.json()["secrets_set"] == ["env.TOKEN"] and SECRET not in r.content.decode()
        ),
    ),
    "skill update": Route(
        "patch",
        "/api/v1/skills/{skill}/",
        "admin",
        body={"secrets": {"env.TOKEN": "rotated-value-123"}},
        check=lambda w, r: (
            Skill.objects.get(pk=w["skill"].pk).secrets()["env.TOKEN"] == "rotated-value-123"
            and "rotated-value-123" not in r.content.decode()
        ),
    ),
    "skill delete": Route(
        "delete",
        "/api/v1/skills/{skill}/",
        "admin",
        status=204,
        check=lambda w, r: not Skill.objects.filter(pk=w["skill"].pk).exists(),
    ),
    "automations list": Route(
        "get",
        "/api/v1/automations/",
        "view",
        listing=True,
        check=lambda w, r: _ids(r) == [w["automation"].pk],
    ),
    "automation create": Route(
        "post",
        "/api/v1/automations/",
        "use",
        body=lambda w: {
            "space": w["space"].pk,
            "project": w["project"].pk,
            "preset": w["preset"].pk,
            "name": "hourly",
            "prompt": "Look again.",
            "trigger": "cron",
            "cron_expression": "0 * * * *",
        },
        status=201,
        check=lambda w, r: Automation.objects.get(name="hourly").next_fire_at is not None,
    ),
    "automation show": Route(
        "get",
        "/api/v1/automations/{automation}/",
        "view",
        check=lambda w, r: r.json()["name"] == "ours-nightly",
    ),
    # An admin's automation: a member changes or deletes only their own (docs/roles.md).
    "automation update": Route(
        "patch",
        "/api/v1/automations/{automation}/",
        "admin",
        body={"cooldown_minutes": 30},
        check=lambda w, r: Automation.objects.get(pk=w["automation"].pk).cooldown_minutes == 30,
    ),
    "automation delete": Route(
        "delete",
        "/api/v1/automations/{automation}/",
        "admin",
        status=204,
        check=lambda w, r: not Automation.objects.filter(pk=w["automation"].pk).exists(),
    ),
    "automation pause": Route(
        "post",
        "/api/v1/automations/{automation}/pause",
        "use",
        body={"reason": "maintenance"},
        check=lambda w, r: (
            r.json()["enabled"] is False
            and Automation.objects.get(pk=w["automation"].pk).paused_reason == "maintenance"
        ),
    ),
    "automation resume": Route(
        "post",
        "/api/v1/automations/{automation}/resume",
        "use",
        check=lambda w, r: Automation.objects.get(pk=w["automation"].pk).enabled,
    ),
    "automation trigger": Route(
        "post",
        "/api/v1/automations/{automation}/trigger",
        "use",
        status=201,
        check=lambda w, r: (
            r.json()["outcome"] == "started"
            and AutomationFire.objects.get(automation=w["automation"]).run is not None
        ),
    ),
    "signal projects": Route(
        "get",
        "/api/v1/signal/projects/",
        "view",
        listing=True,
        check=lambda w, r: [p["project"]["id"] for p in r.json()["data"]] == [w["project"].pk],
    ),
    "signal status": Route(
        "get",
        "/api/v1/projects/{project}/signal",
        "view",
        check=lambda w, r: r.json()["enabled"] is False and r.json()["open_issues"] == 1,
    ),
    "signal enable": Route(
        "post",
        "/api/v1/projects/{project}/signal/enable",
        "use",
        check=lambda w, r: r.json()["enabled"] is True,
    ),
    "signal disable": Route(  # it deletes Signal's automation: admins only
        "post",
        "/api/v1/projects/{project}/signal/disable",
        "admin",
        check=lambda w, r: r.json()["enabled"] is False,
    ),
    "signal run (not enabled: 409)": Route(
        "post",
        "/api/v1/projects/{project}/signal/run",
        "use",
        status=409,
        check=lambda w, r: r.json() == {"detail": "Enable Signal first."},
    ),
    "signal issues": Route(
        "get",
        "/api/v1/projects/{project}/signal/issues",
        "view",
        check=lambda w, r: [i["title"] for i in r.json()["data"]] == ["ours failing"],
    ),
    "signal issue": Route(
        "get",
        "/api/v1/projects/{project}/signal/issues/{issue}",
        "view",
        check=lambda w, r: r.json()["title"] == "ours failing",
    ),
    "review queue": Route(
        "get",
        "/api/v1/review/",
        "use",
        listing=True,
        check=lambda w, r: [a["name"] for a in r.json()["data"]] == ["ours.md"],
    ),
    "review approve": Route(
        "post",
        "/api/v1/review/{artifact}/approve",
        "use",
        body={"comment": "good"},
        check=lambda w, r: Artifact.objects.get(pk=w["artifact"].pk).review_state == "approved",
    ),
    "review reject": Route(
        "post",
        "/api/v1/review/{artifact}/reject",
        "use",
        check=lambda w, r: Artifact.objects.get(pk=w["artifact"].pk).review_state == "rejected",
    ),
}


def _path(route: Route, w) -> str:
    return route.path.format(
        run=w["run"].code,
        artifact=w["artifact"].pk,
        preset=w["preset"].pk,
        skill=w["skill"].pk,
        automation=w["automation"].pk,
        project=w["project"].pk,
        issue=w["issue"].pk,
    )


def _send(client, route: Route, w):
    body = route.body(w) if callable(route.body) else route.body
    method = getattr(client, route.method)
    if body is None:
        return method(_path(route, w))
    return method(_path(route, w), data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("name", list(ROUTES))
def test_each_route_answers_each_role(name, who, world, caller, other_project):
    route = ROUTES[name]
    response = _send(caller(who), route, world)
    body = response.content.decode()
    if who == "anonymous":
        assert response.status_code == 401, body
        assert response["WWW-Authenticate"] == 'Bearer realm="agentloop"'
        return
    if who in CAN[route.need]:
        assert response.status_code == route.status, body
        assert route.check(world, response), body
        return
    if route.listing:
        # Lists only what the caller may see: nothing of Acme.
        assert response.status_code == 200, body
        assert "ours" not in body and "support-bot" not in body
        return
    sees_space = who in CAN["view"]
    if sees_space:
        assert response.status_code == 403, body
    else:
        assert response.status_code == 404, body
        assert "ours" not in body
    assert world["preset"].__class__.objects.filter(pk=world["preset"].pk).exists()


def test_every_new_route_and_method_is_in_the_rbac_table_and_the_schema(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    documented = {
        (method, path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
        and not path.startswith(
            ("/api/v1/projects/{project_id}/spans", "/api/v1/projects/{project_id}/analytics")
        )
        and not path.startswith("/api/v1/projects/{project_id}/traces")
        and not path.startswith("/api/v1/projects/{project_id}/annotations")
        and path != "/api/v1/projects/"
        # Run groups have their own role table: tests/test_comparisons.py.
        and not path.startswith("/api/v1/run-groups/")
    }
    covered = {
        (
            route.method,
            route.path.split("?")[0]
            .replace("{run}", "{code}")
            .replace("{artifact}", "{artifact_id}")
            .replace("{preset}", "{preset_id}")
            .replace("{skill}", "{skill_id}")
            .replace("{automation}", "{automation_id}")
            .replace("{project}", "{project_id}")
            .replace("{issue}", "{issue_id}"),
        )
        for route in ROUTES.values()
    }
    assert documented - covered == set()  # every method of every path


def test_a_member_changes_and_deletes_their_own_preset_and_automation_not_an_admins(
    world, caller, space, users
):
    """docs/roles.md: what a member created is theirs to change; an admin's is not.
    The same needs as the Presets and Automations pages (agentloop.presets.access)."""
    member = caller("member")
    made = member.post(
        "/api/v1/presets/",
        {"space": space.pk, "name": "bob's", "harness": "analyst"},
        format="json",
    )
    assert made.status_code == 201, made.content
    mine = made.json()["id"]
    changed = member.patch(f"/api/v1/presets/{mine}/", {"max_turns": 9}, format="json")
    assert changed.status_code == 200, changed.content
    assert AgentPreset.objects.get(pk=mine).max_turns == 9

    theirs = member.patch(f"/api/v1/presets/{world['preset'].pk}/", {"max_turns": 9}, format="json")
    assert theirs.status_code == 403
    assert "the member who created this preset" in theirs.json()["detail"]
    assert AgentPreset.objects.get(pk=world["preset"].pk).max_turns != 9
    assert member.delete(f"/api/v1/presets/{world['preset'].pk}/").status_code == 403

    assert member.delete(f"/api/v1/presets/{mine}/").status_code == 204
    assert not AgentPreset.objects.filter(pk=mine).exists()

    automation = Automation.objects.create(
        space=space,
        project=world["project"],
        preset=world["preset"],
        name="bob's nightly",
        prompt="Look.",
        cron_expression="0 3 * * *",
        created_by=users["member"],
    )
    url = f"/api/v1/automations/{automation.pk}/"
    assert member.patch(url, {"cooldown_minutes": 45}, format="json").status_code == 200
    assert Automation.objects.get(pk=automation.pk).cooldown_minutes == 45
    assert member.delete(url).status_code == 204
    assert not Automation.objects.filter(pk=automation.pk).exists()
