"""The chart on a real node: Ready under the restricted Pod Security Standard with
ServiceAccount credentials the control plane issued, openai SDK traffic through a gateway
pod on the operator's table, a rolling restart under load that loses nothing, the table
as a mounted ConfigMap that the kubelet swaps, and an uninstall that leaves nothing stuck.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import openai
import pytest
from kubernetes import client as k8s

from zeta_testbed import node, pods
from zeta_testbed.testbed import Testbed

from .conftest import (
    CHART,
    GATEWAY_PORT,
    MODEL,
    NAMESPACE,
    TABLE,
    Release,
    all_ready,
    chart_flags,
    gateway_table,
    wait_for,
)

pytestmark = pytest.mark.node

MESSAGES = [{"role": "user", "content": "Say hello."}]
FINALIZER = "zeta.dev/operator"
"""The operator's finalizer on ZetaRouters (a literal: the fix may remove the name)."""


def client(address: str) -> openai.OpenAI:
    # No retries: a lost request must show as a failure, not be hidden by the SDK.
    return openai.OpenAI(
        base_url=f"http://{address}:{GATEWAY_PORT}/v1", api_key="unused", max_retries=0
    )


def test_node_is_ready_and_leaves_simulated_pods_alone(node_testbed: Testbed) -> None:
    with node_testbed.api_client() as api:
        found = k8s.CoreV1Api(api).read_node(node.NODE_NAME)
    info = found.status.node_info
    assert info.kubelet_version == "v1.36.3"
    assert info.container_runtime_version.startswith("containerd://")
    assert not found.spec.taints
    # The real scheduler runs now; a simulated pod must stay as the testbed reports it.
    pod = node_testbed.add_pod("7b")
    time.sleep(2)
    with node_testbed.api_client() as api:
        simulated = k8s.CoreV1Api(api).read_namespaced_pod(pod.name, pod.namespace)
    assert simulated.spec.scheduler_name == pods.SIMULATED_SCHEDULER
    assert not simulated.spec.node_name
    assert simulated.status.phase == "Running"
    node_testbed.remove_pod(pod.name)


def test_chart_runs_ready_under_restricted_pss_with_issued_tokens(release: Release) -> None:
    namespace = release.core().read_namespace(NAMESPACE)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for component in ("operator", "gateway"):
        running = release.pods(component)
        assert all_ready(running, 2), component
        for pod in running:
            assert pod.spec.node_name == node.NODE_NAME
            # Added by the ServiceAccount admission plugin, filled by the kubelet.
            volumes = [v.name for v in pod.spec.volumes or []]
            assert any(name.startswith("kube-api-access-") for name in volumes), volumes
            assert pod.status.container_statuses[0].restart_count == 0


def test_openai_sdk_through_the_gateway_pod_on_the_operators_table(release: Release) -> None:
    # The model containers, scraped by the testbed's Prometheus at their pod addresses.
    # Polled: a container Ready a moment ago may not be scraped yet (seen once in CI).
    query = f'count(vllm:num_requests_running{{namespace="{NAMESPACE}"}})'
    wait_for(
        "both model containers scraped",
        lambda: [s["value"][1] for s in release.testbed.query(query)] == ["2"],
        30,
    )
    addresses = release.ready_gateways()
    assert len(addresses) == 2
    revision = release.table_revision()
    for address in addresses:
        served = gateway_table(address)
        assert served["revision"] >= revision
        endpoints = served["table"]["models"][MODEL]["endpoints"]
        # The operator's table: the model containers' own addresses on the node.
        assert {e["address"].split(":")[0] for e in endpoints} == set(release.model_ips())
    for address in addresses:
        sdk = client(address)
        for _ in range(5):
            reply = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)  # type: ignore[arg-type]
            assert reply.choices[0].message.content
        streamed = sdk.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=8,
            stream=True,
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)


def published_endpoints(release: Release) -> int:
    """How many endpoints of the model the operator's published table lists."""
    table = release.testbed.routing_table(release.namespace, TABLE)
    return len(table["models"][MODEL]["endpoints"]) if table else 0


class SteadyLoad:
    """Four clients sending requests one after another to the gateway's ready endpoints,
    refreshed every 0.2 s as kube-proxy would be; every outcome is counted."""

    def __init__(self, release: Release) -> None:
        self.release = release
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []
        self._addresses = release.ready_gateways()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._refresh, daemon=True)] + [
            threading.Thread(target=self._send, daemon=True) for _ in range(4)
        ]

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _refresh(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._addresses = self.release.ready_gateways() or self._addresses
            except Exception:  # a missed refresh only delays the next one
                continue

    def _send(self) -> None:
        for turn in itertools.count():
            if self._stop.is_set():
                return
            address = self._addresses[turn % len(self._addresses)]
            try:
                reply = client(address).chat.completions.create(
                    model=MODEL,
                    messages=MESSAGES,  # type: ignore[arg-type]
                    max_tokens=4,
                    timeout=30,
                )
                outcome = "ok" if reply.choices else "empty"
            except openai.APIError as exc:
                outcome = "error"
                with self._lock:
                    self.errors.append(f"{address}: {exc!r}")
            with self._lock:
                self.outcomes[outcome] += 1


def test_rolling_restart_of_the_gateway_under_load_loses_no_request(release: Release) -> None:
    before = {pod.metadata.name for pod in release.pods("gateway")}
    deployment = "deployment/zr-zeta-router-gateway"
    with SteadyLoad(release) as load:
        time.sleep(2)
        release.testbed.kubectl("-n", NAMESPACE, "rollout", "restart", deployment)
        release.testbed.kubectl(
            "-n", NAMESPACE, "rollout", "status", deployment, "--timeout=180s", timeout=200
        )
        time.sleep(2)
    after = {
        pod.metadata.name
        for pod in release.pods("gateway")
        if pod.metadata.deletion_timestamp is None  # old ones may still drain
    }
    print(f"\nrolling restart under load: {dict(load.outcomes)}")
    assert not before & after, "the rollout replaced no pod"
    assert load.outcomes["ok"] > 20, load.outcomes
    assert load.outcomes["error"] == 0, load.errors[:5]
    assert load.outcomes["empty"] == 0


def test_mounted_configmap_mode_follows_the_kubelets_data_swap(release: Release) -> None:
    """A gateway-only release reading the table from a ConfigMap volume: the kubelet
    (syncFrequency short on the node) swaps the ``..data`` link, the gateway reloads."""
    name = "zr-file"
    release.helm(
        "install", name, str(CHART), "-n", NAMESPACE, *chart_flags(),
        "--set", "operator.enabled=false,gateway.replicas=1,test.enabled=false",
        "--set", "gateway.routingTableFrom=volume,gateway.podDisruptionBudget.enabled=false",
    )  # fmt: skip
    file_release = Release(release.testbed, NAMESPACE, name)
    wait_for("the file gateway ready", lambda: all_ready(file_release.pods("gateway"), 1), 120)
    pod = file_release.pods("gateway")[0].metadata.name
    listing = release.testbed.kubectl(
        "-n", NAMESPACE, "exec", pod, "--", "ls", "-la", "/etc/zeta/routing-table"
    )
    assert "..data ->" in listing, listing
    address = file_release.ready_gateways()[0]
    revision = release.table_revision()
    wait_for(
        "the file gateway on the table", lambda: gateway_table(address)["revision"] >= revision, 60
    )
    # A third model pod: the operator publishes a new revision with it.
    release.testbed.kubectl("-n", NAMESPACE, "scale", f"deployment/{MODEL}", "--replicas=3")
    # Wait for the revision that lists it: the operator may first publish a revision for a
    # load change, before the third pod is Ready (seen once in CI).
    wait_for("a table revision with the third pod", lambda: published_endpoints(release) == 3, 90)
    newer = release.table_revision()
    started = time.monotonic()
    wait_for(
        "the mounted table's new revision in the gateway",
        lambda: gateway_table(address)["revision"] >= newer,
        timeout=90,
    )
    print(f"\nmounted table followed in {time.monotonic() - started:.1f} s")
    served = gateway_table(address)["table"]
    assert len(served["models"][MODEL]["endpoints"]) == 3
    reply = client(address).chat.completions.create(
        model=MODEL,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=4,
    )
    assert reply.choices
    release.helm("uninstall", name, "-n", NAMESPACE, "--wait")


class StuckOnFinalizer(AssertionError):
    """The namespace waits on the operator's finalizer, with no operator left to remove it."""


def test_helm_uninstall_leaves_nothing_stuck(release: Release) -> None:
    """Last: the release goes, then its namespace must finish deleting."""
    release.helm("uninstall", release.name, "-n", NAMESPACE, "--wait", "--timeout=120s")
    release.testbed.kubectl("delete", "namespace", NAMESPACE, "--wait=false")

    def gone() -> bool:
        return NAMESPACE not in release.testbed.kubectl("get", "namespaces", "-o", "name")

    try:
        wait_for(f"namespace {NAMESPACE} deleted", gone, timeout=30)
    except AssertionError as exc:
        status = release.testbed.kubectl(
            "get", "namespace", NAMESPACE, "-o", "jsonpath={.status.conditions}"
        )
        if FINALIZER in status:
            raise StuckOnFinalizer(f"{exc}: {status}") from exc
        raise AssertionError(f"{exc}: {status}") from exc
