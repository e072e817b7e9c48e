"""A testbed with a real node (``up --node``) and the chart installed on it, for the
tests in this folder; they run only under ``make test-node`` (``ZETA_NODE_TESTS=1``).

The image is the OCI archive ``make image`` left in ``build/image/`` (or
``ZETA_IMAGE_ARCHIVE``), imported into the node's containerd. The release runs in a
namespace that enforces the ``restricted`` Pod Security Standard, next to two zeta-sim
containers from the same image that the ZetaRouter selects.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from zeta_testbed import node
from zeta_testbed.testbed import Testbed
from zeta_testbed.zetarouter import wait_for_crd

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "zeta-router"
NAMESPACE = "zeta-node"
RELEASE = "zr"
ROUTER = "chat"
TABLE = "chat-routing"
MODEL = "sim-7b"
GATEWAY_PORT = 8080
ADMIN_PORT = 9090


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node: the chart on the testbed's real node")


def image_version() -> str:
    match = re.search(r'^appVersion:\s*"?([^"\s]+)"?', (CHART / "Chart.yaml").read_text(), re.M)
    assert match, "Chart.yaml has no appVersion"
    return match.group(1)


def image_archive() -> Path:
    given = os.environ.get("ZETA_IMAGE_ARCHIVE")
    return Path(given) if given else ROOT / f"build/image/zeta-router-{image_version()}.oci.tar"


def wait_for(what: str, probe: Callable[[], bool], timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)


@pytest.fixture(scope="session")
def node_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    if os.environ.get("ZETA_NODE_TESTS") != "1":
        pytest.skip("the node tests run under `make test-node` (root, the image built)")
    archive = image_archive()
    if not archive.is_file():
        pytest.fail(f"no image archive {archive}: run `make image` first")
    testbed = Testbed(tmp_path_factory.mktemp("node") / "testbed")
    started = time.monotonic()
    testbed.up({}, with_node=True, node_images=[archive])
    timings = testbed.real_node.timings()
    print(
        f"\nnode: up in {time.monotonic() - started:.1f} s (Ready {timings.ready:.1f} s after "
        f"the node started; image import {timings.images:.1f} s)"
    )
    try:
        yield testbed
    finally:
        testbed.down()
        assert_host_clean()


def assert_host_clean() -> None:
    """What ``down`` must leave: no node cgroup, bridge, mount or process."""
    left = [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{node.CGROUP_ROOT}")]
    if (Path("/sys/class/net") / node.BRIDGE).exists():
        left.append(f"bridge {node.BRIDGE}")
    mounts = Path("/proc/self/mountinfo").read_text()
    left += [line for line in mounts.splitlines() if "zetanode" in line]
    assert not left, f"the node left: {left}"


@dataclass(frozen=True)
class Release:
    """The chart installed on the node, with the testbed it runs on."""

    testbed: Testbed
    namespace: str
    name: str

    def helm(self, *args: str) -> str:
        return self.testbed.helm(*args)

    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.testbed.api_client())

    def pods(self, component: str) -> list[k8s.V1Pod]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"
        return list(self.core().list_namespaced_pod(self.namespace, label_selector=selector).items)

    def ready_gateways(self, service: str | None = None) -> list[str]:
        """Addresses of the gateway's ready endpoints, as kube-proxy would use them."""
        name = service or f"{self.name}-zeta-router-gateway"
        slices = k8s.DiscoveryV1Api(self.testbed.api_client()).list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={name}"
        )
        return [
            address
            for endpoint_slice in slices.items
            for endpoint in endpoint_slice.endpoints or []
            if endpoint.conditions is None or endpoint.conditions.ready
            for address in endpoint.addresses
        ]

    def model_ips(self) -> list[str]:
        pods = self.core().list_namespaced_pod(self.namespace, label_selector="app=vllm").items
        return [pod.status.pod_ip for pod in pods if pod.status.pod_ip]

    def table_revision(self) -> int:
        table = self.testbed.routing_table(self.namespace, TABLE)
        assert table is not None, "no routing table yet"
        return int(table["revision"])


def gateway_table(address: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://{address}:{ADMIN_PORT}/table", timeout=3) as reply:
        body: dict[str, Any] = json.load(reply)
    return body


def all_ready(pods: list[k8s.V1Pod], count: int) -> bool:
    ready = [
        pod
        for pod in pods
        if pod.metadata.deletion_timestamp is None
        and pod.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    ]
    return len(ready) == count and len(pods) == count


def sim_deployment(replicas: int) -> dict[str, Any]:
    """zeta-sim from the project image, restricted-compliant, labelled as the router selects."""
    labels = {"app": "vllm", "model": "7b"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": MODEL},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "8000",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "model",
                            "image": f"localhost/zeta-router:{image_version()}",
                            "imagePullPolicy": "Never",
                            "command": [
                                "zeta-sim",
                                "--host=0.0.0.0",
                                "--port=8000",
                                "--preset=7b",
                                f"--model={MODEL}",
                            ],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": 8000},
                                "periodSeconds": 1,
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def router(testbed: Testbed) -> dict[str, Any]:
    return {
        "apiVersion": "zeta.dev/v1alpha1",
        "kind": "ZetaRouter",
        "metadata": {"name": ROUTER},
        "spec": {
            "models": [
                {
                    "name": MODEL,
                    "tier": 1,
                    "selector": {"matchLabels": {"app": "vllm", "model": "7b"}},
                    "port": 8000,
                    "capacity": 32,
                }
            ],
            # The operator runs on the node's bridge: Prometheus through the node's relay.
            "prometheus": {"url": testbed.node_prometheus_url, "engine": "vllm", "timeout": "2s"},
            "policy": {"interval": "2s"},
            "routingTable": {"configMapName": TABLE},
        },
    }


def chart_flags() -> list[str]:
    """The local image, and the name kopf's in-cluster login dials, mapped to the
    ``kubernetes`` Service's ClusterIP (no cluster DNS on the testbed)."""
    return [
        "--set", f"image.repository=localhost/zeta-router,image.tag={image_version()}",
        "--set", "image.pullPolicy=Never",
        "--set", f"operator.hostAliases[0].ip={node.KUBERNETES_SERVICE_IP}",
        "--set", "operator.hostAliases[0].hostnames[0]=kubernetes.default.svc",
    ]  # fmt: skip


@pytest.fixture(scope="session")
def release(node_testbed: Testbed) -> Release:
    """Namespace (restricted PSS), the models, the router and ``helm install --wait``."""
    testbed = node_testbed
    testbed.kubectl("create", "namespace", NAMESPACE)
    testbed.kubectl(
        "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
    )
    manifests = yaml.safe_dump_all([sim_deployment(2), router(testbed)])
    installed = Release(testbed, NAMESPACE, RELEASE)
    started = time.monotonic()
    # The CRD comes with the chart: the router goes in once it is served.
    installed.helm("install", RELEASE, str(CHART), "-n", NAMESPACE, *chart_flags())
    wait_for_crd(testbed)
    testbed.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=manifests)
    for component, count in (("operator", 2), ("gateway", 2)):
        wait_for(
            f"{count} ready {component} pods",
            lambda c=component, n=count: all_ready(installed.pods(c), n),  # type: ignore[misc]
            timeout=180,
        )
    print(f"\nchart: installed and Ready in {time.monotonic() - started:.1f} s")
    return installed
