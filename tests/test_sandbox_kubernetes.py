"""The Kubernetes provider through the real client against a local API double (tests/k8s_double.py).

What is asserted is what the API server received on the wire: the manifests,
the call sequence, and how answers map to sandbox states.
"""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
from kubernetes import client

from agentloop.sandboxes.base import (
    Limits,
    NetworkPolicy,
    SandboxError,
    SandboxHandle,
    SandboxSpec,
    SandboxState,
)
from agentloop.sandboxes.kubernetes import KubernetesProvider, Peer, RunNetwork, object_name
from tests.k8s_double import KubernetesDouble

NS = "agentloop-runs"
TOKEN = "al_sk_secret-run-token"


@pytest.fixture
def double():
    double = KubernetesDouble(namespaces=[NS]).start()
    yield double
    double.close()


@pytest.fixture
def provider(double):
    configuration = client.Configuration()
    configuration.host = double.url
    api = client.CoreV1Api(client.ApiClient(configuration))
    return KubernetesProvider(
        api, namespace=NS, image="registry.example/runner:1", stop_grace_seconds=15
    )


def run_spec(code="R7x2k", **overrides) -> SandboxSpec:
    values = {
        "run_code": code,
        "command": ["python3", "-m", "agentloop.runner"],
        "env": {"AGENTLOOP_URL": "http://agentloop-web:8000", "AGENTLOOP_RUN_TOKEN": TOKEN},
        "limits": Limits(cpu=0.5, memory_mb=1024, processes=128, wall_seconds=900, disk_mb=512),
    }
    values.update(overrides)
    return SandboxSpec(**values)


def sent(double, method: str, kind: str) -> dict:
    """The body of the (only) request of this method to this collection/object kind."""
    bodies = [c["body"] for c in double.calls if c["method"] == method and f"/{kind}" in c["path"]]
    assert len(bodies) == 1, double.calls_summary()
    return bodies[0]


def test_start_creates_the_secret_then_the_pod_then_makes_the_pod_own_the_secret(provider, double):
    handle = provider.start(run_spec())

    name = object_name("R7x2k")
    assert double.calls_summary() == ["POST secrets", "POST pods", f"PATCH secrets/{name}-env"]
    pod = double.pod(name)
    secret = double.secret(f"{name}-env")
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": pod["metadata"]["uid"],
            "blockOwnerDeletion": False,
        }
    ]
    assert handle.to_json() == {
        "provider": "kubernetes",
        "id": name,
        "data": {"namespace": NS, "secret": f"{name}-env", "uid": pod["metadata"]["uid"]},
    }


def test_the_env_lives_in_the_secret_and_never_in_the_pod_spec(provider, double):
    provider.start(run_spec())

    secret_body = sent(double, "POST", "secrets")
    pod_body = sent(double, "POST", "pods")
    assert secret_body["stringData"] == {
        "AGENTLOOP_URL": "http://agentloop-web:8000",
        "AGENTLOOP_RUN_TOKEN": TOKEN,
    }
    stored = double.secret(f"{object_name('R7x2k')}-env")["data"]
    assert base64.b64decode(stored["AGENTLOOP_RUN_TOKEN"]).decode() == TOKEN
    assert TOKEN not in json.dumps(pod_body)
    container = pod_body["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": f"{object_name('R7x2k')}-env"}}]
    assert {e["name"] for e in container["env"]} == {
        "HOME",
        "AGENTLOOP_WORKSPACE",
        "PYTHONUNBUFFERED",
    }


def test_the_pod_is_locked_down(provider, double):
    provider.start(run_spec())

    pod = sent(double, "POST", "pods")
    spec = pod["spec"]
    container = spec["containers"][0]
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "agentloop",
        "agentloop.dev/run": "R7x2k",
    }
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 900
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["terminationGracePeriodSeconds"] == 15
    assert "runtimeClassName" not in spec
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["image"] == "registry.example/runner:1"
    assert container["command"] == ["python3", "-m", "agentloop.runner"]
    assert container["workingDir"] == "/workspace"
    expected = {"cpu": "500m", "memory": "1024Mi", "ephemeral-storage": "512Mi"}
    assert container["resources"] == {"requests": expected, "limits": expected}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/workspace": "workspace", "/home/agent": "home", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(volumes) == {"workspace", "home", "tmp"}
    assert all(set(v) == {"name", "emptyDir"} for v in volumes.values())  # no host paths
    assert volumes["workspace"]["emptyDir"] == {"sizeLimit": "512Mi"}


def test_the_spec_image_and_a_runtime_class_are_used_when_given(double):
    configuration = client.Configuration()
    configuration.host = double.url
    api = client.CoreV1Api(client.ApiClient(configuration))
    provider = KubernetesProvider(api, namespace=NS, image="default:1", runtime_class="gvisor")

    provider.start(run_spec(image="custom/runner:2"))

    pod = sent(double, "POST", "pods")
    assert pod["spec"]["runtimeClassName"] == "gvisor"
    assert pod["spec"]["containers"][0]["image"] == "custom/runner:2"


def test_status_follows_the_pod_phase(provider, double):
    handle = provider.start(run_spec())

    assert provider.status(handle).state == SandboxState.STARTING
    double.set_phase(handle.id, "Running")
    assert provider.status(handle).state == SandboxState.RUNNING
    double.set_phase(handle.id, "Succeeded", exit_code=0)
    status = provider.status(handle)
    assert (status.state, status.exit_code, status.detail) == (SandboxState.EXITED, 0, "Completed")


def test_a_failed_pod_reports_its_exit_code_and_a_deadline_its_reason(provider, double):
    failed = provider.start(run_spec("Fail1"))
    late = provider.start(run_spec("Late1"))

    double.set_phase(failed.id, "Failed", exit_code=3)
    double.set_phase(late.id, "Failed", reason="DeadlineExceeded")

    assert provider.status(failed).exit_code == 3
    status = provider.status(late)
    assert (status.state, status.exit_code, status.detail) == (
        SandboxState.EXITED,
        None,
        "DeadlineExceeded",
    )


def test_status_of_a_missing_pod_is_gone(provider):
    status = provider.status(SandboxHandle(provider="kubernetes", id="agentloop-run-nope"))

    assert (status.state, status.detail) == (SandboxState.GONE, "no such pod")


def test_stop_deletes_the_pod_with_the_grace_period(provider, double):
    handle = provider.start(run_spec())
    double.set_phase(handle.id, "Running")

    provider.stop(handle)

    delete = double.calls[-1]
    assert double.calls_summary()[-1] == f"DELETE pods/{handle.id}"
    assert delete["query"].get("gracePeriodSeconds") == "15"
    status = provider.status(handle)
    assert (status.state, status.detail) == (SandboxState.RUNNING, "terminating")
    double.kubelet_finishes(handle.id)
    assert provider.status(handle).state == SandboxState.GONE
    provider.stop(handle)  # a second stop of a gone pod is fine


def test_cleanup_deletes_pod_and_secret_and_is_idempotent(provider, double):
    handle = provider.start(run_spec())
    double.set_phase(handle.id, "Running")

    provider.cleanup(handle)
    provider.cleanup(handle)

    assert double.pod(handle.id) is None
    assert double.secret(f"{handle.id}-env") is None
    assert double.calls_summary()[-4:] == [
        f"DELETE pods/{handle.id}",
        f"DELETE secrets/{handle.id}-env",
        f"DELETE pods/{handle.id}",
        f"DELETE secrets/{handle.id}-env",
    ]
    first_delete = [c for c in double.calls if c["method"] == "DELETE"][0]
    assert first_delete["query"].get("gracePeriodSeconds") == "0"


def test_a_second_start_for_the_same_run_is_refused_and_changes_nothing(provider, double):
    provider.start(run_spec())
    before = json.dumps({str(key): obj for key, obj in double.objects.items()}, sort_keys=True)

    with pytest.raises(SandboxError, match="409 .*already exists"):
        provider.start(run_spec())

    assert json.dumps({str(k): obj for k, obj in double.objects.items()}, sort_keys=True) == before


@pytest.fixture
def provider_without_image(double):
    configuration = client.Configuration()
    configuration.host = double.url
    return KubernetesProvider(
        client.CoreV1Api(client.ApiClient(configuration)), namespace=NS, image=""
    )


def test_a_pod_the_api_rejects_leaves_no_secret_behind(provider_without_image, double):
    with pytest.raises(SandboxError, match="422 .*containers\\[0\\].image: Required value"):
        provider_without_image.start(run_spec())

    assert double.objects == {}
    assert double.calls_summary() == [
        "POST secrets",
        "POST pods",
        f"DELETE secrets/{object_name('R7x2k')}-env",
    ]


def test_an_unknown_namespace_is_a_clear_error(double):
    configuration = client.Configuration()
    configuration.host = double.url
    api = client.CoreV1Api(client.ApiClient(configuration))
    provider = KubernetesProvider(api, namespace="missing", image="x:1")

    with pytest.raises(SandboxError, match='404 namespaces "missing" not found'):
        provider.start(run_spec())


def test_read_log_returns_the_runner_output(provider, double):
    handle = provider.start(run_spec())
    double.logs[(NS, handle.id)] = "runner started\n"

    assert provider.read_log(handle) == "runner started\n"
    log_call = double.calls[-1]
    assert log_call["query"] == {"container": "runner", "limitBytes": "65536"}


def test_object_names_are_dns_safe_and_distinct_for_codes_differing_in_case():
    assert object_name("abc-123") == "agentloop-run-abc-123"
    upper, lower = object_name("AbC"), object_name("abc")
    assert upper != lower
    assert upper.startswith("agentloop-run-abc-") and upper == upper.lower()


def test_a_run_code_that_cannot_be_a_label_is_refused(provider, double):
    with pytest.raises(SandboxError, match="cannot label"):
        provider.start(run_spec(code="bad code!"))
    assert double.calls == []


def test_the_registry_builds_the_provider_from_a_kubeconfig_context(
    double, settings, tmp_path, monkeypatch
):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "double", "cluster": {"server": double.url}}],
                "users": [{"name": "agentloop", "user": {"token": "test-token"}}],
                "contexts": [
                    {"name": "other", "context": {"cluster": "nowhere", "user": "agentloop"}},
                    {"name": "double", "context": {"cluster": "double", "user": "agentloop"}},
                ],
                "current-context": "other",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings.K8S_CONTEXT = "double"
    settings.K8S_NAMESPACE = NS
    settings.K8S_IMAGE = "from-settings:1"
    settings.K8S_RUNTIME_CLASS = "kata"
    settings.K8S_WEB_PEER = "agentloop-prod/app=web:8443"
    settings.K8S_DNS_PEER = ""
    from agentloop.sandboxes.registry import get_provider, provider_names, unregister_provider

    unregister_provider("kubernetes")  # build afresh from these settings
    try:
        provider = get_provider("kubernetes")
        handle = provider.start(run_spec())
    finally:
        unregister_provider("kubernetes")

    assert "kubernetes" in provider_names() and "local" in provider_names()
    pod = double.pod(handle.id)
    assert pod["spec"]["containers"][0]["image"] == "from-settings:1"
    assert pod["spec"]["runtimeClassName"] == "kata"
    (rule,) = double.network_policy(handle.id)["spec"]["egress"]  # web only: no DNS peer set
    assert rule["ports"] == [{"protocol": "TCP", "port": 8443}]
    assert rule["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "agentloop-prod"
    }


def test_a_missing_kube_context_is_a_clear_error(settings, tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text('{"apiVersion": "v1", "kind": "Config", "contexts": [], "clusters": []}')
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    settings.K8S_CONTEXT = "absent"

    with pytest.raises(SandboxError, match="no Kubernetes configuration"):
        KubernetesProvider.from_settings()


# -- the run's NetworkPolicy -------------------------------------------------------------

WEB = "agentloop/app.kubernetes.io/name=agentloop,app.kubernetes.io/component=web:8000"


@pytest.fixture
def fenced(double):
    """A provider that makes a NetworkPolicy per run: web, DNS and an egress proxy."""
    configuration = client.Configuration()
    configuration.host = double.url
    api_client = client.ApiClient(configuration)
    network = RunNetwork(
        web=Peer.parse(WEB, "web"),
        dns=Peer.parse("kube-system/k8s-app=kube-dns:53", "dns"),
        proxy=Peer.parse("agentloop/app.kubernetes.io/component=egress-proxy:3128", "proxy"),
    )
    return KubernetesProvider(
        client.CoreV1Api(api_client),
        namespace=NS,
        image="registry.example/runner:1",
        networking_v1=client.NetworkingV1Api(api_client),
        network=network,
    )


def test_the_policy_is_made_before_the_pod_and_owned_by_it(fenced, double):
    handle = fenced.start(run_spec())

    name = object_name("R7x2k")
    assert double.calls_summary() == [
        "POST secrets",
        "POST networkpolicies",
        "POST pods",
        f"PATCH secrets/{name}-env",
        f"PATCH networkpolicies/{name}",
    ]
    pod = double.pod(name)
    owners = double.network_policy(name)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [
        ("Pod", name, pod["metadata"]["uid"])
    ]
    assert handle.data["network_policy"] == name


def test_a_runner_only_pod_may_reach_the_web_pods_the_dns_and_the_proxy_and_nothing_else(
    fenced, double
):
    fenced.start(run_spec())

    policy = sent(double, "POST", "networkpolicies")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"agentloop.dev/run": "R7x2k"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec.get("ingress", []) == []  # nothing connects into a sandbox

    def allowed(rule):
        (peer,) = rule["to"]
        namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        ports = sorted((p["protocol"], p["port"]) for p in rule["ports"])
        return namespace, peer["podSelector"]["matchLabels"], ports

    assert [allowed(rule) for rule in spec["egress"]] == [
        (
            "agentloop",
            {"app.kubernetes.io/name": "agentloop", "app.kubernetes.io/component": "web"},
            [("TCP", 8000)],
        ),
        ("kube-system", {"k8s-app": "kube-dns"}, [("TCP", 53), ("UDP", 53)]),
        ("agentloop", {"app.kubernetes.io/component": "egress-proxy"}, [("TCP", 3128)]),
    ]
    assert "ipBlock" not in json.dumps(spec)


def test_an_open_pod_may_go_anywhere_but_the_cloud_metadata_address(fenced, double):
    fenced.start(run_spec(network=NetworkPolicy.OPEN))

    spec = sent(double, "POST", "networkpolicies")["spec"]
    assert spec.get("ingress", []) == []
    blocks = [peer["ipBlock"] for rule in spec["egress"] for peer in rule["to"]]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]},
        {"cidr": "::/0", "except": ["fe80::/10", "fd00:ec2::254/128"]},
    ]
    assert all("ports" not in rule for rule in spec["egress"])  # every port


def test_a_pod_the_api_rejects_leaves_neither_secret_nor_policy(double):
    configuration = client.Configuration()
    configuration.host = double.url
    api_client = client.ApiClient(configuration)
    provider = KubernetesProvider(
        client.CoreV1Api(api_client),
        namespace=NS,
        image="",
        networking_v1=client.NetworkingV1Api(api_client),
        network=RunNetwork(web=Peer.parse(WEB, "web")),
    )

    with pytest.raises(SandboxError, match="422 .*image: Required value"):
        provider.start(run_spec())

    name = object_name("R7x2k")
    assert double.objects == {}
    assert double.calls_summary()[-2:] == [
        f"DELETE secrets/{name}-env",
        f"DELETE networkpolicies/{name}",
    ]


def test_cleanup_removes_the_policy_even_from_a_handle_found_by_run_code(fenced, double):
    fenced.start(run_spec("Lost1"))  # the worker died before storing this handle

    fenced.cleanup(fenced.handle_for("Lost1"))

    name = object_name("Lost1")
    assert double.pod(name) is None
    assert double.secret(f"{name}-env") is None
    assert double.network_policy(name) is None
    assert double.calls_summary()[-1] == f"DELETE networkpolicies/{name}"


@pytest.mark.parametrize(
    "value",
    [
        "agentloop/app=web",  # no port
        "agentloop:8000",  # no labels
        "Agentloop/app=web:8000",  # not a namespace name
        "agentloop/app=web:99999",
        "agentloop/app=we b:8000",
    ],
)
def test_a_malformed_peer_setting_is_a_clear_error(value):
    with pytest.raises(SandboxError, match="AGENTLOOP_K8S_WEB_PEER .* is not NAMESPACE/"):
        Peer.parse(value, "AGENTLOOP_K8S_WEB_PEER")


@pytest.fixture
def kubeconfig_for(double, tmp_path, monkeypatch, settings):
    """KUBECONFIG naming the double as context 'double', selected in settings."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "double", "cluster": {"server": double.url}}],
                "users": [{"name": "agentloop", "user": {"token": "test-token"}}],
                "contexts": [
                    {"name": "double", "context": {"cluster": "double", "user": "agentloop"}}
                ],
                "current-context": "double",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings.K8S_CONTEXT = "double"
    settings.K8S_NAMESPACE = NS
    settings.K8S_IMAGE = "from-settings:1"
    return path


def test_without_network_policies_the_provider_makes_none(kubeconfig_for, double, settings):
    settings.K8S_NETWORK_POLICY = False

    provider = KubernetesProvider.from_settings()
    provider.start(run_spec())

    assert double.calls_summary() == [
        "POST secrets",
        "POST pods",
        f"PATCH secrets/{object_name('R7x2k')}-env",
    ]


def test_a_malformed_web_peer_setting_stops_the_provider_with_its_name(kubeconfig_for, settings):
    settings.K8S_WEB_PEER = "agentloop/web"

    with pytest.raises(SandboxError, match="AGENTLOOP_K8S_WEB_PEER 'agentloop/web' is not"):
        KubernetesProvider.from_settings()


# -- opt-in: a real cluster ------------------------------------------------------------


@pytest.mark.k8s
@pytest.mark.skipif(
    not os.environ.get("AGENTLOOP_K8S_TEST_CONTEXT"),
    reason="set AGENTLOOP_K8S_TEST_CONTEXT (and _NAMESPACE) to run against a real cluster",
)
def test_a_real_cluster_runs_a_tiny_pod_and_cleans_up():
    from kubernetes import config

    api = client.CoreV1Api(
        config.new_client_from_config(context=os.environ["AGENTLOOP_K8S_TEST_CONTEXT"])
    )
    namespace = os.environ.get("AGENTLOOP_K8S_TEST_NAMESPACE", "default")
    provider = KubernetesProvider(api, namespace=namespace, image="busybox:1.36")
    code = f"k8stest{int(time.time())}"
    handle = provider.start(
        SandboxSpec(
            run_code=code,
            command=["sh", "-c", 'echo "hello $AGENTLOOP_RUN_TOKEN"'],
            env={"AGENTLOOP_RUN_TOKEN": "from-the-secret"},
            limits=Limits(cpu=0.1, memory_mb=64, wall_seconds=120, disk_mb=64),
        )
    )
    try:
        deadline = time.monotonic() + 120
        status = provider.status(handle)
        while status.state not in (SandboxState.EXITED, SandboxState.GONE):
            assert time.monotonic() < deadline, f"pod still {status}"
            time.sleep(1)
            status = provider.status(handle)
        assert (status.state, status.exit_code) == (SandboxState.EXITED, 0), status
        assert "hello from-the-secret" in provider.read_log(handle)
    finally:
        provider.cleanup(handle)
    assert provider.status(handle).state == SandboxState.GONE
