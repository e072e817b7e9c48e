"""Valid documents to start from: each test breaks one thing and checks the message."""

import copy
from typing import Any

import pytest

SPEC: dict[str, Any] = {
    "models": [
        {
            "name": "qwen-4b",
            "servedModelName": "Qwen/Qwen2.5-4B-Instruct",
            "tier": 1,
            "selector": {"matchLabels": {"app": "vllm", "model": "qwen-4b"}},
        },
        {
            "name": "qwen-7b",
            "tier": 2,
            "selector": {
                "matchExpressions": [{"key": "model", "operator": "In", "values": ["qwen-7b"]}]
            },
            "capacity": 16,
        },
        {"name": "qwen-14b", "tier": 3, "selector": {"matchLabels": {"model": "qwen-14b"}}},
    ],
    "virtualModels": [
        {"name": "auto", "strategy": "complexity", "candidates": ["qwen-4b", "qwen-7b", "qwen-14b"]}
    ],
    "prometheus": {"url": "http://prometheus.monitoring:9090"},
    "routingTable": {"configMapName": "chat-routing"},
}

TABLE: dict[str, Any] = {
    "apiVersion": "zeta.dev/v1alpha1",
    "kind": "RoutingTable",
    "router": "llm/chat",
    "revision": 118,
    "generatedAt": "2026-01-01T00:00:00Z",
    "models": {
        "qwen-4b": {
            "servedModelName": "Qwen/Qwen2.5-4B-Instruct",
            "tier": 1,
            "weight": 0.3,
            "saturated": False,
            "endpoints": [
                {"address": "10.1.2.1:8000", "pod": "qwen-4b-a", "weight": 1, "capacity": 32}
            ],
        },
        "qwen-7b": {
            "servedModelName": "Qwen/Qwen2.5-7B-Instruct",
            "tier": 2,
            "weight": 0.41,
            "saturated": False,
            "endpoints": [
                {
                    "address": "10.1.2.3:8000",
                    "pod": "qwen-7b-abc",
                    "weight": 0.62,
                    "capacity": 32,
                    "load": {"running": 12, "waiting": 3, "kvCache": 0.52},
                },
                {
                    "address": "10.1.2.4:8000",
                    "pod": "qwen-7b-def",
                    "weight": 0.38,
                    "capacity": 32,
                    "load": None,
                },
            ],
        },
        "qwen-14b": {
            "servedModelName": "Qwen/Qwen2.5-14B-Instruct",
            "tier": 3,
            "weight": 0,
            "endpoints": [],
        },
    },
    "virtualModels": {
        "auto": {"strategy": "complexity", "candidates": ["qwen-4b", "qwen-7b", "qwen-14b"]}
    },
    "balancing": {"picker": "weighted-p2c", "retry": {}, "outlier": {}, "timeouts": {}},
}


@pytest.fixture
def spec_doc() -> dict[str, Any]:
    """A valid ZetaRouter spec, as the apiserver would hand it over (a fresh copy)."""
    return copy.deepcopy(SPEC)


@pytest.fixture
def table_doc() -> dict[str, Any]:
    """A valid routing table document (a fresh copy)."""
    return copy.deepcopy(TABLE)
