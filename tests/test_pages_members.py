"""Members of a space: who sees what, and who may invite, change roles, remove."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from agentloop.teams.models import Membership, Role
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def space_url(space):
    return reverse("space-detail", args=[space.pk])


def invite_url(space):
    return reverse("member-invite", args=[space.pk])


def role_url(space, membership):
    return reverse("member-role", args=[space.pk, membership.pk])


def remove_url(space, membership):
    return reverse("member-remove", args=[space.pk, membership.pk])


def membership_of(space, user):
    return Membership.objects.get(space=space, user=user)


# --- what each role sees ----------------------------------------------------


def test_the_admin_sees_the_invite_form_and_member_controls(client_for, alice, bob, space):
    page = client_for(alice).get(space_url(space)).content.decode()
    assert 'id="invite-form"' in page
    assert f'action="{role_url(space, membership_of(space, bob))}"' in page
    assert f'action="{remove_url(space, membership_of(space, bob))}"' in page


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_members_and_viewers_see_the_member_list_read_only(client_for, users, bob, space, who):
    page = client_for(users[who]).get(space_url(space)).content.decode()
    assert 'data-member="alice"' in page
    assert 'id="invite-form"' not in page
    assert "/role/" not in page
    assert "/remove/" not in page
    assert "Only admins of Acme can change members." in page
    assert '<span class="badge">Viewer</span>' in page  # carol's role, shown as text


# --- invite -----------------------------------------------------------------


def test_the_admin_invites_by_username(client_for, alice, dave, space):
    client = client_for(alice)
    response = client.post(invite_url(space), {"who": "dave", "role": "viewer"})
    assert response.status_code == 302
    assert membership_of(space, dave).role == Role.VIEWER
    assert dave.has_perm("teams.view_space", space)
    page = client.get(response["Location"]).content.decode()
    assert "Added dave as Viewer." in page
    assert 'data-member="dave"' in page


def test_the_admin_invites_by_email_in_any_case(client_for, alice, dave, space):
    client_for(alice).post(invite_url(space), {"who": "DAVE@example.com", "role": "member"})
    assert membership_of(space, dave).role == Role.MEMBER


def test_inviting_an_unknown_user_says_so_and_stores_nothing(client_for, alice, space):
    response = client_for(alice).post(invite_url(space), {"who": "nobody", "role": "member"})
    assert response.status_code == 400
    assert "No user has the username or email nobody." in response.content.decode()
    assert space.memberships.count() == 3


def test_inviting_an_existing_member_says_so(client_for, alice, bob, space):
    response = client_for(alice).post(invite_url(space), {"who": "bob", "role": "admin"})
    assert response.status_code == 400
    assert "bob is already a member of Acme." in response.content.decode()
    assert membership_of(space, bob).role == Role.MEMBER


def test_an_email_shared_by_two_users_asks_for_the_username(client_for, alice, space):
    first, second = make_user("erin"), make_user("erin2")
    get_user_model().objects.filter(pk__in=[first.pk, second.pk]).update(email="erin@example.com")
    response = client_for(alice).post(
        invite_url(space), {"who": "erin@example.com", "role": "member"}
    )
    assert response.status_code == 400
    assert "invite them by username" in response.content.decode()
    assert space.memberships.count() == 3


def test_an_unknown_role_is_refused(client_for, alice, dave, space):
    response = client_for(alice).post(invite_url(space), {"who": "dave", "role": "overlord"})
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert not Membership.objects.filter(space=space, user=dave).exists()


@pytest.mark.parametrize("who,status", [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_may_invite(client_for, users, space, who, status):
    newcomer = make_user("erin")
    response = client_for(users[who]).post(invite_url(space), {"who": "erin", "role": "admin"})
    assert response.status_code == status
    assert not Membership.objects.filter(space=space, user=newcomer).exists()


def test_anonymous_cannot_invite(client_for, space):
    newcomer = make_user("erin")
    response = client_for(None).post(invite_url(space), {"who": "erin", "role": "admin"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Membership.objects.filter(space=space, user=newcomer).exists()


def test_invite_rejects_get(client_for, alice, space):
    assert client_for(alice).get(invite_url(space)).status_code == 405


def test_invite_needs_a_csrf_token(alice, dave, space):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(invite_url(space), {"who": "dave", "role": "member"})
    assert response.status_code == 403
    assert not Membership.objects.filter(space=space, user=dave).exists()


# --- change role ------------------------------------------------------------


def test_the_admin_changes_a_role(client_for, alice, bob, space):
    client = client_for(alice)
    response = client.post(role_url(space, membership_of(space, bob)), {"role": "admin"})
    assert response.status_code == 302
    assert membership_of(space, bob).role == Role.ADMIN
    assert bob.has_perm("teams.admin_space", space)
    assert "bob is now Admin." in client.get(space_url(space)).content.decode()


def test_the_last_admin_cannot_step_down(client_for, alice, space):
    client = client_for(alice)
    response = client.post(role_url(space, membership_of(space, alice)), {"role": "member"})
    assert response.status_code == 302
    assert membership_of(space, alice).role == Role.ADMIN
    page = client.get(space_url(space)).content.decode()
    assert "Acme must keep at least one admin" in page


def test_an_admin_may_step_down_when_another_admin_remains(client_for, alice, bob, space):
    client_for(alice).post(role_url(space, membership_of(space, bob)), {"role": "admin"})
    client_for(alice).post(role_url(space, membership_of(space, alice)), {"role": "viewer"})
    assert membership_of(space, alice).role == Role.VIEWER
    assert not alice.has_perm("teams.admin_space", space)


def test_a_membership_of_another_space_cannot_be_changed_through_this_one(
    client_for, alice, dave, space, other_space
):
    # Alice is admin of Acme; Dave's membership lives in Other. Acme's URL must not reach it.
    foreign = membership_of(other_space, dave)
    client = client_for(alice)
    client.post(role_url(space, foreign), {"role": "viewer"})
    assert membership_of(other_space, dave).role == Role.ADMIN
    assert "not a member of this space" in client.get(space_url(space)).content.decode()


@pytest.mark.parametrize("who,status", [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_may_change_roles(client_for, users, carol, space, who, status):
    response = client_for(users[who]).post(
        role_url(space, membership_of(space, carol)), {"role": "admin"}
    )
    assert response.status_code == status
    assert membership_of(space, carol).role == Role.VIEWER


def test_anonymous_cannot_change_roles(client_for, carol, space):
    response = client_for(None).post(
        role_url(space, membership_of(space, carol)), {"role": "admin"}
    )
    assert response.status_code == 302
    assert membership_of(space, carol).role == Role.VIEWER


# --- remove -----------------------------------------------------------------


def test_the_admin_removes_a_member(client_for, alice, bob, space):
    client = client_for(alice)
    response = client.post(remove_url(space, membership_of(space, bob)))
    assert response.status_code == 302
    assert not Membership.objects.filter(space=space, user=bob).exists()
    assert not bob.has_perm("teams.view_space", space)
    page = client.get(space_url(space)).content.decode()
    assert "Removed bob from Acme." in page
    assert 'data-member="bob"' not in page
    assert client_for(bob).get(space_url(space)).status_code == 404


def test_the_last_admin_cannot_be_removed(client_for, alice, space):
    client = client_for(alice)
    client.post(remove_url(space, membership_of(space, alice)))
    assert membership_of(space, alice).role == Role.ADMIN
    assert "Acme must keep at least one admin" in client.get(space_url(space)).content.decode()


def test_an_admin_who_leaves_goes_home(client_for, alice, bob, space):
    client_for(alice).post(role_url(space, membership_of(space, bob)), {"role": "admin"})
    response = client_for(alice).post(remove_url(space, membership_of(space, alice)))
    assert response["Location"] == reverse("home")
    assert not Membership.objects.filter(space=space, user=alice).exists()


@pytest.mark.parametrize("who,status", [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_may_remove(client_for, users, carol, space, who, status):
    response = client_for(users[who]).post(remove_url(space, membership_of(space, carol)))
    assert response.status_code == status
    assert Membership.objects.filter(space=space, user=carol).exists()


def test_anonymous_cannot_remove(client_for, carol, space):
    response = client_for(None).post(remove_url(space, membership_of(space, carol)))
    assert response.status_code == 302
    assert Membership.objects.filter(space=space, user=carol).exists()


def test_remove_rejects_get(client_for, alice, carol, space):
    response = client_for(alice).get(remove_url(space, membership_of(space, carol)))
    assert response.status_code == 405
    assert Membership.objects.filter(space=space, user=carol).exists()
