"""Moving a run, and everything that follows a move: the one way code changes a run's status.

`Run.transition()` is pure state: a conditional UPDATE of the status plus its
status event, in one transaction. What follows from a move lives here, so the
model needs none of it: the run's own trace (agentloop.runs.worker_trace) opens
and closes its AGENT root span and turn spans from the status event, in the
same transaction, so a run's trace never disagrees with its status.
"""

from __future__ import annotations

from django.db import transaction

from agentloop.runs import worker_trace
from agentloop.runs.models import Run


def move(run: Run, to: str, **fields) -> bool:
    """run.transition(to, **fields) and its worker-trace projection. False when
    someone else moved the run first; IllegalTransition as Run.transition."""
    with transaction.atomic():
        event = run.transition(to, **fields)
        if event is None:
            return False
        worker_trace.record_events(run, [event])
    return True
