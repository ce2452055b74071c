"""The space's switch for spans naming an unknown project, and the refusals on the settings page."""

from __future__ import annotations

from collections import Counter

import pytest
from django.urls import reverse

from agentloop.teams.models import ApiKeyRefusal, ProjectApiKey, Space

pytestmark = pytest.mark.django_db


def switch_url(space):
    return reverse("space-unknown-projects", args=[space.pk])


def test_an_admin_makes_the_space_refuse_unknown_projects_and_back(client_for, alice, space):
    client = client_for(alice)
    page = client.get(reverse("space-detail", args=[space.pk])).content.decode()
    assert "<strong>create that project</strong>" in page

    response = client.post(switch_url(space), {"refuse_unknown_projects": "true"}, follow=True)
    assert Space.objects.get(pk=space.pk).refuse_unknown_projects is True
    page = response.content.decode()
    assert "Spans naming an unknown project are now refused." in page
    assert "<strong>are refused</strong>" in page

    client.post(switch_url(space), {"refuse_unknown_projects": "false"})
    assert Space.objects.get(pk=space.pk).refuse_unknown_projects is False


@pytest.mark.parametrize(("who", "status"), [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_may_change_it(client_for, users, space, who, status):
    response = client_for(users[who]).post(switch_url(space), {"refuse_unknown_projects": "true"})
    assert response.status_code == status
    assert Space.objects.get(pk=space.pk).refuse_unknown_projects is False


def test_anonymous_is_sent_to_log_in(client_for, space):
    response = client_for(None).post(switch_url(space), {"refuse_unknown_projects": "true"})
    assert response.status_code == 302
    assert Space.objects.get(pk=space.pk).refuse_unknown_projects is False


def test_a_bad_value_changes_nothing(client_for, alice, space):
    response = client_for(alice).post(switch_url(space), {"refuse_unknown_projects": "maybe"})
    assert response.status_code == 302
    assert Space.objects.get(pk=space.pk).refuse_unknown_projects is False


def test_the_settings_page_shows_each_keys_refusals_with_the_reason(
    client_for, alice, project, other_project
):
    key, _ = ProjectApiKey.mint(project, "production ingest")
    reason = "no project named 'typo-bot' in this space, which refuses unknown project names"
    ApiKeyRefusal.count(key.pk, Counter({reason: 3}))
    ApiKeyRefusal.count(key.pk, Counter({reason: 4}))
    elsewhere, _ = ProjectApiKey.mint(other_project, "theirs")
    ApiKeyRefusal.count(elsewhere.pk, Counter({"someone else's reason": 1}))

    page = client_for(alice).get(reverse("project-settings", args=[project.pk])).content.decode()

    assert "no project named &#x27;typo-bot&#x27; in this space" in page
    row = page[page.index('class="refusals"') :]
    assert '<td class="right">7</td>' in row  # spans
    assert '<td class="right">2</td>' in row  # exports
    assert "someone else" not in page


def test_the_settings_page_says_when_nothing_was_refused(client_for, alice, project):
    page = client_for(alice).get(reverse("project-settings", args=[project.pk])).content.decode()
    assert "No span sent with these keys was refused." in page
