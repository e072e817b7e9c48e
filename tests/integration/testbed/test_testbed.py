"""The testbed itself: a real control plane, real Prometheus, simulated pods that behave."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zeta_testbed.testbed import PodInfo, Testbed


def _post_json(url: str, body: dict[str, Any], timeout: float = 30) -> tuple[float, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.load(response)
    return time.monotonic() - started, payload


def _chat(pod: PodInfo, max_tokens: int = 20) -> float:
    elapsed, payload = _post_json(
        f"{pod.url}/v1/chat/completions",
        {
            "model": f"sim-{pod.size}",
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": max_tokens,
        },
    )
    assert payload["usage"]["completion_tokens"] == max_tokens
    return elapsed


def test_kubectl_lists_the_model_pods_running(testbed: Testbed) -> None:
    env = testbed.env()
    out = subprocess.run(
        [env["ZETA_KUBECTL"], "get", "pods", "-n", testbed.namespace, "-o", "json"],
        env={**env, "HOME": str(testbed.state_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    items = json.loads(out.stdout)["items"]
    expected = {pod.name: pod.ip for pod in testbed.pods(testbed.namespace)}
    assert len(items) == len(expected) > 0
    assert {item["metadata"]["name"]: item["status"]["podIP"] for item in items} == expected
    for item in items:
        assert item["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in item["status"]["conditions"]}["Ready"]
        assert ready == "True"
        assert item["metadata"]["labels"]["app"] == "vllm"


def test_kubectl_reports_the_pinned_server_version(testbed: Testbed) -> None:
    env = testbed.env()
    out = subprocess.run(
        [env["ZETA_KUBECTL"], "version", "-o", "json"],
        env={**env, "HOME": str(testbed.state_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    versions = json.loads(out.stdout)
    assert versions["serverVersion"]["gitVersion"].startswith("v1.")
    assert versions["serverVersion"]["minor"] == versions["clientVersion"]["minor"]


def test_prometheus_has_one_running_series_per_pod(testbed: Testbed) -> None:
    series = testbed.query(f'vllm:num_requests_running{{namespace="{testbed.namespace}"}}')
    by_pod = {s["metric"]["pod"]: s["metric"] for s in series}
    pods = testbed.pods(testbed.namespace)
    assert set(by_pod) == {pod.name for pod in pods}
    for pod in pods:
        assert by_pod[pod.name]["model"] == pod.size
        assert by_pod[pod.name]["instance"] == pod.address


def test_a_slowdown_fault_shows_in_the_latency(testbed: Testbed) -> None:
    pod = next(p for p in testbed.pods(testbed.namespace) if p.size == "7b")
    baseline = min(_chat(pod) for _ in range(3))
    _post_json(f"{pod.url}/admin/faults", {"slowdown": 5.0})
    try:
        slowed = min(_chat(pod) for _ in range(3))
    finally:
        request = urllib.request.Request(f"{pod.url}/admin/faults", method="DELETE")
        urllib.request.urlopen(request, timeout=5).close()
    assert slowed > 3 * baseline
    assert min(_chat(pod) for _ in range(3)) < 2 * baseline


def test_pods_come_and_go_in_the_apiserver_and_in_prometheus(
    testbed: Testbed, namespace: str, core: k8s.CoreV1Api
) -> None:
    pod = testbed.add_pod("4b", namespace=namespace)
    assert core.read_namespaced_pod(pod.name, namespace).status.pod_ip == pod.ip
    _wait_for_series(testbed, namespace, expected={pod.name})
    testbed.remove_pod(pod.name, namespace)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod(pod.name, namespace)
    assert gone.value.status == 404
    _wait_for_series(testbed, namespace, expected=set())


def test_owned_objects_are_garbage_collected(namespace: str, core: k8s.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "owned", "ownerReferences": [reference]}}
    )
    core.delete_namespaced_config_map("owner", namespace)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        remaining = core.list_namespaced_config_map(namespace, field_selector="metadata.name=owned")
        if not remaining.items:
            return
        time.sleep(0.2)
    pytest.fail("kube-controller-manager did not collect the owned ConfigMap within 30 s")


def _wait_for_series(testbed: Testbed, namespace: str, *, expected: set[str]) -> None:
    deadline = time.monotonic() + 20
    seen: set[str] = set()
    while time.monotonic() < deadline:
        series = testbed.query(f'vllm:num_requests_running{{namespace="{namespace}"}}')
        seen = {s["metric"]["pod"] for s in series}
        if seen == expected:
            return
        time.sleep(0.25)
    pytest.fail(f"Prometheus shows pods {seen} in {namespace}, expected {expected}")
