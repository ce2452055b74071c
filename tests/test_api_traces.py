"""GET /api/v1/projects/<id>/traces/<trace_id> and the trace_tree it is built on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentloop.traces.queries import trace_tree
from tests.span_factory import make_span

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TRACE = "c" * 32


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


@pytest.fixture
def trace(project):
    """root ─┬─ plan (10ms)
          └─ act (200ms) ── tool (250ms)
    and an orphan whose parent never arrived (50ms)."""
    make_span(project, trace_id=TRACE, span_id="r", name="root", start=at(0), duration_ms=1000)
    # Created out of order on purpose: children must come out sorted by start.
    make_span(project, trace_id=TRACE, span_id="act", parent="r", name="act", start=at(200))
    make_span(project, trace_id=TRACE, span_id="plan", parent="r", name="plan", start=at(10))
    make_span(project, trace_id=TRACE, span_id="tool", parent="act", name="tool", start=at(250))
    make_span(project, trace_id=TRACE, span_id="o", parent="missing", name="orphan", start=at(50))


def shape(node) -> dict:
    return {node["name"]: [shape(child) for child in node["children"]]}


def test_it_returns_the_trace_as_a_tree(client_for, alice, project, trace):
    response = client_for(alice).get(f"/api/v1/projects/{project.pk}/traces/{TRACE}")
    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == TRACE
    assert body["spans"] == 5
    assert body["start_time"] == "2026-03-01T09:00:00Z"
    assert body["duration_ms"] == 1000
    assert shape(body["root"]) == {"root": [{"plan": []}, {"act": [{"tool": []}]}]}
    assert [shape(o) for o in body["orphans"]] == [{"orphan": []}]
    act = body["root"]["children"][1]
    assert act["offset_ms"] == 200
    assert act["depth"] == 1
    assert act["children"][0]["offset_ms"] == 250
    assert act["children"][0]["depth"] == 2
    assert body["orphans"][0]["parent_span_id"] == "missing"


def test_an_unknown_trace_is_404(client_for, alice, project, trace):
    response = client_for(alice).get(f"/api/v1/projects/{project.pk}/traces/{'d' * 32}")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such trace."}


def test_a_trace_of_another_project_is_404(client_for, alice, project, other_project):
    make_span(other_project, trace_id=TRACE, span_id="x", name="theirs")
    response = client_for(alice).get(f"/api/v1/projects/{project.pk}/traces/{TRACE}")
    assert response.status_code == 404


def test_a_trace_without_its_root_lists_everything_as_orphans(client_for, alice, project):
    make_span(project, trace_id=TRACE, span_id="a", parent="gone", name="a", start=at(5))
    make_span(project, trace_id=TRACE, span_id="b", parent="a", name="b", start=at(6))
    body = client_for(alice).get(f"/api/v1/projects/{project.pk}/traces/{TRACE}").json()
    assert body["root"] is None
    assert [shape(o) for o in body["orphans"]] == [{"a": [{"b": []}]}]


def test_trace_tree_gives_rows_in_display_order(project, trace):
    tree = trace_tree(project, TRACE)
    rows = [(n["span"].name, n["depth"], n["offset_ms"]) for n in tree["rows"]]
    assert rows == [
        ("root", 0, 0),
        ("plan", 1, 10),
        ("act", 1, 200),
        ("tool", 2, 250),
        ("orphan", 0, 50),
    ]
    assert [n["is_orphan"] for n in tree["roots"]] == [False, True]


def test_trace_tree_survives_a_parent_cycle(project):
    make_span(project, trace_id=TRACE, span_id="x", parent="y", name="x", start=at(0))
    make_span(project, trace_id=TRACE, span_id="y", parent="x", name="y", start=at(1))
    make_span(project, trace_id=TRACE, span_id="z", parent="z", name="self", start=at(2))
    tree = trace_tree(project, TRACE)
    assert sorted(n["span"].name for n in tree["rows"]) == ["self", "x", "y"]
    assert tree["span_count"] == 3


def test_trace_tree_is_none_for_an_unknown_trace(project):
    assert trace_tree(project, TRACE) is None
