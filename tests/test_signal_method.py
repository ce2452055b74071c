"""Signal's method on realistic traffic: every planted failure found, with the right
dimension, onset and evidence, and nothing above low on clean traffic.

The traffic is agentloop/traces/planted.py's (3,000 traces of a support agent, ten
planted failure classes, background noise); the method asks the database the same
questions the analyst asks over HTTP (agentloop/signal/detect.py). Runs on SQLite and
PostgreSQL. The same at 1M spans, with timings, is benches/bench_signal_recall.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentloop.signal.detect import investigate
from agentloop.teams.models import Project
from agentloop.traces.maintenance import refresh_planner_statistics
from agentloop.traces.planted import CLEAN, PLANTED, load, score

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def planted(space):
    project = Project.objects.create(space=space, name="planted")
    truth = load(project, seed=1, now=NOW, traces=3000, mode=PLANTED)
    refresh_planner_statistics()  # as the worker does hourly: the tables grew from nothing
    return project, truth


def test_every_planted_failure_is_found_where_and_since_when_with_its_own_evidence(planted):
    project, truth = planted

    report = investigate(project, now=NOW)
    result = score([issue.as_dict() for issue in report.issues], truth)

    missed = {c["key"]: c for c in result["classes"] if not all(
        c[k] in (True, None) for k in ("found", "severity_ok", "dimension_ok", "onset_ok",
                                        "evidence_ok")
    )}  # fmt: skip
    assert missed == {}
    assert (result["recall"], result["false_positives"], result["duplicates"]) == (1.0, 0, 0)


def test_issues_say_how_much_against_the_rest_and_propose_a_fix_naming_the_component(planted):
    project, _ = planted

    issues = {i.fingerprint: i for i in investigate(project, now=NOW).issues}

    tool = issues["error:lookup_order:httpx.ConnectError@attr:region=eu-west"]
    assert tool.severity == "high" and tool.where[0]["lift"] > 10
    assert tool.merged == ["`support_agent` fails with httpx.ConnectError"]  # the root's copy
    assert "`lookup_order`" in tool.proposed_fix and "region=eu-west" in tool.proposed_fix
    burst = issues["error:plan_step:openai.RateLimitError"]
    assert burst.cls == "error_burst" and burst.how_much["rate"] > 0.5  # inside the burst
    assert "backoff" in burst.proposed_fix


def test_clean_traffic_has_nothing_notable(space):
    project = Project.objects.create(space=space, name="clean")
    truth = load(project, seed=2, now=NOW, traces=3000, mode=CLEAN)
    refresh_planner_statistics()

    report = investigate(project, now=NOW)

    assert report.nothing_notable, [(i.title, i.severity) for i in report.issues]
    assert score([i.as_dict() for i in report.issues], truth)["false_positives"] == 0
