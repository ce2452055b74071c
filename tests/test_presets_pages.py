"""Agent Presets pages: who may see and change what, and what gets stored."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import override_settings

from agentloop.presets.models import AgentPreset
from agentloop.skills.models import Skill

ROLES = ["owner", "member", "viewer", "outsider", "anonymous"]


def who(users, role):
    return None if role == "anonymous" else users[role]


def make_skill(space, kind="github", name="gh"):
    skill = Skill(space=space, kind=kind, name=name)
    skill.set_secrets({"token": "ghp_" + "x" * 36} if kind == "github" else {})
    skill.save()
    return skill


@pytest.fixture
def preset(space, alice):
    return AgentPreset.objects.create(
        space=space,
        name="Fix flaky evals",
        harness="claude-code",
        model="claude-sonnet-4-5",
        system_prompt="Be careful.",
        max_turns=20,
        time_limit_seconds=1200,
        created_by=alice,
    )


def form_data(**overrides):
    data = {
        "name": "Investigator",
        "harness": "claude-code",
        "sandbox": "",
        "model": "claude-opus-4-1",
        "system_prompt": "You investigate.",
        "allowed_tools_text": "Read, Grep\nBash(git:*)",
        "repository_url": "",
        "base_branch": "",
        "max_turns": "30",
        "time_limit_minutes": "45",
        "token_budget": "200000",
        "cost_budget_usd": "3.50",
        "cpu": "2",
        "memory_mb": "4096",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# -- list and detail --


@pytest.mark.parametrize(
    "role,sees", [("owner", True), ("member", True), ("viewer", True), ("outsider", False)]
)
def test_the_list_shows_a_spaces_presets_to_its_members_only(
    client_for, users, preset, other_space, role, sees
):
    response = client_for(users[role]).get("/studio/presets/")

    assert response.status_code == 200
    assert ("Fix flaky evals" in response.content.decode()) is sees


def test_members_create_presets_but_change_only_their_own(client_for, users, preset):
    owner_page = client_for(users["owner"]).get("/studio/presets/").content.decode()
    member_page = client_for(users["member"]).get("/studio/presets/").content.decode()
    viewer_page = client_for(users["viewer"]).get("/studio/presets/").content.decode()

    assert f"/studio/presets/{preset.pk}/edit/" in owner_page
    assert "New preset" in owner_page and "New preset" in member_page
    assert f"/studio/presets/{preset.pk}/edit/" not in member_page  # the admin's preset
    assert f"?preset={preset.pk}" in member_page  # but they may start a session from it
    assert "New preset" not in viewer_page and "Start session" not in viewer_page


def test_a_member_edits_and_deletes_the_preset_they_created(client_for, users, space):
    from agentloop.presets.models import AgentPreset

    client = client_for(users["member"])
    response = client.post(
        f"/studio/presets/space/{space.pk}/new/",
        {"name": "mine", "harness": "analyst", "max_turns": 5, "time_limit_minutes": 10,
         "model": "claude-sonnet-4-5"},
    )  # fmt: skip
    mine = AgentPreset.objects.get(name="mine")
    assert response.status_code == 302 and mine.created_by == users["member"]
    page = client.get("/studio/presets/").content.decode()
    assert f"/studio/presets/{mine.pk}/edit/" in page
    assert client.post(f"/studio/presets/{mine.pk}/delete/").status_code == 302
    assert not AgentPreset.objects.filter(pk=mine.pk).exists()


def test_anonymous_visitors_are_sent_to_log_in(client_for, preset):
    response = client_for(None).get("/studio/presets/")

    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_the_list_of_another_space_is_a_404_for_an_outsider(client_for, users, space):
    response = client_for(users["outsider"]).get(f"/studio/presets/?space={space.pk}")

    assert response.status_code == 404


@pytest.mark.parametrize(
    "role,status",
    [("owner", 200), ("member", 200), ("viewer", 200), ("outsider", 404), ("anonymous", 302)],
)
def test_detail_permissions(client_for, users, preset, role, status):
    response = client_for(who(users, role)).get(f"/studio/presets/{preset.pk}/")

    assert response.status_code == status
    if status == 200:
        assert "Be careful." in response.content.decode()


def test_hidden_presets_are_listed_as_built_in(client_for, users, preset):
    preset.hidden = True
    preset.save()

    page = client_for(users["member"]).get("/studio/presets/").content.decode()

    assert "Fix flaky evals" in page
    assert "built-in" in page


# -- create --


@pytest.mark.parametrize(
    "role,status",
    [("owner", 302), ("member", 302), ("viewer", 403), ("outsider", 404), ("anonymous", 302)],
)
def test_create_permissions(client_for, users, space, role, status):
    response = client_for(who(users, role)).post(
        f"/studio/presets/space/{space.pk}/new/", form_data()
    )

    assert response.status_code == status
    assert AgentPreset.objects.filter(name="Investigator").exists() is (role in ("owner", "member"))


@pytest.mark.parametrize(
    "role,status", [("owner", 200), ("member", 200), ("viewer", 403), ("outsider", 404)]
)
def test_the_create_form_is_for_admins(client_for, users, space, role, status):
    response = client_for(users[role]).get(f"/studio/presets/space/{space.pk}/new/")

    assert response.status_code == status


def test_an_admin_creates_a_preset_with_every_field(client_for, alice, space):
    gh = make_skill(space)

    response = client_for(alice).post(
        f"/studio/presets/space/{space.pk}/new/",
        form_data(
            skills=[gh.pk],
            repository_url="https://github.com/acme/shop",
            base_branch="develop",
        ),
    )

    preset = AgentPreset.objects.get(name="Investigator")
    assert response.status_code == 302
    assert response["Location"] == f"/studio/presets/{preset.pk}/"
    assert preset.space == space
    assert preset.created_by == alice
    assert preset.model == "claude-opus-4-1"
    assert preset.allowed_tools == ["Read", "Grep", "Bash(git:*)"]
    assert preset.max_turns == 30
    assert preset.time_limit_seconds == 45 * 60
    assert preset.token_budget == 200000
    assert preset.cost_budget_usd == Decimal("3.50")
    assert preset.cpu == Decimal("2")
    assert preset.memory_mb == 4096
    assert list(preset.skills.all()) == [gh]
    assert preset.repository == {"url": "https://github.com/acme/shop", "base_branch": "develop"}
    assert preset.hidden is False


def test_a_repository_without_a_github_skill_is_refused(client_for, alice, space):
    datadog = make_skill(space, kind="datadog", name="dd")

    response = client_for(alice).post(
        f"/studio/presets/space/{space.pk}/new/",
        form_data(skills=[datadog.pk], repository_url="https://github.com/acme/shop"),
    )

    assert response.status_code == 400
    assert "A repository needs a GitHub skill" in response.content.decode()
    assert not AgentPreset.objects.exists()


def test_a_skill_of_another_space_cannot_be_attached(client_for, alice, space, other_space):
    theirs = make_skill(other_space, name="theirs")

    response = client_for(alice).post(
        f"/studio/presets/space/{space.pk}/new/", form_data(skills=[theirs.pk])
    )

    assert response.status_code == 400
    assert not AgentPreset.objects.exists()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("name", "Fix flaky evals", "Acme already has a preset named Fix flaky evals."),
        ("system_prompt", "x" * 100_001, "100000 characters"),
        ("harness", "gpt-shell", "Select a valid choice"),
        ("sandbox", "mainframe", "Select a valid choice"),
        ("time_limit_minutes", "0", "greater than or equal to 1"),
        ("cost_budget_usd", "-1", "greater than or equal to 0.01"),
        ("repository_url", "ssh://github.com/acme/shop", "must start with https://"),
        ("base_branch", "../main", "is not a branch name"),
    ],
)
def test_bad_input_is_explained_and_nothing_is_stored(
    client_for, alice, space, preset, field, value, message
):
    gh = make_skill(space)
    data = form_data(skills=[gh.pk], repository_url="https://github.com/acme/shop")
    data[field] = value

    response = client_for(alice).post(f"/studio/presets/space/{space.pk}/new/", data)

    assert response.status_code == 400
    assert message in response.content.decode().replace(",", "")
    assert list(AgentPreset.objects.values_list("name", flat=True)) == ["Fix flaky evals"]


@override_settings(AGENTLOOP_ALLOW_FILE_REPOSITORIES=False)
def test_file_repositories_are_refused_unless_allowed(client_for, alice, space):
    gh = make_skill(space)

    response = client_for(alice).post(
        f"/studio/presets/space/{space.pk}/new/",
        form_data(skills=[gh.pk], repository_url="file:///etc"),
    )

    assert response.status_code == 400
    assert not AgentPreset.objects.exists()


# -- edit --


@pytest.mark.parametrize(
    "role,status",
    [("owner", 302), ("member", 403), ("viewer", 403), ("outsider", 404), ("anonymous", 302)],
)
def test_edit_permissions(client_for, users, preset, role, status):
    response = client_for(who(users, role)).post(
        f"/studio/presets/{preset.pk}/edit/", form_data(name="Renamed")
    )

    assert response.status_code == status
    preset.refresh_from_db()
    assert (preset.name == "Renamed") is (role == "owner")


@pytest.mark.parametrize(
    "role,status", [("owner", 200), ("member", 403), ("viewer", 403), ("outsider", 404)]
)
def test_the_edit_form_is_for_admins(client_for, users, preset, role, status):
    response = client_for(users[role]).get(f"/studio/presets/{preset.pk}/edit/")

    assert response.status_code == status
    if status == 200:
        assert "Be careful." in response.content.decode()


def test_editing_keeps_the_creator_and_replaces_the_skills(client_for, alice, space, preset):
    old, new = make_skill(space, name="old"), make_skill(space, name="new")
    preset.skills.set([old])

    client_for(alice).post(
        f"/studio/presets/{preset.pk}/edit/",
        form_data(name="Fix flaky evals", skills=[new.pk], system_prompt="Be bold."),
    )

    preset.refresh_from_db()
    assert preset.system_prompt == "Be bold."
    assert list(preset.skills.all()) == [new]
    assert preset.created_by == alice


# -- duplicate and delete --


@pytest.mark.parametrize(
    "role,status",
    [("owner", 302), ("member", 302), ("viewer", 403), ("outsider", 404), ("anonymous", 302)],
)
def test_duplicate_permissions(client_for, users, preset, role, status):
    response = client_for(who(users, role)).post(f"/studio/presets/{preset.pk}/duplicate/")

    assert response.status_code == status
    names = sorted(AgentPreset.objects.values_list("name", flat=True))
    expected = (
        ["Copy of Fix flaky evals", "Fix flaky evals"]
        if role in ("owner", "member")
        else ["Fix flaky evals"]
    )
    assert names == expected


def test_a_duplicate_copies_every_setting_and_the_skills(client_for, alice, bob, space, preset):
    gh = make_skill(space)
    preset.skills.set([gh])
    preset.repository_url = "https://github.com/acme/shop"
    preset.hidden = True
    preset.created_by = bob
    preset.save()
    client = client_for(alice)

    client.post(f"/studio/presets/{preset.pk}/duplicate/")
    response = client.post(f"/studio/presets/{preset.pk}/duplicate/")

    copy = AgentPreset.objects.get(name="Copy of Fix flaky evals (2)")
    assert response["Location"] == f"/studio/presets/{copy.pk}/edit/"
    assert copy.pk != preset.pk
    assert (copy.system_prompt, copy.max_turns, copy.repository_url) == (
        "Be careful.",
        20,
        "https://github.com/acme/shop",
    )
    assert list(copy.skills.all()) == [gh]
    assert copy.hidden is False  # a copy of a built-in is an ordinary preset
    assert copy.created_by == alice
    assert list(AgentPreset.objects.get(pk=preset.pk).skills.all()) == [gh]


def test_a_get_does_not_duplicate_or_delete(client_for, alice, preset):
    client = client_for(alice)

    assert client.get(f"/studio/presets/{preset.pk}/duplicate/").status_code == 405
    assert client.get(f"/studio/presets/{preset.pk}/delete/").status_code == 405
    assert AgentPreset.objects.count() == 1


@pytest.mark.parametrize(
    "role,status",
    [("owner", 302), ("member", 403), ("viewer", 403), ("outsider", 404), ("anonymous", 302)],
)
def test_delete_permissions(client_for, users, preset, role, status):
    response = client_for(who(users, role)).post(f"/studio/presets/{preset.pk}/delete/")

    assert response.status_code == status
    assert AgentPreset.objects.filter(pk=preset.pk).exists() is (role != "owner")


def test_an_admin_of_another_space_cannot_touch_this_one(client_for, dave, preset, other_space):
    client = client_for(dave)

    assert client.get(f"/studio/presets/{preset.pk}/").status_code == 404
    assert client.post(f"/studio/presets/{preset.pk}/delete/").status_code == 404
    assert (
        client.post(f"/studio/presets/space/{preset.space_id}/new/", form_data()).status_code == 404
    )
    assert AgentPreset.objects.filter(space=other_space).count() == 0


def test_the_repository_is_offered_only_in_a_space_with_a_github_skill(client_for, alice, space):
    client = client_for(alice)
    url = f"/studio/presets/space/{space.pk}/new/"

    without = client.get(url).content.decode()
    gh = make_skill(space)
    with_github = client.get(url).content.decode()

    assert 'name="repository_url"' not in without
    assert "Acme has none yet" in without
    assert 'name="repository_url"' in with_github
    assert 'data-kind="github"' in with_github and f'value="{gh.pk}"' in with_github


def test_a_refused_edit_keeps_the_saved_name_in_the_heading(client_for, alice, preset):
    response = client_for(alice).post(
        f"/studio/presets/{preset.pk}/edit/", form_data(name="Renamed", time_limit_minutes="0")
    )

    assert response.status_code == 400
    assert "<h1>Edit Fix flaky evals</h1>" in response.content.decode()
    preset.refresh_from_db()
    assert preset.name == "Fix flaky evals"


def test_an_over_long_system_prompt_is_refused_with_a_message_not_cut(client_for, alice, space):
    """A browser's maxlength would cut a 100,500-character paste to 100,000 silently."""
    form = client_for(alice).get(f"/studio/presets/space/{space.pk}/new/").content.decode()
    textarea = form.split('name="system_prompt"')[0].rsplit("<textarea", 1)[1]
    assert "maxlength" not in textarea
    data = form_data(system_prompt="y" * 100_500)
    response = client_for(alice).post(f"/studio/presets/space/{space.pk}/new/", data)
    page = response.content.decode()
    assert response.status_code == 400 and "(it has 100500)" in page
    assert "y" * 100_500 in page  # what was typed is still there to shorten
    assert not AgentPreset.objects.filter(name=data["name"]).exists()
