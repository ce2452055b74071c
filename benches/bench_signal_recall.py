"""Signal's recall on planted failures: does it find what we know is there?

    .venv/bin/python benches/bench_signal_recall.py          # ~1M spans planted, ~1M clean; SQLite
    .venv/bin/python benches/bench_signal_recall.py --quick  # 3,000 traces each (~33k spans)
    .venv/bin/python benches/bench_signal_recall.py --db postgres --traces 20000 --clean-traces 5000

For each database it builds a fresh one (as benches/bench_queries.py does:
SQLite var/bench/signal.sqlite3, PostgreSQL database `agentloop_bench_signal`
on BENCH_PG_URL), loads two projects with agentloop/traces/planted.py — one
with the ten planted failure classes, one of clean traffic with background
noise only, both over the 24 h before now — and prints the truth.

Then it runs the detector, `agentloop.signal.detect.run_signal(project) ->
list[issue dict]`, on each project and scores its issues with
`planted.score` (matching rules in that module's docstring): per class
found / dimension / onset / evidence, recall, duplicates, and the false
positives on clean traffic. While the detector is being written the module
may not exist: then it says "Signal detector not available" and exits 0
after the truth.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_queries import run_on_fresh_database  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
PG_DB = "agentloop_bench_signal"
DETECTOR = "agentloop.signal.detect"
FULL_TRACES = 94_000  # ~10.6 spans a trace: ~1,000,000 spans
QUICK_TRACES = 3_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Signal recall on planted failures.")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRACES:,} traces each")
    parser.add_argument("--traces", type=int, help="traces in the planted project")
    parser.add_argument("--clean-traces", type=int, help="traces in the clean project")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--no-index", action="store_true", help="skip the SQLite attribute index")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument(
        "--detector", default=DETECTOR, help=f"module with run_signal (default {DETECTOR})"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    traces = args.traces or (QUICK_TRACES if args.quick else FULL_TRACES)
    clean_traces = args.clean_traces or traces
    if args.child:
        return child(traces, clean_traces, args.seed, args.detector, index=not args.no_index)

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print(f"# Signal recall: {traces:,} planted traces, {clean_traces:,} clean, seed {args.seed}")
    print(
        f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="agentloop.settings", DEBUG="1")
    env.setdefault("AGENTLOOP_DERIVE_FERNET_KEY", "1")
    failed = False
    for db in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        command = [sys.executable, __file__, "--child", "--traces", str(traces)]
        command += ["--clean-traces", str(clean_traces), "--seed", str(args.seed)]
        command += ["--detector", args.detector]
        command += ["--no-index"] if args.no_index else []
        failed |= run_on_fresh_database(
            db, command, env, BENCH_DIR / "signal.sqlite3", PG_DB, keep=args.keep
        )
    return 1 if failed else 0


def child(traces: int, clean_traces: int, seed: int, detector: str, *, index: bool) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from agentloop.teams.models import Project, Space
    from agentloop.traces.planted import CLEAN, PLANTED, load, score

    call_command("migrate", verbosity=0)
    print(f"\n## {connection.vendor}")
    now = datetime.now(UTC).replace(microsecond=0)
    space = Space.objects.create(name="Signal bench", slug="signal-bench")
    projects, truths = {}, {}
    for mode, n in ((PLANTED, traces), (CLEAN, clean_traces)):
        projects[mode] = Project.objects.create(space=space, name=f"{mode}-traffic")
        started = time.monotonic()
        truths[mode] = load(
            projects[mode], seed=seed, now=now, traces=n, mode=mode, index_attributes=index
        )
        seconds = time.monotonic() - started
        t = truths[mode]
        print(
            f"load {mode}: {t.traces:,} traces, {t.spans:,} spans, {t.annotations:,} "
            f"annotations in {seconds:.1f} s ({t.spans / seconds:,.0f} spans/s)"
        )
    # The worker refreshes the planner's statistics hourly; a database that grew from
    # nothing in the last minute would otherwise be planned as the empty one it was.
    from agentloop.traces.maintenance import refresh_planner_statistics

    refresh_planner_statistics()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    # What the worker does every minute behind ingest: analytics over the window
    # then reads totals per hour and five minutes (agentloop/traces/rollups.py).
    from agentloop.traces import rollups

    started = time.monotonic()
    rolled = rollups.catch_up(seconds=float("inf"))
    seconds = time.monotonic() - started
    print(f"rollups: {rolled:,} spans in {seconds:.1f} s ({rolled / seconds:,.0f} spans/s)")
    connection.close()  # a fresh connection for the detector, as the app's

    truth = truths[PLANTED]
    print(
        f"\n### planted classes (window {truth.start:%m-%d %H:%M} .. {truth.now:%m-%d %H:%M} UTC)"
    )
    print("| class | family | component | where | onset | end | traces | floor |")
    print("|---|---|---|---|---|---|---:|---|")
    for c in truth.classes:
        where = f"{c.dimension}={c.value}" if c.dimension else "–"
        onset = f"{c.onset:%H:%M}" if c.onset else "–"
        end = f"{c.end:%H:%M}" if c.end else "–"
        component = f"{c.component['kind']} {c.component['name']}"
        print(
            f"| {c.key} | {c.issue_class} | {component} | {where} | {onset} | {end} "
            f"| {len(c.trace_ids):,} | {c.severity_floor} |"
        )

    run_signal = _detector(detector)
    if run_signal is None:
        print(f"\nSignal detector not available ({detector}.run_signal): nothing to score.")
        return 0

    results = {}
    for mode in (PLANTED, CLEAN):
        started = time.monotonic()
        issues = run_signal(projects[mode])
        seconds = time.monotonic() - started
        results[mode] = score(issues, truths[mode])
        results[mode]["issues"] = len(issues)
        results[mode]["seconds"] = seconds
        print(f"\nrun_signal({mode}): {len(issues)} issues in {seconds:.1f} s")

    planted = results[PLANTED]
    print("\n| class | found | severity | dimension | onset | evidence | duplicates |")
    print("|---|---|---|---|---|---|---:|")
    for row in planted["classes"]:
        checks = ("severity_ok", "dimension_ok", "onset_ok")
        marks = [_mark(row["found"])] + [_mark(row[k]) if row["found"] else "–" for k in checks]
        evidence = _mark(row["evidence_ok"]) if row["found"] else "–"
        if row["found"] and not row["evidence_ok"]:
            evidence += f" ({row['evidence_precision']:.0%} in set)"
        print(f"| {row['key']} | {' | '.join(marks)} | {evidence} | {row['duplicates']} |")
    print(
        f"\nrecall {planted['found']}/{planted['planted']} ({planted['recall']:.0%}); "
        f"dimension {_pct(planted['dimension_accuracy'])}, "
        f"onset {_pct(planted['onset_accuracy'])}, "
        f"evidence {_pct(planted['evidence_accuracy'])}; duplicates {planted['duplicates']}; "
        f"false positives on planted traffic {planted['false_positives']}"
    )
    print(
        f"false positives on clean traffic: {results[CLEAN]['false_positives']} "
        f"(of {results[CLEAN]['issues']} issues)"
    )
    out = BENCH_DIR / f"signal-recall-{connection.vendor}.json"
    out.write_text(json.dumps({"truth": truth.summary(), "results": results}, indent=1))
    print(f"(results saved to {out.relative_to(ROOT)})")
    return 0


def _detector(module: str):
    """run_signal from the detector module, or None while it does not exist.
    A detector module that exists but fails to import is a failure, not a skip."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a parent package is missing
        spec = None
    if spec is None:
        return None
    return getattr(importlib.import_module(module), "run_signal", None)


def _mark(value) -> str:
    return "–" if value is None else ("yes" if value else "**no**")


def _pct(value) -> str:
    return "–" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    sys.exit(main())
