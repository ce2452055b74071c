"""The local sandbox provider: one bubblewrap sandbox per run on this host.

start() lays out a run directory under settings.SANDBOX_ROOT and hands it to a
detached supervisor (agentloop/sandboxes/supervise.py), which runs bwrap and
outlives the q2 task that called start(). Everything later — status(), stop(),
cleanup(), read_log() — works from the handle and the files in that directory,
so any process on the same host can ask.

Layout of SANDBOX_ROOT/<run_code>/ (mode 0711, root-owned):
  workspace/  -> /workspace inside (writable; owned by the sandbox host uid)
  home/       -> /home/agent inside (writable)
  etc/        passwd, group (and hosts under runner-only), bound read-only
  net/        web.sock, the host end of the runner-only network bridge
  config.json, supervisor.json, sandbox.json, state.json, runner.log, supervisor.log
              (only the supervisor and the host see these)

See docs/sandboxes.md for what is isolated, what is not (the network), and why
memory is limited by a cgroup rather than RLIMIT_AS.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from agentloop.sandboxes.base import (
    NetworkPolicy,
    SandboxError,
    SandboxHandle,
    SandboxProvider,
    SandboxSpec,
    SandboxState,
    SandboxStatus,
)
from agentloop.sandboxes.egress import PROXY_PORT, RuleError, parse_rule
from agentloop.sandboxes.runtime import stage_runtime
from agentloop.sandboxes.supervise import cgroup_dirs, is_same_process, remove_cgroup, write_json

SANDBOX_UID = 1000  # the agent's uid inside: non-root, as Claude Code insists
WORKSPACE = "/workspace"
HOME = "/home/agent"
RUNNER_PYTHONPATH = "/opt/agentloop"
CLAUDE_DIR = "/opt/claude"
HARNESS_CLI_DIR = "/opt/harness-cli"  # settings.HARNESS_CLI_DIR, read-only
HARNESS_CLI_BIN = f"{HARNESS_CLI_DIR}/node_modules/.bin"
BRIDGE_DIR = "/run/agentloop"
RUN_TOKEN = "AGENTLOOP_RUN_TOKEN"
RUN_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")

# Read-only from the host's /etc: name resolution and TLS roots, nothing else
# (not /etc/ssl/private, not the host's passwd/shadow).
ETC_FILES = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates.conf",
    "/etc/pki",  # RHEL-style CA bundle location
]


def _setting(name: str, default):
    return getattr(settings, name, default)


def claude_binary() -> Path | None:
    """The Claude Code CLI bundled with claude_agent_sdk in this venv, if installed."""
    configured = _setting("SANDBOX_CLAUDE_BINARY", None)
    if configured:
        return Path(configured)
    try:
        spec = importlib.util.find_spec("claude_agent_sdk")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "_bundled" / "claude"
    return path if path.is_file() else None


def parse_binds(entries: list[str]) -> list[tuple[str, str]]:
    """'host:sandbox' pairs from settings.SANDBOX_RO_BINDS; absolute paths only."""
    binds = []
    for entry in entries:
        host, sep, inside = entry.partition(":")
        if not sep or not host.startswith("/") or not inside.startswith("/"):
            raise SandboxError(
                f"SANDBOX_RO_BINDS entry {entry!r} is not 'host_path:sandbox_path' "
                "with absolute paths."
            )
        binds.append((host, inside))
    return binds


class LocalProvider(SandboxProvider):
    name = "local"

    # -- start --------------------------------------------------------------

    def sandbox_env(self, spec: SandboxSpec) -> dict[str, str]:
        """The whole environment inside: spec.env plus what the sandbox itself needs.

        Not the run token: the supervisor hands it to the runner through a pipe
        (AGENTLOOP_RUN_TOKEN_FD), so it is in no environment and, unlike an
        option of bwrap's, in no memory the agent can read (bwrap's pid 1).
        """
        env = {"LANG": "C.UTF-8", **spec.env}
        env.pop(RUN_TOKEN, None)
        env.update(
            {
                "PATH": f"{CLAUDE_DIR}:{HARNESS_CLI_BIN}:/usr/bin:/bin:/usr/local/bin",
                "AGENTLOOP_HARNESS_CLI_DIR": HARNESS_CLI_DIR,
                "HOME": HOME,
                "USER": "agent",
                "PYTHONPATH": RUNNER_PYTHONPATH,
                "PYTHONDONTWRITEBYTECODE": "1",  # the runner code is read-only
                "PYTHONUNBUFFERED": "1",  # logs reach runner.log as they happen
                "AGENTLOOP_WORKSPACE": WORKSPACE,
            }
        )
        return env

    def bwrap_options(self, spec: SandboxSpec, run_dir: Path) -> list[str]:
        """bwrap options (everything before the command); read from a memfd by bwrap."""
        opts = [
            "--unshare-user",
            # No nested user namespace either (the seccomp filter also refuses
            # unshare and clone with CLONE_NEW*): bwrap >= 0.8.
            "--disable-userns",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ]
        for name, value in self.sandbox_env(spec).items():
            opts += ["--setenv", name, value]
        opts += ["--ro-bind", "/usr", "/usr"]
        # /bin, /lib… are symlinks into /usr on merged-/usr systems; copy the shape.
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                opts += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                opts += ["--ro-bind", top, top]
        runner_only = spec.network == NetworkPolicy.RUNNER_ONLY
        for path in ETC_FILES:
            if not (runner_only and path == "/etc/hosts"):  # runner-only: our own hosts
                opts += ["--ro-bind-try", path, path]
        opts += [
            "--ro-bind",
            str(run_dir / "etc" / "passwd"),
            "/etc/passwd",
            "--ro-bind",
            str(run_dir / "etc" / "group"),
            "/etc/group",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--bind",
            str(run_dir / "workspace"),
            WORKSPACE,
            "--bind",
            str(run_dir / "home"),
            HOME,
        ]
        # The runner's code (stdlib-only modules, no secrets) and the Claude Code
        # CLI, bound from copies under SANDBOX_ROOT that the sandbox uid can reach.
        package, claude = stage_runtime(run_dir.parent, claude_binary())
        opts += ["--ro-bind", str(package), f"{RUNNER_PYTHONPATH}/agentloop"]
        if claude is not None:
            opts += ["--ro-bind", str(claude), f"{CLAUDE_DIR}/claude"]
        # The harness CLIs (make harness-cli): node packages, read-only, where present.
        cli_dir = _setting("HARNESS_CLI_DIR", None)
        if cli_dir and Path(cli_dir, "node_modules").is_dir():
            opts += ["--ro-bind", str(cli_dir), HARNESS_CLI_DIR]
        for host, inside in parse_binds(_setting("SANDBOX_RO_BINDS", [])):
            opts += ["--ro-bind", host, inside]
        if runner_only:
            opts += ["--unshare-net", "--ro-bind", str(run_dir / "net"), BRIDGE_DIR]
            opts += ["--ro-bind", str(run_dir / "etc" / "hosts"), "/etc/hosts"]
        opts += ["--remount-ro", "/", "--chdir", WORKSPACE]
        return opts

    def host_uid(self) -> int | None:
        """The host uid the sandbox runs as. Root drops to an unprivileged uid, so
        that what is uid 1000 inside is not uid 0 outside."""
        if os.geteuid() != 0:
            return None
        return int(_setting("SANDBOX_HOST_UID", 1000))

    def run_dir(self, run_code: str) -> Path:
        if not RUN_CODE_RE.match(run_code):
            raise SandboxError(
                f"run code {run_code!r} cannot name a sandbox (letters, digits, - and _)."
            )
        return Path(settings.SANDBOX_ROOT) / run_code

    def restrict_network(self, spec: SandboxSpec) -> tuple[SandboxSpec, dict | None]:
        """RUNNER_ONLY: the sandbox gets its own network namespace (loopback only) and
        reaches AGENTLOOP_URL's host:port, and nothing else, through the netbridge.

        A host name in AGENTLOOP_URL resolves to 127.0.0.1 inside (a generated
        /etc/hosts), so the URL, the Host header and TLS names stay as they are;
        an IP address is rewritten to 127.0.0.1. Returns the spec as the sandbox
        runs it (command wrapped in the bridge) and the host side of the bridge.
        """
        if spec.network != NetworkPolicy.RUNNER_ONLY:
            return spec, None
        url = urlsplit(spec.env.get("AGENTLOOP_URL", ""))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise SandboxError(
                "network policy runner-only needs AGENTLOOP_URL (http://host:port) in the env."
            )
        port = url.port or (443 if url.scheme == "https" else 80)
        env = dict(spec.env)
        alias = None
        try:
            ipaddress.ip_address(url.hostname)
        except ValueError:
            alias = url.hostname
        else:
            netloc = f"127.0.0.1:{port}" if url.port else "127.0.0.1"
            env["AGENTLOOP_URL"] = urlunsplit((url.scheme, netloc, url.path, url.query, ""))
        routes = [str(port), f"{BRIDGE_DIR}/web.sock"]
        bridge = {"host": url.hostname, "port": port, "alias": alias, "egress": None}
        if spec.egress_hosts:
            try:
                for entry in spec.egress_hosts:
                    parse_rule(entry)
            except RuleError as error:
                raise SandboxError(f"egress allow-list: {error}") from None
            if port == PROXY_PORT:
                raise SandboxError(f"AGENTLOOP_URL's port {port} is the egress proxy's port.")
            routes += [str(PROXY_PORT), f"{BRIDGE_DIR}/proxy.sock"]
            proxy = f"http://127.0.0.1:{PROXY_PORT}"
            no_proxy = ",".join(filter(None, ["localhost", "127.0.0.1", alias]))
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = proxy
            env["NO_PROXY"] = env["no_proxy"] = no_proxy
            bridge["egress"] = {
                "hosts": list(spec.egress_hosts),
                "open_networks": list(_setting("SANDBOX_EGRESS_PRIVATE_NETWORKS", [])),
                "static_hosts": dict(_setting("SANDBOX_EGRESS_STATIC_HOSTS", {})),
                # Refusals are posted to the transcript as the runner would post them.
                "events_url": spec.env["AGENTLOOP_URL"].rstrip("/") + "/api/runner/v1/events",
                "token": spec.env.get("AGENTLOOP_RUN_TOKEN", ""),
            }
        command = [
            "python3", "-m", "agentloop.sandboxes.netbridge", *routes, "--", *spec.command,
        ]  # fmt: skip
        inside = replace(spec, command=command, env=env)
        return inside, bridge

    def start(self, spec: SandboxSpec) -> SandboxHandle:
        bwrap = _setting("SANDBOX_BWRAP", "/usr/bin/bwrap")
        if not os.access(bwrap, os.X_OK):
            raise SandboxError(
                f"bubblewrap is not installed at {bwrap} (apt-get install bubblewrap)."
            )
        if not spec.command:
            raise SandboxError("the sandbox spec has no command.")
        spec, bridge = self.restrict_network(spec)
        run_dir = self.run_dir(spec.run_code)
        root = run_dir.parent
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o711)  # traversable by the sandbox uid (bwrap binds from here), not listable
        if self.host_uid() is not None:
            _check_traversable(root)
        try:
            run_dir.mkdir(mode=0o711)
        except FileExistsError:
            raise SandboxError(
                f"a sandbox for run {spec.run_code} already exists at {run_dir}; clean it up first."
            ) from None
        try:
            uid = self.host_uid()
            cgroup = f"agentloop-{spec.run_code}-{secrets.token_hex(4)}"
            self._lay_out(run_dir, spec, bridge, bwrap, uid, cgroup)
            supervisor = self._launch(run_dir)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # a failed start leaves nothing
            raise
        return SandboxHandle(
            provider=self.name,
            id=spec.run_code,
            data={
                "dir": str(run_dir),
                "supervisor_pid": supervisor["pid"],
                "supervisor_start": supervisor["start_time"],
                "cgroup": cgroup,
            },
        )

    def _lay_out(
        self,
        run_dir: Path,
        spec: SandboxSpec,
        bridge: dict | None,
        bwrap: str,
        uid: int | None,
        cgroup: str,
    ) -> None:
        """Workspace, HOME, /etc files and the supervisor's config in the run directory.

        The cgroup name is unique per sandbox, not just per run: cleanup kills
        whatever is in it.
        """
        for sub in ("workspace", "home"):
            (run_dir / sub).mkdir(mode=0o700)
            if uid is not None:
                os.chown(run_dir / sub, uid, uid)
        (run_dir / "etc").mkdir(mode=0o755)
        (run_dir / "etc" / "passwd").write_text(
            f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"agent:x:{SANDBOX_UID}:{SANDBOX_UID}:agent:{HOME}:/bin/sh\n"
            f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (run_dir / "etc" / "group").write_text(
            f"root:x:0:\nagent:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"
        )
        if bridge is not None:
            # Only loopback exists inside; the web process's name points there.
            names = " ".join(filter(None, ["localhost", bridge["alias"]]))
            (run_dir / "etc" / "hosts").write_text(
                f"127.0.0.1\t{names}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            )
            (run_dir / "net").mkdir(mode=0o711)
            bridge["socket"] = str(run_dir / "net" / "web.sock")
            if bridge["egress"]:
                bridge["egress"]["socket"] = str(run_dir / "net" / "proxy.sock")
        egress = bridge.pop("egress") if bridge is not None else None
        limits = spec.limits
        write_json(
            run_dir / "config.json",
            {
                "run_code": spec.run_code,
                "cgroup": cgroup,
                "bwrap": bwrap,
                "bwrap_options": self.bwrap_options(spec, run_dir),
                "command": list(spec.command),
                "bridge": bridge,
                "egress": egress,
                "run_token": spec.env.get(RUN_TOKEN, ""),
                "host_uid": uid,
                "wall_seconds": limits.wall_seconds,
                "cpu": limits.cpu,
                "memory_bytes": limits.memory_mb * 1024 * 1024,
                "processes": limits.processes,
                "open_files": limits.open_files,
                "file_size_bytes": limits.disk_mb * 1024 * 1024,
                "stop_grace_seconds": int(_setting("SANDBOX_STOP_GRACE_SECONDS", 10)),
            },
        )

    def _launch(self, run_dir: Path) -> dict:
        """Start the supervisor; return its pid and start time once it has forked."""
        # The supervisor gets a bare environment: none of this process's secrets.
        # -S: it is stdlib-only (PYTHONPATH finds agentloop), so skip site-packages
        # and their .pth files — part of the interpreter start every session waits for.
        launcher = subprocess.run(
            [sys.executable, "-S", "-m", "agentloop.sandboxes.supervise", str(run_dir)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(settings.BASE_DIR)},
            cwd=str(settings.BASE_DIR),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            start_new_session=True,
        )
        try:
            supervisor = json.loads((run_dir / "supervisor.json").read_text())
        except (FileNotFoundError, ValueError):
            raise SandboxError(
                "the sandbox supervisor did not start: "
                + (
                    launcher.stderr.decode(errors="replace")[-2000:]
                    or f"exit {launcher.returncode}"
                )
            ) from None
        return supervisor

    # -- asking and stopping -----------------------------------------------------

    def _dir(self, handle: SandboxHandle) -> Path:
        return Path(handle.data.get("dir") or self.run_dir(handle.id))

    def _supervisor(self, handle: SandboxHandle) -> tuple[int | None, str | None]:
        if handle.data.get("supervisor_pid"):
            return handle.data["supervisor_pid"], handle.data.get("supervisor_start")
        # A handle from handle_for(): the run directory knows its supervisor.
        recorded = _read_json(self._dir(handle) / "supervisor.json") or {}
        return recorded.get("pid"), recorded.get("start_time")

    def _supervisor_alive(self, handle: SandboxHandle) -> bool:
        return is_same_process(*self._supervisor(handle))

    def status(self, handle: SandboxHandle) -> SandboxStatus:
        run_dir = self._dir(handle)
        if not run_dir.exists():  # never started here, or cleaned up
            return SandboxStatus(SandboxState.GONE, detail="no sandbox directory")
        recorded = self._recorded_exit(run_dir)
        if recorded:
            return recorded
        if self._supervisor_alive(handle):
            if (run_dir / "sandbox.json").exists():
                return SandboxStatus(SandboxState.RUNNING)
            return SandboxStatus(SandboxState.STARTING)
        # It may have written its state between the first look and now.
        return self._recorded_exit(run_dir) or SandboxStatus(
            SandboxState.GONE, detail="the supervisor ended without recording an exit"
        )

    @staticmethod
    def _recorded_exit(run_dir: Path) -> SandboxStatus | None:
        state = _read_json(run_dir / "state.json")
        if state is None:
            return None
        if state["exit_code"] is None:  # bwrap never ran, or the supervisor failed
            return SandboxStatus(SandboxState.GONE, detail=state.get("detail", state["reason"]))
        return SandboxStatus(
            SandboxState.EXITED, exit_code=state["exit_code"], detail=state["reason"]
        )

    def stop(self, handle: SandboxHandle) -> None:
        """SIGTERM to the supervisor; it signals the processes inside and SIGKILLs
        them after SANDBOX_STOP_GRACE_SECONDS, so this call does not wait."""
        if self._supervisor_alive(handle):
            try:
                os.kill(self._supervisor(handle)[0], signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self, handle: SandboxHandle) -> None:
        """SIGKILL the supervisor: bwrap dies with its parent, the sandbox with bwrap.
        Waits (briefly) until it is dead, so what follows sees a settled state."""
        if self._supervisor_alive(handle):
            _kill(self._supervisor(handle)[0])
        deadline = time.monotonic() + 2
        while self._supervisor_alive(handle) and time.monotonic() < deadline:
            time.sleep(0.01)

    def cleanup(self, handle: SandboxHandle) -> None:
        run_dir = self._dir(handle)
        self.kill(handle)
        sandbox = _read_json(run_dir / "sandbox.json")
        if sandbox and is_same_process(sandbox.get("bwrap_pid"), sandbox.get("bwrap_start")):
            # bwrap normally dies with its supervisor; if the supervisor was killed
            # before bwrap armed --die-with-parent, it would live on.
            _kill(sandbox["bwrap_pid"])
        # A killed supervisor could not remove its cgroups (maybe not even record them).
        # Everything still in them is the sandbox's (the supervisor never joins them).
        recorded = [Path(c["path"]) for c in (sandbox or {}).get("cgroups", [])]
        named = cgroup_dirs(handle.data["cgroup"]) if handle.data.get("cgroup") else []
        cgroups = {*recorded, *named}
        for directory in cgroups:
            try:
                pids = (directory / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                _kill(int(pid))
        if run_dir.exists():
            if not run_dir.resolve().is_relative_to(Path(settings.SANDBOX_ROOT).resolve()):
                raise SandboxError(f"refusing to remove {run_dir}: it is outside SANDBOX_ROOT.")
            shutil.rmtree(run_dir, ignore_errors=True)
        for directory in cgroups:
            remove_cgroup(directory)

    def read_log(self, handle: SandboxHandle, tail_bytes: int = 64 * 1024) -> str:
        """The last tail_bytes of the runner's stdout and stderr, for debugging."""
        path = self._dir(handle) / "runner.log"
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - tail_bytes))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


def _check_traversable(root: Path) -> None:
    """bwrap runs as the unprivileged sandbox uid: every parent of SANDBOX_ROOT must let it pass."""
    for parent in [root, *root.parents]:
        if not parent.stat().st_mode & 0o001:
            raise SandboxError(
                f"{parent} is not traversable by other users "
                f"(mode {parent.stat().st_mode & 0o777:o}): the sandbox uid cannot reach "
                "SANDBOX_ROOT. Use a SANDBOX_ROOT whose parents are all o+x."
            )


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
