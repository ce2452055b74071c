"""`python3 -m agentloop.runner`: run one agent session inside a sandbox.

Needs AGENTLOOP_URL and AGENTLOOP_RUN_TOKEN (exit 2 without them). The working
directory is the workspace; HOME is where the traces CLI and skill are installed.
Exit 0 when the run's final state was reported, 1 when it could not be.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from agentloop.runner.loop import build_runner


def main() -> int:
    runner = build_runner(dict(os.environ), Path.cwd())
    if runner is None:
        return 2
    # The handler only records the wish to stop (see Runner.on_signal); the
    # runner then stops the harness, reports the run cancelled and exits.
    signal.signal(signal.SIGTERM, runner.on_signal)
    signal.signal(signal.SIGINT, runner.on_signal)
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
