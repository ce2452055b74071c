"""Personal API tokens: stored hashed, act as their owner with exactly her roles,
optionally only in some spaces, until they expire or are revoked; the
settings page shows a person only her own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from agentloop.teams.models import PersonalToken, Project


def api(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_only_a_hash_is_stored_and_the_token_acts_as_its_owner(alice, project, other_project):
    token, raw = PersonalToken.mint(alice, "ci")
    assert raw.startswith("al_pt_") and raw not in token.key_hash and token.hint == raw[-4:]
    answer = api(raw).get("/api/v1/projects/")
    assert [p["name"] for p in answer.json()["data"]] == ["support-bot"]
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_viewers_token_may_read_but_not_start_a_session(carol, project):
    _, raw = PersonalToken.mint(carol, "viewer's")
    assert api(raw).get("/api/v1/sessions/").status_code == 200
    refused = api(raw).post(
        "/api/v1/sessions/", {"project": project.pk, "prompt": "Go."}, format="json"
    )
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Your role in Acme does not allow this."}


def test_a_token_limited_to_spaces_sees_nothing_of_the_others(
    alice, project, other_space, other_project
):
    from agentloop.teams.models import Membership, Role, Space

    third = Space.create_with_owner("Third", alice)
    theirs = Project.objects.create(space=third, name="third-bot")
    Membership.objects.create(space=other_space, user=alice, role=Role.VIEWER)
    _, raw = PersonalToken.mint(alice, "only Third", spaces=[third])
    names = [p["name"] for p in api(raw).get("/api/v1/projects/").json()["data"]]
    assert names == ["third-bot"]
    hidden = api(raw).get(f"/api/v1/projects/{project.pk}/signal")
    assert hidden.status_code == 404 and hidden.json() == {"detail": "No such project."}
    assert api(raw).get(f"/api/v1/projects/{theirs.pk}/signal").status_code == 200
    _, everywhere = PersonalToken.mint(alice, "all")
    names = {p["name"] for p in api(everywhere).get("/api/v1/projects/").json()["data"]}
    assert names == {"support-bot", "third-bot", "other-bot"}


@pytest.mark.parametrize("state", ["revoked", "expired", "owner deactivated"])
def test_a_dead_token_is_refused_with_a_clear_message(alice, project, state):
    token, raw = PersonalToken.mint(alice, "old")
    if state == "revoked":
        token.revoke()
    elif state == "expired":
        PersonalToken.objects.filter(pk=token.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    else:
        alice.is_active = False
        alice.save()
    answer = api(raw).get("/api/v1/sessions/")
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"] == 'Bearer realm="agentloop"'
    assert answer.json()["detail"].startswith("Unknown, expired or revoked token.")


def test_the_settings_page_creates_shows_once_and_revokes_ones_own(client_for, alice, bob, space):
    page = client_for(alice)
    made = page.post(
        "/settings/tokens/new/", {"name": "laptop", "expires_in_days": "30", "spaces": [space.pk]}
    )
    assert made.status_code == 302
    shown = page.get("/settings/tokens/").content.decode()
    token = PersonalToken.objects.get(user=alice)
    assert token.name == "laptop" and list(token.spaces.all()) == [space]
    assert (token.expires_at - timezone.now()).days in (29, 30)
    assert "al_pt_" in shown and "Copy it now" in shown
    again = page.get("/settings/tokens/").content.decode()
    assert "Copy it now" not in again and f"…{token.hint}" in again

    # Bob sees none of Alice's tokens and cannot revoke them.
    assert f"…{token.hint}" not in client_for(bob).get("/settings/tokens/").content.decode()
    client_for(bob).post(f"/settings/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is None
    page.post(f"/settings/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_settings_page_needs_a_login_and_a_name(client_for, alice):
    from django.test import Client

    assert Client().get("/settings/tokens/").status_code == 302
    refused = client_for(alice).post("/settings/tokens/new/", {"name": ""})
    assert refused.status_code == 400 and not PersonalToken.objects.exists()


def test_a_token_cannot_be_limited_to_a_space_its_owner_is_not_in(client_for, alice, other_space):
    refused = client_for(alice).post(
        "/settings/tokens/new/", {"name": "sneaky", "spaces": [other_space.pk]}
    )
    assert refused.status_code == 400 and not PersonalToken.objects.exists()


def test_last_use_is_written_at_most_once_a_minute_and_shown_on_the_page(client_for, alice):
    token, raw = PersonalToken.mint(alice, "ci")
    assert "never" in client_for(alice).get("/settings/tokens/").content.decode()
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
    assert PersonalToken.authenticate(raw, now=start) == token
    token.refresh_from_db()
    assert token.last_used_at == start
    PersonalToken.authenticate(raw, now=start + timedelta(seconds=59))  # a follow's many calls
    token.refresh_from_db()
    assert token.last_used_at == start
    PersonalToken.authenticate(raw, now=start + timedelta(seconds=61))
    token.refresh_from_db()
    assert token.last_used_at == start + timedelta(seconds=61)

    shown = client_for(alice).get("/settings/tokens/").content.decode()
    assert timezone.localtime(token.last_used_at).strftime("%Y-%m-%d %H:%M") in shown

    # A real request through the API marks it too.
    assert api(raw).get("/api/v1/sessions/").status_code == 200
    token.refresh_from_db()
    assert timezone.now() - token.last_used_at < timedelta(minutes=1)
