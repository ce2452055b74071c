"""Planner statistics: SQLite gets ANALYZE so filtered span pages use the right index."""

import pytest
from django.db import connection

from agentloop.traces.maintenance import refresh_planner_statistics
from tests.span_factory import make_span

pytestmark = pytest.mark.django_db


def test_sqlite_gets_statistics_for_the_span_indexes(project):
    for n in range(20):
        make_span(project, trace_id=f"{n:032x}", span_id=f"{n:016x}")
    refresh_planner_statistics()
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL keeps its own statistics (autovacuum)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT idx FROM sqlite_stat1 WHERE tbl = 'traces_span'")
        indexes = {row[0] for row in cursor.fetchall()}
    assert {"span_project_user", "span_project_kind"} <= indexes


def test_the_worker_refreshes_them_every_hour(db):
    from django_q.models import Schedule

    from agentloop.schedules import install_schedules

    install_schedules()
    install_schedules()  # idempotent

    (schedule,) = Schedule.objects.filter(name="agentloop.traces.planner_statistics")
    assert schedule.func == "agentloop.traces.maintenance.refresh_planner_statistics"
    assert schedule.schedule_type == Schedule.HOURLY and schedule.repeats == -1
