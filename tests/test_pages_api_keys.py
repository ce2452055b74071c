"""Project API keys: created and revoked by admins, the raw key shown exactly once."""

from __future__ import annotations

import hashlib

import pytest
from django.urls import reverse

from agentloop.teams.models import ProjectApiKey

pytestmark = pytest.mark.django_db


def settings_url(project):
    return reverse("project-settings", args=[project.pk])


def create_url(project):
    return reverse("api-key-create", args=[project.pk])


def revoke_url(project, key):
    return reverse("api-key-revoke", args=[project.pk, key.pk])


def raw_keys_in(page: str) -> list[str]:
    import re

    return re.findall(r"al_pk_[A-Za-z0-9_\-]{20,}", page)


def test_the_raw_key_is_shown_once_and_only_its_hash_is_stored(client_for, alice, project):
    client = client_for(alice)
    response = client.post(create_url(project), {"name": "production ingest"})
    assert response.status_code == 302
    assert response["Location"] == settings_url(project)  # the raw key is not in the URL
    assert "al_pk_" not in response["Location"]

    first = client.get(settings_url(project))
    shown = set(raw_keys_in(first.content.decode()))
    assert len(shown) == 1
    raw = shown.pop()
    key = ProjectApiKey.objects.get(project=project)
    assert key.name == "production ingest"
    assert key.created_by == alice
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert key.hint == raw[-4:]
    assert "no-store" in first["Cache-Control"]
    assert raw not in str(dict(client.session))  # gone from the session once shown
    assert ProjectApiKey.authenticate(raw) == key

    again = client.get(settings_url(project)).content.decode()
    assert raw_keys_in(again) == []
    assert f"…{key.hint}" in again
    assert raw not in str(dict(client.session))


def test_the_new_key_does_not_show_on_another_projects_settings(client_for, alice, space, project):
    from agentloop.teams.models import Project

    second = Project.objects.create(space=space, name="second")
    client = client_for(alice)
    client.post(create_url(project), {"name": "k"})
    assert raw_keys_in(client.get(settings_url(second)).content.decode()) == []
    assert len(set(raw_keys_in(client.get(settings_url(project)).content.decode()))) == 1


def test_the_key_list_shows_name_hint_creator_and_state(client_for, alice, project):
    active, _ = ProjectApiKey.mint(project, "ingest", created_by=alice)
    revoked, _ = ProjectApiKey.mint(project, "old <laptop>", created_by=alice)
    revoked.revoke()
    page = client_for(alice).get(settings_url(project)).content.decode()
    assert f"…{active.hint}" in page
    assert f"…{revoked.hint}" in page
    assert "old &lt;laptop&gt;" in page
    assert "by alice" in page
    assert "never" in page
    assert page.count(">Revoke</button>") == 1
    assert "revoked " in page


def test_a_key_needs_a_name(client_for, alice, project):
    response = client_for(alice).post(create_url(project), {"name": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ProjectApiKey.objects.exists()


def test_the_admin_revokes_a_key(client_for, alice, project):
    key, raw = ProjectApiKey.mint(project, "ingest", created_by=alice)
    client = client_for(alice)
    response = client.post(revoke_url(project, key))
    assert response["Location"] == settings_url(project)
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert ProjectApiKey.authenticate(raw) is None
    assert (
        f"Revoked the key ingest (…{key.hint})."
        in client.get(settings_url(project)).content.decode()
    )


def test_a_key_of_another_project_cannot_be_revoked_through_this_one(
    client_for, alice, dave, project, other_project
):
    foreign, _ = ProjectApiKey.mint(other_project, "theirs", created_by=dave)
    client_for(alice).post(revoke_url(project, foreign))
    foreign.refresh_from_db()
    assert foreign.revoked_at is None


@pytest.mark.parametrize("who,status", [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_may_create_keys(client_for, users, project, who, status):
    response = client_for(users[who]).post(create_url(project), {"name": "sneaky"})
    assert response.status_code == status
    assert not ProjectApiKey.objects.exists()


@pytest.mark.parametrize("who,status", [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_may_revoke_keys(client_for, users, alice, project, who, status):
    key, _ = ProjectApiKey.mint(project, "ingest", created_by=alice)
    assert client_for(users[who]).post(revoke_url(project, key)).status_code == status
    key.refresh_from_db()
    assert key.revoked_at is None


def test_anonymous_cannot_create_or_revoke_keys(client_for, alice, project):
    key, _ = ProjectApiKey.mint(project, "ingest", created_by=alice)
    client = client_for(None)
    for response in (
        client.post(create_url(project), {"name": "x"}),
        client.post(revoke_url(project, key)),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    key.refresh_from_db()
    assert key.revoked_at is None
    assert ProjectApiKey.objects.count() == 1


def test_revoke_rejects_get(client_for, alice, project):
    key, _ = ProjectApiKey.mint(project, "ingest", created_by=alice)
    assert client_for(alice).get(revoke_url(project, key)).status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None
