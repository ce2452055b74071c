"""Session start latency: start action → first runner event stored (local bubblewrap, analyst).

    .venv/bin/python benches/bench_session_start.py           # 20 sessions
    .venv/bin/python benches/bench_session_start.py --quick   # 5 sessions

A fresh SQLite file database, migrated, with a project holding a few spans;
daphne serves agentloop.asgi in a subprocess (the runner API the sandbox
calls, through the runner-only network bridge). This process is the worker:
it calls `actions.start_session` and, at commit, `tasks.launch_run` directly
(instead of handing it to a qcluster: the q2 pickup is not measured, see
docs/benchmarks.md). Sessions run one after another; each is waited for until
it ends, then the reconciler cleans its sandbox up (not timed).

Measured per session, from the server's own timestamps (one clock):
  launch   — start_session called → launch_run claimed the run (create + commit)
  sandbox  — provider.start() (supervisor forked, bwrap spawning)
  running  — start → the runner posted "running" (bwrap, python, spec, workspace)
  first    — start → the first event the runner itself posted is stored  ← the figure
Target: p50 of `first` ≤ 500 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_ingest import bench_env, django_python, free_port, wait_for_port  # noqa: E402

TARGET_MS = 500
# Keys of events the runner posts itself (agentloop/runner/events.py: <instance>-<counter>);
# the server's own events (the prompt, status transitions) are keyed otherwise.
RUNNER_KEY = re.compile(r"^[0-9a-f]{12}-[0-9]+$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 sessions instead of 20")
    parser.add_argument("--sessions", type=int, default=None)
    args = parser.parse_args(argv)
    sessions = args.sessions or (5 if args.quick else 20)
    if not os.access("/usr/bin/bwrap", os.X_OK):
        print("bubblewrap is not installed: nothing to measure")
        return 0

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-start-", dir="/tmp") as tmp:
        tmp_path = Path(tmp)
        tmp_path.chmod(0o711)  # the sandbox uid must traverse to SANDBOX_ROOT
        port = free_port()
        env = bench_env(f"sqlite:///{tmp}/bench.sqlite3", tmp_path)
        env.update(
            AGENTLOOP_PUBLIC_URL=f"http://127.0.0.1:{port}",
            AGENTLOOP_SANDBOX_ROOT=str(tmp_path / "sandboxes"),
        )
        django_python([str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env)
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port)]
            + ["agentloop.asgi:application"],
            cwd=ROOT,
            env=env,
        )
        try:
            wait_for_port(port, server)
            os.environ.update(env)
            rows = measure(sessions)
        finally:
            server.terminate()
            server.wait(timeout=30)

    report(rows, sessions, load_before)
    return 0


def measure(sessions: int) -> list[dict]:
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from agentloop.runs import actions, tasks
    from agentloop.runs.models import TERMINAL, Run, RunStatus
    from agentloop.runs.reconciler import reconcile
    from agentloop.sandboxes.local import LocalProvider
    from agentloop.teams.models import Project, Space
    from tests.span_factory import make_span

    owner = get_user_model().objects.create_user("bench")
    project = Project.objects.create(space=Space.create_with_owner("Bench", owner), name="bench")
    now = timezone.now()
    for i in range(20):
        make_span(
            project,
            name="refund-tool",
            kind="TOOL",
            status="ERROR",
            start=now - timedelta(minutes=i),
        )

    # The worker side, in this process: launch at commit, timing provider.start().
    started_sandbox: dict[int, float] = {}
    real_start = LocalProvider.start

    def timed_start(self, spec):
        begun = time.perf_counter()
        handle = real_start(self, spec)
        started_sandbox["seconds"] = time.perf_counter() - begun
        return handle

    LocalProvider.start = timed_start
    actions.enqueue_launch = lambda run: transaction.on_commit(lambda: tasks.launch_run(run.pk))
    config = {"harness": "analyst", "sandbox": "local", "time_limit_seconds": 300}

    rows = []
    for i in range(sessions + 1):  # the first one warms up imports and caches: not counted
        t0 = timezone.now()
        run = actions.start_session(owner, project, config, "Why do refunds fail?")
        deadline = time.monotonic() + 120
        while Run.objects.get(pk=run.pk).status not in TERMINAL:
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run.code} did not end within 120 s")
            time.sleep(0.05)
        run.refresh_from_db()
        if run.status != RunStatus.SUCCEEDED:
            raise SystemExit(f"run {run.code} {run.status}: {run.exit_reason}")
        first_runner = next(e for e in run.events.order_by("seq") if RUNNER_KEY.match(e.key))
        row = {
            "launch": ms(run.launched_at - t0),
            "sandbox": started_sandbox["seconds"] * 1000,
            "running": ms(run.started_at - t0),
            "first": ms(first_runner.created_at - t0),
            "total": ms(run.finished_at - t0),
        }
        reconcile()
        if i:
            rows.append(row)
            print(
                f"  session {i:2d}: first event {row['first']:6.0f} ms "
                f"(launch {row['launch']:.0f}, sandbox start {row['sandbox']:.0f}, "
                f"running {row['running']:.0f}; run done {row['total']:.0f})",
                flush=True,
            )
    return rows


def ms(delta) -> float:
    return delta.total_seconds() * 1000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(rows: list[dict], sessions: int, load_before: float) -> None:
    print(
        f"\n### Session start latency, {date.today().isoformat()}, {sessions} sequential "
        f"analyst sessions, local bubblewrap, SQLite file, daphne; load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)\n"
    )
    print("| from start_session to | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    labels = {
        "launch": "launch_run claimed it",
        "running": "runner posted running",
        "first": "**first runner event stored**",
        "total": "run finished (analyst)",
    }
    for key, label in labels.items():
        values = [r[key] for r in rows]
        print(f"| {label} | {pct(values, 50):.0f} | {pct(values, 95):.0f} | {max(values):.0f} |")
    starts = [r["sandbox"] for r in rows]
    print(
        f"| (provider.start() itself) | {statistics.median(starts):.0f} | "
        f"{pct(starts, 95):.0f} | {max(starts):.0f} |"
    )
    p50 = pct([r["first"] for r in rows], 50)
    verdict = "meets" if p50 <= TARGET_MS else "MISSES"
    print(f"\np50 {p50:.0f} ms {verdict} the {TARGET_MS} ms target.")


if __name__ == "__main__":
    sys.exit(main())
