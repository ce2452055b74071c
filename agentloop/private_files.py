"""var/ and what the server keeps in it, readable by this user only.

var/ holds the SQLite database (session keys, hashed API keys, encrypted
secrets), the development secret key, the demo login and the sandboxes' logs.
It is made 0700 and its files 0600 whatever the umask. One exception: when
local sandboxes live under var/ and bubblewrap runs as another uid (the server
is root, AGENTLOOP_SANDBOX_HOST_UID), that uid must pass through var/ to reach
its run directory, so var/ is 0711 — others may pass, not list, and every file
is 0600 still. docs/sandboxes.md says more.

SQLite creates its database with 0644 (less the umask) and gives the -wal and
-shm files the database's mode, so the database file is created here first,
and each new connection sets the modes again (tests' databases, a file
restored by hand).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
TRAVERSABLE_DIR = 0o711
PRIVATE_FILE = 0o600


def var_dir_mode(var_dir: Path, sandbox_root: Path, sandbox_uid: int | None) -> int:
    """0700, or 0711 when a sandbox uid other than ours must reach SANDBOX_ROOT through it."""
    inside = sandbox_root.resolve().is_relative_to(var_dir.resolve())
    if inside and sandbox_uid is not None and sandbox_uid != os.geteuid():
        return TRAVERSABLE_DIR
    return PRIVATE_DIR


def make_private_dir(path: Path, mode: int = PRIVATE_DIR) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)  # also when it existed (an older checkout made it 0755)


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if it is missing; make it 0600 if it is not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    path.chmod(PRIVATE_FILE)


def make_sqlite_private(database: str | Path) -> None:
    """The database file and its -wal, -shm and -journal companions, 0600."""
    if str(database) in ("", ":memory:") or str(database).startswith("file:"):
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{database}{suffix}")
        try:
            if path.stat().st_mode & 0o777 != PRIVATE_FILE:
                path.chmod(PRIVATE_FILE)
        except FileNotFoundError:
            pass


def on_connection_created(sender, connection, **kwargs) -> None:
    """django.db.backends.signals.connection_created: SQLite files 0600 from the first query."""
    if connection.vendor == "sqlite":
        make_sqlite_private(connection.settings_dict["NAME"])
