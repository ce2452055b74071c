"""A bounded schemathesis run of the REST API against its own OpenAPI schema (/api/schema/).

Schemathesis reads the schema the server publishes and sends each operation
requests generated from it, valid and not, to the live server (daphne, as in
production), with a project API key of the project they name. Whatever it
sends, the answer is never a 5xx. Bounded: AGENTLOOP_FUZZ_EXAMPLES (default 50) cases per
operation, generated deterministically so CI repeats the same run.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from agentloop.teams.models import ProjectApiKey
from tests.span_factory import make_span

pytest_plugins = ["tests.gateway_server"]  # asgi_server, served_db

EXAMPLES = int(os.environ.get("AGENTLOOP_FUZZ_EXAMPLES", "50"))


@pytest.fixture
def keyed_project(project):
    make_span(project, trace_id="d" * 32, span_id="e" * 16, name="llm call", kind="LLM")
    return project, ProjectApiKey.mint(project, "fuzz")[1]


def operations(base_url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/?format=json")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_request_the_schema_allows_or_not_gets_a_5xx(asgi_server, served_db, keyed_project):
    project, key = keyed_project
    found = operations(asgi_server)
    assert len(found) >= 6
    sent = []

    for operation in found:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            if "project_id" in (case.path_parameters or {}):
                case.path_parameters["project_id"] = project.pk  # a project the key may read
            response = case.call(
                base_url=asgi_server, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )
            sent.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}",
                response.status_code,
                response.text[:500],
            )
            case.validate_response(response, checks=[not_a_server_error])

        fuzz()
    assert len(sent) >= len(found)  # every operation was called
    # Valid requests got through (the key works) and invalid ones were refused.
    assert 200 in sent and any(400 <= status < 500 for status in sent)


def test_the_schema_names_the_operations_it_fuzzes(asgi_server, served_db):
    published = httpx.get(f"{asgi_server}/api/schema/?format=json", timeout=20).json()
    assert {"/api/v1/projects/{project_id}/annotations", "/api/v1/projects/"} <= set(
        published["paths"]
    )
