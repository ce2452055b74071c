"""The runner image, run from the Kubernetes provider's own Pod manifest, against a live server.

Opt-in (`make test-images` builds the images, then runs this): podman plays the
Secret and Pod that KubernetesProvider renders for a real run (tests/podman_pods.py),
the runner inside the image reaches daphne serving agentloop.asgi in this process,
and the run goes end to end: an analyst run to success, and a Claude Code run (the
image's pinned CLI) through the LLM gateway to the scripted model, then stopped.
One more goes the whole way a cluster would: the real provider creates Secret,
NetworkPolicy and Pod through the client against the API double, and a podman
kubelet (tests/podman_kubelet.py) plays the stored Pod and reports its phase.

AGENTLOOP_TEST_RUNNER_IMAGE names the image (make test-images: localhost/agentloop-runner:dev).
With AGENTLOOP_IMAGE_TIMINGS=<file>, pod start → first event times are appended to it
as JSON lines (benches/bench_pod_start.py reads them; docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agentloop.runs import actions
from agentloop.runs.models import TERMINAL, Artifact, RunStatus, ServiceKey
from agentloop.runs.reconciler import reconcile
from agentloop.sandboxes.kubernetes import KubernetesProvider, Peer, RunNetwork
from agentloop.sandboxes.local import LocalProvider
from agentloop.sandboxes.registry import override_provider
from tests.e2e_support import needs_bwrap, run_now, wait_for
from tests.fake_anthropic import text, tool_use
from tests.k8s_double import KubernetesDouble
from tests.podman_kubelet import PodmanKubelet
from tests.podman_pods import PODMAN, PodmanPodProvider
from tests.span_factory import make_span

# asgi_server, upstream_model, gateway, real_key; sandbox_root (the local comparison)
pytest_plugins = ["tests.gateway_server", "tests.e2e_support"]

IMAGE = os.environ.get("AGENTLOOP_TEST_RUNNER_IMAGE", "")
pytestmark = [
    pytest.mark.images,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not IMAGE or PODMAN is None,
        reason="opt-in: `make test-images` (podman, AGENTLOOP_TEST_RUNNER_IMAGE)",
    ),
]


@pytest.fixture
def pods():
    provider = PodmanPodProvider(image=IMAGE, stop_grace_seconds=5)
    if subprocess.run([PODMAN, "image", "exists", IMAGE], env=provider.env).returncode != 0:
        pytest.fail(f"image {IMAGE} is not built (make images)")
    with override_provider("podman", provider):
        yield provider
    for code in list(provider.played):
        provider.cleanup(provider.handle_for(code))
    provider.close()


def log_of(pods, run) -> str:
    return pods.read_log(pods.handle_for(str(run.code)))[-4000:]


_RECORDED: list[str] = []  # the runs timed in this session, in order


def record_timings(provider, run, harness: str) -> None:
    """Seconds from `podman kube play` (or the local sandbox's start) to the first event
    the runner caused, and to the first agent event; appended to AGENTLOOP_IMAGE_TIMINGS.
    The session's first run also pays the server's cold start: it is marked."""
    played = provider.played_at[str(run.code)]
    first_in_session = not _RECORDED
    _RECORDED.append(harness)
    events = list(run.events.order_by("seq"))
    after = [e for e in events if e.created_at.timestamp() >= played]
    agent = [e for e in after if e.source == "agent"]
    line = {
        "harness": harness,
        "first_event_s": round(after[0].created_at.timestamp() - played, 3),
        "first_event": f"{after[0].source}/{after[0].kind}",
        "first_agent_event_s": round(agent[0].created_at.timestamp() - played, 3),
        "first_in_session": first_in_session,
        # podman only: how long `kube play` took to return (the containers started)
        "play_s": round(getattr(provider, "play_seconds", {}).get(str(run.code), 0), 3),
    }
    if os.environ.get("AGENTLOOP_IMAGE_TIMINGS"):
        with open(os.environ["AGENTLOOP_IMAGE_TIMINGS"], "a") as out:
            out.write(json.dumps(line) + "\n")


def pod_name(pods, run) -> str:
    return pods.handle_for(str(run.code)).id


def container(pods, run) -> dict:
    out = pods.podman("inspect", "--type", "container", f"{pod_name(pods, run)}-runner")
    return json.loads(out)[0]


def analyst_run(project, alice, sandbox: str, log):
    now = timezone.now()
    for i in range(6):
        make_span(
            project,
            name="refund-tool",
            kind="TOOL",
            status="ERROR",
            start=now - timedelta(minutes=30 + i),
            attributes={"exception.type": "TimeoutError"},
        )
    config = {"harness": "analyst", "sandbox": sandbox, "time_limit_seconds": 300}

    run = actions.start_session(alice, project, config, "Why do refunds fail?")

    assert wait_for(lambda: run_now(run).is_terminal, 180), (
        f"run still {run_now(run).status}; log:\n{log(run)}"
    )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, f"{run.exit_reason}\n{log(run)}"
    return run


def test_an_analyst_run_in_the_runner_image_succeeds_end_to_end(
    pods, asgi_server, served_db, settings, project, alice
):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server

    run = analyst_run(project, alice, "podman", lambda run: log_of(pods, run))

    events = list(run.events.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    states = [e.payload["state"] for e in events if e.kind == "status" and e.source == "system"]
    assert states[:2] == ["provisioning", "running"] and states[-1] == "succeeded"
    assert any(e.kind == "tool_call" for e in events)
    investigation = Artifact.objects.get(run=run, kind="investigation")
    assert "refund-tool" in investigation.content

    # What podman made of the provider's Pod: the manifest's lock-down, applied.
    played = pods.played[str(run.code)]["spec"]["containers"][0]
    assert played["image"] == IMAGE
    host = container(pods, run)
    assert host["Config"]["User"] == "1000:1000"
    assert host["HostConfig"]["ReadonlyRootfs"] is True
    assert "CAP_SYS_ADMIN" not in (host["EffectiveCaps"] or [])
    assert host["EffectiveCaps"] in (None, [])
    assert host["HostConfig"]["Memory"] == run.config["limits"].get("memory_mb", 2048) * 2**20
    assert host["State"]["ExitCode"] == 0
    record_timings(pods, run, "analyst")

    reconcile()
    run.refresh_from_db()
    assert run.sandbox_cleaned_at is not None
    exists = [PODMAN, "pod", "exists", pod_name(pods, run)]
    assert subprocess.run(exists, env=pods.env).returncode == 1
    secrets = pods.podman("secret", "ls", "--format", "{{.Name}}").split()
    assert f"{pod_name(pods, run)}-env" not in secrets
    assert ServiceKey.objects.get(run=run).revoked_at is not None


TOOL_COMMAND = (
    "id -u > artifacts/whoami.txt; pwd >> artifacts/whoami.txt; "
    "agentloop-traces spans --limit 1 > artifacts/seen.json; echo done"
)


def test_a_claude_code_run_in_the_runner_image_works_through_the_gateway(
    pods, gateway, asgi_server, upstream_model, real_key, settings, project, alice
):
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    make_span(
        project,
        name="checkout-llm",
        kind="LLM",
        status="ERROR",
        start=timezone.now() - timedelta(minutes=5),
    )
    upstream_model.script(
        [
            tool_use("Bash", {"command": TOOL_COMMAND}, say="Let me look at the spans."),
            text("I looked: one span, checkout-llm."),
        ]
    )
    config = {"harness": "claude-code", "sandbox": "podman", "time_limit_seconds": 300}

    run = actions.start_session(alice, project, config, "What fails in checkout?")

    def said(value):
        return run.events.filter(source="agent", kind="message", payload__text=value).exists()

    answer = "I looked: one span, checkout-llm."
    assert wait_for(lambda: said(answer) or run_now(run).is_terminal, 180), log_of(pods, run)
    assert said(answer), f"{run_now(run).exit_reason}\n{log_of(pods, run)}"
    assert wait_for(lambda: run_now(run).status in {RunStatus.WAITING, *TERMINAL}, 60)
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING, f"{run.exit_reason}\n{log_of(pods, run)}"
    calls = [e.payload for e in run.events.filter(source="agent", kind="tool_call")]
    assert [c["input"]["command"] for c in calls] == [TOOL_COMMAND]
    results = [e.payload for e in run.events.filter(source="agent", kind="tool_result")]
    assert [r["output"].strip() for r in results] == ["done"]
    # The tool ran in the pod as uid 1000 in /workspace, and the span API answered.
    assert wait_for(lambda: Artifact.objects.filter(run=run).count() >= 2, 30)
    whoami = Artifact.objects.get(run=run, name="whoami.txt")
    assert whoami.content.split() == ["1000", "/workspace"]
    seen = json.loads(Artifact.objects.get(run=run, name="seen.json").content.splitlines()[0])
    assert seen["name"] == "checkout-llm"
    # The model saw only the real key, which the pod never had.
    keys = {
        {k.lower(): v for k, v in r["headers"].items()}["x-api-key"]
        for r in upstream_model.requests
        if r["path"].startswith("/v1/messages")
    }
    assert keys == {real_key}
    assert real_key not in json.dumps(pods.played[str(run.code)])
    record_timings(pods, run, "claude-code")

    assert actions.cancel(alice, run) is True
    assert wait_for(lambda: run_now(run).is_terminal, 60), log_of(pods, run)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED, run.exit_reason
    reconcile()
    run.refresh_from_db()
    assert run.sandbox_cleaned_at is not None
    exists = [PODMAN, "pod", "exists", pod_name(pods, run)]
    assert subprocess.run(exists, env=pods.env).returncode == 1


def local_log(local, run) -> str:
    return local.read_log(local.handle_for(str(run.code)))[-4000:]


class TimedLocalProvider(LocalProvider):
    """The bubblewrap provider, noting when each start began (for the comparison)."""

    def __init__(self):
        self.played_at: dict[str, float] = {}

    def start(self, spec):
        self.played_at[spec.run_code] = time.time()
        return super().start(spec)


@needs_bwrap
def test_the_same_analyst_run_in_a_local_sandbox_for_comparison(
    asgi_server, served_db, settings, sandbox_root, project, alice
):
    """The local sandbox's start → first event beside the pod's, in the same session."""
    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    local = TimedLocalProvider()

    with override_provider("local", local):
        run = analyst_run(project, alice, "local", lambda run: local_log(local, run))
        assert Artifact.objects.get(run=run, kind="investigation").content
        record_timings(local, run, "analyst-local")
        reconcile()
    run.refresh_from_db()
    assert run.sandbox_cleaned_at is not None


def test_a_run_launched_through_the_kubernetes_api_runs_in_a_pod_and_is_cleaned_up(
    asgi_server, served_db, settings, project, alice
):
    """The whole path a cluster takes: the worker's KubernetesProvider makes the Secret,
    NetworkPolicy and Pod through the real client (the API double stores them), a podman
    kubelet plays the stored Pod and reports its phase; the reconciler tears it down."""
    from kubernetes import client

    settings.AGENTLOOP_PUBLIC_URL = asgi_server
    double = KubernetesDouble(namespaces=["agentloop-runs"]).start()
    kubelet = PodmanKubelet(double, "agentloop-runs").start()
    configuration = client.Configuration()
    configuration.host = double.url
    api_client = client.ApiClient(configuration)
    provider = KubernetesProvider(
        client.CoreV1Api(api_client),
        namespace="agentloop-runs",
        image=IMAGE,
        stop_grace_seconds=5,
        networking_v1=client.NetworkingV1Api(api_client),
        network=RunNetwork(web=Peer.parse(settings.K8S_WEB_PEER, "web")),
    )

    def cluster_log(run) -> str:
        name = provider.handle_for(str(run.code)).id
        return "\n".join([*kubelet.errors, kubelet.logs(name)])[-4000:]

    try:
        with override_provider("kubernetes", provider):
            run = analyst_run(project, alice, "kubernetes", lambda run: cluster_log(run))
            name = provider.handle_for(str(run.code)).id
            # The runner reports success, then exits: the kubelet sees the exit after.
            assert wait_for(lambda: double.pod(name)["status"]["phase"] != "Running", 30)
            status = double.pod(name)["status"]
            assert status["phase"] == "Succeeded"
            assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
            assert double.network_policy(name)["spec"]["podSelector"] == {
                "matchLabels": {"agentloop.dev/run": str(run.code)}
            }
            assert "refund-tool" in Artifact.objects.get(run=run, kind="investigation").content

            reconcile()
            run.refresh_from_db()
            assert run.sandbox_cleaned_at is not None
            assert double.objects == {}  # Pod, Secret and NetworkPolicy deleted
            assert wait_for(lambda: name not in kubelet.playing, 30)
            exists = [PODMAN, "pod", "exists", name]
            assert subprocess.run(exists, env=kubelet.env).returncode == 1
            assert kubelet.errors == []
    finally:
        kubelet.close()
        double.close()
