"""The Studio, Swarms and trace pages in a real browser (headless Chromium).

One session, as a team uses it: alice logs in, starts an analyst session on a
project with demo traces from the Studio form, watches the transcript arrive
over the websocket without reloading, reads the investigation artifact, finds
the run in Swarms and opens View traces. Carol (viewer) watches the same
session in a second browser context: she sees the transcript, not the
follow-up box or the Stop button.

The runner's event batches are held at the server (`event_gate`) until both
pages have loaded, so "arrives live" is proven, not raced. Screenshots go to
docs/screenshots/ for reviewers.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agentloop.runs.models import Artifact, Run, RunKind, RunStatus, RunTrigger
from agentloop.runs.worker_trace import root_span_id
from agentloop.traces.demo import write_demo_traces
from tests.span_factory import make_span

pytest_plugins = ["tests.browser_support"]  # browsing, event_gate, take_screenshot

pytestmark = pytest.mark.slow

LIVE = 60_000  # ms: a real sandbox starts and the analyst reads the spans
PROMPT = "Why do customer support conversations fail? Rank what breaks most."


def not_reloaded(page) -> bool:
    """True while the document is the one the test marked after it loaded."""
    return page.evaluate(
        "window.__loadedOnce === true && performance.getEntriesByType('navigation').length === 1"
    )


def mark_loaded(page) -> None:
    page.evaluate("window.__loadedOnce = true")


def earlier_runs(project, alice, bob) -> list[Run]:
    """Finished runs of the last two days, so the Swarms screenshots show a
    team's history rather than one lonely row. All terminal: nothing polls."""
    now = timezone.now()
    history = [
        (3, "nightly triage", RunStatus.SUCCEEDED, bob, "Triage last night's failing refunds"),
        (7, "nightly triage", RunStatus.FAILED, bob, "Triage the checkout tool timeouts"),
        (12, "latency watch", RunStatus.SUCCEEDED, alice, "Find latency regressions in search"),
        (20, "", RunStatus.CANCELLED, alice, "Draft eval labels for hallucinated answers"),
        (26, "latency watch", RunStatus.TIMED_OUT, alice, "Why did p99 double on Tuesday?"),
        (31, "nightly triage", RunStatus.SUCCEEDED, bob, "Triage the shipping-rate errors"),
        (40, "latency watch", RunStatus.SUCCEEDED, alice, "Compare gpt-4o-mini latency per tool"),
    ]
    runs = []
    for hours_ago, preset, status, creator, prompt in history:
        started = now - timedelta(hours=hours_ago)
        runs.append(
            Run.objects.create(
                space=project.space,
                project=project,
                kind=RunKind.AUTOMATION if preset else RunKind.SESSION,
                trigger=RunTrigger.CRON if preset else RunTrigger.MANUAL,
                config={"harness": "analyst", "sandbox": "local", "preset_name": preset},
                prompt=prompt,
                creator=creator,
                status=status,
                created_at=started,
                started_at=started,
                finished_at=started + timedelta(minutes=4 + hours_ago % 5),
                cost_usd="0.00",
            )
        )
    return runs


def test_a_session_from_the_studio_form_to_view_traces(
    browsing, event_gate, take_screenshot, project, alice, bob, carol
):
    write_demo_traces(project, traces=80, seed=4, now=timezone.now() - timedelta(minutes=5))
    history = earlier_runs(project, alice, bob)

    page = browsing.logged_in(alice)

    page.get_by_role("link", name="Studio").click()
    expect(page.get_by_role("heading", name="Agent Studio")).to_be_visible()
    expect(page.get_by_role("heading", name="Root-cause a tool failure")).to_be_visible()
    take_screenshot(page, "studio-gallery")

    page.get_by_role("link", name="New session").click()
    page.get_by_label("Project").select_option(label="Acme / support-bot")
    page.get_by_label("Preset").select_option(label="None — choose below")
    page.get_by_label("Harness").select_option("analyst")
    page.get_by_label("Sandbox provider").select_option("local")
    page.get_by_label("Task").fill(PROMPT)
    page.get_by_role("button", name="Start session").click()

    # The session page opens while the sandbox starts; the runner waits at the gate.
    expect(page).to_have_url(re.compile(r"/studio/sessions/[0-9a-f-]{36}/$"))
    run = Run.objects.get(prompt=PROMPT)
    assert run.creator == alice and run.config["harness"] == "analyst"
    session_url = f"/studio/sessions/{run.code}/"
    transcript = page.locator("#transcript")
    expect(transcript.locator(".tx-from-user")).to_contain_text(PROMPT)
    expect(page.locator("#followup-text")).to_be_attached()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text(re.compile("Queued|Provisioning|Running"))
    mark_loaded(page)
    assert transcript.locator(".tx-tool_call").count() == 0

    # Carol, a viewer, opens the same live session in her own browser context.
    carol_page = browsing.logged_in(carol)
    carol_page.goto(session_url)
    expect(carol_page.locator("#transcript .tx-from-user")).to_contain_text(PROMPT)
    mark_loaded(carol_page)
    assert not Run.objects.get(pk=run.pk).is_terminal  # the controls would be gone anyway

    expect(carol_page.locator("#run-controls")).to_be_attached()
    expect(carol_page.locator("#followup-text")).to_have_count(0)
    expect(carol_page.get_by_role("button", name="Stop")).to_have_count(0)

    event_gate.open()

    # The agent's work arrives over the websocket: no navigation, no reload.
    expect(transcript.locator(".tx-tool_call").first).to_be_visible(timeout=LIVE)
    artifacts = page.locator("#run-artifacts")
    expect(artifacts.locator("summary", has_text="investigation")).to_be_visible(timeout=LIVE)
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=LIVE)
    assert not_reloaded(page)
    # Ended: the box now continues the session.
    expect(page.locator("#run-controls")).to_have_attribute("data-controls", "ended")
    expect(page.get_by_role("button", name="Continue")).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)

    expect(carol_page.locator("#transcript .tx-tool_call").first).to_be_visible(timeout=LIVE)
    expect(carol_page.locator("#run-status")).to_have_text("Succeeded", timeout=LIVE)
    assert not_reloaded(carol_page)
    expect(carol_page.locator("#followup-text")).to_have_count(0)

    investigation = Artifact.objects.get(run=run, kind="investigation")
    first_line = investigation.content.strip().splitlines()[0].lstrip("# ").strip()
    shown = artifacts.locator("details", has_text="investigation").locator(".tx-markdown")
    expect(shown.first).to_contain_text(first_line)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.exit_reason
    take_screenshot(page, "studio-session")

    # Swarms: the run is in the table and on the map.
    page.get_by_role("link", name="Swarms").click()
    row = page.locator(f"#run-{run.code}")
    expect(row).to_contain_text(PROMPT[:40])
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "succeeded")
    expect(page.locator(".run-row")).to_have_count(1 + len(history))
    take_screenshot(page, "swarms-list")
    page.get_by_label("Prompt contains").fill("support conversations")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".run-row")).to_have_count(1)
    expect(page.locator(f"#run-{run.code}")).to_be_visible()

    page.goto("/swarms/map/")
    dot = page.locator(f'a.swarm-cell[href="/swarms/runs/{run.code}/"]')
    expect(dot).to_be_visible()
    take_screenshot(page, "swarms-map")
    dot.click()

    # Run detail → View traces: the worker's own trace, AGENT span at the root.
    expect(page.get_by_role("link", name="View traces")).to_be_visible()
    page.get_by_role("link", name="View traces").click()
    worker = run.space.worker_project()
    expect(page).to_have_url(re.compile(rf"/projects/{worker.pk}/traces/{run.code.hex}/"))
    root = page.locator(f'.wf-row[data-span="{root_span_id(run)}"]')
    expect(root).to_be_visible()
    expect(root.locator(".badge.kind")).to_have_text("AGENT")
    # One TOOL span per tool call the transcript showed.
    tool_calls = run.events.filter(kind="tool_call").count()
    assert tool_calls > 0
    expect(page.locator(".wf-row .badge.kind", has_text="TOOL")).to_have_count(tool_calls)
    take_screenshot(page, "run-traces")

    # The bound project's traces, the ones the analyst read.
    page.goto(f"/projects/{project.pk}/traces/")
    expect(page.locator(".span-row").first).to_be_visible()
    take_screenshot(page, "traces-explorer")
    page.locator(".span-row a.mono").first.click()
    expect(page.locator(".waterfall .wf-row[data-span]").first).to_be_visible()
    take_screenshot(page, "trace-view")


def test_stop_then_continue_a_session_and_approve_its_labels_in_place(
    browsing, event_gate, take_screenshot, project, alice
):
    """After Stop the controls follow the run without a reload (Stopping…, then
    Continue); a message continues the cancelled session in a new sandbox, the
    analyst answers about its findings with links to the evidence traces, and
    its eval labels are approved from the session page."""
    write_demo_traces(project, traces=80, seed=4, now=timezone.now() - timedelta(minutes=5))
    now = timezone.now()
    for i in range(8):  # a failure for the analyst to find and be asked about
        make_span(
            project,
            name="refund-tool",
            kind="TOOL",
            status="ERROR",
            start=now - timedelta(minutes=30 + i),
            attributes={"exception.type": "TimeoutError"},
        )
    page = browsing.logged_in(alice)
    page.goto("/studio/sessions/new/")
    page.get_by_label("Project").select_option(label="Acme / support-bot")
    page.get_by_label("Preset").select_option(label="None — choose below")
    page.get_by_label("Harness").select_option("analyst")
    page.get_by_label("Sandbox provider").select_option("local")
    page.get_by_label("Task").fill(PROMPT)
    page.get_by_role("button", name="Start session").click()
    expect(page).to_have_url(re.compile(r"/studio/sessions/[0-9a-f-]{36}/$"))
    run = Run.objects.get(prompt=PROMPT)
    mark_loaded(page)
    # The runner is up (its events wait at the gate): stop it.
    expect(page.locator("#run-status")).to_have_text("Running", timeout=LIVE)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Stopping…")).to_be_disabled()
    expect(page.locator("#followup-text")).to_have_count(0)
    event_gate.open()
    expect(page.locator("#run-status")).to_have_text("Cancelled", timeout=LIVE)
    expect(page.locator("#run-controls")).to_have_attribute("data-controls", "ended")
    expect(page.get_by_role("button", name="Stopping…")).to_have_count(0)
    assert not_reloaded(page)

    # A message continues it: same page, same transcript, a new sandbox.
    first_events = run.events.count()
    page.locator("#followup-text").fill("Hello, what did you find?")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#run-status")).to_have_text(
        re.compile("Queued|Provisioning|Running"), timeout=LIVE
    )
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=LIVE)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.exit_reason
    assert run.events.count() > first_events
    assert not_reloaded(page)

    # Ask about the evidence: the answer links each trace id to its trace.
    page.locator("#followup-text").fill("Which traces are the evidence for issue 1?")
    page.get_by_role("button", name="Continue").click()
    answer = page.locator("#transcript .tx-from-agent", has_text="About issue").last
    expect(answer).to_be_visible(timeout=LIVE)
    link = answer.locator(f'a[href^="/projects/{project.pk}/traces/"]').first
    expect(link).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("Succeeded", timeout=LIVE)
    assert not_reloaded(page)
    take_screenshot(page, "studio-session-continued")

    # The investigation, read and approved where it is shown.
    investigation = Artifact.objects.get(run=run, kind="investigation")
    panel = page.locator(f"#artifact-{investigation.pk}")
    expect(panel.locator(".tx-markdown a code").first).to_be_visible()  # evidence ids link
    panel.get_by_role("button", name="Approve").click()
    expect(page.locator(f"#artifact-{investigation.pk} .badge.review-approved")).to_be_visible()
    investigation.refresh_from_db()
    assert (investigation.review_state, investigation.reviewer) == ("approved", alice)
    link = (
        page.locator("#transcript .tx-from-agent", has_text="About issue")
        .last.locator(f'a[href^="/projects/{project.pk}/traces/"]')
        .first
    )
    link.click()
    expect(page).to_have_url(re.compile(rf"/projects/{project.pk}/traces/[0-9a-f]{{32}}/"))


def test_the_pages_a_new_user_tripped_on_in_a_real_browser(
    browsing, take_screenshot, project, alice, bob, carol
):
    """Sessions list, review queue grouped with bulk approve, error pages, time zone,
    swarm map cells, and every page usable at 390 px (no sideways scroll, nav reachable)."""
    history = earlier_runs(project, alice, bob)
    sessions = [r for r in history if r.kind == RunKind.SESSION]
    for run in history[:3]:
        Artifact.objects.create(
            run=run, key="inv", kind="investigation", name="investigation.md", content="# Found"
        )
    page = browsing.logged_in(alice)

    # Studio → sessions list, mine, filtered.
    page.goto("/studio/")
    page.get_by_role("link", name="Your sessions").click()
    rows = page.locator(".session-row")
    expect(rows).to_have_count(len([r for r in sessions if r.creator == alice]))
    page.get_by_label("State").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    take_screenshot(page, "studio-sessions")

    # Review queue: three runs' investigations are one group, approved at once.
    page.goto("/review/")
    group = page.locator(".review-group")
    expect(group).to_have_count(1)
    expect(group).to_contain_text("3 items from 3 runs")
    take_screenshot(page, "review-queue")
    group.get_by_role("button", name="Approve all 3").click()
    expect(page.locator(".msg-success")).to_contain_text("Approved 3 artifacts.")
    assert Artifact.objects.filter(review_state="approved").count() == 3

    # The viewer's time zone, on the session page.
    page.goto("/account/")
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".msg-success")).to_contain_text("Europe/Paris")
    page.goto(f"/studio/sessions/{sessions[0].code}/")
    expect(page.locator("#run-facts")).to_contain_text("CET")

    # Swarm map: a cell per run, details on hover, a time range.
    page.goto("/swarms/map/?window=7d")
    cells = page.locator("a.swarm-cell")
    expect(cells).to_have_count(len(history))
    oldest = min(history, key=lambda r: r.created_at)
    first = page.locator(f'a.swarm-cell[href="/swarms/runs/{oldest.code}/"]')
    expect(first).to_have_attribute(
        "title", re.compile(rf"{oldest.get_status_display()} · support-bot · ")
    )
    take_screenshot(page, "swarms-map")
    page.get_by_label("Time range").select_option("1h")
    page.get_by_role("button", name="Show").click()
    expect(cells).to_have_count(0)

    # A refused action and a missing page explain themselves in the layout.
    carol_page = browsing.logged_in(carol)
    carol_page.goto("/studio/sessions/00000000-0000-0000-0000-000000000000/")
    expect(carol_page.locator('[data-error="404"]')).to_contain_text("No such run.")
    expect(carol_page.get_by_role("link", name="Your spaces")).to_be_visible()
    take_screenshot(carol_page, "error-404")
    response = carol_page.request.get("/favicon.ico")
    assert response.ok and "svg" in response.headers["content-type"]

    # 390 px: nothing scrolls sideways, every navigation link can be reached.
    narrow = browsing.new_page()
    narrow.set_viewport_size({"width": 390, "height": 844})
    narrow.goto("/login/")
    narrow.get_by_label("Username").fill(alice.username)
    narrow.get_by_label("Password").fill("wrong password")
    narrow.get_by_role("button", name="Log in").click()
    expect(narrow.get_by_label("Username")).to_have_value(alice.username)  # kept
    for url in ("/", "/studio/sessions/?scope=all", "/swarms/", "/review/", "/automations/",
                "/studio/presets/", f"/studio/sessions/{sessions[0].code}/"):  # fmt: skip
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(url)
        overflow = page.evaluate(
            "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
        assert overflow <= 1, (url, overflow)
        review = page.locator(".mainnav a", has_text="Review")
        review.scroll_into_view_if_needed()
        expect(review).to_be_in_viewport()
    page.goto("/swarms/")
    take_screenshot(page, "swarms-list-390")
    page.goto(f"/studio/sessions/{sessions[0].code}/")
    take_screenshot(page, "studio-session-390")
