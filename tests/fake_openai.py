"""A scripted OpenAI-compatible server: Responses (Codex) and Chat Completions (OpenCode), streamed.

The script is tests/fake_anthropic.py's (`text`, `tool_use`, `error`, `held`
replies, in order); this server speaks them as OpenAI's wire formats:

- POST /v1/responses, `"stream": true`: `response.created`, per output item
  `response.output_item.added` … deltas … `response.output_item.done`, then
  `response.completed` with usage; a tool call is a `function_call` item whose
  arguments are streamed in two deltas. Without `stream`, one JSON response.
- POST /v1/chat/completions: `chat.completion.chunk`s (text in two deltas,
  a tool call's arguments in two), a usage chunk when `stream_options.include_usage`
  asks for it, then `data: [DONE]`. Without `stream`, one JSON completion.
- GET /v1/models: one model.

Only agent-loop requests (with tools) consume the script; others (OpenCode's
session title) get the text "ok". Errors are OpenAI-shaped
(`{"error": {"message", "type", "code"}}`). Every request is kept in `requests`.
"""

from __future__ import annotations

import itertools
import json
import time

from tests.fake_anthropic import (
    HOLD_LIMIT_SECONDS,
    SIDE_REQUEST_TEXT,
    FakeAnthropic,
    Reply,
    _Handler,
    error,
    text,
)

AGENT_PATHS = ("/v1/responses", "/v1/chat/completions")
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):05d}"


class FakeOpenAI(FakeAnthropic):
    def handler_class(self):
        return _OpenAIHandler

    def main_requests(self) -> list[dict]:
        with self._lock:
            return [
                r["body"]
                for r in self.requests
                if r["path"].split("?")[0] in AGENT_PATHS and r["body"] and r["body"].get("tools")
            ]


class _OpenAIHandler(_Handler):
    def do_GET(self):
        self.fake._record("GET", self.path, dict(self.headers), None)
        if self.path.split("?")[0] == "/v1/models":
            model = {"id": "gpt-fake-1", "object": "model", "created": 0, "owned_by": "fake"}
            return self._json(200, {"object": "list", "data": [model]})
        self._not_found("GET")

    def do_POST(self):
        body = self._read_body()
        self.fake._record("POST", self.path, dict(self.headers), body)
        path = self.path.split("?")[0]
        if path not in AGENT_PATHS:
            return self._not_found("POST")
        if not (body and body.get("tools")):
            reply = text(SIDE_REQUEST_TEXT)
        else:
            reply = self.fake._next_reply()
            if reply is None:
                reply = error(500, "fake_openai: the test's script has no reply left")
            reply.arrived.set()
            if reply.release is not None:
                reply.release.wait(HOLD_LIMIT_SECONDS)
        if reply.status != 200:
            return self._error(reply)
        if path == "/v1/responses":
            return self._responses(body, reply)
        return self._chat(body, reply)

    # -- Responses -----------------------------------------------------------
    def _output_items(self, reply: Reply) -> list[dict]:
        items = []
        for block in reply.blocks:
            if block["type"] == "text":
                items.append(
                    {
                        "id": _id("msg"),
                        "type": "message",
                        "role": "assistant",
                        "status": "completed",
                        "content": [
                            {"type": "output_text", "text": block["text"], "annotations": []}
                        ],
                    }
                )
            else:
                items.append(
                    {
                        "id": _id("fc"),
                        "type": "function_call",
                        "status": "completed",
                        "call_id": block["id"],
                        "name": block["name"],
                        "arguments": json.dumps(block["input"]),
                    }
                )
        return items

    def _response(self, body: dict, reply: Reply, status: str, output: list) -> dict:
        response = {
            "id": _id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": body.get("model") or "gpt-fake-1",
            "output": output,
            "usage": None,
        }
        if status == "completed":
            response["usage"] = {
                "input_tokens": reply.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": reply.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": reply.input_tokens + reply.output_tokens,
            }
        return response

    def _responses(self, body: dict, reply: Reply) -> None:
        items = self._output_items(reply)
        if not body.get("stream"):
            return self._json(200, self._response(body, reply, "completed", items))
        self._start_stream()
        seq = itertools.count()
        self._sse(
            "response.created",
            {
                "type": "response.created",
                "sequence_number": next(seq),
                "response": self._response(body, reply, "in_progress", []),
            },
        )
        for index, item in enumerate(items):
            started = {**item, "status": "in_progress"}
            if item["type"] == "message":
                started["content"] = []
            else:
                started["arguments"] = ""
            self._sse(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": index,
                    "item": started,
                },
            )
            if item["type"] == "message":
                whole = item["content"][0]["text"]
                part = {"type": "output_text", "text": "", "annotations": []}
                self._sse(
                    "response.content_part.added",
                    {
                        "type": "response.content_part.added",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "part": part,
                    },
                )
                for piece in _halves(whole):
                    self._sse(
                        "response.output_text.delta",
                        {
                            "type": "response.output_text.delta",
                            "sequence_number": next(seq),
                            "item_id": item["id"],
                            "output_index": index,
                            "content_index": 0,
                            "delta": piece,
                        },
                    )
                self._sse(
                    "response.output_text.done",
                    {
                        "type": "response.output_text.done",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "text": whole,
                    },
                )
                self._sse(
                    "response.content_part.done",
                    {
                        "type": "response.content_part.done",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "part": {**part, "text": whole},
                    },
                )
            else:
                for piece in _halves(item["arguments"]):
                    self._sse(
                        "response.function_call_arguments.delta",
                        {
                            "type": "response.function_call_arguments.delta",
                            "sequence_number": next(seq),
                            "item_id": item["id"],
                            "output_index": index,
                            "delta": piece,
                        },
                    )
                self._sse(
                    "response.function_call_arguments.done",
                    {
                        "type": "response.function_call_arguments.done",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "arguments": item["arguments"],
                    },
                )
            self._sse(
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": index,
                    "item": item,
                },
            )
        self._sse(
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": next(seq),
                "response": self._response(body, reply, "completed", items),
            },
        )
        self.close_connection = True

    # -- Chat Completions ----------------------------------------------------
    def _chat(self, body: dict, reply: Reply) -> None:
        model = body.get("model") or "gpt-fake-1"
        completion_id = _id("chatcmpl")
        usage = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        texts = "".join(b["text"] for b in reply.blocks if b["type"] == "text")
        calls = [b for b in reply.blocks if b["type"] == "tool_use"]
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message = {"role": "assistant", "content": texts or None}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["input"])},
                    }
                    for c in calls
                ]
            return self._json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )

        def chunk(delta: dict, finish_reason=None, **extra) -> None:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            self._data(data)

        self._start_stream()
        chunk({"role": "assistant", "content": ""})
        for piece in _halves(texts):
            chunk({"content": piece})
        for index, call in enumerate(calls):
            arguments = _halves(json.dumps(call["input"]))
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": arguments[0]},
                        }
                    ]
                }
            )
            for piece in arguments[1:]:
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            self._data(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    # -- framing ---------------------------------------------------------------
    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()

    def _sse(self, name: str, data: dict) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _data(self, data: dict) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _error(self, reply: Reply) -> None:
        payload = {
            "error": {
                "message": reply.error_message,
                "type": reply.error_type,
                "param": None,
                "code": reply.error_type,
            }
        }
        self._json(reply.status, payload)

    def _not_found(self, method: str) -> None:
        with self.fake._lock:
            self.fake.unexpected.append(f"{method} {self.path}")
        self._json(
            404,
            {"error": {"message": f"fake_openai: no route {self.path}", "type": "not_found"}},
        )


def _halves(value: str) -> list[str]:
    """Two pieces, like a real stream, so the client has to join them."""
    half = len(value) // 2
    return [part for part in (value[:half], value[half:]) if part] or [""]
