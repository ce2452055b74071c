"""Run the benchmarks: every benches/bench_*.py, or the ones named.

    .venv/bin/python benches/run.py                 # all of them
    .venv/bin/python benches/run.py queries ingest  # bench_queries.py, bench_ingest.py
    .venv/bin/python benches/run.py --quick         # reduced sizes, for a quick look

Each benchmark is a standalone script with a main(); it runs in its own
process (each sets up Django with its own database) and its output is printed
as it comes. The exit status is non-zero if any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHES = Path(__file__).resolve().parent


def available() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCHES.glob("bench_*.py"))}


def main(argv: list[str] | None = None) -> int:
    benches = available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(benches)}")
    parser.add_argument("--quick", action="store_true", help="reduced sizes")
    args = parser.parse_args(argv)

    unknown = [n for n in args.names if n.removeprefix("bench_") not in benches]
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(benches)})")
    chosen = [n.removeprefix("bench_") for n in args.names] or list(benches)

    failed = []
    for name in chosen:
        command = [sys.executable, str(benches[name])] + (["--quick"] if args.quick else [])
        print(f"=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, cwd=BENCHES.parent)
        print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s\n", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
