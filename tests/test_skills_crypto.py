"""Secrets at rest: nothing readable in the database, and key rotation that keeps everything."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from agentloop.runs import actions
from agentloop.runs.models import Run
from agentloop.skills import crypto
from agentloop.skills.models import Skill
from tests.skill_factory import GH_TOKEN, datadog_skill, github_skill

pytest_plugins = ["tests.fake_sandbox"]

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def raw_rows() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT config, secrets_encrypted, secret_hints FROM skills_skill")
        return repr(cursor.fetchall())


def test_secrets_are_not_stored_in_the_clear(space, alice):
    github_skill(space, alice)
    rows = raw_rows()
    assert GH_TOKEN not in rows and GH_TOKEN[:20] not in rows
    assert "…" + GH_TOKEN[-4:] in Skill.objects.get().secret_hints["token"]


def test_repr_leaks_nothing(space, alice):
    skill = github_skill(space, alice)
    assert GH_TOKEN[-4:] not in repr(skill) and skill.secrets_encrypted not in repr(skill)


def test_unreadable_ciphertext_raises_a_clear_error(settings):
    settings.FERNET_KEYS = [OLD]
    text = crypto.encrypt_json({"a": "b"})
    settings.FERNET_KEYS = [NEW]
    with pytest.raises(crypto.SecretsUnreadable, match="AGENTLOOP_FERNET_KEYS"):
        crypto.decrypt_json(text)


def test_rotation_reencrypts_everything_under_the_current_key(
    settings, project, alice, fake_provider, capsys
):
    settings.FERNET_KEYS = [OLD]
    gh = github_skill(project.space, alice)
    dd = datadog_skill(project.space, alice)
    run = actions.start_session(
        alice,
        project,
        {"harness": "analyst", "sandbox": "fake", "secret_env": {"MY_SECRET": "run-secret-value"}},
        "Look.",
    )
    before = {s.pk: s.secrets_encrypted for s in Skill.objects.all()}

    # A new key goes first; the old one stays until the rotation is done.
    settings.FERNET_KEYS = [NEW, OLD]
    call_command("rotate_secrets")
    out = capsys.readouterr().out
    assert "skills.Skill: 2 re-encrypted" in out and "runs.Run: 1 re-encrypted" in out

    settings.FERNET_KEYS = [NEW]  # old key dropped
    for skill in Skill.objects.all():
        assert skill.secrets_encrypted != before[skill.pk]
    assert Skill.objects.get(pk=gh.pk).secrets() == {"token": GH_TOKEN}
    assert Skill.objects.get(pk=dd.pk).env()["DD_SITE"] == "datadoghq.eu"
    assert Run.objects.get(pk=run.pk).secret_env() == {"MY_SECRET": "run-secret-value"}


def test_without_rotation_dropping_the_old_key_loses_the_secrets(settings, space, alice):
    # The control for the test above: the rotation is what makes dropping the key safe.
    settings.FERNET_KEYS = [OLD]
    skill = github_skill(space, alice)
    settings.FERNET_KEYS = [NEW]
    assert not Skill.objects.get(pk=skill.pk).secrets_readable()


def test_rotation_reports_rows_no_key_can_read_and_leaves_them(settings, space, alice):
    settings.FERNET_KEYS = [OLD]
    lost = github_skill(space, alice, name="lost")
    settings.FERNET_KEYS = [NEW]
    kept = github_skill(space, alice, name="kept")
    lost_text = Skill.objects.get(pk=lost.pk).secrets_encrypted
    with pytest.raises(CommandError, match=f"skills.Skill {lost.pk}"):
        call_command("rotate_secrets")
    assert Skill.objects.get(pk=lost.pk).secrets_encrypted == lost_text
    assert Skill.objects.get(pk=kept.pk).secrets() == {"token": GH_TOKEN}


def test_rotation_is_idempotent(settings, space, alice):
    settings.FERNET_KEYS = [NEW]
    github_skill(space, alice)
    call_command("rotate_secrets")
    call_command("rotate_secrets")
    assert Skill.objects.get().secrets() == {"token": GH_TOKEN}
