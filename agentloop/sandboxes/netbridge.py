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

    python3 -m agentloop.sandboxes.netbridge <port> <unix_socket> [<port> <socket>...] -- <cmd...>

Each port listens on 127.0.0.1 and goes to its socket (the web process; the
egress proxy). All forwarding happens in one thread started before the command
(Forwarder): the agent filling its process limit cannot stop the bridge.
"""

from __future__ import annotations

import os
import runpy
import selectors
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
    """Accept forever; each connection gets a thread piping it to connect().

    The supervisor's side (outside the sandbox's limits). Inside, Forwarder."""
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


BUFFER = 256 * 1024  # per direction: stop reading a side while this much waits to be sent


class _Half:
    """One direction of a forwarded connection: bytes read from src wait here for dst."""

    def __init__(self, src: socket.socket, dst: socket.socket):
        self.src, self.dst = src, dst
        self.data = bytearray()
        self.eof = False  # src has finished sending
        self.done = False  # ...and everything reached dst, whose write side is shut


class Forwarder:
    """Every connection of the bridge in one thread, with one selector.

    Inside the sandbox the agent shares the process limit with the bridge: a
    thread per connection (as serve() does) cannot start once the agent has
    filled the limit, and the bridge died of it. This thread is started before
    the command and never needs another: no new thread, no new process, ever.
    """

    def __init__(self, routes: list[tuple[socket.socket, str]]):
        self.selector = selectors.DefaultSelector()
        for listener, unix_path in routes:
            listener.setblocking(False)
            self.selector.register(listener, selectors.EVENT_READ, ("listen", unix_path))
        self.halves: dict[socket.socket, list[_Half]] = {}

    def run(self) -> None:
        while True:
            for key, _ in self.selector.select():
                role, value = key.data
                if role == "listen":
                    self._accept(key.fileobj, value)
                else:
                    self._pump(key.fileobj)

    def _accept(self, listener: socket.socket, unix_path: str) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # e.g. EMFILE: the client retries; the bridge goes on
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(unix_path)  # a local socket: answers at once or refuses
        except OSError:
            upstream.close()
            conn.close()  # the far side is down: the client sees the connection close
            return
        for sock in (conn, upstream):
            sock.setblocking(False)
        there, back = _Half(conn, upstream), _Half(upstream, conn)
        self.halves[conn] = [there, back]
        self.halves[upstream] = [there, back]
        self._watch(conn)
        self._watch(upstream)

    def _watch(self, sock: socket.socket) -> None:
        there, back = self.halves[sock]
        events = 0
        for half in (there, back):
            if half.src is sock and not half.eof and len(half.data) < BUFFER:
                events |= selectors.EVENT_READ
            if half.dst is sock and half.data:
                events |= selectors.EVENT_WRITE
        try:
            self.selector.unregister(sock)
        except KeyError:
            pass
        if events:
            self.selector.register(sock, events, ("conn", None))

    def _pump(self, sock: socket.socket) -> None:
        halves = self.halves.get(sock)
        if halves is None:
            return
        try:
            for half in halves:
                if half.src is sock and not half.eof and len(half.data) < BUFFER:
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        data = None
                    if data == b"":
                        half.eof = True
                    elif data:
                        half.data += data
                if half.data:  # to dst now if it takes it; else when it is writable
                    try:
                        sent = half.dst.send(half.data)
                        del half.data[:sent]
                    except BlockingIOError:
                        pass
                if half.eof and not half.data and not half.done:
                    half.done = True
                    half.dst.shutdown(socket.SHUT_WR)
        except OSError:  # reset by either side: drop the connection
            self._close(halves)
            return
        if all(half.done for half in halves):
            self._close(halves)
            return
        for other in {halves[0].src, halves[0].dst}:
            self._watch(other)

    def _close(self, halves: list[_Half]) -> None:
        for sock in (halves[0].src, halves[0].dst):
            self.halves.pop(sock, None)
            try:
                self.selector.unregister(sock)
            except KeyError:
                pass
            sock.close()


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


def parse_args(argv: list[str]) -> tuple[list[tuple[int, str]], list[str]] | None:
    """([(port, unix_socket)...], command) from `<port> <socket> [<port> <socket>...] -- cmd`."""
    if "--" not in argv:
        return None
    split = argv.index("--")
    pairs, command = argv[1:split], argv[split + 1 :]
    if not pairs or len(pairs) % 2 or not command or not all(p.isdigit() for p in pairs[::2]):
        return None
    return [(int(port), path) for port, path in zip(pairs[::2], pairs[1::2], strict=True)], command


def main(argv: list[str]) -> int:
    parsed = parse_args(argv)
    if parsed is None:
        print(__doc__, file=sys.stderr)
        return 2
    routes, command = parsed
    listeners = [
        (socket.create_server(("127.0.0.1", port), backlog=64), path) for port, path in routes
    ]
    # The bridge's only thread, started before the command can use up the process limit.
    threading.Thread(target=Forwarder(listeners).run, daemon=True).start()
    module = python_module(command)
    if module is not None:
        return run_module_here(module, command[3:])
    # Handlers first: a SIGTERM (stop) must never kill the bridge before its command.
    pending: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    # The run token's pipe (agentloop.runner.credentials) goes on to the command.
    token_fd = os.environ.get("AGENTLOOP_RUN_TOKEN_FD", "")
    proc = subprocess.Popen(command, pass_fds=(int(token_fd),) if token_fd.isdigit() else ())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: proc.send_signal(signum))
    for signum in pending:
        proc.send_signal(signum)
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
