"""The sandbox provider interface: where a run's runner process lives.

A provider starts one isolated environment per run from a SandboxSpec and
answers for it through a SandboxHandle, which is plain JSON-serialisable data
(stored on the Run) so any worker process can ask about or stop a sandbox
another process started.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Limits:
    cpu: float = 1.0  # cores (kubernetes: limits.cpu; local: a cpu cgroup quota when writable)
    memory_mb: int = 2048  # local: a memory cgroup when writable (never RLIMIT_AS: node needs VM)
    processes: int = 256  # local: a pids cgroup, else RLIMIT_NPROC of the sandbox host uid
    wall_seconds: int = 3600  # hard deadline: the sandbox is killed after this
    disk_mb: int = 2048  # local: RLIMIT_FSIZE (largest file); kubernetes: ephemeral-storage
    open_files: int = 4096  # local: RLIMIT_NOFILE


class NetworkPolicy(enum.StrEnum):
    # The runner must reach the web process (runner API, span API, LLM gateway).
    RUNNER_ONLY = "runner-only"  # intent: only the agentloop web process; see docs/sandboxes.md
    OPEN = "open"  # anything the host can reach


@dataclass(frozen=True)
class SandboxSpec:
    run_code: str  # the Run's public code; names the sandbox and labels it
    command: list[str]  # argv of the runner inside the sandbox
    env: dict[str, str] = field(default_factory=dict)  # AGENTLOOP_URL, AGENTLOOP_RUN_TOKEN, skills…
    image: str | None = None  # container image (kubernetes only)
    limits: Limits = field(default_factory=Limits)
    network: NetworkPolicy = NetworkPolicy.RUNNER_ONLY
    # RUNNER_ONLY: host names reachable through the egress proxy ("github.com",
    # "pypi.org:443", "*.pythonhosted.org"); empty: no proxy, the web process only.
    egress_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxHandle:
    provider: str  # registry name, e.g. "local", "kubernetes"
    id: str  # provider-specific identity (pod name, workspace dir name)
    data: dict = field(default_factory=dict)  # whatever else the provider needs later

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> SandboxHandle:
        return cls(provider=value["provider"], id=value["id"], data=dict(value.get("data") or {}))


class SandboxState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"  # the runner ended by itself (see exit_code)
    GONE = "gone"  # no trace of it: removed, never started, or lost with its node


@dataclass(frozen=True)
class SandboxStatus:
    state: SandboxState
    exit_code: int | None = None
    detail: str = ""


class SandboxError(Exception):
    """A sandbox could not be started or controlled; the message says why."""


class SandboxProvider(ABC):
    name: str

    @abstractmethod
    def start(self, spec: SandboxSpec) -> SandboxHandle: ...

    @abstractmethod
    def status(self, handle: SandboxHandle) -> SandboxStatus: ...

    @abstractmethod
    def stop(self, handle: SandboxHandle) -> None:
        """Ask the sandbox to end (SIGTERM / pod delete); idempotent."""

    @abstractmethod
    def cleanup(self, handle: SandboxHandle) -> None:
        """Remove everything the sandbox left (workspace, pod, secret); idempotent."""

    def read_log(self, handle: SandboxHandle, tail_bytes: int = 64 * 1024) -> str:
        """The end of the runner's stdout/stderr, for debugging ("" when unknown)."""
        return ""

    def handle_for(self, run_code: str) -> SandboxHandle:
        """A handle found from the run code alone, for a sandbox whose start() never
        returned its handle to be stored (the worker died mid-launch): enough to
        stop and clean it up."""
        return SandboxHandle(provider=self.name, id=run_code)
