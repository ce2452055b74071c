"""The OpenAPI schema at /api/schema/ describes the v1 routes and is valid."""

from __future__ import annotations

import pytest
import yaml
from drf_spectacular.validation import validate_schema


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return yaml.safe_load(response.content)  # JSON is YAML, and the default answer is YAML


def test_the_schema_is_valid_openapi(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on an invalid document


def test_the_schema_lists_the_v1_routes(schema):
    paths = schema["paths"]
    assert set(paths["/api/v1/projects/"]) == {"get"}
    assert set(paths["/api/v1/projects/{project_id}/spans"]) == {"get"}
    assert set(paths["/api/v1/projects/{project_id}/traces/{trace_id}"]) == {"get"}
    assert set(paths["/api/v1/projects/{project_id}/annotations"]) == {"get", "post"}


def test_the_span_filters_are_documented(schema):
    operation = schema["paths"]["/api/v1/projects/{project_id}/spans"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {
        "start",
        "end",
        "kind",
        "status",
        "name",
        "trace_id",
        "root",
        "annotation",
        "attr",
        "session_id",
        "user_id",
        "limit",
        "cursor",
    } <= names
    status = next(p for p in operation["parameters"] if p["name"] == "status")
    assert status["schema"]["enum"] == ["ERROR", "OK", "UNSET"] or set(
        status["schema"]["enum"]
    ) == {"OK", "ERROR", "UNSET"}


def test_the_key_schemes_are_documented(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["projectApiKey"]["scheme"] == "bearer"
    assert schemes["serviceKey"]["scheme"] == "bearer"


def test_the_docs_page_renders(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    # Its start-up script is a file of its own (the CSP runs no inline script).
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and b"/api/schema/" in script.content
