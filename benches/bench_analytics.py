"""Trace analytics at 1,000,000 spans: the aggregations Signal asks for.

    .venv/bin/python benches/bench_analytics.py            # 1M spans, SQLite and PostgreSQL
    .venv/bin/python benches/bench_analytics.py --quick    # 100k spans
    .venv/bin/python benches/bench_analytics.py --db sqlite --spans 300000 --reps 10

The data set is bench_queries' (same loader: one project of N spans over 30
days, ~3 % errors, annotations on ~5 %, plus a small neighbour project), in a
database of its own (SQLite: var/bench/analytics.sqlite3; PostgreSQL: database
`agentloop_bench_analytics` on BENCH_PG_URL's server). Each aggregation is
timed as the API runs it: `parse_analytics_query` -> `aggregate`, the whole
JSON-ready result built. Reports p50/p95 per aggregation; target p50 <= 1 s.

A 24-hour window of the 1M-span data set holds ~33k spans; the last two
aggregations read all 30 days, i.e. every span of the project.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_queries  # noqa: E402  (the loader and the fresh-database runner)

ROOT = bench_queries.ROOT
BENCH_DIR = bench_queries.BENCH_DIR
PG_DB = "agentloop_bench_analytics"
TARGET_MS = 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Trace analytics latency at 1M spans.")
    parser.add_argument("--quick", action="store_true", help="100,000 spans instead of 1,000,000")
    parser.add_argument("--spans", type=int, help="number of spans (overrides --quick)")
    parser.add_argument("--reps", type=int, default=10, help="repetitions per aggregation")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    spans = args.spans or (100_000 if args.quick else 1_000_000)
    if args.child:
        return child(spans, args.reps)

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print(f"# trace analytics: {spans:,} spans, {args.reps} repetitions, target p50 <= 1 s")
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
        failed |= bench_queries.run_on_fresh_database(
            db, command, env, BENCH_DIR / "analytics.sqlite3", PG_DB, keep=args.keep
        )
    return 1 if failed else 0


def cases(now: datetime) -> list[tuple[str, dict]]:
    day_ago = (now - timedelta(days=1)).isoformat()
    month_ago = (now - timedelta(days=31)).isoformat()
    end = now.isoformat()
    last_day = {"start": day_ago, "end": end}
    return [
        (
            "24 h: error rate by attr metadata.customer_tier, 1 h buckets",
            {**last_day, "group_by": "attr:metadata.customer_tier", "bucket": "1h"},
        ),
        (
            "24 h: p95 by name, baseline previous 24 h",
            {**last_day, "group_by": "name", "baseline": "previous"},
        ),
        (
            "24 h: kind x status, 1 h buckets, baseline 7 d earlier",
            {**last_day, "group_by": ["kind", "status"], "bucket": "1h", "baseline": "7d"},
        ),
        (
            "24 h: status=ERROR by exception.type, baseline previous",
            {**last_day, "status": "ERROR", "group_by": "exception.type", "baseline": "previous"},
        ),
        (
            "24 h: exception_type=httpx.ReadTimeout by name, 1 h buckets",
            {**last_day, "exception_type": "httpx.ReadTimeout", "group_by": "name", "bucket": "1h"},
        ),
        (
            "24 h: eval hallucination:hallucinated by name",
            {**last_day, "annotation": "hallucination:hallucinated", "group_by": "name"},
        ),
        (
            "24 h: min_duration_ms=2000 by user_id",
            {**last_day, "min_duration_ms": "2000", "group_by": "user_id"},
        ),
        ("30 d (every span): total, 1 d buckets", {"start": month_ago, "end": end, "bucket": "1d"}),
        (
            "30 d (every span): by kind, 1 d buckets",
            {"start": month_ago, "end": end, "group_by": "kind", "bucket": "1d"},
        ),
        (
            "30 d (every span): by attr metadata.customer_tier",
            {"start": month_ago, "end": end, "group_by": "attr:metadata.customer_tier"},
        ),
    ]


def child(spans: int, reps: int, no_rollups: bool = False) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from agentloop.traces.analytics import aggregate, parse_analytics_query

    call_command("migrate", verbosity=0)
    vendor = connection.vendor
    version = bench_queries._server_version(connection)
    print(f"\n## {vendor} {version}")
    now = datetime.now(UTC).replace(microsecond=0)
    project, load = bench_queries.load_dataset(spans, now)
    print(f"load: {load['spans']:,} spans in {load['seconds']:.1f} s")
    if vendor == "sqlite":
        # What the app runs hourly and at start (agentloop/traces/maintenance.py).
        from agentloop.traces.maintenance import refresh_planner_statistics

        refresh_planner_statistics()
    if not no_rollups:
        # What the worker does every minute behind ingest (agentloop/traces/rollups.py).
        from agentloop.traces import rollups

        started = time.perf_counter()
        rolled = rollups.catch_up(seconds=float("inf"))
        seconds = time.perf_counter() - started
        print(f"rollups: {rolled:,} spans in {seconds:.1f} s ({rolled / seconds:,.0f} spans/s)")
    connection.close()

    from django.conf import settings

    def timed(params, rollups_on: bool):
        settings.ANALYTICS_ROLLUPS = rollups_on
        started = time.perf_counter()
        result = aggregate(project, parse_analytics_query(params, now=now))  # warm once
        warm = time.perf_counter() - started
        runs = reps if warm < 2 else max(3, min(reps, int(20 / warm)))
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            aggregate(project, parse_analytics_query(params, now=now))
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        return result, runs, statistics.median(timings), bench_queries._percentile(timings, 95)

    results = []
    for label, params in cases(now):
        # The same question with and without the rollups, one after the other.
        result, runs, p50, p95 = timed(params, True)
        _, _, spans_p50, _ = timed(params, False)
        results.append(
            {
                "label": label,
                "params": params,
                "spans_in_window": result["total"]["spans"],
                "groups": len(result["groups"]),
                "runs": runs,
                "p50": p50,
                "p95": p95,
                "spans_only_p50": spans_p50,
            }
        )
    settings.ANALYTICS_ROLLUPS = True
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (2 cores shared)")
    print(
        f"| aggregation ({vendor}) | spans in window | p50 ms | p95 ms | runs "
        "| spans only p50 ms | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        flag = "" if r["p50"] <= TARGET_MS else " **miss**"
        print(
            f"| {r['label']} | {r['spans_in_window']:,} | {r['p50']:.0f}{flag} | "
            f"{r['p95']:.0f} | {r['runs']} | {r['spans_only_p50']:.0f} "
            f"| {r['spans_only_p50'] / max(r['p50'], 1e-9):.1f}x |"
        )
    out = BENCH_DIR / f"analytics-{vendor}.json"
    out.write_text(
        json.dumps(
            {"vendor": vendor, "version": version, "spans": spans, "results": results}, indent=1
        )
    )
    print(f"\n(results saved to {out.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
