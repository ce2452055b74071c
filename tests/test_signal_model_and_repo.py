"""Signal on Claude Code when the deployment has a model, the switch between harnesses,
and "Attach repository": who may do what, what is stored, and what the next Signal run
snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from agentloop.automations import actions as automations
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions
from agentloop.runs.models import Run
from agentloop.signal import actions as signal
from agentloop.signal import issues
from tests.skill_factory import datadog_skill, github_skill

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
REPO = "https://github.com/acme/app.git"
# (role, status of the response, whether the change is stored)
USE_ROLES = [
    ("owner", 302, True),
    ("member", 302, True),
    ("viewer", 403, False),
    ("outsider", 404, False),
    ("anonymous", 302, False),
]
ADMIN_ROLES = [
    ("owner", 302, True),
    ("member", 403, False),
    ("viewer", 403, False),
    ("outsider", 404, False),
    ("anonymous", 302, False),
]


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)


@pytest.fixture
def with_model(settings):
    settings.AGENTLOOP_ANTHROPIC_API_KEY = "sk-ant-test"
    settings.AGENTLOOP_SIGNAL_MODEL = "claude-test-model"


@pytest.fixture
def no_model(settings):
    settings.AGENTLOOP_ANTHROPIC_API_KEY = ""


def next_run_config(user, project, now=NOW) -> dict:
    # Admission (cooldown, one run at a time) is tested elsewhere; here each call starts one.
    signal.automations_of(project).update(cooldown_minutes=0, max_concurrent=100)
    cadence = signal.automations_of(project).get(signal_role="cadence")
    record = automations.run_now(user, cadence, now=now)
    assert record.run is not None, record.detail
    return record.run.config


def client_of(client_for, users, role):
    return client_for(None if role == "anonymous" else users[role])


# -- the harness ---------------------------------------------------------------------------


def test_without_a_model_signal_uses_the_analyst(no_model, project, bob):
    signal.enable(bob, project, now=NOW)
    preset = signal.preset_of(project)
    assert (preset.harness, preset.max_turns, preset.hidden) == ("analyst", 1, True)
    assert next_run_config(bob, project)["harness"] == "analyst"


def test_with_a_model_signal_uses_claude_code(with_model, project, bob):
    signal.enable(bob, project, now=NOW)
    preset = signal.preset_of(project)
    assert (preset.harness, preset.model) == ("claude-code", "claude-test-model")
    assert "artifacts/investigation.md" in preset.system_prompt
    assert "agentloop-traces label" in preset.system_prompt
    config = next_run_config(bob, project)
    assert (config["harness"], config["model"]) == ("claude-code", "claude-test-model")
    assert config["system_prompt"] == signal.CLAUDE_PROMPT


def test_claude_prompt_describes_what_signal_parses():
    """The format the prompt asks for, filled in, is read back as the analyst's is."""
    example = (
        "# Investigation: demo\n\n## Overview\n\nx\n\n## Findings\n\n"
        "### 1. `chat` fails with TimeoutError\n\nAffects 3 traces (4 spans).\nIt times out.\n\n"
        "Evidence:\n\n- trace `" + "a" * 32 + "` — `agentloop-traces trace " + "a" * 32 + "`\n"
        "- reproduce: `agentloop-traces spans --status ERROR --name chat`\n\n"
        "## What to look at\n\n1. Raise the timeout.\n"
    )
    assert "Affects <N> traces (<M> spans)." in signal.CLAUDE_PROMPT
    [finding] = issues.parse_investigation(example)
    assert finding["fingerprint"] == "error:chat:TimeoutError"
    assert (finding["how_much"]["affected_traces"], finding["proposed_fix"]) == (
        3,
        "Raise the timeout.",
    )


@pytest.mark.parametrize("role,status,stored", USE_ROLES)
def test_switch_to_claude_code_when_a_model_is_configured_later(
    settings, project, users, bob, client_for, role, status, stored
):
    settings.AGENTLOOP_ANTHROPIC_API_KEY = ""
    signal.enable(bob, project, now=NOW)
    settings.AGENTLOOP_ANTHROPIC_API_KEY = "sk-ant-test"
    page = client_for(bob).get(reverse("signal-tab", args=[project.pk])).content.decode()
    assert "Use Claude Code" in page
    response = client_of(client_for, users, role).post(
        reverse("signal-harness", args=[project.pk]), {"harness": "claude-code"}
    )
    assert response.status_code == status
    harness = "claude-code" if stored else "analyst"
    assert signal.preset_of(project).harness == harness
    assert next_run_config(bob, project)["harness"] == harness


def test_switch_back_to_the_analyst(with_model, project, bob, client_for):
    signal.enable(bob, project, now=NOW)
    first = next_run_config(bob, project)
    client = client_for(bob)
    assert (
        "Use the analyst" in client.get(reverse("signal-tab", args=[project.pk])).content.decode()
    )
    client.post(reverse("signal-harness", args=[project.pk]), {"harness": "analyst"})
    preset = signal.preset_of(project)
    assert (preset.harness, preset.max_turns) == ("analyst", 1)
    later = NOW + timedelta(minutes=1)
    assert next_run_config(bob, project, later)["harness"] == "analyst"
    # The earlier run keeps its snapshot, as stored.
    assert first["harness"] == "claude-code"
    assert Run.objects.filter(project=project, config__harness="claude-code").count() == 1


def test_claude_code_refused_without_a_model(no_model, project, bob, client_for):
    signal.enable(bob, project, now=NOW)
    client = client_for(bob)
    assert (
        "Use Claude Code"
        not in client.get(reverse("signal-tab", args=[project.pk])).content.decode()
    )
    response = client.post(
        reverse("signal-harness", args=[project.pk]), {"harness": "claude-code"}, follow=True
    )
    assert "no AGENTLOOP_ANTHROPIC_API_KEY" in response.content.decode()
    assert signal.preset_of(project).harness == "analyst"


# -- the repository -------------------------------------------------------------------------


@pytest.mark.parametrize("role,status,stored", ADMIN_ROLES)
def test_attach_repository_permissions(
    with_model, project, alice, bob, users, client_for, role, status, stored
):
    gh = github_skill(project.space, alice)
    signal.enable(bob, project, now=NOW)
    response = client_of(client_for, users, role).post(
        reverse("signal-repository", args=[project.pk]),
        {"skill": gh.pk, "url": REPO, "base_branch": "develop"},
    )
    assert response.status_code == status
    preset = signal.preset_of(project)
    if stored:
        assert preset.name == f"{signal.PRESET_NAME} · {project.name}" and preset.hidden
        assert preset.repository == {"url": REPO, "base_branch": "develop"}
        assert list(preset.skills.all()) == [gh]
        config = next_run_config(bob, project)
        assert config["repository"] == {"url": REPO, "base_branch": "develop"}
        assert config["skills"] == [gh.pk] and config["harness"] == "claude-code"
    else:
        assert preset.name == signal.PRESET_NAME and preset.repository is None
        assert next_run_config(bob, project)["repository"] is None


def test_a_repository_stays_with_its_project(with_model, project, alice, bob):
    """The shared preset is left alone: another project's Signal runs clone nothing."""
    other = project.space.projects.create(name="other")
    gh = github_skill(project.space, alice)
    signal.enable(bob, project, now=NOW)
    signal.enable(bob, other, now=NOW)
    signal.attach_repository(alice, project, gh.pk, REPO, "main")
    assert next_run_config(bob, other)["repository"] is None
    assert AgentPreset.objects.get(space=project.space, name=signal.PRESET_NAME).repository is None
    # Disable and enable again: the project gets its own preset (and repository) back.
    signal.disable(alice, project)  # an admin's to do
    signal.enable(bob, project, now=NOW)
    assert next_run_config(bob, project)["repository"]["url"] == REPO


@pytest.mark.parametrize("role,status,stored", ADMIN_ROLES)
def test_detach_repository_permissions(
    with_model, project, alice, bob, users, client_for, role, status, stored
):
    gh = github_skill(project.space, alice)
    dd = datadog_skill(project.space, alice)
    signal.enable(bob, project, now=NOW)
    preset = signal.attach_repository(alice, project, gh.pk, REPO, "main")
    preset.skills.add(dd)
    response = client_of(client_for, users, role).post(
        reverse("signal-repository-detach", args=[project.pk])
    )
    assert response.status_code == status
    preset.refresh_from_db()
    if stored:
        assert preset.repository is None and list(preset.skills.all()) == [dd]
        assert next_run_config(bob, project)["repository"] is None
    else:
        assert preset.repository["url"] == REPO
        assert set(preset.skills.all()) == {gh, dd}


@pytest.mark.parametrize(
    "data,message",
    [
        ({"url": "http://github.com/acme/app.git", "base_branch": "main"}, "https"),
        ({"url": "", "base_branch": "main"}, "repository"),
        ({"url": REPO, "base_branch": "bad branch"}, "is not a branch name"),
        ({"url": REPO, "base_branch": "main", "skill": "0"}, "Choose a GitHub skill"),
    ],
)
def test_bad_repository_input_stores_nothing(
    with_model, project, alice, bob, client_for, data, message
):
    gh = github_skill(project.space, alice)
    signal.enable(bob, project, now=NOW)
    response = client_for(alice).post(
        reverse("signal-repository", args=[project.pk]), {"skill": gh.pk, **data}, follow=True
    )
    assert message.lower() in response.content.decode().lower()
    preset = signal.preset_of(project)
    assert preset.name == signal.PRESET_NAME and preset.repository is None
    assert not preset.skills.exists()


def test_a_skill_that_is_not_github_is_refused(with_model, project, alice, bob):
    dd = datadog_skill(project.space, alice)
    signal.enable(bob, project, now=NOW)
    with pytest.raises(Exception, match="Choose a GitHub skill"):
        signal.attach_repository(alice, project, dd.pk, REPO, "main")
    assert signal.preset_of(project).repository is None


def test_a_github_skill_of_another_space_is_refused(with_model, project, other_space, alice, bob):
    foreign = github_skill(other_space, other_space.memberships.filter(role="admin").first().user)
    signal.enable(bob, project, now=NOW)
    with pytest.raises(Exception, match="Choose a GitHub skill"):
        signal.attach_repository(alice, project, foreign.pk, REPO, "main")


def test_tab_without_github_skill_links_to_skills(with_model, project, alice, bob, client_for):
    signal.enable(bob, project, now=NOW)
    page = client_for(alice).get(reverse("signal-tab", args=[project.pk])).content.decode()
    assert "needs a GitHub skill" in page
    assert reverse("skills-list", args=[project.space.pk]) in page
    assert "Attach repository" not in page


def test_tab_lists_github_skills_for_admins_only(with_model, project, alice, bob, client_for):
    gh = github_skill(project.space, alice, name="acme-bot")
    signal.enable(bob, project, now=NOW)
    admin_page = client_for(alice).get(reverse("signal-tab", args=[project.pk])).content.decode()
    assert "Attach repository" in admin_page and f'value="{gh.pk}">acme-bot' in admin_page
    member_page = client_for(bob).get(reverse("signal-tab", args=[project.pk])).content.decode()
    assert "Attach repository" not in member_page and "An admin of" in member_page
    signal.attach_repository(alice, project, gh.pk, REPO, "main")
    member_page = client_for(bob).get(reverse("signal-tab", args=[project.pk])).content.decode()
    assert REPO in member_page and "Detach repository" not in member_page
