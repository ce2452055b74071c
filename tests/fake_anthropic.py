"""A scripted Anthropic-compatible server, so tests can run the real Claude Code CLI offline.

Point the CLI at it with ANTHROPIC_BASE_URL=server.url. The test scripts the
model's answers in order; every request is recorded so the test can assert
what the CLI sent back (e.g. that a tool result reached the model).

    server = FakeAnthropic().start()
    server.script([tool_use("Bash", {"command": "echo hello > proof.txt"}), text("Done.")])
    ... run the CLI ...
    server.main_requests()[1]["messages"]  # holds the tool_result block

Which requests consume the script: only the agent loop's requests, recognised
by carrying tools. Claude Code can send side requests without tools (session
title or summary generation with a small model, quota probes); those get a
fixed short text answer ("ok") and never shift the script. With
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, Claude Code 2.1 sends none in -p
mode, but the rule keeps the tests stable if a version starts to.

Also answered: POST /v1/messages/count_tokens (a rough estimate), GET
/v1/models (one model), HEAD / (reachability checks). Any other path gets a
404 and is kept in `unexpected` so a test can show what a new CLI version asks for.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIDE_REQUEST_TEXT = "ok"
# How long a held reply waits for its release before answering anyway: a
# safety net so a failing test cannot leave a handler thread behind forever.
HOLD_LIMIT_SECONDS = 60


@dataclass
class Reply:
    """One scripted answer to an agent-loop request."""

    blocks: list[dict] = field(default_factory=list)
    stop_reason: str = "end_turn"
    # An error answer instead of a message: HTTP status and Anthropic error type.
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    # Set by the server when the request for this reply arrives.
    arrived: threading.Event = field(default_factory=threading.Event)
    # When given, the server holds the answer until the test sets it.
    release: threading.Event | None = None
    input_tokens: int = 12
    output_tokens: int = 7


_tool_ids = itertools.count(1)


def text(value: str, **kwargs) -> Reply:
    return Reply(blocks=[{"type": "text", "text": value}], **kwargs)


def tool_use(name: str, input: dict, *, say: str = "", id: str = "", **kwargs) -> Reply:
    """A reply calling one tool, optionally preceded by a text block."""
    blocks = [{"type": "text", "text": say}] if say else []
    tool_id = id or f"toolu_fake{next(_tool_ids):04d}"
    blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": input})
    return Reply(blocks=blocks, stop_reason="tool_use", **kwargs)


def error(status: int, message: str, error_type: str = "api_error") -> Reply:
    return Reply(status=status, error_type=error_type, error_message=message)


def held(reply: Reply) -> Reply:
    """The same reply, held back until the test sets `reply.release`."""
    reply.release = threading.Event()
    return reply


class FakeAnthropic:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._message_ids = itertools.count(1)
        self.requests: list[dict] = []  # every request: method, path, headers, body
        self.unexpected: list[str] = []  # "METHOD /path" of requests nobody scripted
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------
    def handler_class(self):
        return _Handler

    def start(self) -> FakeAnthropic:
        handler = type("Handler", (self.handler_class(),), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.release_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting -------------------------------------------------------
    def script(self, replies: list[Reply]) -> None:
        """Start a new scenario: forget earlier requests, answer with these in order."""
        self.release_all()
        with self._lock:
            self._script = list(replies)
            self.requests = []
            self.unexpected = []

    def release_all(self) -> None:
        with self._lock:
            for reply in self._script:
                if reply.release is not None:
                    reply.release.set()

    def main_requests(self) -> list[dict]:
        """Bodies of the agent-loop requests (those with tools), in order."""
        with self._lock:
            return [
                r["body"]
                for r in self.requests
                if r["path"].split("?")[0] == "/v1/messages" and _is_agent_loop(r["body"])
            ]

    def _record(self, method: str, path: str, headers: dict, body: dict | None) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body})

    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _message_id(self) -> str:
        return f"msg_fake{next(self._message_ids):04d}"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A CLI stopped mid-request hangs up before its answer: expected, not noise.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _is_agent_loop(body: dict | None) -> bool:
    return bool(body and body.get("tools"))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _read_body(self) -> dict | None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return {"_unparsed": raw.decode(errors="replace")}

    def do_HEAD(self):
        self.fake._record("HEAD", self.path, dict(self.headers), None)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        self.fake._record("GET", self.path, dict(self.headers), None)
        if self.path.split("?")[0] == "/v1/models":
            model = {
                "type": "model",
                "id": "claude-fake-1",
                "display_name": "Fake",
                "created_at": "2025-01-01T00:00:00Z",
            }
            return self._json(
                200,
                {
                    "data": [model],
                    "has_more": False,
                    "first_id": model["id"],
                    "last_id": model["id"],
                },
            )
        self._not_found("GET")

    def do_POST(self):
        body = self._read_body()
        self.fake._record("POST", self.path, dict(self.headers), body)
        path = self.path.split("?")[0]
        if path == "/v1/messages/count_tokens":
            return self._json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
        if path != "/v1/messages":
            return self._not_found("POST")
        if not _is_agent_loop(body):
            return self._answer(body, text(SIDE_REQUEST_TEXT))
        reply = self.fake._next_reply()
        if reply is None:
            return self._error(error(500, "fake_anthropic: the test's script has no reply left"))
        reply.arrived.set()
        if reply.release is not None:
            reply.release.wait(HOLD_LIMIT_SECONDS)
        if reply.status != 200:
            return self._error(reply)
        self._answer(body, reply)

    # -- answers ---------------------------------------------------------
    def _answer(self, body: dict, reply: Reply) -> None:
        message = {
            "id": self.fake._message_id(),
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or "claude-fake-1",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
        }
        if not body.get("stream"):
            message.update(
                content=reply.blocks,
                stop_reason=reply.stop_reason,
                usage={"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
            )
            return self._json(200, message)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", "req_fake")
        self.send_header("connection", "close")
        self.end_headers()
        self._event("message_start", {"type": "message_start", "message": message})
        self._event("ping", {"type": "ping"})
        for index, block in enumerate(reply.blocks):
            self._stream_block(index, block)
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
        self._event("message_stop", {"type": "message_stop"})
        self.close_connection = True

    def _stream_block(self, index: int, block: dict) -> None:
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            # Two deltas, like a real stream, so the CLI has to join them.
            half = len(block["text"]) // 2
            deltas = [
                {"type": "text_delta", "text": part}
                for part in (block["text"][:half], block["text"][half:])
                if part
            ]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            encoded = json.dumps(block["input"])
            half = len(encoded) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in (encoded[:half], encoded[half:])
            ]
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
        for delta in deltas:
            self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _event(self, name: str, data: dict) -> None:
        self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _error(self, reply: Reply) -> None:
        payload = {
            "type": "error",
            "error": {"type": reply.error_type, "message": reply.error_message},
        }
        self._json(reply.status, payload)

    def _not_found(self, method: str) -> None:
        with self.fake._lock:
            self.fake.unexpected.append(f"{method} {self.path}")
        self._json(
            404,
            {
                "type": "error",
                "error": {
                    "type": "not_found_error",
                    "message": f"fake_anthropic: no route {self.path}",
                },
            },
        )

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)
