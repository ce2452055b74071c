"""The planted-failure suite: the traffic holds what its truth says, clean traffic
holds nothing above the noise, and the scorer counts right and wrong answers.

The stored checks read the spans back from the database, as Signal will, not
the generator's dicts: a class the loader dropped or mangled fails here.
"""

from __future__ import annotations

import copy
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from agentloop.teams.models import Project, Space
from agentloop.traces.models import Span, SpanAnnotation, Trace
from agentloop.traces.planted import (
    CUSTOMERS_SPAN,
    SONNET,
    Truth,
    generate,
    load,
    perfect_issues,
    score,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
SEED = 7
TRACES = 3000


@dataclass
class Stored:
    planted: Project
    clean: Project
    truth: Truth
    clean_truth: Truth


@pytest.fixture(scope="module")
def stored(django_db_setup, django_db_blocker):
    """One planted and one clean project, loaded once for the module (fast path;
    the ORM path is compared with it below) and removed afterwards."""
    with django_db_blocker.unblock():
        space = Space.objects.create(name="Planted suite", slug="planted-suite")
        planted = Project.objects.create(space=space, name="planted")
        clean = Project.objects.create(space=space, name="clean")
        truth = load(planted, seed=SEED, now=NOW, traces=TRACES, fast=True, index_attributes=False)
        clean_truth = load(
            clean,
            seed=SEED,
            now=NOW,
            traces=TRACES,
            mode="clean",
            fast=True,
            index_attributes=False,
        )
    yield Stored(planted, clean, truth, clean_truth)
    with django_db_blocker.unblock():
        projects = [planted, clean]
        SpanAnnotation.objects.filter(project__in=projects).delete()
        Span.objects.filter(project__in=projects).delete()
        Trace.objects.filter(project__in=projects).delete()
        space.delete()


def _spans(project, **filters):
    return Span.objects.filter(project=project, **filters)


def _rate(errors: int, total: int) -> float:
    return errors / total if total else 0.0


# -- the generator ----------------------------------------------------------------


def test_the_same_seed_and_time_give_the_same_traffic_and_truth():
    first, truth = generate(3, NOW, traces=400)
    again, truth_again = generate(3, NOW, traces=400)
    other, _ = generate(4, NOW, traces=400)

    assert first.spans == again.spans
    assert first.annotations == again.annotations
    assert truth.summary() == truth_again.summary()
    assert [c.trace_ids for c in truth.classes] == [c.trace_ids for c in truth_again.classes]
    assert [s["trace_id"] for s in other.spans] != [s["trace_id"] for s in first.spans]


def test_all_traffic_lies_in_the_window_before_now():
    data, truth = generate(3, NOW, traces=400)
    assert truth.start == NOW - timedelta(hours=24)
    assert min(t["start_time"] for t in data.traces) >= truth.start
    # The judge runs a moment after the reply: still before now.
    assert max(s["end_time"] for s in data.spans) < NOW
    assert truth.traces == 400 == len(data.traces)
    assert truth.spans == len(data.spans)


def test_every_planted_class_has_traces_and_clean_traffic_plants_none(stored):
    truth = stored.truth
    assert len(truth.classes) >= 8
    assert len({c.issue_class for c in truth.classes}) >= 8
    for c in truth.classes:
        assert len(c.trace_ids) >= 10, c.key
        assert c.severity_floor in ("medium", "high")
    assert stored.clean_truth.classes == []
    assert stored.clean_truth.traces == TRACES


def test_spans_carry_region_tier_and_the_openinference_kinds(stored):
    spans = _spans(stored.planted)
    assert spans.count() == stored.truth.spans
    assert Trace.objects.filter(project=stored.planted).count() == TRACES
    assert not spans.filter(attributes__region__isnull=True).exists()
    assert not spans.filter(attributes__tier__isnull=True).exists()
    kinds = set(spans.values_list("kind", flat=True).distinct())
    assert {"AGENT", "LLM", "RETRIEVER", "RERANKER", "TOOL", "EMBEDDING", "EVALUATOR"} <= kinds
    roots = spans.filter(parent_span_id="")
    assert set(roots.values_list("name", flat=True).distinct()) == {"support_agent"}


def test_the_ORM_path_stores_the_same_rows_as_the_fast_path():
    space = Space.objects.create(name="Paths", slug="paths")
    by_orm = Project.objects.create(space=space, name="orm")
    by_rows = Project.objects.create(space=space, name="rows")
    # Rows first: the ORM writes after it must find the id sequence moved past
    # the explicit ids (PostgreSQL), or its inserts collide.
    load(by_rows, seed=1, now=NOW, traces=60, fast=True, index_attributes=False)
    load(by_orm, seed=1, now=NOW, traces=60, fast=False, index_attributes=False)

    fields = ["trace_id", "span_id", "parent_span_id", "name", "kind", "status_code"]
    fields += ["status_message", "start_time", "end_time", "duration_ms", "attributes"]
    fields += ["events", "resource", "model_name", "prompt_tokens", "total_tokens", "user_id"]

    def rows(project):
        return list(_spans(project).order_by("trace_id", "span_id").values_list(*fields))

    def labels(project):
        return sorted(
            SpanAnnotation.objects.filter(project=project).values_list(
                "span__span_id", "name", "label", "score", "annotator_kind"
            )
        )

    assert rows(by_orm) == rows(by_rows)
    assert labels(by_orm) == labels(by_rows)
    assert len(labels(by_orm)) > 60


# -- each class is in the stored data as stated -------------------------------------


def test_lookup_order_fails_with_connect_errors_almost_only_in_eu_west(stored):
    tool = _spans(stored.planted, name="lookup_order")
    eu, rest = tool.filter(attributes__region="eu-west"), tool.exclude(attributes__region="eu-west")
    eu_rate = _rate(eu.filter(status_code="ERROR").count(), eu.count())
    rest_rate = _rate(rest.filter(status_code="ERROR").count(), rest.count())

    assert eu_rate > 0.25
    assert rest_rate < 0.02
    failed = tool.filter(status_code="ERROR", status_message__startswith="httpx.ConnectError")
    assert (
        set(failed.values_list("trace_id", flat=True))
        == stored.truth.get("tool_errors_eu_west").trace_ids
    )


def test_a_failure_is_an_exception_event_and_the_root_copies_it(stored):
    failed = _spans(stored.planted, name="lookup_order", status_code="ERROR")[:20]
    assert failed
    for span in failed:
        (event,) = span.events
        assert event["name"] == "exception"
        assert event["attributes"]["exception.type"] == "httpx.ConnectError"
        assert span.status_message.startswith("httpx.ConnectError: ")
        root = _spans(stored.planted, trace_id=span.trace_id, parent_span_id="").get()
        assert root.status_code == "ERROR"
        assert root.status_message == span.status_message
        assert root.events == span.events


def test_the_reranker_is_five_times_slower_since_two_hours_before_now(stored):
    onset = stored.truth.get("reranker_latency").onset
    rerank = _spans(stored.planted, name="rerank_docs", attributes__has_key="reranker.top_k")
    before = list(rerank.filter(start_time__lt=onset).values_list("duration_ms", flat=True))
    after = list(rerank.filter(start_time__gte=onset).values_list("duration_ms", flat=True))
    assert onset == NOW - timedelta(hours=2)
    assert statistics.median(after) / statistics.median(before) > 4
    # Onset sharp: the hour before it is as fast as the rest of the day.
    hour_before = rerank.filter(start_time__gte=onset - timedelta(hours=1), start_time__lt=onset)
    assert statistics.median(hour_before.values_list("duration_ms", flat=True)) < (
        1.5 * statistics.median(before)
    )


def test_the_rate_limit_burst_fills_its_ten_minutes_and_nothing_else(stored):
    c = stored.truth.get("llm_rate_limit_burst")
    assert c.end - c.onset == timedelta(minutes=10)
    plan = _spans(stored.planted, name="plan_step")
    limited = plan.filter(status_message__startswith="openai.RateLimitError")
    inside = plan.filter(start_time__gte=c.onset, start_time__lt=c.end)
    outside = plan.exclude(start_time__gte=c.onset, start_time__lt=c.end)
    assert _rate(limited.filter(pk__in=inside).count(), inside.count()) > 0.3
    assert _rate(limited.filter(pk__in=outside).count(), outside.count()) < 0.005
    assert set(limited.filter(pk__in=inside).values_list("trace_id", flat=True)) == c.trace_ids


def test_the_hallucination_judge_fails_answers_of_the_free_tier(stored):
    by_tier = defaultdict(Counter)
    judged = SpanAnnotation.objects.filter(project=stored.planted, name="hallucination")
    for tier, label in judged.values_list("span__attributes__tier", "label"):
        by_tier[tier][label] += 1
    free = _rate(by_tier["free"]["hallucinated"], sum(by_tier["free"].values()))
    paid = _rate(
        by_tier["pro"]["hallucinated"] + by_tier["enterprise"]["hallucinated"],
        sum(by_tier["pro"].values()) + sum(by_tier["enterprise"].values()),
    )
    assert free > 0.15
    assert paid < 0.05
    assert all(kind == "LLM" for kind in judged.values_list("annotator_kind", flat=True))
    assert set(judged.values_list("span__name", flat=True).distinct()) == {"compose_answer"}


def test_evaluator_spans_carry_the_verdict_and_point_at_the_judged_span(stored):
    evaluators = _spans(stored.planted, kind="EVALUATOR", name="llm_judge.hallucination")
    assert (
        evaluators.count()
        == SpanAnnotation.objects.filter(project=stored.planted, name="hallucination").count()
    )
    for span in evaluators.filter(**{"attributes__eval.label": "hallucinated"})[:20]:
        attrs = span.attributes
        assert attrs["eval.name"] == attrs["evaluation.name"] == "hallucination"
        assert attrs["eval.score"] == 1.0
        assert attrs["eval.explanation"]
        assert attrs["eval.target.trace_id"] == span.trace_id
        target = _spans(
            stored.planted, trace_id=span.trace_id, span_id=attrs["eval.target.span_id"]
        )
        assert target.get().name == "compose_answer"
        annotation = SpanAnnotation.objects.get(span=target.get(), name="hallucination")
        assert annotation.label == "hallucinated"


def test_empty_retrievals_are_followed_by_a_failing_eval_since_the_onset(stored):
    c = stored.truth.get("retrieval_gap")
    empty = [
        s
        for s in _spans(stored.planted, name="retrieve_kb").only(
            "trace_id", "start_time", "attributes"
        )
        if s.attributes.get("retrieval.documents") == []
    ]
    failing = set(
        SpanAnnotation.objects.filter(
            project=stored.planted, name="correctness", label="incorrect"
        ).values_list("span__trace_id", flat=True)
    )
    gap_traces = {s.trace_id for s in empty if s.trace_id in failing}
    assert gap_traces == c.trace_ids
    starts = Trace.objects.filter(project=stored.planted, trace_id__in=gap_traces)
    assert min(starts.values_list("start_time", flat=True)) >= c.onset
    # Empty retrievals before the onset exist (noise) but their answers pass.
    assert any(s.start_time < c.onset for s in empty)


def test_tool_loops_call_check_inventory_eight_times_with_the_same_input(stored):
    calls = Counter(
        (s.trace_id, s.name, s.attributes["tool.parameters"])
        for s in _spans(stored.planted, kind="TOOL").only("trace_id", "name", "attributes")
    )
    loops = {trace for (trace, name, _params), n in calls.items() if n >= 8}
    assert loops == stored.truth.get("tool_loop").trace_ids
    assert {name for (_t, name, _p), n in calls.items() if n >= 8} == {"check_inventory"}


def test_prompt_tokens_and_cost_of_compose_answer_jump_for_sonnet_since_the_onset(stored):
    onset = stored.truth.get("token_blowup").onset
    compose = _spans(stored.planted, name="compose_answer")

    def mean(model, after, field="prompt_tokens"):
        qs = compose.filter(model_name=model)
        qs = qs.filter(start_time__gte=onset) if after else qs.filter(start_time__lt=onset)
        return statistics.mean(qs.values_list(field, flat=True))

    assert mean(SONNET, True) / mean(SONNET, False) > 4
    assert 0.8 < mean("gpt-4o", True) / mean("gpt-4o", False) < 1.25
    cost = [s.attributes["llm.cost.total"] for s in compose.filter(model_name=SONNET)]
    assert max(cost) > 3 * statistics.median(cost)


def test_the_customers_api_answers_5xx_in_a_twenty_minute_burst(stored):
    c = stored.truth.get("customers_5xx_burst")
    http = _spans(stored.planted, name=CUSTOMERS_SPAN)
    bad = http.filter(**{"attributes__http.status_code__gte": 500})
    inside = bad.filter(start_time__gte=c.onset, start_time__lt=c.end)
    assert c.end - c.onset == timedelta(minutes=20)
    assert set(inside.values_list("trace_id", flat=True)) == c.trace_ids
    assert bad.count() - inside.count() <= 3  # the stray 5xx of a normal day
    assert all(s.status_code == "ERROR" for s in inside)


def test_create_refund_times_out_since_its_onset_only(stored):
    c = stored.truth.get("refund_tool_timeout")
    refund = _spans(stored.planted, name="create_refund")
    timeouts = refund.filter(status_message__startswith="httpx.ReadTimeout")
    assert not timeouts.filter(start_time__lt=c.onset).exists()
    after = refund.filter(start_time__gte=c.onset)
    assert _rate(timeouts.count(), after.count()) > 0.25
    assert min(timeouts.values_list("duration_ms", flat=True)) >= 30_000
    assert set(timeouts.values_list("trace_id", flat=True)) == c.trace_ids


def test_prompt_template_v7_fails_validation_and_v6_does_not(stored):
    classify = _spans(stored.planted, name="classify_intent")
    v7 = classify.filter(**{"attributes__llm.prompt_template.version": "v7"})
    v6 = classify.filter(**{"attributes__llm.prompt_template.version": "v6"})
    onset = stored.truth.get("prompt_v7_regression").onset
    assert not v7.filter(start_time__lt=onset).exists()
    assert _rate(v7.filter(status_code="ERROR").count(), v7.count()) > 0.2
    assert _rate(v6.filter(status_code="ERROR").count(), v6.count()) < 0.01


# -- clean traffic: nothing above the noise -------------------------------------------


def test_clean_traffic_has_only_scattered_errors(stored):
    spans = _spans(stored.clean).exclude(parent_span_id="")
    errors = Counter(spans.filter(status_code="ERROR").values_list("name", flat=True))
    totals = Counter(spans.values_list("name", flat=True))
    for name, n in errors.items():
        assert _rate(n, totals[name]) < 0.01, name
    roots = _spans(stored.clean, parent_span_id="")
    assert _rate(roots.filter(status_code="ERROR").count(), roots.count()) < 0.01
    # No region, tier or hour holds more than a handful of them.
    by_region = Counter(
        roots.filter(status_code="ERROR").values_list("attributes__region", flat=True)
    )
    assert max(by_region.values(), default=0) <= 8


def test_clean_traffic_has_no_planted_shape(stored):
    clean = stored.clean
    assert not _spans(clean, status_message__startswith="httpx.ConnectError").exists()
    assert not _spans(clean, status_message__startswith="httpx.ReadTimeout").exists()
    assert not _spans(clean, **{"attributes__llm.prompt_template.version": "v7"}).exists()
    calls = Counter(_spans(clean, kind="TOOL").values_list("trace_id", flat=True))
    assert max(calls.values()) <= 2

    onset = NOW - timedelta(hours=2)
    rerank = _spans(clean, name="rerank_docs")
    after = statistics.median(
        rerank.filter(start_time__gte=onset).values_list("duration_ms", flat=True)
    )
    before = statistics.median(
        rerank.filter(start_time__lt=onset).values_list("duration_ms", flat=True)
    )
    assert 0.7 < after / before < 1.4

    judged = SpanAnnotation.objects.filter(project=clean, name="hallucination")
    by_tier = Counter(
        judged.filter(label="hallucinated").values_list("span__attributes__tier", flat=True)
    )
    totals = Counter(judged.values_list("span__attributes__tier", flat=True))
    for tier, n in totals.items():
        assert _rate(by_tier[tier], n) < 0.05, tier

    limited = _spans(clean, status_message__startswith="openai.RateLimitError").count()
    assert limited <= 5


# -- the scorer -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def truth():
    return generate(SEED, NOW, traces=TRACES)[1]


def test_a_perfect_issue_list_gets_full_marks(truth):
    result = score(perfect_issues(truth), truth)
    assert result["recall"] == 1.0
    assert result["found"] == result["planted"] == len(truth.classes)
    assert result["dimension_accuracy"] == result["onset_accuracy"] == 1.0
    assert result["evidence_accuracy"] == result["severity_accuracy"] == 1.0
    assert result["false_positives"] == result["duplicates"] == 0
    assert all(row["evidence_precision"] == 1.0 for row in result["classes"])


def _row(result, key):
    return next(r for r in result["classes"] if r["key"] == key)


def test_a_wrong_dimension_is_found_but_counted_wrong(truth):
    issues = perfect_issues(truth)
    issue = next(i for i in issues if i["fingerprint"] == "planted:tool_errors_eu_west")
    issue["where"] = [{"dimension": "attr:tier", "value": "free", "lift": 2.0, "share": 0.5}]
    result = score(issues, truth)
    row = _row(result, "tool_errors_eu_west")
    assert row["found"] and row["dimension_ok"] is False
    assert result["dimension_accuracy"] == 3 / 4

    # The same dimension in other spellings is right.
    issue["where"] = [{"dimension": "region", "value": "EU-West"}]
    assert _row(score(issues, truth), "tool_errors_eu_west")["dimension_ok"] is True
    issue["where"] = [{"dimension": "resource:cloud.region", "value": "eu-west"}]
    assert _row(score(issues, truth), "tool_errors_eu_west")["dimension_ok"] is True
    token = next(i for i in issues if i["fingerprint"] == "planted:token_blowup")
    token["where"] = [{"dimension": "model", "value": SONNET}]
    assert _row(score(issues, truth), "token_blowup")["dimension_ok"] is True


def test_an_onset_off_by_more_than_the_tolerance_is_wrong(truth):
    issues = perfect_issues(truth)
    issue = next(i for i in issues if i["fingerprint"] == "planted:reranker_latency")
    onset = truth.get("reranker_latency").onset
    issue["since"] = {"onset": (onset + timedelta(minutes=10)).isoformat(), "end": None}
    assert _row(score(issues, truth), "reranker_latency")["onset_ok"] is True
    issue["since"] = {"onset": (onset - timedelta(hours=1)).isoformat(), "end": None}
    assert _row(score(issues, truth), "reranker_latency")["onset_ok"] is False
    # A burst needs its end too.
    burst = next(i for i in issues if i["fingerprint"] == "planted:llm_rate_limit_burst")
    burst["since"]["end"] = None
    assert _row(score(issues, truth), "llm_rate_limit_burst")["onset_ok"] is False


def test_one_foreign_evidence_id_makes_the_evidence_wrong(truth):
    issues = perfect_issues(truth)
    issue = next(i for i in issues if i["fingerprint"] == "planted:tool_loop")
    foreign = sorted(truth.get("customers_5xx_burst").trace_ids)[0]
    issue["evidence"] = issue["evidence"][:5] + [foreign]
    row = _row(score(issues, truth), "tool_loop")
    assert row["found"] and row["evidence_ok"] is False
    assert row["evidence_precision"] == pytest.approx(5 / 6)

    # An id shared with another class's set is wrong too: it shows two issues.
    shared = sorted(truth.get("reranker_latency").trace_ids & truth.get("token_blowup").trace_ids)[
        0
    ]
    latency = next(i for i in issues if i["fingerprint"] == "planted:reranker_latency")
    latency["evidence"] = [shared]
    assert _row(score(issues, truth), "reranker_latency")["evidence_ok"] is False
    latency["evidence"] = []
    assert _row(score(issues, truth), "reranker_latency")["evidence_ok"] is False


def test_a_second_issue_for_one_class_is_a_duplicate_and_the_better_one_counts(truth):
    issues = perfect_issues(truth)
    original = next(i for i in issues if i["fingerprint"] == "planted:prompt_v7_regression")
    worse = copy.deepcopy(original)
    worse.update(fingerprint="dup", where=[], since={"onset": None, "end": None})
    worse["class"] = "error_concentration"
    worse["component"] = {"kind": "span", "name": "intent-classifier"}
    result = score([worse, *issues], truth)
    row = _row(result, "prompt_v7_regression")
    assert result["duplicates"] == 1 and row["duplicates"] == 1
    assert row["issue"] == "planted:prompt_v7_regression"
    assert row["dimension_ok"] and row["onset_ok"]
    assert result["false_positives"] == 0


def test_an_issue_matching_no_class_is_a_false_positive_unless_it_is_low(truth):
    issues = perfect_issues(truth)
    invented = {"fingerprint": "fp", "class": "latency_regression", "severity": "medium",
                "component": {"kind": "span", "name": "embed_query"}}  # fmt: skip
    wrong_family = {"fingerprint": "fp2", "class": "tool_loop", "severity": "high",
                    "component": {"kind": "tool", "name": "lookup_order"}}  # fmt: skip
    low = {"fingerprint": "low", "class": "error_concentration", "severity": "low",
           "component": {"kind": "span", "name": "moderate_output"}}  # fmt: skip
    result = score([*issues, invented, wrong_family, low], truth)
    assert result["false_positives"] == 2
    assert result["false_positive_ids"] == ["fp", "fp2"]
    assert result["unmatched_low"] == 1
    assert result["recall"] == 1.0


def test_on_clean_traffic_every_medium_or_high_issue_is_a_false_positive(stored, truth):
    issues = perfect_issues(truth)
    result = score(issues, stored.clean_truth)
    assert result["planted"] == 0 and result["recall"] is None
    assert result["false_positives"] == len(issues)
    assert score([], stored.clean_truth)["false_positives"] == 0


def test_the_scorer_takes_issues_with_only_the_required_keys(truth):
    minimal = [{"class": "tool_loop", "component": {"name": "check_inventory"}}]
    result = score(minimal, truth)
    row = _row(result, "tool_loop")
    assert row["found"] and not row["severity_ok"] and not row["evidence_ok"]
    assert result["found"] == 1 and result["false_positives"] == 0
