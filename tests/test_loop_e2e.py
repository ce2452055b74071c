"""The loop end to end: spans cross a threshold → Signal's metric automation fires once →
a real analyst run (bubblewrap) writes an investigation → the issue shows on the Signal
tab with evidence links to the right traces → a member approves the proposed eval labels
→ they are annotations (AGENT, provenance = the run) on exactly those spans.

Scheduler time is passed explicitly (`tick(now=...)`, and Signal enabled at a chosen
minute), never slept; only the sandboxed run is waited for, by polling the database
with a deadline. The first test checks the run page's Review link without a sandbox.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agentloop.automations import actions as automations
from agentloop.automations.models import AutomationFire
from agentloop.runs.models import TERMINAL, Artifact, Run, RunStatus
from agentloop.signal import actions as signal
from agentloop.signal import issues
from agentloop.signal.models import SignalIssue
from tests.e2e_support import needs_bwrap, runner_log, wait_for_status
from tests.span_factory import make_span

pytest_plugins = ["tests.e2e_support", "tests.gateway_server"]  # sandbox_root; asgi_server


# -- the run page links each pending artifact to its review page (members only) -----------------


@pytest.mark.parametrize("role,sees_link", [("owner", True), ("member", True), ("viewer", False)])
def test_run_page_links_pending_artifacts_to_review(
    project, alice, users, client_for, role, sees_link
):
    run = Run.objects.create(
        space=project.space, project=project, prompt="look", creator=alice, status="succeeded"
    )
    pending = Artifact.objects.create(
        run=run, key="l", kind="eval_labels", name="eval_labels.json", content="[]"
    )
    done = Artifact.objects.create(
        run=run,
        key="i",
        kind="investigation",
        name="investigation.md",
        content="# x",
        review_state="approved",
        reviewer=alice,
        reviewed_at=timezone.now(),
    )
    page = client_for(users[role]).get(reverse("swarms-run", args=[run.code])).content.decode()
    assert "eval_labels.json" in page  # everyone who may see the run sees its artifacts
    assert (reverse("artifact-review", args=[pending.pk]) in page) is sees_link
    assert reverse("artifact-review", args=[done.pk]) not in page  # already decided


# -- the whole loop -----------------------------------------------------------------------------


def quiet_slot(real_now: datetime) -> datetime:
    """A recent 5-minute boundary that is not a 10-minute one.

    Signal's error-rate automation evaluates every 5 minutes and its cadence fires every
    10: ticking just after such a slot evaluates the metric trigger alone, so the one
    run this test waits for is the metric's."""
    ten = real_now.replace(minute=real_now.minute // 10 * 10, second=0, microsecond=0)
    return ten - timedelta(minutes=5)


def seed_spans(project, start: datetime) -> tuple[list, list]:
    """8 failed LLM calls (one trace each) among 24 spans: error rate 1/3 > 10 %."""
    errors = [
        make_span(
            project,
            trace_id=f"{i + 1:02x}" * 16,
            span_id=f"{i + 1:02x}" * 8,
            name="chat",
            kind="LLM",
            status="ERROR",
            start=start + timedelta(minutes=i),
            events=[
                {
                    "name": "exception",
                    "timestamp": (start + timedelta(minutes=i)).isoformat(),
                    "attributes": {
                        "exception.type": "TimeoutError",
                        "exception.message": "upstream took 30 s",
                    },
                }
            ],
        )
        for i in range(8)
    ]
    fine = [
        make_span(
            project,
            name="retrieve",
            kind="RETRIEVER",
            status="OK",
            start=start + timedelta(seconds=30 * i),
        )
        for i in range(16)
    ]
    return errors, fine


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@needs_bwrap
def test_spans_crossing_a_threshold_end_as_reviewed_annotations(
    asgi_server, served_db, settings, sandbox_root, monkeypatch, project, bob, users, client_for
):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    member, viewer = client_for(bob), client_for(users["viewer"])

    # The analyst reads the last 24 h of real time, so the scheduler's clock stays
    # within minutes of it: slot is 5–15 minutes ago.
    slot = quiet_slot(timezone.now().astimezone(UTC))
    errors, fine = seed_spans(project, slot - timedelta(minutes=20))

    # A member enables Signal on the project's page, two minutes before the slot.
    enabled_at = slot - timedelta(minutes=2)
    with monkeypatch.context() as frozen:
        frozen.setattr(timezone, "now", lambda: enabled_at)
        response = member.post(reverse("signal-enable", args=[project.pk]))
    assert response.status_code == 302
    watcher = signal.automations_of(project).get(signal_role="errors")
    assert (watcher.metric, watcher.comparison, watcher.threshold) == ("error_rate", ">", 0.1)
    assert watcher.next_fire_at == slot
    assert signal.automations_of(project).get(signal_role="cadence").next_fire_at > slot

    # The tick after the slot measures 8 of 24 spans failed and fires exactly once.
    tick_at = slot + timedelta(seconds=30)
    (fired,) = automations.tick(now=tick_at)
    assert fired.automation_id == watcher.pk and fired.reason == "metric"
    assert fired.scheduled_at == slot and fired.outcome == AutomationFire.STARTED
    assert fired.context["value"] == pytest.approx(8 / 24) and fired.context["spans"] == 24
    run = fired.run
    assert run.trigger == "signal" and run.config["harness"] == "analyst"
    assert "error rate > 0.1" in run.prompt and "status=ERROR" in run.prompt

    # The same slot again — another tick, or a second scheduler holding the old
    # schedule — starts nothing: the fire key (automation, slot) is taken.
    assert automations.tick(now=tick_at + timedelta(seconds=20)) == []
    assert automations.fire(watcher, slot, "metric", now=tick_at) is None
    assert AutomationFire.objects.count() == 1
    assert Run.objects.filter(project=project).count() == 1

    # The analyst runs in a real sandbox and writes its investigation and labels.
    run = wait_for_status(run, TERMINAL, seconds=180)
    assert run.status == RunStatus.SUCCEEDED, f"{run.exit_reason}\n{runner_log(run)}"
    investigation = run.artifacts.get(kind="investigation")
    assert "`chat` fails with TimeoutError" in investigation.content
    labels = run.artifacts.get(kind="eval_labels")
    assert labels.review_state == "pending"

    # Signal's collection (its own schedule) reads the finished run into the project's issues.
    issues.collect(now=slot + timedelta(minutes=2))
    (issue,) = SignalIssue.objects.filter(project=project)
    assert issue.key == "error:chat:TimeoutError" and issue.last_run_id == run.pk
    # The investigation names a sample of the traces, newest first; all are failures.
    newest = [s.trace_id for s in reversed(errors)][: len(issue.trace_ids)]
    assert issue.trace_ids == newest and len(newest) >= 3 and issue.affected_traces == 8

    tab = viewer.get(reverse("signal-tab", args=[project.pk])).content.decode()
    assert "`chat` fails with TimeoutError" in tab and "Affects 8 traces (8 spans)" in tab
    prefix, suffix = reverse("trace-detail", args=[project.pk, "TRACE"]).split("TRACE")
    evidence = tab[tab.index('<ul class="evidence">') :]
    evidence = evidence[: evidence.index("</ul>")]
    trace_links = set(
        re.findall(f'href="{re.escape(prefix)}([0-9a-f]+){re.escape(suffix)}"', evidence)
    )
    assert trace_links == set(newest), tab
    explorer = reverse("traces-explorer", args=[project.pk])
    filter_link = f"{explorer}?name=chat&amp;status=ERROR"
    assert filter_link in tab
    # The evidence opens the right spans: the filter lists the 8 failures and nothing else,
    # and each trace link opens that trace.
    listed = viewer.get(filter_link.replace("&amp;", "&")).content.decode()
    assert set(re.findall(r'data-span="([0-9a-f]+)"', listed)) == {s.span_id for s in errors}
    some = errors[3]
    opened = viewer.get(reverse("trace-detail", args=[project.pk, some.trace_id]))
    assert opened.status_code == 200 and some.span_id in opened.content.decode()

    # A member reviews from the run page: the Review link, then approve.
    run_page = member.get(reverse("swarms-run", args=[run.code])).content.decode()
    review_url = reverse("artifact-review", args=[labels.pk])
    assert review_url in run_page
    assert review_url not in viewer.get(reverse("swarms-run", args=[run.code])).content.decode()
    review_page = member.get(review_url).content.decode()
    assert "Approve" in review_page and errors[0].span_id in review_page
    response = member.post(
        reverse("artifact-approve", args=[labels.pk]), {"comment": "These calls timed out."}
    )
    assert response.status_code == 302
    labels.refresh_from_db()
    assert (labels.review_state, labels.reviewer) == ("approved", bob)

    # The labels are the project's annotations now, on exactly the failed spans.
    api = member.get(f"/api/v1/projects/{project.pk}/annotations", {"annotator_kind": "AGENT"})
    assert api.status_code == 200
    written = api.json()["data"]
    assert {(a["span_id"], a["trace_id"]) for a in written} == {
        (s.span_id, s.trace_id) for s in errors
    }
    assert {(a["name"], a["label"], a["score"]) for a in written} == {
        ("correctness", "incorrect", 0)
    }
    assert all(a["provenance"]["run"] == str(run.code) for a in written)  # and its approver
    assert all(a["created_by"] == "bob" for a in written)
    assert not any(a["span_id"] in {s.span_id for s in fine} for a in written)
