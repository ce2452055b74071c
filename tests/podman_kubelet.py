"""A kubelet for the Kubernetes API double: it plays the double's Pods with podman.

With it, a run goes the whole way a cluster would take it: the worker's
KubernetesProvider creates the Secret, NetworkPolicy and Pod through the real
client (tests/k8s_double.py records and stores them), this kubelet sees the new
Pod, makes its Secret a podman secret and plays the Pod as the API server
stored it (`podman kube play`, see tests/podman_pods.py for what podman maps),
then reports the container's state back as the Pod's phase and exit code; a
deleted Pod is stopped and removed. It polls the double every 0.1 s in a
thread: `sync()` is one pass, for tests that step it by hand.
"""

from __future__ import annotations

import copy
import json
import subprocess
import tempfile
import threading
from pathlib import Path

import yaml

from tests.podman_pods import PODMAN, podman_env


class PodmanKubelet:
    def __init__(self, double, namespace: str):
        self.double = double
        self.namespace = namespace
        self.workdir = Path(tempfile.mkdtemp(prefix="agentloop-kubelet-"))
        self.env = podman_env(self.workdir)
        self.playing: dict[str, str] = {}  # pod name -> its podman secret
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="podman-kubelet", daemon=True)

    def start(self) -> PodmanKubelet:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for name in list(self.playing):
            self._remove(name)

    def podman(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PODMAN, *args], capture_output=True, text=True, env=self.env, timeout=120
        )

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.sync()
            except Exception as error:  # noqa: BLE001 - kept for the test to show
                self.errors.append(repr(error))

    def sync(self) -> None:
        with self.double.lock:
            pods = {
                name: copy.deepcopy(obj)
                for (kind, ns, name), obj in self.double.objects.items()
                if kind == "pods" and ns == self.namespace
            }
        for name, pod in pods.items():
            if name not in self.playing:
                self._play(name, pod)
            elif pod["metadata"].get("deletionTimestamp"):
                grace = pod["metadata"].get("deletionGracePeriodSeconds", 30)
                self.podman("pod", "stop", "-t", str(grace), name)
                self._remove(name)
                self.double.kubelet_finishes(name, ns=self.namespace)
            else:
                self._report(name, pod)
        for name in set(self.playing) - set(pods):  # deleted at once (grace 0, or not running)
            self._remove(name)

    def _play(self, name: str, pod: dict) -> None:
        container = pod["spec"]["containers"][0]
        secret_name = container["envFrom"][0]["secretRef"]["name"]
        with self.double.lock:
            secret = copy.deepcopy(
                self.double.objects.get(("secrets", self.namespace, secret_name))
            )
        if secret is None:
            return  # CreateContainerConfigError on a cluster: wait for it
        secret_file = self.workdir / f"{secret_name}.json"
        secret_file.write_text(json.dumps(secret.get("data") or {}))
        self.podman("secret", "create", secret_name, str(secret_file))
        secret_file.unlink()
        played = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": pod["metadata"].get("labels", {})},
            "spec": pod["spec"],
        }
        pod_file = self.workdir / f"{name}.yaml"
        pod_file.write_text(yaml.safe_dump(played))
        self.playing[name] = secret_name
        done = self.podman("kube", "play", "--network", "host", str(pod_file))
        if done.returncode != 0:
            self.errors.append(f"kube play {name}: {done.stderr.strip()[-2000:]}")
            self.double.set_phase(name, "Failed", exit_code=128, ns=self.namespace)

    def _report(self, name: str, pod: dict) -> None:
        container = pod["spec"]["containers"][0]["name"]
        done = self.podman("inspect", "--type", "container", f"{name}-{container}")
        if done.returncode != 0:
            return
        state = json.loads(done.stdout)[0]["State"]
        phase = (pod.get("status") or {}).get("phase")
        if state["Status"] == "running" and phase != "Running":
            self.double.set_phase(name, "Running", ns=self.namespace)
        elif state["Status"] in ("exited", "stopped") and phase not in ("Succeeded", "Failed"):
            code = state["ExitCode"]
            self.double.logs[(self.namespace, name)] = self.logs(name, container)
            self.double.set_phase(
                name, "Succeeded" if code == 0 else "Failed", exit_code=code, ns=self.namespace
            )

    def logs(self, name: str, container: str = "runner") -> str:
        done = self.podman("logs", f"{name}-{container}")
        return done.stdout + done.stderr

    def _remove(self, name: str) -> None:
        self.podman("pod", "rm", "-f", name)
        self.podman("secret", "rm", self.playing.pop(name, f"{name}-env"))
