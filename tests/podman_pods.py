"""Run the Kubernetes provider's own manifests on podman: a local stand-in for a node.

`PodmanPodProvider` is the KubernetesProvider with its API calls replaced by podman:
start() renders the very Secret and Pod that start() would send to a cluster
(secret_manifest, pod_manifest), stores the Secret's data as a podman secret
(`podman kube play` resolves `envFrom: secretRef` from podman's secrets, as
JSON of base64 values, the form the API server stores) and plays the Pod with
`podman kube play`. podman maps the Pod's securityContext (uid 1000, read-only
root, no capabilities, no privilege escalation), resources (cpu, memory),
emptyDirs, workingDir and env; what it does not do is what a cluster adds
around a pod: the NetworkPolicy (the pod shares this host's network, so it
reaches the test's web server on 127.0.0.1), activeDeadlineSeconds and
ephemeral-storage limits.

podman needs, on this machine, the runc runtime and explicit nofile/nproc
limits (crun and podman's default limits fail on its cgroup setup): given in a
containers.conf of our own through CONTAINERS_CONF, so the machine's is untouched.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from agentloop.sandboxes.base import (
    SandboxError,
    SandboxHandle,
    SandboxSpec,
    SandboxState,
    SandboxStatus,
)
from agentloop.sandboxes.kubernetes import (
    CONTAINER,
    LABEL_VALUE_RE,
    KubernetesProvider,
    object_name,
)

PODMAN = shutil.which("podman")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
[engine]
runtime = "{runtime}"
"""


def podman_env(directory: Path) -> dict[str, str]:
    conf = directory / "containers.conf"
    if not conf.exists():
        conf.write_text(
            CONTAINERS_CONF.format(
                nofile=os.environ.get("NOFILE", "4096"),
                nproc=os.environ.get("NPROC", "4096"),
                runtime=os.environ.get("PODMAN_RUNTIME", "runc"),
            )
        )
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


class PodmanPodProvider(KubernetesProvider):
    name = "podman"

    def __init__(self, image: str, stop_grace_seconds: int = 10):
        super().__init__(
            None, namespace="agentloop-runs", image=image, stop_grace_seconds=stop_grace_seconds
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="agentloop-podman-"))
        self.env = podman_env(self.workdir)
        self.played_at: dict[str, float] = {}  # run code -> time.time() before `kube play`
        self.played: dict[str, dict] = {}  # run code -> the Pod manifest played
        self.play_seconds: dict[str, float] = {}  # run code -> how long `kube play` took

    def podman(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(
            [PODMAN, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and done.returncode != 0:
            command = " ".join(args[:2])
            raise SandboxError(f"podman {command}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def start(self, spec: SandboxSpec) -> SandboxHandle:
        if not LABEL_VALUE_RE.match(spec.run_code):
            raise SandboxError(f"run code {spec.run_code!r} cannot label a Kubernetes object.")
        name = object_name(spec.run_code)
        secret_name = f"{name}-env"
        secret = self.secret_manifest(spec, secret_name)
        pod = self.pod_manifest(spec, name, secret_name)
        data = {k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}
        secret_file = self.workdir / f"{secret_name}.json"
        secret_file.write_text(json.dumps(data))
        secret_file.chmod(0o600)
        pod_file = self.workdir / f"{name}.yaml"
        pod_file.write_text(yaml.safe_dump(pod))
        self.podman("secret", "create", secret_name, str(secret_file))
        secret_file.unlink()
        self.played_at[spec.run_code] = time.time()
        self.played[spec.run_code] = pod
        try:
            self.podman("kube", "play", "--network", "host", str(pod_file))
        except SandboxError:
            self.podman("secret", "rm", secret_name, check=False)
            raise
        self.play_seconds[spec.run_code] = time.time() - self.played_at[spec.run_code]
        return SandboxHandle(provider=self.name, id=name, data={"secret": secret_name})

    def _container(self, handle: SandboxHandle) -> dict | None:
        name = f"{handle.id}-{CONTAINER}"
        out = self.podman("inspect", "--type", "container", name, check=False)
        found = json.loads(out or "[]")
        return found[0] if found else None

    def status(self, handle: SandboxHandle) -> SandboxStatus:
        container = self._container(handle)
        if container is None:
            return SandboxStatus(SandboxState.GONE, detail="no such pod")
        state = container["State"]
        if state["Status"] in ("exited", "stopped"):
            code = state["ExitCode"]
            return SandboxStatus(
                SandboxState.EXITED, exit_code=code, detail="Completed" if code == 0 else "Error"
            )
        if state["Status"] == "running":
            return SandboxStatus(SandboxState.RUNNING)
        return SandboxStatus(SandboxState.STARTING, detail=state["Status"])

    def stop(self, handle: SandboxHandle) -> None:
        self.podman("pod", "stop", "-t", str(self.stop_grace_seconds), handle.id, check=False)

    def cleanup(self, handle: SandboxHandle) -> None:
        self.podman("pod", "rm", "-f", handle.id, check=False)
        self.podman("secret", "rm", handle.data.get("secret") or f"{handle.id}-env", check=False)

    def read_log(self, handle: SandboxHandle, tail_bytes: int = 64 * 1024) -> str:
        done = subprocess.run(
            [PODMAN, "logs", f"{handle.id}-{CONTAINER}"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )
        return (done.stdout + done.stderr)[-tail_bytes:]

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
