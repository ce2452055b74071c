"""The attribute index (agentloop/traces/attribute_index.py): `attr=key=value`
narrowed by hashed attribute values must find exactly what the JSON comparison
finds, on both databases, for every path the index takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from agentloop.traces import attribute_index, partitions
from agentloop.traces.models import Span
from agentloop.traces.queries import (
    SpanFilter,
    _attr_q,
    _json_candidates,
    filter_spans,
    page_spans,
)
from tests.asgi_client import asgi_request
from tests.otlp_payloads import export_request, new_span_id, new_trace_id, span
from tests.span_factory import make_span

pytest_plugins = ["tests.gateway_server"]  # served_db: ingest stores on its own thread

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# Attribute shapes that ingest, the ORM and other writers store.
ATTRIBUTE_SETS = {
    "flat": {
        "llm.model_name": "gpt-4o",
        "user.id": "u-1",
        "llm.token_count.total": 42,
        "score": 0.5,
        "whole": 3.0,
        "cached": False,
        "streamed": True,
        "empty": "",
        "version": "42",
        "unicode": 'héllo ☃ 😀 "q" back\\slash',
        "nothing": None,
    },
    "nested": {
        "llm": {"model_name": "claude-3", "invocation_parameters": {"stream": True}},
        "metadata": {"env": "prod", "tier": 2},
        "user": {"id": "u-2"},
    },
    "lists": {
        "tag.tags": ["x", "y", 7],
        "messages": [{"role": "user"}, {"role": "assistant"}],
        "long list": list(range(40)),
    },
    "long": {"input.value": "p" * 300, "user.id": "u-1"},
    "mixed": {"llm.invocation_parameters": {"stream": False}, "llm": {"model_name": "gpt-4o"}},
    "numbers": {"n": 1, "big": 2**62, "neg": -7, "tiny": 1e-9, "huge": 1e300},
    "dotted keys": {"a.b": {"c": "deep"}, "a": {"b.c": "deep2"}},
    "list shapes": {
        "tag": {"tags": ["z", "7", True]},
        "groups": [["x"], {"k": "x"}],
        "flags": [False, None],
    },
}

QUERIES = [
    ("llm.model_name", "gpt-4o"),
    ("llm.model_name", "claude-3"),
    ("user.id", "u-1"),
    ("user.id", "u-2"),
    ("llm.token_count.total", "42"),
    ("llm.token_count.total", "42.0"),
    ("score", "0.5"),
    ("score", "0.50"),
    ("whole", "3"),
    ("cached", "false"),
    ("cached", "False"),
    ("cached", "0"),
    ("streamed", "true"),
    ("streamed", "1"),
    ("empty", ""),
    ("version", "42"),
    ("unicode", 'héllo ☃ 😀 "q" back\\slash'),
    ("nothing", "null"),
    ("nothing", "None"),
    ("llm.invocation_parameters.stream", "true"),
    ("llm.invocation_parameters.stream", "false"),
    ("metadata.env", "prod"),
    ("metadata.tier", "2"),
    ("tag.tags.0", "x"),
    ("tag.tags.2", "7"),
    ("messages.1.role", "assistant"),
    ("long list.3", "3"),
    ("long list.30", "30"),  # beyond the indexed positions: read, not indexed
    ("tag.tags.00", "x"),  # not a plain position: read
    ("input.value", "p" * 300),  # too long to index: read
    ("n", "1"),
    ("n", "true"),
    ("big", str(2**62)),
    ("neg", "-7"),
    ("tiny", "1e-9"),
    ("huge", "1e300"),
    ("a.b.c", "deep"),
    ("a.b.c", "deep2"),
    ("no.such.key", "x"),
    ("tag.tags", '["x","y",7]'),
    # membership: an item of the list, by type
    ("tag.tags", "x"),
    ("tag.tags", "7"),
    ("tag.tags", "z"),
    ("tag.tags", "true"),
    ("long list", "3"),
    ("long list", "30"),  # beyond the indexed positions: the long-list marker
    ("long list", "99"),
    ("groups", "x"),
    ("flags", "false"),
    ("flags", "null"),
    ("llm.invocation_parameters", '{"stream":true}'),
]


@pytest.fixture
def varied(project):
    spans = {}
    for i, (name, attributes) in enumerate(ATTRIBUTE_SETS.items()):
        spans[name] = make_span(
            project, name=name, start=T0 + timedelta(seconds=i), attributes=attributes
        )
    attribute_index.index_new_spans()  # SQLite: index them, so filters use the index
    return spans


def _names(queryset) -> list[str]:
    return sorted(span.name for span in queryset)


@pytest.mark.parametrize("key, raw", QUERIES, ids=[f"{k}={v[:12]!r}" for k, v in QUERIES])
def test_the_index_finds_what_the_json_comparison_finds(project, varied, key, raw):
    exact = Span.objects.filter(project=project).filter(_attr_q(key, raw))

    found = filter_spans(project, SpanFilter(attrs=[(key, raw)]))

    assert _names(found) == _names(exact)


def test_most_queries_above_find_something(project, varied):
    # The property test above is only worth something if the queries hit.
    # (Which of the odd ones hit differs: SQLite's JSON equality takes null for
    # "null" and a list for its JSON text, PostgreSQL's does not.)
    hits = [
        (key, raw)
        for key, raw in QUERIES
        if Span.objects.filter(project=project).filter(_attr_q(key, raw)).exists()
    ]
    assert len(hits) >= len(QUERIES) - 11  # 3 membership queries hit nothing on purpose
    assert ("user.id", "u-1") in hits and ("long list.30", "30") in hits


@pytest.mark.parametrize(
    "key, raw, expected",
    [
        ("tag.tags", "x", ["lists"]),  # ["x", "y", 7]
        ("tag.tags", "y", ["lists"]),
        ("tag.tags", "7", ["list shapes", "lists"]),  # the number 7 and the string "7"
        ("tag.tags", "z", ["list shapes"]),  # stored nested: {"tag": {"tags": [...]}}
        ("tag.tags", "true", ["list shapes"]),
        ("tag.tags", "w", []),
        ("long list", "30", ["lists"]),  # past the indexed positions
        ("long list", "40", []),
        ("groups", "x", []),  # items of a list inside the list, or of an object in it, are not
        ("flags", "false", ["list shapes"]),
        ("messages", "user", []),
    ],
)
def test_a_list_attribute_matches_by_membership(project, varied, key, raw, expected):
    assert _names(filter_spans(project, SpanFilter(attrs=[(key, raw)]))) == expected


def test_spans_indexed_before_the_long_list_marker_are_indexed_again(project, varied):
    # Spans stored by the code before membership filters carry no long-list
    # marker; migration 0004 finds them and indexes them again.
    import importlib

    from django.apps import apps

    migration = importlib.import_module("agentloop.traces.migrations.0005_long_list_tokens")
    span = varied["lists"]
    marker = str(attribute_index._long_list_token("long list"))
    if connection.vendor == "postgresql":
        old = [t for t in span.attribute_tokens.split() if t != marker]
        Span.objects.filter(pk=span.pk).update(attribute_tokens=" ".join(old))
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {attribute_index.SQLITE_TABLE} SET attribute_tokens = %s WHERE rowid = %s",
                [" ".join(t for t in span_tokens(span) if t != marker), span.pk],
            )
    assert _names(filter_spans(project, SpanFilter(attrs=[("long list", "30")]))) == []

    class Editor:
        connection = connection

    migration.retokenise(apps, Editor())

    assert _names(filter_spans(project, SpanFilter(attrs=[("long list", "30")]))) == ["lists"]
    attribute_index.index_new_spans()  # SQLite: the indexer takes them off the queue
    assert _names(filter_spans(project, SpanFilter(attrs=[("long list", "30")]))) == ["lists"]


def span_tokens(span) -> list[str]:
    return attribute_index.attribute_tokens(Span.objects.get(pk=span.pk).attributes).split()


def _empty_the_index(project) -> None:
    """Take the spans' hashes out of the index behind the app's back."""
    if connection.vendor == "postgresql":
        Span.objects.filter(project=project).update(attribute_tokens="")
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {attribute_index.SQLITE_TABLE}")


def test_a_covered_filter_is_answered_from_the_index(project, varied):
    # With the index emptied, a filter the index answers finds nothing, though
    # the JSON still matches; one it cannot answer (a string too long to
    # index) still reads the spans.
    _empty_the_index(project)

    assert _names(filter_spans(project, SpanFilter(attrs=[("user.id", "u-1")]))) == []
    assert _names(filter_spans(project, SpanFilter(attrs=[("input.value", "p" * 300)]))) == ["long"]


@pytest.mark.parametrize(
    "key, raw, covered",
    [
        ("user.id", "u-1", True),
        ("tag.tags.15", "x", True),
        ("tag.tags.16", "x", False),
        ("tag.tags.-1", "x", False),
        ("tag.tags.01", "x", False),
        ("input.value", "p" * attribute_index.MAX_TEXT, True),
        ("input.value", "p" * (attribute_index.MAX_TEXT + 1), False),
        ("n", "12345678901234567890", True),
    ],
)
def test_which_filters_the_index_can_answer(key, raw, covered):
    assert (attribute_index.filter_tokens(key, _json_candidates(raw)) is not None) is covered


def test_equal_values_get_one_token_and_types_stay_apart():
    def tokens(attributes):
        return attribute_index.attribute_tokens(attributes).split()

    assert tokens({"k": 2}) == tokens({"k": 2.0}) == tokens({"k": 2e0})
    assert tokens({"k": True}) == tokens({"k": "true"}) != tokens({"k": 1})
    assert tokens({"k": None}) == tokens({"k": "null"})
    # PostgreSQL stores NUL as U+FFFD (ingest); both get one token.
    assert tokens({"k": "a\x00b"}) == tokens({"k": "a\ufffdb"})
    assert tokens({"k": "2"}) != tokens({"k": 2})
    assert tokens({"a": {"b": "x"}}) == tokens({"a": '{"b":"x"}', "a.b": "x"})
    assert tokens({"k": ["x"]}) == tokens({"k": '["x"]', "k.0": "x"})
    assert tokens({"k": "x" * (attribute_index.MAX_TEXT + 1)}) == []
    # A long list: its first items and a marker, not its JSON text (too long).
    assert len(tokens({"k": list(range(100))})) == attribute_index.MAX_LIST_ITEMS + 1
    assert len(tokens({"k": list(range(16))})) == attribute_index.MAX_LIST_ITEMS + 1  # + text


def test_ingested_spans_are_found_before_and_after_they_are_indexed(served_db, project):
    from agentloop.teams.models import ProjectApiKey

    key = ProjectApiKey.mint(project, "index")[1]
    trace = new_trace_id()
    request = export_request(
        (
            {"service.name": "app"},
            [
                span(trace_id=trace, span_id=new_span_id(), name=f"s{i}", attributes=attributes)
                for i, attributes in enumerate(
                    [{"user.id": "rare-user", "retries": 3}, {"user.id": "other", "ok": True}]
                )
            ],
        )
    )
    response = asgi_request(
        "POST",
        "/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200

    queries = [
        (("user.id", "rare-user"), ["s0"]),
        (("retries", "3"), ["s0"]),
        (("ok", "true"), ["s1"]),
    ]
    # At once: on SQLite read directly (the indexer has not reached them).
    for key_value, expected in queries:
        assert _names(filter_spans(project, SpanFilter(attrs=[key_value]))) == expected
    stored_at_ingest = Span.objects.get(project=project, name="s0").attribute_tokens
    assert (stored_at_ingest != "") is attribute_index.tokens_at_ingest()

    indexed = attribute_index.index_new_spans()

    assert indexed == (0 if attribute_index.tokens_at_ingest() else 2)
    for key_value, expected in queries:
        assert _names(filter_spans(project, SpanFilter(attrs=[key_value]))) == expected
        assert _names(Span.objects.filter(id__in=_indexed_ids(*key_value))) == expected
    if attribute_index.tokens_at_ingest():
        stored = Span.objects.get(project=project, name="s0")
        # (As sets: PostgreSQL's jsonb reads keys back in its own order.)
        expected_tokens = attribute_index.attribute_tokens(stored.attributes).split()
        assert sorted(stored.attribute_tokens.split()) == sorted(expected_tokens) != []


def _indexed_ids(key, raw) -> set[int]:
    """What the database's index itself returns for attr=key=raw (with SQLite's
    indexer caught up first, so no span is read for being past its mark)."""
    attribute_index.index_new_spans()
    tokens = attribute_index.filter_tokens(key, _json_candidates(raw))
    return set(Span.objects.filter(attribute_index.narrowing(tokens)).values_list("id", flat=True))


def test_the_index_follows_updates_and_deletes(project):
    first = make_span(project, name="first", attributes={"stage": "draft"})
    second = make_span(project, name="second", attributes={"stage": "draft"})
    assert _indexed_ids("stage", "draft") == {first.pk, second.pk}

    first.attributes = {"stage": "final"}
    first.save(update_fields=["attributes"])
    second.delete()

    assert _indexed_ids("stage", "draft") == set()
    assert _indexed_ids("stage", "final") == {first.pk}


def test_the_worker_trace_upsert_keeps_tokens_in_step(project):
    # bulk_create(update_conflicts=True) is how the worker's trace rewrites spans.
    span_row = make_span(project, name="turn", attributes={"turn": 1})
    replacement = Span(
        project=project,
        trace_id=span_row.trace_id,
        span_id=span_row.span_id,
        name="turn",
        start_time=span_row.start_time,
        end_time=span_row.end_time,
        duration_ms=1.0,
        attributes={"turn": 2},
    )
    replacement.index_attributes()
    Span.objects.bulk_create(
        [replacement],
        update_conflicts=True,
        unique_fields=partitions.span_unique_fields(),
        update_fields=["attributes", "attribute_tokens"],
    )

    assert _indexed_ids("turn", "2") == {span_row.pk}
    assert _indexed_ids("turn", "1") == set()


def test_a_common_value_on_sqlite_walks_the_spans_instead(project, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's planner chooses between the GIN index and a walk itself")
    monkeypatch.setattr(attribute_index, "SQLITE_MOST_CANDIDATES", 2)
    for i in range(3):
        make_span(project, name=f"c{i}", start=T0 + timedelta(seconds=i), attributes={"t": "x"})
    make_span(project, name="rare", attributes={"t": "y"})
    attribute_index.index_new_spans()

    assert attribute_index.narrowing(attribute_index.filter_tokens("t", ["x"])) is None
    assert attribute_index.narrowing(attribute_index.filter_tokens("t", ["y"])) is not None
    rows, _ = page_spans(filter_spans(project, SpanFilter(attrs=[("t", "x")])), None, 10)
    assert [s.name for s in rows] == ["c2", "c1", "c0"]


def test_the_sqlite_index_is_in_place_after_the_migrations(db):
    # A later migration that remakes traces_span on SQLite drops its triggers.
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        triggers = {row[0] for row in cursor.fetchall()}
    assert {
        "traces_span_attribute_index_delete",
        "traces_span_attribute_index_update",
    } <= triggers
    assert attribute_index.indexed_through() == 0  # spans stored before: the indexer's first
    # No insert trigger: it would cost every ingested row (attribute_index.py).
    assert "traces_span_attribute_index_insert" not in triggers


def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's indexer; on PostgreSQL ingest fills the index")


def test_the_indexer_works_in_batches_and_follows_changes(project):
    sqlite_only()
    spans = [make_span(project, name=f"i{i}", attributes={"user.id": "u9"}) for i in range(3)]

    assert attribute_index.index_new_spans(limit=2) == 2
    assert attribute_index.indexed_through() == spans[1].pk
    assert attribute_index.index_new_spans(limit=2) == 1
    assert attribute_index.index_new_spans(limit=2) == 0
    assert attribute_index.indexed_through() == spans[2].pk
    assert _indexed_ids("user.id", "u9") == {s.pk for s in spans}

    # A changed span is read directly until the indexer hashes it again.
    spans[0].attributes = {"user.id": "u10"}
    spans[0].save()
    assert _names(filter_spans(project, SpanFilter(attrs=[("user.id", "u10")]))) == ["i0"]
    assert attribute_index.index_new_spans() == 1
    assert attribute_index.index_new_spans() == 0
    assert _indexed_ids("user.id", "u10") == {spans[0].pk}
    assert _indexed_ids("user.id", "u9") == {spans[1].pk, spans[2].pk}


def test_spans_past_the_mark_are_read_directly(project):
    sqlite_only()
    attribute_index.index_new_spans()
    make_span(project, name="indexed", attributes={"user.id": "u7"})
    attribute_index.index_new_spans()
    make_span(project, name="late", attributes={"user.id": "u7"})  # past the mark

    assert _names(filter_spans(project, SpanFilter(attrs=[("user.id", "u7")]))) == [
        "indexed",
        "late",
    ]


def test_a_far_behind_indexer_means_reading_spans_newest_first(project, monkeypatch):
    sqlite_only()
    monkeypatch.setattr(attribute_index, "SQLITE_MOST_UNINDEXED", 1)
    for i in range(3):
        make_span(project, name=f"b{i}", start=T0 + timedelta(seconds=i), attributes={"k": "v"})

    assert attribute_index.narrowing(attribute_index.filter_tokens("k", ["v"])) is None
    assert _names(filter_spans(project, SpanFilter(attrs=[("k", "v")]))) == ["b0", "b1", "b2"]


def test_the_index_attributes_command(project):
    from io import StringIO

    from django.core.management import call_command

    span_row = make_span(project, name="x", attributes={"user.id": "u1"})
    out = StringIO()

    call_command("index_attributes", stdout=out)

    if attribute_index.tokens_at_ingest():
        assert "Nothing to do" in out.getvalue()
    else:
        assert "Indexed the attributes of 1 spans." in out.getvalue()
        assert _indexed_ids("user.id", "u1") == {span_row.pk}
