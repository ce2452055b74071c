"""Agent Swarms pages: every visible run, the swarm map, a run in detail, View
traces and bulk cancel, for each role (owner, member, viewer, outsider, anonymous)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agentloop.runs import lifecycle, worker_trace
from agentloop.runs.models import (
    Artifact,
    ArtifactKind,
    EventKind,
    EventSource,
    Run,
    RunKind,
    RunStatus,
    RunTrigger,
)
from agentloop.teams.models import Membership, Project, Role, Space

ROLES = ["owner", "member", "viewer"]


def make_run(project, creator=None, *, prompt="Why do refunds fail?", preset="", **fields):
    fields.setdefault("started_at", timezone.now() - timedelta(minutes=5))
    return Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "analyst", "preset_name": preset, "secret_env_names": ["DD_KEY"]},
        prompt=prompt,
        creator=creator,
        **fields,
    )


@pytest.fixture
def runs(project, other_project, alice, bob, dave):
    """Acme has three runs; dave's own space has one nobody in Acme may see."""
    started = timezone.now() - timedelta(hours=1)
    return {
        "refunds": make_run(
            project,
            alice,
            preset="triage",
            status=RunStatus.SUCCEEDED,
            started_at=started,
            finished_at=started + timedelta(minutes=5),
            cost_usd="0.42",
        ),
        "latency": make_run(
            project,
            bob,
            prompt="Find latency regressions",
            status=RunStatus.RUNNING,
            kind=RunKind.AUTOMATION,
            trigger=RunTrigger.CRON,
        ),
        "queued": make_run(
            project, alice, prompt="Draft eval labels", status=RunStatus.QUEUED, started_at=None
        ),
        "secret": make_run(
            other_project, dave, prompt="Dave's private investigation", status=RunStatus.RUNNING
        ),
    }


def listed_codes(response) -> set[str]:
    html = response.content.decode()
    return {run.code.hex[:8] for run in Run.objects.all() if f'id="run-{run.code}"' in html}


def codes(*runs) -> set[str]:
    return {r.code.hex[:8] for r in runs}


# --- the list ----------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_members_of_every_role_see_all_runs_of_their_space(client_for, users, runs, role):
    response = client_for(users[role]).get("/swarms/")
    assert response.status_code == 200
    assert listed_codes(response) == codes(runs["refunds"], runs["latency"], runs["queued"])
    assert "Dave&#x27;s private investigation" not in response.content.decode()


def test_an_outsider_sees_only_their_own_space(client_for, users, runs):
    response = client_for(users["outsider"]).get("/swarms/")
    assert listed_codes(response) == codes(runs["secret"])


def test_anonymous_is_sent_to_log_in(client, runs):
    response = client.get("/swarms/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_table_shows_each_column(client_for, alice, runs):
    run = runs["refunds"]
    # A harness that calls a model has a cost to show (the analyst's is "—").
    Run.objects.filter(pk=run.pk).update(config={**run.config, "harness": "claude-code"})
    Artifact.objects.create(run=run, key="a", kind=ArtifactKind.INVESTIGATION, name="Findings")
    Artifact.objects.create(run=run, key="b", kind=ArtifactKind.PULL_REQUEST, name="Fix #1")
    Artifact.objects.create(run=run, key="c", kind=ArtifactKind.PULL_REQUEST, name="Fix #2")
    html = client_for(alice).get("/swarms/?preset=triage").content.decode()
    row = html.split(f'id="run-{run.code}"')[1].split("</tr>")[0]
    cells = [c.split(">", 1)[1].split("</td")[0].strip() for c in row.split("<td")[1:]]
    # checkbox (alice administers Acme, but this run is finished: no box), status, run,
    # kind over trigger (one column, so the table fits 1,400 px), preset, project,
    # creator, started, duration, cost, artifacts, PRs
    assert cells[0] == ""
    assert "Succeeded" in cells[1]
    assert "Why do refunds fail?" in cells[2]
    assert cells[3] == 'Session<br><span class="muted help">Manual</span>'
    assert cells[4:7] == ["triage", "support-bot", "alice"]
    assert cells[8] == "5 min 00 s"
    assert cells[9:] == ["$0.42", "3", "2"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=running", ["latency"]),
        ("kind=automation", ["latency"]),
        ("trigger=cron", ["latency"]),
        ("trigger=manual", ["refunds", "queued"]),
        ("preset=triage", ["refunds"]),
        ("preset=ad-hoc", ["latency", "queued"]),
        ("creator=bob", ["latency"]),
        ("q=LATENCY", ["latency"]),
        ("q=eval+labels", ["queued"]),
        ("status=running&creator=alice", []),
    ],
)
def test_filters_narrow_the_list(client_for, alice, runs, query, expected):
    response = client_for(alice).get(f"/swarms/?{query}")
    assert listed_codes(response) == codes(*(runs[name] for name in expected))


def test_the_project_filter(client_for, alice, project, runs):
    elsewhere = Project.objects.create(space=project.space, name="billing-bot")
    billing = make_run(elsewhere, alice, prompt="Billing")
    response = client_for(alice).get(f"/swarms/?project={elsewhere.pk}")
    assert listed_codes(response) == codes(billing)


def test_filtering_by_an_outsiders_project_shows_nothing_of_it(
    client_for, alice, other_project, runs
):
    response = client_for(alice).get(f"/swarms/?project={other_project.pk}")
    assert listed_codes(response) == set()


def test_a_bad_filter_is_an_error_not_a_silent_no_op(client_for, alice, runs):
    response = client_for(alice).get("/swarms/?status=exploded")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Unknown status &#x27;exploded&#x27;" in html
    assert listed_codes(response) == set()


def test_the_filter_form_offers_only_visible_choices(client_for, alice, runs):
    html = client_for(alice).get("/swarms/").content.decode()
    assert '<option value="triage"' in html
    assert '<option value="bob"' in html
    assert '<option value="dave"' not in html
    assert "other-bot" not in html


def test_pages_of_fifty(client_for, alice, project):
    now = timezone.now()
    for i in range(55):
        make_run(
            project,
            alice,
            prompt=f"run {i}",
            created_at=now - timedelta(minutes=i),
            status=RunStatus.SUCCEEDED,
        )
    client = client_for(alice)
    first, second = client.get("/swarms/"), client.get("/swarms/?page=2")
    assert len(listed_codes(first)) == 50
    assert len(listed_codes(second)) == 5
    assert not listed_codes(first) & listed_codes(second)
    assert "Page 1 of 2 · 55 runs" in first.content.decode()
    assert "run 54" in second.content.decode()  # the oldest are on the last page


def test_the_list_runs_a_bounded_number_of_queries(
    client_for, alice, project, django_assert_max_num_queries
):
    for i in range(30):
        run = make_run(project, alice, prompt=f"run {i}", preset=f"p{i % 3}")
        Artifact.objects.create(run=run, key="a", kind=ArtifactKind.PULL_REQUEST, name="PR")
    client = client_for(alice)
    client.get("/swarms/")  # warm the session and content-type caches
    with django_assert_max_num_queries(10):  # 8 today; an N+1 would be 38+
        response = client.get("/swarms/")
    assert len(listed_codes(response)) == 30


# --- live updates --------------------------------------------------------------


def test_the_table_polls_while_a_run_is_active(client_for, alice, runs):
    html = client_for(alice).get("/swarms/").content.decode()
    assert 'hx-trigger="every 3s"' in html


def test_the_fragment_stops_polling_when_all_runs_are_finished(client_for, alice, runs):
    client = client_for(alice)
    fragment = client.get("/swarms/", headers={"HX-Request": "true"})
    html = fragment.content.decode()
    assert html.lstrip().startswith('<div id="run-table"')
    assert "<html" not in html
    assert 'hx-trigger="every 3s"' in html

    Run.objects.filter(status__in=["running", "queued"]).update(status=RunStatus.CANCELLED)
    html = client.get("/swarms/", headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 3s"' not in html
    assert html.count("Cancelled") == 2


def test_the_poll_keeps_the_filters(client_for, alice, runs):
    html = client_for(alice).get("/swarms/?status=running").content.decode()
    assert 'hx-get="/swarms/?status=running"' in html


# --- the swarm map ---------------------------------------------------------------


def test_the_map_groups_the_last_two_days_by_preset(client_for, alice, project, runs):
    old = make_run(project, alice, prompt="ancient", created_at=timezone.now() - timedelta(days=3))
    html = client_for(alice).get("/swarms/map/").content.decode()
    assert 'data-preset="triage"' in html
    assert 'data-preset="ad-hoc"' in html
    assert html.index('data-preset="triage"') < html.index('data-preset="ad-hoc"')  # ad hoc last
    assert f'href="/swarms/runs/{runs["refunds"].code}/"' in html
    assert 'class="swarm-cell succeeded"' in html and ' style="' not in html.split("<main")[1]
    assert f"/swarms/runs/{old.code}/" not in html
    assert f"/swarms/runs/{runs['secret'].code}/" not in html


def test_a_preset_row_holds_a_cell_per_run_oldest_first(client_for, alice, project):
    now = timezone.now()
    made = [
        make_run(project, alice, preset="many", created_at=now - timedelta(minutes=m))
        for m in range(300, 0, -1)
    ]
    html = client_for(alice).get("/swarms/map/").content.decode()
    row = html.split('data-preset="many"')[1].split("</section>")[0]
    assert row.count('class="swarm-cell ') == 300 and "300 runs" in row
    positions = [row.index(f"/swarms/runs/{run.code}/") for run in made]
    assert positions == sorted(positions)


def test_the_time_range_narrows_the_map_and_a_bad_one_is_a_400(client_for, alice, project):
    recent = make_run(project, alice, preset="r", created_at=timezone.now() - timedelta(minutes=30))
    older = make_run(project, alice, preset="r", created_at=timezone.now() - timedelta(hours=5))
    html = client_for(alice).get("/swarms/map/?window=1h").content.decode()
    assert f"/swarms/runs/{recent.code}/" in html and f"/swarms/runs/{older.code}/" not in html
    week = client_for(alice).get("/swarms/map/?window=7d").content.decode()
    assert f"/swarms/runs/{older.code}/" in week
    response = client_for(alice).get("/swarms/map/?window=forever")
    assert response.status_code == 400 and "Unknown time range" in response.content.decode()


@pytest.mark.parametrize(("role", "seen"), [("owner", True), ("viewer", True), ("outsider", False)])
def test_the_map_shows_what_the_user_may_see(client_for, users, runs, role, seen):
    html = client_for(users[role]).get("/swarms/map/").content.decode()
    assert (f"/swarms/runs/{runs['latency'].code}/" in html) is seen


def test_the_map_needs_a_login(client, runs):
    assert client.get("/swarms/map/").status_code == 302


# --- the run detail ------------------------------------------------------------------


@pytest.fixture
def detailed(runs):
    run = runs["refunds"]
    run.append_event(EventSource.USER, EventKind.MESSAGE, {"role": "user", "text": "Why?"})
    run.append_event(
        EventSource.AGENT,
        EventKind.TOOL_CALL,
        {"id": "t1", "name": "search_spans", "input": {"q": "x"}},
    )
    run.append_event(
        EventSource.AGENT,
        EventKind.TOOL_RESULT,
        {"tool_call_id": "t1", "output": "<b>12 spans</b>", "is_error": False},
    )
    run.append_event(
        EventSource.AGENT,
        EventKind.MESSAGE,
        {"role": "assistant", "text": "**Timeouts** in refunds"},
    )
    run.append_event(EventSource.AGENT, EventKind.ERROR, {"message": "tool crashed"})
    Artifact.objects.create(
        run=run,
        key="inv",
        kind=ArtifactKind.INVESTIGATION,
        name="Refund failures",
        content="# Findings\n\n<script>alert(1)</script>\n\n[x](javascript:alert(2)) **bold**",
    )
    Artifact.objects.create(
        run=run,
        key="pr",
        kind=ArtifactKind.PULL_REQUEST,
        name="Fix retries",
        url="https://github.com/acme/bot/pull/7",
        content="<img src=x onerror=alert(3)>",
    )
    return run


@pytest.mark.parametrize("role", ROLES)
def test_every_member_reads_the_transcript_artifacts_and_configuration(
    client_for, users, detailed, role
):
    response = client_for(users[role]).get(f"/swarms/runs/{detailed.code}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "search_spans" in html
    assert "&lt;b&gt;12 spans&lt;/b&gt;" in html  # tool output is text
    assert "<strong>Timeouts</strong> in refunds" in html  # assistant markdown rendered
    assert "tool crashed" in html
    assert "Refund failures" in html and "<h1>Findings</h1>" in html
    assert "https://github.com/acme/bot/pull/7" in html
    assert "&quot;preset_name&quot;: &quot;triage&quot;" in html  # pretty JSON snapshot
    assert "<code>DD_KEY</code>" in html
    assert f'href="/swarms/runs/{detailed.code}/traces/"' in html


def test_artifact_content_is_sanitized(client_for, alice, detailed):
    html = client_for(alice).get(f"/swarms/runs/{detailed.code}/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "javascript:alert(2)" not in html
    assert "<img src=x onerror" not in html
    assert "&lt;img src=x onerror=alert(3)&gt;" in html  # non-markdown kinds are shown as text
    assert "<strong>bold</strong>" in html


def test_the_detail_never_shows_secret_values(client_for, alice, project):
    run = make_run(project, alice)
    run.set_secret_env({"DD_KEY": "dd-secret-value-123"})
    run.save()
    html = client_for(alice).get(f"/swarms/runs/{run.code}/").content.decode()
    assert "DD_KEY" in html
    assert "dd-secret-value-123" not in html


def test_an_outsider_gets_404_for_the_detail(client_for, dave, detailed):
    response = client_for(dave).get(f"/swarms/runs/{detailed.code}/")
    assert response.status_code == 404
    assert "search_spans" not in response.content.decode()


def test_a_bad_code_is_404(client_for, alice, runs):
    assert client_for(alice).get("/swarms/runs/not-a-uuid/").status_code == 404


def test_anonymous_detail_is_sent_to_log_in(client, detailed):
    assert client.get(f"/swarms/runs/{detailed.code}/").status_code == 302


# --- View traces -------------------------------------------------------------------------


@pytest.fixture
def traced(project, alice):
    run = make_run(project, alice, status=RunStatus.PROVISIONING, started_at=None, preset="triage")
    lifecycle.move(run, RunStatus.RUNNING)
    run.append_event(EventSource.AGENT, EventKind.MESSAGE, {"role": "assistant", "text": "hi"})
    lifecycle.move(run, RunStatus.SUCCEEDED)
    return run


@pytest.mark.parametrize("role", ROLES)
def test_view_traces_opens_the_runs_own_trace_in_the_trace_view(client_for, users, traced, role):
    client = client_for(users[role])
    response = client.get(f"/swarms/runs/{traced.code}/traces/")
    worker = traced.space.worker_project()
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{worker.pk}/traces/{traced.code.hex}/"
    page = client.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200
    assert "triage run" in html and "turn 1" in html
    assert worker_trace.root_span_id(traced) in html


def test_a_project_named_like_the_worker_project_breaks_nothing(client_for, alice, space, project):
    # The worker project's identity is its flag, not its name: a project of
    # people's own may take the name, and View traces still finds the runs' trace.
    namesake = Project.objects.create(space=space, name="agentloop workers")
    run = make_run(project, alice, status=RunStatus.PROVISIONING, started_at=None)
    lifecycle.move(run, RunStatus.RUNNING)

    worker = space.worker_project()
    assert worker.internal and worker.pk != namesake.pk
    assert space.worker_project().pk == worker.pk  # one per space
    response = client_for(alice).get(f"/swarms/runs/{run.code}/traces/")
    assert response["Location"] == f"/projects/{worker.pk}/traces/{run.code.hex}/"
    assert client_for(alice).get(response["Location"]).status_code == 200
    assert not namesake.spans.exists()


def test_an_outsider_can_open_neither_the_link_nor_the_trace(client_for, dave, traced):
    client = client_for(dave)
    worker = traced.space.worker_project()
    assert client.get(f"/swarms/runs/{traced.code}/traces/").status_code == 404
    assert client.get(f"/projects/{worker.pk}/traces/{traced.code.hex}/").status_code == 404


def test_view_traces_before_the_run_started_says_so(client_for, alice, runs):
    response = client_for(alice).get(f"/swarms/runs/{runs['queued'].code}/traces/")
    assert response.status_code == 404
    assert "No trace yet" in response.content.decode()


def test_view_traces_needs_a_login(client, traced):
    assert client.get(f"/swarms/runs/{traced.code}/traces/").status_code == 302


# --- bulk cancel -----------------------------------------------------------------------------


def test_only_admins_see_checkboxes(client_for, users, runs):
    admin_html = client_for(users["owner"]).get("/swarms/").content.decode()
    assert f'name="run" value="{runs["latency"].code}"' in admin_html
    assert f'name="run" value="{runs["refunds"].code}"' not in admin_html  # finished
    assert "Cancel selected" in admin_html
    for role in ("member", "viewer"):
        html = client_for(users[role]).get("/swarms/").content.decode()
        assert 'type="checkbox"' not in html
        assert "Cancel selected" not in html


def test_an_admin_cancels_the_selected_runs(client_for, alice, runs):
    latency, queued, refunds = runs["latency"], runs["queued"], runs["refunds"]
    response = client_for(alice).post(
        "/swarms/cancel/",
        {
            "run": [str(latency.code), str(queued.code), str(refunds.code)],
            "next": "/swarms/?kind=session",
        },
        follow=True,
    )
    html = response.content.decode()
    assert response.redirect_chain == [("/swarms/?kind=session", 302)]
    assert "Cancelled 2 runs." in html
    assert f"Already finished or stopping: {refunds.code.hex[:8]}." in html
    queued.refresh_from_db()
    latency.refresh_from_db()
    refunds.refresh_from_db()
    assert queued.status == RunStatus.CANCELLED  # queued: at once
    assert latency.stop_requested_at is not None  # active: its runner is asked to stop
    assert refunds.status == RunStatus.SUCCEEDED


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_a_non_admin_is_refused_and_nothing_is_cancelled(client_for, users, runs, role):
    response = client_for(users[role]).post(
        "/swarms/cancel/", {"run": [str(runs["queued"].code), str(runs["latency"].code)]}
    )
    assert response.status_code == 403
    runs["queued"].refresh_from_db()
    runs["latency"].refresh_from_db()
    assert runs["queued"].status == RunStatus.QUEUED
    assert runs["latency"].stop_requested_at is None


def test_one_foreign_run_in_the_selection_cancels_nothing(client_for, alice, bob, project, runs):
    """bob administers his own space but only is a member of Acme."""
    own = Space.create_with_owner("Bob's", bob)
    bobs_run = make_run(
        Project.objects.create(space=own, name="mine"),
        bob,
        status=RunStatus.QUEUED,
        started_at=None,
    )
    response = client_for(bob).post(
        "/swarms/cancel/", {"run": [str(bobs_run.code), str(runs["queued"].code)]}
    )
    assert response.status_code == 403
    bobs_run.refresh_from_db()
    assert bobs_run.status == RunStatus.QUEUED


def test_an_outsider_gets_404_and_nothing_is_cancelled(client_for, dave, runs):
    response = client_for(dave).post("/swarms/cancel/", {"run": [str(runs["queued"].code)]})
    assert response.status_code == 404
    runs["queued"].refresh_from_db()
    assert runs["queued"].status == RunStatus.QUEUED


def test_anonymous_cannot_cancel(client, runs):
    response = client.post("/swarms/cancel/", {"run": [str(runs["queued"].code)]})
    assert response.status_code == 302
    runs["queued"].refresh_from_db()
    assert runs["queued"].status == RunStatus.QUEUED


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Select at least one run to cancel."),
        ({"run": ["nope"]}, "&#x27;nope&#x27; is not a run code."),
    ],
)
def test_bad_selections_are_explained(client_for, alice, runs, data, message):
    response = client_for(alice).post("/swarms/cancel/", data, follow=True)
    assert message in response.content.decode()
    assert Run.objects.filter(status=RunStatus.CANCELLED).count() == 0


def test_cancel_is_post_only(client_for, alice, runs):
    assert client_for(alice).get("/swarms/cancel/").status_code == 405


def test_next_cannot_leave_the_site(client_for, alice, runs):
    response = client_for(alice).post(
        "/swarms/cancel/", {"run": [str(runs["queued"].code)], "next": "https://evil.example/"}
    )
    assert response["Location"] == "/swarms/"


def test_a_member_made_admin_gets_checkboxes(client_for, bob, space, runs):
    Membership.objects.filter(space=space, user=bob).update(role=Role.ADMIN)
    Membership.objects.get(space=space, user=bob).save()  # sync the permissions
    html = client_for(bob).get("/swarms/").content.decode()
    assert f'name="run" value="{runs["queued"].code}"' in html


def test_our_own_event_partial_renders_every_kind_safely(runs):
    """The fallback used when the Studio's transcript partial is not installed."""
    from django.template.loader import render_to_string

    run = runs["refunds"]
    payloads = [
        (EventSource.USER, EventKind.MESSAGE, {"role": "user", "text": "<i>why</i>"}),
        (EventSource.AGENT, EventKind.MESSAGE, {"role": "assistant", "text": "**x**<script>"}),
        (EventSource.AGENT, EventKind.TOOL_CALL, {"id": "t", "name": "Read", "input": {"p": 1}}),
        (
            EventSource.AGENT,
            EventKind.TOOL_RESULT,
            {"tool_call_id": "t", "output": "<b>", "is_error": True},
        ),
        (EventSource.SYSTEM, EventKind.STATUS, {"state": "running", "detail": "go"}),
        (EventSource.AGENT, EventKind.ERROR, {"message": "<boom>"}),
    ]
    html = "".join(
        render_to_string("swarms/_event.html", {"event": run.append_event(s, k, p)})
        for s, k, p in payloads
    )
    assert "&lt;i&gt;why&lt;/i&gt;" in html
    assert "<strong>x</strong>" in html and "<script>" not in html
    assert "<code>Read</code>" in html
    assert "&lt;b&gt;" in html and '<span class="badge failed">error</span>' in html
    assert '<span class="badge running">running</span>' in html
    assert "&lt;boom&gt;" in html


def test_the_list_shows_an_automations_task_without_its_footer(client_for, alice, project):
    run = make_run(
        project,
        alice,
        prompt="Triage the refunds\n\n---\nStarted by automation “nightly”.\nFired at 03:00.",
    )
    html = client_for(alice).get("/swarms/").content.decode()
    row = html.split(f'id="run-{run.code}"')[1].split("</tr>")[0]
    assert "Triage the refunds" in row and "Started by automation" not in row


def test_the_analyst_shows_no_cost_it_never_had(client_for, alice, runs):
    html = client_for(alice).get("/swarms/?preset=triage").content.decode()
    row = html.split(f'id="run-{runs["refunds"].code}"')[1].split("</tr>")[0]
    assert "$" not in row and "the analyst calls no model" in row
    detail = client_for(alice).get(f"/swarms/runs/{runs['refunds'].code}/").content.decode()
    assert "<dt>Cost</dt>" not in detail and "<dt>Tokens</dt>" not in detail
