"""Secrets are redacted where events and artifacts are written, not when shown.

Every string in a payload (recursively, dict keys too) has each secret value of
the run replaced by `[REDACTED:<name>]` before it is stored. A secret streamed
across two consecutive events of one batch (event 1 ends with its first part,
event 2 starts with the rest) is caught too: for each string path the two
events share, the boundary is checked and both parts are replaced.

Which secrets: `run_secrets(run, token)` — the run token (the raw token is
never stored, so it is taken from the request that presents it) and the run's
secret env values (skills are merged into it at launch by agentloop.skills.runtime;
before that, the skills' current secrets are added here).
Values shorter than MIN_SECRET_LENGTH are ignored: redacting "1" or "yes"
everywhere would destroy transcripts and protect nothing. Each secret is also
looked for in the encodings an agent may print it in (`encodings()`: base64,
hex, URL, JSON escapes, reversed); every one becomes the same marker.
"""

from __future__ import annotations

import base64
import copy
import json
import urllib.parse
from collections.abc import Iterable

from agentloop.skills.runtime import skill_secret_pairs

MIN_SECRET_LENGTH = 6
Secrets = list[tuple[str, str]]  # (name, value), longest value first


def marker(name: str) -> str:
    return f"[REDACTED:{name}]"


def run_secrets(run, token: str | None = None) -> Secrets:
    pairs: list[tuple[str, str]] = []
    if token:
        pairs.append(("AGENTLOOP_RUN_TOKEN", token))
    pairs.extend(run.secret_env().items())
    if run.config.get("skills") and "skill_names" not in run.config:
        # Not launched yet: the skills' secrets are not in the secret env so far.
        pairs.extend(skill_secret_pairs(run))
    return prepare(pairs)


def encodings(value: str) -> set[str]:
    """The secret as an agent might print it: itself, reversed, base64 (standard and
    URL-safe, at each of the three alignments it can take inside a longer
    encoded text, so `echo $TOKEN | base64` is caught too), hex, URL-encoded and
    JSON-escaped."""
    raw = value.encode()
    found = {value, value[::-1], raw.hex(), raw.hex().upper()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift, skip in ((0, 0), (1, 2), (2, 3)):
            # Characters touched by bytes before or after the secret differ from
            # text to text: keep only those made of the secret's bits alone.
            whole = encode(b"\0" * shift + raw).decode()
            found.add(whole[skip : (shift + len(raw)) * 8 // 6])
    found.add(urllib.parse.quote(value, safe=""))
    found.add(urllib.parse.quote_plus(value))
    found.add(json.dumps(value)[1:-1])
    found.add(json.dumps(value, ensure_ascii=True)[1:-1])
    found.add("".join(f"\\u{ord(c):04x}" for c in value))
    return {text for text in found if len(text) >= MIN_SECRET_LENGTH}


def prepare(pairs: Iterable[tuple[str, str]]) -> Secrets:
    usable = {
        (name, text)
        for name, value in pairs
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH
        for text in encodings(value)
    }
    # Longest first so a secret that contains another is replaced whole.
    return sorted(usable, key=lambda pair: (-len(pair[1]), pair[0]))


def redact_text(text: str, secrets: Secrets) -> str:
    for name, value in secrets:
        if value in text:
            text = text.replace(value, marker(name))
    return text


def redact(value, secrets: Secrets):
    """A copy of value (JSON data) with every secret replaced in every string."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    return value


def _string_paths(value, path=()):
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _string_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _string_paths(v, (*path, i))


def _set_path(value, path, new):
    for step in path[:-1]:
        value = value[step]
    value[path[-1]] = new


def _split_at_boundary(tail_text: str, head_text: str, secret: str) -> int | None:
    """Length of the part of `secret` that ends tail_text, if the rest starts head_text."""
    for cut in range(len(secret) - 1, 0, -1):
        if tail_text.endswith(secret[:cut]) and head_text.startswith(secret[cut:]):
            return cut
    return None


def redact_batch(payloads: list, secrets: Secrets) -> list:
    """Redact a batch of payloads, including secrets split between neighbours."""
    if not secrets:
        return payloads
    # Boundaries first, on the raw text (whole-secret replacement would hide them).
    work = copy.deepcopy(payloads)
    for i in range(len(work) - 1):
        before = dict(_string_paths(work[i]))
        after = dict(_string_paths(work[i + 1]))
        for path in before.keys() & after.keys():
            if not path:
                continue
            for name, value in secrets:
                tail, head = before[path], after[path]
                cut = _split_at_boundary(tail, head, value)
                if cut is None:
                    continue
                tail = tail[: len(tail) - cut] + marker(name)
                head = marker(name) + head[len(value) - cut :]
                before[path], after[path] = tail, head
                _set_path(work[i], path, tail)
                _set_path(work[i + 1], path, head)
    return [redact(p, secrets) for p in work]
