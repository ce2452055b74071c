"""Every page, as admin, member and viewer, at 390 px, 1,400 px and a wide screen (real Chromium).

What a person sees on each page (issue 15, point 11): nothing scrolls sideways,
the main navigation can be reached, the page is drawn in the app's layout (no
bare error), no page leaks an internal suffix ("--- Started by automation"),
and the analyst's session and run pages show no model, tokens or $0.0000 cost
(they mean nothing for it). One browser context per role; the viewport changes
between widths. With AGENTLOOP_AUDIT_DIR set, each page is also saved there as
a full-page PNG for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from agentloop.automations.actions import save_automation
from agentloop.automations.models import Automation
from agentloop.presets.models import AgentPreset
from agentloop.runs.models import Artifact, Run, RunKind, RunStatus, RunTrigger
from agentloop.traces.demo import write_demo_traces
from tests.test_browser import earlier_runs

pytest_plugins = ["tests.browser_support"]  # browsing

pytestmark = [
    pytest.mark.slow,
    # The pages draw the same on either database, and the access helpers behind
    # them are tested on both (test_api_rbac, test_access, the page tests); 700
    # page loads once is enough for CI's time.
    pytest.mark.skipif(
        connection.vendor == "postgresql", reason="the layout audit runs on SQLite only"
    ),
]

WIDTHS = (390, 1400, 1920)
AUDIT_DIR = os.environ.get("AGENTLOOP_AUDIT_DIR")
TRACE = "ab" * 16


def seed(project, alice, bob):
    """A space as a team leaves it: traces, finished runs (one from an automation,
    with the internal suffix in its prompt), artifacts to review, a preset and an automation."""
    write_demo_traces(project, traces=40, seed=4, now=timezone.now())
    history = earlier_runs(project, alice, bob)
    automated = history[0]
    # What agentloop.automations.actions.prompt_for gives the agent after the task.
    automated.prompt = (
        "Triage last night's failing refunds\n\n---\nStarted by automation “nightly triage”.\n"
        "Scheduled fire at 2026-12-03 03:00 (0 3 * * *, Europe/Paris)."
    )
    automated.save(update_fields=["prompt"])
    analyst = history[2]
    Artifact.objects.create(
        run=analyst,
        key="inv",
        kind="investigation",
        name="investigation.md",
        content=f"# Found 1 issue\n\n1. **refund-tool fails** — evidence `{TRACE}`",
    )
    labels = [
        {
            "span_id": f"{i:016x}",
            "trace_id": TRACE,
            "name": "correctness",
            "label": "incorrect",
            "score": 0,
            "explanation": "The tool call timed out and the answer made up a refund number.",
        }
        for i in range(1, 4)
    ]
    Artifact.objects.create(
        run=analyst,
        key="labels",
        kind="eval_labels",
        name="eval_labels.json",
        content=json.dumps(labels),
    )
    preset = AgentPreset.objects.create(
        space=project.space,
        name="Nightly triage of failing tools",
        harness="analyst",
        created_by=alice,
    )
    automation = save_automation(
        bob,
        Automation(
            space=project.space,
            project=project,
            preset=preset,
            name="nightly triage",
            prompt="Triage last night's failures.",
            trigger="cron",
            cron_expression="0 3 * * *",
            time_zone="Europe/Paris",
        ),
    )
    coder = Run.objects.create(
        space=project.space,
        project=project,
        kind=RunKind.SESSION,
        trigger=RunTrigger.MANUAL,
        config={"harness": "claude-code", "sandbox": "local", "model": "claude-sonnet-4-5"},
        prompt="Fix the refund tool's timeout " + "and explain " * 30,
        creator=alice,
        status=RunStatus.SUCCEEDED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        input_tokens=12_345,
        output_tokens=678,
        cost_usd="0.0421",
    )
    return {"analyst": analyst, "coder": coder, "preset": preset, "automation": automation}


def pages(project, seeded) -> list[str]:
    space, analyst, coder = project.space, seeded["analyst"], seeded["coder"]
    labels = analyst.artifacts.get(kind="eval_labels")
    return [
        "/",
        "/account/",
        "/settings/tokens/",
        f"/spaces/{space.pk}/",
        f"/projects/{project.pk}/traces/",
        f"/projects/{project.pk}/traces/{project.spans.first().trace_id}/",
        f"/projects/{project.pk}/settings/",
        f"/projects/{project.pk}/signal/",
        "/studio/",
        "/studio/sessions/",
        "/studio/sessions/?scope=all",
        "/studio/sessions/new/",
        f"/studio/sessions/{analyst.code}/",
        f"/studio/sessions/{coder.code}/",
        "/studio/presets/",
        f"/studio/presets/{seeded['preset'].pk}/",
        "/automations/",
        f"/automations/{seeded['automation'].pk}/",
        "/review/",
        f"/review/{labels.pk}/",
        "/swarms/",
        "/swarms/map/",
        f"/swarms/runs/{analyst.code}/",
        f"/swarms/runs/{coder.code}/",
        f"/skills/spaces/{space.pk}/",
        "/studio/sessions/00000000-0000-0000-0000-000000000000/",  # a 404 in the layout
    ]


def slug(url: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-") or "home"


def test_every_page_fits_every_width_for_every_role(browsing, project, alice, bob, carol):
    seeded = seed(project, alice, bob)
    urls = pages(project, seeded)
    analyst_pages = {f"/studio/sessions/{seeded['analyst'].code}/"}
    analyst_pages.add(f"/swarms/runs/{seeded['analyst'].code}/")
    problems = []
    for user in (alice, bob, carol):
        page = browsing.logged_in(user)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for url in urls:
                response = page.goto(url)
                where = (user.username, width, url)
                if response.status >= 500:
                    problems.append((*where, f"HTTP {response.status}"))
                    continue
                # In the layout, whatever the answer (a viewer's 403 included).
                expect(page.locator(".mainnav")).to_be_attached()
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                if overflow > 0:
                    wide = page.evaluate(
                        """() => [...document.querySelectorAll('body *')]
                        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                        .slice(0, 3).map(e => e.tagName + '.' + e.className)"""
                    )
                    problems.append((*where, f"scrolls sideways by {overflow} px: {wide}"))
                if width >= 1400:  # from 1,400 px on, no table needs its own scrollbar
                    clipped = page.evaluate(
                        """() => [...document.querySelectorAll('.table-wrap')]
                        .filter(w => w.scrollWidth > w.clientWidth + 1)
                        .map(w => (w.querySelector('table').className || 'table')
                             + ' by ' + (w.scrollWidth - w.clientWidth) + ' px')"""
                    )
                    if clipped:
                        problems.append((*where, f"tables scroll sideways: {clipped}"))
                nav = page.locator(".mainnav a", has_text="Review")
                nav.scroll_into_view_if_needed()
                if not nav.is_visible():
                    problems.append((*where, "the Review link cannot be reached"))
                text = page.locator("main").inner_text()
                if re.search(r"---\s*Started by automation", text):
                    problems.append((*where, "internal suffix shown"))
                if url in analyst_pages and re.search(r"\$0\.0+\b|tokens|Model", text):
                    problems.append((*where, "model/tokens/cost shown for the analyst"))
                if AUDIT_DIR:
                    out = Path(AUDIT_DIR)
                    out.mkdir(parents=True, exist_ok=True)
                    page.screenshot(
                        path=str(out / f"{user.username}-{width}-{slug(url)}.png"), full_page=True
                    )
    # The eval labels are a table on the session page (point 3), each trace id a link.
    page = browsing.logged_in(alice)
    page.goto(f"/studio/sessions/{seeded['analyst'].code}/")
    rows = page.locator("#run-artifacts table.labels tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first.locator(f'a[href="/projects/{project.pk}/traces/{TRACE}/"]')).to_have_count(1)
    assert not problems, "\n".join(map(str, problems))
