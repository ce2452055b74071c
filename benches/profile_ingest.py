"""Where ingest's CPU goes: the server's work for OTLP batches, in one process.

    .venv/bin/python benches/profile_ingest.py                 # SQLite, CPU per span
    .venv/bin/python benches/profile_ingest.py --postgres      # and the database's own CPU
    .venv/bin/python benches/profile_ingest.py --profile       # cProfile's top functions
    .venv/bin/python benches/profile_ingest.py --code DIR      # another copy of the code

It calls `ingest_app.receive_export` — what the `/v1/traces` thread runs for
a request: key, decoding, storing, commit — on the bench's batches of 512
spans (benches/bench_ingest.py), on a fresh migrated database (a SQLite file
in a temporary folder, or the PostgreSQL database BENCH_PG_DATABASE, default
agentloop_profile, created and dropped here). It prints the calling thread's
CPU per span, the whole process's (with the WAL checkpoint thread), and on
PostgreSQL the CPU of the connection's backend process, which bench_ingest's
"server CPU" does not include. Not in these figures: daphne's HTTP handling
(~4 µs a span for these 288 KiB bodies, measured apart) and, on SQLite, the
attribute indexer's own process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benches"))

import bench_ingest  # noqa: E402

PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "agentloop_profile")

SCRIPT = """
import cProfile, os, pstats, sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection
from agentloop.teams.models import Project, ProjectApiKey, Space
from agentloop.traces.ingest_app import receive_export
from tests.otlp_payloads import benchmark_request

batches, profile = int(sys.argv[1]), sys.argv[2] == "1"
owner = get_user_model().objects.create_user("profile")
project = Project.objects.create(space=Space.create_with_owner("P", owner), name="profile")
raw_key = ProjectApiKey.mint(project, "profile")[1]
bodies = [benchmark_request(512, seed=i) for i in range(batches + 2)]

def send(some):
    for body in some:
        answer = receive_export(
            raw_key, "application/x-protobuf", "", body, ProjectApiKey.project_for_token
        )
        assert answer.status == 200 and not answer.body, answer.body

def backend_cpu():
    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

send(bodies[:2])  # warm up: imports, the connection, the staging table
spans = batches * 512
if profile:
    profiler = cProfile.Profile()
    profiler.enable()
    send(bodies[2:])
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
else:
    thread, process, wall, backend = (
        time.thread_time(), time.process_time(), time.perf_counter(), backend_cpu()
    )
    send(bodies[2:])
    thread, process, wall, backend = (
        time.thread_time() - thread, time.process_time() - process,
        time.perf_counter() - wall, backend_cpu() - backend,
    )
    print(f"- {connection.vendor}, {batches} batches of 512, load average {os.getloadavg()[0]:.1f}:"
          f" thread {thread / spans * 1e6:.1f} µs/span, process {process / spans * 1e6:.1f}"
          + (f", database backend {backend / spans * 1e6:.1f}" if backend else "")
          + f"; wall {spans / wall:,.0f} spans/s")
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument(
        "--code", type=Path, default=ROOT, help="another copy of the code to profile (a baseline)"
    )
    args = parser.parse_args(argv)
    admin_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    with tempfile.TemporaryDirectory(prefix="agentloop-profile-ingest-") as tmp:
        if args.postgres:
            url = bench_ingest.create_pg_database(admin_url, PG_DATABASE)
        else:
            url = f"sqlite:///{tmp}/profile.sqlite3"
        try:
            code = args.code.resolve()
            env = bench_ingest.bench_env(url, Path(tmp), code)
            manage = str(code / "manage.py")
            bench_ingest.django_python([manage, "migrate", "--noinput", "-v", "0"], env, code)
            flags = [str(args.batches), "1" if args.profile else "0"]
            print(bench_ingest.django_python(["-c", SCRIPT, *flags], env, code), end="")
        finally:
            if args.postgres:
                bench_ingest.drop_pg_database(admin_url, PG_DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
