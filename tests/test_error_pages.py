"""Refusals and missing pages in the app's layout, saying why and what to do; the favicon."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from agentloop.runs.models import Run


@pytest.fixture
def run(project, alice):
    return Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "sandbox": "fake"},
        prompt="Why?",
        creator=alice,
    )


def test_a_refused_action_says_why_with_the_navigation(run, carol, client):
    client.force_login(carol)  # a viewer
    response = client.post(reverse("studio-stop", args=[run.code]))
    assert response.status_code == 403
    page = response.content.decode()
    assert 'data-error="403"' in page and 'class="mainnav"' in page
    assert "ask an admin of the space to change your role" in page


def test_a_missing_page_is_a_404_in_the_layout(alice, client):
    client.force_login(alice)
    response = client.get("/studio/sessions/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404
    page = response.content.decode()
    assert 'data-error="404"' in page and "No such run." in page
    assert 'href="/"' in page and 'class="mainnav"' in page


def test_a_server_error_is_a_500_page(alice, settings):
    from django.urls import path

    from agentloop import urls

    def broken(request):
        raise RuntimeError("boom")

    settings.ROOT_URLCONF = type(
        "Urls", (), {"urlpatterns": [path("broken/", broken), *urls.urlpatterns]}
    )
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    response = client.get("/broken/")
    assert response.status_code == 500
    page = response.content.decode()
    assert 'data-error="500"' in page and "Something went wrong on our side" in page
    assert "boom" not in page


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
    page = client.get(reverse("login")).content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in page
