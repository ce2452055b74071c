"""The deployment manifests (deploy/kubernetes/) and the objects the Kubernetes provider
creates at run time, checked against Kubernetes' own OpenAPI schemas.

Rendering is `kubectl kustomize`, offline (Debian's kubernetes-client; .ci/run installs
it). Validation is kubernetes-validate's strict schemas (unknown fields are errors) for
the oldest and newest Kubernetes versions we claim. On top of the schemas: every pod
passes the restricted Pod Security Standard its namespace enforces, the worker's Role
grants exactly the verbs the provider was seen to use against the API double, and the
run pods' policy selects the pods the web Service serves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes import client

from agentloop.sandboxes.base import Limits, NetworkPolicy, SandboxSpec
from agentloop.sandboxes.kubernetes import KubernetesProvider, Peer, RunNetwork
from tests.k8s_double import KubernetesDouble

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZATIONS = ["base", "overlays/small", "overlays/production"]
# The oldest Kubernetes we claim (the restricted PSS labels, ttlSecondsAfterFinished,
# networking.k8s.io/v1 are older) and the newest the schemas know.
VERSIONS = ["1.29", kubernetes_validate.utils.latest_version()]
RUNS_NS = "agentloop-runs"

KUBECTL = os.environ.get("AGENTLOOP_KUBECTL") or shutil.which("kubectl")


def render(kustomization: str) -> list[dict]:
    if KUBECTL is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed (apt-get install kubernetes-client)")
        pytest.skip("kubectl is not installed (apt-get install kubernetes-client)")
    done = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "deploy" / "kubernetes" / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(name) for name in KUSTOMIZATIONS}


def find(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def schema_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.absolute_path)
        return [f"{doc['kind']}/{doc['metadata'].get('name')}: {path}: {error.message}"]
    return []


def restricted_violations(pod_spec: dict) -> list[str]:
    """The restricted Pod Security Standard (kubernetes.io/docs/concepts/security/
    pod-security-standards), the checks that apply to the fields our pods use."""
    problems = []
    pod = pod_spec.get("securityContext") or {}
    if pod.get("hostNetwork") or pod_spec.get("hostNetwork") or pod_spec.get("hostPID"):
        problems.append("host namespaces")
    for volume in pod_spec.get("volumes") or []:
        allowed = {"name", "emptyDir", "configMap", "secret", "projected", "ephemeral"}
        allowed |= {"persistentVolumeClaim", "downwardAPI", "csi"}
        if set(volume) - allowed:
            problems.append(f"volume {volume['name']}: {sorted(set(volume) - allowed)}")
    containers = (pod_spec.get("initContainers") or []) + pod_spec["containers"]
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities must drop ALL")
        if set(sc.get("capabilities", {}).get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not sc.get("runAsNonRoot", pod.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = (sc.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"{name}: hostPort")
    return problems


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    specs = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            specs[f"Pod/{doc['metadata']['name']}"] = doc["spec"]
    return specs


# -- the rendered manifests ---------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_manifest_is_valid_for_kubernetes(rendered, kustomization, version):
    docs = rendered[kustomization]

    errors = [e for doc in docs for e in schema_errors(doc, version)]

    assert errors == []
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "Job",
        "Namespace",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]


def test_the_schemas_catch_a_misspelt_field():
    """The check above can fail: strict validation rejects what the API would drop."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "x", "image": "x", "comand": ["true"]}]},
    }

    assert schema_errors(pod, VERSIONS[0]) != []


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_both_namespaces_enforce_restricted_and_every_pod_passes_it(rendered, kustomization):
    docs = rendered[kustomization]
    for name in ("agentloop", RUNS_NS):
        labels = find(docs, "Namespace", name)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    specs = pod_specs(docs)

    assert sorted(specs) == [
        "Deployment/agentloop-web",
        "Deployment/agentloop-worker",
        "Job/agentloop-migrate",
    ]
    assert {name: restricted_violations(spec) for name, spec in specs.items()} == {
        name: [] for name in specs
    }
    # Only the worker holds a Kubernetes API token.
    tokens = {name: spec.get("automountServiceAccountToken", True) for name, spec in specs.items()}
    assert tokens == {
        "Deployment/agentloop-web": False,
        "Deployment/agentloop-worker": True,
        "Job/agentloop-migrate": False,
    }


def test_the_restricted_check_can_fail():
    spec = {"containers": [{"name": "x", "securityContext": {"runAsNonRoot": True}}]}

    assert restricted_violations(spec) == [
        "x: allowPrivilegeEscalation must be false",
        "x: capabilities must drop ALL",
        "x: seccompProfile must be RuntimeDefault or Localhost",
    ]


def test_overlays_scale_web_and_worker_and_set_the_images(rendered):
    def replicas(docs):
        return {
            d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "Deployment"
        }

    def images(docs):
        return {
            c["image"]
            for spec in pod_specs(docs).values()
            for c in spec.get("initContainers", []) + spec["containers"]
        }

    assert replicas(rendered["overlays/small"]) == {"agentloop-web": 1, "agentloop-worker": 1}
    assert replicas(rendered["overlays/production"]) == {"agentloop-web": 3, "agentloop-worker": 2}
    assert images(rendered["base"]) == {"localhost/agentloop-app:dev"}
    assert images(rendered["overlays/production"]) == {"registry.example.com/agentloop/app:0.1.0"}
    config = find(rendered["overlays/production"], "ConfigMap", "agentloop-config")["data"]
    assert config["AGENTLOOP_K8S_IMAGE"] == "registry.example.com/agentloop/runner:0.1.0"
    ingress = find(rendered["overlays/production"], "Ingress", "agentloop")["spec"]
    assert ingress["tls"] == [{"hosts": ["agentloop.example.com"], "secretName": "agentloop-tls"}]


def test_run_pods_can_reach_the_web_service_and_only_through_their_own_policy(rendered):
    docs = rendered["base"]
    config = find(docs, "ConfigMap", "agentloop-config")["data"]
    service = find(docs, "Service", "agentloop-web")
    web = find(docs, "Deployment", "agentloop-web")

    # AGENTLOOP_PUBLIC_URL names the Service; the policy's peer selects its pods.
    assert config["AGENTLOOP_PUBLIC_URL"] == (
        f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:"
        f"{service['spec']['ports'][0]['port']}"
    )
    peer = Peer.parse(config["AGENTLOOP_K8S_WEB_PEER"], "AGENTLOOP_K8S_WEB_PEER")
    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    assert peer.namespace == web["metadata"]["namespace"]
    assert peer.labels.items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        peer.port == web["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    )
    # Nothing else in the runs namespace lets traffic through.
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert [(p["metadata"]["namespace"], p["spec"]) for p in policies] == [
        (RUNS_NS, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    ]


# -- what the provider creates at run time ------------------------------------------------


@pytest.fixture(scope="module")
def provider_traffic(rendered):
    """Every request a provider with network policies made for two runs (runner-only and
    open) through their whole life, as the API double received them."""
    double = KubernetesDouble(namespaces=[RUNS_NS]).start()
    try:
        configuration = client.Configuration()
        configuration.host = double.url
        api_client = client.ApiClient(configuration)
        config = find(rendered["base"], "ConfigMap", "agentloop-config")["data"]
        provider = KubernetesProvider(
            client.CoreV1Api(api_client),
            namespace=config["AGENTLOOP_K8S_NAMESPACE"],
            image=config["AGENTLOOP_K8S_IMAGE"],
            runtime_class="gvisor",
            networking_v1=client.NetworkingV1Api(api_client),
            network=RunNetwork(
                web=Peer.parse(config["AGENTLOOP_K8S_WEB_PEER"], "web"),
                dns=Peer.parse(config["AGENTLOOP_K8S_DNS_PEER"], "dns"),
                proxy=Peer.parse("agentloop/app.kubernetes.io/component=egress-proxy:3128", "p"),
            ),
        )
        for code, network in (("Rnly1", NetworkPolicy.RUNNER_ONLY), ("Open1", NetworkPolicy.OPEN)):
            spec = SandboxSpec(
                run_code=code,
                command=["python3", "-m", "agentloop.runner"],
                env={"AGENTLOOP_URL": config["AGENTLOOP_PUBLIC_URL"], "AGENTLOOP_RUN_TOKEN": "t"},
                limits=Limits(cpu=0.5, memory_mb=1024, wall_seconds=900, disk_mb=512),
                network=network,
            )
            handle = provider.start(spec)
            double.set_phase(handle.id, "Running")
            provider.status(handle)
            provider.read_log(handle)
            provider.stop(handle)
            provider.cleanup(handle)
        yield double.calls
    finally:
        double.close()


def created(calls, kind: str) -> list[dict]:
    return [c["body"] for c in calls if c["method"] == "POST" and c["path"].endswith(f"/{kind}")]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_pods_secrets_and_policies_the_provider_creates_are_valid(provider_traffic, version):
    objects = [
        *created(provider_traffic, "pods"),
        *created(provider_traffic, "secrets"),
        *created(provider_traffic, "networkpolicies"),
    ]

    assert [o["kind"] for o in objects] == ["Pod"] * 2 + ["Secret"] * 2 + ["NetworkPolicy"] * 2
    assert [e for o in objects for e in schema_errors(o, version)] == []


def test_the_run_pods_pass_the_restricted_standard_of_the_runs_namespace(provider_traffic):
    pods = created(provider_traffic, "pods")

    assert [restricted_violations(p["spec"]) for p in pods] == [[], []]


def test_the_worker_role_grants_exactly_the_verbs_the_provider_uses(rendered, provider_traffic):
    verb = {"POST": "create", "GET": "get", "PATCH": "patch", "DELETE": "delete"}
    used = set()
    for call in provider_traffic:
        parts = call["path"].strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        resource = parts[4 if group == "" else 5] + ("/log" if parts[-1] == "log" else "")
        used.add((group, resource, verb[call["method"]]))

    role = find(rendered["base"], "Role", "agentloop-sandboxes")
    granted = {
        (group, resource, v)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for v in rule["verbs"]
    }
    assert role["metadata"]["namespace"] == RUNS_NS
    assert granted == used
    binding = find(rendered["base"], "RoleBinding", "agentloop-worker-sandboxes")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "agentloop-worker", "namespace": "agentloop"}
    ]
    worker = find(rendered["base"], "Deployment", "agentloop-worker")
    assert worker["spec"]["template"]["spec"]["serviceAccountName"] == "agentloop-worker"
