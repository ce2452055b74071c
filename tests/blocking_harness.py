"""A harness whose turns last until stopped. Standard library only: it also runs
inside a real runner subprocess under the system python (tests/test_runner_loop.py)."""

from __future__ import annotations

import threading


class BlockingHarness:
    """An interactive harness whose turns last until stop(); for signal and time-limit tests.

    Registered under the name "blocking" by the tests that need it (see
    tests/test_runner_loop.py), also inside a real runner subprocess.
    """

    name = "blocking"
    interactive = True

    def __init__(self, spec, workspace, env, sink):
        self.spec, self.workspace, self.env, self.sink = spec, workspace, env, sink
        self._stop = threading.Event()

    def run_turn(self, prompt):
        from agentloop.runner.harnesses.base import TurnResult

        self.sink.emit(
            "message", {"role": "assistant", "text": "working on it", "message_id": "m1"}
        )
        (self.workspace / "artifacts" / "notes.txt").write_text("partial notes\n")
        self._stop.wait(60)
        return TurnResult(ok=False, stopped=True, error="stopped")

    def stop(self):
        self._stop.set()
