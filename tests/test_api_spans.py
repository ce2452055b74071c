"""GET /api/v1/projects/<id>/spans: every filter, bad values, keyset pagination."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from agentloop.traces.models import SpanAnnotation
from agentloop.traces.queries import (
    InvalidFilter,
    SpanFilter,
    filter_spans,
    page_spans,
    parse_span_filter,
)
from tests.span_factory import make_span

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def spans(project):
    """A small project: two traces, one with an LLM child that failed."""
    root = make_span(
        project,
        trace_id="a" * 32,
        span_id="a000000000000001",
        name="agent run",
        kind="AGENT",
        status="OK",
        start=at(0),
        duration_ms=5000,
        session_id="sess-1",
        user_id="u-1",
        attributes={"input.value": "hello", "tag.tags": ["x"]},
    )
    llm = make_span(
        project,
        trace_id="a" * 32,
        span_id="a000000000000002",
        parent=root,
        name="ChatCompletion",
        kind="LLM",
        status="ERROR",
        start=at(1),
        session_id="sess-1",
        user_id="u-1",
        attributes={
            "llm.model_name": "gpt-4o",
            "llm.token_count.total": 42,
            "llm.invocation_parameters": {"stream": True},
            "metadata": {"env": "prod"},
        },
    )
    tool = make_span(
        project,
        trace_id="b" * 32,
        span_id="b000000000000001",
        name="search",
        kind="TOOL",
        status="UNSET",
        start=at(60),
        session_id="sess-2",
        user_id="u-2",
        attributes={"llm": {"model_name": "claude-3"}, "score": 0.5, "cached": False},
    )
    return {"root": root, "llm": llm, "tool": tool}


@pytest.fixture
def api(client_for, alice):
    client = client_for(alice)

    def get(project, **params):
        return client.get(f"/api/v1/projects/{project.pk}/spans", params)

    return get


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [span["name"] for span in response.json()["data"]]


def test_it_lists_spans_newest_first_with_their_fields(api, project, spans):
    SpanAnnotation.objects.create(
        project=project,
        span=spans["llm"],
        name="correctness",
        label="wrong",
        annotator_kind="HUMAN",
    )
    body = api(project).json()
    assert [s["name"] for s in body["data"]] == ["search", "ChatCompletion", "agent run"]
    assert body["next_cursor"] is None
    llm = body["data"][1]
    assert llm["trace_id"] == "a" * 32
    assert llm["span_id"] == "a000000000000002"
    assert llm["parent_span_id"] == "a000000000000001"
    assert llm["kind"] == "LLM"
    assert llm["status_code"] == "ERROR"
    assert llm["attributes"]["llm.model_name"] == "gpt-4o"
    assert llm["session_id"] == "sess-1"
    assert llm["annotations"] == [
        {
            "name": "correctness",
            "label": "wrong",
            "score": None,
            "explanation": "",
            "annotator_kind": "HUMAN",
            "identifier": "",
        }
    ]


def test_it_never_lists_spans_of_another_project(api, project, other_project, spans):
    make_span(other_project, name="secret", start=at(1000))
    assert "secret" not in names(api(project))


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"kind": "LLM"}, ["ChatCompletion"]),
        ({"kind": "llm"}, ["ChatCompletion"]),
        ({"status": "ERROR"}, ["ChatCompletion"]),
        ({"status": "OK"}, ["agent run"]),
        ({"status": "UNSET"}, ["search"]),
        ({"name": "search"}, ["search"]),
        ({"trace_id": "a" * 32}, ["ChatCompletion", "agent run"]),
        ({"root": "true"}, ["search", "agent run"]),
        ({"root": "false"}, ["ChatCompletion"]),
        ({"session_id": "sess-1"}, ["ChatCompletion", "agent run"]),
        ({"user_id": "u-2"}, ["search"]),
        ({"start": "2026-03-01T09:00:01Z"}, ["search", "ChatCompletion"]),
        ({"end": "2026-03-01T09:00:01Z"}, ["agent run"]),  # end is exclusive
        (
            {"start": "2026-03-01T09:00:00.5+00:00", "end": "2026-03-01T09:01:00Z"},
            ["ChatCompletion"],
        ),
        ({"start": "2026-03-01T11:00:01+02:00"}, ["search", "ChatCompletion"]),
        ({"start": "2026-03-02"}, []),
        ({"kind": "LLM", "status": "OK"}, []),
    ],
)
def test_it_filters_by_columns(api, project, spans, params, expected):
    assert names(api(project, **params)) == expected


@pytest.mark.parametrize(
    "attr, expected",
    [
        # flat dotted key, as OTLP sends it
        (["llm.model_name=gpt-4o"], ["ChatCompletion"]),
        # the same dotted key stored nested
        (["llm.model_name=claude-3"], ["search"]),
        (["llm.model_name=gpt"], []),  # exact, not substring
        # numbers and booleans match their JSON values
        (["llm.token_count.total=42"], ["ChatCompletion"]),
        (["llm.token_count.total=42.0"], ["ChatCompletion"]),
        (["llm.token_count.total=41"], []),
        (["score=0.5"], ["search"]),
        (["cached=false"], ["search"]),
        (["llm.invocation_parameters.stream=true"], ["ChatCompletion"]),
        (["metadata.env=prod"], ["ChatCompletion"]),
        (["input.value=hello"], ["agent run"]),
        # a list attribute matches by membership as well as by position
        (["tag.tags=x"], ["agent run"]),
        (["tag.tags.0=x"], ["agent run"]),
        (["tag.tags=y"], []),
        # repeated attr: all must match
        (["llm.model_name=gpt-4o", "metadata.env=prod"], ["ChatCompletion"]),
        (["llm.model_name=gpt-4o", "metadata.env=dev"], []),
        (["no.such.key=1"], []),
        # a key with `__` is a key, not a Django lookup path
        (["llm__model_name=gpt-4o"], []),
    ],
)
def test_it_filters_by_attributes(api, project, spans, attr, expected):
    assert names(api(project, attr=attr)) == expected


def test_an_attribute_string_that_looks_like_a_number_matches(api, project):
    make_span(project, name="str", attributes={"version": "42"})
    make_span(project, name="num", attributes={"version": 42}, start=at(5))
    assert sorted(names(api(project, attr="version=42"))) == ["num", "str"]


def test_it_filters_by_annotation_name_and_label(api, project, spans):
    SpanAnnotation.objects.create(
        project=project, span=spans["llm"], name="correctness", label="wrong", annotator_kind="LLM"
    )
    SpanAnnotation.objects.create(
        project=project, span=spans["tool"], name="correctness", label="right", annotator_kind="LLM"
    )
    SpanAnnotation.objects.create(
        project=project, span=spans["root"], name="tone", score=0.9, annotator_kind="CODE"
    )
    assert names(api(project, annotation="correctness")) == ["search", "ChatCompletion"]
    assert names(api(project, annotation="correctness:wrong")) == ["ChatCompletion"]
    assert names(api(project, annotation="correctness:maybe")) == []
    assert names(api(project, annotation="tone")) == ["agent run"]
    assert names(api(project, annotation="tone", kind="LLM")) == []


def test_a_span_with_two_matching_annotations_is_listed_once(api, project, spans):
    for identifier in ("a", "b"):
        SpanAnnotation.objects.create(
            project=project,
            span=spans["llm"],
            name="correctness",
            label="wrong",
            identifier=identifier,
            annotator_kind="LLM",
        )
    assert names(api(project, annotation="correctness")) == ["ChatCompletion"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"start": "yesterday"}, "start: not an ISO 8601 time"),
        ({"end": "2026-13-01"}, "end: not an ISO 8601 time"),
        ({"start": "2026-03-02", "end": "2026-03-01"}, "end: must be after start"),
        ({"kind": "ROBOT"}, "kind: must be one of"),
        ({"status": "FAILED"}, "status: must be one of OK"[:18]),
        ({"root": "maybe"}, "root: must be true or false"),
        ({"annotation": ":wrong"}, "annotation: expected name or name:label"),
        ({"attr": "llm.model_name"}, "attr: expected key=value"),
        ({"attr": "=x"}, "attr: expected key=value"),
        ({"limit": "0"}, "limit: must be between 1 and 1000"),
        ({"limit": "1001"}, "limit: must be between 1 and 1000"),
        ({"limit": "ten"}, "limit: must be a whole number"),
        ({"cursor": "garbage!"}, "cursor: not a cursor this API gave out"),
        (
            {"cursor": base64.urlsafe_b64encode(b'["2026-01-01", "x"]').decode()},
            "cursor: not a cursor",
        ),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(api, project, spans, params, message):
    response = api(project, **params)
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_limit_bounds_are_inclusive(api, project, spans):
    assert len(api(project, limit=1).json()["data"]) == 1
    assert len(api(project, limit=1000).json()["data"]) == 3


def test_cursor_pages_through_ties_without_duplicates_or_gaps(api, project):
    # 25 spans in only 4 distinct start times: pages must split ties by id.
    created = [make_span(project, name=f"s{i}", start=at(i % 4)) for i in range(25)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = api(project, **params).json()
        seen += [s["span_id"] for s in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 25
    expected = sorted(created, key=lambda s: (s.start_time, s.pk), reverse=True)
    assert seen == [s.span_id for s in expected]


def test_a_page_ending_exactly_at_the_last_row_has_no_next_cursor(api, project):
    for i in range(4):
        make_span(project, start=at(i))
    body = api(project, limit=4).json()
    assert len(body["data"]) == 4
    assert body["next_cursor"] is None


def test_cursor_is_stable_when_newer_spans_arrive(api, project):
    for i in range(4):
        make_span(project, name=f"old{i}", start=at(i))
    first = api(project, limit=2).json()
    make_span(project, name="newest", start=at(100))
    second = api(project, limit=2, cursor=first["next_cursor"]).json()
    assert [s["name"] for s in first["data"]] == ["old3", "old2"]
    assert [s["name"] for s in second["data"]] == ["old1", "old0"]


def test_cursor_combines_with_filters(api, project):
    for i in range(6):
        make_span(project, name=f"llm{i}", kind="LLM", start=at(i))
        make_span(project, name=f"tool{i}", kind="TOOL", start=at(i))
    first = api(project, kind="LLM", limit=4).json()
    second = api(project, kind="LLM", limit=4, cursor=first["next_cursor"]).json()
    assert [s["name"] for s in first["data"] + second["data"]] == [
        f"llm{i}" for i in reversed(range(6))
    ]
    assert second["next_cursor"] is None


# The query layer on its own (the HTML explorer uses it directly).


def test_parse_span_filter_accepts_a_plain_dict_with_repeated_attr():
    parsed = parse_span_filter({"attr": ["a=1", "b.c=x=y"], "root": "true", "kind": "tool"})
    assert parsed.attrs == [("a", "1"), ("b.c", "x=y")]
    assert parsed.root is True
    assert parsed.kind == "TOOL"


def test_parse_span_filter_ignores_blank_values():
    assert parse_span_filter({"kind": "", "start": "  ", "attr": [""]}) == SpanFilter()


def test_parse_span_filter_reads_an_unencoded_plus_as_a_utc_offset():
    parsed = parse_span_filter({"start": "2026-03-01T11:00:00 02:00"})
    assert parsed.start == T0


def test_page_spans_rejects_a_limit_out_of_bounds(project):
    with pytest.raises(InvalidFilter, match="limit"):
        page_spans(filter_spans(project), None, 0)


def test_filter_spans_orders_newest_first_then_by_id(project):
    a = make_span(project, start=at(0))
    b = make_span(project, start=at(0))
    c = make_span(project, start=at(1))
    assert list(filter_spans(project)) == [c, b, a]


def test_a_dotted_key_is_looked_up_under_every_split_of_its_parts():
    from agentloop.traces.queries import _key_paths

    assert _key_paths("a") == [["a"]]
    assert sorted(_key_paths("a.b.c")) == sorted(
        [["a.b.c"], ["a", "b.c"], ["a.b", "c"], ["a", "b", "c"]]
    )
    assert len(_key_paths("a.b.c.d.e")) == 16
    assert _key_paths("a.b.c.d.e.f") == [["a.b.c.d.e.f"], ["a", "b", "c", "d", "e", "f"]]


@pytest.mark.parametrize(
    "span_filter",
    [SpanFilter(trace_id="a" * 32), SpanFilter(trace_ids=["a" * 32, "b" * 32])],
    ids=["trace_id", "trace_ids"],
)
def test_a_trace_filter_reads_the_trace_index_not_the_page_order(project, span_filter):
    # Without planner statistics (a fresh SQLite database) an ORDER BY
    # start_time once made SQLite walk every span of the project for one trace.
    from django.db import connection

    from agentloop.traces.queries import trace_tree

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's planner; PostgreSQL keeps statistics of its own")
    make_span(project, trace_id="a" * 32, name="one")

    plan = filter_spans(project, span_filter).explain()

    assert "span_unique_in_project" in plan or "sqlite_autoindex_traces_span" in plan, plan
    assert "span_project_start" not in plan, plan
    assert trace_tree(project, "a" * 32)["span_count"] == 1
