"""Reading a model's answer as it passes through: model, usage, text, tool calls, stop reason.

One Reader per API. A streamed answer is fed chunk by chunk (`feed`, never the
whole body; the bytes pass through unchanged), a JSON answer is read whole
(`read_json`). Each fills a CallRecord (agentloop/gateway/spans.py).

Usage, as each API counts it, into the record's Anthropic-style fields
(input excludes cached input; prompt_tokens adds them up again):
- Anthropic: input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens;
- OpenAI Responses: input_tokens (input_tokens_details.cached_tokens included), output_tokens;
- OpenAI Chat: prompt_tokens (prompt_tokens_details.cached_tokens), completion_tokens;
- Gemini: promptTokenCount (cachedContentTokenCount included), candidatesTokenCount
  + thoughtsTokenCount (thinking is billed as output). Each chunk's usageMetadata
  is the total so far: the last one wins.
"""

from __future__ import annotations

import json


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def error_message(body: bytes) -> str:
    """The message of an error body in any of the three shapes, or the start of whatever it is."""
    try:
        data = json.loads(body)
        error = data.get("error") or {}
        if isinstance(error, str):
            return error
        kind = error.get("type") or error.get("status") or "error"
        return f"{kind}: {error.get('message', '')}".strip()
    except (ValueError, AttributeError):
        return body[:500].decode("utf-8", errors="replace")


class Reader:
    """Splits SSE into events (data lines joined), hands each JSON event to `event`."""

    def __init__(self):
        self._buffer = b""
        self._data: list[bytes] = []
        self.record = None

    def start(self, record) -> Reader:
        self.record = record
        return self

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
        self.done()

    def _dispatch(self) -> None:
        if not self._data:
            return
        raw = b"\n".join(self._data)
        self._data = []
        if raw == b"[DONE]":
            return
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if isinstance(event, dict):
            self.event(event)

    def event(self, event: dict) -> None:
        raise NotImplementedError

    def done(self) -> None:
        """The stream ended: settle what was gathered in pieces."""

    def read_json(self, answer) -> None:
        raise NotImplementedError


class AnthropicReader(Reader):
    def __init__(self):
        super().__init__()
        self._tool_json: dict[int, list[str]] = {}
        self._tool_names: dict[int, str] = {}

    def usage(self, usage) -> None:
        """Anthropic usage objects; a later one (message_delta) updates the earlier."""
        if not isinstance(usage, dict):
            return
        for attr, name in (
            ("input_tokens", "input_tokens"),
            ("cache_creation_tokens", "cache_creation_input_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
            ("output_tokens", "output_tokens"),
        ):
            value = _count(usage.get(name))
            if value is not None:
                setattr(self.record, attr, value)

    def read_json(self, message) -> None:
        record = self.record
        record.model = message.get("model") or record.model
        self.usage(message.get("usage"))
        record.stop_reason = message.get("stop_reason") or ""
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                record.text_parts.append(block.get("text") or "")
            elif block.get("type") == "tool_use":
                record.tool_calls.append({"name": block.get("name"), "input": block.get("input")})

    def event(self, event):
        record = self.record
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            record.model = message.get("model") or record.model
            self.usage(message.get("usage"))
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
            self.usage(event.get("usage"))
        elif kind == "error":
            error = event.get("error") or {}
            record.error = f"{error.get('type', 'error')}: {error.get('message', '')}"

    def done(self):
        for index, parts in sorted(self._tool_json.items()):
            self.record.tool_calls.append(
                {"name": self._tool_names.get(index), "input": _json_or_text("".join(parts))}
            )
        self._tool_json.clear()


def _json_or_text(text: str):
    try:
        return json.loads(text or "{}")
    except ValueError:
        return text


def _split_cached(record, total, cached) -> None:
    total = _count(total)
    if total is None:
        return
    cached = min(_count(cached) or 0, total)
    record.input_tokens = total - cached
    record.cache_read_tokens = cached


class ResponsesReader(Reader):
    """OpenAI Responses: `response.*` events; the completed response carries usage."""

    def _response(self, response: dict) -> None:
        record = self.record
        record.model = response.get("model") or record.model
        usage = response.get("usage")
        if isinstance(usage, dict):
            details = usage.get("input_tokens_details") or {}
            _split_cached(record, usage.get("input_tokens"), details.get("cached_tokens"))
            record.output_tokens = _count(usage.get("output_tokens")) or 0
        status = response.get("status")
        incomplete = (response.get("incomplete_details") or {}).get("reason")
        record.stop_reason = incomplete or status or record.stop_reason
        error = response.get("error")
        if isinstance(error, dict) and error.get("message"):
            record.error = f"{error.get('code') or 'error'}: {error['message']}"

    def _item(self, item: dict, *, streamed_text: bool) -> None:
        kind = item.get("type")
        if kind == "function_call":
            self.record.tool_calls.append(
                {"name": item.get("name"), "input": _json_or_text(item.get("arguments") or "")}
            )
        elif kind in ("local_shell_call", "custom_tool_call"):
            self.record.tool_calls.append(
                {"name": item.get("name") or kind, "input": item.get("action") or item.get("input")}
            )
        elif kind == "message" and not streamed_text:
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    self.record.text_parts.append(part.get("text") or "")

    def read_json(self, answer):
        self._response(answer)
        for item in answer.get("output") or []:
            if isinstance(item, dict):
                self._item(item, streamed_text=False)

    def event(self, event):
        kind = event.get("type") or ""
        if kind == "response.output_text.delta":
            self.record.text_parts.append(event.get("delta") or "")
        elif kind == "response.output_item.done":
            self._item(event.get("item") or {}, streamed_text=True)
        elif kind in (
            "response.created",
            "response.completed",
            "response.incomplete",
            "response.failed",
        ):
            self._response(event.get("response") or {})
        elif kind == "error":
            self.record.error = f"{event.get('code') or 'error'}: {event.get('message', '')}"


class ChatReader(Reader):
    """OpenAI Chat Completions: `chat.completion.chunk`s, then `[DONE]`."""

    def __init__(self):
        super().__init__()
        self._tools: dict[int, dict] = {}

    def _usage(self, usage) -> None:
        if isinstance(usage, dict):
            details = usage.get("prompt_tokens_details") or {}
            _split_cached(self.record, usage.get("prompt_tokens"), details.get("cached_tokens"))
            self.record.output_tokens = _count(usage.get("completion_tokens")) or 0

    def read_json(self, answer):
        record = self.record
        record.model = answer.get("model") or record.model
        self._usage(answer.get("usage"))
        for choice in answer.get("choices") or []:
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                record.text_parts.append(message["content"])
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                record.tool_calls.append(
                    {
                        "name": function.get("name"),
                        "input": _json_or_text(function.get("arguments") or ""),
                    }
                )
            record.stop_reason = choice.get("finish_reason") or record.stop_reason

    def event(self, event):
        record = self.record
        record.model = event.get("model") or record.model
        self._usage(event.get("usage"))
        if event.get("error"):
            record.error = error_message(json.dumps(event).encode())
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                record.text_parts.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = self._tools.setdefault(call.get("index", 0), {"name": "", "arguments": []})
                function = call.get("function") or {}
                slot["name"] = function.get("name") or slot["name"]
                slot["arguments"].append(function.get("arguments") or "")
            record.stop_reason = choice.get("finish_reason") or record.stop_reason

    def done(self):
        for _, slot in sorted(self._tools.items()):
            self.record.tool_calls.append(
                {"name": slot["name"], "input": _json_or_text("".join(slot["arguments"]))}
            )
        self._tools.clear()


class GeminiReader(Reader):
    """Gemini GenerateContentResponse chunks (SSE with ?alt=sse) or one JSON answer."""

    def read_json(self, answer):
        if isinstance(answer, list):  # streamGenerateContent without alt=sse: an array
            for chunk in answer:
                if isinstance(chunk, dict):
                    self.event(chunk)
            return
        self.event(answer)

    def event(self, event):
        record = self.record
        record.model = event.get("modelVersion") or record.model
        usage = event.get("usageMetadata")
        if isinstance(usage, dict):
            _split_cached(
                record, usage.get("promptTokenCount"), usage.get("cachedContentTokenCount")
            )
            record.output_tokens = (_count(usage.get("candidatesTokenCount")) or 0) + (
                _count(usage.get("thoughtsTokenCount")) or 0
            )
        if event.get("error"):
            record.error = error_message(json.dumps(event).encode())
        for candidate in event.get("candidates") or []:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if not isinstance(part, dict) or part.get("thought"):
                    continue
                if isinstance(part.get("text"), str):
                    record.text_parts.append(part["text"])
                call = part.get("functionCall")
                if isinstance(call, dict):
                    record.tool_calls.append({"name": call.get("name"), "input": call.get("args")})
            record.stop_reason = candidate.get("finishReason") or record.stop_reason
