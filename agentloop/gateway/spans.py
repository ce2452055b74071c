"""Each model call through the gateway becomes an OpenInference LLM span in the run's trace.

A streamed answer is parsed as it passes through (the provider's reader,
agentloop/gateway/readers.py, one chunk at a time, never the whole body) for
the model, token usage, text and stop reason; a JSON answer is read whole. `record_call`
writes the span into the space's worker project under the run's root span
(agentloop.runs.worker_trace), so it shows up in the run's "View traces".

Nothing secret is stored: the request headers (run token) are never recorded,
the real key is never in the request body, and the recorded input and output
go through the run's redaction (run token and skill secrets).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models.functions import Greatest, Least

from agentloop.gateway.pricing import price_of
from agentloop.gateway.providers import PROVIDERS
from agentloop.runs.redaction import redact_text
from agentloop.runs.worker_trace import root_span_id, trace_id_for
from agentloop.traces.models import Span, SpanKind, StatusCode, Trace

# The CLIs resend the whole conversation on every call: cap what one span keeps.
MAX_VALUE_CHARS = 100_000
# Request fields that are never parameters (the content, and the tools' definitions).
NOT_PARAMETERS = ("tools", "metadata")


@dataclass
class CallRecord:
    """What one call through the gateway did, filled in as it happens."""

    request: dict
    started_at: datetime
    ended_at: datetime | None = None
    model: str = ""
    input_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    text_parts: list[str] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    stop_reason: str = ""
    http_status: int = 0
    error: str = ""  # set when the call failed: upstream error, stream error, disconnect
    session_id: str = ""
    provider: str = "anthropic"
    operation: str = "anthropic.messages"  # the span's name, before the model
    route_model: str = ""  # the model named in the URL (Gemini)

    @property
    def prompt_tokens(self) -> int:
        # Cached input is input: this is what the run is charged and the CLI reports.
        return self.input_tokens + self.cache_creation_tokens + self.cache_read_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def output_text(self) -> str:
        return "".join(self.text_parts)

    def cost(self) -> tuple[Decimal, Decimal]:
        """(prompt cost, completion cost) in USD."""
        price = price_of(model_of(self))
        prompt = (
            self.input_tokens * price.input
            + self.cache_creation_tokens * price.cache_write
            + self.cache_read_tokens * price.cache_read
        ) / 1_000_000
        completion = self.output_tokens * price.output / 1_000_000
        return prompt, completion


def model_of(record: CallRecord) -> str:
    return record.model or record.route_model or record.request.get("model") or ""


def _clip(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return text[:MAX_VALUE_CHARS] + f"\n[… {len(text) - MAX_VALUE_CHARS} more characters cut]"


def span_attributes(record: CallRecord, secrets_: list) -> dict:
    prompt_cost, completion_cost = record.cost()
    request = record.request
    provider = PROVIDERS[record.provider]
    skipped = (*provider.content_fields, *NOT_PARAMETERS)
    parameters = {k: v for k, v in request.items() if k not in skipped}
    input_value = provider.input_value(request)
    output_value = record.output_text
    if record.tool_calls:
        calls = "\n".join(
            f"[tool_use {call['name']}] {json.dumps(call['input'])}" for call in record.tool_calls
        )
        output_value = f"{output_value}\n{calls}" if output_value else calls
    attributes = {
        "openinference.span.kind": SpanKind.LLM,
        "llm.system": record.provider,
        "llm.provider": record.provider,
        "llm.model_name": model_of(record),
        "llm.invocation_parameters": json.dumps(parameters, sort_keys=True),
        "llm.token_count.prompt": record.prompt_tokens,
        "llm.token_count.completion": record.output_tokens,
        "llm.token_count.total": record.total_tokens,
        "llm.token_count.prompt_details.cache_write": record.cache_creation_tokens,
        "llm.token_count.prompt_details.cache_read": record.cache_read_tokens,
        "llm.cost.prompt": float(prompt_cost),
        "llm.cost.completion": float(completion_cost),
        "llm.cost.total": float(prompt_cost + completion_cost),
        "input.value": _clip(redact_text(json.dumps(input_value), secrets_)),
        "input.mime_type": "application/json",
        "output.value": _clip(redact_text(output_value, secrets_)),
        "output.mime_type": "text/plain",
        "llm.stop_reason": record.stop_reason,
        "http.status_code": record.http_status,
        "agentloop.gateway": True,
    }
    if not price_of(attributes["llm.model_name"]).known:
        attributes["llm.cost.estimated"] = True
    if provider.tools_count(request):
        attributes["llm.tools.count"] = provider.tools_count(request)
    if record.session_id:
        attributes["session.id"] = record.session_id
    return attributes


def record_call(run, record: CallRecord, secrets_: list) -> Span:
    """Store the call as an LLM span in the run's trace (sync: call via sync_to_async)."""
    project = run.space.worker_project()
    trace_id = trace_id_for(run)
    end = record.ended_at or record.started_at
    error = redact_text(record.error, secrets_) if record.error else ""
    span = Span.objects.create(
        project=project,
        trace_id=trace_id,
        span_id=secrets.token_hex(8),
        parent_span_id=root_span_id(run),
        name=f"{record.operation} {model_of(record)}".strip(),
        kind=SpanKind.LLM,
        status_code=StatusCode.ERROR if error else StatusCode.OK,
        status_message=error[:2000],
        start_time=record.started_at,
        end_time=end,
        duration_ms=(end - record.started_at).total_seconds() * 1000,
        attributes=span_attributes(record, secrets_),
        resource={"service.name": "agentloop-llm-gateway"},
        model_name=model_of(record)[:200],
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.output_tokens,
        total_tokens=record.total_tokens,
        session_id=record.session_id[:200],
    )
    trace, created = Trace.objects.get_or_create(
        project=project,
        trace_id=trace_id,
        defaults={"start_time": record.started_at, "end_time": end},
    )
    if not created:
        Trace.objects.filter(pk=trace.pk).update(
            start_time=Least("start_time", record.started_at),
            end_time=Greatest("end_time", end),
        )
    return span
