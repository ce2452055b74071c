"""The seccomp filter and the ban on nested user namespaces, proved inside a real bwrap run."""

# ruff: noqa: F811 (the fixtures come from test_sandbox_local)
from __future__ import annotations

import errno
import json
import os
import platform
import struct
import subprocess

import pytest

from agentloop.sandboxes import seccomp
from tests.test_sandbox_local import BWRAP, provider, python, run_json, sandbox_root  # noqa: F401

pytestmark = pytest.mark.skipif(
    not os.access(BWRAP, os.X_OK),
    reason="bubblewrap is not installed (/usr/bin/bwrap)",
)

# Each probe calls the system call directly (ctypes' syscall()), so no library
# can hide an answer, and reports its errno. The numbers come from the policy's table.
SYSCALL_PROBE = """
import ctypes, json, os, subprocess
nr = json.loads(%(numbers)r)
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    ctypes.set_errno(0)
    result = libc.syscall(nr[name], *[ctypes.c_long(a) for a in args])
    return 0 if result >= 0 else ctypes.get_errno()
result = {
    "unshare_user": call("unshare", 0x10000000),
    "unshare_net": call("unshare", 0x40000000),
    "unshare_mount": call("unshare", 0x00020000),
    "clone_newuser": call("clone", 0x10000000 | 17, 0, 0, 0, 0),
    "setns": call("setns", 0, 0),
    "mount": call("mount", 0, 0, 0, 0, 0),
    "ptrace_attach_parent": call("ptrace", 16, os.getppid(), 0, 0),
    "keyctl": call("keyctl", 0, -3, 0, 0, 0),
    "add_key": call("add_key", 0, 0, 0, 0, 0),
    "bpf": call("bpf", 0, 0, 0),
    "perf_event_open": call("perf_event_open", 0, 0, -1, -1, 0),
    "userfaultfd": call("userfaultfd", 0),
    "process_vm_readv": call("process_vm_readv", os.getppid(), 0, 0, 0, 0, 0),
    "clone3": call("clone3", 0, 0),
}
unshare = subprocess.run(["unshare", "-U", "-r", "id", "-u"], capture_output=True, text=True)
result["unshare_cli"] = [unshare.returncode, unshare.stdout.strip()]
# What agents need still works: threads, processes, pipes, a subprocess.
import threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
forked = subprocess.run(["sh", "-c", "echo forked"], capture_output=True, text=True)
result["fork"] = forked.stdout.strip()
result["git"] = subprocess.run(["git", "--version"], capture_output=True, text=True).returncode
print(json.dumps(result))
"""


def test_the_filter_denies_namespaces_mounts_ptrace_and_kernel_surfaces_inside_a_run(provider):
    numbers = json.dumps(seccomp.ARCHES[platform.machine()]["numbers"])
    result = run_json(provider, python("seccomp", SYSCALL_PROBE % {"numbers": numbers}))

    denied = [
        "unshare_user", "unshare_net", "unshare_mount", "clone_newuser", "setns", "mount",
        "ptrace_attach_parent", "keyctl", "add_key", "bpf", "perf_event_open", "userfaultfd",
        "process_vm_readv",
    ]  # fmt: skip
    assert {name: result[name] for name in denied} == {name: errno.EPERM for name in denied}
    assert result["clone3"] == errno.ENOSYS  # so the C library falls back to clone
    assert result["unshare_cli"][0] != 0 and result["unshare_cli"][1] != "0"  # never uid 0
    assert result["fork"] == "forked"
    assert result["git"] == 0


def test_bwrap_alone_refuses_a_nested_user_namespace(provider, sandbox_root):
    # Defence in depth: --disable-userns holds without the filter. The provider
    # asks for it, and the installed bwrap honours it (run here without --seccomp).
    run_dir = sandbox_root / "probe"
    options = provider.bwrap_options(python("probe", "pass"), run_dir)
    assert "--disable-userns" in options
    base = ["--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "--proc", "/proc"]
    command = ["unshare", "-U", "-r", "id", "-u"]
    allowed = subprocess.run([BWRAP, *base, *command], capture_output=True, text=True)
    refused = subprocess.run(
        [BWRAP, *base, "--disable-userns", *command], capture_output=True, text=True
    )
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "0")  # without it: root inside
    assert refused.returncode != 0 and refused.stdout == ""


def test_the_filter_is_a_valid_program_for_both_architectures():
    for machine in ("x86_64", "aarch64"):
        program = seccomp.program(machine)
        assert len(program) % 8 == 0 and 0 < len(program) // 8 < 4096
        last = struct.unpack("=HBBI", program[-8:])
        assert last == (seccomp.BPF_RET_K, 0, 0, seccomp.SECCOMP_RET_ALLOW)
    with pytest.raises(seccomp.UnsupportedArchitecture):
        seccomp.program("sparc")


def test_the_oci_profile_holds_the_same_denials():
    profile = seccomp.oci_profile()
    names = {n for rule in profile["syscalls"] for n in rule["names"]}
    assert set(seccomp.DENIED) | {"clone", "clone3", "ioctl"} == names
    json.dumps(profile)


def test_kubernetes_pods_carry_the_configured_seccomp_profile():
    from agentloop.sandboxes.base import SandboxSpec
    from agentloop.sandboxes.kubernetes import KubernetesProvider

    sandbox_spec = SandboxSpec(run_code="k1", command=["python3", "-m", "agentloop.runner"])
    default = KubernetesProvider(None, "runs", "img").pod_manifest(sandbox_spec, "p", "s")
    own = KubernetesProvider(
        None, "runs", "img", seccomp_profile="agentloop/sandbox.json"
    ).pod_manifest(sandbox_spec, "p", "s")

    assert default["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    localhost = {"type": "Localhost", "localhostProfile": "agentloop/sandbox.json"}
    assert own["spec"]["securityContext"]["seccompProfile"] == localhost
    assert own["spec"]["containers"][0]["securityContext"]["seccompProfile"] == localhost
