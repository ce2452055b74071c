"""The runner protocol's JSON, as pydantic models: one schema for server, double and docs.

docs/runner-protocol.md describes the routes; this module is what their bodies
and answers are. The server validates what a runner sends with the request
models (runner_api, recording), the test double (tests/runner_double.py)
validates both directions with them, and the doc's body tables and
docs/runner-protocol.schema.json are generated from them
(`python -m agentloop.runs.protocol_doc`; a test fails when they are stale).

No Django here, so the double and the doc script can import it without
settings. The runner itself (agentloop/runner/) stays standard library only and
never imports this; tests check that what it sends validates.

Requests ignore fields they do not know (a newer runner may send more);
answers forbid them, so an answer that grows a field must grow here, and in
the doc, first. `problem()` turns pydantic's errors into the one short
sentence the API answers with, naming the field: `{"detail": "..."}`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# The vocabularies, as the runs app's models spell them (tests/test_protocol_schema.py
# checks they agree with RunStatus, EventSource, EventKind and ArtifactKind).
StatusName = Literal[
    "queued",
    "provisioning",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
]
# What a runner may report; it reports cancelled itself when it stopped on request.
RunnerStateName = Literal["running", "waiting", "succeeded", "failed", "cancelled"]
# Who wrote an event is the server's to say, from who posts it (never a field of the
# post): "agent" for everything a runner posts, "system" for the server's own
# (status changes), "user" for people's follow-ups.
EventSourceName = Literal["user", "agent", "system"]
EventKindName = Literal["message", "tool_call", "tool_result", "status", "artifact", "error"]
ArtifactKindName = Literal["investigation", "eval_labels", "file", "branch"]  # no pull_request

RUN_STATUSES = get_args(StatusName)
RUNNER_STATES = get_args(RunnerStateName)
EVENT_SOURCES = get_args(EventSourceName)
EVENT_KINDS = get_args(EventKindName)
ARTIFACT_KINDS = get_args(ArtifactKindName)
HARNESSES = ("analyst", "claude-code", "codex", "opencode", "gemini")
# The model APIs the LLM gateway speaks (/llm/<provider>/), and which each harness's CLI can use.
LLM_PROVIDERS = ("anthropic", "openai", "gemini")
HARNESS_PROVIDERS = {
    "analyst": (),
    "claude-code": ("anthropic",),
    "codex": ("openai",),
    "opencode": ("openai", "anthropic"),
    "gemini": ("gemini",),
}

MAX_BATCH = 500
MAX_KEY_LENGTH = 200
MAX_ARTIFACT_NAME_LENGTH = 300
MAX_URL_LENGTH = 1000
MAX_SESSION_ID_LENGTH = 200
# A harness's own record of its session (claude-code's session JSONL): beyond this
# the runner sends none and a continued run tells the history instead.
MAX_HARNESS_STATE_LENGTH = 4_000_000
MAX_INBOX_WAIT_SECONDS = 25
# Run.cost_usd is a DecimalField(max_digits=12, decimal_places=6): below a million.
MAX_COST_USD = Decimal("999999.999999")
MAX_TOKENS = 2**63 - 1  # a BigIntegerField

Key = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH)]
Count = Annotated[int, Field(ge=0)]


class Request(BaseModel):
    """A body a runner sends."""

    model_config = ConfigDict(extra="ignore")


class Answer(BaseModel):
    """A body the server sends back."""

    model_config = ConfigDict(extra="forbid")


# -- GET spec ----------------------------------------------------------------------------


class Project(Answer):
    id: int
    name: str


class Repository(Answer):
    url: str = Field(description="https:// (file:// only where the server allows it)")
    base_branch: str


class SkillInstall(Answer):
    """A custom skill the runner clones into ~/.claude/skills/<name>/."""

    name: str
    repo_url: str
    ref: str


class HistoryMessage(Answer):
    role: Literal["user", "assistant"]
    text: str


class Spec(Answer):
    """`GET spec`: everything the runner needs to start."""

    run: str = Field(description="the run's code")
    project: Project
    harness: str = Field(description="analyst, claude-code, codex, opencode or gemini")
    model: str | None
    system_prompt: str
    prompt: str = Field(description="the first prompt (never returned by the inbox)")
    max_turns: int | None
    allowed_tools: list[str]
    time_limit_seconds: Annotated[float, Field(gt=0)] | None
    api_url: str = Field(description="{AGENTLOOP_URL}/api/v1/projects/<id>/")
    llm_base_url: str = Field(
        description="the gateway for llm_provider: {public URL}/llm/<provider>"
    )
    llm_provider: str = Field(default="", description="anthropic, openai or gemini; blank: none")
    env: dict[str, str] = Field(
        description="NAME: value; secret values only in the run's first spec answer"
    )
    secrets_withheld: list[str] = Field(
        default_factory=list,
        description="names of secrets left out: they were handed out at start, once",
    )
    repository: Repository | None
    skills: list[SkillInstall]
    status: StatusName
    continued: bool = Field(
        False, description="a finished session continued by a person's message (prompt is it)"
    )
    history: list[HistoryMessage] = Field(
        default_factory=list, description="a continued run's conversation before `prompt`"
    )
    inbox_after: int = Field(0, description="ask the inbox for follow-ups after this seq")
    harness_session_id: str | None = Field(
        None, description="the harness session the run recorded last (claude-code resumes it)"
    )
    harness_state: str | None = Field(
        None,
        description="a continued run's harness record of that session, as last posted "
        "(claude-code's session JSONL, restored into the new sandbox's HOME)",
    )


# -- POST events -------------------------------------------------------------------------


class Event(Request):
    """One event a runner posts. It has no source: the server stores every one as
    the agent's ("system" is the server's own, so a sandbox cannot forge one)."""

    key: Key = Field(description="client idempotency key, unique per run")
    kind: EventKindName
    payload: dict[str, Any] = Field(
        default_factory=dict, description="by kind: MessagePayload, ToolCallPayload, …"
    )

    @model_validator(mode="after")
    def _status_only_while_running(self):
        # A runner reports the run's state with POST status, which the server
        # records as a "system" status event; a status event of its own is a
        # note while the run goes on (Claude Code started, a model call retried),
        # never "succeeded" shown on a run that still waits.
        if self.kind == "status" and self.payload.get("state") != "running":
            raise PydanticCustomError(
                "problem",
                "is a status event saying {state}: a runner's status events can only say "
                "running (report the run's state with POST status).",
                {"state": repr(self.payload.get("state"))},
            )
        return self


class EventBatch(Request):
    """`POST events`: idempotent by each event's key."""

    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH)


class EventsAnswer(Answer):
    stored: Count
    duplicates: Count
    last_seq: Count
    seqs: list[int] = Field(
        description="the seq of each posted event, in order (a duplicate's first seq)"
    )


# What each kind's payload holds, as the runner writes it and the transcript reads it.
# The server stores any object (older runs hold older shapes); the double and the
# tests hold the runner to these.


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessagePayload(Payload):
    role: Literal["assistant", "user"]
    text: str
    message_id: str = ""


class ToolCallPayload(Payload):
    id: str
    name: str | None
    input: dict[str, Any]


class ToolResultPayload(Payload):
    tool_call_id: str
    output: str
    is_error: bool


class StatusPayload(Payload):
    state: Literal["running"] = Field(description="the run's own state is POST status's")
    detail: str


class ArtifactPayload(Payload):
    artifact_id: int | None
    kind: ArtifactKindName
    name: str


class ErrorPayload(Payload):
    message: str


PAYLOADS: dict[str, type[Payload]] = {
    "message": MessagePayload,
    "tool_call": ToolCallPayload,
    "tool_result": ToolResultPayload,
    "status": StatusPayload,
    "artifact": ArtifactPayload,
    "error": ErrorPayload,
}


# -- GET inbox ---------------------------------------------------------------------------


class Followup(Answer):
    seq: int
    text: str


class InboxAnswer(Answer):
    followups: list[Followup]
    stop: bool


# -- POST artifacts ----------------------------------------------------------------------


class Artifact(Request):
    """`POST artifacts`: idempotent by key. A pull request is never the runner's to report."""

    key: Key
    kind: ArtifactKindName
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ARTIFACT_NAME_LENGTH),
    ]
    content: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    url: str = Field(default="", max_length=MAX_URL_LENGTH, description='"" or an http(s) URL')

    @field_validator("kind", mode="before")
    @classmethod
    def _not_a_pull_request(cls, kind):
        if kind == "pull_request":
            # Only a person approving a branch opens one (runs.review), never the agent.
            raise PydanticCustomError(
                "sentence",
                "A runner cannot report a pull request: it is opened when a reviewer "
                "approves the run's branch.",
            )
        return kind

    @field_validator("url", mode="before")
    @classmethod
    def _http_url(cls, url):
        if url is None:
            return ""
        if isinstance(url, str) and url and not url.startswith(("http://", "https://")):
            raise PydanticCustomError("problem", "must be an http(s) URL.")
        return url


class ArtifactAnswer(Answer):
    id: int
    created: bool


# -- POST heartbeat, POST status ---------------------------------------------------------


class HeartbeatAnswer(Answer):
    status: StatusName
    stop: bool


class Usage(Request):
    """The run's total so far, not the last turn's: a retried post changes nothing."""

    input_tokens: Annotated[int, Field(strict=True, ge=0, le=MAX_TOKENS)] | None = None
    output_tokens: Annotated[int, Field(strict=True, ge=0, le=MAX_TOKENS)] | None = None
    cost_usd: Annotated[Decimal, Field(ge=0, le=MAX_COST_USD, allow_inf_nan=False)] | None = None


class StatusPost(Request):
    """`POST status`: the run's model decides whether the move is legal (409 if not)."""

    state: RunnerStateName
    exit_reason: str | None = None
    harness_session_id: str | None = Field(
        default=None, description=f"longer than {MAX_SESSION_ID_LENGTH} characters is cut"
    )
    harness_state: str | None = Field(
        default=None,
        max_length=MAX_HARNESS_STATE_LENGTH,
        description="the harness's record of its session, for a continued run to resume it",
    )
    usage: Usage | None = None


class StatusAnswer(Answer):
    status: StatusName


class ErrorBody(Answer):
    """Every error: 400 bad input, 401 token, 403 scope, 404, 405, 409 finished, 413 too large."""

    detail: str


# The doc's schema section, in the order the routes are described.
DOCUMENTED = (
    Spec,
    EventBatch,
    Event,
    EventsAnswer,
    InboxAnswer,
    Artifact,
    ArtifactAnswer,
    HeartbeatAnswer,
    StatusPost,
    StatusAnswer,
    ErrorBody,
    Usage,
    *PAYLOADS.values(),
)


# -- error messages ----------------------------------------------------------------------


def _path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _where(loc: tuple) -> str:
    """('events', 3, 'kind') → 'events[3]: kind'; ('usage', 'cost_usd') → 'usage.cost_usd'."""
    indexes = [i for i, part in enumerate(loc) if isinstance(part, int)]
    if not indexes or indexes[-1] == len(loc) - 1:
        return _path(loc)
    return f"{_path(loc[: indexes[-1] + 1])}: {_path(loc[indexes[-1] + 1 :])}"


def _choices(expected: str) -> str:
    return ", ".join(re.findall(r"'([^']*)'", expected)) or expected


class _Shown:
    """What was sent, as the message quotes it: clipped, a message is no echo chamber."""

    def __init__(self, value):
        self.text = repr(value)

    def __repr__(self) -> str:
        return self.text if len(self.text) <= 60 else self.text[:57] + "..."


def describe(error: dict) -> str:
    """One of pydantic's errors as a sentence that names its field."""
    kind, ctx, got = error["type"], error.get("ctx") or {}, _Shown(error.get("input"))
    where = _where(tuple(error["loc"]))
    if kind == "sentence":  # a PydanticCustomError("sentence", …) of ours says it all
        return error["msg"]
    if not where:
        return "The body must be a JSON object." if kind.endswith("type") else error["msg"]
    if kind == "problem":  # PydanticCustomError("problem", "must be …") of ours
        return f"{where} {error['msg']}"
    if kind == "missing":
        return f"{where} is required."
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where} must be an object."
    if kind == "list_type":
        return f"{where} must be a list."
    if kind == "string_type":
        return f"{where} must be text."
    if kind == "string_too_short":
        return f"{where} must not be empty."
    if kind == "string_too_long":
        return f"{where} must be at most {ctx['max_length']} characters."
    if kind == "too_short":
        return f"{where} is empty." if ctx.get("min_length") == 1 else f"{where} is too short."
    if kind == "too_long":
        return f"{where} must have at most {ctx['max_length']} items; got {ctx['actual_length']}."
    if kind in ("literal_error", "enum"):
        return f"{where} must be one of {_choices(ctx['expected'])}; got {got!r}."
    if kind.startswith("int_"):
        return f"{where} must be a whole number; got {got!r}."
    if kind.startswith(("decimal_", "float_", "finite_")):
        return f"{where} must be a number; got {got!r}."
    if kind.startswith("bool_"):
        return f"{where} must be true or false; got {got!r}."
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": "≥", "greater_than": ">", "less_than_equal": "≤"}
        bound = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
        return f"{where} must be {sign.get(kind, '<')} {bound}; got {got!r}."
    return f"{where}: {error['msg']}"


def problem(error: ValidationError, most: int = 3) -> str:
    """One short message for an API answer: the first errors, each naming its field."""
    errors = error.errors(include_url=False)
    said = [describe(e) for e in errors[:most]]
    if len(errors) > most:
        said.append(f"({len(errors) - most} more problems.)")
    return " ".join(said)
