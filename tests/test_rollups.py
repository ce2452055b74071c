"""traces/rollups.py: analytics answered from rollups say what the spans say.

Every query is answered twice: from the spans alone (nothing rolled up yet), then
after the roller has caught up (rollups for the whole intervals of the window,
spans for its edges and for what the rollups do not hold). Spans, errors,
tokens, cost and percentiles must be equal; distinct traces may count a trace
once per interval and batch it falls in (SpanRollup's docstring), so they may
only be a little higher. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum

from agentloop.signal.detect import investigate
from agentloop.teams.models import Project
from agentloop.traces import analytics, rollups
from agentloop.traces.analytics import _rollup_plan, aggregate, parse_analytics_query
from agentloop.traces.models import EvalRollup, RollupDimension, Span, SpanAnnotation, SpanRollup
from agentloop.traces.planted import PLANTED, load
from tests.span_factory import make_span

NOW = datetime(2026, 12, 3, 9, 17, 23, 500000, tzinfo=UTC)  # on no interval's edge

QUERIES = [
    {},
    {"group_by": ["kind", "name"], "limit": "100", "baseline": "previous"},
    {"group_by": ["name"], "bucket": "1h", "limit": "100"},
    {"group_by": ["status"], "bucket": "30m"},
    {"name": "plan_step", "bucket": "30m"},
    {"name": "plan_step", "status": "ERROR", "bucket": "40m"},
    {"kind": "LLM", "group_by": ["name", "status"], "limit": "3"},
    {"group_by": ["attr:region"], "name": "lookup_order"},
    {"group_by": ["attr:tier"], "bucket": "2h"},
    {"group_by": ["name", "attr:llm.model_name"], "name": "compose_answer"},
    {"group_by": ["attr:llm.model_name"]},  # absent on most spans
    # Filtered by an eval label: EvalRollup.
    {"annotation": "hallucination", "group_by": ["name"], "limit": "50", "baseline": "previous"},
    {"annotation": "hallucination:hallucinated", "group_by": ["name"]},
    {"annotation": "hallucination", "name": "compose_answer", "group_by": ["attr:tier"]},
    {"annotation": "correctness:incorrect", "name": "support_agent", "bucket": "30m"},
    {"annotation": "correctness", "group_by": ["attr:region"], "bucket": "2h"},
]


def ask(project, params, start=None):
    query = {"start": (start or NOW - timedelta(hours=24)).isoformat(), "end": NOW.isoformat()}
    return aggregate(project, parse_analytics_query({**query, **params}, now=NOW))


def same(from_spans: dict, mixed: dict, where: str = "") -> None:
    """The two answers agree: exactly, but for traces (a little more) and for the
    percentiles of spans without a grouped attribute (within the bin's 4 %)."""
    for key, expected in from_spans.items():
        got = mixed.get(key)
        at = f"{where}.{key}"
        if key == "from_rollups":
            continue
        if key == "traces":
            assert expected <= got <= expected * 1.05 + 2, at
        elif isinstance(expected, dict):
            same(expected, got, at)
        elif isinstance(expected, list):
            assert len(expected) == len(got), at
            for i, (a, b) in enumerate(zip(expected, got, strict=True)):
                same(a, b, f"{at}[{i}]") if isinstance(a, dict) else None
                assert isinstance(a, dict) or a == b, at
        elif isinstance(expected, float) and key != "cost":
            assert got == pytest.approx(expected, rel=0.041), at
        elif isinstance(expected, float):  # cost: sums added in another order, rounded
            assert got == pytest.approx(expected, rel=1e-9, abs=2e-6), at
        else:
            assert got == expected, at


@pytest.fixture(autouse=True)
def small_projects_roll_up(monkeypatch):
    """Projects here are small; rolled up as a big one would be. No commit lands
    late here, so annotations count as seen once the roller has looked (else
    every hour would read its spans for a minute after they were loaded)."""
    monkeypatch.setattr(rollups, "MIN_SPANS", 1)
    monkeypatch.setattr(analytics, "ROLLUP_MIN_SPANS", 1)
    monkeypatch.setattr(rollups, "EVAL_LAG", timedelta(0))


@pytest.fixture
def planted(space):
    project = Project.objects.create(space=space, name="planted")
    return project, load(project, seed=4, now=NOW, traces=600, mode=PLANTED)


def test_rollups_answer_what_the_spans_answer(planted):
    project, _ = planted
    before = [ask(project, params) for params in QUERIES]

    rolled = rollups.catch_up(seconds=600)

    assert rolled > 6000 and SpanRollup.objects.filter(project=project).count() > 0
    assert rollups.splits_by(project, "region") and rollups.splits_by(project, "tier")
    for params, from_spans in zip(QUERIES, before, strict=True):
        query = parse_analytics_query(
            {"start": (NOW - timedelta(hours=24)).isoformat(), **params}, now=NOW
        )
        assert _rollup_plan(project, query) is not None, params
        mixed = ask(project, params)
        assert (from_spans["from_rollups"], mixed["from_rollups"]) == (False, True)
        same(from_spans, mixed, str(params))


def test_spans_past_the_mark_are_read_from_the_spans(planted):
    project, _ = planted
    rollups.catch_up(seconds=600)
    later = NOW - timedelta(hours=3, minutes=2)
    for i in range(30):
        make_span(project, name="plan_step", kind="LLM", status="ERROR", start=later, duration_ms=i)
    params = {"group_by": ["name"], "bucket": "1h", "limit": "100"}

    with_tail = ask(project, params)
    rollups.catch_up(seconds=600)
    rolled = ask(project, params)
    rollups.rebuild(project)

    same(rolled, with_tail)
    same(ask(project, params), rolled)
    plan_step = next(g for g in rolled["groups"] if g["key"]["name"] == "plan_step")
    assert plan_step["errors"] >= 30


def test_eval_rows_follow_annotations_that_change_after_the_roll_up(planted, settings):
    """A verdict that comes (or changes) after its span was rolled up: analytics
    reads that hour from the spans until the roller has computed it again."""
    project, _ = planted
    rollups.catch_up(seconds=600)
    params = {"annotation": "hallucination:hallucinated", "group_by": ["name"], "limit": "50"}
    late = list(
        Span.objects.filter(
            project=project, name="plan_step", start_time__lt=NOW - timedelta(hours=2)
        ).order_by("id")[:20]
    )
    assert len(late) == 20 and not SpanAnnotation.objects.filter(span__in=late).exists()
    for span in late:
        SpanAnnotation.objects.create(
            project=project, span=span, name="hallucination", label="hallucinated",
            annotator_kind="LLM",
        )  # fmt: skip

    def both():
        settings.ANALYTICS_ROLLUPS = False
        from_spans = ask(project, params)
        settings.ANALYTICS_ROLLUPS = True
        return from_spans, ask(project, params)

    def plan_step(answer):
        return next((g["spans"] for g in answer["groups"] if g["key"]["name"] == "plan_step"), 0)

    from_spans, before_roller = both()  # the new verdicts' hours come from the spans
    assert plan_step(from_spans) == 20 and before_roller["from_rollups"]
    same(from_spans, before_roller)

    rollups.catch_up(seconds=600)
    state = rollups.evals_ready(project)
    assert rollups.changed_eval_hours(project, state, "hallucination") == set()
    rows = EvalRollup.objects.filter(
        project=project, eval_name="hallucination", eval_label="hallucinated", scope=3,
        name="plan_step", dim_key="", grain=rollups.HOUR_GRAIN,
    )  # fmt: skip
    assert rows.aggregate(n=Sum("spans"))["n"] == 20
    same(*both())

    for annotation in SpanAnnotation.objects.filter(span__in=late):
        annotation.label = "faithful"  # a person relabels them
        annotation.save()
    rollups.catch_up(seconds=600)
    from_spans, from_rollups = both()
    assert plan_step(from_rollups) == 0 and not rows.exists()
    same(from_spans, from_rollups)


def test_a_key_with_too_many_values_stops_being_rolled_up(project):
    for i in range(rollups.MAX_VALUES + 5):
        make_span(
            project, name="call", start=NOW - timedelta(hours=2), attributes={"user": f"u{i}"}
        )
    make_span(project, name="call", start=NOW - timedelta(hours=2), attributes={"tier": "gold"})

    rollups.catch_up(seconds=60)

    assert RollupDimension.objects.get(project=project, key="user").overflow
    assert not SpanRollup.objects.filter(project=project, dim_key="user").exists()
    assert rollups.splits_by(project, "tier")
    query = parse_analytics_query(
        {"start": (NOW - timedelta(hours=24)).isoformat(), "group_by": ["attr:user"]}, now=NOW
    )
    assert _rollup_plan(project, query) is None  # read from the spans
    assert len(aggregate(project, query)["groups"]) == 20  # the default limit


def test_signal_says_the_same_from_rollups(planted, settings):
    project, _ = planted
    rollups.catch_up(seconds=600)

    settings.ANALYTICS_ROLLUPS = False
    from_spans = [i.as_dict() for i in investigate(project, now=NOW).issues]
    settings.ANALYTICS_ROLLUPS = True
    from_rollups = [i.as_dict() for i in investigate(project, now=NOW).issues]

    def gist(issues):
        return [
            (i["fingerprint"], i["severity"], i["where"], i["since"], i["evidence"]) for i in issues
        ]

    assert len(from_spans) >= 5
    assert gist(from_rollups) == gist(from_spans)


def test_a_project_is_rolled_up_once_it_is_big_enough(project, monkeypatch):
    monkeypatch.setattr(rollups, "MIN_SPANS", 50)
    for i in range(30):
        make_span(project, name="early", start=NOW - timedelta(hours=5, minutes=i), status="ERROR")
    rollups.catch_up(seconds=60)
    assert not rollups.is_ready(project) and not SpanRollup.objects.filter(project=project)
    for i in range(30):
        make_span(project, name="late", start=NOW - timedelta(hours=2, minutes=i))
    params = {"group_by": ["name"], "bucket": "1h"}
    from_spans = ask(project, params)

    rollups.catch_up(seconds=60)

    assert rollups.is_ready(project)  # its first 30 spans backfilled
    assert SpanRollup.objects.filter(project=project, scope=0, dim_key="").aggregate(
        n=Sum("spans")
    ) == {"n": 60 * len(rollups.GRAINS)}
    same(from_spans, ask(project, params))


def test_a_key_also_sent_nested_is_read_from_the_spans(project):
    start = NOW - timedelta(hours=3)
    for _ in range(10):
        make_span(project, name="chat", start=start, attributes={"llm.model_name": "gpt-4o"})
    make_span(project, name="chat", start=start, attributes={"llm": {"model_name": "o3"}})
    params = {"group_by": ["attr:llm.model_name"]}
    from_spans = ask(project, params)

    rollups.catch_up(seconds=60)

    assert RollupDimension.objects.get(project=project, key="llm.model_name").overflow
    got = ask(project, params)
    assert not got["from_rollups"]
    assert {g["key"]["attr:llm.model_name"]: g["spans"] for g in got["groups"]} == {
        "gpt-4o": 10,
        "o3": 1,
    }
    same(from_spans, got)


def test_a_window_of_few_spans_reads_them_rather_than_the_rollups(planted, monkeypatch):
    project, _ = planted
    rollups.catch_up(seconds=600)
    params = {"group_by": ["name"], "baseline": "previous"}
    start = NOW - timedelta(hours=24)
    query = parse_analytics_query({"start": start.isoformat(), **params}, now=NOW)
    estimate = analytics._rolled_up_spans(project, query)
    in_window = Span.objects.filter(project=project, start_time__gte=start - timedelta(hours=24))
    # The whole hours the window and its baseline touch: at least their spans.
    assert in_window.count() <= estimate <= Span.objects.filter(project=project).count()

    monkeypatch.setattr(analytics, "ROLLUP_MIN_SPANS", estimate + 1)
    few = ask(project, params)
    monkeypatch.setattr(analytics, "ROLLUP_MIN_SPANS", estimate)
    enough = ask(project, params)

    assert (few["from_rollups"], enough["from_rollups"]) == (False, True)
    same(few, enough)
