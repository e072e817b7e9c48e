"""The ``ZetaRouter`` resource on a testbed, as the tests, the demo and the benchmarks
declare it: the CRD installed, the sample router pointed at the testbed's Prometheus, a
router created through the API, and ``zeta-operator`` run to serve it. Group, version
and plural come from :mod:`zeta_api`, so a renamed API cannot leave a test behind.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from zeta_api import GROUP, PLURAL, VERSION
from zeta_testbed.harness import Child, start_child, wait_until
from zeta_testbed.testbed import Testbed, TestbedError

__all__ = [
    "CRD",
    "CRD_NAME",
    "SAMPLE",
    "apply",
    "create",
    "first_table",
    "install_crd",
    "sample",
    "start_operator",
    "wait_for_crd",
]

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests/crds/zetarouters.zeta.dev.yaml"
CRD_NAME = f"{PLURAL}.{GROUP}"
SAMPLE = ROOT / "manifests/samples/zetarouter-testbed.yaml"
"""The sample users start from: pods of the testbed's sizes, ``auto`` and ``balanced``."""


def install_crd(testbed: Testbed) -> None:
    """``kubectl apply`` the CRD and wait until the apiserver serves it."""
    testbed.kubectl("apply", "-f", str(CRD))
    wait_for_crd(testbed)


def wait_for_crd(testbed: Testbed) -> None:
    """Wait until the apiserver serves the CRD (applied by us, or by a chart).

    Not `kubectl wait --for=condition=Established`: right after the CRD is created it may
    have no status yet, and kubectl then fails at once (".status.conditions accessor
    error: <nil>") instead of waiting; it failed a benchmark's testbed so. The filter
    below fails too while there is no status ("<nil> is not array or slice"): that is
    "not yet", and the deadline decides.
    """
    path = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'

    def established() -> bool:
        try:
            return testbed.kubectl("get", f"crd/{CRD_NAME}", "-o", path).strip() == "True"
        except TestbedError:
            return False

    wait_until(established, within=60, what=f"the CRD {CRD_NAME} to be served", every=0.1)


def sample(testbed: Testbed, policy: Mapping[str, str]) -> dict[str, Any]:
    """The sample router, reading the testbed's Prometheus, with ``policy`` (e.g. a
    shorter ``interval``) over the sample's own."""
    router: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    router["spec"]["prometheus"]["url"] = testbed.prometheus_url
    router["spec"]["policy"].update(policy)
    return router


def apply(testbed: Testbed, namespace: str, router: Mapping[str, Any]) -> None:
    """``kubectl apply`` the router in ``namespace``, as a user would."""
    testbed.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(dict(router)))


def create(custom: k8s.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> None:
    """Create a ZetaRouter through the API (``body`` is the whole object, as kubectl
    would send it); a refusal raises the client's ``ApiException``."""
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def start_operator(
    testbed: Testbed, log: Path, *args: str, env: Mapping[str, str] | None = None
) -> Child:
    """``zeta-operator *args`` as a child process on the testbed's kubeconfig (``env``
    added); its output is appended to ``log``, so a restarted one keeps one log."""
    return start_child(
        "zeta-operator",
        [sys.executable, "-m", "zeta_operator", *args],
        log=log,
        env={**testbed.env(), **(env or {})},
        append=True,
    )


def first_table(testbed: Testbed, namespace: str, config_map: str, *, within: float) -> None:
    """Wait until an operator has published ``config_map``; ``TimeoutError`` if not."""
    wait_until(
        lambda: testbed.routing_table(namespace, config_map) is not None,
        within=within,
        what=f"the operator's first table in {namespace}/{config_map}",
        every=0.2,
    )
