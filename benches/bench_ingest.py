"""OTLP ingest throughput: protobuf batches of 512 spans POSTed to a real daphne.

    .venv/bin/python benches/bench_ingest.py            # SQLite, then PostgreSQL
    .venv/bin/python benches/bench_ingest.py --quick    # fewer batches
    .venv/bin/python benches/bench_ingest.py --no-postgres

For each database: a fresh one (a SQLite file in a temporary folder; a
PostgreSQL database `agentloop_bench`, created and dropped here), migrated,
with one project and key; then daphne serving agentloop.asgi in a subprocess,
and a client sending pre-built batches (typical OpenInference agent traces: an
AGENT root and seven LLM children with messages, tokens, session and user)
from 1 connection, then from 4 concurrent connections. A batch counts when its
200 came back, which ingest sends only after the spans are committed; at the
end the stored rows are counted to prove it. Target: ≥ 10,000 spans/s on SQLite.

PostgreSQL is reached at BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.otlp_payloads import benchmark_request  # noqa: E402

BATCH = 512
TARGET = 10_000
PG_DATABASE = "agentloop_bench"

SETUP_SCRIPT = """
import django
django.setup()
from django.contrib.auth import get_user_model
from agentloop.teams.models import Project, ProjectApiKey, Space
owner = get_user_model().objects.create_user("bench")
project = Project.objects.create(space=Space.create_with_owner("Bench", owner), name="bench")
print(ProjectApiKey.mint(project, "bench")[1])
"""

COUNT_SCRIPT = """
import django
django.setup()
from agentloop.traces.models import Span, Trace
print(Span.objects.count(), Trace.objects.count())
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 batches per run instead of 120")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    batches = 20 if args.quick else 120

    print(f"building {2 * batches + 2} protobuf batches of {BATCH} spans…", flush=True)
    bodies = [benchmark_request(BATCH, seed=i) for i in range(2 * batches + 2)]
    print(f"batch size: {len(bodies[0]) / 1024:.0f} KiB", flush=True)
    # The machine may be shared: say how busy it was, so figures can be compared.
    load_before = os.getloadavg()[0]

    results: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-ingest-") as tmp:
        sqlite_url = f"sqlite:///{tmp}/bench.sqlite3"
        results += run_backend("SQLite", sqlite_url, Path(tmp), bodies, batches)
        if not args.no_postgres:
            admin_url = os.environ.get(
                "BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"
            )
            try:
                pg_url = create_pg_database(admin_url)
            except Exception as exc:  # noqa: BLE001 - report and go on with what we have
                print(f"\nPostgreSQL skipped: cannot create {PG_DATABASE}: {exc}")
            else:
                try:
                    results += run_backend("PostgreSQL", pg_url, Path(tmp), bodies, batches)
                finally:
                    drop_pg_database(admin_url)

    print(
        f"\n### OTLP ingest, {date.today().isoformat()}, {batches} batches of {BATCH} per run, "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores)\n"
    )
    print("| database | clients | spans/s (wall) | spans per server CPU-second |")
    print("|---|---:|---:|---:|")
    for database, clients, rate, per_cpu in results:
        print(f"| {database} | {clients} | {rate:,.0f} | {per_cpu:,.0f} |")
    sqlite_best = max((r for d, _, r, _ in results if d == "SQLite"), default=0)
    verdict = "meets" if sqlite_best >= TARGET else "MISSES"
    print(f"\nSQLite best {sqlite_best:,.0f} spans/s {verdict} the {TARGET:,} spans/s target.")
    return 0


def run_backend(label: str, database_url: str, tmp: Path, bodies: list[bytes], batches: int):
    env = bench_env(database_url, tmp)
    django_python([str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env)
    raw_key = django_python(["-c", SETUP_SCRIPT], env).strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
        + ["agentloop.asgi:application"],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for_port(port, server)
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {raw_key}"}
        send_batches(port, headers, bodies[:2])  # warm up: imports, first connections
        warm = 2
        single = bodies[warm : warm + batches]
        multi = bodies[warm + batches : warm + 2 * batches]

        rate_1 = timed(
            label, 1, server.pid, lambda: send_batches(port, headers, single), len(single)
        )
        rate_4 = timed(
            label, 4, server.pid, lambda: send_concurrently(port, headers, multi, 4), len(multi)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    spans, traces = map(int, django_python(["-c", COUNT_SCRIPT], env).split())
    expected = (warm + 2 * batches) * BATCH
    print(f"  {label}: {spans:,} spans and {traces:,} traces stored (expected {expected:,} spans)")
    if spans != expected:
        raise SystemExit(f"{label}: stored {spans} spans, expected {expected}")
    return [(label, "1", *rate_1), (label, "4", *rate_4)]


def timed(label: str, clients: int, server_pid: int, send, n_batches: int) -> tuple[float, float]:
    """Spans per second of wall time, and per second of the server's CPU time.

    The machine is shared, so wall time also counts waiting for a core; the
    server's own CPU time says what ingest costs regardless of the neighbours.
    """
    cpu_before = process_cpu_seconds(server_pid)
    started = time.perf_counter()
    send()
    elapsed = time.perf_counter() - started
    cpu = process_cpu_seconds(server_pid) - cpu_before
    spans = n_batches * BATCH
    print(
        f"  {label}, {clients} client(s): {spans / elapsed:,.0f} spans/s "
        f"({elapsed:.2f} s; server CPU {cpu:.2f} s = {spans / cpu:,.0f} spans per CPU-second)",
        flush=True,
    )
    return spans / elapsed, spans / cpu


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_batches(port: int, headers: dict, bodies: list[bytes]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for body in bodies:
            connection.request("POST", "/v1/traces", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            # An ExportTraceServiceResponse without partial success is empty.
            if response.status != 200 or answer:
                raise RuntimeError(f"ingest answered {response.status}: {answer[:300]!r}")
    finally:
        connection.close()


def send_concurrently(port: int, headers: dict, bodies: list[bytes], clients: int) -> None:
    errors: list[BaseException] = []

    def client(share: list[bytes]) -> None:
        try:
            send_batches(port, headers, share)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(bodies[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def bench_env(database_url: str, tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="agentloop.settings",
        DATABASE_URL=database_url,
        SECRET_KEY="bench-only-secret-key",
        AGENTLOOP_DERIVE_FERNET_KEY="1",
        AGENTLOOP_VAR_DIR=str(tmp / "var"),
        ALLOWED_HOSTS="127.0.0.1",
        DEBUG="0",
        LOG_LEVEL="WARNING",
    )
    return env


def django_python(args: list[str], env: dict) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"daphne exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"daphne did not listen on port {port} within {timeout} s")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_pg_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    return _with_database(admin_url, PG_DATABASE)


def drop_pg_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
