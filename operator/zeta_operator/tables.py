"""Building the routing table from a router's spec, its pods and their weights. Pure.

Weights are rounded to ``precision`` decimals (a serving pod never rounds down to 0)
and loads to what a reader can use, so jitter below that is no material change: the
content hash (see :func:`zeta_api.content_hash`) then stays put and the ConfigMap is
not rewritten.
"""

from collections.abc import Mapping

from zeta_api import (
    Endpoint,
    EndpointLoad,
    ModelEntry,
    ModelSpec,
    RoutingTable,
    VirtualModelEntry,
    ZetaRouterSpec,
)
from zeta_operator.snapshots import PodLoad, PodRecord
from zeta_operator.weighting import Weights

__all__ = ["address", "build_table"]


def address(ip: str, port: int) -> str:
    """``ip:port``, with IPv6 in brackets as the table requires.

    Of the addresses a pod may have, only IPv6 ones hold a colon; whether ``ip`` is an
    address at all is the table's check (:func:`zeta_api.encode_routing_table`), which
    refuses the table rather than publish it."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _round(value: float, precision: int, *, positive: bool) -> float:
    rounded = round(value, precision)
    return max(rounded, 10.0**-precision) if positive and value > 0 else rounded


def _load(load: PodLoad | None) -> EndpointLoad | None:
    if load is None:
        return None
    running, waiting, kv_cache = load.running, load.waiting, load.kv_cache
    if running is None and waiting is None and kv_cache is None:
        return None
    return EndpointLoad(
        running=None if running is None else round(running, 1),
        waiting=None if waiting is None else round(waiting, 1),
        kv_cache=None if kv_cache is None else round(kv_cache, 2),
    )


def _endpoints(
    pods: list[PodRecord],
    model: ModelSpec,
    pod_weights: Mapping[str, float],
    loads: Mapping[str, PodLoad],
    precision: int,
) -> tuple[Endpoint, ...]:
    # A model's constants once, and _round inlined: this runs once per pod and interval.
    port, capacity, smallest = model.port, model.capacity, 10.0**-precision
    weight_of, load_of = pod_weights.get, loads.get
    endpoints = []
    for pod in pods:
        name, draining = pod.name, pod.draining
        if draining:
            weight = 0.0
        else:
            raw = weight_of(name, 0.0)
            weight = round(raw, precision)
            if raw > 0 and weight < smallest:  # as _round: a serving pod never rounds to 0
                weight = smallest
        endpoints.append(
            Endpoint(
                address=address(pod.ip or "", port),
                pod=name,
                weight=weight,
                capacity=capacity,
                load=_load(load_of(name)),
                draining=draining,
            )
        )
    return tuple(endpoints)


def build_table(
    *,
    router: str,
    spec: ZetaRouterSpec,
    selection: Mapping[str, list[PodRecord]],
    weights: Weights,
    loads: Mapping[str, PodLoad],
    revision: int,
    generated_at: str,
    precision: int,
) -> RoutingTable:
    """The table for ``router`` (``namespace/name``)."""
    models: dict[str, ModelEntry] = {}
    for model in spec.models:
        pods = selection.get(model.name, [])
        pod_weights = weights.pods.get(model.name, {})
        endpoints = _endpoints(pods, model, pod_weights, loads, precision)
        models[model.name] = ModelEntry(
            served_model_name=model.served_model_name,
            tier=model.tier,
            weight=_round(weights.models.get(model.name, 0.0), precision, positive=True),
            saturated=weights.saturated.get(model.name, False),
            static=model.static or spec.policy.static,
            endpoints=endpoints,
            affinity=model.affinity,
        )
    return RoutingTable(
        router=router,
        revision=revision,
        generated_at=generated_at,
        models=models,
        virtual_models={
            v.name: VirtualModelEntry(
                strategy=v.strategy,
                candidates=v.candidates,
                spillover=v.spillover,
                thresholds=v.thresholds,
                classifier=v.classifier,
            )
            for v in spec.virtual_models
        },
        balancing=spec.balancing,
        traffic=spec.traffic,
    )
