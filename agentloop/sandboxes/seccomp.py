"""The seccomp policy of a sandbox, as a classic BPF program for `bwrap --seccomp FD`.

Standard library only (the supervisor runs it): the filter is a short list of
instructions written here rather than compiled by libseccomp. It denies, with
EPERM, the system calls an agent never needs and an escape usually starts with:

- new namespaces: unshare, setns, clone with any CLONE_NEW* flag (clone3 answers
  ENOSYS, so the C library falls back to clone, whose flags a filter can read);
- mounts: mount, umount2, pivot_root and the new mount API (fsopen, fsmount,
  move_mount, open_tree, fspick, mount_setattr);
- other processes' memory and files: ptrace, process_vm_readv/writev, pidfd_getfd;
- kernel surfaces: keyctl, add_key, request_key, bpf, perf_event_open,
  userfaultfd, module and kexec loading, open_by_handle_at;
- host-wide state: reboot, swapon/off, clocks, syslog, acct, quotactl,
  sethostname, iopl/ioperm;
- the terminal injection ioctl TIOCSTI.

Anything from another ABI (i386 via int 0x80, x32) is denied whole: the numbers
differ there, so the list above would not hold. Everything else is allowed.

    python3 -m agentloop.sandboxes.seccomp --oci   # the same policy as an OCI/Kubernetes profile
"""

from __future__ import annotations

import errno
import json
import os
import platform
import struct
import sys

# Linux uapi constants (linux/filter.h, linux/seccomp.h, linux/audit.h).
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
OFFSET_NR, OFFSET_ARCH = 0, 4


def offset_arg(index: int) -> int:
    return 16 + 8 * index  # the low 32 bits of args[index] (little endian)


CLONE_NEW_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)
TIOCSTI = 0x5412
X32_SYSCALL_BIT = 0x40000000

DENIED = (
    "unshare", "setns",
    "mount", "umount2", "pivot_root",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "open_by_handle_at", "name_to_handle_at",
    "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "iopl", "ioperm",
)  # fmt: skip

# System call numbers per architecture (asm/unistd_64.h; asm-generic/unistd.h for arm64).
ARCHES = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "x32": True,
        "numbers": {
            "ioctl": 16, "clone": 56, "ptrace": 101, "syslog": 103, "iopl": 172, "ioperm": 173,
            "pivot_root": 155, "adjtimex": 159, "acct": 163, "settimeofday": 164, "mount": 165,
            "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
            "setdomainname": 171, "init_module": 175, "delete_module": 176, "quotactl": 179,
            "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249,
            "keyctl": 250, "unshare": 272, "perf_event_open": 298, "name_to_handle_at": 303,
            "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
            "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
            "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "open_tree": 428,
            "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
            "clone3": 435, "pidfd_getfd": 438, "mount_setattr": 442,
        },
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "x32": False,
        "numbers": {
            "ioctl": 29, "clone": 220, "ptrace": 117, "syslog": 116, "pivot_root": 41,
            "adjtimex": 171, "acct": 89, "settimeofday": 170, "mount": 40, "umount2": 39,
            "swapon": 224, "swapoff": 225, "reboot": 142, "sethostname": 161,
            "setdomainname": 162, "init_module": 105, "delete_module": 106, "quotactl": 60,
            "clock_settime": 112, "kexec_load": 104, "add_key": 217, "request_key": 218,
            "keyctl": 219, "unshare": 97, "perf_event_open": 241, "name_to_handle_at": 264,
            "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268,
            "process_vm_readv": 270, "process_vm_writev": 271, "finit_module": 273,
            "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282, "open_tree": 428,
            "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
            "clone3": 435, "pidfd_getfd": 438, "mount_setattr": 442,
        },
    },
}  # fmt: skip


class UnsupportedArchitecture(Exception):
    pass


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter for this machine (platform.machine()), as struct sock_filter[]."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise UnsupportedArchitecture(f"no seccomp policy for {machine}")
    arch = ARCHES[machine]
    nr = arch["numbers"]
    eperm = _insn(BPF_RET_K, SECCOMP_RET_ERRNO | errno.EPERM)
    allow = _insn(BPF_RET_K, SECCOMP_RET_ALLOW)
    out = [
        _insn(BPF_LD_W_ABS, OFFSET_ARCH),
        _insn(BPF_JEQ_K, arch["audit_arch"], jt=1, jf=0),
        eperm,  # another ABI
        _insn(BPF_LD_W_ABS, OFFSET_NR),
    ]
    if arch["x32"]:
        out += [_insn(BPF_JGE_K, X32_SYSCALL_BIT, jt=0, jf=1), eperm]
    for name in DENIED:
        if name not in nr:  # e.g. iopl exists on x86 only
            continue
        out += [_insn(BPF_JEQ_K, nr[name], jt=0, jf=1), eperm]
    # clone3 passes its flags in memory, out of a filter's reach: make the C
    # library fall back to clone.
    out += [
        _insn(BPF_JEQ_K, nr["clone3"], jt=0, jf=1),
        _insn(BPF_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    out += [
        _insn(BPF_JEQ_K, nr["clone"], jt=0, jf=4),
        _insn(BPF_LD_W_ABS, offset_arg(0)),
        _insn(BPF_JSET_K, CLONE_NEW_FLAGS, jt=0, jf=1),
        eperm,
        allow,
    ]
    out += [
        _insn(BPF_JEQ_K, nr["ioctl"], jt=0, jf=4),
        _insn(BPF_LD_W_ABS, offset_arg(1)),
        _insn(BPF_JEQ_K, TIOCSTI, jt=0, jf=1),
        eperm,
        allow,
    ]
    out.append(allow)
    return b"".join(out)


def program_fd(machine: str | None = None) -> int:
    """A memfd holding the filter, positioned at its start, for `bwrap --seccomp FD`."""
    fd = os.memfd_create("seccomp", 0)
    os.write(fd, program(machine))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def oci_profile() -> dict:
    """The same policy as a seccomp profile for Kubernetes (`Localhost`) or an OCI runtime."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": sorted(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
                "args": [
                    {"index": 0, "value": CLONE_NEW_FLAGS, "op": "SCMP_CMP_MASKED_EQ",
                     "valueTwo": 0}
                ],
            },
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EPERM,
                "args": [{"index": 1, "value": TIOCSTI, "op": "SCMP_CMP_EQ"}],
            },
        ],
    }  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:] == ["--oci"]:
        print(json.dumps(oci_profile(), indent=2))
    else:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        sys.exit(2)
