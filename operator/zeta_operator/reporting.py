"""What the operator says about a router: status, conditions, Events. Pure.

Conditions follow the Kubernetes API conventions: a fixed set of types (``Ready``,
``MetricsAvailable``, ``Degraded``), a CamelCase reason per cause, a message for
humans, ``observedGeneration``, and a ``lastTransitionTime`` that only moves when the
status does (:func:`zeta_api.with_condition`).
"""

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from zeta_api import (
    ClassInForce,
    Condition,
    ConditionStatus,
    Fallback,
    ModelStatus,
    StatusSummary,
    TableStatus,
    Traffic,
    TrafficStatus,
    ZetaRouterSpec,
    ZetaRouterStatus,
    with_condition,
)
from zeta_operator.snapshots import PodLoad, PodRecord
from zeta_operator.weighting import Weights

__all__ = [
    "Shift",
    "Verdict",
    "build_status",
    "hit_rate",
    "model_statuses",
    "shifts",
    "traffic_status",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One condition's content, before it is stamped with times and generations."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def hit_rate(loads: Iterable[PodLoad]) -> float | None:
    """Prefix-cache tokens hit per token looked up, over the pods that report both
    counters: summed first, so a busy pod weighs as much as its traffic (a mean of
    per-pod rates would count an idle pod's lone miss like a busy pod's thousands).
    ``None`` when no pod reports them or none looked anything up: unknown, not 0."""
    reporting = [
        (x.prefix_cache_hits, x.prefix_cache_queries)
        for x in loads
        if x.prefix_cache_hits is not None and x.prefix_cache_queries is not None
    ]
    queried = math.fsum(q for _, q in reporting)
    if not queried > 0:
        return None
    # Two rates extrapolated apart may put hits a hair above queries.
    return round(min(math.fsum(h for h, _ in reporting) / queried, 1.0), 3)


def model_statuses(
    spec: ZetaRouterSpec,
    selection: Mapping[str, list[PodRecord]],
    weights: Weights | None,
    loads: Mapping[str, PodLoad],
) -> tuple[ModelStatus, ...]:
    """Per model: ready pods in the table, weight, summed waiting, mean KV, worst TTFT,
    prefix-cache hit rate."""
    out = []
    for model in spec.models:
        pods = selection.get(model.name, [])
        known = [loads[p.name] for p in pods if p.name in loads]
        waiting = [x.waiting for x in known if x.waiting is not None]
        kv = [x.kv_cache for x in known if x.kv_cache is not None]
        ttft = [x.ttft_p95 for x in known if x.ttft_p95 is not None]
        weight = weights.models.get(model.name, 0.0) if weights else 0.0
        out.append(
            ModelStatus(
                name=model.name,
                ready_pods=len(pods),
                weight=round(min(max(weight, 0.0), 1.0), 4),
                saturated=weights.saturated.get(model.name, False) if weights else False,
                waiting=round(math.fsum(waiting), 2) if waiting else None,
                kv_cache=None if not kv else round(min(_mean(kv) or 0.0, 1.0), 3),
                # The worst pod's p95: a model is as slow as its slowest share of traffic.
                ttft_p95=round(max(ttft), 4) if ttft else None,
                prefix_cache_hit_rate=hit_rate(known),
            )
        )
    return tuple(out)


def build_status(
    previous: ZetaRouterStatus,
    *,
    generation: int,
    now: str,
    verdicts: Sequence[Verdict],
    models: tuple[ModelStatus, ...],
    table: TableStatus | None,
    fallback: Fallback,
    traffic: Traffic | None = None,
) -> ZetaRouterStatus:
    """The new status; condition transition times carried over from ``previous``."""
    conditions = previous.conditions
    for v in verdicts:
        conditions = with_condition(
            conditions,
            Condition(
                type=v.type,
                status=v.status,
                reason=v.reason,
                message=v.message[:32768],
                last_transition_time=now,
                observed_generation=generation,
            ),
        )
    return ZetaRouterStatus(
        observed_generation=generation,
        conditions=conditions,
        models=models,
        summary=StatusSummary(
            models=sum(1 for m in models if m.ready_pods), pods=sum(m.ready_pods for m in models)
        ),
        routing_table=table or previous.routing_table,
        fallback=fallback,
        traffic=traffic_status(traffic) if traffic is not None else previous.traffic,
    )


def traffic_status(traffic: Traffic) -> TrafficStatus:
    """What ``kubectl get zr -o yaml`` shows of the classes and limits in force."""
    ranked = sorted(traffic.classes, key=lambda c: -c.priority)
    return TrafficStatus(
        classes=tuple(
            ClassInForce(name=c.name, priority=c.priority, sheddable=c.sheddable) for c in ranked
        ),
        default_class=traffic.default_class,
        tenants=len(traffic.tenants),
        rate_limited_tenants=sum(
            1
            for t in traffic.tenants
            if t.requests_per_second is not None or t.tokens_per_minute is not None
        ),
        gateway_replicas=traffic.gateway_replicas,
    )


@dataclass(frozen=True, slots=True)
class Shift:
    """A weight that moved a lot in one update."""

    what: str
    before: float
    after: float


def shifts(before: Weights | None, after: Weights, threshold: float) -> list[Shift]:
    """Model and pod weights that moved by more than ``threshold`` (pods that came or
    went are not shifts: their Events are the pods' own)."""
    if before is None:
        return []
    out = []
    for model, weight in after.models.items():
        old = before.models.get(model)
        if old is not None and abs(weight - old) > threshold:
            out.append(Shift(f"model {model}", old, weight))
    for model, pods in after.pods.items():
        old_pods = before.pods.get(model, {})
        for pod, weight in pods.items():
            old = old_pods.get(pod)
            if old is not None and abs(weight - old) > threshold:
                out.append(Shift(f"pod {pod} of {model}", old, weight))
    return out
