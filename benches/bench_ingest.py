"""OTLP ingest throughput: protobuf batches of 512 spans POSTed to a real daphne.

    .venv/bin/python benches/bench_ingest.py            # SQLite, then PostgreSQL
    .venv/bin/python benches/bench_ingest.py --quick    # fewer batches
    .venv/bin/python benches/bench_ingest.py --no-postgres   # or --no-sqlite
    .venv/bin/python benches/bench_ingest.py --quick --no-postgres --baseline DIR --rounds 3
    .venv/bin/python benches/bench_ingest.py --stages   # in-process µs per span of each stage

For each database: a fresh one (a SQLite file in a temporary folder; a
PostgreSQL database `agentloop_bench`, created and dropped here), migrated,
with one project and key; then daphne serving agentloop.asgi in a subprocess,
and a client sending pre-built batches (typical OpenInference agent traces: an
AGENT root and seven LLM children with messages, tokens, session and user)
from 1 connection, then from 4 concurrent connections. A batch counts when its
200 came back, which ingest sends only after the spans are committed; at the
end the stored rows are counted to prove it. Target: ≥ 10,000 spans/s on SQLite.

--baseline DIR also runs the same batches against another copy of the code
(e.g. `git archive <commit> | tar -x -C DIR`), each run on a fresh database,
alternating with this checkout `--rounds` times: before/after figures of a
change from one session on the same (shared) machine.

--stages times ingest's stages in one process instead (SQLite, this checkout):
parse, decode into rows, insert, trace upsert, commit, close; wall and CPU µs
per span, averaged over the batches. CPU is the ingesting thread's: WAL
checkpoints run on a thread of their own, as in the server, and are not in
these figures.

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
# BENCH_PG_DATABASE: another name, so benches run side by side on one server do not clash.
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "agentloop_bench")

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

# Ingest's stages timed in one process, on the code of this checkout (it calls
# ingest's internals, so it follows them when they change).
STAGES_SCRIPT = """
import sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from agentloop.teams.models import Project, Space
from agentloop.traces import ingest, otlp, sqlite_wal
from tests.otlp_payloads import benchmark_request

batches, size = int(sys.argv[1]), int(sys.argv[2])
owner = get_user_model().objects.create_user("stages")
project = Project.objects.create(space=Space.create_with_owner("S", owner), name="stages")
bodies = [benchmark_request(size, seed=i) for i in range(batches + 3)]
wall, cpu = {}, {}

class stage:
    def __init__(self, name):
        self.name = name
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.thread_time()
    def __exit__(self, *exc):
        wall.setdefault(self.name, []).append(time.perf_counter() - self.wall)
        cpu.setdefault(self.name, []).append(time.thread_time() - self.cpu)

for body in bodies:
    connection.close()  # as after each request (CONN_MAX_AGE=0)
    with stage("open the connection"):
        connection.ensure_connection()
    checkpointer = sqlite_wal.checkpointer_for(connection)
    with stage("parse protobuf"):
        message = otlp._parse_protobuf(body)
    with stage("decode into rows"):
        decoded = otlp._from_message(message)
    batch = [(project.pk, group.rows) for group in decoded.resources]
    now = timezone.now()
    # As ingest_export: the commit leaves WAL checkpoints to the checkpointer's
    # thread, which they would slow down if timed here (a core of their own).
    with sqlite_wal.checkpoints_left_to(checkpointer, connection):
        atomic = transaction.atomic()
        atomic.__enter__()
        with stage("insert spans"):
            ingest._insert_spans(batch, now)
        with stage("upsert traces"):
            ingest._upsert_traces(batch, now)
        with stage("commit"):
            atomic.__exit__(None, None, None)
    checkpointer.committed()
    with stage("close the connection"):
        connection.close()

total_wall = total_cpu = 0.0
print("| stage | wall µs/span | CPU µs/span |")
print("|---|---:|---:|")
for name in wall:
    w = sum(wall[name][3:]) / batches / size * 1e6
    c = sum(cpu[name][3:]) / batches / size * 1e6
    total_wall += w
    total_cpu += c
    print(f"| {name} | {w:.1f} | {c:.1f} |")
print(f"| total | {total_wall:.1f} | {total_cpu:.1f} |")
"""


def run_stages(batches: int) -> int:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-ingest-") as tmp:
        env = bench_env(f"sqlite:///{tmp}/stages.sqlite3", Path(tmp))
        django_python([str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env)
        table = django_python(["-c", STAGES_SCRIPT, str(batches), str(BATCH)], env)
    print(
        f"\n### OTLP ingest stages in process, {date.today().isoformat()}, SQLite, "
        f"{batches} batches of {BATCH} (mean), load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)\n"
    )
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 batches per run instead of 120")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another copy of the code, measured alternately with this one",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of each code per database (alternating)"
    )
    parser.add_argument(
        "--stages", action="store_true", help="time ingest's stages in process (SQLite) instead"
    )
    args = parser.parse_args(argv)
    batches = 20 if args.quick else 120
    if args.stages:
        return run_stages(batches)

    print(f"building {2 * batches + 2} protobuf batches of {BATCH} spans…", flush=True)
    bodies = [benchmark_request(BATCH, seed=i) for i in range(2 * batches + 2)]
    print(f"batch size: {len(bodies[0]) / 1024:.0f} KiB", flush=True)
    # The machine may be shared: say how busy it was, so figures can be compared.
    load_before = os.getloadavg()[0]
    codes = {"this checkout": ROOT}
    if args.baseline:
        codes["baseline"] = args.baseline.resolve()

    results: list[tuple[str, str, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-ingest-") as tmp:
        databases = [] if args.no_sqlite else [("SQLite", None)]
        if not args.no_postgres:
            databases.append(
                (
                    "PostgreSQL",
                    os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                )
            )
        run_number = 0
        for label, admin_url in databases:
            for round_number in range(args.rounds):
                # Alternate which code goes first, so neither always follows the other.
                order = list(codes.items())
                if round_number % 2:
                    order.reverse()
                for code_name, code_dir in order:
                    run_number += 1
                    if admin_url is None:
                        url = f"sqlite:///{tmp}/bench-{run_number}.sqlite3"
                    else:
                        try:
                            url = create_pg_database(admin_url)
                        except Exception as exc:  # noqa: BLE001 - report and go on
                            print(f"\nPostgreSQL skipped: cannot create {PG_DATABASE}: {exc}")
                            break
                    try:
                        for clients, rate, per_cpu in run_backend(
                            label, url, Path(tmp), bodies, batches, code_dir, code_name
                        ):
                            results.append((label, code_name, clients, rate, per_cpu))
                    finally:
                        if admin_url is not None:
                            drop_pg_database(admin_url)

    print(
        f"\n### OTLP ingest, {date.today().isoformat()}, {batches} batches of {BATCH} per run, "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} cores)\n"
    )
    print(
        "| database | code | clients | spans/s (wall) | spans per server CPU-second "
        "| server CPU µs/span |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for database, code_name, clients, rate, per_cpu in results:
        print(
            f"| {database} | {code_name} | {clients} | {rate:,.0f} | {per_cpu:,.0f} "
            f"| {1e6 / per_cpu:,.0f} |"
        )
    if DISK:
        print("\nDisk after each run:")
        for name, spans, line in DISK:
            print(f"- {name}, {spans:,} spans: {line}")
    sqlite_best = max(
        (r for d, c, _, r, _ in results if d == "SQLite" and c == "this checkout"), default=0
    )
    if not args.no_sqlite:
        verdict = "meets" if sqlite_best >= TARGET else "MISSES"
        print(f"\nSQLite best {sqlite_best:,.0f} spans/s {verdict} the {TARGET:,} spans/s target.")
    return 0


def run_backend(
    label: str,
    database_url: str,
    tmp: Path,
    bodies: list[bytes],
    batches: int,
    code_dir: Path = ROOT,
    code_name: str = "this checkout",
):
    """Migrate the fresh database, serve code_dir from daphne, send the batches.

    Returns [(clients, spans/s, spans per server CPU-second)] for 1 and 4 clients.
    """
    env = bench_env(database_url, tmp, code_dir)
    django_python([str(code_dir / "manage.py"), "migrate", "--noinput", "-v", "0"], env, code_dir)
    raw_key = django_python(["-c", SETUP_SCRIPT], env, code_dir).strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
        + ["agentloop.asgi:application"],
        cwd=code_dir,
        env=env,
    )
    name = f"{label} ({code_name})"
    # On SQLite the app runs its attribute indexer beside the web process
    # (`serve`); it competes for the cores and the writer lock, so it runs here
    # too, for code that has one.
    indexer = None
    if label == "SQLite" and (code_dir / INDEXER_COMMAND).exists():
        indexer = subprocess.Popen(
            [sys.executable, str(code_dir / "manage.py"), "index_attributes", "--follow"],
            cwd=code_dir,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    sqlite_path = database_url.removeprefix("sqlite:///") if label == "SQLite" else None
    wal = WalSampler(sqlite_path) if sqlite_path else None
    try:
        wait_for_port(port, server)
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {raw_key}"}
        send_batches(port, headers, bodies[:2])  # warm up: imports, first connections
        warm = 2
        single = bodies[warm : warm + batches]
        multi = bodies[warm + batches : warm + 2 * batches]

        rate_1 = timed(
            name, 1, server.pid, lambda: send_batches(port, headers, single), len(single)
        )
        rate_4 = timed(
            name, 4, server.pid, lambda: send_concurrently(port, headers, multi, 4), len(multi)
        )
        if wal is not None:
            wal.stop()
            # Idle now: give the checkpointer time for its idle checkpoint.
            time.sleep(4)
            wal.after_idle = wal.size()
        if indexer is not None:
            report_indexer(name, indexer, env, code_dir)
    finally:
        if wal is not None:
            wal.stop()
        for process in (server, indexer):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    # On a busy machine daphne can take longer to shut down; the
                    # batches are all answered by now, so do not lose the run.
                    process.kill()
                    process.wait(timeout=30)

    spans, traces = map(int, django_python(["-c", COUNT_SCRIPT], env, code_dir).split())
    expected = (warm + 2 * batches) * BATCH
    print(f"  {name}: {spans:,} spans and {traces:,} traces stored (expected {expected:,} spans)")
    if spans != expected:
        raise SystemExit(f"{name}: stored {spans} spans, expected {expected}")
    report_disk(name, spans, sqlite_path, wal, database_url)
    return [("1", *rate_1), ("4", *rate_4)]


class WalSampler:
    """The SQLite WAL's size, sampled every 0.1 s while the batches are sent."""

    def __init__(self, path: str):
        self.path = path
        self.largest = 0
        self.after_idle = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def size(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.largest = max(self.largest, self.size())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


DISK: list[tuple[str, int, str]] = []  # (run, spans, what was measured), for the summary


def report_disk(name: str, spans: int, sqlite_path, wal, database_url: str) -> None:
    per = 100_000 / spans / 1e6  # bytes -> MB per 100k spans
    if sqlite_path:
        main = os.path.getsize(sqlite_path)
        line = (
            f"database file {main * per:.0f} MB per 100k spans, WAL at most "
            f"{wal.largest / 1e6:.0f} MB ({wal.largest / main:.2f}x the file) during the load, "
            f"{(wal.after_idle or 0) / 1e6:.1f} MB after 4 s idle"
        )
    else:
        import psycopg

        with psycopg.connect(database_url, connect_timeout=5) as conn:
            (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        line = f"database {size * per:.0f} MB per 100k spans (pg_database_size)"
    print(f"  {name}: {line}", flush=True)
    DISK.append((name, spans, line))


INDEXER_COMMAND = "agentloop/traces/management/commands/index_attributes.py"
LAG_SCRIPT = """
import django
django.setup()
from agentloop.traces import attribute_index
from agentloop.traces.models import Span
last = Span.objects.order_by("-id").values_list("id", flat=True).first() or 0
print(last - attribute_index.indexed_through())
"""


def report_indexer(name: str, indexer: subprocess.Popen, env: dict, code_dir: Path) -> None:
    """How far behind the indexer was when the sending stopped, how long it
    took to catch up, and its CPU time over the whole run."""
    behind = int(django_python(["-c", LAG_SCRIPT], env, code_dir).split()[-1])
    started = time.perf_counter()
    left = behind
    while left > 0 and time.perf_counter() - started < 300:
        time.sleep(0.5)
        left = int(django_python(["-c", LAG_SCRIPT], env, code_dir).split()[-1])
    print(
        f"  {name}: the attribute indexer was {behind:,} spans behind when sending stopped, "
        f"caught up {time.perf_counter() - started:.1f} s later "
        f"(CPU {process_cpu_seconds(indexer.pid):.1f} s in all)",
        flush=True,
    )


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


def bench_env(database_url: str, tmp: Path, code_dir: Path = ROOT) -> dict:
    env = dict(os.environ)
    env.update(
        # The code under test first, whatever the venv's editable install points at.
        PYTHONPATH=os.pathsep.join([str(code_dir), os.environ.get("PYTHONPATH", "")]),
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


def django_python(args: list[str], env: dict, code_dir: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=code_dir, env=env, capture_output=True, text=True, timeout=300
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


def create_pg_database(admin_url: str, name: str = PG_DATABASE) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return _with_database(admin_url, name)


def drop_pg_database(admin_url: str, name: str = PG_DATABASE) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
