"""Copies, under SANDBOX_ROOT, of what a local sandbox runs from the host.

bwrap runs as the unprivileged sandbox uid, and that uid must be able to reach
every bind source. The project checkout and its virtualenv may sit under a
directory only root can enter (a clone in a 0700 temporary directory, a home
directory), while SANDBOX_ROOT is checked to be traversable. So the runner's
code and the Claude Code CLI are copied there once, keyed by a digest of their
content, and bound from the copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings

# The parts of the agentloop package that run inside a sandbox (stdlib only).
SANDBOX_SOURCES = ("__init__.py", "runner", "sandboxes/__init__.py", "sandboxes/netbridge.py")


def _source_files(package: Path) -> list[Path]:
    files: list[Path] = []
    for name in SANDBOX_SOURCES:
        path = package / name
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.exists():
            files.append(path)
    return files


def stage_runtime(root: Path, claude: Path | None) -> tuple[Path, Path | None]:
    """(package copy to bind at /opt/agentloop/agentloop, claude copy or None)."""
    package = Path(settings.BASE_DIR) / "agentloop"
    files = _source_files(package)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    if claude is not None:
        stat = claude.stat()
        digest.update(f"{claude}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    runtimes = root / ".runtime"
    runtimes.mkdir(mode=0o755, exist_ok=True)
    target = runtimes / digest.hexdigest()[:16]
    if not target.exists():
        _build(target, package, files, claude)
    return target / "agentloop", (target / "claude" if claude is not None else None)


def _build(target: Path, package: Path, files: list[Path], claude: Path | None) -> None:
    building = target.with_name(f".building-{uuid.uuid4().hex}")
    try:
        for path in files:
            copy = building / "agentloop" / path.relative_to(package)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        if claude is not None:
            try:
                os.link(claude, building / "claude")  # same filesystem: no 200 MB copy
            except OSError:
                shutil.copyfile(claude, building / "claude")
            (building / "claude").chmod(0o755)
        for directory, _dirs, names in os.walk(building):
            os.chmod(directory, 0o755)
            for name in names:
                if name != "claude":
                    os.chmod(os.path.join(directory, name), 0o644)
        try:
            building.rename(target)
        except OSError:
            if not target.exists():  # not a concurrent start that got there first
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
