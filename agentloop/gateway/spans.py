"""Each model call through the gateway becomes an OpenInference LLM span in the run's trace.

A streamed answer is parsed as it passes through (`StreamCollector.feed`, one
chunk at a time, never the whole body) for the model, token usage, text and
stop reason; a JSON answer is read whole (`collect_message`). `record_call`
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
from agentloop.runs.redaction import redact_text
from agentloop.runs.worker_trace import root_span_id, trace_id_for
from agentloop.traces.models import Span, SpanKind, StatusCode, Trace

# Claude Code resends the whole conversation on every call: cap what one span keeps.
MAX_VALUE_CHARS = 100_000
# Request fields that are the call's parameters (the rest is content).
CONTENT_FIELDS = ("messages", "system", "tools", "metadata")


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
        price = price_of(self.model or self.request.get("model") or "")
        prompt = (
            self.input_tokens * price.input
            + self.cache_creation_tokens * price.cache_write
            + self.cache_read_tokens * price.cache_read
        ) / 1_000_000
        completion = self.output_tokens * price.output / 1_000_000
        return prompt, completion

    def take_usage(self, usage: dict | None) -> None:
        """Anthropic usage objects; a later one (message_delta) updates the earlier."""
        if not isinstance(usage, dict):
            return
        for attr, name in (
            ("input_tokens", "input_tokens"),
            ("cache_creation_tokens", "cache_creation_input_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
            ("output_tokens", "output_tokens"),
        ):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(self, attr, value)


def collect_message(record: CallRecord, message: dict) -> None:
    """A non-streamed answer (a JSON message) into the record."""
    record.model = message.get("model") or record.model
    record.take_usage(message.get("usage"))
    record.stop_reason = message.get("stop_reason") or ""
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            record.text_parts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            record.tool_calls.append({"name": block.get("name"), "input": block.get("input")})


def error_message(body: bytes) -> str:
    """The message of an Anthropic error body, or the start of whatever it is."""
    try:
        data = json.loads(body)
        error = data.get("error") or {}
        return f"{error.get('type', 'error')}: {error.get('message', '')}".strip()
    except (ValueError, AttributeError):
        return body[:500].decode("utf-8", errors="replace")


class StreamCollector:
    """Reads Anthropic SSE incrementally into a CallRecord; the bytes pass through unchanged."""

    def __init__(self, record: CallRecord):
        self.record = record
        self._buffer = b""
        self._data: list[bytes] = []
        self._tool_json: dict[int, list[str]] = {}
        self._tool_names: dict[int, str] = {}

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                return
            line = self._buffer[:end].rstrip(b"\r")
            self._buffer = self._buffer[end + 1 :]
            if not line:
                self._dispatch()
            elif line.startswith(b"data:"):
                self._data.append(line[5:].lstrip())

    def finish(self) -> None:
        if self._buffer:
            self.feed(b"\n")
        self._dispatch()
        for index, parts in sorted(self._tool_json.items()):
            try:
                tool_input = json.loads("".join(parts) or "{}")
            except ValueError:
                tool_input = "".join(parts)
            name = self._tool_names.get(index)
            self.record.tool_calls.append({"name": name, "input": tool_input})
        self._tool_json.clear()

    def _dispatch(self) -> None:
        if not self._data:
            return
        raw = b"\n".join(self._data)
        self._data = []
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if isinstance(event, dict):
            self._event(event)

    def _event(self, event: dict) -> None:
        record = self.record
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            record.model = message.get("model") or record.model
            record.take_usage(message.get("usage"))
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = event.get("index", 0)
                self._tool_names[index] = block.get("name") or ""
                self._tool_json[index] = []
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                record.text_parts.append(delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                self._tool_json.setdefault(event.get("index", 0), []).append(
                    delta.get("partial_json") or ""
                )
        elif kind == "message_delta":
            record.stop_reason = (event.get("delta") or {}).get("stop_reason") or record.stop_reason
            record.take_usage(event.get("usage"))
        elif kind == "error":
            error = event.get("error") or {}
            record.error = f"{error.get('type', 'error')}: {error.get('message', '')}"


def _clip(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return text[:MAX_VALUE_CHARS] + f"\n[… {len(text) - MAX_VALUE_CHARS} more characters cut]"


def span_attributes(record: CallRecord, secrets_: list) -> dict:
    prompt_cost, completion_cost = record.cost()
    request = record.request
    parameters = {k: v for k, v in request.items() if k not in CONTENT_FIELDS}
    input_value = {"messages": request.get("messages") or []}
    if request.get("system"):
        input_value["system"] = request["system"]
    output_value = record.output_text
    if record.tool_calls:
        calls = "\n".join(
            f"[tool_use {call['name']}] {json.dumps(call['input'])}" for call in record.tool_calls
        )
        output_value = f"{output_value}\n{calls}" if output_value else calls
    attributes = {
        "openinference.span.kind": SpanKind.LLM,
        "llm.system": "anthropic",
        "llm.provider": "anthropic",
        "llm.model_name": record.model or request.get("model") or "",
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
    if request.get("tools"):
        attributes["llm.tools.count"] = len(request["tools"])
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
        name=f"anthropic.messages {record.model or record.request.get('model') or ''}".strip(),
        kind=SpanKind.LLM,
        status_code=StatusCode.ERROR if error else StatusCode.OK,
        status_message=error[:2000],
        start_time=record.started_at,
        end_time=end,
        duration_ms=(end - record.started_at).total_seconds() * 1000,
        attributes=span_attributes(record, secrets_),
        resource={"service.name": "agentloop-llm-gateway"},
        model_name=(record.model or record.request.get("model") or "")[:200],
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
