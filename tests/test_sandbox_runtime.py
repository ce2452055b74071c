"""The sandbox's copy of the runner and the CLI, under SANDBOX_ROOT.

bwrap runs as the sandbox uid, which cannot enter a checkout under a 0700
directory (a CI clone in a temp dir); the copies under SANDBOX_ROOT it can.
"""

import stat
from pathlib import Path

from agentloop.sandboxes.runtime import stage_runtime


def _modes(path: Path) -> set[int]:
    return {stat.S_IMODE(p.stat().st_mode) for p in [path, *path.rglob("*")]}


def test_the_runner_code_is_copied_readable_by_the_sandbox_uid(tmp_path):
    package, claude = stage_runtime(tmp_path, None)
    assert claude is None
    assert (package / "runner" / "loop.py").read_text() == (
        Path(__file__).resolve().parent.parent / "agentloop" / "runner" / "loop.py"
    ).read_text()
    assert (package / "sandboxes" / "netbridge.py").exists()
    assert not (package / "settings.py").exists()  # only what runs inside
    assert _modes(package) <= {0o755, 0o644}


def test_a_copy_is_made_once_and_reused(tmp_path):
    first, _ = stage_runtime(tmp_path, None)
    marker = first / "marker"
    marker.write_text("same copy")
    second, _ = stage_runtime(tmp_path, None)
    assert second == first and marker.exists()


def test_the_cli_is_copied_executable(tmp_path):
    cli = tmp_path / "bin" / "claude"
    cli.parent.mkdir()
    cli.write_text("#!/bin/sh\necho fake\n")
    root = tmp_path / "root"
    root.mkdir()
    _, copy = stage_runtime(root, cli)
    assert copy.read_text() == cli.read_text()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o755
