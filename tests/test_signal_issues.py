"""Signal's issues across runs: the structured artifact, the lifecycle (open → resolved →
regressed), the tab (severity, where, since, how much, nothing notable, the chart), and the
actions on it (Run now, Investigate, Propose a fix) for every role."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from agentloop.automations.models import AutomationFire
from agentloop.runs import actions
from agentloop.runs.models import Artifact, Run, RunStatus
from agentloop.signal import actions as signal
from agentloop.signal import issues
from agentloop.signal.models import IssueState, SignalIssue, SignalPass, SignalSighting
from tests.skill_factory import github_skill

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
USE_ROLES = [("owner", 302), ("member", 302), ("viewer", 403), ("outsider", 404)]


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)


def found(fingerprint="error:tool:lookup_order:ConnectionError", **fields) -> dict:
    return {
        "fingerprint": fingerprint,
        "class": "error_concentration",
        "title": "`lookup_order` fails with ConnectionError in region eu-west",
        "severity": "high",
        "component": {"kind": "tool", "name": "lookup_order"},
        "where": [{"dimension": "attr:region", "value": "eu-west", "lift": 12.5, "share": 0.94}],
        "since": {"onset": "2026-03-02T09:00:00Z", "end": None},
        "how_much": {
            "rate": 0.31,
            "baseline_rate": 0.004,
            "affected_traces": 130,
            "share_of_traffic": 0.05,
            "spans": 140,
        },
        "evidence": ["a" * 32, "b" * 32],
        "proposed_fix": "Retry `lookup_order` against the eu-west endpoint with a backoff.",
        "overview": "The order lookup tool fails for eu-west users.",
        **fields,
    }


def signal_run(project, issue_list, *, finished_at=NOW) -> Run:
    run = Run.objects.create(
        space=project.space,
        project=project,
        prompt="p",
        status=RunStatus.SUCCEEDED,
        config={"harness": "analyst"},
        finished_at=finished_at,
    )
    Artifact.objects.create(
        run=run,
        key=f"issues-{run.pk}",
        kind="file",
        name=issues.ISSUES_FILE,
        content=json.dumps(issue_list),
    )
    return run


def test_the_structured_artifact_is_read_and_what_a_sandbox_wrote_is_not_trusted(project):
    run = signal_run(
        project,
        [
            found(evidence=["a" * 32, "not-a-trace-id", 7], severity="catastrophic"),
            {"title": "no fingerprint"},
            "not an issue",
        ],
    )

    (issue,) = issues.issues_of_run(run)

    assert issue["evidence"] == ["a" * 32]
    assert issue["severity"] == "low"  # an unknown severity is not promoted
    assert issue["where"][0] == {
        "dimension": "attr:region",
        "value": "eu-west",
        "lift": 12.5,
        "share": 0.94,
    }


def test_a_broken_issues_file_falls_back_to_the_investigation(project):
    run = signal_run(project, [])
    Artifact.objects.filter(run=run).update(content="{not json")
    Artifact.objects.create(
        run=run,
        key="inv",
        kind="investigation",
        name="investigation.md",
        content="# Investigation\n\n## Findings\n\n### 1. `chat` fails with TimeoutError\n\n"
        "Affects 2 traces (3 spans).\n",
    )

    (issue,) = issues.issues_of_run(run)

    assert issue["fingerprint"] == "error:chat:TimeoutError"
    assert issue["how_much"]["affected_traces"] == 2


def test_an_issue_is_kept_by_its_fingerprint_and_reading_a_run_twice_changes_nothing(project):
    first = signal_run(project, [found()])
    issues.record_run(first, issues.issues_of_run(first), now=NOW)
    second = signal_run(project, [found(how_much={"affected_traces": 150, "spans": 160})])
    issues.record_run(second, issues.issues_of_run(second), now=NOW + timedelta(minutes=10))
    issues.record_run(second, issues.issues_of_run(second), now=NOW + timedelta(minutes=20))

    (issue,) = SignalIssue.objects.all()
    assert (issue.affected_traces, issue.span_count, issue.last_run) == (150, 160, second)
    assert issue.first_seen_at == NOW and issue.state == IssueState.OPEN
    assert SignalSighting.objects.filter(issue=issue).count() == 2
    assert SignalPass.objects.count() == 2


def test_an_issue_resolves_when_absent_long_enough_and_regresses_when_it_returns(project):
    seen = signal_run(project, [found()])
    issues.record_run(seen, issues.issues_of_run(seen), now=NOW)

    # One pass without it, soon after: not resolved yet.
    quiet = signal_run(project, [])
    issues.record_run(quiet, [], now=NOW + timedelta(minutes=10))
    assert SignalIssue.objects.get().state == IssueState.OPEN

    # Two passes without it, and longer ago than RESOLVE_AFTER: resolved.
    later = NOW + issues.RESOLVE_AFTER + timedelta(minutes=1)
    quiet2 = signal_run(project, [])
    issues.record_run(quiet2, [], now=later)
    issue = SignalIssue.objects.get()
    assert (issue.state, issue.resolved_at) == (IssueState.RESOLVED, later)

    back = signal_run(project, [found()])
    issues.record_run(back, issues.issues_of_run(back), now=later + timedelta(hours=1))
    issue = SignalIssue.objects.get()
    assert issue.state == IssueState.REGRESSED
    assert (issue.times_regressed, issue.regressed_at) == (1, later + timedelta(hours=1))


def test_the_tab_says_what_where_since_and_how_much(project, bob, users, client_for):
    signal.enable(bob, project, now=NOW)
    run = signal_run(
        project, [found(), found("latency:rerank", title="`rerank` is slow", severity="low")]
    )
    issues.record_run(run, issues.issues_of_run(run), now=NOW)

    page = client_for(users["viewer"]).get(reverse("signal-tab", args=[project.pk])).content
    page = page.decode()

    assert page.index("fails with ConnectionError") < page.index("`rerank` is slow")  # severity
    assert "attr:region=eu-west" in page and "94 % of it" in page and "12.5× the rest" in page
    assert "Since</dt><dd>2026-03-02T09:00:00Z" in page
    assert "0.310 rate against 0.004 before" in page
    assert "Nothing notable" not in page
    assert "Investigate" not in page and "Run now" not in page  # viewers look only


def test_only_low_issues_read_nothing_notable(project, bob, client_for):
    signal.enable(bob, project, now=NOW)
    run = signal_run(project, [found(severity="low")])
    issues.record_run(run, issues.issues_of_run(run), now=NOW)

    page = client_for(bob).get(reverse("signal-tab", args=[project.pk])).content.decode()

    assert "Nothing notable" in page and "1 low one below" in page


def test_the_chart_counts_issues_per_day_by_severity_with_an_axis(project, bob):
    from agentloop.signal.tab import chart

    for day, severity in ((0, "high"), (0, "low"), (1, "high")):
        run = signal_run(project, [found(f"fp-{day}-{severity}", severity=severity)])
        issues.record_run(run, issues.issues_of_run(run), now=NOW - timedelta(days=day))

    drawn = chart(project, NOW)

    today, yesterday = drawn["bars"][-1], drawn["bars"][-2]
    assert today["counts"] == {"high": 1, "medium": 0, "low": 1} and today["total"] == 2
    assert yesterday["counts"]["high"] == 1 and drawn["total"] == 3
    assert [t["value"] for t in drawn["ticks"]] == [0, 1, 2, 3, 4]
    # Taller bars for more issues, drawn from the same baseline.
    assert sum(s["h"] for s in today["segments"]) == 2 * sum(s["h"] for s in yesterday["segments"])


def test_the_tab_reads_a_signal_run_that_just_finished(project, bob, client_for):
    (cadence, *_) = signal.enable(bob, project, now=NOW)
    run = signal_run(project, [found()])
    AutomationFire.objects.create(automation=cadence, scheduled_at=NOW, reason="cron", run=run)

    page = client_for(bob).get(reverse("signal-tab", args=[project.pk])).content.decode()

    assert "fails with ConnectionError" in page  # no schedule pass needed
    assert SignalPass.objects.filter(run=run).exists()


def test_an_htmx_refresh_gets_only_the_issues(project, bob, client_for):
    signal.enable(bob, project, now=NOW)
    response = client_for(bob).get(reverse("signal-tab", args=[project.pk]), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="signal-issues" id="signal-live"')
    assert "<html" not in html


@pytest.mark.parametrize("role,status", [*USE_ROLES, ("anonymous", 302)])
def test_run_now(project, bob, users, client_for, role, status):
    signal.enable(bob, project, now=NOW)
    client = client_for(None if role == "anonymous" else users[role])

    response = client.post(reverse("signal-run-now", args=[project.pk]))

    assert response.status_code == status
    started = AutomationFire.objects.filter(reason="manual", outcome="started").count()
    assert started == (1 if role in ("owner", "member") else 0)


def test_run_now_before_enabling_says_so(project, bob, client_for):
    response = client_for(bob).post(reverse("signal-run-now", args=[project.pk]), follow=True)
    assert "Enable Signal first." in response.content.decode()
    assert not Run.objects.exists()


@pytest.fixture
def issue(project, bob):
    signal.enable(bob, project, now=NOW)
    run = signal_run(project, [found()])
    (kept,) = issues.record_run(run, issues.issues_of_run(run), now=NOW)
    return kept


@pytest.mark.parametrize("role,status", USE_ROLES)
def test_investigate_starts_a_session_seeded_with_the_evidence(
    project, issue, users, client_for, role, status
):
    before = set(Run.objects.values_list("pk", flat=True))
    response = client_for(users[role]).post(
        reverse("signal-issue-investigate", args=[project.pk, issue.pk])
    )

    assert response.status_code == status
    new = Run.objects.exclude(pk__in=before)
    if role in ("owner", "member"):
        (run,) = new
        assert response["Location"] == reverse("studio-session", kwargs={"code": run.code})
        assert "a" * 32 in run.prompt and "attr:region=eu-west" in run.prompt
        assert "Retry `lookup_order`" in run.prompt
        assert run.config["preset_name"] == signal.PRESET_NAME and run.project == project
    else:
        assert not new.exists()


def test_an_issue_of_another_project_is_not_found(project, issue, other_project, dave, client_for):
    response = client_for(dave).post(
        reverse("signal-issue-investigate", args=[other_project.pk, issue.pk])
    )
    assert response.status_code == 404


def test_propose_a_fix_needs_a_repository_and_claude_code(
    project, issue, alice, bob, client_for, settings
):
    response = client_for(bob).post(
        reverse("signal-issue-propose-fix", args=[project.pk, issue.pk]), follow=True
    )
    assert "Attach a repository to Signal first" in response.content.decode()
    before = Run.objects.count()

    settings.AGENTLOOP_ANTHROPIC_API_KEY = "sk-ant-test"
    signal.use_harness(bob, project, signal.CLAUDE_CODE)
    skill = github_skill(project.space, alice)
    signal.attach_repository(alice, project, skill.pk, "https://github.com/acme/shop.git", "main")
    page = client_for(bob).get(reverse("signal-tab", args=[project.pk])).content.decode()
    assert "Propose a fix" in page

    response = client_for(bob).post(
        reverse("signal-issue-propose-fix", args=[project.pk, issue.pk])
    )

    run = Run.objects.order_by("-pk").first()
    assert Run.objects.count() == before + 1
    assert response["Location"] == reverse("studio-session", kwargs={"code": run.code})
    assert run.config["repository"]["url"] == "https://github.com/acme/shop.git"
    assert run.config["harness"] == "claude-code" and "Fix this issue" in run.prompt


@pytest.mark.parametrize("role,status", USE_ROLES)
def test_propose_a_fix_is_for_members(
    project, issue, alice, bob, users, client_for, settings, role, status
):
    settings.AGENTLOOP_ANTHROPIC_API_KEY = "sk-ant-test"
    signal.use_harness(bob, project, signal.CLAUDE_CODE)
    skill = github_skill(project.space, alice)
    signal.attach_repository(alice, project, skill.pk, "https://github.com/acme/shop.git", "main")
    before = Run.objects.count()

    response = client_for(users[role]).post(
        reverse("signal-issue-propose-fix", args=[project.pk, issue.pk])
    )

    assert response.status_code == status
    assert Run.objects.count() == before + (1 if role in ("owner", "member") else 0)
