"""The detached supervisor of one local sandbox. Standard library only, no Django.

`python -m agentloop.sandboxes.supervise <run_dir>` is started by
LocalProvider.start(). It forks: the parent records the child's pid in
`supervisor.json` and exits at once (so start() returns quickly and the child is
nobody's zombie); the child, in its own session, reads and deletes `config.json`
(it holds the run token), puts the sandbox in its own cgroups, runs bwrap with
--die-with-parent, enforces the wall clock, turns SIGTERM into a graceful stop
(SIGTERM to the processes inside, SIGKILL after a grace period) and finally
writes `state.json` with the exit code. Killing the supervisor kills the sandbox.

Files in the run directory (root-owned, never visible inside the sandbox):
config.json (consumed), supervisor.json, sandbox.json, state.json, runner.log.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from agentloop.sandboxes import seccomp
from agentloop.sandboxes.egress import EgressProxy, parse_rule
from agentloop.sandboxes.netbridge import pipe, serve

CGROUP_ROOT = Path("/sys/fs/cgroup")


# -- process identity (shared with the provider: pid reuse safe) -------------


def process_start_time(pid: int) -> str | None:
    """The kernel start time of pid (field 22 of /proc/<pid>/stat), or None if it is not alive.

    A zombie counts as not alive: it has exited, only its parent has not reaped it.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses; split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def is_same_process(pid: int | None, start_time: str | None) -> bool:
    return bool(pid) and start_time is not None and process_start_time(pid) == start_time


def descendants(pid: int) -> list[int]:
    """All live descendants of pid, children first (via /proc/<pid>/task/*/children)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop(0)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{current}/task/{tid}/children").read_text().split()
            except FileNotFoundError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    queue.append(child)
    return found


def children(pid: int) -> list[int]:
    """The live direct children of pid."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            found += map(int, Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except FileNotFoundError:
            continue
    return found


def sandbox_commands(bwrap_pid: int) -> list[int]:
    """The sandbox's top command: bwrap → bwrap's init (pid 1 inside) → command.

    Falls back to every descendant when the tree has another shape.
    """
    commands = [pid for init in children(bwrap_pid) for pid in children(init)]
    return commands or descendants(bwrap_pid)


def write_json(path: Path, value: dict) -> None:
    """Write atomically, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


# -- cgroups: per-run memory and pids limits when the hierarchy is writable --


def _own_cgroup_paths() -> dict[str, str]:
    """controller name ('' for cgroup v2) -> this process's cgroup path."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def cgroup_dirs(name: str) -> list[Path]:
    """Where the cgroups named `name` live: children of this process's own cgroups.

    Nested under our own cgroup (not the root), so a sandbox never escapes the
    limits of the host service or container it runs in. Deterministic, so
    cleanup() finds them even when the supervisor died before recording them.
    """
    own = _own_cgroup_paths()
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # unified (v2) hierarchy only
        bases = {"": CGROUP_ROOT}
    else:  # v1 (or hybrid): one hierarchy per controller
        bases = {
            "cpu": CGROUP_ROOT / "cpu",
            "memory": CGROUP_ROOT / "memory",
            "pids": CGROUP_ROOT / "pids",
        }
    return [
        base / own[controller].lstrip("/") / name
        for controller, base in bases.items()
        if controller in own
    ]


def create_cgroups(name: str, memory_bytes: int, pids_max: int, cpu: float) -> list[dict]:
    """Create the run's cgroups and set its limits; return what was applied."""
    period = 100_000
    quota = max(1000, round(cpu * period))
    limits = {
        "cpu.max": f"{quota} {period}",  # v2
        "cpu.cfs_period_us": period,  # v1; the period before the quota measured in it
        "cpu.cfs_quota_us": quota,
        "memory.max": memory_bytes,  # v2
        "memory.limit_in_bytes": memory_bytes,  # v1; memsw after it, so swap is no way out
        "memory.memsw.limit_in_bytes": memory_bytes,
        "pids.max": pids_max,  # v1 and v2
    }
    created = []
    for directory in cgroup_dirs(name):
        try:
            directory.mkdir(exist_ok=True)
        except OSError:
            continue  # not writable here: the limit is simply not applied (see sandbox.json)
        applied = {}
        for filename, value in limits.items():
            if not (directory / filename).exists():
                continue
            try:
                (directory / filename).write_text(str(value))
                applied[filename] = value
            except OSError:
                pass  # e.g. memsw without swap accounting
        if applied:
            created.append({"path": str(directory), "applied": applied})
        else:
            remove_cgroup(directory)
    return created


def remove_cgroup(directory: Path) -> None:
    for _ in range(50):  # the last processes may take a moment to leave
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def remove_cgroups(cgroups: list[dict]) -> None:
    for cgroup in cgroups:
        remove_cgroup(Path(cgroup["path"]))


# -- the supervisor proper ----------------------------------------------------

PR_SET_PDEATHSIG = 1


_libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: preexec_fn must not import


def _set_parent_death_signal(signum: int) -> None:
    if _libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


class Supervisor:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        config_path = run_dir / "config.json"
        self.config = json.loads(config_path.read_text())
        config_path.unlink()  # it holds the run token: keep it on disk no longer than needed
        self.stop_reason: str | None = None
        self.deadline = time.monotonic() + self.config["wall_seconds"]
        self.kill_at: float | None = None
        self.posters: list[threading.Thread] = []  # refusal events on their way

    def _child_setup(self, cgroups: list[dict], nproc: int | None, supervisor_pid: int) -> None:
        """In the forked child before exec: join the cgroups, set rlimits, drop to the host uid."""
        for cgroup in cgroups:
            with open(Path(cgroup["path"]) / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        nofile = self.config["open_files"]
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        fsize = self.config["file_size_bytes"]
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        uid = self.config.get("host_uid")
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        # bwrap arms --die-with-parent only once it is set up; until then a killed
        # supervisor would leave it running. Arm it from the start (after setuid,
        # which clears it), and give up if the supervisor is already gone.
        _set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != supervisor_pid:
            os._exit(1)

    def run(self) -> int:
        cfg = self.config
        cgroups = create_cgroups(cfg["cgroup"], cfg["memory_bytes"], cfg["processes"], cfg["cpu"])
        pids_limited = any("pids.max" in c["applied"] for c in cgroups)
        # Without a pids cgroup fall back to RLIMIT_NPROC. It only binds a non-root
        # host uid, and counts every process of that uid (all runs together).
        nproc = None if pids_limited or cfg.get("host_uid") is None else cfg["processes"]

        # The syscall filter (agentloop/sandboxes/seccomp.py), loaded by bwrap just
        # before it execs the command: everything inside runs under it.
        seccomp_fd = seccomp.program_fd()
        options = [*cfg["bwrap_options"], "--seccomp", str(seccomp_fd)]
        # The run token through a pipe the runner reads once (agentloop.runner.credentials):
        # written and closed here, so once read, nothing inside can read it again.
        token_fd = None
        if cfg.get("run_token"):
            token_fd, token_write = os.pipe()
            os.write(token_write, cfg["run_token"].encode())
            os.close(token_write)
            options += ["--setenv", "AGENTLOOP_RUN_TOKEN_FD", str(token_fd)]
        # bwrap reads its options from a memfd: the run token in --setenv never
        # appears in a command line that `ps` shows.
        args_fd = os.memfd_create("bwrap-args", 0)
        os.write(args_fd, b"".join(arg.encode() + b"\0" for arg in options))
        os.lseek(args_fd, 0, os.SEEK_SET)

        listener = self._bridge_listener() if cfg.get("bridge") else None
        egress = self._egress_listener() if cfg.get("egress") else None

        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigterm)
        log = os.fdopen(  # 0600 as the docs say: what the agent printed may hold secrets
            os.open(self.run_dir / "runner.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            "ab",
        )
        supervisor_pid = os.getpid()
        started = time.time()
        try:
            proc = subprocess.Popen(
                [cfg["bwrap"], "--args", str(args_fd), *cfg["command"]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={},
                pass_fds=tuple(fd for fd in (args_fd, seccomp_fd, token_fd) if fd is not None),
                preexec_fn=lambda: self._child_setup(cgroups, nproc, supervisor_pid),
                close_fds=True,
            )
        except OSError as exc:
            write_json(
                self.run_dir / "state.json",
                {
                    "exit_code": None,
                    "reason": "error",
                    "detail": f"bwrap could not start: {exc}",
                    "started_at": started,
                    "finished_at": time.time(),
                },
            )
            remove_cgroups(cgroups)
            return 1
        finally:
            os.close(args_fd)
            os.close(seccomp_fd)
            if token_fd is not None:
                os.close(token_fd)
        if listener is not None:
            # Threads only after the fork above: preexec_fn and threads do not mix.
            threading.Thread(target=serve, args=(listener, self._connect_web), daemon=True).start()
        if egress is not None:
            threading.Thread(target=self._serve_egress, args=egress, daemon=True).start()
        write_json(
            self.run_dir / "sandbox.json",
            {
                "bwrap_pid": proc.pid,
                "bwrap_start": process_start_time(proc.pid),
                "cgroups": cgroups,
                "nproc_rlimit": nproc,
                "seccomp": True,
            },
        )

        code = self._wait(proc)
        log.close()
        for poster in self.posters:  # the last refusals must reach the transcript too
            poster.join(timeout=10)
        write_json(
            self.run_dir / "state.json",
            {
                "exit_code": code,
                "reason": self.stop_reason or "exited",
                "started_at": started,
                "finished_at": time.time(),
            },
        )
        remove_cgroups(cgroups)
        return 0

    def _bridge_listener(self) -> socket.socket:
        """The Unix socket a RUNNER_ONLY sandbox's netbridge connects to."""
        return self._unix_listener(self.config["bridge"]["socket"])

    def _egress_listener(self) -> tuple[socket.socket, EgressProxy]:
        """The egress proxy's socket (the bridge's second route) and the proxy."""
        egress = self.config["egress"]
        proxy = EgressProxy(
            [parse_rule(entry) for entry in egress["hosts"]],
            open_networks=egress.get("open_networks") or [],
            static_hosts=egress.get("static_hosts") or {},
            on_refusal=self._report_refusal,
        )
        return self._unix_listener(egress["socket"]), proxy

    def _serve_egress(self, listener: socket.socket, proxy: EgressProxy) -> None:
        def one(conn: socket.socket) -> None:
            upstream = proxy.handle(conn)
            if upstream is not None:
                pipe(conn, upstream)

        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    def _report_refusal(self, host: str, port: int, reason: str) -> None:
        """A refusal becomes an event of the run's transcript: posted as the
        runner would (its token), once per host and port (the event's key)."""
        egress = self.config["egress"]
        print(f"egress refused {host}:{port}: {reason}", file=sys.stderr, flush=True)
        if not egress.get("events_url"):
            return
        event = {
            "key": f"egress-refused:{host}:{port}"[:200],
            "source": "system",
            "kind": "error",
            # The protocol's ErrorPayload: the transcript shows the message.
            "payload": {"message": f"The egress proxy refused {host}:{port}: {reason}."},
        }
        poster = threading.Thread(target=_post_event, args=(egress, event), daemon=True)
        poster.start()
        self.posters.append(poster)

    def _unix_listener(self, path: str) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        uid = self.config.get("host_uid")
        if uid is not None:
            os.chown(path, uid, uid)
        os.chmod(path, 0o600)
        listener.listen(64)
        return listener

    def _connect_web(self) -> socket.socket:
        bridge = self.config["bridge"]
        upstream = socket.create_connection((bridge["host"], bridge["port"]), timeout=10)
        upstream.settimeout(None)
        return upstream

    def _on_sigterm(self, signum, frame) -> None:
        self.stop_reason = self.stop_reason or "stopped"

    def _wait(self, proc: subprocess.Popen) -> int:
        grace = self.config["stop_grace_seconds"]
        while True:
            try:
                code = proc.wait(timeout=0.2)
                # bwrap reports a signalled child as 128+signal; Popen gives -signal
                # when bwrap itself is killed: normalise to the shell convention.
                return 128 - code if code < 0 else code
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if self.stop_reason is None and now >= self.deadline:
                self.stop_reason = "wall_clock"
            if self.stop_reason and self.kill_at is None:
                # Ask nicely: the sandbox's command gets SIGTERM (bwrap's own init
                # and bwrap itself would just die, taking the runner with them
                # unflushed). Only the command: it passes the signal on (the network
                # bridge to its child, the runner to its harness); signalling every
                # descendant too delivered a second SIGTERM to a child already
                # exiting, which then died of it instead of finishing its exit.
                for pid in sandbox_commands(proc.pid):
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                self.kill_at = now + grace
            if self.kill_at is not None and now >= self.kill_at:
                proc.kill()  # the sandbox's pid 1 dies with bwrap, and every process with it


def _post_event(egress: dict, event: dict) -> None:
    import urllib.request  # here: most supervisors never post, and it costs their start

    request = urllib.request.Request(
        egress["events_url"],
        data=json.dumps({"events": [event]}).encode(),
        headers={
            "Authorization": f"Bearer {egress['token']}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except OSError as exc:
        print(f"could not post the refusal event: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    run_dir = Path(argv[1])
    pid = os.fork()
    if pid:
        # Parent: record who supervises, then exit so the launcher is not kept waiting.
        for _ in range(100):
            start_time = process_start_time(pid)
            if start_time:
                break
            time.sleep(0.01)
        write_json(run_dir / "supervisor.json", {"pid": pid, "start_time": start_time})
        return 0
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    err = os.open(run_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(err, 2)
    try:
        return Supervisor(run_dir).run()
    except Exception as exc:  # record why, so status() does not just say "gone"
        import traceback

        traceback.print_exc()
        write_json(
            run_dir / "state.json",
            {
                "exit_code": None,
                "reason": "error",
                "detail": f"supervisor failed: {exc}",
                "finished_at": time.time(),
            },
        )
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
