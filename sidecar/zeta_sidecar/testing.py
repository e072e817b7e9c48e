"""Tools for tests and benchmarks: routing tables in a line.

Shipped with the package, as fakes are in httpx, so that tests, the benchmark and
users' own tests build tables the same way.
"""

import json
from collections.abc import Mapping, Sequence

__all__ = ["endpoint", "table_json"]


def endpoint(
    address: str,
    *,
    pod: str | None = None,
    weight: float = 1.0,
    capacity: int = 32,
    load: Mapping[str, float] | None = None,
    draining: bool = False,
) -> dict[str, object]:
    """One endpoint of a table, as JSON data."""
    ep: dict[str, object] = {
        "address": address,
        "pod": pod or f"pod-{address.replace(':', '-').replace('.', '-')}",
        "weight": weight,
        "capacity": capacity,
        "draining": draining,
    }
    if load is not None:
        ep["load"] = dict(load)
    return ep


def table_json(
    models: Mapping[str, Sequence[dict[str, object]]],
    *,
    served: Mapping[str, str] | None = None,
    tiers: Mapping[str, int] | None = None,
    model_weights: Mapping[str, float] | None = None,
    saturated: Sequence[str] = (),
    virtual: Mapping[str, dict[str, object]] | None = None,
    balancing: Mapping[str, object] | None = None,
    traffic: Mapping[str, object] | None = None,
    revision: int = 1,
) -> str:
    """A routing table document; models are name -> endpoints (see :func:`endpoint`)."""
    doc: dict[str, object] = {
        "apiVersion": "zeta.dev/v1alpha1",
        "kind": "RoutingTable",
        "router": "test/router",
        "revision": revision,
        "generatedAt": "2026-01-01T00:00:00Z",
        "models": {
            name: {
                "servedModelName": (served or {}).get(name, name),
                "tier": (tiers or {}).get(name, i + 1),
                "weight": (model_weights or {}).get(name, 1.0 if eps else 0.0),
                "saturated": name in saturated,
                "endpoints": list(eps),
            }
            for i, (name, eps) in enumerate(models.items())
        },
        "virtualModels": dict(virtual or {}),
        "balancing": dict(balancing or {}),
        "traffic": dict(traffic or {}),
    }
    return json.dumps(doc)
