"""Metric triggers: every metric against values computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentloop.automations import metrics
from agentloop.automations.models import Automation
from agentloop.traces.models import SpanAnnotation
from tests.span_factory import make_span

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def automation(project, **fields) -> Automation:
    defaults = dict(
        space=project.space,
        project=project,
        name="a",
        prompt="p",
        trigger="metric",
        metric="span_count",
        comparison=">",
        threshold=0,
        window_minutes=60,
        min_spans=1,
    )
    defaults.update(fields)
    return Automation(**defaults)


@pytest.fixture
def seeded(project, other_project):
    """Six spans in the last hour, one outside it, one in another project.

    durations 10 20 30 40 50 1000 (ms); 2 ERROR (both `chat` LLM spans);
    tokens 100 + 300 on the LLM spans; cost 0.25 + 0.5.
    """
    make_span(
        project,
        name="chat",
        kind="LLM",
        status="ERROR",
        start=at(5),
        duration_ms=10,
        total_tokens=100,
        attributes={"llm.cost.total": 0.25, "tier": "gold"},
    )
    make_span(
        project,
        name="chat",
        kind="LLM",
        status="ERROR",
        start=at(10),
        duration_ms=1000,
        total_tokens=300,
        attributes={"llm.cost.total": 0.5, "tier": "free"},
    )
    make_span(
        project,
        name="chat",
        kind="LLM",
        status="OK",
        start=at(15),
        duration_ms=20,
        attributes={"tier": "gold"},
    )
    make_span(project, name="search", kind="TOOL", start=at(20), duration_ms=30)
    make_span(project, name="search", kind="TOOL", start=at(25), duration_ms=40)
    make_span(project, name="root", kind="CHAIN", start=at(59), duration_ms=50)
    make_span(project, name="chat", kind="LLM", status="ERROR", start=at(61), duration_ms=5)
    make_span(project, name="chat", kind="LLM", start=NOW, duration_ms=7)  # window is [start, now)
    make_span(other_project, name="chat", kind="LLM", status="ERROR", start=at(1))
    return project


def value(project, **fields):
    return metrics.evaluate(automation(project, **fields), NOW)


def test_span_count_counts_the_window_only(seeded):
    assert value(seeded, metric="span_count").value == 6


def test_error_rate(seeded):
    m = value(seeded, metric="error_rate")
    assert m.value == pytest.approx(2 / 6)
    assert m.spans == 6


def test_error_rate_needs_minimum_spans(seeded):
    m = value(seeded, metric="error_rate", min_spans=7)
    assert m.value is None and m.no_data
    assert not metrics.compare(m.value, ">", 0.0)


def test_latency_percentiles_nearest_rank(seeded):
    # sorted: 10 20 30 40 50 1000 → p50 = 3rd = 30, p95 = 6th, p99 = 6th
    assert value(seeded, metric="latency_p50").value == 30
    assert value(seeded, metric="latency_p95").value == 1000
    assert value(seeded, metric="latency_p99").value == 1000


def test_latency_of_a_span_name_or_kind(seeded):
    assert value(seeded, metric="latency_p50", filter_name="search").value == 30
    assert value(seeded, metric="latency_p99", filter_kind="TOOL").value == 40
    assert value(seeded, metric="latency_p50", filter_kind="LLM").value == 20


def test_attribute_filter(seeded):
    assert (
        value(seeded, metric="span_count", filter_attribute="tier", filter_value="gold").value == 2
    )
    m = value(seeded, metric="error_rate", filter_attribute="tier", filter_value="gold")
    assert m.value == pytest.approx(1 / 2)


def test_total_tokens_and_cost(seeded):
    assert value(seeded, metric="total_tokens").value == 400
    assert value(seeded, metric="cost").value == pytest.approx(0.75)


def _label(span, name, label="", score=None):
    SpanAnnotation.objects.create(
        project=span.project, span=span, name=name, label=label, score=score, annotator_kind="HUMAN"
    )


def test_eval_label_rate_and_mean_score(project):
    spans = [make_span(project, start=at(i + 1)) for i in range(4)]
    old = make_span(project, start=at(120))
    for span, label, score in zip(
        spans[:3], ["incorrect", "correct", "incorrect"], [0, 1, 0.5], strict=True
    ):
        _label(span, "correctness", label, score)
    _label(old, "correctness", "incorrect", 0)  # outside the window
    _label(spans[3], "tone", "rude", 0.2)  # another eval
    rate = value(project, metric="eval_label_rate", eval_name="correctness", eval_label="incorrect")
    assert rate.value == pytest.approx(2 / 3)
    mean = value(project, metric="eval_score_mean", eval_name="correctness")
    assert mean.value == pytest.approx(0.5)
    few = value(
        project,
        metric="eval_label_rate",
        eval_name="correctness",
        eval_label="incorrect",
        min_spans=4,
    )
    assert few.value is None


@pytest.mark.parametrize("metric", sorted(metrics.METRICS))
def test_no_data_never_fires(project, metric):
    m = value(project, metric=metric, eval_name="correctness", eval_label="incorrect")
    assert m.value is None
    for comparison in metrics.COMPARISONS:
        assert not metrics.compare(m.value, comparison, 0)


def test_comparisons():
    assert metrics.compare(0.3, ">", 0.2) and not metrics.compare(0.2, ">", 0.2)
    assert metrics.compare(0.2, ">=", 0.2)
    assert metrics.compare(1, "<", 2) and not metrics.compare(2, "<", 2)
    assert metrics.compare(2, "<=", 2)


def test_evidence_query_reproduces_the_window(seeded):
    a = automation(seeded, metric="error_rate", filter_kind="LLM")
    params = metrics.evidence_query(a, NOW, errors_only=True)
    assert params == {
        "start": at(60).isoformat(),
        "end": NOW.isoformat(),
        "kind": "LLM",
        "status": "ERROR",
    }


def test_cost_sums_numbers_only_of_llm_spans_in_the_database(project, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for cost in (0.25, 2, 1e-3):  # a float, an int, and a number in exponent notation
        make_span(project, kind="LLM", start=at(5), attributes={"llm.cost.total": cost})
    for attributes in (
        {"llm.cost.total": "0.4"},  # a string is no cost
        {"llm.cost.total": True},  # nor is a boolean
        {"llm.cost.total": None},
        {"llm": {"cost": {"total": 9}}},  # nor the nested path: the key has dots
        {},
    ):
        make_span(project, kind="LLM", start=at(5), attributes=attributes)
    make_span(project, kind="TOOL", start=at(5), attributes={"llm.cost.total": 100})
    make_span(project, kind="LLM", start=at(90), attributes={"llm.cost.total": 100})
    # The old code read at most MAX_PERCENTILE_SPANS attribute objects; the cost has no cap.
    monkeypatch.setattr(metrics, "MAX_PERCENTILE_SPANS", 2)

    with CaptureQueriesContext(connection) as queries:
        m = value(project, metric="cost")

    assert m.value == pytest.approx(2.251)
    assert m.spans == 3
    [query] = queries.captured_queries  # one aggregate, no attribute objects sent to Python
    assert "SUM(" in query["sql"].upper()
