"""var/ is 0700 and its files 0600: the SQLite database (session keys), the
development secret key, the sandboxes' runner.log (agentloop/private_files.py).

The settings run in a fresh process with a fresh var/ and the usual umask
(022), as `make run` starts them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentloop import private_files
from tests.test_sandbox_local import (  # noqa: F401  (fixtures)
    BWRAP,
    provider,
    python,
    sandbox_root,
    wait_until_done,
)

ROOT = Path(__file__).resolve().parent.parent

# Opens the database, writes (WAL mode: -wal and -shm appear), reports the modes.
SCRIPT = """
import json, os, django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE t (x)")
    cursor.execute("INSERT INTO t VALUES (1)")
var = settings.VAR_DIR
modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [var, *var.iterdir()]}
print(json.dumps(modes))
"""


def modes_after_start(tmp_path, **env) -> dict:
    var = tmp_path / "var"
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "agentloop.settings",
        "DEBUG": "1",
        "AGENTLOOP_VAR_DIR": str(var),
        **env,
    }
    answer = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout.strip().splitlines()[-1])


def test_var_and_the_sqlite_files_are_private(tmp_path):
    modes = modes_after_start(tmp_path, AGENTLOOP_SANDBOX_ROOT=str(tmp_path / "sandboxes"))
    assert modes == {
        "var": "0o700",
        "agentloop.sqlite3": "0o600",
        "agentloop.sqlite3-wal": "0o600",
        "agentloop.sqlite3-shm": "0o600",
        "dev_secret_key": "0o600",
    }


def test_an_existing_var_and_database_are_made_private(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    (var / "agentloop.sqlite3").touch(mode=0o644)
    modes = modes_after_start(tmp_path, AGENTLOOP_SANDBOX_ROOT=str(tmp_path / "sandboxes"))
    assert modes["var"] == "0o700"
    assert modes["agentloop.sqlite3"] == "0o600"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands sandboxes to another uid")
def test_var_lets_the_sandbox_uid_pass_when_the_sandboxes_live_in_it(tmp_path):
    # bubblewrap runs as AGENTLOOP_SANDBOX_HOST_UID and must reach var/sandboxes/.
    modes = modes_after_start(tmp_path)
    assert modes["var"] == "0o711"
    assert {mode for name, mode in modes.items() if name != "var"} == {"0o600"}


def test_the_var_mode_rule():
    var, inside, outside = Path("/srv/al/var"), Path("/srv/al/var/sandboxes"), Path("/srv/sbx")
    other = os.geteuid() + 1
    assert private_files.var_dir_mode(var, inside, other) == 0o711
    assert private_files.var_dir_mode(var, inside, None) == 0o700
    assert private_files.var_dir_mode(var, inside, os.geteuid()) == 0o700
    assert private_files.var_dir_mode(var, outside, other) == 0o700


@pytest.mark.skipif(not os.access(BWRAP, os.X_OK), reason="bubblewrap is not installed")
def test_runner_log_is_0600(provider):  # noqa: F811
    handle = provider.start(python("logmode", "print('a secret, printed')"))
    wait_until_done(provider, handle)
    log = Path(handle.data["dir"]) / "runner.log"
    assert "a secret, printed" in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600
