"""Skills in runs: which ids a run may name, env at launch, and failing before the sandbox."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.test import override_settings

from agentloop.runs import actions
from agentloop.runs.models import Run, RunStatus
from agentloop.runs.redaction import run_secrets
from agentloop.runs.tasks import launch_run
from agentloop.skills.access import skills_for_user
from tests.skill_factory import DD_API, DD_APP, GH_TOKEN, custom_skill, datadog_skill, github_skill

pytest_plugins = ["tests.fake_sandbox"]

CONFIG = {"harness": "analyst", "sandbox": "fake", "time_limit_seconds": 120}


def start(user, project, skill_ids, **extra):
    return actions.start_session(user, project, {**CONFIG, "skills": skill_ids, **extra}, "Look.")


# --- which skills a run may use -----------------------------------------------------------


def test_skills_for_user_by_role(space, other_space, alice, bob, carol, dave):
    gh = github_skill(space, alice)
    theirs = github_skill(other_space, dave, name="theirs")
    assert list(skills_for_user(alice, "use")) == [gh]
    assert list(skills_for_user(bob, "use")) == [gh]
    assert list(skills_for_user(bob, "admin")) == []
    assert list(skills_for_user(carol, "use")) == []
    assert list(skills_for_user(dave, "use")) == [theirs]
    assert list(skills_for_user(alice, "use", space=other_space)) == []


def test_a_member_may_start_a_run_with_the_space_skills(project, alice, bob, fake_provider):
    gh = github_skill(project.space, alice)
    run = start(bob, project, [str(gh.pk)])
    assert run.config["skills"] == [gh.pk]


def test_a_run_may_not_name_a_skill_of_another_space(
    project, other_space, dave, bob, fake_provider
):
    theirs = github_skill(other_space, dave)
    with pytest.raises(ValidationError) as error:
        start(bob, project, [theirs.pk])
    assert f"No skill with id {theirs.pk} that you may use in Acme" in str(error.value)
    assert not Run.objects.exists()


@pytest.mark.parametrize("bad", ["github", [True], ["x1"], 5])
def test_skill_ids_must_be_ids(bad, project, alice, fake_provider):
    with pytest.raises(ValidationError) as error:
        start(alice, project, bad)
    assert "skills" in error.value.message_dict
    assert not Run.objects.exists()


# --- launch ---------------------------------------------------------------------------------


def test_launch_puts_skill_env_into_the_sandbox(project, alice, fake_provider):
    gh = github_skill(project.space, alice)
    dd = datadog_skill(project.space, alice)
    run = start(alice, project, [gh.pk, dd.pk], env={"DD_SITE": "us5.datadoghq.com"})
    assert launch_run(run.pk) is True
    env = fake_provider.started[0].env
    assert env["GH_TOKEN"] == GH_TOKEN
    assert (env["DD_API_KEY"], env["DD_APP_KEY"]) == (DD_API, DD_APP)
    assert env["DD_SITE"] == "us5.datadoghq.com"  # the run's own env wins over a skill's default
    assert env["AGENTLOOP_RUN_TOKEN"].startswith("al_sk_")
    run.refresh_from_db()
    # Secret values are stored only encrypted; the snapshot has names, never values.
    harness_key = run.secret_env().pop("AGENTLOOP_HARNESS_KEY")
    assert harness_key.startswith("al_sk_") and harness_key != env["AGENTLOOP_RUN_TOKEN"]
    assert run.secret_env() == {
        "GH_TOKEN": GH_TOKEN,
        "DD_API_KEY": DD_API,
        "DD_APP_KEY": DD_APP,
        "AGENTLOOP_HARNESS_KEY": harness_key,
    }
    assert GH_TOKEN not in str(run.config) and DD_API not in str(run.config)
    assert run.config["secret_env_names"] == ["DD_API_KEY", "DD_APP_KEY", "GH_TOKEN"]
    assert run.config["skill_names"] == ["GitHub", "Datadog"]
    assert GH_TOKEN not in run.secret_env_encrypted


def test_custom_skills_are_passed_to_the_runner(project, alice, fake_provider):
    skill = custom_skill(
        project.space,
        alice,
        "house style",
        "https://example.com/s.git",
        ref="v2",
        env={"STYLE_TOKEN": "style-secret-42"},
    )
    run = start(alice, project, [skill.pk])
    launch_run(run.pk)
    run.refresh_from_db()
    assert run.config["skill_installs"] == [
        {"name": "house style", "repo_url": "https://example.com/s.git", "ref": "v2"}
    ]
    assert fake_provider.started[0].env["STYLE_TOKEN"] == "style-secret-42"


def test_a_skill_that_cannot_be_decrypted_fails_the_run_before_the_sandbox(
    project, alice, fake_provider
):
    gh = github_skill(project.space, alice)
    run = start(alice, project, [gh.pk])
    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        assert launch_run(run.pk) is False
    run.refresh_from_db()
    assert fake_provider.started == []
    assert run.status == RunStatus.FAILED
    assert run.exit_reason == (
        "The secrets of skill 'GitHub' cannot be decrypted with the configured keys "
        "(AGENTLOOP_FERNET_KEYS); an admin must enter them again."
    )
    assert not run.service_keys.exists()  # no key minted for a run that never started
    status = run.events.filter(kind="status").last()
    assert status.payload["state"] == "failed" and "cannot be decrypted" in status.payload["detail"]


def test_a_skill_deleted_before_launch_fails_the_run(project, alice, fake_provider):
    from agentloop.skills.actions import delete_skill

    gh = github_skill(project.space, alice)
    run = start(alice, project, [gh.pk])
    delete_skill(alice, gh.pk)
    assert launch_run(run.pk) is False
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "was deleted" in run.exit_reason
    assert fake_provider.started == []


def test_two_skills_setting_the_same_variable_fail_the_run(project, alice, fake_provider):
    one = github_skill(project.space, alice, name="one")
    two = github_skill(project.space, alice, name="two", token="ghp_" + "x" * 36)
    run = start(alice, project, [one.pk, two.pk])
    assert launch_run(run.pk) is False
    run.refresh_from_db()
    assert run.exit_reason == "Skills 'one' and 'two' both set GH_TOKEN; use only one of them."
    assert fake_provider.started == []


def test_a_run_keeps_the_secrets_it_launched_with(project, alice, fake_provider):
    from agentloop.skills.actions import update_skill

    gh = github_skill(project.space, alice)
    run = start(alice, project, [gh.pk])
    launch_run(run.pk)
    update_skill(alice, gh.pk, "GitHub", {"token_type": "personal"}, {"token": "ghp_" + "n" * 36})
    run.refresh_from_db()
    assert run.secret_env()["GH_TOKEN"] == GH_TOKEN
    assert ("GH_TOKEN", GH_TOKEN) in run_secrets(run)


def test_the_prompt_is_redacted_even_before_launch(project, alice, fake_provider):
    gh = github_skill(project.space, alice)
    run = actions.start_session(alice, project, {**CONFIG, "skills": [gh.pk]}, f"use {GH_TOKEN}")
    assert run.events.get().payload["text"] == "use [REDACTED:GH_TOKEN]"


def test_a_run_whose_own_secret_env_cannot_be_decrypted_fails_before_the_sandbox(
    project, alice, fake_provider
):
    run = start(alice, project, [], secret_env={"MY_KEY": "my-secret-value"})
    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        assert launch_run(run.pk) is False
    run.refresh_from_db()
    assert fake_provider.started == []
    assert run.status == RunStatus.FAILED
    assert run.exit_reason == (
        "The run's secret environment cannot be decrypted with the configured keys "
        "(AGENTLOOP_FERNET_KEYS)."
    )
