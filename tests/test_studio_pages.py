"""Studio pages: the gallery, starting a session, the session page, follow-ups and stop.

Every page and every POST is checked for the owner, a member, a viewer, an
outsider and an anonymous visitor, asserting what they see or what was stored.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from agentloop.runs import actions
from agentloop.runs.models import Artifact, EventKind, EventSource, Run, RunEvent, RunStatus

pytest_plugins = ["tests.fake_sandbox"]  # the fake_provider fixture

CONFIG = {"harness": "analyst", "sandbox": "fake"}
ROLES = ["owner", "member", "viewer", "outsider", "anonymous"]


@pytest.fixture
def who(users):
    return lambda role: None if role == "anonymous" else users[role]


@pytest.fixture
def run(project, alice, fake_provider):
    """A running session started by alice, with a little transcript."""
    run = actions.start_session(alice, project, CONFIG, "Why do refunds fail?")
    run.transition(RunStatus.PROVISIONING)
    run.transition(RunStatus.RUNNING)
    run.append_event(
        EventSource.AGENT,
        EventKind.MESSAGE,
        {"role": "assistant", "text": "Looking at **refund** spans."},
    )
    run.append_event(
        EventSource.AGENT,
        EventKind.TOOL_CALL,
        {"id": "t1", "name": "search_spans", "input": {"status": "ERROR"}},
    )
    run.append_event(
        EventSource.AGENT,
        EventKind.TOOL_RESULT,
        {"tool_call_id": "t1", "output": "3 spans", "is_error": False},
    )
    run.refresh_from_db()
    return run


def session_url(run):
    return reverse("studio-session", kwargs={"code": run.code})


# --- gallery -----------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_gallery(role, who, project, client_for):
    response = client_for(who(role)).get(reverse("studio-gallery"))
    if role == "anonymous":
        assert response.status_code == 302 and "/login/" in response["Location"]
        return
    page = response.content.decode()
    assert response.status_code == 200
    assert "Root-cause a tool failure" in page
    assert "Review the worst traces of the last day" in page
    assert 'href="/automations/"' in page  # the automations list itself
    can_start = role in ("owner", "member")
    assert ("?template=find-latency-regressions" in page) is can_start
    assert ("New session</a>" in page) is can_start


def test_a_template_prefills_the_prompt_and_names_what_is_left(
    alice, project, client_for, fake_provider
):
    url = reverse("studio-new-session") + "?template=root-cause-tool-failure"
    page = client_for(alice).get(url).content.decode()
    assert "The tool &lt;tool name&gt; has been failing" in page  # in the textarea
    assert "Still to fill in:</strong> project, tool name, when it started" in page
    assert 'name="template" value="root-cause-tool-failure"' in page


# --- new session ---------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_new_session_form_lists_only_usable_projects(
    role, who, project, other_project, client_for, fake_provider
):
    response = client_for(who(role)).get(reverse("studio-new-session"))
    if role == "anonymous":
        assert response.status_code == 302
        return
    page = response.content.decode()
    assert response.status_code == 200
    assert ("Acme / support-bot" in page) is (role in ("owner", "member"))
    # dave may use his own project; nobody else sees it.
    assert ("Other / other-bot" in page) is (role == "outsider")
    if role == "viewer":
        assert "You have no project you may start sessions in" in page
        assert "Start session" not in page
    else:
        assert 'value="fake"' in page and "None — choose below" in page


@pytest.mark.parametrize("role", ROLES)
def test_starting_a_session(
    role, who, project, other_project, client_for, fake_provider, django_capture_on_commit_callbacks
):
    body = {
        "project": project.pk,
        "preset": "",
        "prompt": "Why do refunds fail?",
        **CONFIG,
        "model": "claude-x",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(who(role)).post(reverse("studio-new-session"), body)
    if role in ("owner", "member"):
        run = Run.objects.get()
        assert response.status_code == 302 and response["Location"] == session_url(run)
        assert run.creator == who(role) and run.project == project
        assert (run.config["harness"], run.config["sandbox"], run.config["model"]) == (
            "analyst",
            "fake",
            "claude-x",
        )
        assert run.events.first().payload["text"] == "Why do refunds fail?"
        # Q runs in sync mode in tests: launch_run ran inline on commit.
        assert [spec.run_code for spec in fake_provider.started] == [str(run.code)]
        return
    assert not Run.objects.exists()
    if role == "anonymous":
        assert response.status_code == 302 and "/login/" in response["Location"]
    else:
        assert response.status_code == 200
        page = response.content.decode()
        if role == "viewer":  # no project to use at all: no form, only the reason
            assert "You have no project you may start sessions in" in page
        else:  # dave may use his own project, not this one
            assert "Select a valid choice. That choice is not one of the available choices." in page


def test_the_session_page_opens_at_once_showing_provisioning(
    alice, project, client_for, fake_provider, django_capture_on_commit_callbacks
):
    client = client_for(alice)
    body = {"project": project.pk, "prompt": "Investigate", **CONFIG, "model": "m"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("studio-new-session"), body, follow=True)
    page = response.content.decode()
    run = Run.objects.get()
    assert run.status == RunStatus.PROVISIONING  # the fake sandbox started; no runner yet
    assert "Preparing the sandbox" in page
    assert f'ws-connect="/ws/runs/{run.code}/?after=' in page


def test_config_errors_are_shown_on_the_form_and_the_prompt_is_kept(alice, project, client_for):
    # No fake provider registered: the sandbox choice is not a valid one.
    body = {
        "project": project.pk,
        "prompt": "Keep this prompt",
        "harness": "analyst",
        "sandbox": "nowhere",
        "model": "m",
    }
    page = client_for(alice).post(reverse("studio-new-session"), body).content.decode()
    assert "Select a valid choice. nowhere is not one of the available choices." in page
    assert "Keep this prompt</textarea>" in page
    assert not Run.objects.exists()


def test_normalize_config_messages_land_on_their_field(
    alice, project, client_for, fake_provider, monkeypatch
):
    from django.core.exceptions import ValidationError

    def refuse(config, **context):
        raise ValidationError({"model": "That model is not offered here."})

    monkeypatch.setattr("agentloop.runs.actions.normalize_config", refuse)
    body = {"project": project.pk, "prompt": "Keep me", **CONFIG, "model": "gpt-x"}
    page = client_for(alice).post(reverse("studio-new-session"), body).content.decode()
    assert "That model is not offered here." in page
    assert "Keep me</textarea>" in page
    assert not Run.objects.exists()


def test_an_empty_prompt_is_refused(alice, project, client_for, fake_provider):
    body = {"project": project.pk, "prompt": "   ", **CONFIG, "model": "m"}
    page = client_for(alice).post(reverse("studio-new-session"), body).content.decode()
    assert "This field is required." in page
    assert not Run.objects.exists()


# --- session page --------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_session_page(role, who, run, client_for):
    response = client_for(who(role)).get(session_url(run))
    if role == "anonymous":
        assert response.status_code == 302
        return
    if role == "outsider":
        assert response.status_code == 404
        return
    page = response.content.decode()
    assert response.status_code == 200
    assert "Why do refunds fail?" in page
    assert "Looking at <strong>refund</strong> spans." in page  # markdown rendered
    assert "<code>search_spans</code>" in page and "&quot;status&quot;: &quot;ERROR&quot;" in page
    assert "3 spans" in page
    assert f'id="event-{run.next_seq}"' in page
    assert f"?after={run.next_seq}&amp;controls=open" in page
    assert "support-bot" in page and "analyst" in page and "alice" in page
    can_use = role in ("owner", "member")
    assert ('name="text"' in page) is can_use
    assert (">Stop</button>" in page) is can_use


def test_assistant_markdown_is_sanitized(run, alice, client_for):
    run.append_event(
        EventSource.AGENT,
        EventKind.MESSAGE,
        {
            "role": "assistant",
            "text": "<script>alert(1)</script>[x](javascript:alert(2))"
            " <img src=x onerror=alert(3)>",
        },
    )
    page = client_for(alice).get(session_url(run)).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "javascript:alert(2)" not in page
    assert "onerror" not in page


def test_artifacts_are_listed(run, alice, client_for):
    Artifact.objects.create(
        run=run, key="a1", kind="investigation", name="Refund failures", content="# Found it"
    )
    page = client_for(alice).get(session_url(run)).content.decode()
    assert "Refund failures" in page and "<h1>Found it</h1>" in page
    assert "Pending review" in page


# --- follow-up and stop ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_followup(role, who, run, client_for):
    before = run.events.count()
    url = reverse("studio-followup", kwargs={"code": run.code})
    response = client_for(who(role)).post(url, {"text": "And for EU customers?"})
    stored = RunEvent.objects.filter(run=run, payload__text="And for EU customers?")
    if role in ("owner", "member"):
        assert response.status_code == 302 and response["Location"] == session_url(run)
        event = stored.get()
        assert (event.source, event.payload["author"]) == ("user", who(role).username)
        return
    assert not stored.exists() and run.events.count() == before
    assert response.status_code == {"viewer": 403, "outsider": 404, "anonymous": 302}[role]


def test_an_htmx_followup_gets_a_fresh_box(run, bob, client_for):
    url = reverse("studio-followup", kwargs={"code": run.code})
    response = client_for(bob).post(url, {"text": "More please"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<section id="run-controls"')
    assert "More please" not in page  # the box is empty again; the message arrives live


def test_a_followup_to_a_finished_run_continues_it(
    run, alice, client_for, fake_provider, django_capture_on_commit_callbacks
):
    run.transition(RunStatus.SUCCEEDED)
    page = client_for(alice).get(session_url(run)).content.decode()
    assert "Continue this session" in page and ">Continue</button>" in page
    assert ">Stop</button>" not in page
    url = reverse("studio-followup", kwargs={"code": run.code})
    with django_capture_on_commit_callbacks(execute=False):
        response = client_for(alice).post(url, {"text": "One more thing"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert RunEvent.objects.filter(payload__text="One more thing").exists()
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert ">Stop</button>" in page and ">Send</button>" in page  # going on again


def test_a_followup_to_a_stopping_run_is_refused_and_kept(run, alice, client_for):
    actions.cancel(alice, run)
    url = reverse("studio-followup", kwargs={"code": run.code})
    response = client_for(alice).post(url, {"text": "One more thing"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert not RunEvent.objects.filter(payload__text="One more thing").exists()
    assert "Stopping…" in page


def test_an_empty_followup_shows_an_error(run, alice, client_for):
    url = reverse("studio-followup", kwargs={"code": run.code})
    page = client_for(alice).post(url, {"text": "  "}, HTTP_HX_REQUEST="true").content.decode()
    assert "The message is empty." in page


def test_the_followup_box_takes_a_message_while_provisioning(
    project, alice, client_for, fake_provider
):
    run = actions.start_session(alice, project, CONFIG, "Go")
    page = client_for(alice).get(session_url(run)).content.decode()
    assert "Preparing the sandbox" in page
    assert '<button type="submit" class="primary">Send</button>' in page  # answered after turn 1


@pytest.mark.parametrize("role", ROLES)
def test_stop(role, who, run, client_for):
    url = reverse("studio-stop", kwargs={"code": run.code})
    response = client_for(who(role)).post(url)
    run.refresh_from_db()
    if role in ("owner", "member"):
        assert response.status_code == 302
        assert run.stop_requested_at is not None
        assert run.events.filter(
            payload__detail=f"Stop requested by {who(role).username}."
        ).exists()
        return
    assert run.stop_requested_at is None
    assert response.status_code == {"viewer": 403, "outsider": 404, "anonymous": 302}[role]


def test_stop_cancels_a_queued_session_at_once(
    project, alice, client_for, fake_provider, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        run = actions.start_session(alice, project, CONFIG, "Go")
    response = client_for(alice).post(
        reverse("studio-stop", kwargs={"code": run.code}), HTTP_HX_REQUEST="true"
    )
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "Continue this session" in response.content.decode()


def test_get_is_refused_on_post_only_routes(run, alice, client_for):
    client = client_for(alice)
    assert client.get(reverse("studio-stop", kwargs={"code": run.code})).status_code == 405
    assert client.get(reverse("studio-followup", kwargs={"code": run.code})).status_code == 405


# --- presets -----------------------------------------------------------------------


@pytest.fixture
def preset(space):
    from agentloop.presets.models import AgentPreset

    return AgentPreset.objects.create(
        space=space,
        name="Analyst",
        harness="analyst",
        sandbox="fake",
        model="claude-preset",
        max_turns=7,
    )


def test_the_form_offers_only_presets_of_spaces_the_user_may_use(
    preset, project, other_space, bob, client_for, fake_provider
):
    from agentloop.presets.models import AgentPreset

    AgentPreset.objects.create(space=other_space, name="Theirs", harness="analyst")
    AgentPreset.objects.create(
        space=preset.space, name="Hidden one", harness="analyst", hidden=True
    )
    page = client_for(bob).get(reverse("studio-new-session")).content.decode()
    assert "Acme / Analyst" in page
    assert "Theirs" not in page and "Hidden one" not in page


def test_starting_from_a_preset_snapshots_it(preset, project, bob, client_for, fake_provider):
    body = {
        "project": project.pk,
        "preset": str(preset.pk),
        "prompt": "Use the preset",
        "harness": "claude-code",
        "sandbox": "fake",
        "model": "ignored",
    }
    response = client_for(bob).post(reverse("studio-new-session"), body)
    run = Run.objects.get()
    assert response["Location"] == session_url(run)
    assert run.preset_id == preset.pk and run.config["preset_name"] == "Analyst"
    assert (run.config["harness"], run.config["model"], run.config["max_turns"]) == (
        "analyst",
        "claude-preset",
        7,
    )
    page = client_for(bob).get(session_url(run)).content.decode()
    assert "<dt>Preset</dt><dd>Analyst</dd>" in page


def test_a_preset_of_another_space_is_refused_on_the_form(
    other_space, project, dave, alice, client_for, fake_provider
):
    from agentloop.presets.models import AgentPreset
    from agentloop.teams.models import Membership, Role

    theirs = AgentPreset.objects.create(
        space=other_space, name="Theirs", harness="analyst", sandbox="fake"
    )
    Membership.objects.create(space=project.space, user=dave, role=Role.MEMBER)
    body = {
        "project": project.pk,
        "preset": str(theirs.pk),
        "prompt": "Keep this",
        "harness": "analyst",
        "sandbox": "fake",
        "model": "m",
    }
    page = client_for(dave).post(reverse("studio-new-session"), body).content.decode()
    assert "The preset Theirs belongs to Other; support-bot is in Acme." in page
    assert "Keep this</textarea>" in page
    assert not Run.objects.exists()


def test_eval_labels_are_a_table_and_approved_from_the_session_page(
    run, project, alice, client_for
):
    from tests.span_factory import make_span

    span = make_span(project, name="answer", kind="LLM")
    labels = [
        {
            "span_id": span.span_id,
            "trace_id": span.trace_id,
            "name": "correctness",
            "label": "incorrect",
            "score": 0,
            "explanation": "The call failed.",
        }
    ]
    artifact = Artifact.objects.create(
        run=run, key="l1", kind="eval_labels", name="eval_labels.json", content=json.dumps(labels)
    )
    page = client_for(alice).get(session_url(run)).content.decode()
    assert '<table class="labels">' in page and "The call failed." in page
    assert f'href="/projects/{project.pk}/traces/{span.trace_id}/"' in page
    assert "Approve and write 1 label</button>" in page

    response = client_for(alice).post(
        reverse("artifact-approve", args=[artifact.pk]), {"next": "session"}
    )
    assert response["Location"] == session_url(run) + f"#artifact-{artifact.pk}"
    annotation = span.annotations.get()
    assert (annotation.label, annotation.provenance["run"]) == ("incorrect", str(run.code))
    page = client_for(alice).get(session_url(run)).content.decode()
    assert "Approved by alice" in page and "Approve and write" not in page


def test_a_viewer_sees_artifacts_but_no_review_buttons(run, carol, client_for):
    Artifact.objects.create(run=run, key="a1", kind="investigation", name="Found", content="x")
    page = client_for(carol).get(session_url(run)).content.decode()
    assert "Found" in page and ">Approve</button>" not in page and ">Reject</button>" not in page
