"""Planted failures: a support agent's traffic with known problems, and a scorer.

Signal (the built-in investigator) reads a project's traces and reports issues.
To measure it we need traffic whose problems we know. This module makes it:

- `generate(seed, now, traces=..., mode="planted"|"clean")` returns the span,
  trace and annotation dicts of `traces` traces over the `hours` before `now`
  and the ground truth (`Truth`). Deterministic: the same arguments give the
  same ids, times and values (random.Random(seed); pass `now=` to pin time).
- `load(project, ...)` stores them: bulk_create for small counts, raw
  executemany / COPY with explicit ids for large ones (~1M spans).
- `score(issues, truth)` compares Signal's issues with the truth.

## The traffic

One app, `support-bot`: an AGENT root `support_agent` whose children are, in
order: `GET /v1/customers/{id}` (an HTTP client span, kind UNKNOWN, with
`http.request.method`, `http.status_code` and `http.response.status_code`),
`classify_intent` (LLM, gpt-4o-mini, an OpenInference prompt template with
`llm.prompt_template.version`), `retrieve_kb` (RETRIEVER, with the child
`embed_query`, EMBEDDING; `retrieval.documents.N.document.*`), `rerank_docs`
(RERANKER, `reranker.*`), `plan_step` (LLM with a tool call), the tool (TOOL,
named after it, `tool.name`), `compose_answer` (LLM). After the answer an LLM
judge scores it: EVALUATOR spans `llm_judge.hallucination` (judges
`compose_answer`) and `llm_judge.correctness` (judges the root), and/or
SpanAnnotation rows (annotator_kind LLM) on the judged spans (`evals=`).

Every span carries `region` (us-east, eu-west, us-west, ap-south) and `tier`
(free, pro, enterprise) attributes, `session.id` and `user.id`; the resource
has `service.name`, `service.version`, `deployment.environment` and
`cloud.region`. LLM spans carry `llm.model_name`, `llm.provider`, token
counts and `llm.cost.prompt|completion|total` (USD, as the gateway records).
`plan_step` and `compose_answer` run on gpt-4o (~65%) or claude-sonnet-4.

Evaluation spans follow OpenInference: span kind EVALUATOR, `input.value`
(what was judged) and `output.value` (the verdict). The verdict is written
twice: as `eval.name|label|score|explanation` and under OpenInference's
evaluation prefix `evaluation.name|label|score|explanation|annotator_kind`.
The judged span is named by `eval.target.trace_id` / `eval.target.span_id`
(OTLP span links are not stored by ingest, so the link is an attribute; the
OTel link would carry the same two ids). The EVALUATOR span is a child of the
root, starting after the root ended, as an online judge runs after the reply.

A failure is recorded as instrumentations record it: status ERROR, a status
message "Type: message" and one OTel `exception` event with
`exception.type`, `exception.message`, `exception.stacktrace`. A failure
that ends the request is copied onto the root (status, message, event).

Background noise, in both modes and uniform over every dimension: ~0.4% of
traces with a scattered error of a kind that no planted class uses, rare
rate limits and 5xx outside the bursts, LLM latency outliers (1%),
occasional hallucination (2%) and incorrect (3%) labels, empty retrievals
(0.3%, answered by a ticket and judged correct), a tool called twice.

## The planted classes (mode="planted"; clean mode plants none)

Times are relative to `now` (so `hours` must be at least 16):

key: class; component; where (dimension=value); since (relative to now)

- tool_errors_eu_west: error_concentration; tool lookup_order fails with
  httpx.ConnectError (35% in eu-west, 0.4% elsewhere); attr:region=eu-west; always
- reranker_latency: latency_regression; span rerank_docs 5x slower; -; now-2h
- llm_rate_limit_burst: error_burst; llm plan_step openai.RateLimitError (429)
  on 80% of calls; -; now-7h05 .. now-6h55
- hallucination_free_tier: eval_failure; span compose_answer judged hallucinated
  (25% + 2% noise); attr:tier=free; always
- retrieval_gap: retrieval_gap; retriever retrieve_kb returns no documents for
  warranty questions, the correctness judge then fails the answer; -; now-10h
- tool_loop: tool_loop; tool check_inventory called 8-12 times with the same
  input (15% of its traces); -; always
- token_blowup: token_blowup; llm compose_answer prompt tokens and cost x5;
  attr:llm.model_name=claude-sonnet-4; now-5h
- customers_5xx_burst: http_5xx; span GET /v1/customers/{id} answers 502/503/504
  (50%); -; now-14h .. now-13h40
- refund_tool_timeout: tool_timeout; tool create_refund httpx.ReadTimeout after
  30 s (40%); -; now-3h30
- prompt_v7_regression: prompt_regression; prompt classify_intent fails
  pydantic validation (30% of v7, which half the traffic gets);
  attr:llm.prompt_template.version=v7; now-8h

Severity floors: high for the error classes, medium for the others.

A class's affected set (`PlantedClass.trace_ids`) is every trace that shows
its symptom (the predicate in `_CLASS_SYMPTOMS`), planted or, where noise can
produce the same symptom (a hallucination in the free tier, a 429 inside the
burst window), by chance: evidence drawn from such a trace is evidence of the
issue. Sets of onset classes overlap (every trace of the last two hours has
the slow reranker); evidence must be chosen from traces of one set only.

## Scoring rules (what Signal should aim at)

An issue *matches* a planted class when both hold:

1. its `class` is in the class's accepted families (`PlantedClass.accepts`:
   the class itself plus close synonyms, e.g. a tool timeout may be reported
   as error_concentration, error_onset or latency_regression; token_blowup as
   cost_spike), and
2. its `component.name` equals the class's component name or one of its
   aliases (`PlantedClass.names`: e.g. the tool name and its `tool.name`, a
   prompt's span name and template name), compared case-insensitively.
   `component.kind` is not compared.

If an issue matches several classes it counts for the one whose affected set
holds most of its evidence. Per planted class, with its best matching issue:

- found: some issue matches (any severity); `severity_ok` when that issue's
  severity is at least the class's `severity_floor` (medium or high).
- dimension right: the class has a dimension and the issue's first `where`
  entry names it: the dimension compared after normalising (`attr:region`,
  `region`, `attributes.region` and `resource:cloud.region` are one; `model`,
  `llm.model_name` and `attr:llm.model_name` are one) and the value compared
  as text, case-insensitively.
  Classes without a dimension are not counted.
- onset right: the class has an onset and `since.onset` is within
  `onset_tolerance` (15 min) of it; for a burst, `since.onset` and `since.end`
  must each be within `burst_tolerance` (10 min) of the window's start and end.
  Classes without an onset are not counted.
- evidence right: `evidence` is not empty and every trace id in it is in this
  class's affected set and in no other class's. (`evidence_precision`, the
  share in this class's set, is reported too.)

The best matching issue is the one with most of these right (then the first
in the list); any other issue matching the same class is a duplicate.
A false positive is a medium or high issue that matches no planted class; on
clean traffic every medium or high issue is one. Low issues never count
against Signal. `recall` is found / planted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from agentloop.traces.attribute_index import attribute_tokens, index_new_spans, tokens_at_ingest
from agentloop.traces.ingest import SPAN_FIELDS
from agentloop.traces.models import Span, SpanAnnotation, Trace

PLANTED = "planted"
CLEAN = "clean"
SERVICE = "support-bot"

REGIONS = (("us-east", 0.40), ("eu-west", 0.25), ("us-west", 0.20), ("ap-south", 0.15))
TIERS = (("free", 0.50), ("pro", 0.38), ("enterprise", 0.12))
# (question template, tool, intent, weight): order status is what people ask most.
QUESTIONS = (
    ("Where is my order {order}? It was due on Monday.", "lookup_order", "order_status", 20),
    ("I want a refund for order {order}, it arrived broken.", "create_refund", "refund", 12),
    ("Can I change the shipping address for {order}?", "update_shipping_address", "order", 8),
    ("How long does shipping to Canada take?", "check_shipping_rates", "shipping", 8),
    ("My discount code SPRING20 doesn't work.", "validate_coupon", "billing", 8),
    ("Please cancel my subscription.", "cancel_subscription", "account", 8),
    ("Do you have the trail shoes in size {size}?", "check_inventory", "product", 10),
    ("I was charged twice for order {order}.", "lookup_payment", "billing", 10),
    ("How do I reset my password?", "send_password_reset", "account", 8),
    ("Is the warranty on the espresso machine two years?", "search_warranty", "warranty", 8),
)
_QUESTION_WEIGHTS = [q[3] for q in QUESTIONS]

MINI = "gpt-4o-mini"
GPT4O = "gpt-4o"
SONNET = "claude-sonnet-4"
EMBEDDING_MODEL = "text-embedding-3-small"
RERANKER_MODEL = "bge-reranker-v2-m3"
# USD per million tokens (prompt, completion).
PRICES = {MINI: (0.15, 0.60), GPT4O: (2.50, 10.00), SONNET: (3.00, 15.00)}
PROVIDERS = {MINI: "openai", GPT4O: "openai", SONNET: "anthropic"}

CUSTOMERS_SPAN = "GET /v1/customers/{id}"
HALLUCINATION_EVAL = "hallucination"
CORRECTNESS_EVAL = "correctness"
EVAL_SPAN_PREFIX = "llm_judge."
PROMPT_TEMPLATE_NAME = "intent-classifier"

KB = [(f"kb-{100 + i}", text) for i, text in enumerate((
    "Orders ship within 2 business days; tracking is emailed when the parcel leaves.",
    "Refunds go to the original payment method within 5-7 business days.",
    "The shipping address can be changed until the order is packed.",
    "Shipping to Canada takes 5-9 business days.",
    "Coupons cannot be combined and expire at midnight UTC.",
    "Subscriptions can be cancelled any time from Account > Plan.",
    "Sizes 36-47 are stocked for every trail shoe.",
    "Duplicate charges are usually authorisation holds that drop off in 3 days.",
    "Password reset emails come from no-reply@shop.example.",
    "Small appliances carry a 2-year limited warranty.",
))]  # fmt: skip

# -- failures: (exception type, message, stack) ----------------------------------

_STACK = 'Traceback (most recent call last):\n  File "/app/support_bot/{file}", line {line}, in {fn}\n{exc}: {msg}\n'  # noqa: E501


def _failure(exc_type: str, message: str, file: str, line: int, fn: str) -> tuple[str, str, str]:
    return exc_type, message, _STACK.format(file=file, line=line, fn=fn, exc=exc_type, msg=message)


CONNECT_ERROR = _failure(
    "httpx.ConnectError",
    "[Errno 111] Connection refused (orders-eu.shop.internal:443)",
    "tools.py",
    88,
    "call_tool",
)
READ_TIMEOUT = _failure(
    "httpx.ReadTimeout", "The read operation timed out", "tools.py", 91, "call_tool"
)
RATE_LIMIT = _failure(
    "openai.RateLimitError",
    "Error code: 429 - Rate limit reached for requests per min (RPM). Please try again in 20s.",
    "llm.py",
    41,
    "complete",
)
VALIDATION_ERROR = _failure(
    "pydantic_core._pydantic_core.ValidationError",
    "1 validation error for Intent: intent Input should be a valid enum member",
    "classify.py",
    57,
    "parse_intent",
)
# Noise uses none of the planted types, so a planted class's symptom is its own.
NOISE_FAILURES = {
    CUSTOMERS_SPAN: _failure(
        "httpx.RemoteProtocolError",
        "Server disconnected without sending a response.",
        "crm.py",
        30,
        "profile",
    ),
    "classify_intent": _failure(
        "openai.APIConnectionError", "Connection error.", "llm.py", 44, "complete"
    ),
    "retrieve_kb": _failure(
        "qdrant_client.http.exceptions.ResponseHandlingException",
        "timed out",
        "kb.py",
        23,
        "search",
    ),
    "rerank_docs": _failure(
        "RuntimeError",
        "CUDA error: an illegal memory access was encountered",
        "kb.py",
        61,
        "rerank",
    ),
    "plan_step": _failure(
        "openai.InternalServerError",
        "Error code: 500 - The server had an error while processing your request.",
        "llm.py",
        41,
        "complete",
    ),
    "tool": _failure("ValueError", "unexpected field in backend response", "tools.py", 95, "parse"),
    "compose_answer": _failure(
        "openai.APIConnectionError", "Connection error.", "llm.py", 44, "complete"
    ),
}
NOISE_STEPS = tuple(NOISE_FAILURES)


# -- ground truth ------------------------------------------------------------------

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}


@dataclass
class PlantedClass:
    key: str
    issue_class: str
    component: dict  # {"kind": ..., "name": ...}
    names: tuple[str, ...]  # the component name and its aliases
    accepts: tuple[str, ...]  # issue classes that count as finding it
    dimension: str | None
    value: str | None
    onset: datetime | None
    end: datetime | None
    severity_floor: str
    description: str
    trace_ids: set[str] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "class": self.issue_class,
            "component": dict(self.component),
            "names": list(self.names),
            "accepts": list(self.accepts),
            "dimension": self.dimension,
            "value": self.value,
            "onset": self.onset.isoformat() if self.onset else None,
            "end": self.end.isoformat() if self.end else None,
            "severity_floor": self.severity_floor,
            "description": self.description,
            "affected_traces": len(self.trace_ids),
        }


@dataclass
class Truth:
    mode: str
    seed: int
    now: datetime
    start: datetime
    traces: int = 0
    spans: int = 0
    annotations: int = 0
    classes: list[PlantedClass] = field(default_factory=list)
    # Severity nothing on this traffic should exceed unless it matches a class.
    noise_severity_ceiling: str = "low"

    def get(self, key: str) -> PlantedClass:
        return next(c for c in self.classes if c.key == key)

    def summary(self) -> list[dict]:
        return [c.as_dict() for c in self.classes]


def planted_classes(now: datetime) -> list[PlantedClass]:
    """The classes `generate(mode="planted")` plants, with empty affected sets."""
    h = timedelta(hours=1)
    m = timedelta(minutes=1)
    errors = ("error_concentration", "error_rate", "error_spike", "error_onset")
    return [
        PlantedClass(
            "tool_errors_eu_west",
            "error_concentration",
            {"kind": "tool", "name": "lookup_order"},
            ("lookup_order",),
            errors,
            "attr:region",
            "eu-west",
            None,
            None,
            "high",
            "lookup_order fails with httpx.ConnectError, almost only in region eu-west",
        ),
        PlantedClass(
            "reranker_latency",
            "latency_regression",
            {"kind": "span", "name": "rerank_docs"},
            ("rerank_docs", RERANKER_MODEL),
            ("latency_regression", "latency_spike", "slow_span"),
            None,
            None,
            now - 2 * h,
            None,
            "medium",
            "rerank_docs is 5x slower since two hours before now",
        ),
        PlantedClass(
            "llm_rate_limit_burst",
            "error_burst",
            {"kind": "llm", "name": "plan_step"},
            ("plan_step",),
            ("error_burst", "rate_limit", "error_spike", "error_concentration"),
            None,
            None,
            now - 7 * h - 5 * m,
            now - 6 * h - 55 * m,
            "high",
            "a 10-minute burst of openai.RateLimitError (429) on plan_step",
        ),
        PlantedClass(
            "hallucination_free_tier",
            "eval_failure",
            {"kind": "span", "name": "compose_answer"},
            ("compose_answer", HALLUCINATION_EVAL, EVAL_SPAN_PREFIX + HALLUCINATION_EVAL),
            ("eval_failure", "eval_regression", "quality_regression"),
            "attr:tier",
            "free",
            None,
            None,
            "medium",
            "the hallucination judge flags compose_answer on the free tier",
        ),
        PlantedClass(
            "retrieval_gap",
            "retrieval_gap",
            {"kind": "retriever", "name": "retrieve_kb"},
            ("retrieve_kb",),
            ("retrieval_gap", "empty_retrieval"),
            None,
            None,
            now - 10 * h,
            None,
            "medium",
            "retrieve_kb returns no documents for warranty questions since 10 h before now,"
            " and the correctness judge then fails the answer",
        ),
        PlantedClass(
            "tool_loop",
            "tool_loop",
            {"kind": "tool", "name": "check_inventory"},
            ("check_inventory",),
            ("tool_loop", "repeated_tool_call"),
            None,
            None,
            None,
            None,
            "medium",
            "check_inventory called 8-12 times in one trace with the same input",
        ),
        PlantedClass(
            "token_blowup",
            "token_blowup",
            {"kind": "llm", "name": "compose_answer"},
            ("compose_answer",),
            ("token_blowup", "cost_spike"),
            "attr:llm.model_name",
            SONNET,
            now - 5 * h,
            None,
            "medium",
            "compose_answer on claude-sonnet-4 sends 5x the prompt tokens (and cost)"
            " since 5 h before now",
        ),
        PlantedClass(
            "customers_5xx_burst",
            "http_5xx",
            {"kind": "span", "name": CUSTOMERS_SPAN},
            (CUSTOMERS_SPAN, "crm.shop.internal"),
            ("http_5xx", "error_burst", "error_spike", "error_concentration"),
            None,
            None,
            now - 14 * h,
            now - 13 * h - 40 * m,
            "high",
            "the customers API answers 502/503/504 for 20 minutes",
        ),
        PlantedClass(
            "refund_tool_timeout",
            "tool_timeout",
            {"kind": "tool", "name": "create_refund"},
            ("create_refund",),
            ("tool_timeout", "latency_regression", *errors),
            None,
            None,
            now - 3 * h - 30 * m,
            None,
            "high",
            "create_refund times out (httpx.ReadTimeout after 30 s) since 3.5 h before now",
        ),
        PlantedClass(
            "prompt_v7_regression",
            "prompt_regression",
            {"kind": "prompt", "name": "classify_intent"},
            ("classify_intent", PROMPT_TEMPLATE_NAME),
            ("prompt_regression", *errors),
            "attr:llm.prompt_template.version",
            "v7",
            now - 8 * h,
            None,
            "high",
            "prompt template v7 of classify_intent (a 50% rollout since 8 h before now)"
            " makes the intent fail validation",
        ),
    ]


# What one trace did, for the affected sets.
@dataclass
class _Facts:
    start: datetime
    region: str
    tier: str
    failure: tuple[str, str] | None = None  # (span name, exception type) that failed it
    reranked: bool = False
    hallucinated: bool = False
    empty_retrieval: bool = False
    correctness_failed: bool = False
    loop_calls: int = 0
    tool: str = ""
    compose_model: str = ""
    http_status: int = 200


def _in(t: datetime, c: PlantedClass) -> bool:
    return (c.onset is None or t >= c.onset) and (c.end is None or t < c.end)


_CLASS_SYMPTOMS = {
    "tool_errors_eu_west": lambda f, c: f.failure == ("lookup_order", "httpx.ConnectError"),
    "reranker_latency": lambda f, c: f.reranked and _in(f.start, c),
    "llm_rate_limit_burst": lambda f, c: (
        f.failure == ("plan_step", "openai.RateLimitError") and _in(f.start, c)
    ),
    "hallucination_free_tier": lambda f, c: f.hallucinated and f.tier == "free",
    "retrieval_gap": lambda f, c: f.empty_retrieval and f.correctness_failed,
    "tool_loop": lambda f, c: f.loop_calls >= 8,
    "token_blowup": lambda f, c: f.compose_model == SONNET and _in(f.start, c),
    "customers_5xx_burst": lambda f, c: f.http_status >= 500 and _in(f.start, c),
    "refund_tool_timeout": lambda f, c: f.failure == ("create_refund", "httpx.ReadTimeout"),
    "prompt_v7_regression": lambda f, c: f.failure == ("classify_intent", VALIDATION_ERROR[0]),
}


# -- generation ----------------------------------------------------------------------


@dataclass
class Batch:
    """Dicts ready for the store: traces and spans keyed by column name; an
    annotation names its span by (trace_id, span_id)."""

    traces: list[dict] = field(default_factory=list)
    spans: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)


def _hex(rng: random.Random, nbytes: int) -> str:
    return f"{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def _pick(rng: random.Random, weighted) -> str:
    r = rng.random()
    for value, weight in weighted:
        r -= weight
        if r < 0:
            return value
    return weighted[-1][0]


def _cost(model: str, prompt: int, completion: int) -> dict:
    p, c = PRICES[model]
    prompt_cost, completion_cost = prompt * p / 1e6, completion * c / 1e6
    return {
        "llm.cost.prompt": round(prompt_cost, 8),
        "llm.cost.completion": round(completion_cost, 8),
        "llm.cost.total": round(prompt_cost + completion_cost, 8),
    }


class _TraceBuilder:
    def __init__(self, rng, trace_id, base_attrs, resource):
        self.rng = rng
        self.trace_id = trace_id
        self.base = base_attrs
        self.resource = resource
        self.spans: list[dict] = []
        self.annotations: list[dict] = []

    def span(self, name, kind, parent, start, duration_ms, attributes, *, failure=None):
        attrs = dict(self.base)
        if kind != "UNKNOWN":
            attrs["openinference.span.kind"] = kind
        attrs.update(attributes)
        end = start + timedelta(milliseconds=duration_ms)
        span = {
            "trace_id": self.trace_id,
            "span_id": _hex(self.rng, 8),
            "parent_span_id": parent["span_id"] if parent else "",
            "name": name,
            "kind": kind,
            "status_code": "OK",
            "status_message": "",
            "start_time": start,
            "end_time": end,
            "duration_ms": round(duration_ms, 3),
            "attributes": attrs,
            "events": [],
            "resource": self.resource,
            "model_name": attrs.get("llm.model_name", ""),
            "prompt_tokens": attrs.get("llm.token_count.prompt"),
            "completion_tokens": attrs.get("llm.token_count.completion"),
            "total_tokens": attrs.get("llm.token_count.total"),
            "session_id": attrs["session.id"],
            "user_id": attrs["user.id"],
        }
        if failure is not None:
            fail(span, failure)
        self.spans.append(span)
        return span


def fail(span: dict, failure: tuple[str, str, str]) -> None:
    """Mark a span dict failed as an OTel SDK records an exception."""
    exc_type, message, stack = failure
    span["status_code"] = "ERROR"
    span["status_message"] = f"{exc_type}: {message}"
    span["events"] = [
        {
            "name": "exception",
            "time": span["end_time"].isoformat(),
            "attributes": {
                "exception.type": exc_type,
                "exception.message": message,
                "exception.stacktrace": stack,
                "exception.escaped": "False",
            },
        }
    ]


def _copy_failure(root: dict, child: dict) -> None:
    root["status_code"] = "ERROR"
    root["status_message"] = child["status_message"]
    root["events"] = [dict(e) for e in child["events"]]


def _llm_attrs(model, prompt, completion, input_value, output_value, **extra) -> dict:
    return {
        "llm.model_name": model,
        "llm.provider": PROVIDERS[model],
        "llm.system": PROVIDERS[model],
        "llm.invocation_parameters": '{"temperature": 0.2, "max_tokens": 800}',
        "input.value": input_value,
        "output.value": output_value,
        "llm.token_count.prompt": prompt,
        "llm.token_count.completion": completion,
        "llm.token_count.total": prompt + completion,
        **_cost(model, prompt, completion),
        **extra,
    }


class _Generator:
    def __init__(self, seed, now, traces, mode, hours, evals):
        if mode not in (PLANTED, CLEAN):
            raise ValueError(f"mode must be {PLANTED!r} or {CLEAN!r}, not {mode!r}")
        if evals not in ("spans", "annotations", "both"):
            raise ValueError("evals must be 'spans', 'annotations' or 'both'")
        if hours < 16:
            raise ValueError("the planted onsets reach 14 h back: hours must be >= 16")
        self.rng = random.Random(seed)
        self.now = now
        self.count = traces
        self.mode = mode
        self.hours = hours
        self.evals = evals
        self.truth = Truth(mode, seed, now, now - timedelta(hours=hours))
        if mode == PLANTED:
            self.truth.classes = planted_classes(now)
        self.by_key = {c.key: c for c in self.truth.classes}
        self.users = [f"user-{i:05d}" for i in range(max(50, traces // 6))]
        self.resources = {
            region: {
                "service.name": SERVICE,
                "service.version": "2.14.1",
                "deployment.environment": "production",
                "cloud.region": region,
            }
            for region, _ in REGIONS
        }

    def planted(self, key: str, at: datetime) -> bool:
        c = self.by_key.get(key)
        return c is not None and _in(at, c)

    def batches(self, batch_traces: int = 2000) -> Iterator[Batch]:
        rng = self.rng
        window = self.hours * 3600.0
        # Evenly spread arrivals with jitter, in time order like ingest sees them.
        step = window / max(1, self.count)
        batch = Batch()
        for i in range(self.count):
            ago = window - (i + rng.random()) * step
            start = self.now - timedelta(seconds=max(30.0, ago))
            self._trace(start, batch)
            if len(batch.traces) >= batch_traces:
                yield batch
                batch = Batch()
        if batch.traces:
            yield batch

    # One trace: the request path, then the judge. Each step may fail the trace.
    def _trace(self, start: datetime, out: Batch) -> None:
        rng = self.rng
        region, tier = _pick(rng, REGIONS), _pick(rng, TIERS)
        user = rng.choice(self.users)
        session = f"sess-{user[-5:]}-{rng.randrange(6)}"
        template, tool, intent, _ = rng.choices(QUESTIONS, weights=_QUESTION_WEIGHTS)[0]
        question = template.format(
            order=f"A{rng.randrange(10000, 99999)}", size=rng.randint(36, 47)
        )
        facts = _Facts(start=start, region=region, tier=tier, tool=tool)
        base = {"session.id": session, "user.id": user, "region": region, "tier": tier}
        b = _TraceBuilder(rng, _hex(rng, 16), base, self.resources[region])
        noise_step = rng.choice(NOISE_STEPS) if rng.random() < 0.004 else None

        root = b.span("support_agent", "AGENT", None, start, 0, {"input.value": question})
        t = start + timedelta(milliseconds=rng.uniform(1, 4))

        def done(last_span: dict | None = None, answer: str = "") -> None:
            """Close the root over its children; a fatal failure is copied onto it."""
            end = max(s["end_time"] for s in b.spans)
            root["end_time"] = end + timedelta(milliseconds=rng.uniform(1, 3))
            root["duration_ms"] = round((root["end_time"] - start).total_seconds() * 1000, 3)
            root["attributes"]["output.value"] = answer
            if last_span is not None:
                _copy_failure(root, last_span)
                root["attributes"]["output.value"] = "Sorry, something went wrong on our side."

        def noise(step: str):
            return NOISE_FAILURES[step] if noise_step == step else None

        # 1. The customer profile from the CRM.
        http_ms = rng.lognormvariate(3.4, 0.35)  # ~30 ms
        status = 200
        failure = noise(CUSTOMERS_SPAN)
        if self.planted("customers_5xx_burst", start) and rng.random() < 0.5:
            status = rng.choice((502, 503, 504))
        elif rng.random() < 0.0003:  # a stray 5xx, as any upstream has
            status = 503
        if status >= 500:
            reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
            http_ms = rng.uniform(5, 40) if status != 504 else rng.uniform(5000, 5050)
            failure = _failure(
                "httpx.HTTPStatusError",
                f"Server error '{status} {reason[status]}' for url "
                f"'https://crm.shop.internal/v1/customers/{user}'",
                "crm.py",
                31,
                "profile",
            )
        facts.http_status = status
        http = b.span(
            CUSTOMERS_SPAN,
            "UNKNOWN",
            root,
            t,
            http_ms,
            {
                "http.request.method": "GET",
                "http.method": "GET",
                "url.full": f"https://crm.shop.internal/v1/customers/{user}",
                "server.address": "crm.shop.internal",
                "http.route": "/v1/customers/{id}",
                "http.status_code": status,
                "http.response.status_code": status,
                **({"error.type": str(status)} if status >= 500 else {}),
            },
            failure=failure,
        )
        t = http["end_time"] + timedelta(milliseconds=1)
        if failure is not None and (status >= 500 or rng.random() < 0.5):
            facts.failure = (CUSTOMERS_SPAN, failure[0])
            done(http)
            return self._emit(b, facts, out)

        # 2. Classify the intent with the small model and a versioned prompt.
        version = "v6"
        if self.planted("prompt_v7_regression", start) and rng.random() < 0.5:
            version = "v7"
        failure = noise("classify_intent")
        if version == "v7" and rng.random() < 0.3:
            failure = VALIDATION_ERROR
        llm_ms = rng.lognormvariate(5.9, 0.3) * (8 if rng.random() < 0.01 else 1)
        prompt, completion = rng.randint(180, 260), rng.randint(3, 8)
        classify = b.span(
            "classify_intent",
            "LLM",
            root,
            t,
            llm_ms,
            _llm_attrs(
                MINI,
                prompt,
                completion,
                question,
                '{"intent": "' + (intent if failure is None else "order-status") + '"}',
                **{
                    "llm.prompt_template.template": "Classify the customer's intent: {question}",
                    "llm.prompt_template.variables": json.dumps({"question": question}),
                    "llm.prompt_template.version": version,
                    "metadata.prompt_template_name": PROMPT_TEMPLATE_NAME,
                },
            ),
            failure=failure,
        )
        t = classify["end_time"] + timedelta(milliseconds=1)
        if failure is not None and (failure is VALIDATION_ERROR or rng.random() < 0.5):
            facts.failure = ("classify_intent", failure[0])
            done(classify)
            return self._emit(b, facts, out)

        # 3. Retrieve from the knowledge base (embed, then search).
        failure = noise("retrieve_kb")
        empty = (
            tool == "search_warranty"
            and self.planted("retrieval_gap", start)
            and rng.random() < 0.75
        )
        planted_gap = empty
        if not empty and rng.random() < 0.003:
            empty = True  # a query nothing in the KB answers: the bot offers a ticket
        retrieve = b.span("retrieve_kb", "RETRIEVER", root, t, 0, {"input.value": question})
        embed_ms = rng.lognormvariate(3.6, 0.3)
        b.span(
            "embed_query",
            "EMBEDDING",
            retrieve,
            t + timedelta(milliseconds=0.5),
            embed_ms,
            {
                "embedding.model_name": EMBEDDING_MODEL,
                "embedding.embeddings.0.embedding.text": question,
            },
        )
        docs = [] if empty else rng.sample(KB, rng.randint(3, 5))
        doc_attrs: dict = {"output.value": json.dumps([d[0] for d in docs])}
        if not docs:
            doc_attrs["retrieval.documents"] = []
        for i, (doc_id, content) in enumerate(docs):
            doc_attrs[f"retrieval.documents.{i}.document.id"] = doc_id
            doc_attrs[f"retrieval.documents.{i}.document.content"] = content
            doc_attrs[f"retrieval.documents.{i}.document.score"] = round(
                0.92 - i * 0.06 - rng.random() * 0.04, 3
            )
        search_ms = embed_ms + 1 + rng.lognormvariate(3.0, 0.4)
        retrieve["duration_ms"] = round(search_ms, 3)
        retrieve["end_time"] = t + timedelta(milliseconds=search_ms)
        retrieve["attributes"].update(doc_attrs)
        if failure is not None:
            fail(retrieve, failure)
        facts.empty_retrieval = empty
        t = retrieve["end_time"] + timedelta(milliseconds=1)
        if failure is not None and rng.random() < 0.5:
            facts.failure = ("retrieve_kb", failure[0])
            done(retrieve)
            return self._emit(b, facts, out)

        # 4. Rerank what came back.
        failure = noise("rerank_docs")
        slow = 5.0 if self.planted("reranker_latency", start) else 1.0
        rerank_ms = rng.lognormvariate(3.7, 0.3) * slow * (0.3 if not docs else 1.0)
        top = docs[:3]
        rerank_attrs = {
            "reranker.model_name": RERANKER_MODEL,
            "reranker.query": question,
            "reranker.top_k": 3,
            "input.value": question,
            "output.value": json.dumps([d[0] for d in top]),
        }
        for i, (doc_id, _content) in enumerate(top):
            rerank_attrs[f"reranker.output_documents.{i}.document.id"] = doc_id
            rerank_attrs[f"reranker.output_documents.{i}.document.score"] = round(0.98 - 0.1 * i, 2)
        rerank = b.span(
            "rerank_docs", "RERANKER", root, t, rerank_ms, rerank_attrs, failure=failure
        )
        facts.reranked = True
        t = rerank["end_time"] + timedelta(milliseconds=1)
        if failure is not None and rng.random() < 0.5:
            facts.failure = ("rerank_docs", failure[0])
            done(rerank)
            return self._emit(b, facts, out)

        # 5. Plan and call the tool; a looping agent calls it again and again.
        model = SONNET if rng.random() < 0.35 else GPT4O
        arguments = json.dumps({"query": question[:48]})
        loops = 1
        if tool == "check_inventory" and self.mode == PLANTED and rng.random() < 0.15:
            loops = rng.randint(8, 12)
        elif rng.random() < 0.01:
            loops = 2  # a harmless retry
        context_tokens = 120 * len(top)
        tool_result = json.dumps({"status": rng.choice(["shipped", "packed", "in_stock"])})
        for call in range(loops):
            failure = noise("plan_step") if call == 0 else None
            if self.planted("llm_rate_limit_burst", start) and rng.random() < 0.8:
                failure = RATE_LIMIT
            elif call == 0 and rng.random() < 0.0005:
                failure = RATE_LIMIT  # the odd 429 outside the burst
            prompt, completion = 600 + context_tokens + 90 * call, rng.randint(15, 40)
            plan_ms = rng.lognormvariate(6.6, 0.3) * (8 if rng.random() < 0.01 else 1)
            if failure is RATE_LIMIT:
                plan_ms = rng.uniform(80, 250)
            plan = b.span(
                "plan_step",
                "LLM",
                root,
                t,
                plan_ms,
                _llm_attrs(
                    model,
                    prompt,
                    completion,
                    question,
                    "",
                    **{
                        "llm.output_messages.0.message.role": "assistant",
                        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": tool,
                        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": (
                            arguments
                        ),
                    },
                ),
                failure=failure,
            )
            t = plan["end_time"] + timedelta(milliseconds=1)
            if failure is not None and (failure is RATE_LIMIT or rng.random() < 0.5):
                facts.failure = ("plan_step", failure[0])
                done(plan)
                return self._emit(b, facts, out)

            failure = noise("tool") if call == 0 else None
            tool_ms = rng.lognormvariate(4.5, 0.5)
            if tool == "lookup_order" and self.mode == PLANTED:
                if rng.random() < (0.35 if region == "eu-west" else 0.004):
                    failure, tool_ms = CONNECT_ERROR, rng.uniform(2, 15)
            if tool == "create_refund" and self.planted("refund_tool_timeout", start):
                if rng.random() < 0.4:
                    failure, tool_ms = READ_TIMEOUT, 30_000 + rng.uniform(0, 40)
            tool_span = b.span(
                tool,
                "TOOL",
                root,
                t,
                tool_ms,
                {
                    "tool.name": tool,
                    "tool.description": f"Calls the shop backend: {tool.replace('_', ' ')}.",
                    "tool.parameters": arguments,
                    "input.value": arguments,
                    **({"output.value": tool_result} if failure is None else {}),
                },
                failure=failure,
            )
            t = tool_span["end_time"] + timedelta(milliseconds=1)
            if failure is not None and failure[0] in (CONNECT_ERROR[0], READ_TIMEOUT[0]):
                facts.failure = (tool, failure[0])
                done(tool_span)
                return self._emit(b, facts, out)
            if failure is not None and rng.random() < 0.5:
                facts.failure = (tool, failure[0])
                done(tool_span)
                return self._emit(b, facts, out)
        facts.loop_calls = loops

        # 6. Compose the answer; judged afterwards.
        failure = noise("compose_answer")
        prompt = 900 + context_tokens + rng.randint(0, 500)
        if model == SONNET and self.planted("token_blowup", start):
            prompt *= rng.uniform(4.5, 6.0)  # the whole order history is pasted in
        prompt = int(prompt)
        completion = rng.randint(60, 220)
        hallucinated = rng.random() < 0.02
        if tier == "free" and self.mode == PLANTED and rng.random() < 0.25:
            hallucinated = True
        if empty:
            hallucinated = (
                False  # a ticket, or (planted) a wrong answer the correctness judge fails
            )
        if empty:
            answer = "I couldn't find that in our help center; I opened a ticket for you."
        elif hallucinated:
            answer = "Your order has shipped and you'll also get a 50% voucher today."
        else:
            answer = f"Thanks for waiting! {(top or docs)[0][1]} Status: {tool_result}."
        if planted_gap:
            answer = "The espresso machine has a lifetime warranty, no questions asked."
        compose_ms = rng.lognormvariate(7.0, 0.35) * (8 if rng.random() < 0.01 else 1)
        compose = b.span(
            "compose_answer",
            "LLM",
            root,
            t,
            compose_ms,
            _llm_attrs(model, prompt, completion, question, answer),
            failure=failure,
        )
        facts.compose_model = model
        if failure is not None:
            facts.failure = ("compose_answer", failure[0])
            done(compose)
            return self._emit(b, facts, out)
        done(answer=answer)

        # 7. The LLM judge, after the reply went out.
        # A noise empty retrieval is answered with a ticket, which is correct: a
        # retrieval gap followed by a failing eval is the planted class alone.
        incorrect = planted_gap or (not empty and (hallucinated or rng.random() < 0.03))
        facts.hallucinated = hallucinated
        facts.correctness_failed = incorrect
        judge_at = root["end_time"] + timedelta(milliseconds=rng.uniform(200, 2000))
        self._judge(
            b,
            root,
            compose,
            judge_at,
            HALLUCINATION_EVAL,
            "hallucinated" if hallucinated else "factual",
            1.0 if hallucinated else 0.0,
            "Mentions a voucher that no retrieved document or tool result supports."
            if hallucinated
            else "Every claim is grounded in the retrieved documents and the tool result.",
        )
        self._judge(
            b,
            root,
            root,
            judge_at + timedelta(milliseconds=rng.uniform(5, 50)),
            CORRECTNESS_EVAL,
            "incorrect" if incorrect else "correct",
            0.0 if incorrect else 1.0,
            "No document was retrieved; the answer invents a warranty policy."
            if planted_gap
            else "The answer does not match the knowledge base."
            if incorrect
            else "The answer resolves the request using the knowledge base.",
        )
        return self._emit(b, facts, out)

    def _judge(self, b, root, target, at, name, label, score, explanation) -> None:
        rng = self.rng
        if self.evals in ("spans", "both"):
            b.span(
                EVAL_SPAN_PREFIX + name,
                "EVALUATOR",
                root,
                at,
                rng.lognormvariate(6.3, 0.3),
                {
                    "input.value": target["attributes"].get("output.value", ""),
                    "output.value": label,
                    "eval.name": name,
                    "eval.label": label,
                    "eval.score": score,
                    "eval.explanation": explanation,
                    "eval.target.trace_id": target["trace_id"],
                    "eval.target.span_id": target["span_id"],
                    "evaluation.name": name,
                    "evaluation.label": label,
                    "evaluation.score": score,
                    "evaluation.explanation": explanation,
                    "evaluation.annotator_kind": "LLM",
                    "metadata.evaluator_model": MINI,
                },
            )
        if self.evals in ("annotations", "both"):
            b.annotations.append(
                {
                    "trace_id": target["trace_id"],
                    "span_id": target["span_id"],
                    "name": name,
                    "label": label,
                    "score": score,
                    "explanation": explanation,
                    "annotator_kind": "LLM",
                    "identifier": "",
                    "provenance": {"evaluator": f"{name}-judge-v3", "model": MINI},
                    "metadata": {},
                }
            )

    def _emit(self, b: _TraceBuilder, facts: _Facts, out: Batch) -> None:
        for c in self.truth.classes:
            if _CLASS_SYMPTOMS[c.key](facts, c):
                c.trace_ids.add(b.trace_id)
        out.traces.append(
            {
                "trace_id": b.trace_id,
                "start_time": min(s["start_time"] for s in b.spans),
                "end_time": max(s["end_time"] for s in b.spans),
            }
        )
        out.spans.extend(b.spans)
        out.annotations.extend(b.annotations)
        self.truth.traces += 1
        self.truth.spans += len(b.spans)
        self.truth.annotations += len(b.annotations)


def generate(
    seed: int = 0,
    now: datetime | None = None,
    *,
    traces: int = 3000,
    mode: str = PLANTED,
    hours: int = 24,
    evals: str = "both",
) -> tuple[Batch, Truth]:
    """All of one generation in memory: (Batch of dicts, Truth). For a few
    thousand traces; `load()` streams larger ones."""
    gen = _Generator(seed, now or timezone.now(), traces, mode, hours, evals)
    everything = Batch()
    for batch in gen.batches():
        everything.traces.extend(batch.traces)
        everything.spans.extend(batch.spans)
        everything.annotations.extend(batch.annotations)
    return everything, gen.truth


# -- storing -------------------------------------------------------------------------

SPAN_COLUMNS = ("id", *SPAN_FIELDS)
_SPAN_TIME_POSITIONS = tuple(
    SPAN_COLUMNS.index(c) for c in ("start_time", "end_time", "created_at")
)
_JSON_FIELDS = ("attributes", "events", "resource")
TRACE_COLUMNS = ("project_id", "trace_id", "start_time", "end_time", "created_at")
ANNOTATION_COLUMNS = (
    "project_id",
    "span_id",
    "name",
    "label",
    "score",
    "explanation",
    "annotator_kind",
    "identifier",
    "provenance",
    "metadata",
    "created_at",
    "updated_at",
)


def load(
    project,
    *,
    seed: int = 0,
    now: datetime | None = None,
    traces: int = 3000,
    mode: str = PLANTED,
    hours: int = 24,
    evals: str = "both",
    fast: bool | None = None,
    index_attributes: bool = True,
) -> Truth:
    """Generate and store one project's traffic; returns the truth.

    `fast` (default: more than 5,000 traces) writes raw rows with explicit
    span ids (executemany on SQLite, COPY on PostgreSQL) instead of
    bulk_create; both store the same values. `index_attributes` (SQLite)
    runs the attribute indexer over the new spans, as the app's indexer
    process would, so `attr=` filters are served by the index.
    """
    now = now or timezone.now()
    gen = _Generator(seed, now, traces, mode, hours, evals)
    fast = traces > 5000 if fast is None else fast
    write = _write_fast if fast else _write_orm
    for batch in gen.batches():
        with transaction.atomic():
            write(project, batch, now)
    if fast and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                f"(SELECT MAX(id) FROM {Span._meta.db_table}))",
                [Span._meta.db_table],
            )
    if index_attributes:
        while index_new_spans(5000):
            pass
    return gen.truth


def _write_orm(project, batch: Batch, now) -> None:
    Trace.objects.bulk_create([Trace(project=project, **t) for t in batch.traces])
    spans = [Span(project=project, **s) for s in batch.spans]
    for span in spans:
        span.index_attributes()
    Span.objects.bulk_create(spans, batch_size=500)
    pk = {(s.trace_id, s.span_id): s.pk for s in spans}
    SpanAnnotation.objects.bulk_create(
        [
            SpanAnnotation(
                project=project,
                span_id=pk[(a["trace_id"], a["span_id"])],
                **{k: v for k, v in a.items() if k not in ("trace_id", "span_id")},
            )
            for a in batch.annotations
        ],
        batch_size=500,
    )


def _write_fast(project, batch: Batch, now) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Span._meta.db_table}")
        next_id = cursor.fetchone()[0] + 1
    with_tokens = tokens_at_ingest()
    span_rows, pk = [], {}
    for s in batch.spans:
        pk[(s["trace_id"], s["span_id"])] = next_id
        row = [next_id, project.pk]
        for name in SPAN_FIELDS[1:]:
            if name == "attribute_tokens":
                row.append(attribute_tokens(s["attributes"]) if with_tokens else "")
            elif name == "created_at":
                row.append(now)
            elif name in _JSON_FIELDS:
                row.append(json.dumps(s[name]))
            else:
                row.append(s[name])
        span_rows.append(row)
        next_id += 1
    trace_rows = [
        (project.pk, t["trace_id"], t["start_time"], t["end_time"], now) for t in batch.traces
    ]
    annotation_rows = [
        (
            project.pk,
            pk[(a["trace_id"], a["span_id"])],
            a["name"],
            a["label"],
            a["score"],
            a["explanation"],
            a["annotator_kind"],
            a["identifier"],
            json.dumps(a["provenance"]),
            json.dumps(a["metadata"]),
            now,
            now,
        )
        for a in batch.annotations
    ]
    _insert(Span._meta.db_table, SPAN_COLUMNS, span_rows, _SPAN_TIME_POSITIONS)
    _insert(Trace._meta.db_table, TRACE_COLUMNS, trace_rows, (2, 3, 4))
    _insert(SpanAnnotation._meta.db_table, ANNOTATION_COLUMNS, annotation_rows, (10, 11))


def _insert(table: str, columns: tuple[str, ...], rows: list, time_positions: tuple) -> None:
    """COPY on PostgreSQL; executemany on the raw sqlite3 connection, times as
    the naive UTC text Django writes (the same path as benches/bench_queries.py)."""
    if not rows:
        return
    names = ", ".join(columns)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    converted = []
    for row in rows:
        row = list(row)
        for i in time_positions:
            row[i] = str(row[i].astimezone(UTC).replace(tzinfo=None))
        converted.append(row)
    connection.ensure_connection()
    placeholders = ", ".join("?" for _ in columns)
    connection.connection.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({placeholders})", converted
    )


# -- scoring -------------------------------------------------------------------------

# Spellings of one dimension: the resource's cloud.region is the span's region.
_DIMENSION_ALIASES = {
    "model": "llm.model_name",
    "model_name": "llm.model_name",
    "cloud.region": "region",
}


def normalise_dimension(dimension: str | None) -> str:
    """'attr:region', 'attributes.region', 'region' -> 'region'; 'model' -> 'llm.model_name'."""
    d = (dimension or "").strip().lower()
    for prefix in ("attr:", "attribute:", "attributes.", "resource:", "resource."):
        if d.startswith(prefix):
            d = d[len(prefix) :]
            break
    return _DIMENSION_ALIASES.get(d, d)


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _matches(issue: dict, c: PlantedClass) -> bool:
    family = str(issue.get("class") or "").strip().lower()
    name = str((issue.get("component") or {}).get("name") or "").strip().lower()
    return family in c.accepts and name in {n.lower() for n in c.names}


def _checks(issue: dict, c: PlantedClass, truth: Truth, onset_tol, burst_tol) -> dict:
    where = issue.get("where") or []
    top = where[0] if where and isinstance(where[0], dict) else {}
    dimension_ok = None
    if c.dimension is not None:
        dimension_ok = (
            normalise_dimension(top.get("dimension")) == normalise_dimension(c.dimension)
            and str(top.get("value", "")).strip().lower() == str(c.value).lower()
        )
    onset_ok = None
    if c.onset is not None:
        since = issue.get("since") or {}
        onset = _parse_time(since.get("onset"))
        tol = burst_tol if c.end is not None else onset_tol
        onset_ok = onset is not None and abs(onset - c.onset) <= tol
        if c.end is not None:
            end = _parse_time(since.get("end"))
            onset_ok = onset_ok and end is not None and abs(end - c.end) <= tol
    evidence = [str(e) for e in issue.get("evidence") or []]
    others = set().union(*(o.trace_ids for o in truth.classes if o is not c))
    in_set = [e for e in evidence if e in c.trace_ids]
    evidence_ok = bool(evidence) and len(in_set) == len(evidence) and not (set(evidence) & others)
    severity = SEVERITY_RANK.get(str(issue.get("severity", "")).lower(), -1)
    how_much = issue.get("how_much") or {}
    return {
        "dimension_ok": dimension_ok,
        "onset_ok": onset_ok,
        "evidence_ok": evidence_ok,
        "evidence_precision": len(in_set) / len(evidence) if evidence else 0.0,
        "severity_ok": severity >= SEVERITY_RANK[c.severity_floor],
        "affected_reported": how_much.get("affected_traces"),
    }


def score(
    issues: list[dict],
    truth: Truth,
    *,
    onset_tolerance: timedelta = timedelta(minutes=15),
    burst_tolerance: timedelta = timedelta(minutes=10),
) -> dict:
    """Score Signal's issues against the truth (rules in the module docstring)."""
    matched: dict[str, list[tuple[int, dict]]] = {c.key: [] for c in truth.classes}
    false_positives, unmatched_low = [], 0
    for index, issue in enumerate(issues):
        candidates = [c for c in truth.classes if _matches(issue, c)]
        if not candidates:
            if SEVERITY_RANK.get(str(issue.get("severity", "")).lower(), 0) >= 1:
                false_positives.append(issue.get("fingerprint") or issue.get("title") or index)
            else:
                unmatched_low += 1
            continue
        evidence = {str(e) for e in issue.get("evidence") or []}
        best = max(candidates, key=lambda c: len(evidence & c.trace_ids))
        matched[best.key].append((index, issue))

    rows, duplicates = [], 0
    for c in truth.classes:
        scored = [
            (index, issue, _checks(issue, c, truth, onset_tolerance, burst_tolerance))
            for index, issue in matched[c.key]
        ]
        row = {
            "key": c.key,
            "class": c.issue_class,
            "found": bool(scored),
            "severity_ok": False,
            "dimension_ok": None if c.dimension is None else False,
            "onset_ok": None if c.onset is None else False,
            "evidence_ok": False,
            "evidence_precision": 0.0,
            "issue": None,
            "duplicates": max(0, len(scored) - 1),
            "affected_traces": len(c.trace_ids),
            "affected_reported": None,
        }
        if scored:

            def merit(entry):
                index, _issue, checks = entry
                right = sum(bool(checks[k]) for k in ("dimension_ok", "onset_ok", "evidence_ok"))
                return (right, checks["severity_ok"], -index)

            _index, issue, checks = max(scored, key=merit)
            row.update(checks, issue=issue.get("fingerprint") or issue.get("title"))
        duplicates += row["duplicates"]
        rows.append(row)

    def accuracy(key):
        applicable = [r for r in rows if r[key] is not None]
        return sum(bool(r[key]) for r in applicable) / len(applicable) if applicable else None

    found = sum(r["found"] for r in rows)
    return {
        "mode": truth.mode,
        "planted": len(rows),
        "found": found,
        "recall": found / len(rows) if rows else None,
        "dimension_accuracy": accuracy("dimension_ok"),
        "onset_accuracy": accuracy("onset_ok"),
        "evidence_accuracy": accuracy("evidence_ok") if rows else None,
        "severity_accuracy": accuracy("severity_ok") if rows else None,
        "false_positives": len(false_positives),
        "false_positive_ids": false_positives,
        "duplicates": duplicates,
        "unmatched_low": unmatched_low,
        "classes": rows,
    }


def perfect_issues(truth: Truth, evidence: int = 10) -> list[dict]:
    """The issue list a perfect Signal would report: one per class, built from
    the truth (its tests use it; a useful example of the schema too)."""
    issues = []
    sets = {c.key: c.trace_ids for c in truth.classes}
    for c in truth.classes:
        others = set().union(*(s for k, s in sets.items() if k != c.key))
        own = sorted(c.trace_ids - others)[:evidence]
        issues.append(
            {
                "fingerprint": f"planted:{c.key}",
                "class": c.issue_class,
                "title": c.description,
                "severity": c.severity_floor,
                "component": dict(c.component),
                "where": (
                    [{"dimension": c.dimension, "value": c.value, "lift": None, "share": None}]
                    if c.dimension
                    else []
                ),
                "since": {
                    "onset": c.onset.isoformat() if c.onset else None,
                    "end": c.end.isoformat() if c.end else None,
                },
                "how_much": {
                    "rate": None,
                    "baseline_rate": None,
                    "affected_traces": len(c.trace_ids),
                    "share_of_traffic": len(c.trace_ids) / truth.traces if truth.traces else 0.0,
                    "cost_usd": None,
                },
                "evidence": own,
                "proposed_fix": "",
            }
        )
    return issues
