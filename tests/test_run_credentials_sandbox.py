"""The runner keeps its token from the agent: a real runner in a real bubblewrap
sandbox runs a stand-in Claude Code CLI (the agent), which looks for the runner's
token everywhere a process of the same uid could: its environment, every
process's environ, memory and open pipes. It finds only the harness key."""

# ruff: noqa: F811 (the fixtures come from test_sandbox_local)
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from agentloop.sandboxes.base import NetworkPolicy, SandboxState
from tests.runner_double import RunnerDouble
from tests.test_sandbox_local import (  # noqa: F401
    BWRAP,
    provider,
    sandbox_root,
    spec,
    wait_until_done,
)

pytestmark = pytest.mark.skipif(
    not os.access(BWRAP, os.X_OK), reason="bubblewrap is not installed (/usr/bin/bwrap)"
)

# The agent: prints one stream-json assistant message with what it found, then a result.
FAKE_CLAUDE = r"""#!/usr/bin/python3
import hashlib, json, os, sys
sys.stdin.read()
NEEDLE = ("@HEAD@" + "@TAIL@").encode()
me = str(os.getpid())
own_pipes = {os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)}
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    if pid == me:
        continue
    try:
        if NEEDLE in open(f"/proc/{pid}/environ", "rb").read():
            found.append(f"{pid}/environ")
    except OSError:
        pass
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        with open(f"/proc/{pid}/mem", "rb") as mem:
            for line in maps:
                fields = line.split()
                if "r" not in fields[1]:
                    continue
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                try:
                    mem.seek(lo)
                    if NEEDLE in mem.read(min(hi - lo, 1 << 26)):
                        found.append(f"{pid}/mem")
                        break
                except (OSError, OverflowError, ValueError):
                    continue
    except OSError:
        pass
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(path)
            if not target.startswith("pipe:") or target in own_pipes:
                continue
            handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                if NEEDLE in os.read(handle, 65536):
                    found.append(f"{pid}/fd/{fd}")
            finally:
                os.close(handle)
        except OSError:
            pass
digest = lambda name: hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()
report = {
    "found": found,
    "env_names": sorted(n for n in os.environ if n.startswith(("AGENTLOOP", "ANTHROPIC"))),
    "token_in_env": any(NEEDLE in v.encode() for v in os.environ.values()),
    "run_token_var": digest("AGENTLOOP_RUN_TOKEN"),
    "api_key": digest("ANTHROPIC_API_KEY"),
}
text = json.dumps(report)
content = [{"type": "text", "text": text}]
print(json.dumps({"type": "assistant", "message": {"id": "m1", "content": content}}))
result = {"subtype": "success", "is_error": False, "session_id": "s1", "result": "done"}
print(json.dumps({"type": "result", **result}))
"""


@pytest.fixture
def fake_claude(settings):
    directory = Path(tempfile.mkdtemp(prefix="agentloop-fake-claude-", dir="/tmp"))
    directory.chmod(0o755)
    settings.SANDBOX_RO_BINDS = [f"{directory}:/opt/fake"]
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_the_agent_finds_the_harness_key_and_never_the_runners_token(provider, fake_claude):
    token = "al_sk_" + secrets.token_urlsafe(24)
    harness_key = "al_sk_" + secrets.token_urlsafe(24)
    half = len(token) // 2
    script = FAKE_CLAUDE.replace("@HEAD@", token[:half]).replace("@TAIL@", token[half:])
    (fake_claude / "claude").write_text(script)
    (fake_claude / "claude").chmod(0o755)
    double_spec = {
        "harness": "claude-code",
        "claude_path": "/opt/fake/claude",
        "llm_base_url": "http://localhost:9/llm",
        "env": {"AGENTLOOP_HARNESS_KEY": harness_key},
        "max_turns": 1,
    }
    with RunnerDouble(spec=double_spec, token=token) as double:
        port = double.url.rsplit(":", 1)[1]
        sandbox_spec = replace(
            spec("creds", ["python3", "-m", "agentloop.runner"]),
            env={"AGENTLOOP_URL": f"http://localhost:{port}/", "AGENTLOOP_RUN_TOKEN": token},
            network=NetworkPolicy.RUNNER_ONLY,
        )
        handle = provider.start(sandbox_spec)

        def messages():
            return [e for e in double.events if e["kind"] == "message" and e["source"] == "agent"]

        reported = double.wait_for(lambda: messages(), timeout=30)
        double.request_stop()  # the session would wait for a follow-up
        status = wait_until_done(provider, handle, timeout=30)
        log = provider.read_log(handle)
        messages = messages()

    assert reported, log
    assert status.state == SandboxState.EXITED and status.exit_code == 0, log
    report = json.loads(messages[-1]["payload"]["text"])
    assert report["found"] == []  # not in any environ, memory or pipe of the sandbox
    assert report["token_in_env"] is False
    sha = hashlib.sha256(harness_key.encode()).hexdigest()
    assert (report["run_token_var"], report["api_key"]) == (sha, sha)
    assert "AGENTLOOP_RUN_TOKEN_FD" not in report["env_names"]
    assert "AGENTLOOP_HARNESS_KEY" not in report["env_names"]
