"""Bounded fuzzing of every JSON and protobuf endpoint: no input gets a 5xx.

The attacks of issue 13 kept in the suite. Hypothesis generates bodies for
each endpoint a sandbox or an exporter can reach — arbitrary JSON, JSON shaped
like the endpoint's own body with wrong values in its fields, deeply nested
JSON, raw bytes, protobuf messages with arbitrary fields — and sends them
through the production ASGI application (tests/asgi_client.py) with a valid
key. Every answer must be below 500, and a refusal must say why.

Bounded and repeatable: AGENTLOOP_FUZZ_EXAMPLES (default 40) bodies per
endpoint and strategy, derandomized, so CI runs the same cases each time;
set it higher to hunt.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentloop.runs.models import Run, RunStatus, ServiceKey
from agentloop.teams.models import ProjectApiKey
from tests.asgi_client import asgi_request
from tests.otlp_payloads import export_request, span
from tests.span_factory import make_span

pytest_plugins = ["tests.gateway_server"]  # served_db, upstream_model, real_key

EXAMPLES = int(os.environ.get("AGENTLOOP_FUZZ_EXAMPLES", "40"))
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# -- strategies ------------------------------------------------------------------------

TEXT = st.text(max_size=40)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


DEEP = st.integers(min_value=50, max_value=5000).map(nested)
RAW = st.binary(max_size=300)


def shaped(template: dict) -> st.SearchStrategy:
    """`template` with some of its fields (nested too) replaced by arbitrary JSON."""

    def mutate(value):
        if isinstance(value, dict):
            return st.fixed_dictionaries(
                {k: st.one_of(st.just(v), mutate(v), JSON_VALUES) for k, v in value.items()},
                optional={"extra": JSON_VALUES},
            )
        if isinstance(value, list):
            return st.lists(st.one_of(*(mutate(v) for v in value)), max_size=3) | JSON_VALUES
        return st.one_of(st.just(value), JSON_VALUES)

    return mutate(template)


def as_body(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def bodies(template: dict) -> st.SearchStrategy:
    return st.one_of(
        shaped(template).map(as_body),
        JSON_VALUES.map(as_body),
        DEEP,
        RAW,
    )


EVENT = {
    "key": "k1",
    "source": "agent",
    "kind": "message",
    "payload": {"role": "assistant", "text": "hello"},
}
TEMPLATES = {
    "/api/runner/v1/events": {"events": [EVENT, {**EVENT, "key": "k2", "kind": "tool_call"}]},
    "/api/runner/v1/artifacts": {
        "key": "a1",
        "kind": "investigation",
        "name": "findings.md",
        "content": "# Found it",
        "metadata": {"files": ["a.py"]},
    },
    "/api/runner/v1/status": {
        "state": "running",
        "harness_session_id": "s-1",
        "usage": {"input_tokens": 1, "output_tokens": 2, "cost_usd": "0.01"},
    },
    "/api/runner/v1/heartbeat": {},
    "/llm/anthropic/v1/messages": {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    },
    "/llm/anthropic/v1/messages/count_tokens": {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
    },
}
OTLP_JSON = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]},
            "scopeSpans": [
                {
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "name": "llm",
                            "kind": 1,
                            "startTimeUnixNano": "1700000000000000000",
                            "endTimeUnixNano": "1700000001000000000",
                            "attributes": [
                                {"key": "llm.token_count.prompt", "value": {"intValue": "12"}},
                                {
                                    "key": "nested",
                                    "value": {"kvlistValue": {"values": [{"key": "x"}]}},
                                },
                            ],
                            "status": {"code": 2, "message": "boom"},
                        }
                    ]
                }
            ],
        }
    ]
}


def protobuf_exports() -> st.SearchStrategy:
    """Real ExportTraceServiceRequests with arbitrary names, ids, times and attributes,
    and their bytes cut or flipped."""
    attribute_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=10,
    )

    @st.composite
    def export(draw):
        spans = [
            span(
                trace_id=draw(st.binary(max_size=20)).hex(),
                span_id=draw(st.binary(max_size=10)).hex(),
                name=draw(TEXT),
                start_ns=draw(st.integers(0, 2**63)),
                duration_ms=draw(st.floats(0, 1e9)),
                attributes=draw(st.dictionaries(TEXT, attribute_values, max_size=4)),
            )
            for _ in range(draw(st.integers(0, 3)))
        ]
        body = export_request(({"service.name": draw(TEXT)}, spans)).SerializeToString()
        cut = draw(st.integers(0, len(body)))
        return draw(st.sampled_from([body, body[:cut], body[:cut] + b"\xff" + body[cut:]]))

    return export()


# -- the requests ----------------------------------------------------------------------


@pytest.fixture
def credentials(project, served_db, settings, upstream_model, real_key):
    settings.AGENTLOOP_LLM_UPSTREAM_URL = upstream_model.url
    settings.AGENTLOOP_ANTHROPIC_API_KEY = real_key
    run = Run.objects.create(
        space=project.space,
        project=project,
        config={"harness": "claude-code", "secret_env": {}},
        prompt="Fuzz me.",
        status=RunStatus.RUNNING,
    )
    _, run_token = ServiceKey.mint(run, expires_at=timezone.now() + timedelta(hours=1))
    _, project_key = ProjectApiKey.mint(project, "fuzz")
    return {"run": run, "run_token": run_token, "project_key": project_key, "project": project}


def check(answer, path: str, body: bytes) -> None:
    assert answer.status_code < 500, (path, body[:300], answer.status_code, answer.text[:500])
    if answer.status_code >= 400 and answer.content:
        said = answer.json() if "json" in answer.headers.get("content-type", "") else {}
        message = said.get("detail") or said.get("message") or said.get("error")
        assert message, (path, body[:300], answer.status_code, answer.text[:300])


def reopen(run) -> None:
    """Keep the run accepting posts: a fuzzed status may have finished it."""
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, finished_at=None)


@pytest.mark.parametrize("path", sorted(TEMPLATES))
def test_runner_and_gateway_endpoints_never_answer_5xx(credentials, path):
    token, run = credentials["run_token"], credentials["run"]
    headers = {"authorization": f"Bearer {token}", "x-api-key": token}
    seen = set()

    @BOUNDED
    @given(body=bodies(TEMPLATES[path]))
    def fuzz(body):
        answer = asgi_request(
            "POST", path, content=body, headers={"content-type": "application/json", **headers}
        )
        seen.add(answer.status_code)
        check(answer, path, body)
        if path.endswith("/status"):
            reopen(run)

    fuzz()
    assert seen & {200, 201}, seen  # the template itself got through: the fuzz reached the app
    assert any(400 <= status < 500 for status in seen), seen


def test_otlp_json_ingest_never_answers_5xx(credentials):
    headers = {
        "authorization": f"Bearer {credentials['project_key']}",
        "content-type": "application/json",
    }
    seen = set()

    @BOUNDED
    @given(body=bodies(OTLP_JSON))
    def fuzz(body):
        answer = asgi_request("POST", "/v1/traces", content=body, headers=headers)
        seen.add(answer.status_code)
        check(answer, "/v1/traces", body)

    fuzz()
    assert 200 in seen and 400 in seen, seen


def test_otlp_protobuf_ingest_never_answers_5xx(credentials):
    headers = {
        "authorization": f"Bearer {credentials['project_key']}",
        "content-type": "application/x-protobuf",
    }
    seen = set()

    @BOUNDED
    @given(body=protobuf_exports() | RAW)
    def fuzz(body):
        answer = asgi_request("POST", "/v1/traces", content=body, headers=headers)
        seen.add(answer.status_code)
        assert answer.status_code < 500, (body[:300], answer.status_code, answer.text[:300])

    fuzz()
    assert 200 in seen and 400 in seen, seen


def test_the_annotations_api_never_answers_5xx(credentials):
    project = credentials["project"]
    path = f"/api/v1/projects/{project.pk}/annotations"
    headers = {
        "authorization": f"Bearer {credentials['project_key']}",
        "content-type": "application/json",
    }
    make_span(project, span_id="e000000000000001", name="llm call")
    template = {
        "span_id": "e000000000000001",
        "name": "correctness",
        "label": "incorrect",
        "score": 0.5,
        "explanation": "made up a refund policy",
        "annotator_kind": "LLM",
        "metadata": {"k": 1},
    }
    seen = set()

    @BOUNDED
    @given(body=bodies(template))
    def fuzz(body):
        answer = asgi_request("POST", path, content=body, headers=headers)
        seen.add(answer.status_code)
        check(answer, path, body)

    fuzz()
    assert 201 in seen and any(400 <= status < 500 for status in seen), seen
