"""The local provider against real bubblewrap: what a runaway or curious agent can and cannot do."""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agentloop.sandboxes.base import (
    Limits,
    NetworkPolicy,
    SandboxError,
    SandboxHandle,
    SandboxSpec,
    SandboxState,
)
from agentloop.sandboxes.local import LocalProvider, claude_binary
from agentloop.sandboxes.registry import get_provider, override_provider, unregister_provider
from agentloop.sandboxes.supervise import cgroup_dirs, descendants, process_start_time

BWRAP = "/usr/bin/bwrap"
pytestmark = pytest.mark.skipif(
    not os.access(BWRAP, os.X_OK), reason="bubblewrap is not installed (/usr/bin/bwrap)"
)

DONE = {SandboxState.EXITED, SandboxState.GONE}


@pytest.fixture
def sandbox_root(settings):
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700 and bwrap runs as the
    # unprivileged sandbox uid, which must be able to traverse to the run dirs.
    root = Path(tempfile.mkdtemp(prefix="agentloop-sbx-", dir="/tmp"))
    root.chmod(0o711)
    settings.SANDBOX_ROOT = root
    settings.SANDBOX_STOP_GRACE_SECONDS = 2
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def provider(sandbox_root):
    provider = LocalProvider()
    started: list[SandboxHandle] = []
    original_start = provider.start

    def start(spec):
        handle = original_start(spec)
        started.append(handle)
        return handle

    provider.start = start
    yield provider
    for handle in started:
        provider.cleanup(handle)


def spec(code: str, command: list[str], **limits) -> SandboxSpec:
    return SandboxSpec(
        run_code=code,
        command=command,
        env={
            "AGENTLOOP_URL": "http://127.0.0.1:8000",
            "AGENTLOOP_RUN_TOKEN": f"al_sk_{code}_token",
        },
        limits=Limits(**{"wall_seconds": 30, **limits}),
    )


def python(code: str, script: str, **limits) -> SandboxSpec:
    return spec(code, ["python3", "-c", textwrap.dedent(script)], **limits)


def wait_until_done(provider, handle, timeout=20.0):
    """Poll status until the sandbox has ended; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = provider.status(handle)
        if status.state in DONE:
            return status
        time.sleep(0.05)
    raise AssertionError(f"sandbox {handle.id} still {provider.status(handle)} after {timeout}s")


def wait_until_running(provider, handle, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if provider.status(handle).state == SandboxState.RUNNING:
            return
        time.sleep(0.05)
    raise AssertionError(f"sandbox {handle.id} never ran: {provider.status(handle)}")


def wait_for_output(provider, handle, text: str, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in provider.read_log(handle):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the log: {provider.read_log(handle)!r}")


def wait_until_gone(pid: int, start_time: str, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_start_time(pid) != start_time:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive after {timeout}s")


def run_json(provider, sandbox_spec) -> dict:
    """Run a python script that prints one JSON line last; return it."""
    handle = provider.start(sandbox_spec)
    status = wait_until_done(provider, handle)
    log = provider.read_log(handle)
    assert status.state == SandboxState.EXITED and status.exit_code == 0, log
    return json.loads(log.strip().splitlines()[-1])


def test_it_runs_a_command_and_reports_its_exit_code(provider):
    handle = provider.start(python("exit3", "print('hello from inside'); raise SystemExit(3)"))

    status = wait_until_done(provider, handle)

    assert status.state == SandboxState.EXITED
    assert status.exit_code == 3
    assert status.detail == "exited"
    assert "hello from inside" in provider.read_log(handle)


def test_the_handle_survives_json_and_another_provider_instance(provider):
    handle = provider.start(python("json1", "raise SystemExit(0)"))
    stored = json.loads(json.dumps(handle.to_json()))

    status = wait_until_done(LocalProvider(), SandboxHandle.from_json(stored))

    assert (status.state, status.exit_code) == (SandboxState.EXITED, 0)


def test_the_agent_is_uid_1000_and_sees_none_of_the_host(provider, settings):
    paths = [
        "/root",
        "/work",
        str(settings.VAR_DIR),
        str(settings.BASE_DIR),
        "/home/agent/..",
        "/etc/shadow",
    ]
    result = run_json(
        provider,
        python(
            "peek",
            f"""
            import json, os
            seen = {{p: os.path.exists(p) and p != '/home/agent/..' for p in {paths!r}}}
            print(json.dumps({{
                "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
                "seen": seen, "home": os.listdir('/home'),
                "etc": sorted(os.listdir('/etc')),
            }}))
            """,
        ),
    )

    assert (result["uid"], result["gid"]) == (1000, 1000)
    assert result["cwd"] == "/workspace"
    assert result["seen"] == {p: False for p in paths}
    assert result["home"] == ["agent"]
    assert "shadow" not in result["etc"] and "ssl" in result["etc"]


def test_it_cannot_read_another_runs_workspace(provider, sandbox_root):
    victim = provider.start(spec("victim", ["sleep", "30"]))
    wait_until_running(provider, victim)
    secret = Path(victim.data["dir"]) / "workspace" / "secret.txt"
    secret.write_text("victim's data")

    result = run_json(
        provider,
        python(
            "thief",
            f"""
            import json, os
            attempts = {{}}
            paths = [{str(secret)!r}, {str(sandbox_root)!r},
                     '/workspace/../victim/workspace/secret.txt']
            for path in paths:
                try:
                    attempts[path] = open(path).read() if os.path.isfile(path) else os.listdir(path)
                except OSError as exc:
                    attempts[path] = type(exc).__name__
            print(json.dumps(attempts))
            """,
        ),
    )

    assert set(result.values()) == {"FileNotFoundError"}
    assert provider.status(victim).state == SandboxState.RUNNING


def test_system_paths_are_read_only_and_workspace_home_tmp_are_writable(provider):
    result = run_json(
        provider,
        python(
            "writes",
            """
            import errno, json
            outcome = {}
            for path in ['/usr/evil', '/etc/passwd', '/evil', '/opt/agentloop/agentloop/evil.py',
                         '/workspace/notes.txt', '/home/agent/.config', '/tmp/scratch']:
                try:
                    with open(path, 'a') as f:
                        f.write('x')
                    outcome[path] = 'written'
                except OSError as exc:
                    outcome[path] = errno.errorcode[exc.errno]
            print(json.dumps(outcome))
            """,
        ),
    )

    assert result == {
        "/usr/evil": "EROFS",
        "/etc/passwd": "EACCES",  # root-owned outside: an unmapped owner, not ours to write
        "/evil": "EROFS",
        "/opt/agentloop/agentloop/evil.py": "EROFS",
        "/workspace/notes.txt": "written",
        "/home/agent/.config": "written",
        "/tmp/scratch": "written",
    }


def test_the_environment_is_the_specs_and_nothing_of_the_host(provider, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "host-secret-must-not-leak")
    monkeypatch.setenv("DATABASE_URL", "postgres://host:secret@db/agentloop")

    script = """
    import json, os
    env = dict(os.environ)
    env["token_from_fd"] = os.read(int(env["AGENTLOOP_RUN_TOKEN_FD"]), 100).decode()
    print(json.dumps(env))
    """
    result = run_json(provider, python("env", script))

    # The run token comes through a pipe, never the environment (agentloop.runner.credentials).
    assert result.pop("token_from_fd") == "al_sk_env_token"
    assert result["AGENTLOOP_URL"] == "http://127.0.0.1:8000"
    assert result["HOME"] == "/home/agent"
    assert set(result) == {
        "AGENTLOOP_URL",
        "AGENTLOOP_RUN_TOKEN_FD",
        "AGENTLOOP_WORKSPACE",
        "AGENTLOOP_HARNESS_CLI_DIR",
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PWD",
    }
    assert "host-secret" not in json.dumps(result)
    # No provider key of any kind: the harnesses reach models through the gateway only.
    assert not [name for name in result if name.endswith(("_API_KEY", "_AUTH_TOKEN"))]


def test_the_run_token_is_in_no_command_line_and_not_left_on_disk(provider):
    handle = provider.start(spec("tokenps", ["sleep", "30"]))
    wait_until_running(provider, handle)

    token = b"al_sk_tokenps_token"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            assert token not in Path(f"/proc/{pid}/cmdline").read_bytes(), (
                f"token in pid {pid}'s argv"
            )
        except (FileNotFoundError, ProcessLookupError):
            pass
    for path in Path(handle.data["dir"]).rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), f"token left in {path}"


@pytest.fixture
def web_and_database():
    """A stand-in web process (HTTP) and a stand-in database port on the host's loopback."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello {self.path} via {self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    web = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=web.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    database = socket.create_server(("127.0.0.1", 0))
    yield web.server_address[1], database.getsockname()[1]
    web.shutdown()
    web.server_close()
    database.close()


PROBE = """
import json, os, socket, urllib.request
result = {"url": os.environ["AGENTLOOP_URL"]}
try:
    result["web"] = urllib.request.urlopen(os.environ["AGENTLOOP_URL"] + "api/runner/v1/spec",
                                           timeout=10).read().decode()
except OSError as exc:
    result["web"] = repr(exc)
for name, address in [("database", ("127.0.0.1", %(db)d)), ("internet", ("1.1.1.1", 53))]:
    try:
        socket.create_connection(address, timeout=3).close()
        result[name] = "connected"
    except OSError as exc:
        result[name] = type(exc).__name__
print(json.dumps(result))
"""


def test_runner_only_reaches_the_web_process_and_nothing_else(provider, web_and_database):
    web_port, db_port = web_and_database
    sandbox_spec = replace(
        spec("netonly", ["python3", "-c", PROBE % {"db": db_port}]),
        env={"AGENTLOOP_URL": f"http://localhost:{web_port}/"},
        network=NetworkPolicy.RUNNER_ONLY,
    )

    result = run_json(provider, sandbox_spec)

    assert result["url"] == f"http://localhost:{web_port}/"  # the name resolves to the bridge
    assert result["web"] == f"hello /api/runner/v1/spec via localhost:{web_port}"
    assert result["database"] == "ConnectionRefusedError"  # nothing listens in its own netns
    assert result["internet"] == "OSError"  # no route at all: ENETUNREACH


def test_runner_only_rewrites_an_ip_address_to_the_bridge(provider, web_and_database):
    web_port, db_port = web_and_database
    sandbox_spec = replace(
        spec("netip", ["python3", "-c", PROBE % {"db": db_port}]),
        env={"AGENTLOOP_URL": f"http://127.0.0.1:{web_port}/"},
    )

    result = run_json(provider, sandbox_spec)

    assert result["web"] == f"hello /api/runner/v1/spec via 127.0.0.1:{web_port}"
    assert result["database"] == "ConnectionRefusedError"


def test_open_network_reaches_what_the_host_reaches(provider, web_and_database):
    web_port, db_port = web_and_database
    sandbox_spec = replace(
        spec("netopen", ["python3", "-c", PROBE % {"db": db_port}]),
        env={"AGENTLOOP_URL": f"http://127.0.0.1:{web_port}/"},
        network=NetworkPolicy.OPEN,
    )

    result = run_json(provider, sandbox_spec)

    assert result["web"].startswith("hello /api/runner/v1/spec")
    assert result["database"] == "connected"


def test_runner_only_without_an_agentloop_url_is_refused(provider, sandbox_root):
    with pytest.raises(SandboxError, match="runner-only needs AGENTLOOP_URL"):
        provider.start(replace(spec("nourl", ["true"]), env={}))

    assert list(sandbox_root.iterdir()) == []


def test_extra_read_only_binds_come_from_settings(provider, settings, sandbox_root):
    extra = sandbox_root.parent / f"{sandbox_root.name}-extra"
    extra.mkdir(mode=0o755)
    (extra / "model.txt").write_text("shared read-only data")
    (extra / "model.txt").chmod(0o644)
    settings.SANDBOX_RO_BINDS = [f"{extra}:/opt/data"]
    try:
        result = run_json(
            provider,
            python(
                "binds",
                """
                import errno, json
                try:
                    open('/opt/data/new.txt', 'w')
                    write = 'written'
                except OSError as exc:
                    write = errno.errorcode[exc.errno]
                print(json.dumps({"read": open('/opt/data/model.txt').read(), "write": write}))
                """,
            ),
        )
    finally:
        import shutil

        shutil.rmtree(extra)

    assert result == {"read": "shared read-only data", "write": "EROFS"}


def test_a_malformed_extra_bind_is_a_clear_error(provider, settings, sandbox_root):
    settings.SANDBOX_RO_BINDS = ["relative/path:/opt/data"]

    with pytest.raises(SandboxError, match="not 'host_path:sandbox_path'"):
        provider.start(spec("badbind", ["true"]))

    # No run directory is left (the shared runtime copy may be there).
    assert [p.name for p in sandbox_root.iterdir() if p.name != ".runtime"] == []


def test_the_runner_package_imports_inside(provider):
    handle = provider.start(
        spec(
            "imports",
            ["python3", "-c", "import agentloop.runner.harnesses.base as m; print(m.__file__)"],
        )
    )

    status = wait_until_done(provider, handle)

    assert status.exit_code == 0, provider.read_log(handle)
    assert "/opt/agentloop/agentloop/runner/harnesses/base.py" in provider.read_log(handle)


@pytest.mark.skipif(
    claude_binary() is None, reason="claude_agent_sdk's bundled CLI is not installed"
)
def test_the_claude_cli_runs_inside(provider):
    handle = provider.start(spec("claude", ["claude", "--version"]))

    status = wait_until_done(provider, handle, timeout=60)

    assert status.exit_code == 0, provider.read_log(handle)
    assert "Claude Code" in provider.read_log(handle)


def test_the_wall_clock_kills_a_runaway(provider):
    handle = provider.start(spec("slow", ["sleep", "30"], wall_seconds=2))
    started = time.monotonic()

    status = wait_until_done(provider, handle)

    assert status.state == SandboxState.EXITED
    assert status.detail == "wall_clock"
    assert status.exit_code == 128 + signal.SIGTERM  # sleep took the polite SIGTERM
    assert time.monotonic() - started < 10


def test_the_process_limit_stops_a_fork_bomb(provider):
    result = run_json(
        provider,
        python(
            "forks",
            """
            import json, os, time
            children = 0
            error = None
            try:
                for _ in range(100):
                    if os.fork() == 0:
                        time.sleep(5)
                        os._exit(0)
                    children += 1
            except OSError as exc:
                error = exc.strerror
            print(json.dumps({"children": children, "error": error}))
            """,
            processes=20,
        ),
    )

    assert result["children"] < 20
    assert result["error"] == "Resource temporarily unavailable"


def test_the_memory_limit_kills_a_hog(provider):
    handle = provider.start(
        python("hog", "x = bytearray(400 * 1024 * 1024); print('allocated')", memory_mb=64)
    )

    status = wait_until_done(provider, handle)
    sandbox = json.loads((Path(handle.data["dir"]) / "sandbox.json").read_text())
    applied = {name for cgroup in sandbox["cgroups"] for name in cgroup["applied"]}
    if not applied & {"memory.limit_in_bytes", "memory.max"}:
        pytest.skip("no writable memory cgroup here: memory is not limited (docs/sandboxes.md)")

    assert status.exit_code == 128 + signal.SIGKILL  # the OOM killer
    assert "allocated" not in provider.read_log(handle)


def test_the_cpu_limit_throttles_a_busy_loop(provider):
    handle = provider.start(
        python(
            "busy",
            """
            import time
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                pass
            print(round(time.process_time(), 2))
            """,
            cpu=0.2,
        )
    )

    status = wait_until_done(provider, handle)
    sandbox = json.loads((Path(handle.data["dir"]) / "sandbox.json").read_text())
    applied = {name for cgroup in sandbox["cgroups"] for name in cgroup["applied"]}
    if not applied & {"cpu.cfs_quota_us", "cpu.max"}:
        pytest.skip("no writable cpu cgroup here: cpu is not limited (docs/sandboxes.md)")

    assert status.exit_code == 0
    cpu_seconds = float(provider.read_log(handle).split()[-1])
    assert cpu_seconds < 0.5  # a fifth of a core for a second, not the whole second


def test_stop_ends_it_gracefully(provider):
    handle = provider.start(
        python(
            "stopme",
            """
            import signal, sys, time
            def on_term(*args):
                print('flushed on SIGTERM', flush=True)
                sys.exit(7)
            signal.signal(signal.SIGTERM, on_term)
            print('ready', flush=True)
            time.sleep(30)
            """,
        )
    )
    wait_for_output(provider, handle, "ready")

    provider.stop(handle)
    status = wait_until_done(provider, handle)

    assert (status.state, status.exit_code, status.detail) == (SandboxState.EXITED, 7, "stopped")
    assert "flushed on SIGTERM" in provider.read_log(handle)
    provider.stop(handle)  # idempotent once ended


def test_stop_kills_what_ignores_sigterm_after_the_grace_period(provider):
    handle = provider.start(
        python(
            "stubborn",
            """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print('ready', flush=True)
            time.sleep(30)
            """,
        )
    )
    wait_for_output(provider, handle, "ready")

    provider.stop(handle)
    status = wait_until_done(provider, handle)

    assert (status.state, status.detail) == (SandboxState.EXITED, "stopped")
    assert status.exit_code == 128 + signal.SIGKILL


def test_the_sandbox_dies_with_its_supervisor(provider):
    handle = provider.start(
        python("orphan", "import time; print('ready', flush=True); time.sleep(30)")
    )
    # Once the command runs, bwrap has armed --die-with-parent. (Killed during bwrap's
    # own setup, a sandbox can outlive its supervisor: cleanup() sweeps its cgroup.)
    wait_for_output(provider, handle, "ready")
    sandbox = json.loads((Path(handle.data["dir"]) / "sandbox.json").read_text())
    inside = {pid: process_start_time(pid) for pid in descendants(sandbox["bwrap_pid"])}
    assert inside, "bwrap has no children: the sandbox is not running"

    os.kill(handle.data["supervisor_pid"], signal.SIGKILL)

    wait_until_gone(sandbox["bwrap_pid"], sandbox["bwrap_start"])
    for pid, start_time in inside.items():
        wait_until_gone(pid, start_time)
    status = provider.status(handle)
    assert status.state == SandboxState.GONE
    assert "without recording an exit" in status.detail


def test_cleanup_removes_the_run_directory_and_is_idempotent(provider):
    handle = provider.start(spec("tidy", ["sleep", "30"]))
    wait_until_running(provider, handle)
    run_dir = Path(handle.data["dir"])
    (run_dir / "workspace" / "output.txt").write_text("left behind")

    cgroups = [
        Path(c["path"]) for c in json.loads((run_dir / "sandbox.json").read_text())["cgroups"]
    ]

    provider.cleanup(handle)
    provider.cleanup(handle)

    assert not run_dir.exists()
    assert [path for path in cgroups if path.exists()] == []
    assert provider.status(handle).state == SandboxState.GONE


def test_cleanup_right_after_start_leaves_no_cgroup_behind(provider):
    handle = provider.start(spec("hasty", ["sleep", "30"]))

    provider.cleanup(handle)

    assert [path for path in cgroup_dirs(handle.data["cgroup"]) if path.exists()] == []
    assert provider.status(handle).state == SandboxState.GONE


def test_status_of_an_unknown_handle_is_gone(provider):
    status = provider.status(SandboxHandle(provider="local", id="never-started"))

    assert status.state == SandboxState.GONE


def test_it_refuses_a_second_sandbox_for_the_same_run_and_a_bad_run_code(provider):
    provider.start(spec("twice", ["true"]))

    with pytest.raises(SandboxError, match="already exists"):
        provider.start(spec("twice", ["true"]))
    with pytest.raises(SandboxError, match="cannot name a sandbox"):
        provider.start(spec("../escape", ["true"]))


def test_it_refuses_a_sandbox_root_the_sandbox_uid_cannot_reach(provider, settings, tmp_path):
    settings.SANDBOX_ROOT = tmp_path / "sandboxes"  # under /tmp/pytest-of-root, mode 0700

    with pytest.raises(SandboxError, match="not traversable"):
        provider.start(spec("unreachable", ["true"]))


def test_the_registry_returns_the_local_provider_and_accepts_a_fake():
    assert isinstance(get_provider("local"), LocalProvider)
    with pytest.raises(SandboxError, match="unknown sandbox provider 'nope'"):
        get_provider("nope")

    fake = LocalProvider()
    with override_provider("local", fake):
        assert get_provider("local") is fake
    assert get_provider("local") is not fake
    unregister_provider("local")
