"""The degradation ladder against a real Prometheus going away, and a lying one."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from kubernetes import client as k8s

from zeta_testbed.testbed import Testbed

from .conftest import (
    OperatorProcess,
    condition,
    create,
    model,
    pod_weights,
    read_table,
    router,
    status,
    status_when,
    wait_for,
)

MODELS = [model("sim-7b", "7b", 2)]


def check_sane(table: dict[str, Any]) -> None:
    """No NaN, nothing negative, not all zero: what a sidecar would refuse."""
    model_weights = [m["weight"] for m in table["models"].values()]
    assert all(math.isfinite(w) and w >= 0 for w in model_weights)
    assert sum(model_weights) > 0
    for entry in table["models"].values():
        weights = [e["weight"] for e in entry["endpoints"]]
        assert all(math.isfinite(w) and w >= 0 for w in weights)
        assert not weights or sum(weights) > 0


def test_prometheus_down_keeps_last_good_then_base_weights_then_recovers(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    for _ in range(2):
        testbed.add_pod("7b", namespace=namespace)
    create(
        custom,
        namespace,
        router("ladder", testbed.prometheus_url, MODELS, interval="1s", stale_after="5s"),
    )

    def live() -> dict[str, Any] | None:
        return status_when(custom, namespace, "ladder", fallback="none", MetricsAvailable="True")

    wait_for("live weights", live, 20)
    before = pod_weights(read_table(core, namespace, "ladder"), "sim-7b")
    testbed.stop_prometheus()
    try:
        st = wait_for(
            "MetricsAvailable=False on the last good weights",
            lambda: status_when(custom, namespace, "ladder", fallback="last-good"),
            timeout=5,
        )
        assert condition(st, "MetricsAvailable")["status"] == "False"
        assert condition(st, "MetricsAvailable")["reason"] in {
            "PrometheusUnreachable",
            "PrometheusTimeout",
        }
        assert condition(st, "Degraded")["reason"] == "LastGoodWeights"
        assert pod_weights(read_table(core, namespace, "ladder"), "sim-7b") == before

        st = wait_for(
            "base weights after staleAfter",
            lambda: status_when(custom, namespace, "ladder", fallback="base-weights"),
            timeout=5 + 5,
        )
        assert condition(st, "Degraded")["reason"] == "BaseWeights"
        table = read_table(core, namespace, "ladder")
        assert table is not None
        check_sane(table)
        # Base weights are by capacity: equal pods, equal shares.
        assert set(pod_weights(table, "sim-7b").values()) == {0.5}
    finally:
        testbed.start_prometheus()
    wait_for("live weights again", live, 30)
    events = core.list_namespaced_event(namespace).items
    reasons = {e.reason for e in events if e.involved_object.name == "ladder"}
    assert {"FallbackLastGood", "FallbackBaseWeights", "MetricsRecovered"} <= reasons


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers every query the same way: ``mode`` picks how wrong."""

    mode: ClassVar[str] = "empty"
    pods: ClassVar[list[str]] = []

    def _answer(self) -> None:
        if FakePrometheus.mode == "empty":
            result: list[dict[str, Any]] = []
        else:
            value = {"nan": "NaN", "inf": "+Inf", "negative": "-3"}.get(FakePrometheus.mode, "1")
            result = [
                {"metric": {"pod": pod}, "value": [__import__("time").time(), value]}
                for pod in FakePrometheus.pods
            ]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_empty_or_nan_answers_never_yield_a_bad_table(  # noqa: PLR0917 - fixtures
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
    fake_prometheus: str,
) -> None:
    pods = [testbed.add_pod("7b", namespace=namespace) for _ in range(2)]
    FakePrometheus.pods = [p.name for p in pods]
    FakePrometheus.mode = "empty"
    create(custom, namespace, router("liar", fake_prometheus, MODELS, interval="1s"))
    for mode in ("empty", "nan", "inf", "negative"):
        FakePrometheus.mode = mode
        st = wait_for(
            f"{mode} answers reported as NoData",
            lambda: (
                (s := status(custom, namespace, "liar"))
                and condition(s, "MetricsAvailable").get("reason") == "NoData"
                and s
            ),
            timeout=15,
        )
        assert st["fallback"] in {"last-good", "base-weights"}
        table = read_table(core, namespace, "liar")
        assert table is not None
        check_sane(table)
        assert len(pod_weights(table, "sim-7b")) == 2
    FakePrometheus.mode = "ok"
    wait_for(
        "live weights from sane answers",
        lambda: status(custom, namespace, "liar").get("fallback") == "none",
        timeout=10,
    )
    table = read_table(core, namespace, "liar")
    assert table is not None
    check_sane(table)
