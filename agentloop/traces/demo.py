"""Demo traces: a customer-support agent, as OpenInference would record it.

Two generators share one vocabulary:

- `build_demo_traces()` makes a few hundred realistic traces (full attributes,
  errors with exception events, latency outliers, eval labels) for `seed_demo`
  and the tests. `write_demo_traces()` stores them with bulk_create.
- `iter_span_rows()` makes millions of lighter rows, fast, for the query
  benchmark: plain tuples in `SPAN_COLUMNS` order, batched, with explicit ids
  so annotations can point at spans without reading ids back.

Both take a seed and are deterministic (random.Random(seed)); pass `now=` to pin
the time window too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from agentloop.traces.attribute_index import attribute_tokens
from agentloop.traces.ingest import SPAN_FIELDS
from agentloop.traces.models import (
    AnnotatorKind,
    Span,
    SpanAnnotation,
    SpanKind,
    StatusCode,
    Trace,
)

CHAT_MODEL = "gpt-4o"
SMALL_MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"

QUESTIONS = [
    ("Where is my order {order}? It was supposed to arrive on Monday.", "lookup_order"),
    ("I want a refund for order {order}, the blender arrived broken.", "create_refund"),
    ("Can I change the shipping address for order {order}?", "update_shipping_address"),
    ("How long does shipping to Canada take?", "check_shipping_rates"),
    ("My discount code SPRING20 doesn't work at checkout.", "validate_coupon"),
    ("Please cancel my subscription, I'm moving abroad.", "cancel_subscription"),
    ("Do you have the trail running shoes in size 44?", "check_inventory"),
    ("I was charged twice for order {order}.", "lookup_payment"),
    ("How do I reset my password? The email never comes.", "send_password_reset"),
    ("Is the warranty on the espresso machine two years?", "search_warranty"),
]
INTENTS = {
    "lookup_order": "order_status",
    "create_refund": "refund",
    "update_shipping_address": "order_change",
    "check_shipping_rates": "shipping_info",
    "validate_coupon": "billing",
    "cancel_subscription": "account",
    "check_inventory": "product_question",
    "lookup_payment": "billing",
    "send_password_reset": "account",
    "search_warranty": "product_question",
}
KB_ARTICLES = [
    ("kb-101", "Orders ship within 2 business days. Tracking is emailed once the parcel leaves."),
    ("kb-102", "Refunds are issued to the original payment method within 5-7 business days."),
    ("kb-103", "The shipping address can be changed until the order is packed."),
    ("kb-104", "International shipping to Canada takes 5-9 business days."),
    ("kb-105", "Coupons cannot be combined and expire at midnight UTC on the stated date."),
    ("kb-106", "Subscriptions can be cancelled any time from Account > Plan."),
    ("kb-107", "Small appliances carry a 2-year limited warranty from the delivery date."),
    ("kb-108", "Duplicate charges are usually authorisation holds that drop off in 3 days."),
    ("kb-109", "Password reset emails come from no-reply@shop.example; check the spam folder."),
]
SYSTEM_PROMPT = (
    "You are Ava, the support assistant of Shop Example. Answer from the knowledge base "
    "and tool results only. If unsure, offer to open a ticket."
)
TIMEOUT_STACK = """Traceback (most recent call last):
  File "/app/support_bot/tools.py", line 88, in call_tool
    response = client.post(url, json=arguments, timeout=10)
  File "/app/.venv/lib/python3.12/site-packages/httpx/_client.py", line 1144, in post
    return self.request("POST", url, json=json, timeout=timeout)
httpx.ReadTimeout: The read operation timed out
"""
RATE_LIMIT_STACK = """Traceback (most recent call last):
  File "/app/support_bot/llm.py", line 41, in complete
    return client.chat.completions.create(**params)
  File "/app/.venv/lib/python3.12/site-packages/openai/_base_client.py", line 1059, in _request
    raise self._make_status_error_from_response(err.response) from None
openai.RateLimitError: Error code: 429 - Rate limit reached for gpt-4o in organization org-demo
"""


def _hex(rng: random.Random, nbytes: int) -> str:
    return f"{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


@dataclass
class DemoSpan:
    span: Span
    annotations: list[SpanAnnotation] = field(default_factory=list)


@dataclass
class DemoData:
    traces: list[Trace]
    spans: list[DemoSpan]

    @property
    def annotations(self) -> list[SpanAnnotation]:
        return [a for s in self.spans for a in s.annotations]


class _TraceBuilder:
    """Builds one trace's spans in time order, children inside their parent."""

    def __init__(self, rng, project, trace_id, session_id, user_id):
        self.rng = rng
        self.project = project
        self.trace_id = trace_id
        self.session_id = session_id
        self.user_id = user_id
        self.spans: list[DemoSpan] = []

    def span(self, name, kind, parent, start, duration_ms, attributes, *, error=None):
        attributes = {
            "openinference.span.kind": kind,
            "session.id": self.session_id,
            "user.id": self.user_id,
            **attributes,
        }
        end = start + timedelta(milliseconds=duration_ms)
        status, message, events = StatusCode.OK, "", []
        if error is not None:
            exc_type, exc_message, stack = error
            status, message = StatusCode.ERROR, f"{exc_type}: {exc_message}"
            events = [
                {
                    "name": "exception",
                    "time": end.isoformat(),  # as ingest stores OTLP events
                    "attributes": {
                        "exception.type": exc_type,
                        "exception.message": exc_message,
                        "exception.stacktrace": stack,
                        "exception.escaped": "False",
                    },
                }
            ]
        span = Span(
            project=self.project,
            trace_id=self.trace_id,
            span_id=_hex(self.rng, 8),
            parent_span_id=parent.span.span_id if parent else "",
            name=name,
            kind=kind,
            status_code=status,
            status_message=message,
            start_time=start,
            end_time=end,
            duration_ms=round(duration_ms, 3),
            attributes=attributes,
            events=events,
            resource={"service.name": "support-bot", "deployment.environment": "production"},
            model_name=attributes.get("llm.model_name", attributes.get("embedding.model_name", "")),
            prompt_tokens=attributes.get("llm.token_count.prompt"),
            completion_tokens=attributes.get("llm.token_count.completion"),
            total_tokens=attributes.get("llm.token_count.total"),
            session_id=self.session_id,
            user_id=self.user_id,
        )
        demo = DemoSpan(span)
        self.spans.append(demo)
        return demo


def _llm_attributes(model, messages, reply, prompt_tokens, completion_tokens, tool_call=None):
    attrs = {
        "llm.system": "openai",
        "llm.provider": "openai",
        "llm.model_name": model,
        "llm.invocation_parameters": json.dumps({"temperature": 0.2, "max_tokens": 800}),
        "input.value": json.dumps({"messages": [{"role": r, "content": c} for r, c in messages]}),
        "input.mime_type": "application/json",
        "output.value": reply,
        "output.mime_type": "text/plain",
        "llm.token_count.prompt": prompt_tokens,
        "llm.token_count.completion": completion_tokens,
        "llm.token_count.total": prompt_tokens + completion_tokens,
    }
    for i, (role, content) in enumerate(messages):
        attrs[f"llm.input_messages.{i}.message.role"] = role
        attrs[f"llm.input_messages.{i}.message.content"] = content
    attrs["llm.output_messages.0.message.role"] = "assistant"
    attrs["llm.output_messages.0.message.content"] = reply
    if tool_call:
        name, arguments = tool_call
        prefix = "llm.output_messages.0.message.tool_calls.0.tool_call"
        attrs[f"{prefix}.function.name"] = name
        attrs[f"{prefix}.function.arguments"] = json.dumps(arguments)
    return attrs


def _build_trace(rng: random.Random, project, start: datetime, users: list[str]) -> _TraceBuilder:
    user_id = rng.choice(users)
    session_id = f"sess-{user_id[-3:]}-{rng.randrange(40):02d}"
    order = f"A{rng.randrange(10000, 99999)}"
    template, tool_name = rng.choice(QUESTIONS)
    question = template.format(order=order)
    b = _TraceBuilder(rng, project, _hex(rng, 16), session_id, user_id)

    # Children are laid out one after another from `t`; durations are filled
    # in after the children so every parent covers its children.
    root = b.span("support_agent", SpanKind.AGENT, None, start, 0, {"input.value": question})
    t = start + timedelta(milliseconds=rng.uniform(2, 8))

    classify = b.span("classify_intent", SpanKind.CHAIN, root, t, 0, {"input.value": question})
    intent = INTENTS[tool_name]
    llm_ms = rng.lognormvariate(6.0, 0.35)  # ~400 ms
    b.span(
        "ChatCompletion",
        SpanKind.LLM,
        classify,
        t + timedelta(milliseconds=1),
        llm_ms,
        _llm_attributes(
            SMALL_MODEL,
            [
                ("system", "Classify the customer's intent. Answer with one word."),
                ("user", question),
            ],
            intent,
            rng.randint(60, 120),
            rng.randint(2, 6),
        ),
    )
    _finish(classify, llm_ms + 2, {"output.value": intent})
    t += timedelta(milliseconds=llm_ms + 4)

    retrieve = b.span("retrieve_kb", SpanKind.RETRIEVER, root, t, 0, {"input.value": question})
    embed_ms = rng.lognormvariate(4.0, 0.3)  # ~55 ms
    b.span(
        "embed_query",
        SpanKind.EMBEDDING,
        retrieve,
        t + timedelta(milliseconds=1),
        embed_ms,
        {
            "embedding.model_name": EMBEDDING_MODEL,
            "embedding.embeddings.0.embedding.text": question,
            "embedding.embeddings.0.embedding.vector": [
                round(rng.uniform(-1, 1), 4) for _ in range(8)
            ],
        },
    )
    docs = rng.sample(KB_ARTICLES, 3)
    doc_attrs = {"output.value": json.dumps([d[0] for d in docs])}
    for i, (doc_id, content) in enumerate(docs):
        doc_attrs[f"retrieval.documents.{i}.document.id"] = doc_id
        doc_attrs[f"retrieval.documents.{i}.document.content"] = content
        doc_attrs[f"retrieval.documents.{i}.document.score"] = round(
            0.9 - i * 0.07 - rng.random() * 0.05, 3
        )
        doc_attrs[f"retrieval.documents.{i}.document.metadata"] = json.dumps(
            {"source": "helpcenter"}
        )
    retrieve_ms = embed_ms + rng.lognormvariate(3.2, 0.4)  # vector search ~25 ms
    _finish(retrieve, retrieve_ms, doc_attrs)
    t += timedelta(milliseconds=retrieve_ms + 3)

    context = "\n".join(c for _, c in docs)
    messages = [
        ("system", SYSTEM_PROMPT),
        ("system", f"Knowledge base:\n{context}"),
        ("user", question),
    ]
    arguments = {"order_id": order} if "{order}" in template else {"query": question[:60]}

    # Now and then the provider rate-limits the planning call; the app retries.
    if rng.random() < 0.04:
        fail_ms = rng.uniform(150, 400)
        b.span(
            "ChatCompletion",
            SpanKind.LLM,
            root,
            t,
            fail_ms,
            {
                "llm.system": "openai",
                "llm.model_name": CHAT_MODEL,
                "llm.invocation_parameters": json.dumps({"temperature": 0.2, "max_tokens": 800}),
                "input.value": question,
            },
            error=(
                "openai.RateLimitError",
                "Error code: 429 - Rate limit reached for gpt-4o (tokens per min). "
                "Please try again in 1.2s.",
                RATE_LIMIT_STACK,
            ),
        )
        t += timedelta(milliseconds=fail_ms + 1200)

    # Latency outliers: the provider sometimes takes 10-40 s.
    slow = rng.random() < 0.03
    plan_ms = rng.uniform(10_000, 40_000) if slow else rng.lognormvariate(6.9, 0.3)  # ~1 s
    b.span(
        "ChatCompletion",
        SpanKind.LLM,
        root,
        t,
        plan_ms,
        _llm_attributes(
            CHAT_MODEL,
            messages,
            "",
            rng.randint(450, 900),
            rng.randint(15, 40),
            tool_call=(tool_name, arguments),
        ),
    )
    t += timedelta(milliseconds=plan_ms + 2)

    tool_attrs = {
        "tool.name": tool_name,
        "tool.description": f"Calls the shop backend: {tool_name.replace('_', ' ')}.",
        "tool.parameters": json.dumps(arguments),
        "input.value": json.dumps(arguments),
    }
    timed_out = rng.random() < 0.05
    if timed_out:
        tool_ms = 10_000 + rng.uniform(0, 30)
        b.span(
            tool_name,
            SpanKind.TOOL,
            root,
            t,
            tool_ms,
            tool_attrs,
            error=("httpx.ReadTimeout", "The read operation timed out", TIMEOUT_STACK),
        )
        tool_result = "The order system did not answer in time."
    else:
        tool_ms = rng.lognormvariate(4.6, 0.5)  # ~100 ms
        tool_result = json.dumps(
            {"order_id": order, "status": rng.choice(["shipped", "packed", "delivered"])}
        )
        b.span(
            tool_name, SpanKind.TOOL, root, t, tool_ms, {**tool_attrs, "output.value": tool_result}
        )
    t += timedelta(milliseconds=tool_ms + 2)

    answer_ms = rng.lognormvariate(7.3, 0.35)  # ~1.5 s
    hallucinated = rng.random() < 0.15
    if timed_out:
        ticket = rng.randrange(10000, 99999)
        answer = f"Sorry, I can't reach the order system right now. I opened ticket #{ticket}."
    elif hallucinated:
        answer = "Your order has shipped, and you'll get a full refund plus a 50% voucher today."
    else:
        answer = f"Thanks for waiting! {docs[0][1]} I checked your request: {tool_result}."
    respond = b.span("compose_answer", SpanKind.CHAIN, root, t, 0, {"input.value": tool_result})
    final = b.span(
        "ChatCompletion",
        SpanKind.LLM,
        respond,
        t + timedelta(milliseconds=1),
        answer_ms,
        _llm_attributes(
            CHAT_MODEL,
            messages + [("tool", tool_result)],
            answer,
            rng.randint(700, 1400),
            rng.randint(40, 180),
        ),
    )
    _finish(respond, answer_ms + 2, {"output.value": answer})
    t += timedelta(milliseconds=answer_ms + 3)

    # An output guardrail: cheap, and almost always passes.
    guard_ms = rng.lognormvariate(3.0, 0.3)
    b.span(
        "moderate_output",
        SpanKind.CHAIN,
        root,
        t,
        guard_ms,
        {"input.value": answer, "output.value": json.dumps({"flagged": False})},
    )
    t += timedelta(milliseconds=guard_ms + 1)

    total_ms = (t - start).total_seconds() * 1000
    tool_failed_hard = timed_out and rng.random() < 0.5
    _finish(root, total_ms, {"output.value": answer})
    if tool_failed_hard:
        root.span.status_code = StatusCode.ERROR
        root.span.status_message = "Tool call failed: httpx.ReadTimeout"

    _annotate(rng, project, root, final, hallucinated=hallucinated, timed_out=timed_out)
    return b


def _finish(demo: DemoSpan, duration_ms: float, attributes: dict) -> None:
    span = demo.span
    span.duration_ms = round(duration_ms, 3)
    span.end_time = span.start_time + timedelta(milliseconds=duration_ms)
    span.attributes.update(attributes)


def _annotate(rng, project, root: DemoSpan, final: DemoSpan, *, hallucinated, timed_out) -> None:
    wrong = hallucinated or timed_out
    if rng.random() < 0.5:
        root.annotations.append(
            SpanAnnotation(
                project=project,
                span=root.span,
                name="correctness",
                label="incorrect" if wrong else "correct",
                score=0.0 if wrong else 1.0,
                explanation=(
                    "The answer promises things the tools and knowledge base did not return."
                    if hallucinated
                    else "The answer did not resolve the request: the tool timed out."
                    if timed_out
                    else "The answer is supported by the retrieved article and the tool result."
                ),
                annotator_kind=AnnotatorKind.LLM,
                provenance={"evaluator": "correctness-v2", "model": SMALL_MODEL},
            )
        )
    if rng.random() < 0.4:
        final.annotations.append(
            SpanAnnotation(
                project=project,
                span=final.span,
                name="hallucination",
                label="hallucinated" if hallucinated else "factual",
                score=1.0 if hallucinated else 0.0,
                explanation=(
                    "Mentions a 50% voucher that appears in no retrieved document."
                    if hallucinated
                    else "Every claim is grounded in the context."
                ),
                annotator_kind=AnnotatorKind.LLM,
                provenance={"evaluator": "hallucination-v1", "model": SMALL_MODEL},
            )
        )
    if rng.random() < 0.15:
        good = not wrong and rng.random() < 0.85
        root.annotations.append(
            SpanAnnotation(
                project=project,
                span=root.span,
                name="user_feedback",
                label="thumbs_up" if good else "thumbs_down",
                score=1.0 if good else 0.0,
                explanation="" if good else "Customer said the answer didn't help.",
                annotator_kind=AnnotatorKind.HUMAN,
                provenance={"source": "chat widget"},
            )
        )


def build_demo_traces(
    project, traces: int = 200, seed: int = 0, now: datetime | None = None
) -> DemoData:
    """Unsaved Trace, Span and SpanAnnotation objects spread over the 48 hours before `now`."""
    rng = random.Random(seed)
    now = now or timezone.now()
    users = [f"user-{i:03d}" for i in range(60)]
    starts = sorted(now - timedelta(seconds=rng.uniform(60, 48 * 3600)) for _ in range(traces))
    data = DemoData(traces=[], spans=[])
    for start in starts:
        built = _build_trace(rng, project, start, users)
        spans = [s.span for s in built.spans]
        data.traces.append(
            Trace(
                project=project,
                trace_id=built.trace_id,
                start_time=min(s.start_time for s in spans),
                end_time=max(s.end_time for s in spans),
            )
        )
        data.spans.extend(built.spans)
    return data


@transaction.atomic
def write_demo_traces(
    project, traces: int = 200, seed: int = 0, now: datetime | None = None
) -> DemoData:
    data = build_demo_traces(project, traces=traces, seed=seed, now=now)
    Trace.objects.bulk_create(data.traces, batch_size=500)
    for demo_span in data.spans:
        demo_span.span.index_attributes()
    Span.objects.bulk_create([s.span for s in data.spans], batch_size=500)
    SpanAnnotation.objects.bulk_create(data.annotations, batch_size=500)
    return data


# --- Bulk rows for benchmarks -------------------------------------------------

# The columns ingest writes, plus explicit ids so annotations can point at spans.
SPAN_COLUMNS = ("id", *SPAN_FIELDS)
# Positions of the datetimes in those rows, which each database adapts its way.
SPAN_TIME_COLUMNS = tuple(SPAN_COLUMNS.index(c) for c in ("start_time", "end_time", "created_at"))
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

# A few hundred distinct span names, as a real app accumulates them.
_TOOL_NAMES = [
    f"{verb}_{noun}"
    for verb in (
        "lookup",
        "create",
        "update",
        "cancel",
        "search",
        "validate",
        "send",
        "check",
        "list",
        "get",
        "refund",
        "escalate",
    )
    for noun in (
        "order",
        "refund",
        "shipping",
        "coupon",
        "subscription",
        "inventory",
        "payment",
        "password",
        "warranty",
        "ticket",
        "invoice",
        "address",
        "account",
        "return",
        "review",
        "store",
        "catalog",
        "loyalty",
        "gift_card",
        "delivery",
    )
]  # 240 tools
_CHAIN_NAMES = [
    f"{step}_{n}"
    for step in ("classify_intent", "rewrite_query", "guardrail", "summarise")
    for n in range(10)
]
_AGENT_NAMES = ["support_agent", "billing_agent", "returns_agent", "sales_agent", "triage_agent"]
_RETRIEVER_NAMES = ["retrieve_kb", "retrieve_orders", "retrieve_policies", "retrieve_faq"]
_EMBEDDING_NAMES = ["embed_query", "embed_document"]
_LLM_NAMES = ["ChatCompletion", "ChatCompletion.stream", "Completion", "AnthropicMessages"]
_MODELS = [CHAT_MODEL, SMALL_MODEL, "claude-sonnet-4", "claude-haiku-4"]
_ANNOTATIONS = [
    ("correctness", ("correct", "incorrect"), "LLM"),
    ("hallucination", ("factual", "hallucinated"), "LLM"),
    ("user_feedback", ("thumbs_up", "thumbs_down"), "HUMAN"),
    ("toxicity", ("non_toxic", "toxic"), "LLM"),
]
BENCH_TIERS = ("free", "pro", "enterprise")


@dataclass
class RowBatch:
    traces: list[tuple]
    spans: list[tuple]
    annotations: list[tuple]


def iter_span_rows(
    project_id: int,
    spans: int,
    *,
    seed: int = 0,
    now: datetime | None = None,
    days: int = 30,
    first_id: int = 1,
    batch_traces: int = 2000,
    error_rate: float = 0.03,
    annotation_rate: float = 0.05,
    with_tokens: bool = True,
) -> Iterator[RowBatch]:
    """Yield batches of raw rows (plain str, int, float, datetime: no enums, which
    database drivers adapt differently): ~10 spans per trace, kinds mixed, ~3% errors,
    ~290 distinct names, annotations on ~5% of spans, over `days` days before `now`.

    Span rows carry explicit ids from `first_id` (the caller resets the id
    sequence afterwards); JSON columns are already serialised to text and times
    are aware datetimes, so the caller only adapts them to its database.
    `with_tokens=False` leaves attribute_tokens empty, as ingest does on SQLite.
    """
    rng = random.Random(seed)
    now = now or timezone.now()
    span_total, span_pk = 0, first_id
    window = days * 86400.0
    # Attribute JSON is built from a small set of templates: the benchmark is
    # about query plans, not about serialising a million distinct dicts.
    resource = json.dumps({"service.name": "support-bot", "deployment.environment": "production"})
    no_events = "[]"
    error_events = json.dumps(
        [
            {
                "name": "exception",
                "attributes": {
                    "exception.type": "httpx.ReadTimeout",
                    "exception.message": "The read operation timed out",
                },
            }
        ]
    )
    while span_total < spans:
        batch = RowBatch([], [], [])
        for _ in range(batch_traces):
            if span_total >= spans:
                break
            trace_id = f"{rng.getrandbits(128):032x}"
            # Traces arrive roughly in time order, as they would from ingest, so
            # the table's physical order follows time like a real one's does.
            ago = window * (1 - span_total / spans) + rng.uniform(-30, 30)
            start = now - timedelta(seconds=max(0.0, ago))
            user = f"user-{rng.randrange(5000):04d}"
            session = f"sess-{rng.getrandbits(40):010x}"
            tier = BENCH_TIERS[rng.randrange(3) if rng.random() < 0.9 else 2]
            n = min(max(3, int(rng.gauss(10, 3))), spans - span_total)
            root_id = f"{rng.getrandbits(64):016x}"
            t = start
            trace_end = start
            for i in range(n):
                if i == 0:
                    kind, name, parent = "AGENT", rng.choice(_AGENT_NAMES), ""
                    span_id = root_id
                else:
                    span_id = f"{rng.getrandbits(64):016x}"
                    parent = root_id
                    r = rng.random()
                    if r < 0.35:
                        kind, name = "LLM", rng.choice(_LLM_NAMES)
                    elif r < 0.60:
                        kind, name = "TOOL", rng.choice(_TOOL_NAMES)
                    elif r < 0.75:
                        kind, name = "CHAIN", rng.choice(_CHAIN_NAMES)
                    elif r < 0.90:
                        kind, name = "RETRIEVER", rng.choice(_RETRIEVER_NAMES)
                    else:
                        kind, name = "EMBEDDING", rng.choice(_EMBEDDING_NAMES)
                duration = rng.lognormvariate(5.5, 1.0)
                span_start = t
                span_end = span_start + timedelta(milliseconds=duration)
                t = span_end
                trace_end = max(trace_end, span_end)
                error = rng.random() < error_rate
                attrs = {
                    "openinference.span.kind": kind,
                    "session.id": session,
                    "user.id": user,
                    "metadata.customer_tier": tier,
                }
                model, prompt, completion, total = "", None, None, None
                if kind == "LLM":
                    model = rng.choice(_MODELS)
                    prompt, completion = rng.randint(100, 3000), rng.randint(10, 600)
                    total = prompt + completion
                    attrs.update(
                        {
                            "llm.model_name": model,
                            "llm.token_count.prompt": prompt,
                            "llm.token_count.completion": completion,
                            "llm.token_count.total": total,
                            "input.value": "Where is my order?",
                            "output.value": "It shipped yesterday.",
                        }
                    )
                elif kind == "TOOL":
                    attrs.update({"tool.name": name, "tool.parameters": '{"order_id": "A12345"}'})
                span_total += 1
                batch.spans.append(
                    (
                        span_pk,
                        project_id,
                        trace_id,
                        span_id,
                        parent,
                        name,
                        kind,
                        "ERROR" if error else "OK",
                        "httpx.ReadTimeout: The read operation timed out" if error else "",
                        span_start,
                        span_end,
                        round(duration, 3),
                        json.dumps(attrs),
                        error_events if error else no_events,
                        resource,
                        model,
                        prompt,
                        completion,
                        total,
                        session,
                        user,
                        attribute_tokens(attrs) if with_tokens else "",
                        now,
                    )
                )
                if rng.random() < annotation_rate:
                    aname, labels, annotator = _ANNOTATIONS[rng.randrange(len(_ANNOTATIONS))]
                    good = rng.random() < 0.8
                    batch.annotations.append(
                        (
                            project_id,
                            span_pk,
                            aname,
                            labels[0 if good else 1],
                            1.0 if good else 0.0,
                            "",
                            annotator,
                            "",
                            "{}",
                            "{}",
                            now,
                            now,
                        )
                    )
                span_pk += 1
            batch.traces.append((project_id, trace_id, start, trace_end, now))
        yield batch
