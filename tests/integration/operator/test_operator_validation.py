"""Each kind of invalid ZetaRouter is refused by the apiserver, naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .conftest import model, router

VALID = router(
    "bad",
    "http://prometheus:9090",
    [model("sim-4b", "4b", 1), model("sim-7b", "7b", 2)],
)


def refused(custom: k8s.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(
            "zeta.dev", "v1alpha1", namespace, "zetarouters", body
        )
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
    custom.create_namespaced_custom_object("zeta.dev", "v1alpha1", namespace, "zetarouters", VALID)


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
