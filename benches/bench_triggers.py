"""Trigger evaluation: 1,000 metric automations over a project of 1,000,000 spans.

    .venv/bin/python benches/bench_triggers.py            # 1M spans, 1,000 automations, PostgreSQL
    .venv/bin/python benches/bench_triggers.py --quick    # 100k spans, 100 automations
    .venv/bin/python benches/bench_triggers.py --db sqlite --spans 200000 --automations 200

Builds a fresh database (PostgreSQL: `agentloop_bench_t`, created and dropped;
SQLite: var/bench/triggers.sqlite3), loads one project with the span loader of
bench_queries (COPY on PostgreSQL), then creates metric automations on that
project with a mix of metrics, windows (5-60 min) and filters, all due in the
same tick, bound to an analyst preset. It times `agentloop.automations.actions.tick(now=...)`
(wall clock) for several ticks, each at a different slot inside the loaded
data, and reports p50 and max per tick plus the mean evaluation time per
metric. Target: <= 10 s per tick on PostgreSQL.

No sandbox starts: a fire creates a queued run and puts its launch on the
django-q ORM queue of the bench database, where no cluster is listening. That
insert is part of the tick, as it is in production; thresholds are set so that
only a few automations fire, and the count is reported.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
PG_DB = "agentloop_bench_t"
TARGET_S = 10.0

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_queries import run_on_fresh_database  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Metric trigger evaluation per tick.")
    parser.add_argument("--quick", action="store_true", help="100k spans, 100 automations")
    parser.add_argument("--spans", type=int, help="number of spans (overrides --quick)")
    parser.add_argument("--automations", type=int, help="number of automations")
    parser.add_argument("--ticks", type=int, default=5, help="ticks to time (default 5)")
    parser.add_argument(
        "--days",
        type=int,
        default=30,
        help="days the spans spread over (default 30, as bench_queries; 1 = dense windows)",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="postgres")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    spans = args.spans or (100_000 if args.quick else 1_000_000)
    automations = args.automations or (100 if args.quick else 1_000)
    if args.child:
        return child(spans, automations, args.ticks, args.days)

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print(
        f"# trigger evaluation: {spans:,} spans, {automations:,} metric automations, "
        f"over {args.days} days, {args.ticks} ticks, target <= {TARGET_S:.0f} s per tick"
    )
    print(
        f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}"
    )
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="agentloop.settings", DEBUG="0")
    env.setdefault("SECRET_KEY", "bench-triggers-not-secret")
    env.setdefault("AGENTLOOP_DERIVE_FERNET_KEY", "1")
    failed = False
    for db in dbs:
        command = [sys.executable, __file__, "--child", "--spans", str(spans)]
        command += ["--automations", str(automations), "--ticks", str(args.ticks)]
        command += ["--days", str(args.days)]
        failed |= run_on_fresh_database(
            db, command, env, BENCH_DIR / "triggers.sqlite3", PG_DB, keep=args.keep
        )
    return 1 if failed else 0


# -- the automations ------------------------------------------------------------------

# (metric, filters, comparison, threshold that rarely holds on the demo data).
# The demo data: ~3 % errors, lognormal latencies (median ~245 ms), annotations
# on ~5 % of spans with 80 % "good" labels, no cost attribute (cost = no data).
METRIC_MIX = [
    ("span_count", {}, ">", 100_000),
    ("span_count", {"filter_kind": "LLM"}, ">", 100_000),
    ("error_rate", {}, ">", 0.5),
    ("error_rate", {"filter_kind": "TOOL"}, ">", 0.5),
    ("error_rate", {"filter_attribute": "metadata.customer_tier", "filter_value": "pro"}, ">", 0.5),
    ("latency_p50", {}, ">", 60_000),
    ("latency_p95", {}, ">", 60_000),
    ("latency_p99", {}, ">", 60_000),
    ("latency_p95", {"filter_kind": "LLM"}, ">", 60_000),
    ("latency_p99", {"filter_name": "ChatCompletion"}, ">", 60_000),
    ("latency_p50", {"filter_kind": "RETRIEVER"}, ">", 60_000),
    ("eval_label_rate", {"eval_name": "correctness", "eval_label": "incorrect"}, ">", 0.9),
    ("eval_label_rate", {"eval_name": "user_feedback", "eval_label": "thumbs_down"}, ">", 0.9),
    ("eval_score_mean", {"eval_name": "hallucination"}, "<", 0.01),
    ("total_tokens", {}, ">", 10**12),
    ("total_tokens", {"filter_name": "ChatCompletion"}, ">", 10**12),
    ("cost", {}, ">", 10**6),
]
WINDOWS = (5, 10, 15, 30, 60)
FIRING_EVERY = 100  # one automation in 100 gets a threshold that holds: ~1 % fire


def create_automations(project, n: int, now: datetime):
    from agentloop.automations.models import Automation
    from agentloop.presets.models import AgentPreset

    preset = AgentPreset.objects.create(
        space=project.space, name="Bench analyst", harness="analyst", model="claude-sonnet-4-5"
    )
    rng = random.Random(7)
    rows = []
    for i in range(n):
        metric, filters, comparison, threshold = METRIC_MIX[i % len(METRIC_MIX)]
        if i % FIRING_EVERY == FIRING_EVERY - 1:
            comparison, threshold = ">=", 0.0  # holds whenever there is data
        rows.append(
            Automation(
                space=project.space,
                project=project,
                preset=preset,
                name=f"bench {i:04d} {metric}",
                prompt="Investigate.",
                trigger=Automation.METRIC,
                metric=metric,
                comparison=comparison,
                threshold=threshold,
                window_minutes=rng.choice(WINDOWS),
                every_minutes=rng.choice((1, 5, 10, 15)),
                min_spans=10,
                next_fire_at=now,
                created_at=now,
                updated_at=now,
                **filters,
            )
        )
    Automation.objects.bulk_create(rows, batch_size=500)
    return preset


# -- child: load, create, tick ---------------------------------------------------------


def child(spans: int, n_automations: int, ticks: int, days: int) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from bench_queries import _server_version, load_dataset
    from django.core.management import call_command
    from django.db import connection

    import agentloop.traces.demo as demo
    from agentloop.automations import actions as automations
    from agentloop.automations import metrics
    from agentloop.automations.models import Automation, AutomationFire

    # load_dataset imports iter_span_rows from the module when it runs: spread
    # the spans over `days` (fewer days, more spans in each trigger window).
    demo.iter_span_rows = functools.partial(demo.iter_span_rows, days=days)
    call_command("migrate", verbosity=0)
    print(f"\n## {connection.vendor} {_server_version(connection)}")
    now = datetime.now(UTC).replace(microsecond=0, second=0)
    project, load = load_dataset(spans, now)
    print(
        f"load: {load['spans']:,} spans, {load['annotations']:,} annotations in "
        f"{load['seconds']:.1f} s"
    )
    create_automations(project, n_automations, now)

    # Per-metric evaluation time: wrap the function tick calls (module attribute).
    per_metric: dict[str, list[float]] = defaultdict(list)
    original = metrics.evaluate

    def timed_evaluate(automation, at):
        started = time.perf_counter()
        try:
            return original(automation, at)
        finally:
            per_metric[automation.metric].append(time.perf_counter() - started)

    metrics.evaluate = timed_evaluate
    queries = [0]

    def count_queries(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    results = []
    for k in range(ticks + 1):  # tick 0 warms caches and is not counted
        # Each tick at its own hour in the past, inside the loaded data, so every
        # window has spans and every fire key (automation, slot) is new.
        at = now - timedelta(hours=k + 1, minutes=7)
        Automation.objects.update(next_fire_at=at - timedelta(seconds=1), enabled=True)
        per_metric_before = {m: len(v) for m, v in per_metric.items()}
        queries[0] = 0
        with connection.execute_wrapper(count_queries):
            started = time.perf_counter()
            fired = automations.tick(now=at)
            seconds = time.perf_counter() - started
        evaluated = sum(len(v) - per_metric_before.get(m, 0) for m, v in per_metric.items())
        started_runs = sum(1 for f in fired if f.outcome == AutomationFire.STARTED)
        label = "warm-up" if k == 0 else f"tick {k}"
        print(
            f"{label}: {seconds:.2f} s, {evaluated} evaluated, {len(fired)} fired "
            f"({started_runs} started a run), {queries[0]} queries, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        if k == 0:
            per_metric.clear()
        else:
            results.append((seconds, evaluated, len(fired), queries[0]))
    metrics.evaluate = original

    times = [r[0] for r in results]
    p50, worst = statistics.median(times), max(times)
    verdict = "meets" if worst <= TARGET_S else "**misses**"
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"\n| {connection.vendor}: {spans:,} spans, {n_automations:,} automations "
        "| p50 s | max s | evaluated | fired | queries |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| tick ({len(results)} ticks; {verdict} {TARGET_S:.0f} s) | {p50:.2f} | {worst:.2f} "
        f"| {results[0][1]} | {statistics.median(r[2] for r in results):.0f} "
        f"| {statistics.median(r[3] for r in results):.0f} |"
    )
    print("\n| metric | evaluations per tick | mean ms | max ms | share of evaluation |")
    print("|---|---:|---:|---:|---:|")
    total = sum(sum(v) for v in per_metric.values())
    for metric, values in sorted(per_metric.items(), key=lambda kv: -sum(kv[1])):
        print(
            f"| {metric} | {len(values) // len(results)} | {1000 * statistics.mean(values):.1f} "
            f"| {1000 * max(values):.1f} | {100 * sum(values) / total:.0f} % |"
        )
    print(
        f"\nevaluation {total / len(results):.2f} s of {statistics.mean(times):.2f} s per tick; "
        "the rest is claiming slots, storing values and firing"
    )
    explain_slowest(project, now - timedelta(hours=1, minutes=7), per_metric)
    return 0


def explain_slowest(project, at, per_metric):
    """EXPLAIN ANALYZE of the query behind the slowest metric (PostgreSQL)."""
    from django.db import connection

    from agentloop.automations import metrics
    from agentloop.automations.models import Automation

    if connection.vendor != "postgresql" or not per_metric:
        return
    metric = max(per_metric, key=lambda m: statistics.mean(per_metric[m]))
    automation = (
        Automation.objects.filter(metric=metric, window_minutes=60).first()
        or Automation.objects.filter(metric=metric).first()
    )
    spans = metrics.window_spans(automation, at)
    if metric in metrics.PERCENTILES:
        query = spans.order_by("-start_time").values_list("duration_ms", flat=True)[
            : metrics.MAX_PERCENTILE_SPANS
        ]
    elif metric == "cost":
        query = spans.filter(kind="LLM").values_list("attributes", flat=True)[
            : metrics.MAX_PERCENTILE_SPANS
        ]
    else:
        query = spans.values("pk")
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    print(f"\n### EXPLAIN ANALYZE, slowest metric: {metrics.describe(automation)}\n{plan}")


if __name__ == "__main__":
    sys.exit(main())
