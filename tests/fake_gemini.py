"""A scripted Gemini API server: generateContent and streamGenerateContent (`?alt=sse`).

The script is tests/fake_anthropic.py's (`text`, `tool_use`, `error`, `held`),
spoken as Gemini's GenerateContentResponse: a streamed text arrives in two
chunks, a tool call is a `functionCall` part, the last chunk carries
`finishReason` and `usageMetadata`. Without alt=sse, streamGenerateContent
answers a JSON array of the same chunks.

Only agent-loop requests (with tools) consume the script. Gemini CLI's side
requests without tools (its "next speaker" check, loop detection, model
routing) get a JSON answer that asks nothing more of the CLI: `{}`-ish text
when a JSON response is asked for, else "ok". countTokens answers an estimate.
Errors are Google-shaped (`{"error": {"code", "message", "status"}}`).
"""

from __future__ import annotations

import json
import re

from tests.fake_anthropic import (
    HOLD_LIMIT_SECONDS,
    SIDE_REQUEST_TEXT,
    FakeAnthropic,
    Reply,
    _Handler,
    error,
    text,
)

PATH = re.compile(r"^/v1beta/models/([^:/]+):(generateContent|streamGenerateContent|countTokens)$")
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
          503: "UNAVAILABLE"}  # fmt: skip
# What the CLI's side requests expect when they ask for JSON.
SIDE_JSON = {"next_speaker": "user", "reasoning": "fake_gemini: the model is done."}


class FakeGemini(FakeAnthropic):
    def handler_class(self):
        return _GeminiHandler

    def main_requests(self) -> list[dict]:
        with self._lock:
            return [
                r["body"]
                for r in self.requests
                if PATH.match(r["path"].split("?")[0])
                and not r["path"].split("?")[0].endswith(":countTokens")
                and _has_tools(r["body"])
            ]


def _has_tools(body) -> bool:
    return bool(
        body and any((t or {}).get("functionDeclarations") for t in body.get("tools") or [])
    )


class _GeminiHandler(_Handler):
    def do_GET(self):
        self.fake._record("GET", self.path, dict(self.headers), None)
        self._not_found("GET")

    def do_POST(self):
        body = self._read_body() or {}
        self.fake._record("POST", self.path, dict(self.headers), body)
        path, _, query = self.path.partition("?")
        match = PATH.match(path)
        if match is None:
            return self._not_found("POST")
        model, verb = match.groups()
        if verb == "countTokens":
            return self._json(200, {"totalTokens": max(1, len(json.dumps(body)) // 4)})
        if not _has_tools(body):
            config = body.get("generationConfig") or {}
            wants_json = config.get("responseMimeType") == "application/json"
            reply = text(json.dumps(SIDE_JSON) if wants_json else SIDE_REQUEST_TEXT)
        else:
            reply = self.fake._next_reply()
            if reply is None:
                reply = error(500, "fake_gemini: the test's script has no reply left")
            reply.arrived.set()
            if reply.release is not None:
                reply.release.wait(HOLD_LIMIT_SECONDS)
        if reply.status != 200:
            return self._error(reply)
        chunks = self._chunks(model, reply)
        if verb == "generateContent":
            return self._json(200, _merge(chunks))
        if "alt=sse" not in query:
            return self._json(200, chunks)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            self.wfile.flush()
        self.close_connection = True

    def _chunks(self, model: str, reply: Reply) -> list[dict]:
        parts = []
        for block in reply.blocks:
            if block["type"] == "text":
                half = len(block["text"]) // 2
                parts += [{"text": p} for p in (block["text"][:half], block["text"][half:]) if p]
            else:
                parts.append({"functionCall": {"name": block["name"], "args": block["input"]}})
        chunks = [
            {
                "candidates": [{"content": {"parts": [part], "role": "model"}, "index": 0}],
                "modelVersion": model,
                "responseId": "fake-response",
            }
            for part in parts
        ] or [{"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}}]}]
        chunks[-1]["candidates"][0]["finishReason"] = "STOP"
        chunks[-1]["usageMetadata"] = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": reply.output_tokens,
            "totalTokenCount": reply.input_tokens + reply.output_tokens,
        }
        return chunks

    def _error(self, reply: Reply) -> None:
        status = STATUS.get(reply.status, "INTERNAL")
        self._json(
            reply.status,
            {"error": {"code": reply.status, "message": reply.error_message, "status": status}},
        )

    def _not_found(self, method: str) -> None:
        with self.fake._lock:
            self.fake.unexpected.append(f"{method} {self.path}")
        self._json(
            404,
            {
                "error": {
                    "code": 404,
                    "message": f"fake_gemini: no route {self.path}",
                    "status": "NOT_FOUND",
                }
            },  # fmt: skip
        )


def _merge(chunks: list[dict]) -> dict:
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    merged = dict(chunks[-1])
    merged["candidates"] = [
        {**chunks[-1]["candidates"][0], "content": {"parts": parts, "role": "model"}}
    ]
    return merged
