"""Presets becoming runs: the picker, config_from_preset, and snapshots that outlive the preset."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404

from agentloop.presets.access import get_preset_for_user, presets_for_user
from agentloop.presets.actions import (
    config_from_preset,
    preset_to_config,
    start_session_from_preset,
)
from agentloop.presets.models import AgentPreset
from agentloop.runs.actions import start_session
from agentloop.runs.models import Run
from tests.test_presets_pages import make_skill

pytest_plugins = ["tests.fake_sandbox"]  # the fake_provider fixture


@pytest.fixture
def preset(space, alice):
    gh = make_skill(space)
    preset = AgentPreset.objects.create(
        space=space,
        name="Fixer",
        harness="claude-code",
        sandbox="local",
        model="claude-opus-4-1",
        system_prompt="Fix what is broken.",
        allowed_tools=["Read", "Edit"],
        max_turns=12,
        time_limit_seconds=900,
        token_budget=50_000,
        cost_budget_usd=Decimal("1.25"),
        cpu=Decimal("1.5"),
        memory_mb=2048,
        repository_url="https://github.com/acme/shop",
        base_branch="develop",
        created_by=alice,
    )
    preset.skills.set([gh])
    return preset


def test_a_preset_becomes_the_config_a_run_snapshots(preset, project, bob):
    chosen, config = config_from_preset(bob, project, preset.pk)
    run = start_session(bob, project, config, "Fix the greeting", preset=chosen)

    run.refresh_from_db()
    assert run.preset_id == preset.pk
    assert run.preset_name == "Fixer"
    snapshot = run.config
    assert (snapshot["harness"], snapshot["sandbox"], snapshot["model"]) == (
        "claude-code",
        "local",
        "claude-opus-4-1",
    )
    assert snapshot["system_prompt"] == "Fix what is broken."
    assert snapshot["allowed_tools"] == ["Read", "Edit"]
    assert (snapshot["max_turns"], snapshot["time_limit_seconds"]) == (12, 900)
    assert (snapshot["token_budget"], snapshot["cost_budget_usd"]) == (50_000, 1.25)
    assert snapshot["limits"] == {"cpu": 1.5, "memory_mb": 2048}
    assert snapshot["skills"] == list(preset.skills.values_list("pk", flat=True))
    assert snapshot["repository"] == {
        "url": "https://github.com/acme/shop",
        "base_branch": "develop",
    }
    assert snapshot["preset_id"] == preset.pk


def test_editing_and_deleting_the_preset_leaves_started_runs_alone(
    preset, project, alice, bob, client_for
):
    run = start_session_from_preset(bob, project, preset.pk, "Go")
    before = Run.objects.get(pk=run.pk).config
    admin = client_for(alice)

    edit = admin.post(
        f"/studio/presets/{preset.pk}/edit/",
        {
            "name": "Fixer v2",
            "harness": "analyst",
            "sandbox": "",
            "model": "claude-haiku-4-5",
            "system_prompt": "Changed.",
            "max_turns": "3",
            "time_limit_minutes": "5",
            "skills": [],
            "repository_url": "",
            "base_branch": "",
        },
    )
    assert edit.status_code == 302
    assert AgentPreset.objects.get(pk=preset.pk).model == "claude-haiku-4-5"
    assert Run.objects.get(pk=run.pk).config == before

    delete = admin.post(f"/studio/presets/{preset.pk}/delete/")
    assert delete.status_code == 302
    assert not AgentPreset.objects.filter(pk=preset.pk).exists()

    run = Run.objects.get(pk=run.pk)
    assert run.config == before
    assert run.preset_id is None
    assert run.preset_name == "Fixer"
    page = client_for(bob).get(f"/swarms/runs/{run.code}/")
    assert page.status_code == 200
    assert "Fixer" in page.content.decode()


def test_sessions_may_override_the_harmless_fields(preset, project, bob):
    _, config = config_from_preset(
        bob, project, preset.pk, {"model": "claude-haiku-4-5", "max_turns": 3}
    )

    assert (config["model"], config["max_turns"]) == ("claude-haiku-4-5", 3)
    assert config["repository"] == preset.repository


def test_sessions_may_not_override_skills_or_the_repository(preset, project, bob):
    with pytest.raises(ValidationError) as caught:
        config_from_preset(bob, project, preset.pk, {"repository": {"url": "https://x/y/z"}})

    assert "cannot change repository" in caught.value.messages[0]


def test_a_preset_of_another_space_is_refused_with_a_clear_message(
    preset, other_project, dave, alice, other_space, space
):
    # dave administers Other; give him a view of Acme's preset by making him a member.
    from agentloop.teams.models import Membership, Role

    Membership.objects.create(space=space, user=dave, role=Role.MEMBER)

    with pytest.raises(ValidationError) as caught:
        config_from_preset(dave, other_project, preset.pk)

    assert caught.value.message_dict["preset"] == [
        "The preset Fixer belongs to Acme; other-bot is in Other. Use a preset of that space."
    ]


def test_a_preset_the_user_cannot_see_is_no_such_preset(preset, other_project, dave):
    with pytest.raises(ValidationError) as caught:
        config_from_preset(dave, other_project, preset.pk)

    assert caught.value.message_dict["preset"] == ["No such preset."]


def test_viewers_may_not_start_runs_from_presets(preset, project, carol):
    with pytest.raises(PermissionDenied):
        config_from_preset(carol, project, preset.pk)


def test_the_picker_lists_visible_presets_of_the_users_spaces(preset, space, other_space, users):
    AgentPreset.objects.create(space=space, name="Signal", harness="analyst", hidden=True)
    AgentPreset.objects.create(space=other_space, name="Theirs", harness="analyst")

    assert [p.name for p in presets_for_user(users["member"])] == ["Fixer"]
    assert [p.name for p in presets_for_user(users["viewer"], space)] == ["Fixer"]
    assert [p.name for p in presets_for_user(users["outsider"])] == ["Theirs"]
    assert sorted(p.name for p in presets_for_user(users["owner"], include_hidden=True)) == [
        "Fixer",
        "Signal",
    ]


def test_hidden_presets_still_start_runs(space, project, bob):
    signal = AgentPreset.objects.create(space=space, name="Signal", harness="analyst", hidden=True)

    chosen, config = config_from_preset(bob, project, signal.pk)
    run = start_session(bob, project, config, "Go", preset=chosen)

    assert run.config["preset_name"] == "Signal"


def test_get_preset_for_user_follows_the_space_roles(preset, users):
    assert get_preset_for_user(users["viewer"], preset.pk, "view") == preset
    with pytest.raises(PermissionDenied):
        get_preset_for_user(users["member"], preset.pk, "admin")
    with pytest.raises(Http404):
        get_preset_for_user(users["outsider"], preset.pk, "view")
    with pytest.raises(Http404):
        get_preset_for_user(users["owner"], "nope", "view")


def test_a_forged_preset_id_in_an_ad_hoc_config_links_nothing(preset, other_project, dave):
    run = start_session(dave, other_project, {"preset_id": preset.pk, "harness": "analyst"}, "Hi")

    assert Run.objects.get(pk=run.pk).preset_id is None


def test_preset_to_config_leaves_the_sandbox_to_the_default_when_blank(space):
    preset = AgentPreset.objects.create(space=space, name="Plain", harness="analyst")

    config = preset_to_config(preset)

    assert "sandbox" not in config
    assert config["repository"] is None
    assert config["limits"] == {}
    assert (config["token_budget"], config["cost_budget_usd"]) == (None, None)


def test_the_presets_resources_reach_the_sandbox(space, project, bob, fake_provider):
    from agentloop.runs.tasks import launch_run

    preset = AgentPreset.objects.create(
        space=space,
        name="Big",
        harness="analyst",
        sandbox="fake",
        cpu=Decimal("1.5"),
        memory_mb=2048,
        time_limit_seconds=600,
    )
    run = start_session_from_preset(bob, project, preset.pk, "Go")

    assert launch_run(run.pk) is True

    (spec,) = fake_provider.started
    assert (spec.limits.cpu, spec.limits.memory_mb) == (1.5, 2048)
    assert spec.network == "runner-only"
