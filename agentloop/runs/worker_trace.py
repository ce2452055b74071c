"""Where a run's own execution is recorded as a trace ("View traces").

A run's trace lives in its space's internal worker project
(Space.worker_project). Its ids derive from the run's code, so every writer —
the event recorder (turns, tool calls) and the LLM gateway (model calls) —
puts its spans in the same trace under the same root without coordinating.
"""

from __future__ import annotations

import hashlib


def trace_id_for(run) -> str:
    """32 hex characters: the run code itself."""
    return run.code.hex


def root_span_id(run) -> str:
    """The run's AGENT root span."""
    return run.code.hex[:16]


def derived_span_id(run, name: str) -> str:
    """A stable 16-hex span id for something in the run (a turn, a tool call id)."""
    return hashlib.sha256(f"{run.code.hex}:{name}".encode()).hexdigest()[:16]
