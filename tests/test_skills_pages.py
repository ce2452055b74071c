"""The Agent Skills pages: who may see and change what, write-only secrets, the audit log."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from agentloop.skills.models import Skill, SkillAuditEntry
from tests.skill_factory import DD_API, DD_APP, GH_TOKEN, custom_skill, github_skill

ROLES = ["owner", "member", "viewer", "outsider", "anonymous"]
NEW_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"


@pytest.fixture
def as_role(users, client_for):
    def make(role):
        return client_for(None if role == "anonymous" else users[role])

    return make


@pytest.fixture
def skill(space, alice):
    return github_skill(space, alice)


def list_url(space):
    return f"/skills/spaces/{space.pk}/"


def edit_url(skill):
    return f"/skills/spaces/{skill.space_id}/{skill.pk}/edit/"


def delete_url(skill):
    return f"/skills/spaces/{skill.space_id}/{skill.pk}/delete/"


def state(skill):
    """Everything stored about a skill, to compare before and after a refused request."""
    skill = Skill.objects.filter(pk=skill.pk).values().first()
    return skill, SkillAuditEntry.objects.count()


# --- permission matrix -------------------------------------------------------------------


@pytest.mark.parametrize(
    "role,status", [("owner", 200), ("member", 200), ("viewer", 403), ("outsider", 404)]
)
def test_list_page_is_for_those_who_use_skills(role, status, as_role, space, skill):
    response = as_role(role).get(list_url(space))
    assert response.status_code == status
    if status == 200:
        assert skill.name in response.content.decode()


def test_list_page_sends_anonymous_to_login(as_role, space, skill):
    response = as_role("anonymous").get(list_url(space))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_members_see_skills_without_admin_controls(as_role, space, skill):
    html = as_role("member").get(list_url(space)).content.decode()
    assert "GitHub" in html
    assert edit_url(skill) not in html and delete_url(skill) not in html
    assert "/new/github/" not in html
    owner_html = as_role("owner").get(list_url(space)).content.decode()
    assert edit_url(skill) in owner_html and "/new/github/" in owner_html


@pytest.mark.parametrize(
    "role,status",
    [("owner", 200), ("member", 403), ("viewer", 403), ("outsider", 404), ("anonymous", 302)],
)
def test_create_and_edit_forms_are_for_admins(role, status, as_role, space, skill):
    client = as_role(role)
    assert client.get(f"/skills/spaces/{space.pk}/new/github/").status_code == status
    assert client.get(edit_url(skill)).status_code == status


@pytest.mark.parametrize("role", ROLES)
def test_create_post(role, as_role, space):
    response = as_role(role).post(
        f"/skills/spaces/{space.pk}/new/github/",
        {"name": "Deploy bot", "token_type": "app", "token": GH_TOKEN},
    )
    created = Skill.objects.filter(space=space, name="Deploy bot").first()
    if role == "owner":
        assert response.status_code == 302 and response["Location"] == list_url(space)
        assert created.config == {"token_type": "app"}
        assert created.secrets() == {"token": GH_TOKEN}
        entry = SkillAuditEntry.objects.get()
        assert (entry.actor_name, entry.action, entry.skill_name) == (
            "alice",
            "created",
            "Deploy bot",
        )
        assert entry.changed_fields == ["name", "token", "token_type"]
    else:
        assert (
            response.status_code
            == {"member": 403, "viewer": 403, "outsider": 404, "anonymous": 302}[role]
        )
        assert created is None
        assert not SkillAuditEntry.objects.exists()


@pytest.mark.parametrize("role", ROLES)
def test_edit_post(role, as_role, skill):
    before = state(skill)
    response = as_role(role).post(
        edit_url(skill), {"name": "Renamed", "token_type": "app", "token": NEW_TOKEN}
    )
    skill.refresh_from_db()
    if role == "owner":
        assert response.status_code == 302
        assert skill.name == "Renamed" and skill.config == {"token_type": "app"}
        assert skill.secrets() == {"token": NEW_TOKEN}
        assert SkillAuditEntry.objects.first().changed_fields == ["name", "token", "token_type"]
    else:
        assert response.status_code in (403, 404, 302)
        assert state(skill) == before
        assert skill.secrets() == {"token": GH_TOKEN}


@pytest.mark.parametrize("role", ROLES)
def test_delete_post(role, as_role, skill):
    before = state(skill)
    response = as_role(role).post(delete_url(skill))
    if role == "owner":
        assert response.status_code == 302
        assert not Skill.objects.filter(pk=skill.pk).exists()
        entry = SkillAuditEntry.objects.first()
        assert (entry.action, entry.skill_name, entry.skill_id) == ("deleted", "GitHub", None)
    else:
        assert response.status_code in (403, 404, 302)
        assert state(skill) == before


def test_delete_refuses_get(as_role, skill):
    assert as_role("owner").get(delete_url(skill)).status_code == 405
    assert Skill.objects.filter(pk=skill.pk).exists()


def test_a_skill_is_only_reachable_under_its_own_space(as_role, skill, other_space, dave):
    # dave administers "Other": the Acme skill id under his space's URL is not there.
    response = as_role("outsider").post(
        f"/skills/spaces/{other_space.pk}/{skill.pk}/edit/", {"name": "Mine", "token_type": "app"}
    )
    assert response.status_code == 404
    assert (
        as_role("outsider").post(f"/skills/spaces/{other_space.pk}/{skill.pk}/delete/").status_code
        == 404
    )
    assert Skill.objects.get(pk=skill.pk).name == "GitHub"


def test_unknown_kind_is_404(as_role, space):
    assert as_role("owner").get(f"/skills/spaces/{space.pk}/new/slack/").status_code == 404


def test_index_goes_to_the_only_space(as_role, space):
    response = as_role("member").get("/skills/")
    assert response.status_code == 302 and response["Location"] == list_url(space)
    viewer_page = as_role("viewer").get("/skills/")
    assert "not a member of any space where skills can be used" in viewer_page.content.decode()


def test_nav_links_to_agent_skills(as_role, space):
    assert '<a href="/skills/">Agent Skills</a>' in as_role("member").get("/").content.decode()


# --- write-only secrets ----------------------------------------------------------------


def test_saved_secrets_show_only_that_they_are_set(as_role, skill):
    for url in (list_url(skill.space), edit_url(skill)):
        html = as_role("owner").get(url).content.decode()
        assert GH_TOKEN not in html
        assert GH_TOKEN[:-4] not in html
        assert "…" + GH_TOKEN[-4:] in html
    form = as_role("owner").get(edit_url(skill)).content.decode()
    assert "A value is set" in form and 'name="token"' in form and 'value="ghp_' not in form


def test_short_secrets_show_no_characters(space, alice, as_role):
    skill = Skill(space=space, kind="github", name="short", config={"token_type": "personal"})
    skill.set_secrets({"token": "abcdefgh"})
    skill.save()
    assert skill.secret_hints == {"token": ""}
    assert "efgh" not in as_role("owner").get(list_url(space)).content.decode()


def test_blank_secret_on_edit_keeps_the_old_value(as_role, skill):
    response = as_role("owner").post(
        edit_url(skill), {"name": "GitHub", "token_type": "app", "token": ""}
    )
    assert response.status_code == 302
    skill.refresh_from_db()
    assert skill.secrets() == {"token": GH_TOKEN} and skill.config == {"token_type": "app"}
    assert SkillAuditEntry.objects.first().changed_fields == ["token_type"]


def test_saving_without_changes_records_nothing(as_role, skill):
    before = state(skill)
    as_role("owner").post(edit_url(skill), {"name": "GitHub", "token_type": "personal"})
    assert state(skill) == before


def test_form_with_errors_does_not_echo_secrets(as_role, space):
    response = as_role("owner").post(
        f"/skills/spaces/{space.pk}/new/datadog/",
        {"name": "dd", "site": "not a site!", "api_key": DD_API, "app_key": DD_APP},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "The site is a host name" in html
    assert DD_API not in html and DD_APP not in html
    assert not Skill.objects.exists() and not SkillAuditEntry.objects.exists()


def test_audit_log_names_fields_never_values(as_role, skill):
    as_role("owner").post(
        edit_url(skill), {"name": "GitHub", "token_type": "app", "token": NEW_TOKEN}
    )
    html = as_role("member").get(list_url(skill.space)).content.decode()
    assert "Updated GitHub" in html and "token, token_type" in html and "Created GitHub" in html
    assert NEW_TOKEN not in html and GH_TOKEN not in html
    for entry in SkillAuditEntry.objects.all():
        assert NEW_TOKEN not in str(entry.changed_fields) and GH_TOKEN not in str(
            entry.changed_fields
        )


def test_undecryptable_skill_is_flagged_and_can_be_fixed(as_role, skill, settings):
    from cryptography.fernet import Fernet

    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        html = as_role("owner").get(list_url(skill.space)).content.decode()
        assert "cannot be decrypted" in html
        # The old token is lost: the admin must type one again.
        missing = as_role("owner").post(edit_url(skill), {"name": "GitHub", "token_type": "app"})
        assert missing.status_code == 400 and "Token is required." in missing.content.decode()
        fixed = as_role("owner").post(
            edit_url(skill), {"name": "GitHub", "token_type": "app", "token": NEW_TOKEN}
        )
        assert fixed.status_code == 302
        skill.refresh_from_db()
        assert skill.secrets() == {"token": NEW_TOKEN}


# --- validation --------------------------------------------------------------------------


CUSTOM = "/skills/spaces/{}/new/custom/"


@pytest.mark.parametrize(
    "name,problem",
    [
        ("../escape", "letters, digits, spaces"),
        ("..", "more than dots"),
        ("a" * 254, "253"),
        ("slash/name", "letters, digits, spaces"),
        ("tab\tname", "letters, digits, spaces"),
    ],
)
def test_custom_skill_names(name, problem, as_role, space):
    response = as_role("owner").post(
        CUSTOM.format(space.pk),
        {"name": name, "repo_url": "https://example.com/a.git", "ref": "main"},
    )
    assert response.status_code == 400 and problem in response.content.decode()
    assert not Skill.objects.exists()


def test_custom_skill_name_may_use_the_allowed_characters(as_role, space):
    name = "My skill-1_v2.0" + "x" * 238  # 253 characters
    response = as_role("owner").post(
        CUSTOM.format(space.pk),
        {"name": name, "repo_url": "https://example.com/a.git", "ref": "v1.2"},
    )
    assert response.status_code == 302
    assert Skill.objects.get().name == name


def test_names_are_trimmed(as_role, space):
    as_role("owner").post(
        CUSTOM.format(space.pk),
        {"name": "  padded ", "repo_url": "https://example.com/a.git", "ref": "main"},
    )
    assert Skill.objects.get().name == "padded"


@pytest.mark.parametrize(
    "field,value,problem",
    [
        ("repo_url", "--upload-pack=touch /tmp/x", "git URL"),
        ("repo_url", "ftp://example.com/a.git", "git URL"),
        ("repo_url", "https://x:abcdefgh@example.com/a.git", "Leave credentials out of the URL"),
        ("ref", "-b", "The ref is"),
        ("ref", "a..b", "The ref is"),
        ("env_secrets", "NOT A LINE", "Line 1 is not NAME=value"),
        ("env_secrets", "lower=value123", "Not allowed as environment variable names: lower"),
        ("env_secrets", "AGENTLOOP_RUN_TOKEN=abcdefgh", "Not allowed"),
    ],
)
def test_custom_skill_validation(field, value, problem, as_role, space):
    data = {"name": "mine", "repo_url": "https://example.com/a.git", "ref": "main", field: value}
    response = as_role("owner").post(CUSTOM.format(space.pk), data)
    html = response.content.decode()
    assert response.status_code == 400 and problem in html
    assert "abcdefgh" not in html and "value123" not in html
    assert not Skill.objects.exists()


def test_duplicate_names_are_refused(as_role, skill):
    response = as_role("owner").post(
        f"/skills/spaces/{skill.space_id}/new/github/",
        {"name": "GitHub", "token_type": "personal", "token": NEW_TOKEN},
    )
    assert response.status_code == 400 and "already has a skill named" in response.content.decode()
    assert Skill.objects.count() == 1


def test_kind_fields_are_validated(as_role, space):
    bad_token = as_role("owner").post(
        f"/skills/spaces/{space.pk}/new/github/",
        {"name": "gh", "token_type": "personal", "token": "has spaces in it!"},
    )
    assert bad_token.status_code == 400 and "A GitHub token is" in bad_token.content.decode()
    bad_url = as_role("owner").post(
        f"/skills/spaces/{space.pk}/new/traces_api/",
        {"name": "traces", "base_url": "javascript:alert(1)", "api_key": "al_pk_" + "x" * 30},
    )
    assert bad_url.status_code == 400 and "must start with http" in bad_url.content.decode()
    assert not Skill.objects.exists()


def test_traces_api_defaults_to_this_deployment(as_role, space, settings):
    settings.AGENTLOOP_PUBLIC_URL = "https://loop.example.com"
    form = as_role("owner").get(f"/skills/spaces/{space.pk}/new/traces_api/").content.decode()
    assert 'value="https://loop.example.com/api/v1/"' in form


def test_custom_env_secrets_can_be_added_replaced_and_removed(as_role, space, alice):
    skill = custom_skill(
        space,
        alice,
        "tools",
        "https://example.com/t.git",
        env={"SERVICE_TOKEN": "first-secret-value", "OTHER": "other-secret-1"},
    )
    assert skill.env() == {"SERVICE_TOKEN": "first-secret-value", "OTHER": "other-secret-1"}
    form = as_role("owner").get(edit_url(skill)).content.decode()
    assert "SERVICE_TOKEN" in form and "first-secret-value" not in form
    response = as_role("owner").post(
        edit_url(skill),
        {
            "name": "tools",
            "repo_url": "https://example.com/t.git",
            "ref": "main",
            "env_secrets": "SERVICE_TOKEN=second-secret-value\nNEW_ONE=brand-new-secret\n",
            "remove_env": ["env.OTHER"],
        },
    )
    assert response.status_code == 302
    skill.refresh_from_db()
    assert skill.env() == {"SERVICE_TOKEN": "second-secret-value", "NEW_ONE": "brand-new-secret"}
    assert SkillAuditEntry.objects.first().changed_fields == [
        "env.NEW_ONE",
        "env.OTHER",
        "env.SERVICE_TOKEN",
    ]


# --- forms that keep what was typed and say everything at once ----------------------


def test_every_problem_shows_at_once_and_typed_secrets_are_kept_sealed(as_role, space):
    client = as_role("owner")
    url = f"/skills/spaces/{space.pk}/new/datadog/"
    response = client.post(url, {"name": "Bad Name!", "site": "not a site!", "api_key": DD_API})
    html = response.content.decode()
    assert response.status_code == 400
    # The name rule (a field rule) and the site and the missing key (the skill's checks) together.
    assert "The site is a host name" in html and "Application key is required." in html
    assert 'class="form-errors"' in html
    assert DD_API not in html  # kept, but never shown
    kept = re.search(r'name="kept_api_key" value="([^"]+)"', html).group(1)
    # The second try leaves the API key blank: the kept one is used.
    response = client.post(
        url, {"name": "dd", "site": "datadoghq.eu", "app_key": DD_APP, "kept_api_key": kept}
    )
    assert response.status_code == 302
    assert Skill.objects.get(name="dd").secrets() == {"api_key": DD_API, "app_key": DD_APP}


def test_a_forged_kept_value_is_ignored(as_role, space):
    response = as_role("owner").post(
        f"/skills/spaces/{space.pk}/new/datadog/",
        {"name": "dd", "site": "datadoghq.eu", "app_key": DD_APP, "kept_api_key": "forged"},
    )
    assert response.status_code == 400 and "API key is required." in response.content.decode()
    assert not Skill.objects.exists()


def test_custom_env_secrets_are_typed_as_name_and_password_pairs(as_role, space):
    url = f"/skills/spaces/{space.pk}/new/custom/"
    form = as_role("owner").get(url).content.decode()
    assert "<textarea" not in form.split('class="card skill-form"')[1]
    assert 'type="password" name="env_value_1"' in form
    response = as_role("owner").post(
        url,
        {
            "name": "svc",
            "repo_url": "https://example.com/skills.git",
            "ref": "main",
            "env_name_1": "SERVICE_TOKEN",
            "env_value_1": "pair-secret-value",
            "env_name_2": "HALF",
        },
    )
    html = response.content.decode()
    assert response.status_code == 400 and "Give both the name and the value" in html
    assert "pair-secret-value" not in html and "Kept what you typed" in html
