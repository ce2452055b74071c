"""PostgreSQL: the span filters and ingest on the week-partitioned spans table
against the unpartitioned one, at 5,000,000 spans.

    .venv/bin/python benches/bench_partitions.py                    # 5M spans, 3 rounds
    .venv/bin/python benches/bench_partitions.py --spans 200000 --rounds 1 --reps 5
    .venv/bin/python benches/bench_partitions.py --reuse            # keep the loaded databases

Two databases on the server of BENCH_PG_URL (default
postgres://postgres@127.0.0.1:5432/postgres): `agentloop_bench_part` migrated
as the code is (partitioned, migration 0004) and `agentloop_bench_unpart`
migrated and then taken back to traces 0003 (the plain table, as before).
Each gets the same data, bench_queries.load_dataset (one project of --spans
spans over 30 days plus a neighbour project, COPY, indexes built after,
VACUUM ANALYZE). Then --rounds rounds, each alternating the layouts (the
first layout changes every round): the filters of bench_queries.cases, as the
API runs them, --reps times each; then ingest: daphne serving agentloop.asgi on
that database, --batches OTLP protobuf batches of 512 spans stamped with the
current time (so they land in this week's partition), from 4 clients.
--reuse skips the load when both databases already hold it (and keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benches"))

import bench_ingest  # noqa: E402
import bench_queries  # noqa: E402

LAYOUTS = {"partitioned": "agentloop_bench_part", "unpartitioned": "agentloop_bench_unpart"}
STATE = bench_queries.BENCH_DIR / "partitions-{layout}.json"

INGEST_SETUP = """
import sys
import django
django.setup()
from django.contrib.auth import get_user_model
from agentloop.teams.models import Project, ProjectApiKey, Space
name = sys.argv[1]
owner = get_user_model().objects.create_user(name)
project = Project.objects.create(space=Space.create_with_owner(name, owner), name=name)
print(ProjectApiKey.mint(project, name)[1])
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=20, help="runs per query per round")
    parser.add_argument("--batches", type=int, default=80, help="ingest batches per round")
    parser.add_argument("--reuse", action="store_true", help="keep and reuse loaded databases")
    parser.add_argument(
        "--no-purge", action="store_true", help="skip the purge at the end (it deletes data)"
    )
    parser.add_argument("--child", choices=["load", "measure", "purge"], help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=list(LAYOUTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "load":
        return child_load(args.layout, args.spans)
    if args.child == "measure":
        return child_measure(args.layout, args.reps)
    if args.child == "purge":
        return child_purge(args.layout)

    bench_queries.BENCH_DIR.mkdir(parents=True, exist_ok=True)
    print(
        f"# partitioned against unpartitioned spans: {args.spans:,} spans, {args.rounds} rounds, "
        f"{args.reps} runs per query per round, {args.batches} ingest batches of "
        f"{bench_ingest.BATCH} per round"
    )
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {_load()}", flush=True)
    for layout, db in LAYOUTS.items():
        if args.reuse and _loaded(layout, db, args.spans):
            print(f"{layout}: reusing {db}")
            continue
        bench_queries._pg_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        bench_queries._pg_admin(f"CREATE DATABASE {db}")
        _child(["--child", "load", "--layout", layout, "--spans", str(args.spans)], db)
        print(f"  load average {_load()}, size {_size(db)}", flush=True)

    queries = {layout: [] for layout in LAYOUTS}  # per round: [result per case]
    ingest = {layout: [] for layout in LAYOUTS}  # per round: spans/s
    order = list(LAYOUTS)
    try:
        for round_ in range(args.rounds):
            for layout in order:
                out = bench_queries.BENCH_DIR / f"partitions-{layout}-round.json"
                _child(
                    ["--child", "measure", "--layout", layout, "--reps", str(args.reps)],
                    LAYOUTS[layout],
                )
                queries[layout].append(json.loads(out.read_text()))
                ingest[layout].append(measure_ingest(layout, round_, args.batches))
                print(f"  round {round_ + 1}, {layout}: done, load average {_load()}", flush=True)
            order.reverse()
        if not args.no_purge:
            for layout in LAYOUTS:
                _child(["--child", "purge", "--layout", layout], LAYOUTS[layout])
    finally:
        if not args.reuse:
            for db in LAYOUTS.values():
                bench_queries._pg_admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    report(queries, ingest)
    return 0


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def _env(db: str) -> dict:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="agentloop.settings", DEBUG="1")
    env.setdefault("AGENTLOOP_DERIVE_FERNET_KEY", "1")
    env["DATABASE_URL"] = bench_queries._pg_url(db)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _child(args: list[str], db: str) -> None:
    if subprocess.call([sys.executable, __file__, *args], env=_env(db), cwd=ROOT) != 0:
        raise SystemExit(f"child {' '.join(args)} failed")


def _loaded(layout: str, db: str, spans: int) -> bool:
    path = Path(str(STATE).format(layout=layout))
    if not path.exists():
        return False
    try:
        bench_queries._pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{db}'")
    except Exception:
        return False
    return json.loads(path.read_text()).get("spans") == spans


def _size(db: str) -> str:
    import psycopg

    with psycopg.connect(bench_queries._pg_url(db)) as conn:
        return conn.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()[0]


def _setup_django():
    import django

    django.setup()


def child_load(layout: str, spans: int) -> int:
    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    from agentloop.traces import partitions

    call_command("migrate", verbosity=0)
    if layout == "unpartitioned":
        call_command("migrate", "traces", "0003", verbosity=0)
    assert partitions.is_partitioned() == (layout == "partitioned")
    now = datetime.now(UTC).replace(microsecond=0)
    # The weeks of the 30 days of data, as the hourly schedule would have
    # made them while the spans came in (else they would all wait in the
    # default partition).
    partitions.ensure_partitions(now=now - timedelta(days=31), ahead=9)
    project, load = bench_queries.load_dataset(spans, now)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'traces_span'::regclass")
        parts = cursor.fetchone()[0]
    print(
        f"{layout}: loaded {load['spans']:,} spans in {load['seconds']:.0f} s (rows "
        f"{load['rows_seconds']:.0f} s, indexes {load['index_seconds']:.0f} s, analyze "
        f"{load['analyze_seconds']:.0f} s); {parts} partitions",
        flush=True,
    )
    Path(str(STATE).format(layout=layout)).write_text(
        json.dumps({"spans": spans, "now": now.isoformat(), "project": project.pk, "load": load})
    )
    return 0


def child_measure(layout: str, reps: int) -> int:
    _setup_django()
    from django.db import connection

    from agentloop.teams.models import Project
    from agentloop.traces.queries import filter_spans, page_spans, parse_span_filter

    state = json.loads(Path(str(STATE).format(layout=layout)).read_text())
    project = Project.objects.get(pk=state["project"])
    now = datetime.fromisoformat(state["now"])
    results = bench_queries.measure(project, now, reps)
    # Which partitions a time-bounded query reads: the plan says.
    plans = {}
    for label, params, _mode in bench_queries.cases(project, now):
        if "start" in params:

            def run(params=params):
                return page_spans(filter_spans(project, parse_span_filter(params)), None, 100)

            plans[label] = bench_queries._explain(connection, run)[1]
    for r in results:
        r.pop("sql", None)
        r.pop("plan", None)
    out = bench_queries.BENCH_DIR / f"partitions-{layout}-round.json"
    out.write_text(json.dumps({"results": results, "plans": plans}))
    return 0


def child_purge(layout: str) -> int:
    """The purge of the oldest week: a retention whose cutoff falls just after
    the first week of data ends, timed (this deletes the bench's spans)."""
    _setup_django()
    from django.db import connection

    from agentloop.teams.models import Project
    from agentloop.traces import partitions, retention

    state = json.loads(Path(str(STATE).format(layout=layout)).read_text())
    now = datetime.fromisoformat(state["now"])
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(start_time) FROM traces_span")
        oldest = cursor.fetchone()[0]
    first_week_end = partitions.week_start(oldest) + partitions.WIDTH
    days = (now - first_week_end).days
    Project.objects.update(retention_days=days)
    started = time.monotonic()
    purged = retention.purge_all(now=now)
    seconds = time.monotonic() - started
    spans = sum(p.spans for p in purged)
    dropped = sum(p.dropped_partitions for p in purged)
    print(
        f"purge ({layout}): retention {days} days, {spans:,} spans deleted in {seconds:.1f} s "
        f"({dropped} week partitions dropped), load average {_load()}",
        flush=True,
    )
    return 0


def measure_ingest(layout: str, round_: int, batches: int) -> float:
    from tests import otlp_payloads

    # Spans of this hour: they land in the current week's partition.
    otlp_payloads.T0_NS = int((time.time() - 3600) * 1e9)
    bodies = [
        otlp_payloads.benchmark_request(bench_ingest.BATCH, seed=i) for i in range(batches + 2)
    ]
    db = LAYOUTS[layout]
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-part-") as tmp:
        env = bench_ingest.bench_env(bench_queries._pg_url(db), Path(tmp))
        name = f"ingest{round_}{layout[:2]}"
        raw_key = (
            bench_ingest.django_python(["-c", INGEST_SETUP, name], env).strip().splitlines()[-1]
        )
        port = bench_ingest.free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
            + ["agentloop.asgi:application"],
            cwd=ROOT,
            env=env,
        )
        try:
            bench_ingest.wait_for_port(port, server)
            headers = {
                "Content-Type": "application/x-protobuf",
                "Authorization": f"Bearer {raw_key}",
            }
            bench_ingest.send_batches(port, headers, bodies[:2])
            rate, _cpu = bench_ingest.timed(
                f"{layout} round {round_ + 1}",
                4,
                server.pid,
                lambda: bench_ingest.send_concurrently(port, headers, bodies[2:], 4),
                batches,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    return rate


def report(queries, ingest) -> None:
    print(f"\nload average at the end: {_load()}")
    if not queries["partitioned"]:  # --rounds 0: the load (and purge) only
        return
    print("\n| query (p50 ms, median of the rounds) | partitioned | unpartitioned | ratio | rows |")
    print("|---|---:|---:|---:|---:|")
    labels = [r["label"] for r in queries["partitioned"][0]["results"]]
    for i, label in enumerate(labels):
        p = statistics.median(rnd["results"][i]["p50"] for rnd in queries["partitioned"])
        u = statistics.median(rnd["results"][i]["p50"] for rnd in queries["unpartitioned"])
        rows = queries["partitioned"][0]["results"][i]["rows"]
        print(f"| {label} | {p:.1f} | {u:.1f} | {p / u:.2f} | {rows} |")
    p = statistics.median(ingest["partitioned"])
    u = statistics.median(ingest["unpartitioned"])
    print(
        f"| ingest, 4 clients (spans/s, median; rounds: "
        f"{', '.join(f'{v:,.0f}' for v in ingest['partitioned'])} / "
        f"{', '.join(f'{v:,.0f}' for v in ingest['unpartitioned'])}) "
        f"| {p:,.0f} | {u:,.0f} | {p / u:.2f} | |"
    )
    for layout in LAYOUTS:
        for label, plan in queries[layout][-1]["plans"].items():
            print(f"\n### plan of {label} ({layout}, last round)\n{plan}")


if __name__ == "__main__":
    sys.exit(main())
