"""The sandbox side of NetworkPolicy.RUNNER_ONLY for the local provider. Stdlib only.

A RUNNER_ONLY sandbox has its own network namespace with nothing but loopback.
This process runs first inside it: it listens on 127.0.0.1:<port> (the port of
AGENTLOOP_URL), carries every connection over a Unix socket bound in from the
host, and there the supervisor connects it to the web process — the only
address the sandbox can reach. Then it runs the real command and exits with
its exit code, passing SIGTERM on.

A command `python3 -m <module> [args...]` (the runner) runs in this process
instead, the forwarding in a background thread: one interpreter start instead of
two before the runner's first request (~60-100 ms of session start). Nothing
changes for isolation — bridge and command share the sandbox either way; the
module gets the process's signals itself and its exit is the process's exit.

    python3 -m agentloop.sandboxes.netbridge <port> <unix_socket> -- <command...>
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import subprocess
import sys
import threading


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides have finished; then close both."""

    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join()
    a.close()
    b.close()


def serve(listener: socket.socket, connect) -> None:
    """Accept forever; each connection gets a thread piping it to connect()."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            upstream = connect()
        except OSError:
            conn.close()  # the far side is down: the client sees the connection close
            continue
        threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()


def python_module(command: list[str]) -> str | None:
    """The module of `python3 -m <module> ...` when this interpreter would run it."""
    if (
        len(command) >= 3
        and command[1] == "-m"
        and (
            command[0] in ("python3", sys.executable)
            or os.path.realpath(command[0]) == sys.executable
        )
    ):
        return command[2]
    return None


def run_module_here(module: str, args: list[str]) -> int:
    """Run `python3 -m module args` in this process, as if it had been started so."""
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    port, unix_path, command = int(argv[1]), argv[2], argv[4:]
    listener = socket.create_server(("127.0.0.1", port), backlog=64)

    def connect() -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(unix_path)
        return upstream

    threading.Thread(target=serve, args=(listener, connect), daemon=True).start()
    module = python_module(command)
    if module is not None:
        return run_module_here(module, command[3:])
    # Handlers first: a SIGTERM (stop) must never kill the bridge before its command.
    pending: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    proc = subprocess.Popen(command)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: proc.send_signal(signum))
    for signum in pending:
        proc.send_signal(signum)
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
