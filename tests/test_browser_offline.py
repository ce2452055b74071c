"""No page of agentloop loads anything from outside the server, the API docs included.

Headless Chromium opens the API docs (Swagger UI and Redoc, served from the
server's static files by drf-spectacular-sidecar) and every main page; any
request to another host is blocked and recorded, and the test fails if there
was one. It also creates a personal token on the settings page as a person
would, uses it against the API, and revokes it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from agentloop.runs.models import EventKind, EventSource, Run, RunStatus
from agentloop.teams.models import PersonalToken

pytest_plugins = ["tests.browser_support"]  # browser, app_url, browsing

pytestmark = [pytest.mark.slow]


def guard(page, base_url: str) -> list[str]:
    """Block and record every request that leaves the server."""
    server = urlsplit(base_url).netloc
    outside: list[str] = []

    def route(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.netloc == server:
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.context.route("**/*", route)
    return outside


def test_the_api_docs_and_every_page_load_only_from_the_server(browsing, app_url, project, alice):
    page = browsing.logged_in(alice)
    outside = guard(page, app_url)
    static = []
    page.on(
        "request", lambda request: static.append(request.url) if "/static/" in request.url else None
    )

    docs = page.goto("/api/docs/")
    # Redoc's bundle has a logo on a CDN it always asks for: this policy refuses it in
    # the browser, before any request (the guard below would catch one that got out).
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("agentloop API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.get_by_text("/api/v1/sessions/", exact=True).first).to_be_visible()

    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/api/redoc/")
    # Redoc renders the whole schema in the browser before it shows anything.
    heading = page.get_by_role("heading", name=re.compile("agentloop API"))
    expect(heading).to_be_visible(timeout=60_000)
    assert errors == []
    start = page.get_by_role("heading", name=re.compile("Start a session"))
    expect(start.first).to_be_visible()
    assert any("drf_spectacular_sidecar" in url for url in static), static

    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "model": "m"},
        prompt="Why do refunds fail?",
        status=RunStatus.SUCCEEDED,
        creator=alice,
    )
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"text": "Because **ours**."})
    for path in [
        "/",
        "/account/",
        "/studio/",
        "/studio/sessions/",
        f"/studio/sessions/{run.code}/",
        "/studio/sessions/new/",
        "/studio/compare/new/",
        "/studio/presets/",
        "/swarms/",
        "/automations/",
        "/review/",
        "/skills/",
        "/settings/tokens/",
        f"/projects/{project.pk}/traces/",
        f"/projects/{project.pk}/signal/",
        f"/projects/{project.pk}/settings/",
    ]:
        response = page.goto(path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
    assert outside == []


def test_a_token_made_on_the_settings_page_is_shown_once_works_and_can_be_revoked(
    browsing, app_url, alice, project
):
    page = browsing.logged_in(alice)
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Expires").select_option(label="30 days")
    page.get_by_role("button", name="Create token").click()
    raw = page.locator("#new-token pre.mono").inner_text().strip()
    assert raw.startswith("al_pt_")
    token = PersonalToken.objects.get(user=alice, name="laptop")
    assert raw not in (token.key_hash, token.hint) and token.hint == raw[-4:]

    api = httpx.Client(base_url=app_url, headers={"Authorization": f"Bearer {raw}"})
    answer = api.get("/api/v1/projects/")
    assert answer.status_code == 200
    assert [p["name"] for p in answer.json()["data"]] == ["support-bot"]

    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)  # shown once
    row = page.locator("#tokens tr", has_text="laptop")
    expect(row).to_contain_text("…" + raw[-4:])
    expect(row.locator("td").nth(5)).not_to_contain_text("never")  # last used: just now
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#tokens tr", has_text="laptop")).to_contain_text("revoked")
    refused = api.get("/api/v1/projects/")
    assert refused.status_code == 401
    assert "Unknown, expired or revoked token" in refused.json()["detail"]
