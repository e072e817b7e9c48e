"""What only the operator can judge, and what it may touch: a selector that matches
nothing, a ConfigMap that belongs to someone else, and routers in every namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client as k8s

from tests.conftest import scratch_namespace
from zeta_api import TABLE_KEY
from zeta_testbed.testbed import Testbed

from .conftest import (
    OperatorProcess,
    condition,
    create,
    model,
    pod_weights,
    read_table,
    release_routers,
    router,
    status,
    status_when,
    wait_for,
)

TWO_TIERS = [model("sim-7b", "7b", 2), model("sim-14b", "14b", 3)]


def test_a_selector_matching_nothing_is_a_condition_not_a_crash(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    create(custom, namespace, router("lonely", testbed.prometheus_url, TWO_TIERS))
    st = wait_for(
        "Ready=False for want of pods",
        lambda: status_when(
            custom,
            namespace,
            "lonely",
            Ready=("False", "NoPodsSelected"),
            Degraded=("True", "ModelsWithoutPods"),
        ),
        timeout=20,
    )
    # Nothing to route to: a table without endpoints, so sidecars answer 503 at once.
    empty = wait_for("a table", lambda: read_table(core, namespace, "lonely"), timeout=10)
    assert all(not m["endpoints"] for m in empty["models"].values())
    assert "sim-7b" in condition(st, "Degraded")["message"]
    assert operator.proc.poll() is None, "the operator exited"

    # A pod for one model: served, and the model still without pods is named.
    pod = testbed.add_pod("7b", namespace=namespace)
    st = wait_for(
        "Ready=True with one model still without pods",
        lambda: status_when(
            custom,
            namespace,
            "lonely",
            Ready=("True", "TablePublished"),
            Degraded=("True", "ModelsWithoutPods"),
        ),
        timeout=20,
    )
    message = condition(st, "Degraded")["message"]
    assert "sim-14b" in message
    assert "sim-7b" not in message
    assert list(pod_weights(read_table(core, namespace, "lonely"), "sim-7b")) == [pod.name]
    assert operator.proc.poll() is None, "the operator exited"


def test_a_config_map_owned_by_something_else_is_never_overwritten(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    owner = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "someone-else"}, "data": {}}
    )
    theirs = {
        "metadata": {
            "name": "taken-routing",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "someone-else",
                    "uid": owner.metadata.uid,
                    "controller": True,
                }
            ],
        },
        "data": {TABLE_KEY: "not ours"},
    }
    core.create_namespaced_config_map(namespace, theirs)
    testbed.add_pod("7b", namespace=namespace)
    create(custom, namespace, router("taken", testbed.prometheus_url, TWO_TIERS))
    st = wait_for(
        "Ready=False for the conflict",
        lambda: status_when(custom, namespace, "taken", Ready=("False", "ConfigMapConflict")),
        timeout=20,
    )
    assert "someone-else" in condition(st, "Ready")["message"]
    cm = core.read_namespaced_config_map("taken-routing", namespace)
    assert cm.data == {TABLE_KEY: "not ours"}
    assert [r.name for r in cm.metadata.owner_references] == ["someone-else"]
    assert "zeta.dev/content-hash" not in (cm.metadata.annotations or {})


@pytest.fixture
def other_namespace(testbed: Testbed, core: k8s.CoreV1Api) -> Iterator[str]:
    """A second namespace for the test, cleaned up like the first one."""
    with scratch_namespace(testbed, core, lambda name: release_routers(testbed, name)) as name:
        yield name


def test_an_operator_for_all_namespaces_serves_routers_in_any_of_them(  # noqa: PLR0917 - fixtures
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    other_namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator(scope=("--all-namespaces",))
    pods = {}
    for ns in (namespace, other_namespace):
        pods[ns] = testbed.add_pod("7b", namespace=ns)
        create(custom, ns, router("everywhere", testbed.prometheus_url, TWO_TIERS))
    for ns, pod in pods.items():
        wait_for(
            f"the table in {ns}",
            lambda ns=ns, pod=pod: (
                list(pod_weights(read_table(core, ns, "everywhere"), "sim-7b")) == [pod.name]
            ),
            timeout=20,
        )
        # The status is patched just after the table is written: wait for it too (on a
        # busy machine the gap was seen to exceed the moment between the two reads).
        wait_for(
            f"Ready in {ns}",
            lambda ns=ns: (
                condition(status(custom, ns, "everywhere"), "Ready").get("status") == "True"
            ),
            timeout=20,
        )


def test_a_classifier_that_does_not_answer_is_a_condition(
    testbed: Testbed,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    # Issue 14: the gateways fall back to the built-in estimator per request and count it;
    # the router's status says so too, naming the classifier and why.
    testbed.add_pod("7b", namespace=namespace)
    body = router("classified", testbed.prometheus_url, TWO_TIERS)
    body["spec"]["virtualModels"] = [  # type: ignore[index]
        {"name": "auto", "strategy": "complexity", "candidates": ["sim-7b", "sim-14b"],
         "classifier": {"url": "http://127.0.0.1:9/classify", "timeout": "200ms"}}
    ]  # fmt: skip
    create(custom, namespace, body)
    st = wait_for(
        "ClassifierAvailable=False",
        lambda: status_when(
            custom,
            namespace,
            "classified",
            ClassifierAvailable=("False", "ClassifierFailing"),
            Ready=("True", "TablePublished"),
        ),
        timeout=20,
    )
    message = condition(st, "ClassifierAvailable")["message"]
    assert "auto: http://127.0.0.1:9/classify unreachable" in message
