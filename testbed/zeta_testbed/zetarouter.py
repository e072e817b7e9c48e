"""The ``ZetaRouter`` resource on a testbed, as the tests, the demo and the benchmarks
declare it: the CRD installed, the sample router pointed at the testbed's Prometheus,
and a router created through the API. Group, version and plural come from
:mod:`zeta_api`, so a renamed API cannot leave a test behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from zeta_api import GROUP, PLURAL, VERSION
from zeta_testbed.testbed import Testbed

__all__ = ["CRD", "CRD_NAME", "SAMPLE", "apply", "create", "install_crd", "sample"]

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests/crds/zetarouters.zeta.dev.yaml"
CRD_NAME = f"{PLURAL}.{GROUP}"
SAMPLE = ROOT / "manifests/samples/zetarouter-testbed.yaml"
"""The sample users start from: pods of the testbed's sizes, ``auto`` and ``balanced``."""


def install_crd(testbed: Testbed) -> None:
    """``kubectl apply`` the CRD and wait until the apiserver serves it."""
    testbed.kubectl("apply", "-f", str(CRD))
    testbed.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}")


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
