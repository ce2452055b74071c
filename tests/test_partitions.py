"""PostgreSQL: spans partitioned by week of start_time (agentloop/traces/partitions.py).

Run with DATABASE_URL=postgres://...; on SQLite every test here is skipped
(SQLite keeps one plain table)."""

from __future__ import annotations

import importlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from agentloop.schedules import PARTITIONS_SCHEDULE, SCHEDULES
from agentloop.traces import partitions, retention
from agentloop.traces.models import Span, SpanAnnotation, Trace
from agentloop.traces.queries import filter_spans, page_spans, parse_span_filter
from tests.span_factory import make_span

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="spans are partitioned on PostgreSQL only; SQLite keeps one plain table",
    ),
]

# A Wednesday, years after the migration's weeks: every partition here is the tests' own.
NOW = datetime(2031, 1, 15, 12, 0, tzinfo=UTC)
MONDAY = datetime(2031, 1, 13, tzinfo=UTC)
WEEK = timedelta(weeks=1)


def _partition_of(span: Span) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM traces_span WHERE id = %s", [span.pk])
        return cursor.fetchone()[0]


def _names() -> set[str]:
    return {p.name for p in partitions.partitions()}


def test_the_spans_table_is_partitioned_with_a_default_partition():
    assert partitions.is_partitioned()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.relname = %s",
            [partitions.DEFAULT],
        )
        assert cursor.fetchone() == ("DEFAULT",)


def test_the_schedule_creates_this_week_and_four_ahead_once():
    created = partitions.ensure_partitions(now=NOW)

    assert created == [f"traces_span_p{(MONDAY + i * WEEK):%Y%m%d}" for i in range(5)]
    assert created[0] == "traces_span_p20310113"
    assert partitions.ensure_partitions(now=NOW) == []
    bounds = {p.name: (p.start, p.end) for p in partitions.partitions()}
    assert bounds["traces_span_p20310120"] == (MONDAY + WEEK, MONDAY + 2 * WEEK)


def test_the_partitions_are_created_hourly():
    assert SCHEDULES[PARTITIONS_SCHEDULE] == (
        "agentloop.traces.partitions.ensure_partitions_task",
        "hour",
    )


def test_rows_land_in_the_partition_of_their_week(project):
    partitions.ensure_partitions(now=NOW)
    sunday_night = make_span(project, name="a", start=MONDAY + WEEK - timedelta(microseconds=1))
    monday = make_span(project, name="b", start=MONDAY + WEEK)
    far_past = make_span(project, name="c", start=datetime(1970, 1, 1, tzinfo=UTC))

    assert _partition_of(sunday_night) == "traces_span_p20310113"
    assert _partition_of(monday) == "traces_span_p20310120"
    # No partition for it: the default one takes it rather than refusing the insert.
    assert _partition_of(far_past) == partitions.DEFAULT


def test_a_new_partition_takes_its_week_out_of_the_default_one(project):
    early = make_span(project, name="early", start=NOW)  # its week does not exist yet
    annotation = SpanAnnotation.objects.create(
        project=project, span=early, name="correctness", label="ok", annotator_kind="HUMAN"
    )
    assert _partition_of(early) == partitions.DEFAULT

    partitions.ensure_partitions(now=NOW)

    assert _partition_of(early) == "traces_span_p20310113"
    moved = Span.objects.get(pk=early.pk)
    assert (moved.name, moved.start_time) == ("early", NOW)
    assert SpanAnnotation.objects.get(pk=annotation.pk).span_id == early.pk


def test_a_re_sent_span_is_stored_once(project):
    partitions.ensure_partitions(now=NOW)
    span = make_span(project, trace_id="a" * 32, span_id="b" * 16, start=NOW)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO traces_span (project_id, trace_id, span_id, parent_span_id, name, kind, "
            "status_code, status_message, start_time, end_time, duration_ms, attributes, events, "
            "resource, model_name, session_id, user_id, attribute_tokens, created_at) "
            "SELECT project_id, trace_id, span_id, parent_span_id, name, kind, status_code, "
            "status_message, start_time, end_time, duration_ms, attributes, events, resource, "
            "model_name, session_id, user_id, attribute_tokens, created_at FROM traces_span "
            "WHERE id = %s ON CONFLICT DO NOTHING",
            [span.pk],
        )
        assert cursor.rowcount == 0
    assert Span.objects.filter(project=project).count() == 1


def _plan(project, params) -> str:
    queryset = filter_spans(project, parse_span_filter(params)).order_by("-start_time", "-id")
    sql, sql_params = queryset[:100].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, sql_params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_time_bounded_query_reads_only_the_weeks_it_covers(project):
    partitions.ensure_partitions(now=NOW - 2 * WEEK, ahead=4)
    for week in range(-2, 3):
        make_span(project, name=f"w{week}", start=NOW + week * WEEK)

    one_day = _plan(
        project,
        {
            "start": (NOW - timedelta(days=1)).isoformat(),
            "end": (NOW + timedelta(hours=1)).isoformat(),
        },
    )
    two_weeks = _plan(
        project,
        {"start": (NOW - WEEK).isoformat(), "end": (NOW + timedelta(hours=1)).isoformat()},
    )
    unbounded = _plan(project, {})

    assert set(_scanned(one_day)) == {"traces_span_p20310113"}
    assert set(_scanned(two_weeks)) == {"traces_span_p20310106", "traces_span_p20310113"}
    assert {"traces_span_p20301230", "traces_span_p20310127", partitions.DEFAULT} <= set(
        _scanned(unbounded)
    )
    rows, _ = page_spans(
        filter_spans(
            project,
            parse_span_filter(
                {"start": (NOW - WEEK).isoformat(), "end": (NOW + timedelta(hours=1)).isoformat()}
            ),
        ),
        None,
        100,
    )
    assert [s.name for s in rows] == ["w0", "w-1"]


def _scanned(plan: str) -> list[str]:
    return re.findall(r" on (traces_span_(?:p\d{8}|default))\b", plan)


def test_retention_drops_the_weeks_past_every_projects_retention_and_keeps_the_rest(
    project, other_project
):
    project.retention_days = 7
    project.save()  # other_project keeps its spans forever
    partitions.ensure_partitions(now=NOW - 4 * WEEK, ahead=5)
    gone_week = make_span(project, name="gone with its week", start=NOW - 4 * WEEK)
    SpanAnnotation.objects.create(
        project=project, span=gone_week, name="correctness", label="bad", annotator_kind="HUMAN"
    )
    make_span(project, name="also in that week", start=NOW - 4 * WEEK + timedelta(days=1))
    shared = make_span(project, name="deleted in a batch", start=NOW - 3 * WEEK)
    theirs = make_span(other_project, name="theirs", start=NOW - 3 * WEEK)
    recent = make_span(project, name="recent", start=NOW - timedelta(days=6))
    dropped_name = _partition_of(gone_week)
    shared_name = _partition_of(shared)

    purged = {p.project.pk: p for p in retention.purge_all(now=NOW)}

    names = _names()
    assert dropped_name not in names
    assert shared_name in names  # other_project still has a span in it
    assert list(Span.objects.order_by("name").values_list("name", flat=True)) == [
        "recent",
        "theirs",
    ]
    assert _partition_of(theirs) == shared_name and _partition_of(recent) in names
    assert not SpanAnnotation.objects.exists()
    assert (purged[project.pk].spans, purged[project.pk].dropped_partitions) == (3, 1)
    assert Trace.objects.filter(project=project).count() == 1
    assert other_project.pk not in purged


def test_retention_keeps_a_week_that_still_holds_a_span_within_the_retention(project):
    project.retention_days = 10
    project.save()
    partitions.ensure_partitions(now=NOW - 2 * WEEK, ahead=2)
    # Both in the week of 2030-12-30, on either side of the cutoff (Jan 5, 12:00).
    old = make_span(project, name="old", start=NOW - timedelta(days=10, hours=6))
    kept = make_span(project, name="kept", start=NOW - timedelta(days=9, hours=18))
    assert _partition_of(old) == _partition_of(kept) == "traces_span_p20301230"

    purged = retention.purge_all(now=NOW)

    # Its week ends after the cutoff: it stays, and the batches take the old span.
    assert _partition_of(kept) in _names()
    assert [s.name for s in Span.objects.all()] == ["kept"]
    assert (purged[0].spans, purged[0].dropped_partitions) == (1, 0)
    assert not Span.objects.filter(pk=old.pk).exists()


def test_the_purge_task_says_how_many_partitions_it_dropped(project, monkeypatch):
    project.retention_days = 1
    project.save()
    partitions.ensure_partitions(now=NOW - 3 * WEEK, ahead=0)
    make_span(project, name="old", start=NOW - 3 * WEEK)
    monkeypatch.setattr(retention.timezone, "now", lambda: NOW)
    monkeypatch.setattr(partitions.timezone, "now", lambda: NOW)

    assert retention.purge_task() == "purged 1 spans in 1 projects (1 partitions dropped)"


def _migration():
    return importlib.import_module("agentloop.traces.migrations.0006_span_partitions")


def test_the_migration_converts_a_table_with_data_both_ways(project):
    partitions.ensure_partitions(now=NOW)
    spans = [
        make_span(project, name="this week", start=NOW, attributes={"tier": "gold"}),
        make_span(project, name="far past", start=datetime(1970, 1, 1, tzinfo=UTC)),
        make_span(project, name="last month", start=NOW - timedelta(days=30)),
    ]
    SpanAnnotation.objects.create(
        project=project, span=spans[0], name="correctness", label="ok", annotator_kind="HUMAN"
    )
    before = list(Span.objects.order_by("id").values_list("id", "name", "start_time"))
    migration = _migration()

    with connection.schema_editor() as editor:
        migration.unpartition(None, editor)
    assert not partitions.is_partitioned()
    assert list(Span.objects.order_by("id").values_list("id", "name", "start_time")) == before

    with connection.schema_editor() as editor:
        migration.partition(None, editor)
    assert partitions.is_partitioned()
    assert list(Span.objects.order_by("id").values_list("id", "name", "start_time")) == before
    # A partition for each week that had spans (not 1970: five years back at most).
    assert _partition_of(spans[0]) == "traces_span_p20310113"
    assert _partition_of(spans[2]) == "traces_span_p20301216"
    assert _partition_of(spans[1]) == partitions.DEFAULT
    # The indexes, the key, the attribute filter and the id sequence carried over.
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'traces_span'")
        indexes = {row[0] for row in cursor.fetchall()}
    assert {
        "traces_span_pkey",
        "span_unique_in_project",
        "span_project_start",
        "span_project_roots",
        "span_attribute_tokens",
    } <= indexes
    with connection.cursor() as cursor:
        # Each index covers every partition (an index made "ON ONLY" the parent would not).
        cursor.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'traces_span_p20310113'::regclass"
        )
        assert cursor.fetchone()[0] == len(indexes)
        cursor.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'traces_span'::regclass "
            "AND NOT indisvalid"
        )
        assert cursor.fetchone()[0] == 0
    rows, _ = page_spans(filter_spans(project, parse_span_filter({"attr": "tier=gold"})), None, 10)
    assert [s.name for s in rows] == ["this week"]
    assert make_span(project, name="next").pk > max(pk for pk, _, _ in before)
    assert SpanAnnotation.objects.get().span_id == spans[0].pk
