"""Span queries at 1,000,000 spans: the filters a user applies in the explorer/API.

    .venv/bin/python benches/bench_queries.py            # 1M spans, SQLite and PostgreSQL
    .venv/bin/python benches/bench_queries.py --quick    # 100k spans
    .venv/bin/python benches/bench_queries.py --db sqlite --spans 300000 --reps 20

For each database it builds a fresh one (SQLite: var/bench/queries.sqlite3;
PostgreSQL: database `agentloop_bench_q`, created and dropped, on the server of
BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres), migrates it,
bulk-loads one project (executemany on SQLite, COPY on PostgreSQL; secondary
indexes built after the load) and times each query as the API runs it:
`parse_span_filter` -> `filter_spans` -> `page_spans` (limit 100), rows
fetched and turned into Span objects. Reports p50/p95/p99 and prints the plan
of every query whose p50 misses the target (50 ms).

Each database runs in its own process, since Django's settings (DATABASE_URL)
are fixed at start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
PG_DB = "agentloop_bench_q"
TARGET_MS = 50.0


# -- parent: one child process per database -------------------------------------


def _pg_admin_url() -> str:
    return os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _pg_url(dbname: str) -> str:
    base = _pg_admin_url()
    return base.rsplit("/", 1)[0] + "/" + dbname


def run_on_fresh_database(
    db: str, command: list[str], env: dict, sqlite_path: Path, pg_db: str, keep: bool
) -> bool:
    """Run a bench child against a new database of its own; True if it failed.

    SQLite: a fresh file at sqlite_path. PostgreSQL: pg_db, created first and
    dropped after (unless keep); an unreachable server is reported and skipped.
    """
    env = dict(env)
    if db == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        env["DATABASE_URL"] = f"sqlite:///{sqlite_path}"
    else:
        try:
            _pg_admin(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
            _pg_admin(f"CREATE DATABASE {pg_db}")
        except Exception as exc:  # no server: say so and carry on with the others
            print(f"\n## postgres: skipped, cannot reach {_pg_admin_url()}: {exc}")
            return False
        env["DATABASE_URL"] = _pg_url(pg_db)
    try:
        return subprocess.call(command, env=env, cwd=ROOT) != 0
    finally:
        if not keep:
            if db == "postgres":
                _pg_admin(f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(_pg_admin_url(), autocommit=True) as conn:
        conn.execute(sql)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Span query latency at 1M spans.")
    parser.add_argument("--quick", action="store_true", help="100,000 spans instead of 1,000,000")
    parser.add_argument("--spans", type=int, help="number of spans (overrides --quick)")
    parser.add_argument("--reps", type=int, default=50, help="repetitions per query (default 50)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    spans = args.spans or (100_000 if args.quick else 1_000_000)
    if args.child:
        return child(args.db, spans, args.reps)

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print(
        f"# span queries: {spans:,} spans, {args.reps} repetitions per query, "
        f"target p50 <= {TARGET_MS:.0f} ms"
    )
    print(
        f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}"
    )
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="agentloop.settings", DEBUG="1")
    env.setdefault("AGENTLOOP_DERIVE_FERNET_KEY", "1")
    failed = False
    for db in dbs:
        command = [sys.executable, __file__, "--child", "--db", db, "--spans", str(spans)]
        command += ["--reps", str(args.reps)]
        failed |= run_on_fresh_database(
            db, command, env, BENCH_DIR / "queries.sqlite3", PG_DB, keep=args.keep
        )
    return 1 if failed else 0


# -- child: load one database and time the queries --------------------------------


def child(db: str, spans: int, reps: int) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    vendor = connection.vendor
    version = _server_version(connection)
    print(f"\n## {vendor} {version}")

    now = datetime.now(UTC).replace(microsecond=0)
    project, load = load_dataset(spans, now)
    print(
        f"load: {load['spans']:,} spans, {load['traces']:,} traces, "
        f"{load['annotations']:,} annotations in {load['seconds']:.1f} s "
        f"({load['spans'] / load['seconds']:,.0f} spans/s; rows {load['rows_seconds']:.1f} s, "
        f"indexes {load['index_seconds']:.1f} s, analyze {load['analyze_seconds']:.1f} s)"
    )
    if vendor == "sqlite":
        seconds = load["attribute_index_seconds"]
        print(
            f"attribute indexer catch-up (index_new_spans): {seconds:.1f} s, "
            f"{(load['spans'] + load['other_spans']) / seconds:,.0f} spans/s"
        )
    runs = [(vendor, measure(project, now, reps))]
    if vendor == "sqlite":
        # The app runs a bounded ANALYZE when it starts (agentloop/traces/
        # maintenance.py); measure before and after to show what it buys.
        from agentloop.traces.maintenance import refresh_planner_statistics

        started = time.monotonic()
        refresh_planner_statistics()
        connection.close()
        print(f"refresh_planner_statistics took {time.monotonic() - started:.2f} s")
        runs.append(("sqlite after refresh_planner_statistics", measure(project, now, reps)))
    for label, results in runs:
        _report(label, results)
    out = BENCH_DIR / f"queries-{vendor}.json"
    payload = {
        "vendor": vendor,
        "version": version,
        "load": load,
        "spans": spans,
        "reps": reps,
        "runs": {label: results for label, results in runs},
    }
    out.write_text(json.dumps(payload, indent=1))
    print(f"\n(results saved to {out.relative_to(ROOT)})")
    return 0


def _report(label, results):
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 cores shared: the noise floor)")
    print(f"| query ({label}) | p50 ms | p95 ms | p99 ms | rows | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        flag = "" if r["p50"] <= TARGET_MS else " **miss**"
        figures = f"{r['p50']:.1f}{flag} | {r['p95']:.1f} | {r['p99']:.1f}"
        print(f"| {r['label']} | {figures} | {r['rows']} | {r['runs']} |")
    for r in results:
        if r["p50"] > TARGET_MS:
            print(f"\n### EXPLAIN {r['label']} ({label}, p50 {r['p50']:.1f} ms)")
            print(f"{r['sql']}\n{r['plan']}")


def _server_version(connection) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        return cursor.fetchone()[0]


def _secondary_indexes(connection, table: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the indexes we can drop for the load and rebuild."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Not the primary key or unique constraints: those stay and check the load.
            cursor.execute(
                """SELECT i.indexname, i.indexdef FROM pg_indexes i
                   WHERE i.tablename = %s AND NOT EXISTS (
                     SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
                [table],
            )
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND sql IS NOT NULL",
                [table],
            )
        rows = list(cursor.fetchall())
    # A partitioned table's index reads back as CREATE INDEX … ON ONLY: made
    # so, it would cover no partition (and stay invalid).
    return [(name, sql.replace(" ON ONLY ", " ON ", 1)) for name, sql in rows]


def load_dataset(spans: int, now: datetime):
    from django.db import connection, transaction

    from agentloop.teams.models import Project, Space
    from agentloop.traces.attribute_index import index_new_spans, tokens_at_ingest
    from agentloop.traces.demo import (
        ANNOTATION_COLUMNS,
        SPAN_COLUMNS,
        SPAN_TIME_COLUMNS,
        TRACE_COLUMNS,
        iter_span_rows,
    )
    from agentloop.traces.models import Span, SpanAnnotation, Trace

    space = Space.objects.create(name="Bench", slug="bench")
    project = Project.objects.create(space=space, name="bench")
    # A second, small project, so every query really has to filter by project.
    other = Project.objects.create(space=space, name="neighbour")

    tables = [Span._meta.db_table, SpanAnnotation._meta.db_table, Trace._meta.db_table]
    pg = connection.vendor == "postgresql"
    started = time.monotonic()
    dropped = []
    with connection.cursor() as cursor:
        for table in tables:
            for name, sql in _secondary_indexes(connection, table):
                cursor.execute(f'DROP INDEX "{name}"')
                dropped.append(sql)
        if not pg:
            # Bulk-load settings for this connection only; the app's own
            # connections keep WAL + synchronous=NORMAL.
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-500000")

    counts = {"spans": 0, "other_spans": 0, "traces": 0, "annotations": 0}
    first_id = 1
    for pid, n, seed in ((other.pk, min(20_000, spans // 10), 99), (project.pk, spans, 1)):
        batches = iter_span_rows(
            pid, n, seed=seed, now=now, first_id=first_id, with_tokens=tokens_at_ingest()
        )
        for batch in batches:
            with transaction.atomic():
                _insert(
                    connection, Span._meta.db_table, SPAN_COLUMNS, batch.spans, SPAN_TIME_COLUMNS
                )
                _insert(connection, Trace._meta.db_table, TRACE_COLUMNS, batch.traces, (2, 3, 4))
                _insert(
                    connection,
                    SpanAnnotation._meta.db_table,
                    ANNOTATION_COLUMNS,
                    batch.annotations,
                    (10, 11),
                )
            first_id += len(batch.spans)
            counts["other_spans"] += len(batch.spans) if pid != project.pk else 0
            if pid == project.pk:
                counts["spans"] += len(batch.spans)
                counts["traces"] += len(batch.traces)
                counts["annotations"] += len(batch.annotations)
    rows_done = time.monotonic()
    with connection.cursor() as cursor:
        for sql in dropped:
            cursor.execute(sql)
    index_done = time.monotonic()
    # SQLite: what the app's attribute indexer does behind ingest, timed, on a
    # connection with the app's settings (not the bulk-load pragmas).
    connection.close()
    while index_new_spans(5000):
        pass
    attributes_done = time.monotonic()
    with connection.cursor() as cursor:
        if pg:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{Span._meta.db_table}', 'id'), %s)",
                [first_id],
            )
            # What autovacuum would have done by the time anyone queries.
            for table in tables:
                cursor.execute(f"VACUUM ANALYZE {table}")
        # SQLite: no ANALYZE, as the app never runs one; plans come from the
        # planner's defaults, which is what a real install gets.
    done = time.monotonic()
    # Measure on a fresh connection, like the app's: no bulk-load pragmas, and
    # (SQLite) a schema read after the indexes were rebuilt.
    connection.close()
    counts.update(
        seconds=done - started,
        rows_seconds=rows_done - started,
        index_seconds=index_done - rows_done,
        attribute_index_seconds=attributes_done - index_done,
        analyze_seconds=done - attributes_done,
    )
    return project, counts


def _insert(connection, table, columns, rows, time_positions):
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            names = ", ".join(columns)
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    # SQLite stores times as naive UTC text, exactly as Django writes them.
    if time_positions:
        converted = []
        for row in rows:
            row = list(row)
            for i in time_positions:
                row[i] = str(row[i].replace(tzinfo=None))
            converted.append(row)
        rows = converted
    placeholders = ", ".join("?" for _ in columns)
    raw = connection.connection  # the sqlite3 connection: no per-row wrapper cost
    raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)


# -- the queries ---------------------------------------------------------------------


def _pick(project, now):
    """Concrete values to filter on, taken from the data like a user would."""
    from agentloop.traces.models import Span

    rng = random.Random(5)
    spans = Span.objects.filter(project=project)
    sample = list(
        spans.filter(kind="TOOL").order_by("-start_time").values_list("name", flat=True)[:50]
    )
    some = spans.order_by("-start_time")[rng.randrange(1000, 5000)]
    llm = spans.filter(kind="LLM").order_by("-start_time")[rng.randrange(1000, 5000)]
    return {
        "tool_name": rng.choice(sample),
        "trace_id": some.trace_id,
        "user_id": some.user_id,
        "session_id": some.session_id,
        "total_tokens": llm.total_tokens,
    }


def cases(project, now) -> list[tuple[str, dict, str | None]]:
    """(label, request parameters, 'page2' to time the second page or None)."""
    picked = _pick(project, now)
    hour_ago = (now - timedelta(hours=1)).isoformat()
    day_ago = (now - timedelta(days=1)).isoformat()
    return [
        ("newest page (limit 100)", {}, None),
        ("kind=LLM", {"kind": "LLM"}, None),
        ("status=ERROR", {"status": "ERROR"}, None),
        (f"name={picked['tool_name']}", {"name": picked["tool_name"]}, None),
        ("trace_id=<one trace>", {"trace_id": picked["trace_id"]}, None),
        ("root=true", {"root": "true"}, None),
        ("start=last hour", {"start": hour_ago}, None),
        (
            "start..end = one day a week ago",
            {
                "start": (now - timedelta(days=8)).isoformat(),
                "end": (now - timedelta(days=7)).isoformat(),
            },
            None,
        ),
        ("attr=llm.model_name=claude-haiku-4", {"attr": "llm.model_name=claude-haiku-4"}, None),
        (
            "attr=metadata.customer_tier=enterprise",
            {"attr": "metadata.customer_tier=enterprise"},
            None,
        ),
        (
            "annotation=hallucination:hallucinated",
            {"annotation": "hallucination:hallucinated"},
            None,
        ),
        ("annotation=correctness", {"annotation": "correctness"}, None),
        ("kind=TOOL & status=ERROR", {"kind": "TOOL", "status": "ERROR"}, None),
        ("kind=LLM & start=last day", {"kind": "LLM", "start": day_ago}, None),
        ("user_id=<one user>", {"user_id": picked["user_id"]}, None),
        ("session_id=<one session>", {"session_id": picked["session_id"]}, None),
        ("second page via cursor", {}, "page2"),
        ("kind=LLM, second page via cursor", {"kind": "LLM"}, "page2"),
        (
            "attr=user.id=<one user> (rare value)",
            {"attr": f"user.id={picked['user_id']}"},
            None,
        ),
        # More of what the attribute index serves: a rarer value, a number, a
        # value of middling frequency, a common one, and combinations.
        (
            "attr=session.id=<one session>",
            {"attr": f"session.id={picked['session_id']}"},
            None,
        ),
        (
            "attr=llm.token_count.total=<a number>",
            {"attr": f"llm.token_count.total={picked['total_tokens']}"},
            None,
        ),
        (
            f"attr=tool.name={picked['tool_name']} (~0.1%)",
            {"attr": f"tool.name={picked['tool_name']}"},
            None,
        ),
        ("attr=metadata.customer_tier=free (~30%)", {"attr": "metadata.customer_tier=free"}, None),
        (
            "attr=user.id=<one user> & kind=LLM",
            {"attr": f"user.id={picked['user_id']}", "kind": "LLM"},
            None,
        ),
        (
            "attr=user.id=<one user>, second page via cursor",
            {"attr": f"user.id={picked['user_id']}"},
            "page2",
        ),
    ]


def measure(project, now, reps):
    from django.db import connection, reset_queries

    from agentloop.traces.queries import filter_spans, page_spans, parse_span_filter

    results = []
    for label, params, mode in cases(project, now):
        cursor = None
        if mode == "page2":
            _, cursor = page_spans(filter_spans(project, parse_span_filter(params)), None, 100)

        def run(params=params, cursor=cursor):
            span_filter = parse_span_filter(params)
            return page_spans(filter_spans(project, span_filter), cursor, 100)

        started = time.perf_counter()
        run()  # warm the caches once, as a user's second look would
        warm = time.perf_counter() - started
        # A query that takes seconds needs no 50 samples to show it misses.
        runs = reps if warm < 0.5 else max(5, min(reps, int(10 / warm)))
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            rows, _next = run()
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        result = {
            "label": label,
            "params": params,
            "rows": len(rows),
            "runs": runs,
            "p50": statistics.median(timings),
            "p95": _percentile(timings, 95),
            "p99": _percentile(timings, 99),
        }
        if result["p50"] > TARGET_MS:
            result["sql"], result["plan"] = _explain(connection, run)
        results.append(result)
        reset_queries()
    return results


def _percentile(sorted_values, pct):
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def _explain(connection, run):
    """The SQL the query ran and its plan (EXPLAIN ANALYZE on PostgreSQL)."""
    captured = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        run()
    sql, params = captured[-1]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            shown = cursor.cursor.mogrify(sql, params) if hasattr(cursor.cursor, "mogrify") else sql
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
            shown = sql
    # The column list is long and always the same: show it as `*`.
    shown = re.sub(r"^SELECT .*? FROM", "SELECT * FROM", str(shown), count=1)
    return shown, plan


if __name__ == "__main__":
    sys.exit(main())
