"""Pod start → first event on podman, and the images' sizes (docs/benchmarks.md).

    .venv/bin/python benches/bench_pod_start.py           # 6 rounds
    .venv/bin/python benches/bench_pod_start.py --quick   # 1 round

Needs the images (`make images`); without podman or the runner image it says so
and exits 0. Each round runs tests/test_images_podman.py once: an analyst run and a
Claude Code run in pods that `podman kube play` makes from the Kubernetes provider's
own manifests, and the same analyst run in a local bubblewrap sandbox, against a live
daphne. The tests append, per run, the seconds from `podman kube play` (or the local
provider's start) to the first event the runner caused and to the first agent event;
the ratio pod / local compares the two within the same rounds.

The first run of a pytest session also pays the live server's cold start (imports,
database threads), so the rounds rotate the order of the three tests and the
medians are of the warm runs; the cold ones are shown apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = os.environ.get("AGENTLOOP_TEST_RUNNER_IMAGE", "localhost/agentloop-runner:dev")
IMAGES = ["localhost/agentloop-base:bookworm", "localhost/agentloop-app:dev", RUNNER]
TESTS = [
    "tests/test_images_podman.py::test_an_analyst_run_in_the_runner_image_succeeds_end_to_end",
    "tests/test_images_podman.py::test_a_claude_code_run_in_the_runner_image_works_through_the_gateway",
    "tests/test_images_podman.py::test_the_same_analyst_run_in_a_local_sandbox_for_comparison",
]


def image_sizes() -> dict[str, int]:
    sizes = {}
    for image in IMAGES:
        done = subprocess.run(
            ["podman", "image", "inspect", "--format", "{{.Size}}", image],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            sizes[image] = int(done.stdout.strip())
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if shutil.which("podman") is None:
        print("skipped: podman is not installed")
        return 0
    sizes = image_sizes()
    if RUNNER not in sizes:
        print(f"skipped: {RUNNER} is not built (make images)")
        return 0
    for image, size in sizes.items():
        print(f"image {image}: {size / 1e6:.1f} MB")

    rounds = 1 if args.quick else args.rounds
    print(f"load average: {os.getloadavg()[0]:.1f}, {rounds} rounds", flush=True)
    timings = Path(tempfile.mkdtemp(prefix="agentloop-bench-")) / "timings.jsonl"
    env = {
        **os.environ,
        "AGENTLOOP_TEST_RUNNER_IMAGE": RUNNER,
        "AGENTLOOP_IMAGE_TIMINGS": str(timings),
        "PYTHONPATH": str(ROOT),
    }
    for n in range(rounds):
        order = TESTS[n % 3 :] + TESTS[: n % 3]  # each test is first in a third of the rounds
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *order],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        print(f"round {n + 1}/{rounds}: {done.stdout.strip().splitlines()[-1]}", flush=True)
        if done.returncode != 0:
            print(done.stdout[-4000:], file=sys.stderr)
            return 1
    lines = [json.loads(line) for line in timings.read_text().splitlines()]
    shutil.rmtree(timings.parent, ignore_errors=True)
    medians = {}
    header = "first event (s) median [min-max]"
    print(f"\n{'run (warm)':<14}{'n':>3}  {header:<36}first agent event (s)  cold first event (s)")
    for harness in ("analyst", "claude-code", "analyst-local"):
        rows = [line for line in lines if line["harness"] == harness]
        warm = [r for r in rows if not r["first_in_session"]] or rows
        if not rows:
            continue
        first = [r["first_event_s"] for r in warm]
        agent = [r["first_agent_event_s"] for r in warm]
        cold = [f"{r['first_event_s']:.2f}" for r in rows if r["first_in_session"]]
        medians[harness] = statistics.median(first)
        spread = f"{statistics.median(first):.2f} [{min(first):.2f}-{max(first):.2f}]"
        print(
            f"{harness:<14}{len(warm):>3}  {spread:<36}{statistics.median(agent):<23.2f}"
            f"{' '.join(cold) or '-'}"
        )
    plays = [r["play_s"] for r in lines if r.get("play_s")]
    if plays:
        median = statistics.median(plays)
        print(f"\n`podman kube play` returned (containers started) after {median:.2f} s (median)")
    if "analyst" in medians and "analyst-local" in medians:
        ratio = medians["analyst"] / medians["analyst-local"]
        print(f"\npod / local sandbox, analyst, first event: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
