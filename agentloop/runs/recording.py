"""Storing what a runner reports: event batches and artifacts, idempotent by key.

Both are redacted before they are stored (see redaction.py). A key seen before
is not stored again and answers with what was stored the first time, so a
runner that lost an answer can simply post again.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agentloop.runs import worker_trace
from agentloop.runs.models import (
    Artifact,
    ArtifactKind,
    EventKind,
    EventSource,
    Run,
    RunEvent,
)
from agentloop.runs.notify import ring
from agentloop.runs.redaction import Secrets, redact, redact_batch

MAX_BATCH = 500
MAX_KEY_LENGTH = 200
RUNNER_SOURCES = (EventSource.AGENT, EventSource.SYSTEM)


@dataclass
class BatchResult:
    stored: int
    duplicates: int
    seqs: list[int]  # one per event posted, in order: the seq it has (new or earlier)
    last_seq: int


def _check_key(key, where: str) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationError(
            f"{where}: key must be a non-empty string of at most {MAX_KEY_LENGTH} characters."
        )
    return key


def validate_events(body) -> list[dict]:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ValidationError('Send {"events": [...]}.')
    events = body["events"]
    if not events:
        raise ValidationError("events is empty.")
    if len(events) > MAX_BATCH:
        raise ValidationError(f"At most {MAX_BATCH} events per batch; got {len(events)}.")
    clean = []
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(event, dict):
            raise ValidationError(f"{where} must be an object.")
        key = _check_key(event.get("key"), where)
        source = event.get("source", EventSource.AGENT)
        if source not in RUNNER_SOURCES:
            raise ValidationError(
                f"{where}: source must be one of {', '.join(RUNNER_SOURCES)}; got {source!r}."
            )
        kind = event.get("kind")
        if kind not in EventKind.values:
            raise ValidationError(
                f"{where}: kind must be one of {', '.join(EventKind.values)}; got {kind!r}."
            )
        payload = event.get("payload", {})
        if not isinstance(payload, dict):
            raise ValidationError(f"{where}: payload must be an object.")
        clean.append({"key": key, "source": source, "kind": kind, "payload": payload})
    return clean


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
    if not isinstance(body, dict):
        raise ValidationError("Send an artifact object.")
    key = _check_key(body.get("key"), "artifact")
    kind = body.get("kind")
    runner_kinds = [k for k in ArtifactKind.values if k != ArtifactKind.PULL_REQUEST]
    if kind == ArtifactKind.PULL_REQUEST:
        # Only a person approving a branch opens one (runs.review), never the agent.
        raise ValidationError(
            "A runner cannot report a pull request: it is opened when a reviewer "
            "approves the run's branch."
        )
    if kind not in runner_kinds:
        raise ValidationError(f"kind must be one of {', '.join(runner_kinds)}; got {kind!r}.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 300:
        raise ValidationError("name must be a non-empty string of at most 300 characters.")
    content = body.get("content", "")
    if not isinstance(content, str):
        raise ValidationError("content must be text.")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValidationError("metadata must be an object.")
    url = body.get("url", "") or ""
    if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
        raise ValidationError("url must be an http(s) URL.")
    return {
        "key": key,
        "kind": kind,
        "name": name.strip(),
        "content": content,
        "metadata": metadata,
        "url": url,
    }


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
