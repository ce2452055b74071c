"""The Kubernetes sandbox provider: one Pod per run, its environment in a Secret.

start() creates the Secret (the run token and skill env never appear in the
Pod spec), then the Pod (envFrom the Secret), then makes the Pod the Secret's
owner so the cluster's garbage collector removes the Secret with the Pod even
if cleanup() never runs. The Pod runs as uid 1000 on a read-only root file
system with emptyDirs for /workspace, /home/agent and /tmp, no capabilities,
the runtime's default seccomp profile, no service account token, and an
activeDeadlineSeconds of the run's wall clock. See docs/sandboxes.md.

With network policies on (the default of from_settings), start() first creates
a NetworkPolicy for the run's Pod: no ingress at all, and egress only to the web
pods, the cluster DNS and, when configured, an egress proxy (runner-only), or
anywhere but the cloud metadata address (open). The runs namespace's
default-deny policy (deploy/kubernetes/) makes this the only way out. The Pod
owns the policy as it owns the Secret. See docs/deploy.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

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

MANAGED_BY = {"app.kubernetes.io/managed-by": "agentloop"}
RUN_LABEL = "agentloop.dev/run"
CONTAINER = "runner"
SANDBOX_UID = 1000
WORKSPACE = "/workspace"
HOME = "/home/agent"
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
)
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Where clouds answer with the node's credentials (link-local, and AWS's IPv6 address):
# an open run may go anywhere but there.
METADATA_CIDRS = {"0.0.0.0/0": ["169.254.0.0/16"], "::/0": ["fe80::/10", "fd00:ec2::254/128"]}


@dataclass(frozen=True)
class Peer:
    """Pods a run may reach: a namespace, the pods' labels there, a port."""

    namespace: str
    labels: dict[str, str]
    port: int

    @classmethod
    def parse(cls, value: str, what: str) -> Peer:
        """'NAMESPACE/LABEL=VALUE[,LABEL=VALUE…]:PORT', e.g.
        'agentloop/app.kubernetes.io/component=web:8000'."""
        problem = (
            f"{what} {value!r} is not NAMESPACE/LABEL=VALUE[,LABEL=VALUE...]:PORT "
            "(e.g. agentloop/app.kubernetes.io/component=web:8000)"
        )
        namespace, _, rest = value.strip().partition("/")
        selector, _, port = rest.rpartition(":")
        if not NAMESPACE_RE.match(namespace) or not port.isdigit() or not 0 < int(port) < 65536:
            raise SandboxError(problem)
        labels = {}
        for pair in selector.split(","):
            key, sep, label = pair.strip().partition("=")
            if not sep or not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(label):
                raise SandboxError(problem)
            labels[key] = label
        return cls(namespace=namespace, labels=labels, port=int(port))

    def rule(self, protocols: tuple[str, ...] = ("TCP",)) -> dict:
        return {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": self.namespace}
                    },
                    "podSelector": {"matchLabels": dict(self.labels)},
                }
            ],
            "ports": [{"protocol": protocol, "port": self.port} for protocol in protocols],
        }


@dataclass(frozen=True)
class RunNetwork:
    """Where runner-only runs may connect: the web pods, the DNS, an egress proxy."""

    web: Peer
    dns: Peer | None = None
    proxy: Peer | None = None


def object_name(run_code: str) -> str:
    """A DNS-1123 name for the run's Pod: lowercase; a hash keeps distinct codes distinct."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_code.lower()).strip("-")[:40].strip("-")
    name = f"agentloop-run-{slug}"
    if slug != run_code:  # lowercasing or replacing could make two codes meet
        name += "-" + hashlib.sha256(run_code.encode()).hexdigest()[:8]
    return name


class KubernetesProvider(SandboxProvider):
    name = "kubernetes"

    def __init__(
        self,
        core_v1,
        namespace: str,
        image: str,
        runtime_class: str | None = None,
        stop_grace_seconds: int = 10,
        networking_v1=None,
        network: RunNetwork | None = None,
        seccomp_profile: str | None = None,
    ):
        self.core_v1 = core_v1  # kubernetes.client.CoreV1Api
        self.namespace = namespace
        self.image = image
        self.runtime_class = runtime_class or None
        self.stop_grace_seconds = stop_grace_seconds
        # kubernetes.client.NetworkingV1Api; with `network`, a NetworkPolicy per run.
        self.networking_v1 = networking_v1
        self.network = network if networking_v1 is not None else None
        # A Localhost profile (a path under the kubelet's seccomp directory) holding
        # agentloop's own policy (`python -m agentloop.sandboxes.seccomp --oci`);
        # without one, the runtime's default profile.
        self.seccomp_profile = seccomp_profile or None

    @classmethod
    def from_settings(cls) -> KubernetesProvider:
        """Kubeconfig with settings.K8S_CONTEXT when set, else in-cluster config
        (the web/worker Pods' own service account), else the default kubeconfig."""
        import os

        from kubernetes import client, config

        context = getattr(settings, "K8S_CONTEXT", "") or None
        try:
            if context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config()
                api_client = client.ApiClient()
            else:
                api_client = config.new_client_from_config(
                    config_file=os.environ.get("KUBECONFIG"), context=context
                )
        except config.ConfigException as exc:
            raise SandboxError(f"no Kubernetes configuration: {exc}") from exc
        network = None
        if getattr(settings, "K8S_NETWORK_POLICY", True):
            dns = getattr(settings, "K8S_DNS_PEER", "")
            proxy = getattr(settings, "K8S_EGRESS_PROXY_PEER", "")
            network = RunNetwork(
                web=Peer.parse(settings.K8S_WEB_PEER, "AGENTLOOP_K8S_WEB_PEER"),
                dns=Peer.parse(dns, "AGENTLOOP_K8S_DNS_PEER") if dns else None,
                proxy=Peer.parse(proxy, "AGENTLOOP_K8S_EGRESS_PROXY_PEER") if proxy else None,
            )
        return cls(
            client.CoreV1Api(api_client),
            namespace=settings.K8S_NAMESPACE,
            image=settings.K8S_IMAGE,
            runtime_class=getattr(settings, "K8S_RUNTIME_CLASS", "") or None,
            stop_grace_seconds=getattr(settings, "SANDBOX_STOP_GRACE_SECONDS", 10),
            networking_v1=client.NetworkingV1Api(api_client) if network else None,
            network=network,
            seccomp_profile=getattr(settings, "K8S_SECCOMP_PROFILE", "") or None,
        )

    # -- manifests (plain dicts, as one would write them in YAML) ---------------

    def labels(self, spec: SandboxSpec) -> dict[str, str]:
        return {**MANAGED_BY, RUN_LABEL: spec.run_code}

    def secret_manifest(self, spec: SandboxSpec, name: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.namespace, "labels": self.labels(spec)},
            "type": "Opaque",
            "stringData": dict(spec.env),
        }

    def network_policy_manifest(self, spec: SandboxSpec, name: str) -> dict:
        """The run's Pod: no ingress; egress as its network policy says (see the module)."""
        network = self.network
        if spec.network == NetworkPolicy.OPEN:
            egress = [
                {"to": [{"ipBlock": {"cidr": cidr, "except": list(metadata)}}]}
                for cidr, metadata in METADATA_CIDRS.items()
            ]
        else:
            egress = [network.web.rule()]
            if network.dns:
                egress.append(network.dns.rule(("UDP", "TCP")))
            if network.proxy:
                egress.append(network.proxy.rule())
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": self.namespace, "labels": self.labels(spec)},
            "spec": {
                "podSelector": {"matchLabels": {RUN_LABEL: spec.run_code}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": egress,
            },
        }

    def seccomp_manifest(self) -> dict:
        if self.seccomp_profile:
            return {"type": "Localhost", "localhostProfile": self.seccomp_profile}
        return {"type": "RuntimeDefault"}

    def pod_manifest(self, spec: SandboxSpec, name: str, secret_name: str) -> dict:
        limits = spec.limits
        resources = {
            "cpu": f"{round(limits.cpu * 1000)}m",
            "memory": f"{limits.memory_mb}Mi",
            "ephemeral-storage": f"{limits.disk_mb}Mi",
        }
        pod_spec = {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": limits.wall_seconds,
            "terminationGracePeriodSeconds": self.stop_grace_seconds,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,  # no env vars describing the cluster's services
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": SANDBOX_UID,
                "runAsGroup": SANDBOX_UID,
                "fsGroup": SANDBOX_UID,
                "seccompProfile": self.seccomp_manifest(),
            },
            "containers": [
                {
                    "name": CONTAINER,
                    "image": spec.image or self.image,
                    "command": list(spec.command),
                    "workingDir": WORKSPACE,
                    "envFrom": [{"secretRef": {"name": secret_name}}],
                    "env": [
                        {"name": "HOME", "value": HOME},
                        {"name": "AGENTLOOP_WORKSPACE", "value": WORKSPACE},
                        {"name": "PYTHONUNBUFFERED", "value": "1"},
                    ],
                    "resources": {"requests": resources, "limits": resources},
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": SANDBOX_UID,
                        "runAsGroup": SANDBOX_UID,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": self.seccomp_manifest(),
                    },
                    "volumeMounts": [
                        {"name": "workspace", "mountPath": WORKSPACE},
                        {"name": "home", "mountPath": HOME},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "workspace", "emptyDir": {"sizeLimit": f"{limits.disk_mb}Mi"}},
                {"name": "home", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
            ],
        }
        if self.runtime_class:
            pod_spec["runtimeClassName"] = self.runtime_class
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "labels": self.labels(spec)},
            "spec": pod_spec,
        }

    # -- the provider --------------------------------------------------------------

    def start(self, spec: SandboxSpec) -> SandboxHandle:
        from kubernetes import client

        if not LABEL_VALUE_RE.match(spec.run_code):
            raise SandboxError(f"run code {spec.run_code!r} cannot label a Kubernetes object.")
        if not spec.command:
            raise SandboxError("the sandbox spec has no command.")
        name = object_name(spec.run_code)
        secret_name = f"{name}-env"
        try:
            self.core_v1.create_namespaced_secret(
                self.namespace, client.V1Secret.from_dict(self.secret_manifest(spec, secret_name))
            )
        except client.ApiException as exc:
            raise self._error(f"creating Secret {secret_name}", exc) from exc
        if self.network is not None:
            # Before the Pod, so the Pod never runs without its policy.
            try:
                self.networking_v1.create_namespaced_network_policy(
                    self.namespace,
                    client.V1NetworkPolicy.from_dict(self.network_policy_manifest(spec, name)),
                )
            except client.ApiException as exc:
                self._delete_secret(secret_name)
                raise self._error(f"creating NetworkPolicy {name}", exc) from exc
        try:
            pod = self.core_v1.create_namespaced_pod(
                self.namespace, client.V1Pod.from_dict(self.pod_manifest(spec, name, secret_name))
            )
        except client.ApiException as exc:
            self._delete_secret(secret_name)
            if self.network is not None:
                self._delete_network_policy(name)
            raise self._error(f"creating Pod {name}", exc) from exc
        owner = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": pod.metadata.uid,
            "blockOwnerDeletion": False,
        }
        owned = {"metadata": {"ownerReferences": [owner]}}
        # Not fatal if either fails: cleanup() deletes both explicitly as well.
        try:
            self.core_v1.patch_namespaced_secret(secret_name, self.namespace, owned)
        except client.ApiException:
            pass
        data = {"namespace": self.namespace, "secret": secret_name, "uid": pod.metadata.uid}
        if self.network is not None:
            data["network_policy"] = name
            try:
                self.networking_v1.patch_namespaced_network_policy(name, self.namespace, owned)
            except client.ApiException:
                pass
        return SandboxHandle(provider=self.name, id=name, data=data)

    def status(self, handle: SandboxHandle) -> SandboxStatus:
        from kubernetes import client

        try:
            pod = self.core_v1.read_namespaced_pod(handle.id, self._namespace(handle))
        except client.ApiException as exc:
            if exc.status == 404:
                return SandboxStatus(SandboxState.GONE, detail="no such pod")
            raise self._error(f"reading Pod {handle.id}", exc) from exc
        if handle.data.get("uid") and pod.metadata.uid != handle.data["uid"]:
            return SandboxStatus(SandboxState.GONE, detail="the pod was replaced by another")
        phase = (pod.status.phase if pod.status else None) or "Pending"
        terminated = self._terminated(pod)
        reason = (pod.status.reason if pod.status else None) or ""
        if phase in ("Succeeded", "Failed"):
            exit_code = terminated.exit_code if terminated else None
            detail = reason or (terminated.reason if terminated else "") or phase
            return SandboxStatus(SandboxState.EXITED, exit_code=exit_code, detail=detail)
        if phase == "Running":
            detail = "terminating" if pod.metadata.deletion_timestamp else ""
            return SandboxStatus(SandboxState.RUNNING, detail=detail)
        if phase == "Unknown":  # the node stopped reporting; it may come back
            return SandboxStatus(SandboxState.RUNNING, detail="node not reporting (phase Unknown)")
        return SandboxStatus(SandboxState.STARTING, detail=self._waiting_reason(pod))

    def stop(self, handle: SandboxHandle) -> None:
        """Delete the Pod with a grace period: the runner gets SIGTERM, then SIGKILL."""
        self._delete_pod(handle.id, self._namespace(handle), self.stop_grace_seconds)

    def cleanup(self, handle: SandboxHandle) -> None:
        namespace = self._namespace(handle)
        self._delete_pod(handle.id, namespace, 0)
        self._delete_secret(handle.data.get("secret") or f"{handle.id}-env", namespace)
        # A handle from handle_for() does not know; a provider that makes policies looks.
        policy = handle.data.get("network_policy") or (handle.id if self.network else None)
        if policy and self.networking_v1 is not None:
            self._delete_network_policy(policy, namespace)

    def read_log(self, handle: SandboxHandle, tail_bytes: int = 64 * 1024) -> str:
        from kubernetes import client

        try:
            return self.core_v1.read_namespaced_pod_log(
                handle.id, self._namespace(handle), container=CONTAINER, limit_bytes=tail_bytes
            )
        except client.ApiException as exc:
            if exc.status in (400, 404):  # not started yet, or gone
                return ""
            raise self._error(f"reading the log of Pod {handle.id}", exc) from exc

    def handle_for(self, run_code: str) -> SandboxHandle:
        return SandboxHandle(provider=self.name, id=object_name(run_code))

    # -- helpers ----------------------------------------------------------------------

    def _namespace(self, handle: SandboxHandle) -> str:
        return handle.data.get("namespace") or self.namespace

    def _delete_pod(self, name: str, namespace: str, grace: int) -> None:
        from kubernetes import client

        try:
            self.core_v1.delete_namespaced_pod(name, namespace, grace_period_seconds=grace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise self._error(f"deleting Pod {name}", exc) from exc

    def _delete_secret(self, name: str, namespace: str | None = None) -> None:
        from kubernetes import client

        try:
            self.core_v1.delete_namespaced_secret(name, namespace or self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise self._error(f"deleting Secret {name}", exc) from exc

    def _delete_network_policy(self, name: str, namespace: str | None = None) -> None:
        from kubernetes import client

        try:
            self.networking_v1.delete_namespaced_network_policy(name, namespace or self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise self._error(f"deleting NetworkPolicy {name}", exc) from exc

    @staticmethod
    def _terminated(pod):
        for status in (pod.status.container_statuses if pod.status else None) or []:
            if status.name == CONTAINER and status.state and status.state.terminated:
                return status.state.terminated
        return None

    @staticmethod
    def _waiting_reason(pod) -> str:
        for status in (pod.status.container_statuses if pod.status else None) or []:
            if status.state and status.state.waiting:
                return status.state.waiting.reason or ""
        return ""

    @staticmethod
    def _error(doing: str, exc) -> SandboxError:
        import json

        message = exc.reason
        try:
            message = json.loads(exc.body).get("message") or message
        except (TypeError, ValueError):
            pass
        return SandboxError(f"Kubernetes refused {doing}: {exc.status} {message}")
