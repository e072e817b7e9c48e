"""The operator manifests: accepted by the apiserver, and their RBAC is enough.

The RBAC test runs ``zeta-operator`` as the Deployment does (its args, with only the
peering object and liveness address made the test's own), authenticated as the
manifests' ServiceAccount with a token from the TokenRequest API: any verb the
ClusterRole lacks shows as a missing table or status, or a "Forbidden" in the log.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from zeta_testbed.harness import free_port
from zeta_testbed.testbed import Testbed

from .conftest import (
    ROOT,
    OperatorProcess,
    create,
    model,
    pod_weights,
    read_table,
    router,
    status_when,
    wait_for,
)

MANIFESTS = ROOT / "manifests/operator"
SERVICE_ACCOUNT = "zeta-operator"


def manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return doc


def test_the_operator_manifests_pass_a_server_side_dry_run(
    testbed: Testbed, crds: None, namespace: str
) -> None:
    out = testbed.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(MANIFESTS))
    applied = {line.split()[0] for line in out.splitlines() if "(server dry run)" in line}
    assert applied == {
        "clusterkopfpeering.kopf.dev/zeta-operator",
        "clusterrole.rbac.authorization.k8s.io/zeta-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/zeta-operator",
        "deployment.apps/zeta-operator",
        "serviceaccount/zeta-operator",
    }, out


@pytest.fixture
def service_account_kubeconfig(testbed: Testbed, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The manifests' ServiceAccount in the test's namespace, bound to the manifests'
    ClusterRole (by a binding named for the test), as a kubeconfig with its token."""
    testbed.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "serviceaccount.yaml"))
    testbed.kubectl("apply", "-f", str(MANIFESTS / "clusterrole.yaml"))
    binding = manifest("clusterrolebinding.yaml")
    binding["metadata"]["name"] = f"zeta-operator-{namespace}"
    (subject,) = binding["subjects"]
    assert subject["name"] == SERVICE_ACCOUNT
    subject["namespace"] = namespace
    testbed.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(binding))
    try:
        yield testbed.service_account_kubeconfig(
            namespace, SERVICE_ACCOUNT, tmp_path / "service-account.kubeconfig"
        )
    finally:
        testbed.kubectl("delete", "clusterrolebinding", binding["metadata"]["name"])


@pytest.fixture
def cluster_peering(testbed: Testbed, crds: None, namespace: str) -> Iterator[str]:
    """A ClusterKopfPeering of the test's own, so no other operator shares it."""
    name = f"zeta-{namespace}"
    peering = {**manifest("clusterkopfpeering.yaml"), "metadata": {"name": name}}
    testbed.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(peering))
    try:
        yield name
    finally:
        testbed.kubectl("delete", "clusterkopfpeering", name)


def deployment_args(*, peering: str, liveness: str) -> list[str]:
    """The operator container's args from deployment.yaml, with the peering, the
    liveness endpoint and the metrics address (loopback, a free port) replaced."""
    (container,) = manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["zeta-operator"]
    metrics = f"127.0.0.1:{free_port()}"
    replaced = {"--peering": peering, "--liveness": liveness, "--metrics": metrics}
    args: list[str] = []
    for arg in container["args"]:
        flag, _, _value = arg.partition("=")
        args.append(f"{flag}={replaced[flag]}" if flag in replaced else arg)
    assert args != container["args"]
    return args


def test_the_operator_needs_no_more_than_its_cluster_role(  # noqa: PLR0917 - fixtures
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    service_account_kubeconfig: Path,
    cluster_peering: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    args = deployment_args(peering=cluster_peering, liveness=liveness)
    assert "--all-namespaces" in args
    operator = start_operator(
        scope=tuple(args), env={"KUBECONFIG": str(service_account_kubeconfig)}
    )
    pod = testbed.add_pod("7b", namespace=namespace)
    body = router("rbac", testbed.prometheus_url, [model("sim-7b", "7b", 2)])
    create(custom, namespace, body)
    wait_for(
        "the table, written with the service account",
        lambda: list(pod_weights(read_table(core, namespace, "rbac"), "sim-7b")) == [pod.name],
        timeout=30,
    )
    st = wait_for(
        "the status, written with the service account",
        lambda: status_when(custom, namespace, "rbac", Ready="True"),
        timeout=20,
    )
    assert st["observedGeneration"] == 1
    with urllib.request.urlopen(liveness, timeout=10) as response:
        assert response.status == 200
    assert operator.proc.poll() is None, "the operator exited"
    log = operator.log.read_text()
    forbidden = [line for line in log.splitlines() if "Forbidden" in line or " 403" in line]
    assert not forbidden, "\n".join(forbidden)
