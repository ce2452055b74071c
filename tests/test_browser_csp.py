"""The pages work under the strict Content-Security-Policy, in real Chromium, with no violation.

Every page is served with agentloop/security_headers.py's policy (only this
server's own scripts; no inline script, on* handler or hx-on). What the inline
code did now lives in static/js/: the waterfall's selected row, the confirm
before a delete, the preset form's repository fields, the live session's
reconnects. Chromium reports each blocked thing as a `securitypolicyviolation`
event and a console error; the test collects both and expects none.
"""

from __future__ import annotations

import pytest

from agentloop.presets.models import AgentPreset
from agentloop.runs.models import Run, RunStatus
from tests.span_factory import make_span

pytest_plugins = ["tests.browser_support"]  # browser, app_url, browsing
pytestmark = pytest.mark.slow

WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def watched(page) -> list[str]:
    """Console errors and page errors of `page`, as they happen."""
    problems: list[str] = []
    page.add_init_script(WATCH_VIOLATIONS)

    def console(message):
        where = message.location.get("url", "")
        # Chromium asks every site for /favicon.ico; there is none (not a policy matter).
        if message.type == "error" and not where.endswith("/favicon.ico"):
            problems.append(f"{message.text} ({where})")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def violations(page) -> list[str]:
    return page.evaluate("window.__violations")


def test_the_pages_work_under_the_policy_without_violations(browsing, alice, project):
    from playwright.sync_api import expect

    root = make_span(project, trace_id="c" * 32, span_id="a" * 16, name="agent turn")
    make_span(project, trace_id="c" * 32, span_id="b" * 16, parent=root, name="llm call")
    preset = AgentPreset.objects.create(space=project.space, name="Doomed", harness="analyst")
    run = Run.objects.create(
        space=project.space,
        project=project,
        creator=alice,
        config={"harness": "analyst"},
        prompt="Why do refunds fail?",
        status=RunStatus.RUNNING,
    )

    page = browsing.new_page()
    problems = watched(page)
    response = page.goto("/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_label("Username").fill(alice.username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".whoami")).to_contain_text("alice")

    # The waterfall: clicking a row loads its span (htmx) and selects it (static/js/app.js).
    page.goto(f"/projects/{project.pk}/traces/{'c' * 32}/")
    row = page.locator('.wf-row[data-span="bbbbbbbbbbbbbbbb"]')
    row.click()
    expect(row).to_have_class("wf-row is-selected")
    expect(page.locator('.wf-row[data-span="aaaaaaaaaaaaaaaa"]')).not_to_have_class(
        "wf-row is-selected"
    )
    expect(page.locator("#span-panel")).to_contain_text("llm call")

    # A delete asks first (data-confirm): dismissed, the preset stays.
    page.goto("/studio/presets/")
    questions = []

    def dismiss(dialog):
        questions.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.locator("form[data-confirm] button", has_text="Delete").first.click()
    assert questions == ["Delete the preset Doomed? Runs started from it keep their settings."]
    assert AgentPreset.objects.filter(pk=preset.pk).exists()

    # The preset form's script hides the repository fields until a GitHub skill is ticked.
    page.goto(f"/studio/presets/space/{project.space.pk}/new/")
    expect(page.locator("#preset-repo-fields")).to_be_hidden()

    # The live session page connects its websocket through htmx and its static script.
    page.goto(f"/studio/sessions/{run.code}/")
    expect(page.locator("#run-status")).to_have_text("Running")
    page.wait_for_function("() => window.htmx && typeof htmx.createWebSocket === 'function'")

    assert violations(page) == []
    assert problems == []

    # The API docs: Swagger UI, its start-up script a file, all from our own static files.
    page.goto("/api/docs/")
    expect(page.get_by_text("agentloop API").first).to_be_visible(timeout=20_000)
    assert violations(page) == []
    assert problems == []

    # Redoc from our own static files. Its bundle hard-codes one outside image (its
    # footer logo); the policy refuses it, and that is all it refuses.
    page.goto("/api/redoc/")
    expect(page.get_by_text("agentloop API").first).to_be_visible(timeout=20_000)
    expect(page.get_by_text("API docs by Redocly")).to_be_visible()
    assert violations(page) == ["img-src https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert all("cdn.redoc.ly" in p for p in problems), problems
