"""Each model's prefix-cache hit rate in the status, read from real pods through
Prometheus: repeated prompts through a sidecar to pods that cache prefixes show a hit
rate above 0; a model whose pods report no cache lookups, and pods exporting none of
the counters asked for, show none (absent, not 0), while weights stay live."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from kubernetes import client as k8s

from zeta_api import GROUP, PLURAL, VERSION
from zeta_testbed import testbed as bed
from zeta_testbed.sidecar import SidecarFactory
from zeta_testbed.testbed import Testbed

from .conftest import OperatorProcess, create, model, read_table, router, status, wait_for

SYSTEM = "You are a patient tutor. Answer step by step, and check your arithmetic. " * 6


def _ask(url: str, model_name: str, n: int) -> None:
    body = {
        "model": model_name,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Question {n % 3}: what is {n % 3} + {n % 3}?"},
        ],
        "max_tokens": 2,
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        resp.read()


def _models(custom: k8s.CustomObjectsApi, namespace: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in status(custom, namespace, "cache").get("models", [])}


def test_status_shows_the_hit_rate_of_caching_pods_and_none_without_counters(  # noqa: PLR0917
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
    sidecar: SidecarFactory,
) -> None:
    for _ in range(2):
        testbed.add_pod("7b", namespace=namespace, prefix_caching=True)
    testbed.add_pod("4b", namespace=namespace, prefix_caching=False)
    models = [model("sim-7b", "7b", 2), model("sim-4b", "4b", 1)]
    create(
        custom,
        namespace,
        router(
            "cache",
            testbed.prometheus_url,
            models,
            balancing={"warmup": "0s", "affinity": {"prefix": True}},
        ),
    )

    def table_complete() -> bool:
        table = read_table(core, namespace, "cache")
        return bool(table) and [
            len(table["models"][m]["endpoints"]) for m in ("sim-7b", "sim-4b")
        ] == [2, 1]

    wait_for("both models in the table", table_complete, timeout=30)
    gateway = sidecar(
        f"--configmap={namespace}/cache-routing", "--kubeconfig", str(testbed.kubeconfig)
    )
    sent = 0

    def hit_rate_shown() -> dict[str, dict[str, Any]] | None:
        # Traffic goes on while the status is polled: the rates cover a 10 s window.
        nonlocal sent
        for _ in range(4):
            _ask(gateway.url, "sim-7b", sent)
            _ask(gateway.url, "sim-4b", sent)
            sent += 1
        shown = _models(custom, namespace)
        return shown if shown.get("sim-7b", {}).get("prefixCacheHitRate", 0) > 0 else None

    shown = wait_for("a hit rate for the caching model", hit_rate_shown, timeout=60, every=0.5)
    rate = shown["sim-7b"]["prefixCacheHitRate"]
    print(f"sim-7b prefix-cache hit rate {rate} after {sent} repeated prompts per model")
    assert 0 < rate <= 1
    # Its pods looked nothing up (caching off): unknown, not a hit rate of 0.
    assert "prefixCacheHitRate" not in shown["sim-4b"]

    # Counters no pod exports (the names before vLLM 0.9.2): the hit rate goes away,
    # and the load, asked apart, stays fresh.
    selector = '{namespace="{{namespace}}",pod=~"{{pods}}"}[{{window}}]'
    legacy = {
        f"prefixCache{what.title()}": f"sum by (pod) (rate(vllm:gpu_prefix_cache_{what}_total"
        f"{selector}))"
        for what in ("hits", "queries")
    }
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "cache", {"spec": {"prometheus": {"queries": legacy}}}
    )

    def hit_rate_gone() -> dict[str, Any] | None:
        _ask(gateway.url, "sim-7b", 0)
        st = status(custom, namespace, "cache")
        shown = {m["name"]: m for m in st.get("models", [])}
        generation = st.get("observedGeneration", 0) >= 2
        return st if generation and "prefixCacheHitRate" not in shown["sim-7b"] else None

    st = wait_for("no hit rate without counters", hit_rate_gone, timeout=30, every=0.5)
    available = next(c for c in st["conditions"] if c["type"] == "MetricsAvailable")
    assert (available["status"], available["reason"]) == ("True", "MetricsFresh")
    assert all("prefixCacheHitRate" not in m for m in st["models"])


def test_kubectl_explain_documents_the_hit_rate(testbed: Testbed, crds: None) -> None:
    def explained() -> str | None:
        # The apiserver publishes a new CRD's OpenAPI a moment after it is Established.
        try:
            text = testbed.kubectl("explain", "zetarouter.status.models.prefixCacheHitRate")
        except bed.TestbedError:  # its name, imported here, would be collected as a test
            return None
        return " ".join(text.split())

    text = wait_for("kubectl explain", explained, timeout=30, every=0.5)
    assert "prefix-cache hit rate" in text
    assert "absent when no pod exports prefix-cache counters" in text
