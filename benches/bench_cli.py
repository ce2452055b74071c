"""The CLI end to end: `agentloop sessions list` with 1,000 runs, and a followed
transcript (SSE) against the websocket path, against a real daphne.

    .venv/bin/python benches/bench_cli.py           # full sizes
    .venv/bin/python benches/bench_cli.py --quick   # fewer repetitions
    .venv/bin/python benches/bench_cli.py --before /work/main   # old CLI vs this one

With `--before DIR` each command is also run with DIR's CLI (another checkout,
e.g. the commit before a change), interleaved with this tree's, so both see the
same load and the same server; the table then shows both and their ratio.

A fresh SQLite file, migrated, with one user, one project, 1,000 finished runs
and one running run; daphne serves agentloop.asgi in a subprocess (in-memory
channel layer). The client runs on the same machine, so it shares the cores.

1. `agentloop sessions list`: the whole command as a user types it — a new
   Python process, imports, one HTTP request, the table printed — timed from
   spawn to exit, for the default (the newest 100) and `--all` (1,000, one
   page). Also the HTTP request alone from a warm client. Target: ≤ 300 ms.
2. A followed transcript: one runner posts events one at a time to
   /api/runner/v1/events; a websocket watcher (the browser's path) and the
   CLI's follow() (the SSE stream, in a thread, as `agentloop follow` reads it)
   watch the same run. For each event: the time from the POST's start to the
   frame on the websocket, and to the event handed on by follow(). Target: the
   SSE path adds ≤ 50 ms at p50 (the p50 of the per-event differences).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benches.bench_ingest import bench_env, django_python, free_port, wait_for_port  # noqa: E402

RUNS = 1000
TARGET_LIST_MS = 300
TARGET_FOLLOW_EXTRA_MS = 50

SETUP_SCRIPT = """
import json
from datetime import timedelta
import django
django.setup()
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from agentloop.runs.config import normalize_config
from agentloop.runs.models import Run, RunStatus, ServiceKey
from agentloop.teams.models import PersonalToken, Project, Space

owner = get_user_model().objects.create_user("bench")
project = Project.objects.create(space=Space.create_with_owner("Bench", owner), name="bench")
snapshot, _ = normalize_config({"harness": "analyst", "sandbox": "local"})
now = timezone.now()
Run.objects.bulk_create(
    Run(space=project.space, project=project, config=snapshot, prompt=f"bench run {i}",
        status=RunStatus.SUCCEEDED, creator=owner, created_at=now - timedelta(minutes=i),
        finished_at=now - timedelta(minutes=i))
    for i in range(%(runs)d)
)
live = Run.objects.create(
    space=project.space, project=project, config=snapshot, prompt="followed",
    status=RunStatus.RUNNING, creator=owner,
)
session = SessionStore()
session[SESSION_KEY] = str(owner.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = owner.get_session_auth_hash()
session.create()
print(json.dumps({
    "session": session.session_key,
    "token": PersonalToken.mint(owner, "bench")[1],
    "run": str(live.code),
    "run_token": ServiceKey.mint(live, expires_at=None)[1],
}))
"""


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cli_env(url: str, token: str, code_dir: Path = ROOT) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTLOOP_", "DJANGO_"))}
    env.update(
        PYTHONPATH=str(code_dir), AGENTLOOP_URL=url, AGENTLOOP_TOKEN=token, COLUMNS="160",
        AGENTLOOP_CONFIG="/nonexistent/contexts.toml",
    )  # fmt: skip
    return env


def time_command(
    envs: dict[str, dict], args: list[str], repeats: int
) -> dict[str, tuple[list[float], int]]:
    """Each CLI (label → its environment) `repeats` times, taking turns, so that
    a change in the machine's load falls on all of them alike."""
    samples: dict[str, list[float]] = {label: [] for label in envs}
    rows: dict[str, int] = {}
    for _ in range(repeats):
        for label, env in envs.items():
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "agentloop.cli.main", *args],
                env=env, cwd=env["PYTHONPATH"], capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            samples[label].append((time.perf_counter() - started) * 1000)
            if done.returncode != 0:
                raise SystemExit(f"{label}: agentloop {' '.join(args)} failed: {done.stderr}")
            rows[label] = (
                len(json.loads(done.stdout)) if "json" in args else done.stdout.count("\n")
            )
    return {label: (samples[label], rows[label]) for label in envs}


def time_request(url: str, token: str, repeats: int) -> list[float]:
    from agentloop.cli.client import Api
    from agentloop.cli.config import Context

    api = Api(Context("bench", url, token))
    samples = []
    try:
        api.all_pages("/api/v1/sessions/", limit=100)  # warm: connection, first queries
        for _ in range(repeats):
            started = time.perf_counter()
            api.all_pages("/api/v1/sessions/", limit=100)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        api.close()
    return samples


async def follow_both(port: int, setup: dict, events: int) -> tuple[list, list]:
    import websockets

    from agentloop.cli.client import Api
    from agentloop.cli.config import Context
    from agentloop.cli.follow import follow

    url = f"http://127.0.0.1:{port}"
    ws_seen: dict[int, float] = {}
    sse_seen: dict[int, float] = {}
    lock = threading.Lock()
    api = Api(Context("bench", url, setup["token"]))

    def on_event(event):
        with lock:
            sse_seen[event["seq"]] = time.perf_counter()

    follower = threading.Thread(
        target=lambda: follow(api, setup["run"], on_event), daemon=True, name="follow"
    )
    follower.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {setup['run_token']}", "Content-Type": "application/json"}
    post_started: dict[int, float] = {}

    def post(n: int) -> int:
        body = {"events": [{"key": f"b-{n}", "source": "agent", "kind": "message",
                            "payload": {"role": "assistant", "text": f"Event {n}."}}]}  # fmt: skip
        connection.request("POST", "/api/runner/v1/events", json.dumps(body), headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        return answer["seqs"][0]

    ws_url = f"ws://127.0.0.1:{port}/ws/runs/{setup['run']}/?after=0"
    async with websockets.connect(
        ws_url, additional_headers={"Cookie": f"sessionid={setup['session']}"}, origin=url,
        max_size=None,
    ) as socket:  # fmt: skip
        import re

        seq_re = re.compile(r'id="event-(\d+)"')

        async def read_ws():
            async for frame in socket:
                now = time.perf_counter()
                for seq in seq_re.findall(frame):
                    ws_seen.setdefault(int(seq), now)

        reader = asyncio.create_task(read_ws())
        for n in range(events + 5):
            started = time.perf_counter()
            seq = await asyncio.to_thread(post, n)
            post_started[seq] = started
            give_up = time.monotonic() + 30
            while time.monotonic() < give_up:
                with lock:
                    both = seq in sse_seen and seq in ws_seen
                if both:
                    break
                await asyncio.sleep(0.001)
            else:
                raise SystemExit(f"event {seq} did not arrive on both paths within 30 s")
        reader.cancel()
    connection.close()
    measured = sorted(post_started)[5:]  # the first five warm both paths up
    ws = [(ws_seen[s] - post_started[s]) * 1000 for s in measured]
    sse = [(sse_seen[s] - post_started[s]) * 1000 for s in measured]
    return ws, sse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and events")
    parser.add_argument(
        "--before", type=Path, help="another checkout whose CLI to time beside this one"
    )
    args = parser.parse_args(argv)
    repeats, events = (5, 40) if args.quick else (15, 200)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-cli-") as tmp:
        env = bench_env(f"sqlite:///{tmp}/bench.sqlite3", Path(tmp))
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
            url = f"http://127.0.0.1:{port}"
            clis = {"this": cli_env(url, setup["token"])}
            if args.before:
                clis = {"before": cli_env(url, setup["token"], args.before.resolve()), **clis}
            time_command(clis, ["sessions", "list"], 2)  # warm: the server's first requests
            commands = [
                ("`agentloop sessions list` (newest 100, table)", "sessions list"),
                ("`agentloop sessions list -o json` (newest 100)", "sessions list -o json"),
                ("`agentloop sessions list --all -o json`", "sessions list --all -o json"),
                ("`agentloop --help` (the process alone)", "--help"),
            ]
            timed = [(name, time_command(clis, argv.split(), repeats)) for name, argv in commands]
            request = time_request(url, setup["token"], repeats * 4)
            ws, sse = asyncio.run(follow_both(port, setup, events))
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(
        f"\n### CLI, {date.today().isoformat()}, SQLite, {RUNS} runs, load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)\n"
    )
    if args.before:
        print(f"before: the CLI of {args.before}; this: {ROOT}; taking turns\n")
        print("| command | rows | before p50 ms | this p50 ms | this / before | this max ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, by_cli in timed:
            (old, _), (new, n) = by_cli["before"], by_cli["this"]
            old50, new50 = statistics.median(old), statistics.median(new)
            print(
                f"| {name} | {n if 'list' in name else '–'} | {old50:.0f} | {new50:.0f} "
                f"| {new50 / old50:.2f} | {max(new):.0f} |"
            )
    else:
        print("| command | rows | p50 ms | max ms |")
        print("|---|---:|---:|---:|")
        for name, by_cli in timed:
            samples, n = by_cli["this"]
            print(
                f"| {name} | {n if 'list' in name else '–'} | {statistics.median(samples):.0f} "
                f"| {max(samples):.0f} |"
            )
    request_p50, request_max = f"{statistics.median(request):.0f}", f"{max(request):.0f}"
    # The request alone, by this tree's client only.
    cells = ["–", request_p50, "–", request_max] if args.before else [request_p50, request_max]
    print(f"| GET /api/v1/sessions/?limit=100 (warm client) | 100 | {' | '.join(cells)} |")
    diffs = [s - w for s, w in zip(sse, ws, strict=True)]
    print("\n| path | events | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, samples in (
        ("websocket (browser)", ws),
        ("SSE, `agentloop follow`", sse),
        ("SSE minus websocket, per event", diffs),
    ):
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(f"| {name} | {len(samples)} | {p50:.1f} | {p99:.1f} |")
    list_p50 = statistics.median(timed[0][1]["this"][0])
    extra = percentile(diffs, 50)
    print(
        f"\n`sessions list`: p50 {list_p50:.0f} ms "
        f"{'meets' if list_p50 <= TARGET_LIST_MS else 'MISSES'} ≤ {TARGET_LIST_MS} ms; "
        f"follow adds {extra:.1f} ms at p50 "
        f"{'meets' if extra <= TARGET_FOLLOW_EXTRA_MS else 'MISSES'} ≤ {TARGET_FOLLOW_EXTRA_MS} ms."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
