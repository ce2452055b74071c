"""Keep the database planner informed.

SQLite has no automatic statistics: without ANALYZE it picks a bad index for
some span filters (a `trace_id=` filter walked a whole 1M-span project, 0.5 s
instead of 2.5 ms; see docs/benchmarks.md). PostgreSQL's autovacuum does this
by itself, so this is a no-op there.
"""

from __future__ import annotations

from django.db import connection


def refresh_planner_statistics() -> None:
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        # analysis_limit bounds the work (about 10 ms at 1M spans).
        cursor.execute("PRAGMA analysis_limit=400")
        cursor.execute("ANALYZE")
