"""One trace by id, agentloop against Arize Phoenix, on the same spans.

    .venv/bin/python benches/bench_trace_lookup.py             # 200k spans, 300 rounds
    .venv/bin/python benches/bench_trace_lookup.py --quick     # 20k spans, 100 rounds
    .venv/bin/python benches/bench_trace_lookup.py --agentloop-db postgres

Both products get the same OTLP/HTTP protobuf batches (tests/otlp_payloads.py's
benchmark traces: an AGENT root and seven LLM children, 512 spans a batch),
each on its own fresh database (agentloop: a SQLite file, or a PostgreSQL
database `agentloop_bench_lookup` with --agentloop-db postgres; Phoenix: its
own SQLite in its working directory), each served as it is in production
(agentloop: daphne, as `serve` runs it; Phoenix: `phoenix serve`), on
loopback ports. Then each round picks a stored trace at random and asks both
for it, as a user would, in an order that alternates between rounds:

- trace view: agentloop `GET /api/v1/projects/<id>/traces/<trace_id>` (the tree
  its waterfall and CLI read) against Phoenix's GraphQL `trace(traceId:)` with
  its spans (what Phoenix's trace page asks for);
- REST: `GET /v1/projects/<project>/spans?trace_id=…` on both (Phoenix's own
  path, which `arize-phoenix-client`'s `spans.get_spans(trace_ids=…)` calls,
  and agentloop's Phoenix-compatible copy of it).

Each figure is the wall time of one request and its whole answer over a
kept-alive connection. Every answer is checked: 8 spans of the asked trace.

Phoenix (arize-phoenix 20.26.x) lives in a virtualenv of its own outside the
repository (--phoenix-venv, default /tmp/phoenix-venv), created and installed
with pip on first use. Two things to know about it, both of which left an
earlier attempt with no traces from Phoenix: it files spans without an
`openinference.project.name` resource attribute under the project `default`
(agentloop under the `service.name`, here `bench`), and it writes spans
behind its 200 (a queue flushed in the background, a trace's spans possibly in
two flushes), so the bench waits until Phoenix counts every span.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.bench_ingest import (  # noqa: E402
    BATCH,
    bench_env,
    create_pg_database,
    django_python,
    drop_pg_database,
    free_port,
    wait_for_port,
)
from tests.otlp_payloads import benchmark_request  # noqa: E402

PHOENIX_VERSION = "arize-phoenix==20.26.*"
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "agentloop_bench_lookup")
SPANS_PER_TRACE = 8

SETUP_SCRIPT = """
import django
django.setup()
from django.contrib.auth import get_user_model
from agentloop.teams.models import Project, ProjectApiKey, Space
owner = get_user_model().objects.create_user("bench")
project = Project.objects.create(space=Space.create_with_owner("Bench", owner), name="bench")
print(project.pk, ProjectApiKey.mint(project, "bench")[1])
"""

COUNT_SCRIPT = """
import django
django.setup()
from agentloop.traces.models import Span
print(Span.objects.count())
"""

TRACE_QUERY = """
query ($project: ID!, $traceId: ID!) {
  node(id: $project) {
    ... on Project {
      trace(traceId: $traceId) {
        traceId
        numSpans
        latencyMs
        spans(first: 1000) {
          edges { node { spanId parentId name spanKind statusCode startTime endTime
                         latencyMs attributes events { name message timestamp } } }
        }
      }
    }
  }
}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k spans, 100 rounds")
    parser.add_argument("--spans", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--agentloop-db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--phoenix-venv", type=Path, default=Path("/tmp/phoenix-venv"))
    args = parser.parse_args(argv)
    spans = args.spans or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (100 if args.quick else 300)
    batches = max(1, spans // BATCH)
    phoenix = ensure_phoenix(args.phoenix_venv)

    print(f"# trace-id lookup, {date.today()}, {batches * BATCH:,} spans, {rounds} rounds")
    print(f"load average before: {_load()}")
    bodies = [benchmark_request(BATCH, SPANS_PER_TRACE, seed=i) for i in range(batches)]
    trace_ids = [tid for body in bodies for tid in _trace_ids(body)]

    with tempfile.TemporaryDirectory(prefix="bench-lookup-") as tmp_name:
        tmp = Path(tmp_name)
        admin_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        if args.agentloop_db == "postgres":
            database_url = create_pg_database(admin_url, PG_DATABASE)
        else:
            database_url = f"sqlite:///{tmp / 'agentloop.sqlite3'}"
        servers: list[subprocess.Popen] = []
        try:
            agentloop = start_agentloop(database_url, tmp, servers)
            phx = start_phoenix(phoenix, tmp / "phoenix", servers)
            load(agentloop, phx, bodies, database_url, tmp)
            print(f"load average after loading: {_load()}")
            results = measure(agentloop, phx, trace_ids, rounds)
            print(f"load average after timing: {_load()}")
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            if args.agentloop_db == "postgres":
                drop_pg_database(admin_url, PG_DATABASE)
    report(results, args.agentloop_db)
    return 0


# -- the two servers --------------------------------------------------------------


def ensure_phoenix(venv: Path) -> Path:
    """The `phoenix` command of a virtualenv holding Phoenix, installed on first use."""
    command = venv / "bin" / "phoenix"
    if not command.exists():
        print(f"installing {PHOENIX_VERSION} into {venv} (once)")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", PHOENIX_VERSION], check=True, timeout=1800
        )
    return command


class Agentloop:
    def __init__(self, port: int, project_id: int, key: str):
        self.port, self.project_id = port, project_id
        self.headers = {"Authorization": f"Bearer {key}"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)


class Phoenix:
    def __init__(self, port: int):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.project_gid = ""


def start_agentloop(database_url: str, tmp: Path, servers: list) -> Agentloop:
    env = bench_env(database_url, tmp)
    django_python([str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env)
    project_id, key = django_python(["-c", SETUP_SCRIPT], env).strip().splitlines()[-1].split()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
        + ["agentloop.asgi:application"],
        cwd=ROOT,
        env=env,
    )
    servers.append(server)
    wait_for_port(port, server, timeout=180)  # a busy shared machine starts it slowly
    return Agentloop(port, int(project_id), key)


def start_phoenix(command: Path, working_dir: Path, servers: list) -> Phoenix:
    working_dir.mkdir()
    port, grpc_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(working_dir),
        "PHOENIX_WORKING_DIR": str(working_dir),  # its SQLite database lives here
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = open(working_dir / "phoenix.log", "wb")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen([str(command), "serve"], env=env, stdout=log, stderr=log)
    servers.append(server)
    wait_for_port(port, server, timeout=900)  # it migrates its database first
    return Phoenix(port)


# -- loading ------------------------------------------------------------------------


def _trace_ids(body: bytes) -> list[str]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(body)
    ids = {
        s.trace_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans
    }
    return sorted(ids)


def _request(connection: http.client.HTTPConnection, method: str, path: str, body, headers):
    """(status, body) of one request; a kept-alive connection the server closed
    while idle (uvicorn and daphne do after a few seconds) is opened again once."""
    for attempt in (1, 2):
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            connection.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _post(connection: http.client.HTTPConnection, body: bytes, headers: dict) -> None:
    headers = {"Content-Type": "application/x-protobuf", **headers}
    status, answer = _request(connection, "POST", "/v1/traces", body, headers)
    waited = 0.0
    while status == 503 and waited < 600:
        # Phoenix's write queue is full ("Server is at capacity"): wait and
        # send again, as an OTLP exporter retries a 503.
        time.sleep(0.5)
        waited += 0.5
        status, answer = _request(connection, "POST", "/v1/traces", body, headers)
    if status != 200:
        raise SystemExit(f"ingest answered {status}: {answer[:300]!r}")


def load(agentloop: Agentloop, phoenix: Phoenix, bodies, database_url: str, tmp: Path) -> None:
    started = time.monotonic()
    for body in bodies:
        _post(agentloop.connection, body, agentloop.headers)
        _post(phoenix.connection, body, {})
    expected = len(bodies) * BATCH
    env = bench_env(database_url, tmp)
    stored = int(django_python(["-c", COUNT_SCRIPT], env).split()[-1])
    if stored != expected:
        raise SystemExit(f"agentloop stored {stored} spans, expected {expected}")
    # Phoenix answers 200 before it writes; wait until it counts every span.
    deadline = time.monotonic() + 1800
    while True:
        projects = _graphql(phoenix, "{ projects { edges { node { id name recordCount } } } }")
        nodes = {e["node"]["name"]: e["node"] for e in projects["projects"]["edges"]}
        counted = nodes.get("default", {}).get("recordCount", 0)
        if counted == expected:
            phoenix.project_gid = nodes["default"]["id"]
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"Phoenix counts {counted} of {expected} spans after 30 min: {nodes}")
        time.sleep(1)
    print(f"loaded {expected:,} spans into each in {time.monotonic() - started:.0f} s")


def _graphql(phoenix: Phoenix, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}})
    headers = {"Content-Type": "application/json"}
    status, raw = _request(phoenix.connection, "POST", "/graphql", body, headers)
    answer = json.loads(raw)
    if status != 200 or answer.get("errors"):
        raise SystemExit(f"Phoenix GraphQL answered {status}: {answer}")
    return answer["data"]


def _get(connection: http.client.HTTPConnection, path: str, headers: dict) -> dict:
    status, answer = _request(connection, "GET", path, None, headers)
    if status != 200:
        raise SystemExit(f"GET {path} answered {status}: {answer[:300]!r}")
    return json.loads(answer)


# -- timing ---------------------------------------------------------------------------


def lookups(agentloop: Agentloop, phoenix: Phoenix) -> dict:
    """name -> function(trace_id) that fetches the trace and checks the answer."""

    def agentloop_tree(trace_id):
        answer = _get(
            agentloop.connection,
            f"/api/v1/projects/{agentloop.project_id}/traces/{trace_id}",
            agentloop.headers,
        )
        assert answer["trace_id"] == trace_id and answer["spans"] == SPANS_PER_TRACE, answer

    def agentloop_rest(trace_id):
        answer = _get(
            agentloop.connection, f"/v1/projects/bench/spans?trace_id={trace_id}", agentloop.headers
        )
        assert len(answer["data"]) == SPANS_PER_TRACE, answer

    def phoenix_graphql(trace_id):
        data = _graphql(phoenix, TRACE_QUERY, {"project": phoenix.project_gid, "traceId": trace_id})
        trace = data["node"]["trace"]
        assert trace["traceId"] == trace_id and len(trace["spans"]["edges"]) == SPANS_PER_TRACE

    def phoenix_rest(trace_id):
        answer = _get(phoenix.connection, f"/v1/projects/default/spans?trace_id={trace_id}", {})
        assert len(answer["data"]) == SPANS_PER_TRACE, answer

    return {
        "agentloop trace (API tree)": agentloop_tree,
        "Phoenix trace (GraphQL)": phoenix_graphql,
        "agentloop REST spans?trace_id": agentloop_rest,
        "Phoenix REST spans?trace_id": phoenix_rest,
    }


def measure(agentloop: Agentloop, phoenix: Phoenix, trace_ids: list[str], rounds: int) -> dict:
    fetchers = lookups(agentloop, phoenix)
    rng = random.Random(17)
    for trace_id in rng.sample(trace_ids, 20):  # warm up: connections, caches, first plans
        for fetch in fetchers.values():
            fetch(trace_id)
    times: dict[str, list[float]] = {name: [] for name in fetchers}
    names = list(fetchers)
    for i in range(rounds):
        trace_id = rng.choice(trace_ids)
        order = names if i % 2 == 0 else names[::-1]  # interleaved, alternating order
        for name in order:
            started = time.perf_counter()
            fetchers[name](trace_id)
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def report(times: dict, agentloop_db: str) -> None:
    print(f"\nagentloop on {agentloop_db}, Phoenix on its SQLite")
    print(f"{'lookup':34} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for name, values in times.items():
        print(
            f"{name:34} {statistics.median(values):8.2f} {_percentile(values, 95):8.2f} "
            f"{statistics.fmean(values):8.2f}"
        )
    pairs = [
        ("agentloop trace (API tree)", "Phoenix trace (GraphQL)"),
        ("agentloop REST spans?trace_id", "Phoenix REST spans?trace_id"),
    ]
    for ours, theirs in pairs:
        ratio = statistics.median(times[theirs]) / statistics.median(times[ours])
        print(f"{theirs} p50 / {ours} p50 = {ratio:.2f}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
