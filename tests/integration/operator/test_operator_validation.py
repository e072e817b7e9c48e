"""Each kind of invalid ZetaRouter is refused by the apiserver, naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .conftest import create, model, router

VALID = router(
    "bad",
    "http://prometheus:9090",
    [model("sim-4b", "4b", 1), model("sim-7b", "7b", 2)],
)


def refused(custom: k8s.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        create(custom, namespace, body)
    assert info.value.status == 422, info.value.body
    message: str = json.loads(info.value.body)["message"]
    return message


def variant(**spec_changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    for path, value in spec_changes.items():
        node = body["spec"]
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return body


def test_the_valid_router_is_accepted(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    create(custom, namespace, VALID)


def test_wrong_type_is_refused(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    message = refused(custom, namespace, variant(models__0__tier="two"))
    assert "spec.models[0].tier" in message


def test_out_of_range_number_is_refused(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    message = refused(custom, namespace, variant(policy__smoothing=1.5))
    assert "spec.policy.smoothing" in message


def test_unknown_enum_is_refused(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    message = refused(custom, namespace, variant(prometheus__engine="tgi"))
    assert "spec.prometheus.engine" in message
    assert "vllm" in message


def test_dangling_candidate_is_refused(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    virtual = [{"name": "auto", "strategy": "complexity", "candidates": ["sim-4b", "sim-70b"]}]
    message = refused(custom, namespace, variant(virtualModels=virtual))
    assert "spec.virtualModels" in message
    assert "candidate" in message


def test_duplicate_model_names_are_refused(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    body = variant()
    body["spec"]["models"].append(model("sim-4b", "4b", 3))
    message = refused(custom, namespace, body)
    assert "spec.models[2]" in message
    assert "Duplicate" in message


def test_virtual_model_named_like_a_model_is_refused(
    custom: k8s.CustomObjectsApi, namespace: str
) -> None:
    virtual = [{"name": "sim-4b", "strategy": "weighted", "candidates": ["sim-7b"]}]
    message = refused(custom, namespace, variant(virtualModels=virtual))
    assert "spec.virtualModels" in message


def test_traffic_classes_are_accepted(custom: k8s.CustomObjectsApi, namespace: str) -> None:
    traffic = {
        "classes": [
            {"name": "gold", "priority": 10, "maxQueueTime": "5s"},
            {"name": "batch", "priority": 1, "sheddable": True, "queueTimeoutStatus": "429"},
        ],
        "defaultClass": "gold",
        "tenants": [{"name": "acme", "priorityClass": "batch", "requestsPerSecond": 2}],
        "modelClasses": {"sim-4b": "batch"},
    }
    create(custom, namespace, variant(traffic=traffic))


@pytest.mark.parametrize(
    ("traffic", "field", "words"),
    [
        pytest.param({"defaultClass": "gold"}, "spec.traffic.defaultClass", "declared class",
                     id="default-class-undeclared"),
        pytest.param({"tenants": [{"name": "acme", "priorityClass": "gold"}]},
                     "spec.traffic.tenants", "declared class", id="tenant-class-undeclared"),
        pytest.param({"modelClasses": {"sim-4b": "gold"}}, "spec.traffic.modelClasses",
                     "declared class", id="model-class-undeclared"),
        pytest.param({"modelClasses": {"sim-70b": "standard"}}, "spec.traffic",
                     "model or a virtual model", id="model-class-for-no-model"),
        pytest.param({"classes": [{"name": "a", "priority": 1, "queueTimeoutStatus": "500"}],
                      "defaultClass": "a"}, "spec.traffic.classes[0].queueTimeoutStatus",
                     "429", id="queue-timeout-status"),
    ],
)  # fmt: skip
def test_traffic_mistakes_are_refused(
    custom: k8s.CustomObjectsApi, namespace: str, traffic: dict[str, Any], field: str, words: str
) -> None:
    message = refused(custom, namespace, variant(traffic=traffic))
    assert field in message
    assert words in message
