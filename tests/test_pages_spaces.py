"""The home page, creating a space, and who may see a space's page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agentloop.teams.models import Membership, Role, Space

pytestmark = pytest.mark.django_db


def test_home_lists_only_the_users_spaces(client_for, space, project, other_project):
    page = client_for(space.created_by).get(reverse("home")).content.decode()
    assert "Acme" in page
    assert "support-bot" in page
    assert "Other" not in page
    assert "other-bot" not in page


def test_home_sends_anonymous_to_login(client_for):
    response = client_for(None).get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_any_user_creates_a_space_and_becomes_its_admin(client_for, dave):
    client = client_for(dave)
    response = client.post(reverse("space-create"), {"name": "Dave's lab"})
    space = Space.objects.get(name="Dave's lab")
    assert response.status_code == 302
    assert response["Location"] == reverse("space-detail", args=[space.pk])
    assert Membership.objects.get(space=space).user == dave
    assert space.role_of(dave) == Role.ADMIN
    page = client.get(response["Location"]).content.decode()
    assert "Created Dave&#x27;s lab. You are its admin." in page


def test_it_shows_the_space_form(client_for, dave):
    page = client_for(dave).get(reverse("space-create")).content.decode()
    assert 'name="name"' in page
    assert "csrfmiddlewaretoken" in page


def test_it_refuses_a_space_without_a_name(client_for, dave):
    response = client_for(dave).post(reverse("space-create"), {"name": "  "})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Space.objects.filter(created_by=dave).exclude(name="Other").exists()


def test_anonymous_cannot_create_a_space(client_for):
    response = client_for(None).post(reverse("space-create"), {"name": "Sneaky"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Space.objects.filter(name="Sneaky").exists()


def test_space_creation_rejects_get_with_data_as_a_post(client_for, dave):
    # A GET never creates anything, whatever its query string says.
    client_for(dave).get(reverse("space-create"), {"name": "Via GET"})
    assert not Space.objects.filter(name="Via GET").exists()


@pytest.mark.parametrize("who", ["owner", "member", "viewer"])
def test_every_role_sees_the_space_page_with_its_projects(client_for, users, space, project, who):
    response = client_for(users[who]).get(reverse("space-detail", args=[space.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "support-bot" in page
    for name in ("alice", "bob", "carol"):
        assert f'data-member="{name}"' in page


def test_an_outsider_gets_404_for_the_space_page(client_for, dave, space):
    assert client_for(dave).get(reverse("space-detail", args=[space.pk])).status_code == 404


def test_anonymous_is_sent_to_login_from_the_space_page(client_for, space):
    response = client_for(None).get(reverse("space-detail", args=[space.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_missing_space_is_404(client_for, alice, space):
    assert client_for(alice).get(reverse("space-detail", args=[99999])).status_code == 404
