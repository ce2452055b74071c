"""Creating projects, and who may reach a project's settings."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agentloop.teams.models import Project

pytestmark = pytest.mark.django_db


def create_url(space):
    return reverse("project-create", args=[space.pk])


def test_the_admin_sees_the_new_project_form(client_for, alice, space):
    page = client_for(alice).get(create_url(space)).content.decode()
    assert 'name="name"' in page
    assert 'name="description"' in page


def test_the_admin_creates_a_project_and_lands_on_its_settings(client_for, alice, space):
    client = client_for(alice)
    response = client.post(create_url(space), {"name": "triage", "description": "Routes tickets"})
    project = Project.objects.get(space=space, name="triage")
    assert project.description == "Routes tickets"
    assert response["Location"] == reverse("project-settings", args=[project.pk])
    page = client.get(response["Location"]).content.decode()
    assert "Created triage. Create an API key to send traces." in page


def test_a_project_name_is_unique_in_its_space(client_for, alice, space, project):
    response = client_for(alice).post(create_url(space), {"name": "support-bot"})
    assert response.status_code == 400
    assert "Acme already has a project named support-bot." in response.content.decode()
    assert Project.objects.filter(space=space, name="support-bot").count() == 1


def test_the_same_name_is_fine_in_another_space(client_for, dave, other_space, project):
    client_for(dave).post(create_url(other_space), {"name": "support-bot"})
    assert Project.objects.filter(space=other_space, name="support-bot").exists()


def test_a_project_needs_a_name(client_for, alice, space):
    response = client_for(alice).post(create_url(space), {"name": ""})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not space.projects.exists()


@pytest.mark.parametrize("who,status", [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_may_create_projects(client_for, users, space, who, status):
    client = client_for(users[who])
    assert client.get(create_url(space)).status_code == status
    assert client.post(create_url(space), {"name": "sneaky"}).status_code == status
    assert not Project.objects.filter(name="sneaky").exists()


def test_anonymous_cannot_create_projects(client_for, space):
    response = client_for(None).post(create_url(space), {"name": "sneaky"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Project.objects.filter(name="sneaky").exists()


@pytest.mark.parametrize("who", ["member", "viewer"])
def test_non_admins_see_no_new_project_button_or_settings_link(
    client_for, users, space, project, who
):
    page = client_for(users[who]).get(reverse("space-detail", args=[space.pk])).content.decode()
    assert create_url(space) not in page
    assert reverse("project-settings", args=[project.pk]) not in page


def test_the_admin_sees_the_new_project_button_and_settings_link(client_for, alice, space, project):
    page = client_for(alice).get(reverse("space-detail", args=[space.pk])).content.decode()
    assert create_url(space) in page
    assert reverse("project-settings", args=[project.pk]) in page


@pytest.mark.parametrize(
    "who,status", [("owner", 200), ("member", 403), ("viewer", 403), ("outsider", 404)]
)
def test_project_settings_are_for_admins(client_for, users, project, who, status):
    response = client_for(users[who]).get(reverse("project-settings", args=[project.pk]))
    assert response.status_code == status


def test_project_settings_send_anonymous_to_login(client_for, project):
    response = client_for(None).get(reverse("project-settings", args=[project.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_project_settings_show_the_otlp_endpoint(client_for, alice, project):
    page = client_for(alice).get(reverse("project-settings", args=[project.pk])).content.decode()
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://testserver/v1/traces" in page
    assert "authorization=Bearer" in page


@pytest.mark.parametrize(
    "who,settings_tab", [("owner", True), ("member", False), ("viewer", False)]
)
def test_the_settings_tab_shows_for_admins_only(client_for, users, project, who, settings_tab):
    page = (
        client_for(users[who]).get(reverse("traces-explorer", args=[project.pk])).content.decode()
    )
    assert (reverse("project-settings", args=[project.pk]) in page) is settings_tab
