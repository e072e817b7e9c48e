"""Nothing stuck once the operator is gone (``helm uninstall``): the routers carry no
finalizer, so they, and their namespace, are deleted whether the operator runs or not;
while it runs, a deleted router's table still goes (its owner reference)."""

from __future__ import annotations

import uuid

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zeta_api import GROUP, PLURAL, VERSION
from zeta_testbed.testbed import Testbed

from .conftest import OperatorProcess, create, model, read_table, router, wait_for

TIERS = [model("sim-4b", "4b", 1)]
FINALIZER = "zeta.dev/operator"
"""What operators before this change put on every router."""


def _gone(read: object) -> bool:
    try:
        read()  # type: ignore[operator]
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_routers_and_their_namespace_go_after_the_operator_stopped(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    start_operator: object,
) -> None:
    # A namespace of its own, deleted by the test: what a user does after uninstalling.
    ns = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        op: OperatorProcess = start_operator(scope=("--namespace", ns))  # type: ignore[operator]
        create(custom, ns, router("chat", testbed.prometheus_url, TIERS))
        wait_for("the table", lambda: read_table(core, ns, "chat"), 20)
        op.stop()  # SIGTERM, as the Deployment's deletion does

        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
        core.delete_namespace(ns)
        read = lambda: custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")  # noqa: E731
        wait_for("the router deleted", lambda: _gone(read), 10)
        # The namespace controller's own pace: it rechecks its content every few seconds.
        wait_for("the namespace deleted", lambda: _gone(lambda: core.read_namespace(ns)), 60)
    finally:
        # On failure too (start_operator's teardown then drops a stuck finalizer).
        try:
            core.delete_namespace(ns)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or being deleted
                raise


def test_a_router_deleted_while_the_operator_runs_goes_with_its_table_and_loop(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    testbed.add_pod("4b", namespace=namespace)
    create(custom, namespace, router("chat", testbed.prometheus_url, TIERS))
    first = wait_for("the table", lambda: read_table(core, namespace, "chat"), 20)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
    read = lambda: custom.get_namespaced_custom_object(  # noqa: E731
        GROUP, VERSION, namespace, PLURAL, "chat"
    )
    wait_for("the router deleted at once", lambda: _gone(read), 5)
    wait_for("the table garbage-collected", lambda: read_table(core, namespace, "chat") is None, 60)
    # The old loop ended: a router of the same name gets a table owned by the new one,
    # not by the deleted one's uid.
    create(custom, namespace, router("chat", testbed.prometheus_url, TIERS))
    uid = read()["metadata"]["uid"]

    def owned_by_new() -> bool:
        cm = core.read_namespaced_config_map("chat-routing", namespace)
        return [r.uid for r in cm.metadata.owner_references or ()] == [uid]

    wait_for("a table owned by the new router", owned_by_new, 20)
    assert first["revision"] >= 1


def test_the_operator_lets_go_of_the_finalizer_earlier_versions_left(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    start_operator: object,
) -> None:
    body = router("old", testbed.prometheus_url, TIERS)
    body["metadata"]["finalizers"] = [FINALIZER]
    create(custom, namespace, body)
    start_operator()  # type: ignore[operator]

    def released() -> bool:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "old")
        return FINALIZER not in (obj["metadata"].get("finalizers") or ())

    wait_for("the old finalizer removed", released, 20)
