"""Ingest while a retention purge runs: spans/s of one client with and without
`manage.py purge` deleting old spans beside it, on a real daphne.

    .venv/bin/python benches/bench_retention.py              # SQLite, then PostgreSQL
    .venv/bin/python benches/bench_retention.py --no-postgres --preload 60 --batches 20

For each database: a fresh one with one project and key; `--preload` batches
of 512 old spans (the benchmark batches' own 2025 times); the project's
retention set to 30 days, so every preloaded span is past it; then
`--batches` batches of current spans sent alone, then the same number again
while `purge` runs (in batches of 5,000, each its own transaction), in
alternating rounds. The purge's own time and the spans it deleted are
reported, and the stored rows are counted at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benches"))

from bench_ingest import (  # noqa: E402
    BATCH,
    SETUP_SCRIPT,
    bench_env,
    create_pg_database,
    django_python,
    drop_pg_database,
    free_port,
    send_batches,
    wait_for_port,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from tests.otlp_payloads import benchmark_request  # noqa: E402

RETENTION_SCRIPT = """
import django
django.setup()
from agentloop.teams.models import Project
Project.objects.filter(name="bench").update(retention_days=30)
"""
COUNT_SCRIPT = """
import django
django.setup()
from agentloop.traces.models import Span
print(Span.objects.count())
"""


def recent(body: bytes, shift_ns: int) -> bytes:
    """The same batch with its spans moved `shift_ns` later (to now)."""
    request = ExportTraceServiceRequest.FromString(body)
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.start_time_unix_nano += shift_ns
                span.end_time_unix_nano += shift_ns
    return request.SerializeToString()


def run(label: str, url: str, tmp: Path, preload: int, batches: int, rounds: int) -> list[str]:
    env = bench_env(url, tmp)
    django_python([str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env)
    raw_key = django_python(["-c", SETUP_SCRIPT], env).strip().splitlines()[-1]
    old = [benchmark_request(BATCH, seed=i) for i in range(preload)]
    first = ExportTraceServiceRequest.FromString(old[0])
    shift = time.time_ns() - first.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano
    fresh = [
        recent(benchmark_request(BATCH, seed=10_000 + i), shift)
        for i in range(2 * batches * rounds)
    ]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
        + ["agentloop.asgi:application"],
        cwd=ROOT,
        env=env,
    )
    lines = []
    try:
        wait_for_port(port, server)
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {raw_key}"}
        send_batches(port, headers, old)
        django_python(["-c", RETENTION_SCRIPT], env)
        for round_number in range(rounds):
            alone = fresh[2 * round_number * batches : (2 * round_number + 1) * batches]
            during = fresh[(2 * round_number + 1) * batches : (2 * round_number + 2) * batches]
            if round_number:  # old spans to purge again
                send_batches(port, headers, [recent(b, 0) for b in old[: preload // 2]])
            started = time.perf_counter()
            send_batches(port, headers, alone)
            rate_alone = len(alone) * BATCH / (time.perf_counter() - started)
            purge = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "purge"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            purge_started = started = time.perf_counter()
            send_batches(port, headers, during)
            rate_during = len(during) * BATCH / (time.perf_counter() - started)
            output, _ = purge.communicate(timeout=600)
            purge_seconds = time.perf_counter() - purge_started
            line = (
                f"| {label} | {round_number + 1} | {rate_alone:,.0f} | {rate_during:,.0f} "
                f"| {rate_during / rate_alone:.2f} | {output.strip().split(' that ')[0]} "
                f"in {purge_seconds:.1f} s |"
            )
            print(line, flush=True)
            lines.append(line)
    finally:
        server.terminate()
        server.wait(timeout=30)
    stored = int(django_python(["-c", COUNT_SCRIPT], env).split()[-1])
    expected = 2 * batches * rounds * BATCH
    print(f"  {label}: {stored:,} spans left (expected {expected:,}: every fresh one, no old one)")
    if stored != expected:
        raise SystemExit(f"{label}: {stored} spans left, expected {expected}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preload", type=int, default=100, help="old batches of 512 spans")
    parser.add_argument("--batches", type=int, default=20, help="fresh batches per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--quick", action="store_true", help="20 old batches, 5 per measurement")
    args = parser.parse_args(argv)
    if args.quick:
        args.preload, args.batches, args.rounds = 20, 5, 1
    load = os.getloadavg()[0]
    lines = []
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-retention-") as tmp:
        if not args.no_sqlite:
            lines += run(
                "SQLite",
                f"sqlite:///{tmp}/bench.sqlite3",
                Path(tmp),
                args.preload,
                args.batches,
                args.rounds,
            )
        if not args.no_postgres:
            admin = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
            url = create_pg_database(admin)
            try:
                lines += run("PostgreSQL", url, Path(tmp), args.preload, args.batches, args.rounds)
            finally:
                drop_pg_database(admin)
    print(
        f"\n### Ingest during a purge, {date.today().isoformat()}, {args.preload} x {BATCH} old "
        f"spans, {args.batches} batches per measurement, load average {load:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)\n"
    )
    print("| database | round | spans/s alone | spans/s during purge | ratio | purge |")
    print("|---|---:|---:|---:|---:|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
