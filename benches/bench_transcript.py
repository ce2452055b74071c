"""Transcript delivery: runner POST → websocket frame received, against a real daphne.

    .venv/bin/python benches/bench_transcript.py           # full sizes
    .venv/bin/python benches/bench_transcript.py --quick   # fewer events
    .venv/bin/python benches/bench_transcript.py --production   # PostgreSQL + Redis

A fresh SQLite file, migrated, with one user, one project and 20 running runs,
each with its own service key; daphne serves agentloop.asgi in a subprocess
with the in-memory channel layer (no REDIS_URL): the runner API and the
consumers live in that one process, so the doorbell reaches every watcher.
--production measures the production configuration instead: a fresh
PostgreSQL database (`agentloop_bench_transcript` on BENCH_PG_URL, default
postgres://postgres@127.0.0.1:5432/postgres; dropped after) and the Redis
channel layer (BENCH_REDIS_URL, default redis://127.0.0.1:6379/0).

For each event the clock starts just before the runner POST to
/api/runner/v1/events (one event, as a runner sends it) and stops when a
watcher's websocket delivers the frame carrying that event; one event is in
flight per run at a time. Scenarios: 1 watcher of one run; 50 watchers of one
run; 20 runs posting at once, each with one watcher. Targets: p50 ≤ 25 ms and
p99 ≤ 150 ms at 50 watchers. The client (the watchers) runs on the same
machine as daphne, so they share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.bench_ingest import (  # noqa: E402
    bench_env,
    django_python,
    free_port,
    wait_for_port,
)

RUNS = 20
TARGET_P50_MS = 25
TARGET_P99_MS = 150
MARKER = re.compile(r"bench-(\d+)-(\d+)")

SETUP_SCRIPT = """
import json
import django
django.setup()
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from agentloop.runs.config import normalize_config
from agentloop.runs.models import Run, RunStatus, ServiceKey
from agentloop.teams.models import Project, Space

owner = get_user_model().objects.create_user("bench")
project = Project.objects.create(space=Space.create_with_owner("Bench", owner), name="bench")
snapshot, _ = normalize_config({"harness": "analyst", "sandbox": "local"})
runs = []
for i in range(%(runs)d):
    run = Run.objects.create(
        space=project.space, project=project, config=snapshot, prompt=f"bench run {i}",
        status=RunStatus.RUNNING, creator=owner,
    )
    runs.append({"code": str(run.code), "token": ServiceKey.mint(run, expires_at=None)[1]})
session = SessionStore()
session[SESSION_KEY] = str(owner.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = owner.get_session_auth_hash()
session.create()
print(json.dumps({"session": session.session_key, "runs": runs}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="40 events per scenario instead of 300"
    )
    parser.add_argument(
        "--production",
        action="store_true",
        help="PostgreSQL and the Redis channel layer instead of SQLite and the in-memory one",
    )
    args = parser.parse_args(argv)
    events = 40 if args.quick else 300
    load_before = os.getloadavg()[0]
    if args.production:
        admin_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        database_url = fresh_pg_database(admin_url)
        try:
            return measure(args, events, load_before, database_url)
        finally:
            drop_pg_database(admin_url)
    return measure(args, events, load_before, None)


PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "agentloop_bench_transcript")


def fresh_pg_database(admin_url: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE}")
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")
    return admin_url.rsplit("/", 1)[0] + "/" + PG_DATABASE


def drop_pg_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


def measure(args, events: int, load_before: float, database_url: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-transcript-") as tmp:
        env = bench_env(database_url or f"sqlite:///{tmp}/bench.sqlite3", Path(tmp))
        if database_url:
            env["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
        else:
            env.pop("REDIS_URL", None)
        django_python([str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env)
        setup = json.loads(
            django_python(["-c", SETUP_SCRIPT % {"runs": RUNS}], env).splitlines()[-1]
        )
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
            + ["agentloop.asgi:application"],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_for_port(port, server)
            results = asyncio.run(run_scenarios(port, setup, events))
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(
        f"\n### Transcript delivery, {date.today().isoformat()}, "
        f"{'PostgreSQL, Redis' if database_url else 'SQLite, in-memory'} channel layer, "
        f"{events} events per scenario, load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)\n"
    )
    print(
        "| scenario | frames | p50 ms | p99 ms | max ms | POST alone p50 / p99 ms "
        "| after the POST's answer p50 / p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, samples, answered, after in results:
        print(
            f"| {name} | {len(samples)} | {percentile(samples, 50):.1f} "
            f"| {percentile(samples, 99):.1f} | {max(samples):.1f} "
            f"| {percentile(answered, 50):.1f} / {percentile(answered, 99):.1f} "
            f"| {percentile(after, 50):.1f} / {percentile(after, 99):.1f} |"
        )
    fifty = next(r[1] for r in results if r[0] == "1 run, 50 watchers")
    p50, p99 = percentile(fifty, 50), percentile(fifty, 99)
    met = p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS
    print(
        f"\n50 watchers: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"{'meets' if met else 'MISSES'} the target "
        f"(p50 ≤ {TARGET_P50_MS} ms, p99 ≤ {TARGET_P99_MS} ms)."
    )
    return 0


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Watcher:
    """One browser tab: a websocket on a run, noting when each marked event arrives."""

    def __init__(self, port: int, session: str, code: str):
        self.url = f"ws://127.0.0.1:{port}/ws/runs/{code}/?after=0"
        self.headers = {"Cookie": f"sessionid={session}"}
        self.origin = f"http://127.0.0.1:{port}"
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future] = {}

    async def run(self, ready: asyncio.Event):
        import websockets

        async with websockets.connect(
            self.url, additional_headers=self.headers, origin=self.origin, max_size=None
        ) as socket:
            ready.set()
            async for frame in socket:
                now = time.perf_counter()
                for marker in MARKER.findall(frame):
                    key = f"{marker[0]}-{marker[1]}"
                    self.arrived[key] = now
                    waiter = self.waiters.pop(key, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(now)

    def expect(self, key: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if key in self.arrived:
            future.set_result(self.arrived[key])
        else:
            self.waiters[key] = future
        return future


class Runner:
    """A runner posting one event per request over a kept-alive connection."""

    def __init__(self, port: int, token: str, index: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.index = index

    def post(self, n: int) -> None:
        body = json.dumps(
            {
                "events": [
                    {
                        "key": f"bench-{self.index}-{n}",
                        "source": "agent",
                        "kind": "message",
                        "payload": {"role": "assistant", "text": f"Event bench-{self.index}-{n}."},
                    }
                ]
            }
        )
        self.connection.request("POST", "/api/runner/v1/events", body=body, headers=self.headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"runner API answered {response.status}: {answer[:300]!r}")


async def scenario(
    port, setup, run_indexes, watchers_per_run, events, first_n
) -> tuple[list[float], list[float], list[float]]:
    """In ms: delivery latencies (one per watcher and event), POST latencies (one
    per event), and delivery measured from the POST's answer instead of its start."""
    runs = {i: setup["runs"][i] for i in run_indexes}
    watchers = {
        i: [Watcher(port, setup["session"], run["code"]) for _ in range(watchers_per_run)]
        for i, run in runs.items()
    }
    runners = {i: Runner(port, run["token"], i) for i, run in runs.items()}
    tasks = []
    for group in watchers.values():
        for watcher in group:
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(watcher.run(ready)))
            await asyncio.wait_for(ready.wait(), 30)
    samples: list[float] = []
    answered: list[float] = []  # the runner's POST alone: until its 200 came back
    after_answer: list[float] = []  # frame received minus the POST's answer

    async def one_run(i: int, numbers: range, measure: bool = True):
        for n in numbers:
            key = f"{i}-{n}"
            futures = [w.expect(key) for w in watchers[i]]
            started = time.perf_counter()
            await asyncio.to_thread(runners[i].post, n)
            posted = time.perf_counter()
            arrived = await asyncio.wait_for(asyncio.gather(*futures), 30)
            if measure:
                answered.append((posted - started) * 1000)
                samples.extend((t - started) * 1000 for t in arrived)
                # Negative when the frame beat the POST's own answer home.
                after_answer.extend((t - posted) * 1000 for t in arrived)

    # One unmeasured event first: every watcher is connected and caught up.
    await asyncio.gather(*(one_run(i, range(first_n, first_n + 1), False) for i in run_indexes))
    first_n += 1
    try:
        await asyncio.gather(*(one_run(i, range(first_n, first_n + events)) for i in run_indexes))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for runner in runners.values():
            runner.connection.close()
    return samples, answered, after_answer


async def run_scenarios(port: int, setup: dict, events: int) -> list[tuple]:
    # Warm up: imports, template compilation, first connections.
    await scenario(port, setup, [0], 1, 10, first_n=0)
    results = []
    scenarios = (
        ("1 run, 1 watcher", [1], 1),
        ("1 run, 50 watchers", [2], 50),
        (f"{RUNS} runs at once, 1 watcher each", list(range(RUNS)), 1),
    )
    for number, (name, indexes, watchers) in enumerate(scenarios, start=1):
        # Event keys differ per scenario: a run watched again must not match old events.
        first = 100_000 * number
        samples, answered, after = await scenario(
            port, setup, indexes, watchers, events, first_n=first
        )
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(
            f"  {name}: {len(samples)} frames, p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"(the POST alone: p50 {percentile(answered, 50):.1f} ms)",
            flush=True,
        )
        results.append((name, samples, answered, after))
    return results


if __name__ == "__main__":
    sys.exit(main())
