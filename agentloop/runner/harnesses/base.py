"""How the runner drives an agent. Standard library only: this runs in the sandbox.

A harness runs one user turn at a time in the run's workspace and reports what
happens through the sink as runner events (see docs/runner-protocol.md for
kinds and payloads). The runner owns the loop: spec prompt → turn → (waiting
for a follow-up → turn)* → final status.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class EventSink(Protocol):
    def emit(self, kind: str, payload: dict, source: str = "agent") -> None:
        """Queue one event; the runner batches, retries and never drops it."""


@dataclass
class TurnResult:
    ok: bool
    session_id: str | None = None  # harness session to resume (claude-code --resume)
    usage: dict = field(default_factory=dict)  # input_tokens, output_tokens, cost_usd
    error: str | None = None  # why the turn failed, for the run's exit reason
    stopped: bool = False  # ended by stop(), not by itself


class Harness(ABC):
    name: str
    # False: the harness does its whole job in one turn (analyst) and the run
    # ends after it; True: the session waits for follow-ups.
    interactive: bool = True

    def __init__(self, spec: dict, workspace: Path, env: dict[str, str], sink: EventSink):
        self.spec = spec
        self.workspace = workspace
        self.env = env
        self.sink = sink

    @abstractmethod
    def run_turn(self, prompt: str) -> TurnResult:
        """Run one user turn to its end; blocking."""

    def stop(self) -> None:  # noqa: B027 (optional: a harness that cannot stop needs nothing)
        """Called from another thread: end the current turn soon (SIGTERM)."""
