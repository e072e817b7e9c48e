"""The routing table follows the pods: published, complete, quick on pod churn, owned."""

from __future__ import annotations

import os
import subprocess

from kubernetes import client as k8s

from zeta_api import GROUP, PLURAL, VERSION
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

THREE_TIERS = [model("sim-4b", "4b", 1), model("sim-7b", "7b", 2), model("sim-14b", "14b", 3)]


def test_table_holds_every_ready_pod_within_two_intervals_and_status_is_ready(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    pods = [testbed.add_pod(size, namespace=namespace) for size in ("4b", "7b", "7b", "14b")]
    testbed.add_pod("4b", namespace=namespace, ready=False)  # not Ready: not in the table
    body = router("chat", testbed.prometheus_url, THREE_TIERS, interval="3s")
    body["spec"]["virtualModels"] = [  # type: ignore[index]
        {"name": "auto", "strategy": "complexity", "candidates": ["sim-4b", "sim-7b", "sim-14b"]}
    ]
    create(custom, namespace, body)

    def complete() -> dict[str, object] | None:
        table = read_table(core, namespace, "chat")
        if not table:
            return None
        seen = {e["address"] for m in table["models"].values() for e in m["endpoints"]}
        return table if seen == {p.address for p in pods} else None

    # Two intervals, plus the operator's own start-up (login, watches, index fill).
    table = wait_for("a table with every Ready pod", complete, timeout=6 + 10)
    assert table["router"] == f"{namespace}/chat"
    assert table["virtualModels"]["auto"]["candidates"] == ["sim-4b", "sim-7b", "sim-14b"]
    # The first table may come before Prometheus has scraped pods this young (base
    # weights, rung 2); a later interval brings live weights, and fallback "none".
    st = wait_for(
        "Ready=True on live weights",
        lambda: status_when(custom, namespace, "chat", fallback="none", Ready="True"),
        timeout=4 * 3,
    )
    assert st["summary"] == {"models": 3, "pods": 4}
    assert st["observedGeneration"] == 1
    assert {m["name"]: m["readyPods"] for m in st["models"]} == {
        "sim-4b": 1,
        "sim-7b": 2,
        "sim-14b": 1,
    }
    assert condition(st, "Ready")["reason"] == "TablePublished"
    # The traffic classes in force (issue 9), here the defaults, and the table carries them.
    assert [c["name"] for c in st["traffic"]["classes"]] == ["critical", "standard", "sheddable"]
    assert st["traffic"]["defaultClass"] == "standard"
    assert [c["name"] for c in table["traffic"]["classes"]] == ["critical", "standard", "sheddable"]

    env = {**os.environ, **testbed.env()}
    out = subprocess.run(
        [env["ZETA_KUBECTL"], "-n", namespace, "get", "zr"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "MODELS", "PODS", "REVISION", "FALLBACK", "AGE"]
    name, ready, models, pods_col, revision, fallback, _age = out[1].split()
    assert (name, ready, models, pods_col, fallback) == ("chat", "True", "3", "4", "none")
    assert int(revision) >= 1


def test_pods_join_and_leave_the_table_within_two_seconds_whatever_the_interval(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    first = testbed.add_pod("7b", namespace=namespace)
    create(custom, namespace, router("slow", testbed.prometheus_url, THREE_TIERS, interval="60s"))
    wait_for(
        "the first table", lambda: pod_weights(read_table(core, namespace, "slow"), "sim-7b"), 20
    )

    second = testbed.add_pod("7b", namespace=namespace)  # returns once the pod is Ready
    wait_for(
        "the new pod in the table",
        lambda: second.name in pod_weights(read_table(core, namespace, "slow"), "sim-7b"),
        timeout=2.0,
    )
    testbed.remove_pod(first.name, namespace)
    wait_for(
        "the deleted pod gone from the table",
        lambda: first.name not in pod_weights(read_table(core, namespace, "slow"), "sim-7b"),
        timeout=2.0,
    )
    # Readiness counts too: an unready pod leaves at once.
    testbed.set_pod_ready(second, False)
    wait_for(
        "the unready pod gone from the table",
        lambda: (
            condition(status(custom, namespace, "slow"), "Ready").get("reason") == "NoPodsSelected"
        ),
        timeout=2.0,
    )


def test_drained_pod_gets_weight_zero_within_one_interval(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    a, b = (testbed.add_pod("7b", namespace=namespace) for _ in range(2))
    # An interval long enough that "within one interval" holds on a loaded CI machine;
    # the drain itself comes through the pod's watch event, not the interval's timer.
    interval = 10.0
    body = router("drain", testbed.prometheus_url, THREE_TIERS, interval=f"{interval:g}s")
    create(custom, namespace, body)
    wait_for(
        "both pods weighted",
        lambda: len(pod_weights(read_table(core, namespace, "drain"), "sim-7b")) == 2,
        20,
    )
    core.patch_namespaced_pod(
        a.name, namespace, {"metadata": {"annotations": {"zeta.dev/drain": "true"}}}
    )
    table = wait_for(
        "the drained pod at weight 0",
        lambda: (
            (t := read_table(core, namespace, "drain"))
            and pod_weights(t, "sim-7b").get(a.name) == 0
            and t
        ),
        timeout=interval,
    )
    endpoints = {e["pod"]: e for e in table["models"]["sim-7b"]["endpoints"]}
    assert endpoints[a.name]["draining"] is True
    assert endpoints[b.name]["weight"] == 1.0


def test_base_weight_twice_its_sibling_doubles_its_share(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    testbed.add_pod("7b", namespace=namespace, labels={"track": "stable"})
    testbed.add_pod("7b", namespace=namespace, labels={"track": "canary"})
    models = [
        model("stable", "7b", 2, labels={"track": "stable"}, baseWeight=2),
        model("canary", "7b", 2, labels={"track": "canary"}, baseWeight=1),
    ]
    create(custom, namespace, router("split", testbed.prometheus_url, models))

    def shares() -> tuple[float, float] | None:
        table = read_table(core, namespace, "split")
        if not table or not all(table["models"][m]["endpoints"] for m in ("stable", "canary")):
            return None
        return table["models"]["stable"]["weight"], table["models"]["canary"]["weight"]

    stable, canary = wait_for("both models in the table", shares, 20)
    assert abs(stable - 2 * canary) < 0.01, (stable, canary)


def test_deleting_the_router_deletes_its_table(
    testbed: Testbed,
    core: k8s.CoreV1Api,
    custom: k8s.CustomObjectsApi,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    testbed.add_pod("4b", namespace=namespace)
    create(custom, namespace, router("gone", testbed.prometheus_url, THREE_TIERS))
    wait_for("the table", lambda: read_table(core, namespace, "gone"), 20)
    cm = core.read_namespaced_config_map("gone-routing", namespace)
    owner = cm.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("ZetaRouter", "gone", True)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "gone")
    wait_for("the table garbage-collected", lambda: read_table(core, namespace, "gone") is None, 60)
