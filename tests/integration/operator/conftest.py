"""Operator fixtures: the CRDs applied once, and ``zeta-operator`` run as a real
subprocess against the testbed, watching the test's own namespace only."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zeta_api import API_VERSION, GROUP, KIND, PLURAL, TABLE_KEY, VERSION
from zeta_testbed import zetarouter
from zeta_testbed.harness import terminate
from zeta_testbed.testbed import Testbed
from zeta_testbed.zetarouter import CRD, create  # noqa: F401  (create: imported from here)

ROOT = Path(__file__).resolve().parents[3]
CRDS = [CRD, ROOT / "manifests/crds/kopf-peerings.yaml"]
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except (ApiException, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout} s (last seen: {last!r})")
        time.sleep(every)


@pytest.fixture(scope="session")
def crds(testbed: Testbed) -> None:
    kubectl = testbed.env()["ZETA_KUBECTL"]
    env = {**os.environ, **testbed.env()}
    for crd in CRDS:
        subprocess.run([kubectl, "apply", "-f", str(crd)], check=True, env=env, capture_output=True)
    subprocess.run(
        [kubectl, "wait", "--for=condition=Established", "--timeout=30s", "crd", "--all"],
        check=True,
        env=env,
        capture_output=True,
    )


@pytest.fixture
def custom(testbed: Testbed, crds: None) -> Iterator[k8s.CustomObjectsApi]:
    with testbed.api_client() as api:
        yield k8s.CustomObjectsApi(api)


class OperatorProcess:
    """One ``zeta-operator`` subprocess; stopped by its own handle, never by name."""

    def __init__(
        self, testbed: Testbed, log: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        self.proc = zetarouter.start_operator(testbed, log, *args, env=env).process

    def kill(self) -> None:
        """As a crash would: no goodbye to the peers."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        terminate(self.proc, grace=15)


@pytest.fixture
def start_operator(
    testbed: Testbed, crds: None, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(
        *extra: str, scope: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> OperatorProcess:
        """An operator watching the test's namespace, or ``scope`` (e.g. all namespaces)."""
        log = tmp_path / f"operator-{len(started)}.log"
        scope = scope or ("--namespace", namespace)
        op = OperatorProcess(testbed, log, *scope, "--rate-window", "10s", *extra, env=env)
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
    release_routers(testbed, namespace)
    release_routers(testbed, None)


def release_routers(testbed: Testbed, namespace: str | None) -> None:
    """Drop any finalizer from the routers an operator left behind: every router of
    ``namespace``, or (``None``) every router being deleted in any namespace.

    The operator puts none on them any more (``handlers._without_finalizer``); a test
    that plants the finalizer of earlier versions, or a regression that brings it back,
    must not leave the routers, and the namespace with them, Terminating for the rest of
    the session on the shared testbed.
    """
    with testbed.api_client() as api:
        custom = k8s.CustomObjectsApi(api)
        if namespace is None:
            found = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            items = [i for i in found.get("items", []) if i["metadata"].get("deletionTimestamp")]
        else:
            found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
            items = found.get("items", [])
        for item in items:
            if not item["metadata"].get("finalizers"):
                continue
            try:
                custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    item["metadata"]["namespace"],
                    PLURAL,
                    item["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator()


def router(
    name: str,
    prometheus: str,
    models: list[dict[str, Any]],
    *,
    interval: str = "2s",
    stale_after: str = "60s",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "models": models,
            "prometheus": {"url": prometheus, "timeout": "1s"},
            "policy": {"interval": interval, "staleAfter": stale_after, **spec.pop("policy", {})},
            "routingTable": {"configMapName": f"{name}-routing"},
            **spec,
        },
    }


def model(name: str, size: str, tier: int, **fields: Any) -> dict[str, Any]:
    capacity = {"4b": 48, "7b": 32, "14b": 16}[size]
    return {
        "name": name,
        "tier": tier,
        "capacity": capacity,
        "selector": {"matchLabels": {"app": "vllm", "model": size, **fields.pop("labels", {})}},
        **fields,
    }


def read_table(core: k8s.CoreV1Api, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        cm = core.read_namespaced_config_map(f"{name}-routing", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    table: dict[str, Any] = json.loads((cm.data or {})[TABLE_KEY])
    return table


def status(custom: k8s.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    result: dict[str, Any] = obj.get("status") or {}
    return result


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == type_), {})


def status_when(
    custom: k8s.CustomObjectsApi,
    namespace: str,
    name: str,
    *,
    fallback: str | None = None,
    **conditions: str | tuple[str, str],
) -> dict[str, Any] | None:
    """The router's status once it shows what is expected, else ``None`` (a probe for
    :func:`wait_for`): each named condition's status (``Ready="True"``) or status and
    reason (``Ready=("True", "TablePublished")``), and the ``fallback`` rung if given."""
    st = status(custom, namespace, name)
    if fallback is not None and st.get("fallback") != fallback:
        return None
    for type_, expected in conditions.items():
        c = condition(st, type_)
        got = c.get("status") if isinstance(expected, str) else (c.get("status"), c.get("reason"))
        if got != expected:
            return None
    return st


def pod_weights(table: dict[str, Any] | None, model_name: str) -> dict[str, float]:
    if not table:
        return {}
    return {e["pod"]: e["weight"] for e in table["models"][model_name]["endpoints"]}
