"""The model APIs the gateway speaks, one Provider each: Anthropic, OpenAI, Gemini.

A provider says which paths it serves under /llm/<name>/ (and which of them
are recorded and counted), where the run's key is in a request, how the real
key goes upstream, what an error of the gateway looks like in that API's own
shape (so each SDK shows its message instead of a parse failure), and how
its answers are read for the span: a JSON answer whole, a stream event by
event (agentloop/gateway/readers.py).

The CLIs: Claude Code speaks Anthropic Messages; Codex speaks OpenAI Responses;
OpenCode speaks OpenAI Chat Completions (any OpenAI-compatible server); Gemini CLI
speaks Gemini's generateContent / streamGenerateContent (`?alt=sse`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from django.conf import settings

from agentloop.gateway import readers

# Gateway error types (the Anthropic names, used inside the gateway) → the
# status word of Google's error shape.
GOOGLE_STATUS = {
    "authentication_error": "UNAUTHENTICATED",
    "invalid_request_error": "INVALID_ARGUMENT",
    "budget_exceeded": "FAILED_PRECONDITION",
    "not_found_error": "NOT_FOUND",
    "request_too_large": "INVALID_ARGUMENT",
    "api_error": "INTERNAL",
}


@dataclass(frozen=True)
class Route:
    upstream_path: str
    recorded: bool  # recorded as a span and counted against the budget
    operation: str  # the span's name: "<operation> <model>"
    model: str = ""  # from the path (Gemini names the model in its URL)
    method: str = "POST"


class UpstreamNotConfigured(Exception):
    pass


class Provider:
    name: str
    key_setting: str
    url_setting: str
    default_url: str
    # Request fields that are content (the span's input.value); the rest are parameters.
    content_fields: tuple[str, ...] = ()
    # Headers a CLI names its session with, first found wins.
    session_headers: tuple[str, ...] = ()

    def route(self, rest: str, method: str) -> Route | None:
        raise NotImplementedError

    # -- keys ---------------------------------------------------------------
    def presented_key(self, headers: dict[str, str], query: str) -> str:
        key = headers.get("x-api-key", "").strip()
        if key:
            return key
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return authorization[7:].strip()
        return ""

    def real_key(self) -> str:
        key = getattr(settings, self.key_setting, "") or ""
        if not key:
            raise UpstreamNotConfigured(
                f"The LLM gateway has no upstream key for {self.name}: set {self.key_setting} "
                f"(or {self.key_setting}_FILE) on the web process."
            )
        return key

    def configured(self) -> bool:
        return bool(getattr(settings, self.key_setting, ""))

    def base_url(self) -> str:
        return (getattr(settings, self.url_setting, "") or self.default_url).rstrip("/")

    def add_key(self, headers: dict[str, str], key: str) -> None:
        raise NotImplementedError

    def upstream_query(self, query: str) -> str:
        return query

    def prepare_body(self, payload: dict, route: Route) -> dict | None:
        """A changed request body to send instead of the caller's, or None to send it as is."""
        return None

    # -- answers ------------------------------------------------------------
    def error_body(self, status: int, error_type: str, message: str) -> dict:
        raise NotImplementedError

    def error_message(self, body: bytes) -> str:
        return readers.error_message(body)

    def reader(self, route: Route) -> readers.Reader:
        raise NotImplementedError

    def input_value(self, request: dict) -> dict:
        return {name: request[name] for name in self.content_fields if request.get(name)}

    def tools_count(self, request: dict) -> int:
        tools = request.get("tools")
        return len(tools) if isinstance(tools, list) else 0


class Anthropic(Provider):
    name = "anthropic"
    key_setting = "AGENTLOOP_ANTHROPIC_API_KEY"
    url_setting = "AGENTLOOP_LLM_UPSTREAM_URL"
    default_url = "https://api.anthropic.com"
    content_fields = ("messages", "system", "tools", "metadata")
    session_headers = ("x-claude-code-session-id",)
    ROUTES = {
        # Counting tokens is free and generates nothing: forwarded, not recorded.
        "/v1/messages": Route("/v1/messages", True, "anthropic.messages"),
        "/v1/messages/count_tokens": Route("/v1/messages/count_tokens", False, "count_tokens"),
    }

    def route(self, rest, method):
        return self.ROUTES.get(rest)

    def add_key(self, headers, key):
        headers["x-api-key"] = key

    def error_body(self, status, error_type, message):
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def reader(self, route):
        return readers.AnthropicReader()

    def input_value(self, request):
        value = {"messages": request.get("messages") or []}
        if request.get("system"):
            value["system"] = request["system"]
        return value


class OpenAI(Provider):
    name = "openai"
    key_setting = "AGENTLOOP_OPENAI_API_KEY"
    url_setting = "AGENTLOOP_OPENAI_UPSTREAM_URL"
    default_url = "https://api.openai.com"
    content_fields = ("input", "instructions", "messages")
    # Codex names its conversation in these headers.
    session_headers = ("session-id", "session_id", "thread-id")
    ROUTES = {
        "/v1/responses": Route("/v1/responses", True, "openai.responses"),
        "/v1/chat/completions": Route("/v1/chat/completions", True, "openai.chat.completions"),
        "/v1/models": Route("/v1/models", False, "models", method="GET"),
    }

    def route(self, rest, method):
        return self.ROUTES.get(rest)

    def add_key(self, headers, key):
        headers["authorization"] = f"Bearer {key}"

    def prepare_body(self, payload, route):
        # A streamed chat completion carries usage only when asked for: the
        # budget needs it. (The extra last chunk has no choices; SDKs expect it.)
        if route.operation != "openai.chat.completions" or not payload.get("stream"):
            return None
        options = payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return None
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        return {**payload, "stream_options": options}

    def error_body(self, status, error_type, message):
        return {
            "error": {"message": message, "type": error_type, "param": None, "code": error_type}
        }

    def reader(self, route):
        if route.operation == "openai.responses":
            return readers.ResponsesReader()
        return readers.ChatReader()


GEMINI_PATH = re.compile(
    r"^/(v1beta|v1|v1alpha)/models/([A-Za-z0-9._-]+):"
    r"(generateContent|streamGenerateContent|countTokens)$"
)


class Gemini(Provider):
    name = "gemini"
    key_setting = "AGENTLOOP_GEMINI_API_KEY"
    url_setting = "AGENTLOOP_GEMINI_UPSTREAM_URL"
    default_url = "https://generativelanguage.googleapis.com"
    content_fields = ("contents", "systemInstruction")

    def route(self, rest, method):
        match = GEMINI_PATH.match(rest)
        if match is None:
            return None
        _, model, verb = match.groups()
        recorded = verb != "countTokens"
        operation = f"gemini.{verb}" if recorded else "count_tokens"
        return Route(rest, recorded, operation, model=model)

    def presented_key(self, headers, query):
        # The Google SDKs send x-goog-api-key; the REST docs show ?key=.
        key = headers.get("x-goog-api-key", "").strip()
        if key:
            return key
        for name, value in parse_qsl(query):
            if name == "key" and value.strip():
                return value.strip()
        return super().presented_key(headers, query)

    def add_key(self, headers, key):
        headers["x-goog-api-key"] = key

    def upstream_query(self, query):
        # The run's key must not travel on as ?key=: the real one is in a header.
        kept = [(name, value) for name, value in parse_qsl(query) if name != "key"]
        return urlencode(kept)

    def error_body(self, status, error_type, message):
        return {
            "error": {
                "code": status,
                "message": message,
                "status": GOOGLE_STATUS.get(error_type, "INTERNAL"),
            }
        }

    def reader(self, route):
        return readers.GeminiReader()

    def tools_count(self, request):
        count = 0
        for tool in request.get("tools") or []:
            if isinstance(tool, dict):
                count += len(tool.get("functionDeclarations") or []) or 1
        return count


PROVIDERS: dict[str, Provider] = {p.name: p for p in (Anthropic(), OpenAI(), Gemini())}
NAMES = tuple(PROVIDERS)


def find(path: str) -> tuple[Provider | None, str]:
    """(provider, the rest of the path) for /llm/<provider>/<rest>."""
    name, _, rest = path.removeprefix("/llm/").partition("/")
    return PROVIDERS.get(name), "/" + rest
