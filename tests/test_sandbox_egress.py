"""The egress proxy of a runner-only sandbox, end to end: real bubblewrap runs reach
hosts of the test's own (a network namespace with a veth pair, created here),
and only those on the allow-list; git clone/push, pip and npm work through it.

Nothing here talks to an address outside this machine: the "outside" host is
198.18.N.2 in a network namespace this test creates and removes.
"""

# ruff: noqa: F811 (the fixtures come from test_sandbox_local)
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agentloop.sandboxes.base import NetworkPolicy, SandboxError
from agentloop.sandboxes.egress import EgressProxy, address_problem, is_allowed, parse_rule
from tests.test_sandbox_local import BWRAP, provider, python, run_json, sandbox_root  # noqa: F401

pytestmark = pytest.mark.skipif(
    not os.access(BWRAP, os.X_OK), reason="bubblewrap is not installed (/usr/bin/bwrap)"
)

ORIGIN = Path(__file__).with_name("egress_origin.py")
GIT_NAME, PKG_NAME = "git.example.test", "pkgs.example.test"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def outside_host():
    """A host of our own: a network namespace, a veth pair, a web server on port 80 inside."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("creating a network namespace needs root and iproute2")
    tag = secrets.token_hex(3)
    namespace, host_side, far_side = f"alsbx{tag}", f"alh{tag}", f"alf{tag}"
    subnet = 16 + secrets.randbelow(200)
    host_address, far_address = f"198.18.{subnet}.1", f"198.18.{subnet}.2"
    git_root = Path(tempfile.mkdtemp(prefix="agentloop-egress-git-"))
    _ip("netns", "add", namespace)
    server = None
    try:
        _ip("link", "add", host_side, "type", "veth", "peer", "name", far_side)
        _ip("link", "set", far_side, "netns", namespace)
        _ip("addr", "add", f"{host_address}/30", "dev", host_side)
        _ip("link", "set", host_side, "up")
        _ip("-n", namespace, "addr", "add", f"{far_address}/30", "dev", far_side)
        _ip("-n", namespace, "link", "set", far_side, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        # A bare repository to clone from and push to.
        seed = git_root / "seed"
        subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
        (seed / "README.md").write_text("hello from the outside repository\n")
        git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@example.test"]
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-qm", "first"], check=True)
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(seed), str(git_root / "repo.git")], check=True
        )
        subprocess.run(
            ["git", "-C", str(git_root / "repo.git"), "config", "http.receivepack", "true"],
            check=True,
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, str(ORIGIN), "80",
             str(git_root), PKG_NAME],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert server.stdout.readline().strip() == "ready"
        yield {
            "address": far_address,
            "host_address": host_address,
            "network": f"{far_address}/32",
            "git_root": git_root,
        }
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_side], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        shutil.rmtree(git_root, ignore_errors=True)


@pytest.fixture
def web():
    """A stand-in web process that keeps the events posted to it."""
    posted: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posted.append({"path": self.path, "auth": self.headers["Authorization"],
                           "body": json.loads(body)})  # fmt: skip
            answer = b'{"stored": 1}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield server.server_address[1], posted
    server.shutdown()
    server.server_close()


@pytest.fixture
def egress_settings(settings, outside_host):
    settings.SANDBOX_EGRESS_PRIVATE_NETWORKS = [outside_host["network"]]
    settings.SANDBOX_EGRESS_STATIC_HOSTS = {
        GIT_NAME: outside_host["address"],
        PKG_NAME: outside_host["address"],
        "loopback.example.test": "127.0.0.1",
        "hostside.example.test": outside_host["host_address"],  # private, not opened
    }
    return settings


def egress_run(code: str, script: str, web_port: int, hosts: list[str], **limits):
    sandbox_spec = python(code, script, wall_seconds=120, **limits)
    return replace(
        sandbox_spec,
        env={"AGENTLOOP_URL": f"http://localhost:{web_port}/", "AGENTLOOP_RUN_TOKEN": "al_sk_x"},
        network=NetworkPolicy.RUNNER_ONLY,
        egress_hosts=tuple(hosts),
    )


FETCH = """
import json, os, urllib.request, urllib.error
results = {}
for name, url in %(urls)r:
    try:
        results[name] = urllib.request.urlopen(url, timeout=20).read().decode()
    except urllib.error.HTTPError as error:
        results[name] = [error.code, error.read().decode().strip()]
    except OSError as error:
        results[name] = repr(error)
print(json.dumps(results))
"""


def test_allowed_hosts_are_reached_and_everything_else_is_refused_and_reported(
    provider,
    egress_settings,
    web,
):
    web_port, posted = web
    urls = [
        ("allowed", f"http://{PKG_NAME}/hello"),
        ("not_listed", "http://not-listed.example.test/hello"),
        ("loopback", "http://loopback.example.test/hello"),
        ("private", "http://hostside.example.test/hello"),
        ("address", "http://127.0.0.2:5432/"),
    ]
    hosts = [PKG_NAME, "loopback.example.test", "hostside.example.test", "127.0.0.2:5432"]
    result = run_json(provider, egress_run("egress1", FETCH % {"urls": urls}, web_port, hosts))

    assert result["allowed"] == f"hello from {PKG_NAME} via {PKG_NAME}"
    assert result["not_listed"][0] == 403
    assert "not on the run's allow-list" in result["not_listed"][1]
    assert result["loopback"][0] == 403 and "loopback" in result["loopback"][1]
    assert result["private"][0] == 403 and "private" in result["private"][1]
    assert result["address"][0] == 403 and "loopback" in result["address"][1]
    # Each refusal is an event of the run's transcript, posted with the run's token.
    deadline = time.monotonic() + 10
    while len(posted) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = [p["body"]["events"][0] for p in posted]
    assert {p["path"] for p in posted} == {"/api/runner/v1/events"}
    assert {p["auth"] for p in posted} == {"Bearer al_sk_x"}
    refused = sorted(e["key"].split(":")[1] for e in events)  # egress-refused:<host>:<port>
    assert refused == sorted(
        ["not-listed.example.test", "loopback.example.test", "hostside.example.test", "127.0.0.2"]
    )
    assert all(e["kind"] == "error" and "egress proxy refused" in e["payload"]["message"]
               for e in events)  # fmt: skip


def test_without_an_allow_list_there_is_no_proxy_at_all(provider, egress_settings, web):
    web_port, _ = web
    script = """
    import json, os, socket
    try:
        socket.create_connection(("127.0.0.1", 3128), timeout=3).close()
        proxy = "connected"
    except OSError as exc:
        proxy = type(exc).__name__
    print(json.dumps({"proxy": proxy, "env": os.environ.get("HTTPS_PROXY")}))
    """
    result = run_json(provider, egress_run("egress0", script, web_port, []))
    assert result == {"proxy": "ConnectionRefusedError", "env": None}


def test_an_https_style_tunnel_opens_only_to_an_allowed_host(provider, egress_settings, web):
    web_port, _ = web
    script = """
    import http.client, json
    results = {}
    for host in (ALLOWED, "not-listed.example.test"):
        connection = http.client.HTTPConnection("127.0.0.1", 3128, timeout=20)
        connection.set_tunnel(host, 80)  # CONNECT host:80, then HTTP inside the tunnel
        try:
            connection.request("GET", "/hello")
            results[host] = connection.getresponse().read().decode()
        except OSError as exc:
            results[host] = str(exc)
    print(json.dumps(results))
    """.replace("ALLOWED", repr(PKG_NAME))
    result = run_json(provider, egress_run("egress2", script, web_port, [f"{PKG_NAME}:80"]))

    assert result[PKG_NAME].startswith(f"hello from {PKG_NAME} via {PKG_NAME}")
    assert "403" in result["not-listed.example.test"]


def test_git_clone_and_push_work_through_the_proxy(provider, egress_settings, web, outside_host):
    web_port, _ = web
    script = f"""
    import json, subprocess
    def git(*args, cwd="/workspace"):
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
        return done.returncode, done.stderr[-500:]
    clone = git("clone", "-q", "http://{GIT_NAME}/git/repo.git", "repo")
    readme = open("/workspace/repo/README.md").read() if clone[0] == 0 else ""
    open("/workspace/repo/agent.txt", "w").write("written in the sandbox\\n")
    ident = ["-c", "user.name=agent", "-c", "user.email=agent@example.test"]
    git("add", "agent.txt", cwd="/workspace/repo")
    git(*ident, "commit", "-qm", "from the sandbox", cwd="/workspace/repo")
    push = git("push", "-q", "origin", "HEAD:refs/heads/agentloop/run", cwd="/workspace/repo")
    print(json.dumps({{"clone": clone, "readme": readme, "push": push}}))
    """
    result = run_json(provider, egress_run("egressgit", script, web_port, [GIT_NAME]))

    assert result["clone"][0] == 0, result
    assert result["readme"] == "hello from the outside repository\n"
    assert result["push"][0] == 0, result
    pushed = subprocess.run(
        ["git", "-C", str(outside_host["git_root"] / "repo.git"), "show",
         "agentloop/run:agent.txt"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert pushed.stdout == "written in the sandbox\n"


def test_pip_and_npm_install_through_the_proxy(provider, egress_settings, web):
    web_port, _ = web
    script = f"""
    import json, subprocess, sys
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--target", "/workspace/py",
         "--index-url", "http://{PKG_NAME}/simple/", "--trusted-host", "{PKG_NAME}", "alhello"],
        capture_output=True, text=True)
    sys.path.insert(0, "/workspace/py")
    try:
        import alhello
        greeting = alhello.GREETING
    except ImportError as exc:
        greeting = repr(exc)
    npm = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--registry", "http://{PKG_NAME}/",
         "alhello"], cwd="/workspace", capture_output=True, text=True)
    node = subprocess.run(["node", "-e", "console.log(require('alhello'))"], cwd="/workspace",
                          capture_output=True, text=True)
    print(json.dumps({{"pip": [pip.returncode, pip.stderr[-800:]], "greeting": greeting,
                      "npm": [npm.returncode, npm.stderr[-800:]], "node": node.stdout.strip()}}))
    """
    result = run_json(provider, egress_run("egresspkg", script, web_port, [PKG_NAME]))

    assert result["pip"][0] == 0, result["pip"]
    assert result["greeting"] == "hello from a wheel"
    assert result["npm"][0] == 0, result["npm"]
    assert result["node"] == "hello from npm"


def test_a_bad_allow_list_entry_is_a_clear_error(provider, sandbox_root):
    sandbox_spec = egress_run("egressbad", "pass", 8000, ["git hub.com"])
    with pytest.raises(SandboxError, match="is not a host name"):
        provider.start(sandbox_spec)


def test_the_rules_and_the_address_checks():
    rules = [parse_rule(e) for e in ["github.com", "pypi.org:8443", "*.pythonhosted.org"]]
    assert is_allowed("github.com", 443, rules) and is_allowed("GitHub.com.", 80, rules)
    assert not is_allowed("github.com", 22, rules)
    assert is_allowed("pypi.org", 8443, rules) and not is_allowed("pypi.org", 443, rules)
    assert is_allowed("files.pythonhosted.org", 443, rules)
    assert not is_allowed("pythonhosted.org", 443, rules)
    assert not is_allowed("evilgithub.com", 443, rules)
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0"):
        assert "loopback" in address_problem(address, [])
    for address in ("10.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1", "fd00::1"):
        assert address_problem(address, []) is not None
    assert address_problem("169.254.169.254", []) is not None  # cloud metadata
    assert address_problem("140.82.112.3", []) is None  # a public address (never dialled here)
    proxy = EgressProxy(rules, open_networks=["127.0.0.0/8"])
    assert "loopback" in address_problem("127.0.0.1", proxy.open_networks)  # never opened
