"""traces/analytics.py: metrics per group, bucket and baseline, on small hand-made data.

Runs on whichever database the suite runs on (SQLite, or PostgreSQL with
DATABASE_URL), so each expectation is checked on both.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from agentloop.traces.analytics import (
    PERCENTILE_ERROR,
    AnalyticsQuery,
    aggregate,
    parse_analytics_query,
)
from agentloop.traces.models import SpanAnnotation
from agentloop.traces.queries import InvalidFilter
from tests.span_factory import make_span

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


WINDOW_END = T0 + timedelta(hours=4)


def stats(project, now=WINDOW_END, **params):
    """aggregate() as the API calls it: from request parameters."""
    params.setdefault("start", T0.isoformat())
    return aggregate(project, parse_analytics_query(params, now=now))


def by_key(result, label):
    return {group["key"][label]: group for group in result["groups"]}


def nearest_rank(values, fraction):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@pytest.fixture
def regions(project):
    """eu: 6 spans, 3 errors; us: 4 spans, 1 error; one span without a region."""
    for i in range(6):
        make_span(
            project,
            name="chat",
            kind="LLM",
            status="ERROR" if i < 3 else "OK",
            start=at(i),
            attributes={"region": "eu"},
        )
    for i in range(4):
        make_span(
            project,
            name="search",
            kind="TOOL",
            status="ERROR" if i == 0 else "OK",
            start=at(10 + i),
            attributes={"region": "us"},
        )
    make_span(project, name="chat", kind="LLM", status="OK", start=at(20))


def test_the_error_rate_of_each_group_and_its_lift_over_the_rest(project, regions):
    result = stats(project, group_by="attr:region")

    assert result["total"]["spans"] == 11
    assert result["total"]["errors"] == 4
    groups = by_key(result, "attr:region")
    assert list(groups) == ["eu", "us", None]  # by span count; absent attribute is None
    eu = groups["eu"]
    assert (eu["spans"], eu["errors"], eu["error_rate"]) == (6, 3, 0.5)
    # The rest of the window: 5 spans, 1 error.
    assert eu["rest_error_rate"] == 0.2
    assert eu["error_rate_lift"] == 2.5
    assert eu["share_of_errors"] == 0.75
    assert groups["us"]["error_rate"] == 0.25
    assert result["other"] is None
    assert result["group_count"] == 3


def test_two_dimensions_group_by_both(project, regions):
    result = stats(project, group_by=["name", "status"])

    keys = [(g["key"]["name"], g["key"]["status_code"], g["spans"]) for g in result["groups"]]
    assert keys == [
        ("chat", "OK", 4),
        ("chat", "ERROR", 3),
        ("search", "OK", 3),
        ("search", "ERROR", 1),
    ]


def test_the_top_groups_and_an_other_total(project, regions):
    result = stats(project, group_by="name", limit="1")

    assert [g["key"] for g in result["groups"]] == [{"name": "chat"}]
    assert result["groups"][0]["spans"] == 7
    assert result["other"]["spans"] == 4
    assert result["other"]["errors"] == 1
    assert result["other"]["groups"] == 1
    assert result["group_count"] == 2


def test_flat_and_nested_attribute_keys_are_one_group(project):
    make_span(project, start=at(1), attributes={"metadata.tier": "pro"})
    make_span(project, start=at(2), attributes={"metadata": {"tier": "pro"}})
    make_span(project, start=at(3), attributes={"metadata": {"tier": "free"}})
    make_span(project, start=at(4), attributes={"metadata": {"tier": 3}})
    make_span(project, start=at(5), attributes={"metadata": {"tier": True}})

    result = stats(project, group_by="attributes.metadata.tier")

    groups = by_key(result, "attr:metadata.tier")
    assert groups["pro"]["spans"] == 2
    assert groups["free"]["spans"] == 1
    assert groups["3"]["spans"] == 1
    assert groups["true"]["spans"] == 1


def test_percentiles_are_within_the_stated_bound_of_the_exact_ones(project):
    rng = random.Random(7)
    durations = [round(rng.lognormvariate(5, 1.2), 3) for _ in range(300)]
    for i, duration in enumerate(durations):
        make_span(project, start=at(i / 10), duration_ms=duration)

    total = stats(project)["total"]

    for name, fraction in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        exact = nearest_rank(durations, fraction)
        assert abs(total[name] - exact) <= PERCENTILE_ERROR * exact, (name, total[name], exact)
    assert total["max_ms"] == max(durations)


def test_a_single_span_reports_its_own_duration(project):
    make_span(project, start=at(1), duration_ms=1234.5)

    total = stats(project)["total"]

    assert total["p50_ms"] == total["p99_ms"] == total["max_ms"] == 1234.5


def test_buckets_count_each_span_once_edges_included(project):
    make_span(project, start=at(10), status="ERROR")
    make_span(project, start=at(60))  # exactly on the second bucket's start
    make_span(project, start=at(119.99))
    make_span(project, start=at(200), status="ERROR")

    result = stats(project, bucket="1h", group_by="status")

    buckets = result["total"]["buckets"]
    assert [b["start"] for b in buckets] == [at(0), at(60), at(120), at(180)]
    assert [b["spans"] for b in buckets] == [1, 2, 0, 1]
    assert [b["errors"] for b in buckets] == [1, 0, 0, 1]
    errors = by_key(result, "status_code")["ERROR"]
    assert [b["spans"] for b in errors["buckets"]] == [1, 0, 0, 1]


def test_buckets_that_tile_a_day_start_on_the_hour_whatever_the_window_starts_at(project):
    make_span(project, start=at(20))  # before the window
    make_span(project, start=at(40))  # in the window's part of the first hour
    make_span(project, start=at(70))
    make_span(project, start=at(150))  # past the window's end

    hourly = stats(project, start=at(37).isoformat(), now=at(137), bucket="1h")
    odd = stats(project, start=at(37).isoformat(), now=at(137), bucket="50m")

    buckets = hourly["total"]["buckets"]
    assert [b["start"] for b in buckets] == [at(0), at(60), at(120)]
    assert [b["spans"] for b in buckets] == [1, 1, 0]
    assert hourly["total"]["spans"] == 2
    # 50 minutes does not tile a day: its buckets start at the window's start.
    assert [(b["start"], b["spans"]) for b in odd["total"]["buckets"]] == [(at(37), 2), (at(87), 0)]


def test_baseline_previous_compares_each_group_with_the_window_before(project):
    # Baseline hour [-60, 0): chat fails 1 of 4. Current hour [0, 60): 3 of 4.
    for i in range(4):
        make_span(project, name="chat", start=at(-50 + i), status="ERROR" if i == 0 else "OK")
        make_span(project, name="chat", start=at(5 + i), status="OK" if i == 0 else "ERROR")

    result = stats(project, now=at(60), group_by="name", baseline="previous")

    assert result["baseline_window"] == {"start": at(-60), "end": at(0)}
    chat = by_key(result, "name")["chat"]
    assert chat["baseline"]["error_rate"] == 0.25
    assert chat["vs_baseline"]["error_rate_ratio"] == 3.0
    assert chat["vs_baseline"]["error_rate_change"] == 0.5
    assert chat["vs_baseline"]["span_rate_ratio"] == 1.0
    assert result["total"]["baseline"]["spans"] == 4


def test_a_baseline_of_explicit_times(project):
    make_span(project, start=at(-24 * 60 + 5), duration_ms=100)
    make_span(project, start=at(5), duration_ms=300)

    result = stats(
        project,
        now=at(60),
        baseline_start=at(-24 * 60).isoformat(),
        baseline_end=at(-23 * 60).isoformat(),
    )

    assert result["total"]["baseline"]["p50_ms"] == 100
    assert result["total"]["vs_baseline"]["p50_ratio"] == 3.0


def test_traces_are_counted_once_per_group(project):
    make_span(project, trace_id="a" * 32, span_id="a" * 16, name="x", start=at(1))
    make_span(project, trace_id="a" * 32, span_id="b" * 16, name="x", start=at(2))
    make_span(project, trace_id="b" * 32, span_id="c" * 16, name="y", start=at(3))
    make_span(project, trace_id="a" * 32, span_id="d" * 16, name="y", start=at(4))

    result = stats(project, group_by="name")

    assert result["total"]["traces"] == 2
    assert by_key(result, "name")["x"]["traces"] == 1
    assert by_key(result, "name")["y"]["traces"] == 2


def test_tokens_and_cost_are_summed_cost_from_llm_spans_only(project):
    make_span(
        project,
        kind="LLM",
        start=at(1),
        prompt_tokens=100,
        completion_tokens=20,
        total_tokens=120,
        attributes={"llm.cost.total": 0.25},
    )
    make_span(project, kind="LLM", start=at(2), attributes={"llm.cost.total": "n/a"})
    make_span(project, kind="AGENT", start=at(3), attributes={"llm.cost.total": 9.0})

    total = stats(project)["total"]

    assert (total["prompt_tokens"], total["completion_tokens"], total["total_tokens"]) == (
        100,
        20,
        120,
    )
    assert total["cost"] == 0.25


def exception_events(exc_type: str) -> list[dict]:
    return [
        {"name": "log", "time": T0.isoformat(), "attributes": {"exception.type": "decoy"}},
        {
            "name": "exception",
            "time": T0.isoformat(),
            "attributes": {"exception.type": exc_type, "exception.message": "boom"},
        },
    ]


@pytest.fixture
def varied(project, other_project):
    slow = make_span(
        project,
        name="slow",
        kind="TOOL",
        status="ERROR",
        start=at(1),
        duration_ms=5000,
        events=exception_events("TimeoutError"),
        attributes={"region": "eu"},
    )
    make_span(
        project,
        name="fast",
        kind="LLM",
        status="ERROR",
        start=at(2),
        duration_ms=50,
        events=exception_events("ValueError"),
        attributes={"region": "us"},
        session_id="s-1",
        user_id="u-1",
        model_name="gpt-4o",
    )
    make_span(project, name="fast", kind="LLM", start=at(3), duration_ms=80)
    make_span(project, name="early", start=at(-5))  # before the window
    make_span(other_project, name="theirs", start=at(4))
    SpanAnnotation.objects.create(
        project=project, span=slow, name="hallucination", label="hallucinated", annotator_kind="LLM"
    )


@pytest.mark.parametrize(
    "params, names",
    [
        ({}, ["fast", "slow"]),
        ({"min_duration_ms": "1000"}, ["slow"]),
        ({"max_duration_ms": "60"}, ["fast"]),
        ({"exception_type": "TimeoutError"}, ["slow"]),
        ({"exception_type": "decoy"}, []),
        ({"annotation": "hallucination:hallucinated"}, ["slow"]),
        ({"annotation": "hallucination:factual"}, []),
        ({"kind": "LLM"}, ["fast"]),
        ({"status": "ERROR", "attr": "region=us"}, ["fast"]),
        ({"session_id": "s-1"}, ["fast"]),
        ({"user_id": "u-1"}, ["fast"]),
    ],
)
def test_each_filter_narrows_the_spans(project, varied, params, names):
    result = stats(project, group_by="name", **params)

    assert sorted(by_key(result, "name")) == names


def test_model_name_filter_through_group_by(project, varied):
    result = stats(project, group_by="model")
    assert by_key(result, "model_name")["gpt-4o"]["spans"] == 1


def test_group_by_exception_type(project, varied):
    result = stats(project, group_by="exception.type", status="ERROR")

    groups = by_key(result, "exception.type")
    assert sorted(groups) == ["TimeoutError", "ValueError"]  # not the "log" event's decoy
    assert groups["TimeoutError"]["p50_ms"] == 5000


def test_a_window_without_spans(project):
    result = stats(project, group_by="name", bucket="1h", baseline="previous")

    total = result["total"]
    assert (total["spans"], total["traces"], total["errors"]) == (0, 0, 0)
    assert total["error_rate"] is None and total["p95_ms"] is None and total["cost"] is None
    assert result["groups"] == [] and result["other"] is None
    assert len(total["buckets"]) == 4
    assert total["vs_baseline"]["error_rate_ratio"] is None


def test_the_default_window_is_the_last_24_hours(project):
    now = at(48 * 60)
    make_span(project, start=now - timedelta(hours=23))
    make_span(project, start=now - timedelta(hours=25))

    query = parse_analytics_query({}, now=now)
    result = aggregate(project, query)

    assert isinstance(query, AnalyticsQuery)
    assert result["window"] == {"start": now - timedelta(hours=24), "end": now}
    assert result["total"]["spans"] == 1


@pytest.mark.parametrize(
    "params, message",
    [
        ({"group_by": "colour"}, "group_by: expected one of"),
        ({"group_by": ["name", "kind", "status"]}, "group_by: at most 2"),
        ({"group_by": ["name", "name"]}, "group_by: the same dimension twice"),
        ({"bucket": "1s"}, "bucket: 1s makes 86400 buckets"),
        ({"bucket": "soon"}, "bucket: expected a duration"),
        ({"limit": "0"}, "limit: must be between 1 and 100"),
        ({"baseline": "yesterday"}, "baseline: expected a duration"),
        ({"baseline": "previous", "baseline_start": "2026-01-01"}, "baseline: give baseline or"),
        ({"baseline_start": "2026-01-01"}, "baseline_end: give both"),
        ({"min_duration_ms": "fast"}, "min_duration_ms: must be a number"),
        ({"min_duration_ms": "10", "max_duration_ms": "5"}, "max_duration_ms: must not be below"),
        ({"start": "2026-03-02T00:00:00Z"}, "start: must be before end"),
        ({"bucket": "99999d"}, "bucket: at most 3650d"),
        ({"start": "0001-01-02", "baseline": "previous"}, "baseline: previous would start before"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(InvalidFilter, match=message.replace("(", r"\(")):
        parse_analytics_query(params, now=at(0))
