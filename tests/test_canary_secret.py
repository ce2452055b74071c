"""A canary secret planted in skills must never come back out.

The canaries go into a custom skill's env secret and a GitHub skill's token
(through the skills page, as an admin would). A session uses both skills; its
"runner" echoes them in events (whole, and split across two events), in a
follow-up, an artifact and its exit reason. Then every page we can reach, every
API response, every stored row of every table, and every log record is
searched for the canaries. The one place they must be is the sandbox's env.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import urllib.parse

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from agentloop.automations.models import Automation
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions
from agentloop.runs.models import Artifact, RunEvent
from agentloop.runs.tasks import launch_run
from agentloop.runs.worker_trace import root_span_id, trace_id_for
from agentloop.signal.models import SignalIssue
from agentloop.skills.models import Skill
from agentloop.teams.models import ProjectApiKey
from agentloop.traces.models import Span
from tests.asgi_client import asgi_request
from tests.fake_anthropic import FakeAnthropic, text
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeOpenAI

# fake_provider; served_db, for the event posts, whose app stores on its own threads
pytest_plugins = ["tests.fake_sandbox", "tests.gateway_server"]

CANARY = "canary-7f3a9c2e5b1d4f608a2c91"
GH_CANARY = "ghp_canary0b9e8d7c6b5a4f3e2d1c0b9a8"
# The deployment's model keys: they may go upstream, and nowhere else.
PROVIDER_CANARIES = {
    "AGENTLOOP_ANTHROPIC_API_KEY": "sk-ant-canary-3e9d1b7a5c2f4e6081",
    "AGENTLOOP_OPENAI_API_KEY": "sk-proj-canary-8c1f2a9d7e3b5c4a60",
    "AGENTLOOP_GEMINI_API_KEY": "AIzaCanary5d2e8f1a9b3c7d6e4f0a",
}
CANARIES = (CANARY, GH_CANARY, *PROVIDER_CANARIES.values())
RUNNER = "/api/runner/v1/"


# The run's two keys, once the scene has launched it: they must not show either.
TOKENS: list[str] = []


def encoded(value: str) -> list[str]:
    """What an agent would print: the value, `echo $X | base64`, hex, URL, JSON escapes."""
    return [
        value,
        base64.b64encode((value + "\n").encode()).decode(),
        base64.b64encode(value.encode()).decode(),
        value.encode().hex(),
        urllib.parse.quote(value, safe=""),
        "".join(f"\\u{ord(c):04x}" for c in value),
    ]


def leaks(text: str) -> list[str]:
    return [form for c in (*CANARIES, *TOKENS) for form in encoded(c) if form in text]


def walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def reachable_urls(values: dict[str, list]) -> tuple[list[str], list[str]]:
    """Every route of the project with its parameters filled from `values`.

    Returns (urls, routes skipped because a parameter has no value)."""
    urls, skipped = [], []
    for route in walk(get_resolver().url_patterns):
        if route.startswith("^") or "(?P" in route or "django-admin/" in route:
            continue  # regex routes: the admin's catch-alls
        names = [name for _, name in PARAM.findall(route)]
        if any(name not in values for name in names):
            skipped.append(route)
            continue
        for combo in itertools.product(*(values[name] for name in names)):
            url = route
            for name, value in zip(names, combo, strict=True):
                url = PARAM.sub(
                    lambda m, v=value, n=name: str(v) if m.group(2) == n else m.group(0),
                    url,
                    count=1,
                )
            urls.append("/" + url)
    return urls, skipped


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        return ""  # long-lived streams (none of ours hold secrets at rest)
    return response.content.decode(errors="replace")


@pytest.fixture
def scene(
    project,
    alice,
    bob,
    fake_provider,
    client_for,
    caplog,
    django_capture_on_commit_callbacks,
    served_db,
    monkeypatch,
    settings,
    model_upstreams,
):
    """Plant the canaries, run a session that leaks them everywhere it can."""
    for name, value in PROVIDER_CANARIES.items():
        setattr(settings, name, value)
    settings.AGENTLOOP_LLM_UPSTREAM_URL = model_upstreams["anthropic"].url
    settings.AGENTLOOP_OPENAI_UPSTREAM_URL = model_upstreams["openai"].url
    settings.AGENTLOOP_GEMINI_UPSTREAM_URL = model_upstreams["gemini"].url
    for server in model_upstreams.values():
        server.script([text("ok"), text("ok")])
    # Launched below, not at commit (the scene commits: served_db), so not twice.
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)
    caplog.set_level(logging.DEBUG)
    # Every SQL statement and its parameters, logged: no query may carry a canary either.
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    owner = client_for(alice)
    space = project.space
    created = owner.post(
        f"/skills/spaces/{space.pk}/new/custom/",
        {
            "name": "canary tools",
            "repo_url": "https://example.com/tools.git",
            "ref": "main",
            "env_secrets": f"CANARY_TOKEN={CANARY}",
        },
    )
    assert created.status_code == 302
    owner.post(
        f"/skills/spaces/{space.pk}/new/github/",
        {"name": "GitHub", "token_type": "personal", "token": GH_CANARY},
    )
    skills = list(Skill.objects.filter(space=space).values_list("pk", flat=True))
    assert len(skills) == 2

    run = actions.start_session(
        alice,
        project,
        {"harness": "analyst", "sandbox": "fake", "skills": skills},
        f"Check that {CANARY} works.",  # a person pasting the secret into the prompt
    )
    assert launch_run(run.pk) is True
    env = fake_provider.started[0].env
    runner = Client(HTTP_AUTHORIZATION=f"Bearer {env['AGENTLOOP_RUN_TOKEN']}")
    TOKENS[:] = [env["AGENTLOOP_RUN_TOKEN"], env["AGENTLOOP_HARNESS_KEY"]]

    answers = []  # every runner API answer except the spec

    def post(path, body):
        if path == "events":
            # A plain ASGI app, not a Django view (agentloop/runs/events_app.py), storing on
            # its own threads' connections: DEBUG logs their SQL as force_debug_cursor does ours.
            headers = {"authorization": f"Bearer {env['AGENTLOOP_RUN_TOKEN']}"}
            with override_settings(DEBUG=True):
                answer = asgi_request(
                    "POST", RUNNER + path, content=json.dumps(body), headers=headers
                )
        else:
            answer = runner.post(RUNNER + path, json.dumps(body), content_type="application/json")
        assert answer.status_code in (200, 201), answer.content
        answers.append(answer.content.decode())
        return answer

    spec = runner.get(RUNNER + "spec").json()  # the runner needs them: the one sanctioned copy
    post("status", {"state": "running"})
    # One model call per provider through the gateway, with the run token.
    token = env["AGENTLOOP_RUN_TOKEN"]
    for path, body, headers in MODEL_CALLS:
        headers = {k: v.format(token=token) for k, v in headers.items()}
        with override_settings(DEBUG=True):
            answer = asgi_request("POST", path, content=json.dumps(body), headers=headers)
        assert answer.status_code == 200, answer.text
        answers.append(answer.text)
    cut = 11
    post(
        "events",
        {
            "events": [
                # Payloads shaped as the claude-code harness emits them.
                {
                    "key": "e1",
                    "kind": "message",
                    "payload": {
                        "role": "assistant",
                        "text": f"My token is {CANARY} ok",
                        "message_id": "m1",
                    },
                },
                {
                    "key": "e2",
                    "kind": "tool_call",
                    "payload": {
                        "id": "t1",
                        "name": "Bash",
                        "input": {
                            "command": f"echo $CANARY_TOKEN # {CANARY}",
                            GH_CANARY: "as a key",
                        },
                    },
                },
                {
                    "key": "e3",
                    "kind": "tool_result",
                    "payload": {
                        "tool_call_id": "t1",
                        "output": f"GH_TOKEN={GH_CANARY}",
                        "is_error": False,
                    },
                },
                # Streamed output: the secret split across two consecutive events.
                {
                    "key": "e4",
                    "kind": "message",
                    "payload": {
                        "role": "assistant",
                        "text": "the value: " + CANARY[:cut],
                        "message_id": "m2",
                    },
                },
                {
                    "key": "e5",
                    "kind": "message",
                    "payload": {
                        "role": "assistant",
                        "text": CANARY[cut:] + " (end)",
                        "message_id": "m3",
                    },
                },
            ]
        },
    )
    post(
        "artifacts",
        {
            "key": "investigation.md:abc",
            "kind": "investigation",
            "name": "investigation.md",
            "content": f"# Findings\n\nThe env held {CANARY} and {GH_CANARY}.\n",
            "metadata": {"note": CANARY},
        },
    )
    # A file named after the secret: the runner's key is built from the name.
    for _ in range(2):  # posted twice (a retry): stored once
        post(
            "artifacts",
            {
                "key": f"notes/{GH_CANARY}.txt:0123abcd",
                "kind": "file",
                "name": f"notes/{GH_CANARY}.txt",
                "content": "see the name",
            },
        )
    post(
        "events",
        {
            "events": [
                {
                    "key": "e6",
                    "kind": "artifact",
                    "payload": {"name": "investigation.md", "preview": GH_CANARY},
                },
                # An agent printing its secrets and keys encoded, as a viewer could decode them.
                {
                    "key": "e7",
                    "kind": "tool_result",
                    "payload": {
                        "tool_call_id": "t2",
                        "output": "\n".join(
                            form
                            for value in (CANARY, GH_CANARY, *TOKENS)
                            for form in encoded(value)
                        ),
                        "is_error": False,
                    },
                },
            ]
        },
    )
    answers.append(runner.get(RUNNER + "inbox", {"wait": 0}).content.decode())
    post("heartbeat", {})
    post("status", {"state": "waiting"})
    actions.send_followup(bob, run, f"Also try {GH_CANARY} please")
    post("status", {"state": "succeeded", "exit_reason": f"done with {CANARY}"})
    run.refresh_from_db()

    # A second run whose sandbox fails to start: its failure is logged.
    fake_provider.fail_start = "no capacity"
    failed = actions.start_session(
        alice, project, {"harness": "analyst", "sandbox": "fake", "skills": skills}, "Again."
    )
    assert launch_run(failed.pk) is False
    fake_provider.fail_start = None
    connection.force_debug_cursor = False
    return {
        "run": run,
        "env": env,
        "spec": spec,
        "owner": owner,
        "caplog": caplog,
        "runner_answers": answers,
    }


MODEL_CALLS = [
    (
        "/llm/anthropic/v1/messages",
        {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [], "tools": [{"name": "x"}]},
        {"x-api-key": "{token}", "anthropic-version": "2023-06-01"},
    ),
    ("/llm/openai/v1/responses", {"model": "gpt-5", "input": [], "tools": [{"name": "x"}]},
     {"authorization": "Bearer {token}"}),
    ("/llm/openai/v1/chat/completions", {"model": "gpt-5", "messages": [], "stream": True,
     "tools": [{"name": "x"}]}, {"authorization": "Bearer {token}"}),
    ("/llm/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
     {"contents": [], "tools": [{"functionDeclarations": [{"name": "x"}]}]},
     {"x-goog-api-key": "{token}"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def model_upstreams():
    servers = {"anthropic": FakeAnthropic(), "openai": FakeOpenAI(), "gemini": FakeGemini()}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.close()


def test_the_sandbox_holds_no_provider_key_and_only_the_upstreams_get_them(scene, model_upstreams):
    provider_keys = list(PROVIDER_CANARIES.values())
    assert [k for k in provider_keys if k in json.dumps(scene["env"])] == []
    assert [k for k in provider_keys if k in json.dumps(scene["spec"])] == []
    # The gateway's calls reached each upstream with that provider's key, and were recorded.
    seen = {
        name: json.dumps([r["headers"] for r in server.requests])
        for name, server in model_upstreams.items()
    }
    assert PROVIDER_CANARIES["AGENTLOOP_ANTHROPIC_API_KEY"] in seen["anthropic"]
    assert PROVIDER_CANARIES["AGENTLOOP_OPENAI_API_KEY"] in seen["openai"]
    assert PROVIDER_CANARIES["AGENTLOOP_GEMINI_API_KEY"] in seen["gemini"]
    for name, headers in seen.items():
        others = [k for n, k in PROVIDER_CANARIES.items() if name.upper() not in n]
        assert [k for k in others if k in headers] == [], name
    worker = scene["run"].space.worker_project()
    assert Span.objects.filter(project=worker, kind="LLM").count() == len(MODEL_CALLS)


def test_encoded_copies_of_secrets_and_keys_are_stored_as_markers(scene):
    output = RunEvent.objects.get(run=scene["run"], key="e7").payload["output"]
    assert leaks(output) == []
    assert output.count("[REDACTED:") >= 6 * 4
    for name in ("CANARY_TOKEN", "GH_TOKEN", "AGENTLOOP_RUN_TOKEN", "AGENTLOOP_HARNESS_KEY"):
        assert f"[REDACTED:{name}]" in output


def test_the_sandbox_gets_the_canaries(scene):
    env = scene["env"]
    assert env["CANARY_TOKEN"] == CANARY and env["GH_TOKEN"] == GH_CANARY
    assert scene["spec"]["env"]["CANARY_TOKEN"] == CANARY


def test_runner_api_answers_do_not_echo_canaries(scene):
    assert len(scene["runner_answers"]) == 10 + len(MODEL_CALLS)
    assert leaks("".join(scene["runner_answers"])) == []


def test_stored_events_and_artifacts_hold_markers_not_canaries(scene):
    run = scene["run"]
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    stored = json.dumps([e.payload for e in events]) + json.dumps([e.key for e in events])
    assert leaks(stored) == []
    by_key = {e.key: e.payload for e in events}
    assert by_key["e1"]["text"] == "My token is [REDACTED:CANARY_TOKEN] ok"
    assert by_key["e2"]["input"] == {
        "command": "echo $CANARY_TOKEN # [REDACTED:CANARY_TOKEN]",
        "[REDACTED:GH_TOKEN]": "as a key",
    }
    assert by_key["e4"]["text"] == "the value: [REDACTED:CANARY_TOKEN]"
    assert by_key["e5"]["text"] == "[REDACTED:CANARY_TOKEN] (end)"
    assert by_key["prompt"]["text"] == "Check that [REDACTED:CANARY_TOKEN] works."
    artifact, named = Artifact.objects.filter(run=run).order_by("pk")
    for stored in (artifact, named):
        assert leaks(stored.content + json.dumps(stored.metadata) + stored.name + stored.key) == []
    assert "[REDACTED:GH_TOKEN]" in artifact.content
    assert named.name == "notes/[REDACTED:GH_TOKEN].txt"
    assert run.exit_reason == "done with [REDACTED:CANARY_TOKEN]"


def test_no_table_holds_a_canary_in_the_clear(scene):
    # Every row of every model, as the database returns it: only ciphertext may hold them.
    found = []
    for model in apps.get_models():
        for row in model.objects.all().values():
            if leaks(repr(row)):
                found.append(f"{model._meta.label} {row.get('id')}")
    assert found == []


def test_no_page_or_api_response_shows_a_canary(scene, project, alice, other_space):
    run, owner = scene["run"], scene["owner"]
    space = project.space
    skill_ids = list(Skill.objects.values_list("pk", flat=True))
    membership = space.memberships.first()
    _, raw_key = ProjectApiKey.mint(project, name="reader")
    # A preset that uses the skills: its pages list them.
    preset = AgentPreset.objects.create(space=space, name="with skills", harness="analyst")
    preset.skills.set(Skill.objects.filter(space=space))
    values = {
        "space_id": [space.pk],
        "project_id": [project.pk, space.worker_project().pk],
        "skill_id": skill_ids,
        "kind": ["github", "traces_api", "datadog", "custom"],
        "code": [run.code],
        "trace_id": [trace_id_for(run)],
        "span_id": [root_span_id(run)],
        "membership_id": [membership.pk],
        "key_id": list(ProjectApiKey.objects.values_list("pk", flat=True)) or [1],
        "preset_id": [preset.pk],
        "automation_id": list(Automation.objects.values_list("pk", flat=True)) or [1],
        "artifact_id": list(run.artifacts.values_list("pk", flat=True)),
        "issue_id": list(SignalIssue.objects.values_list("pk", flat=True)) or [1],
        "group_id": [1],  # side-by-side groups: none in this scene (a 404 page)
        "object_id": [run.pk],
        "id": [alice.pk],
        "session_id": ["sess-1"],
        # Phoenix's paths name a project by id or name.
        "identifier": [project.pk, space.worker_project().pk, project.name],
        "token_id": [1],
    }
    urls, skipped = reachable_urls(values)
    assert skipped == [], f"routes without test values: {skipped}"
    assert f"/skills/spaces/{space.pk}/{skill_ids[0]}/edit/" in urls
    assert f"/studio/sessions/{run.code}/" in urls

    pages_seen = 0
    for url in urls:
        for response in (owner.get(url), owner.get(url, HTTP_HX_REQUEST="true")):
            text = body_of(response) + json.dumps(dict(response.headers))
            assert leaks(text) == [], f"GET {url} shows a canary"
            pages_seen += response.status_code == 200
    assert pages_seen > 20  # the walk really rendered pages, not just redirects

    # The session's own pages render the redacted transcript.
    session = owner.get(f"/studio/sessions/{run.code}/").content.decode()
    swarm = owner.get(f"/swarms/runs/{run.code}/").content.decode()
    assert "REDACTED" in session + swarm

    # The REST API with a project key, as a script would call it.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    api_urls = [u for u in urls if u.startswith(("/api/v1/", "/v1/"))]
    assert len(api_urls) >= 8
    for url in api_urls:
        assert leaks(body_of(api.get(url))) == [], f"API {url} shows a canary"


def test_the_admin_shows_no_canary_to_a_superuser(scene, alice):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(root)
    run = scene["run"]
    admin_pages = [
        "/django-admin/runs/run/",
        f"/django-admin/runs/run/{run.pk}/change/",
        "/django-admin/runs/runevent/",
        "/django-admin/runs/artifact/",
    ]
    admin_pages += [
        f"/django-admin/runs/runevent/{pk}/change/"
        for pk in run.events.values_list("pk", flat=True)
    ]
    admin_pages += [
        f"/django-admin/runs/artifact/{pk}/change/"
        for pk in run.artifacts.values_list("pk", flat=True)
    ]
    for url in admin_pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert leaks(response.content.decode()) == [], f"admin {url} shows a canary"


def test_no_log_record_mentions_a_canary(scene):
    caplog = scene["caplog"]
    records = caplog.get_records("setup") + caplog.get_records("call")  # the scene is set up
    names = {record.name for record in records}
    assert {"django.db.backends", "agentloop.runs.tasks"} <= names, "the capture is not working"
    assert any("INSERT" in r.getMessage() and "runs_runevent" in r.getMessage() for r in records)
    # The runner's own events too, stored by the events app on its database thread.
    assert any("runs_runevent" in r.getMessage() and "'e5'" in r.getMessage() for r in records)
    for record in records:
        text = record.getMessage() + repr(record.args) + (record.exc_text or "")
        assert leaks(text) == [], f"log {record.name}: {record.getMessage()[:80]}"
