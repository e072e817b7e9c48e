"""The gateway manifests: accepted by the apiserver, and their Role is enough.

The RBAC test runs ``zeta-sidecar`` with the Deployment's own arguments (ports made the
test's own), authenticated as the manifests' ServiceAccount with a token from the
TokenRequest API: a verb the Role lacks would show as a sidecar that never gets its
table, misses an edit, or logs a 403.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from openai import OpenAI

from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.testbed import Testbed

from .conftest import SidecarFactory, wait_until

MANIFESTS = Path(__file__).resolve().parents[3] / "manifests/gateway"


def _deployment_args(namespace: str) -> list[str]:
    deployment: dict[str, Any] = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["zeta-sidecar"]
    # What the kubelet does with $(VAR) references; ports and drain timings are the test's.
    own = ("--port", "--admin-port", "--drain-delay", "--drain-grace")
    return [
        arg.replace("$(POD_NAMESPACE)", namespace)
        for arg in container["args"]
        if arg.partition("=")[0] not in own
    ]


def test_the_gateway_manifests_pass_a_server_side_dry_run(testbed: Testbed, namespace: str) -> None:
    out = testbed.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(MANIFESTS))
    applied = {line.split()[0] for line in out.splitlines() if "(server dry run)" in line}
    assert applied == {
        "deployment.apps/zeta-gateway",
        "role.rbac.authorization.k8s.io/zeta-gateway",
        "rolebinding.rbac.authorization.k8s.io/zeta-gateway",
        "service/zeta-gateway",
        "serviceaccount/zeta-gateway",
    }, out


def test_the_gateway_needs_no_more_than_its_role(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    namespace: str,
    sidecar: SidecarFactory,
    tmp_path: Path,
) -> None:
    for name in ("serviceaccount.yaml", "role.yaml", "rolebinding.yaml"):
        testbed.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / name))
    kubeconfig = testbed.service_account_kubeconfig(
        namespace, "zeta-gateway", tmp_path / "gateway.kubeconfig"
    )
    pod = testbed.add_pod("7b", namespace=namespace)
    args = _deployment_args(namespace)
    assert f"--configmap={namespace}/chat-routing" in args

    # Started before the table exists: it must wait for it (list + watch), not fail.
    proc = sidecar(*args, "--kubeconfig", str(kubeconfig), ready=False)
    table = table_json({"sim-7b": [endpoint(pod.address, pod=pod.name)]}, revision=1)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "chat-routing"}, "data": {"routing.json": table}}
    )
    wait_until(lambda: proc.revision() == 1, within=10, what="the table through the watch")
    reply = OpenAI(base_url=f"{proc.url}/v1", api_key="unused").chat.completions.create(
        model="sim-7b", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3

    edited = json.loads(table_json({"sim-7b": [endpoint(pod.address, pod=pod.name)]}))
    edited["revision"] = 2
    core.patch_namespaced_config_map(
        "chat-routing", namespace, {"data": {"routing.json": json.dumps(edited)}}
    )
    wait_until(lambda: proc.revision() == 2, within=10, what="the edit through the watch")
    log = proc.log.read_text()
    # The status as a number of its own: a random port such as 42403 in a log line is not
    # a refusal (that substring match once failed this test on a fresh clone).
    refused = re.compile(r"(?<![\d.:])403(?!\d)|Forbidden")
    denied = [line for line in log.splitlines() if refused.search(line)]
    assert not denied, "\n".join(denied)
