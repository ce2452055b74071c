"""Storing what a runner reports: event batches and artifacts, idempotent by key.

Both are redacted before they are stored (see redaction.py). A key seen before
is not stored again and answers with what was stored the first time, so a
runner that lost an answer can simply post again.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agentloop.runs import protocol, worker_trace
from agentloop.runs.models import Artifact, EventSource, Run, RunEvent
from agentloop.runs.notify import ring
from agentloop.runs.redaction import Secrets, redact, redact_batch


@dataclass
class BatchResult:
    stored: int
    duplicates: int
    seqs: list[int]  # one per event posted, in order: the seq it has (new or earlier)
    last_seq: int


def _invalid(error: pydantic.ValidationError) -> ValidationError:
    return ValidationError(protocol.problem(error))


def validate_events(body) -> list[dict]:
    """A `POST events` body (protocol.EventBatch) as the event dicts record_events takes."""
    try:
        batch = protocol.EventBatch.model_validate(body)
    except pydantic.ValidationError as error:
        raise _invalid(error) from None
    # The source is who posts: a runner's events are the agent's, whatever it claims.
    return [
        {"key": e.key, "source": EventSource.AGENT, "kind": e.kind, "payload": e.payload}
        for e in batch.events
    ]


def record_events(run: Run, events: list[dict], secrets: Secrets) -> BatchResult:
    """Store a validated batch; safe to call again with the same batch."""
    try:
        return _record_events(run, events, secrets)
    except IntegrityError:
        # A concurrent post of the same keys won the race: its rows are now
        # visible, so this second pass finds them all as duplicates.
        return _record_events(run, events, secrets)


def _record_events(run: Run, events: list[dict], secrets: Secrets) -> BatchResult:
    keys = [e["key"] for e in events]
    with transaction.atomic():
        known = dict(RunEvent.objects.filter(run=run, key__in=keys).values_list("key", "seq"))
        fresh, seen = [], set(known)
        for event in events:
            if event["key"] not in seen:
                seen.add(event["key"])
                fresh.append(event)
        payloads = redact_batch([e["payload"] for e in fresh], secrets)
        seqs = run.allocate_seqs(len(fresh))
        rows = [
            RunEvent(run=run, seq=seq, key=e["key"], source=e["source"], kind=e["kind"], payload=p)
            for e, p, seq in zip(fresh, payloads, seqs, strict=True)
        ]
        RunEvent.objects.bulk_create(rows)
        worker_trace.record_events(run, rows)  # turns and tool calls, for "View traces"
        assigned = {**known, **{row.key: row.seq for row in rows}}
        last_seq = Run.objects.filter(pk=run.pk).values_list("next_seq", flat=True).get()
        if rows:
            # Watchers are told once the batch is committed (the runner's own
            # events: its inbox long-poll need not wake).
            ring(run.code, last_seq, by_runner=True)
    return BatchResult(
        stored=len(rows),
        duplicates=len(events) - len(rows),
        seqs=[assigned[k] for k in keys],
        last_seq=last_seq,
    )


def validate_artifact(body) -> dict:
    """A `POST artifacts` body (protocol.Artifact) as the dict record_artifact takes."""
    try:
        return protocol.Artifact.model_validate(body).model_dump()
    except pydantic.ValidationError as error:
        raise _invalid(error) from None


def record_artifact(run: Run, artifact: dict, secrets: Secrets) -> tuple[Artifact, bool]:
    """Store a validated artifact; (artifact, created). The runner itself posts
    the matching `artifact` event for the transcript (docs/runner-protocol.md)."""
    # The runner's key is built from the file name, which may hold a secret too.
    key = redact(artifact["key"], secrets)[:200]
    existing = Artifact.objects.filter(run=run, key=key).first()
    if existing is not None:
        return existing, False
    clean = redact({k: v for k, v in artifact.items() if k != "key"}, secrets)
    try:
        with transaction.atomic():
            return Artifact.objects.create(run=run, key=key, **clean), True
    except IntegrityError:  # the same key posted twice at once: the other one won
        return Artifact.objects.get(run=run, key=key), False
