"""The run's workspace: artifacts/ directory, the traces CLI, the skill file. Standard library only.

The workspace is the runner's working directory; HOME is the sandbox's home.
prepare_workspace() makes both ready for a harness and returns the environment
the harness runs with. ArtifactTracker finds what changed in artifacts/ after a
turn, so each version of a file is uploaded exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import agentloop
from agentloop.runner.skills import install_skills
from agentloop.runner.traces_cli import CONFIG_PATH

ARTIFACTS_DIR = "artifacts"
MAX_ARTIFACT_BYTES = 5 * 1024 * 1024

SKILL_DESCRIPTION = (
    "Read the traces, spans and eval labels of the project this run is bound to, and propose "
    "eval labels. Use it to investigate errors, slow spans, token usage and failing evals."
)
SKILL_MD = f"""\
---
name: agentloop-traces
description: {SKILL_DESCRIPTION}
---

# agentloop-traces

`agentloop-traces` is on your PATH. It reads the project this run is bound to
(and nothing else). Every command prints JSON, one object per line.

## Spans (newest first)

    agentloop-traces spans --status ERROR --since 24h
    agentloop-traces spans --kind LLM --name ChatOpenAI --limit 50 --max 200
    agentloop-traces spans --root --start 2025-01-01T00:00:00Z --end 2025-01-02T00:00:00Z
    agentloop-traces spans --annotation correctness:incorrect
    agentloop-traces spans --attr llm.model_name=gpt-4o --attr session.id=abc
    agentloop-traces spans --attr tag.tags=billing --attr metadata.tier=gold

Filters: `--kind` (LLM, CHAIN, TOOL, AGENT, RETRIEVER, EMBEDDING, RERANKER,
GUARDRAIL, EVALUATOR, UNKNOWN), `--status` (OK, ERROR, UNSET), `--name`,
`--trace-id`, `--root`, `--start`/`--end` (ISO 8601) or `--since 30m|24h|7d`,
`--annotation NAME[:LABEL]`, `--attr KEY=VALUE` (repeatable; a list attribute
such as `tag.tags` matches when the value is one of its items), `--session-id`,
`--user-id`, `--min-duration-ms`/`--max-duration-ms`, `--exception-type`
(exact `exception.type` of an exception event). `--limit` is the page size
(1-1000); cursors are followed until `--max` spans (default 1000).

A span has `trace_id`, `span_id`, `parent_span_id`, `name`, `kind`,
`status_code`, `status_message`, `start_time`, `end_time`, `duration_ms`,
`attributes` (OpenInference: `input.value`, `output.value`, ...), `events`
(exceptions: `exception.type`, `exception.message`), `model_name`, token counts
and `annotations`.

## Stats: where, since when, how much

    agentloop-traces stats --since 24h --group-by name --baseline previous
    agentloop-traces stats --since 24h --status ERROR --group-by exception.type
    agentloop-traces stats --since 24h --group-by attr:region --bucket 1h
    agentloop-traces stats --since 7d --group-by name --group-by model_name --bucket 1d \\
        --eval hallucination=hallucinated --json

Per group (top `--limit`, default 20, plus "other"): spans, traces, errors,
error rate, `lift` (the group's error rate / the rest of the window's),
p50/p95/p99 ms (within 4 %), tokens, cost. `--group-by` (up to two): `name`,
`kind`, `status`, `model_name`, `session_id`, `user_id`, `exception.type`,
`attr:KEY`. `--bucket 5m|1h|1d` adds a row per time bucket; `--baseline
previous` (the window before) or `--baseline 7d` (a week earlier) adds the
baseline's error rate and the ratios `err x`, `p95 x`, `rate x`. Takes the
span filters above (and `--eval NAME[=LABEL]`). `--json` prints everything,
including buckets per group.

A method that works:
1. How much: `stats --since 24h --baseline previous` — did the error rate,
   p95 or volume move against the window before (or `--baseline 7d`)?
2. Where: add `--group-by name`, then `--group-by exception.type`, then an
   attribute (`attr:region`, `attr:user.tier`, `model_name`): look for a
   group with a high `lift` and a large share of the errors, not just a high rate
   on a handful of spans.
3. Since when: `--bucket 1h` with the filters of that group (e.g. `--name X
   --status ERROR`); the first bucket where it jumps is your start time.
4. Evals: `--eval hallucination=hallucinated --group-by name`, to see whether
   the failing evals concentrate in the same place.
5. Then read a few concrete spans and traces of that group (`spans ...
   --max 20`, `trace <id>`) and cite them as evidence.

## One trace as a tree

    agentloop-traces trace <trace_id>

## Eval labels

    agentloop-traces annotations --name correctness --label incorrect

## Propose an eval label

    agentloop-traces label --span-id <span_id> --trace-id <trace_id> \\
        --name correctness --label incorrect --score 0 \\
        --explanation "The answer contradicts the retrieved document."

`label` does not change the project: it adds the proposal to
`artifacts/eval_labels.json` (a JSON list), which people review and apply.

## Reporting

Write your findings to `artifacts/investigation.md`. Files you put in
`artifacts/` are uploaded after every turn.

Errors go to stderr with exit status 1 and the server's message.
"""


def _launcher(python: str, root: Path) -> str:
    # The launcher carries the interpreter and package root the runner itself
    # uses, so it works whatever python3 or PYTHONPATH the agent's shell has.
    return (
        "#!/bin/sh\n"
        "# Installed by the agentloop runner.\n"
        f"PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.quote(python)} -m agentloop.runner.traces_cli "$@"\n'
    )


def prepare_workspace(workspace: Path, spec: dict, env: dict[str, str]) -> dict[str, str]:
    """Make the workspace and HOME ready; return the environment for the harness."""
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / ARTIFACTS_DIR).mkdir(exist_ok=True)
    home = Path(env.get("HOME") or workspace)
    project_id = str((spec.get("project") or {}).get("id", ""))

    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    launcher = bin_dir / "agentloop-traces"
    package_root = Path(agentloop.__file__).resolve().parent.parent
    launcher.write_text(_launcher(sys.executable or "python3", package_root))
    launcher.chmod(0o755)

    skill = home / ".claude" / "skills" / "agentloop-traces" / "SKILL.md"
    skill.parent.mkdir(parents=True, exist_ok=True)
    skill.write_text(SKILL_MD)
    install_skills(home, spec.get("skills") or [], env)  # the run's custom skills

    # The token stays in the environment only; the file holds what is not secret.
    config = home / CONFIG_PATH
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        json.dumps(
            {
                "url": env.get("AGENTLOOP_URL", ""),
                "project_id": project_id,
                "api_url": spec.get("api_url", ""),
            },
            indent=2,
        )
        + "\n"
    )

    harness_env = dict(env)
    harness_env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    harness_env["HOME"] = str(home)
    harness_env["AGENTLOOP_PROJECT_ID"] = project_id
    harness_env["AGENTLOOP_WORKSPACE"] = str(workspace)
    path = harness_env.get("PATH") or os.defpath
    if str(bin_dir) not in path.split(os.pathsep):
        harness_env["PATH"] = str(bin_dir) + os.pathsep + path
    return harness_env


# -- artifacts ---------------------------------------------------------------------------


def artifact_kind(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    if base == "investigation.md":
        return "investigation"
    if base == "eval_labels.json" or base.endswith(".labels.json"):
        return "eval_labels"
    return "file"


@dataclass
class ArtifactFile:
    name: str  # path relative to artifacts/, with forward slashes
    kind: str
    key: str  # name + content hash: a new version is a new artifact, the same one is not
    content: str
    metadata: dict


class ArtifactTracker:
    def __init__(self, workspace: Path):
        self.root = workspace / ARTIFACTS_DIR
        self.uploaded: dict[str, str] = {}  # name -> content hash last uploaded

    def changed(self) -> tuple[list[ArtifactFile], list[str]]:
        """Files new or changed since they were last marked uploaded, and problems found."""
        found: list[ArtifactFile] = []
        problems: list[str] = []
        if not self.root.is_dir():
            return found, problems
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            name = path.relative_to(self.root).as_posix()
            if name.endswith(".tmp") or path.is_symlink():
                continue  # half-written files; links could point outside the workspace
            size = path.stat().st_size
            if size > MAX_ARTIFACT_BYTES:
                problems.append(
                    f"artifact {name} skipped: {size} bytes, more than {MAX_ARTIFACT_BYTES}"
                )
                continue
            raw = path.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            if self.uploaded.get(name) == digest:
                continue
            metadata = {"sha256": digest, "size": size}
            try:
                content = raw.decode("utf-8")
            except UnicodeDecodeError:
                content = base64.b64encode(raw).decode("ascii")
                metadata["encoding"] = "base64"
            found.append(
                ArtifactFile(name, artifact_kind(name), f"{name}:{digest[:32]}", content, metadata)
            )
        return found, problems

    def mark_uploaded(self, artifact: ArtifactFile) -> None:
        self.uploaded[artifact.name] = artifact.metadata["sha256"]
