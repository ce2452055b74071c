"""Signal: enable/disable on a project, issues read from the analyst's investigation,
kept (not duplicated) across runs, and shown ranked with evidence on the Signal tab."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from agentloop.automations import actions as automations
from agentloop.automations.models import Automation, AutomationFire
from agentloop.presets.models import AgentPreset
from agentloop.runs import actions
from agentloop.runs.models import Artifact, Run
from agentloop.signal import actions as signal
from agentloop.signal import issues
from agentloop.signal.models import SignalIssue, SignalSighting

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ROLES = [("owner", 302), ("member", 302), ("viewer", 403), ("outsider", 404), ("anonymous", 302)]


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    monkeypatch.setattr(actions, "enqueue_launch", lambda run: None)


def error_span(trace: str, name: str = "chat", exc: str = "TimeoutError") -> dict:
    return {
        "trace_id": trace * 32,
        "span_id": trace * 16,
        "name": name,
        "kind": "LLM",
        "status_code": "ERROR",
        "events": [
            {
                "name": "exception",
                "attributes": {"exception.type": exc, "exception.message": "slow"},
            }
        ],
    }


def investigation(tmp_path, errors: list[dict]) -> str:
    """investigation.md in the shape the analyst writes it (Signal's markdown reader):
    one finding per (span name, exception type), ranked by traces affected."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for span in errors:
        exc = span["events"][0]["attributes"]["exception.type"]
        groups.setdefault((span["name"], exc), []).append(span)
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]))
    lines = ["# Investigation: demo", "", "## Overview", "", "- Window: …", "", "## Findings", ""]
    for number, ((name, exc), spans) in enumerate(ranked, 1):
        n = len(spans)
        lines += [f"### {number}. `{name}` fails with {exc}", ""]
        lines += [f"Affects {n} trace{'s' if n != 1 else ''} ({n} span{'s' if n != 1 else ''})."]
        lines += [f"{n} ERROR spans named `{name}` raised {exc}.", "", "Evidence:", ""]
        lines += [
            f"- trace `{s['trace_id']}` — `agentloop-traces trace {s['trace_id']}`" for s in spans
        ]
        lines += [f"- reproduce: `agentloop-traces spans --status ERROR --name {name}`", ""]
    lines += ["## What to look at", ""]
    lines += [
        f"{n}. Why `{name}` raises {exc}: read it." for n, ((name, exc), _) in enumerate(ranked, 1)
    ]
    return "\n".join(lines) + "\n"


def signal_run(project, text: str) -> Run:
    run = Run.objects.create(
        space=project.space,
        project=project,
        prompt="p",
        status="succeeded",
        config={"harness": "analyst"},
    )
    Artifact.objects.create(
        run=run, key="inv", kind="investigation", name="investigation.md", content=text
    )
    return run


@pytest.mark.parametrize("role,status", ROLES)
def test_enable_permissions(project, users, client_for, role, status):
    client = client_for(None if role == "anonymous" else users[role])
    response = client.post(reverse("signal-enable", args=[project.pk]))
    assert response.status_code == status
    allowed = role in ("owner", "member")
    assert signal.is_enabled(project) is allowed
    if allowed:
        roles = sorted(signal.automations_of(project).values_list("signal_role", flat=True))
        assert roles == ["cadence", "errors", "evals"]
        preset = AgentPreset.objects.get(space=project.space, name=signal.PRESET_NAME)
        assert preset.hidden and preset.harness == "analyst"
        cadence = signal.automations_of(project).get(signal_role="cadence")
        assert cadence.cron_expression == "*/10 * * * *" and cadence.preset == preset
        errors = signal.automations_of(project).get(signal_role="errors")
        assert (errors.metric, errors.comparison, errors.threshold) == ("error_rate", ">", 0.1)


def test_enable_twice_creates_nothing_more_and_hidden_preset_stays_out_of_picker(project, bob):
    from agentloop.presets.access import presets_for_user

    signal.enable(bob, project)
    signal.enable(bob, project)
    assert signal.automations_of(project).count() == 3
    assert not presets_for_user(bob).filter(name=signal.PRESET_NAME).exists()


@pytest.mark.parametrize(
    "role,status",
    [("owner", 302), ("member", 403), ("viewer", 403), ("outsider", 404), ("anonymous", 302)],
)
def test_disable_permissions(project, bob, users, client_for, role, status):
    """docs/roles.md: members turn Signal on; only admins turn it off (it deletes automations)."""
    signal.enable(bob, project)
    client = client_for(None if role == "anonymous" else users[role])
    response = client.post(reverse("signal-disable", args=[project.pk]))
    assert response.status_code == status
    assert signal.is_enabled(project) is (role != "owner")


def test_parse_the_analysts_investigation(tmp_path):
    text = investigation(
        tmp_path, [error_span("a"), error_span("b"), error_span("c", "search", "KeyError")]
    )
    findings = issues.parse_investigation(text)
    assert [f["fingerprint"] for f in findings] == [
        "error:chat:TimeoutError",
        "error:search:KeyError",
    ]
    chat = findings[0]
    assert chat["how_much"] == {"affected_traces": 2, "spans": 2}
    assert chat["evidence"] == ["a" * 32, "b" * 32]
    assert chat["span_filter"] == {"status": "ERROR", "name": "chat"}
    assert "raised TimeoutError" in chat["overview"]
    assert chat["proposed_fix"].startswith("Why `chat` raises TimeoutError")


def test_a_new_run_updates_the_same_issue(project, tmp_path):
    first = signal_run(project, investigation(tmp_path, [error_span("a")]))
    issues.record_run(first, issues.issues_of_run(first), now=NOW)
    second = signal_run(project, investigation(tmp_path, [error_span("b"), error_span("c")]))
    issues.record_run(second, issues.issues_of_run(second), now=NOW)
    (issue,) = SignalIssue.objects.all()
    assert issue.affected_traces == 2 and issue.last_run == second
    assert issue.trace_ids == ["b" * 32, "c" * 32]  # the newest run's evidence
    assert SignalSighting.objects.filter(issue=issue).count() == 2


def test_collection_reads_finished_signal_runs_once_and_the_tick_leaves_them(
    project, bob, tmp_path
):
    (cadence, *_) = signal.enable(bob, project, now=NOW)
    run = signal_run(project, investigation(tmp_path, [error_span("a")]))
    AutomationFire.objects.create(automation=cadence, scheduled_at=NOW, reason="cron", run=run)
    automations.tick(now=NOW)  # the automations tick no longer collects Signal's issues
    assert not SignalIssue.objects.exists()
    assert issues.collect_task() == 1
    assert SignalIssue.objects.get().key == "error:chat:TimeoutError"
    assert issues.collect(now=NOW) == 0  # read once
    assert SignalSighting.objects.count() == 1


def test_signal_runs_are_marked_signal(project, bob):
    signal.enable(bob, project, now=NOW)
    cadence = Automation.objects.get(signal_role="cadence")
    record = automations.run_now(bob, cadence, now=NOW)
    assert record.run.trigger == "signal" and record.run.config["harness"] == "analyst"


def test_tab_ranks_issues_with_evidence_links(project, bob, users, client_for, tmp_path):
    signal.enable(bob, project)
    run = signal_run(
        project,
        investigation(
            tmp_path, [error_span("a"), error_span("b"), error_span("c", "search", "KeyError")]
        ),
    )
    issues.record_run(run, issues.issues_of_run(run))
    page = (
        client_for(users["viewer"]).get(reverse("signal-tab", args=[project.pk])).content.decode()
    )
    assert page.index("`chat` fails with TimeoutError") < page.index("`search` fails with KeyError")
    assert reverse("trace-detail", args=[project.pk, "a" * 32]) in page
    explorer = reverse("traces-explorer", args=[project.pk])
    assert f"{explorer}?name=chat&amp;status=ERROR" in page
    assert "Proposed fix" in page and "Why `chat` raises TimeoutError" in page
    assert "Signal is on" in page and "Disable Signal" not in page  # viewers do not switch it
    assert '<svg class="chart"' in page
    assert (
        client_for(users["outsider"]).get(reverse("signal-tab", args=[project.pk])).status_code
        == 404
    )
