"""Retention: spans older than a project's retention_days are purged in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from agentloop.schedules import RETENTION_SCHEDULE, SCHEDULES
from agentloop.teams.models import Project
from agentloop.traces import attribute_index, retention, rollups
from agentloop.traces.models import EvalRollup, Span, SpanAnnotation, SpanRollup, Trace
from agentloop.traces.queries import filter_spans, parse_span_filter
from tests.span_factory import make_span

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def aged(project, days: float, name: str, **fields):
    return make_span(project, name=name, start=NOW - timedelta(days=days), **fields)


def test_it_deletes_spans_and_traces_older_than_the_retention(project, other_project):
    project.retention_days = 7
    project.save()
    old = aged(project, 8, "old")
    SpanAnnotation.objects.create(
        project=project, span=old, name="correctness", label="bad", annotator_kind="HUMAN"
    )
    aged(project, 6.9, "recent")
    aged(other_project, 30, "theirs")  # no retention: kept

    purged = retention.purge_project(project, now=NOW)

    assert (purged.spans, purged.traces) == (1, 1)
    assert list(Span.objects.filter(project=project).values_list("name", flat=True)) == ["recent"]
    assert Trace.objects.filter(project=project).count() == 1
    assert not SpanAnnotation.objects.exists()
    assert Span.objects.filter(project=other_project).count() == 1


def test_the_rollups_of_purged_intervals_go_too(project, monkeypatch):
    monkeypatch.setattr(rollups, "MIN_SPANS", 1)  # rolled up as a big project is
    project.retention_days = 7
    project.save()
    old = aged(project, 8, "old")
    SpanAnnotation.objects.create(
        project=project, span=old, name="correctness", label="bad", annotator_kind="HUMAN"
    )
    aged(project, 6, "recent")
    rollups.catch_up(seconds=60)
    old_at = int(old.start_time.timestamp()) // 3600 * 3600
    assert SpanRollup.objects.filter(project=project, at=old_at, name="old").exists()
    assert EvalRollup.objects.filter(project=project, at=old_at, name="old").exists()

    retention.purge_project(project, now=NOW)

    assert not SpanRollup.objects.filter(project=project, name="old").exists()
    assert not EvalRollup.objects.filter(project=project).exists()
    assert SpanRollup.objects.filter(project=project, name="recent").exists()


def test_it_deletes_in_batches(project):
    project.retention_days = 1
    project.save()
    for i in range(7):
        aged(project, 2 + i, f"old{i}")
    aged(project, 0.5, "new")
    statements = []

    def count_deletes(execute, sql, params, many, context):
        if sql.startswith('DELETE FROM "traces_span"'):
            statements.append(len(params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count_deletes):
        purged = retention.purge_project(project, now=NOW, batch=3)

    assert purged.spans == 7
    assert statements == [3, 3, 1]
    assert [s.name for s in Span.objects.filter(project=project)] == ["new"]


def test_a_trace_with_a_span_still_kept_stays(project):
    project.retention_days = 7
    project.save()
    aged(project, 8, "first", trace_id="e" * 32)
    make_span(project, name="later", trace_id="e" * 32, start=NOW - timedelta(days=1))

    retention.purge_project(project, now=NOW)

    assert Trace.objects.filter(project=project, trace_id="e" * 32).exists()
    assert [s.name for s in Span.objects.filter(project=project)] == ["later"]


def test_purged_spans_leave_the_attribute_index(project):
    project.retention_days = 7
    project.save()
    aged(project, 8, "old", attributes={"tier": "gold"})
    aged(project, 1, "new", attributes={"tier": "gold"})
    if not attribute_index.tokens_at_ingest():
        attribute_index.index_new_spans()

    retention.purge_project(project, now=NOW)

    found = filter_spans(project, parse_span_filter({"attr": "tier=gold"}))
    assert [s.name for s in found] == ["new"]


def test_a_project_without_retention_keeps_everything(project):
    aged(project, 3650, "ancient")
    assert retention.purge_project(project, now=NOW).spans == 0
    assert Span.objects.count() == 1


def test_the_purge_command_reports_what_it_deleted(project, space):
    project.retention_days = 1
    project.save()
    make_span(project, name="old", start=datetime(2020, 1, 1, tzinfo=UTC))
    out = StringIO()

    call_command("purge", stdout=out)

    assert "support-bot: deleted 1 spans and 1 traces that started before" in out.getvalue()
    assert not Span.objects.exists()


def test_the_purge_command_refuses_a_project_that_keeps_its_spans(project):
    with pytest.raises(CommandError, match="keeps its spans"):
        call_command("purge", project=project.pk, stdout=StringIO())
    with pytest.raises(CommandError, match="No project with id"):
        call_command("purge", project=999999, stdout=StringIO())


def test_the_purge_is_scheduled():
    assert SCHEDULES[RETENTION_SCHEDULE] == ("agentloop.traces.retention.purge_task", "hour")


# --- the settings page -------------------------------------------------------------------


def retention_url(project):
    return reverse("project-retention", args=[project.pk])


def test_an_admin_sets_and_clears_the_retention(client_for, alice, project):
    client = client_for(alice)
    page = client.post(retention_url(project), {"retention_days": "30"}, follow=True)
    assert Project.objects.get(pk=project.pk).retention_days == 30
    assert "more than <strong>30 days</strong> ago are deleted" in page.content.decode()

    client.post(retention_url(project), {"retention_days": ""})
    assert Project.objects.get(pk=project.pk).retention_days is None


def test_a_retention_below_a_day_is_refused(client_for, alice, project):
    response = client_for(alice).post(retention_url(project), {"retention_days": "0"})
    assert response.status_code == 400
    assert "greater than or equal to 1" in response.content.decode()
    assert Project.objects.get(pk=project.pk).retention_days is None


@pytest.mark.parametrize(("who", "status"), [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_admins_set_the_retention(client_for, users, project, who, status):
    response = client_for(users[who]).post(retention_url(project), {"retention_days": "1"})
    assert response.status_code == status
    assert Project.objects.get(pk=project.pk).retention_days is None
