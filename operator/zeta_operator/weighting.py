"""From per-pod load to weights: pure functions, policy and previous state passed in.

The formula, per pod of a model (``capacity`` from the model's spec)::

    pressure = (running + waiting) / capacity      utilisation, 1 at a full batch
             + kvCache                             0..1
             + max(0, ttftP95 / best - 1)          latency against the model's fastest pod, <= 4
             + errorRate                           failed requests/s, <= 10
    target   = 1 / (1 + pressure)                  in (0, 1]; never 0, so no pod is starved

Every term grows with load, so a pod with more load in any signal never gets a
larger target (ties give equal targets). A pod whose running or waiting count is
unknown gets the *mean* target of its model's known pods (1 if none is known): a
neutral share, never 0 and never more than the best-measured pod.

Targets are normalised per model into shares, then moved towards gradually:

1. EWMA: ``w = smoothing * previous + (1 - smoothing) * target``.
2. Step limit: the whole change vector is scaled down so that no share moves by more
   than ``maxStep``. Scaling (rather than clamping each share) keeps the sum at 1 and
   the order of the pods, so monotonicity survives the limit.
3. Floor: published ``weight = f + (1 - n f) * w`` with ``f = min(minWeight, 1/n)``
   over the ``n`` serving pods: every pod keeps ``f`` so it keeps being measured, the
   rest is shared by ``w``. Affine, so sums, order and step bounds carry over.

The state between updates is ``w`` before the floor, so the floor never compounds.

Models: a model's headroom is ``sum(capacity * target)`` over its serving pods
(``sum(capacity)`` when static), its headroom share is smoothed the same way, and its
weight is ``baseWeight * share``, normalised over models. The admin's ``baseWeight``
is applied after smoothing, so a spec change shows in the next table at once.

A pod is saturated when waiting > ``maxWaiting`` or kvCache > ``maxKVCache``; a model
is saturated when every serving pod is (known and) saturated: the sidecar spills over.

Drained pods get weight 0 and take no part in the shares.
"""

import math
import operator
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from zeta_api import PolicySpec, SaturationSpec, slot_init
from zeta_operator.snapshots import PodLoad

__all__ = [
    "ModelInput",
    "PodInput",
    "WeightState",
    "Weights",
    "base_weights",
    "pressure",
    "reshape",
    "targets",
    "update",
]

MAX_LATENCY_TERM = 4.0
MAX_ERROR_TERM = 10.0


@slot_init  # one per pod and interval: the faster __init__ (see zeta_api.slots)
@dataclass(frozen=True, slots=True, kw_only=True)
class PodInput:
    """One ready pod of a model, as the weighting sees it."""

    name: str
    capacity: int
    load: PodLoad = field(default_factory=PodLoad)
    draining: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInput:
    """One model: its admin-declared share and its ready pods."""

    name: str
    base_weight: float = 1.0
    static: bool = False
    pods: tuple[PodInput, ...] = ()

    @property
    def serving(self) -> tuple[PodInput, ...]:
        return tuple([p for p in self.pods if not p.draining])


@dataclass(frozen=True, slots=True)
class WeightState:
    """What one update leaves for the next: shares before the floor."""

    pod_shares: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per model, per serving pod; each model's shares sum to 1."""
    model_shares: Mapping[str, float] = field(default_factory=dict)
    """Headroom share per model with serving pods; sums to 1."""


@dataclass(frozen=True, slots=True)
class Weights:
    """The published weights of one update, and the state for the next."""

    pods: Mapping[str, Mapping[str, float]]
    """Per model, per pod (drained pods at 0); each model's serving pods sum to 1."""
    models: Mapping[str, float]
    """Per model; sums to 1 over models with serving pods, 0 for the others."""
    saturated: Mapping[str, bool]
    state: WeightState


Models = tuple[ModelInput, ...]
"""A router's models, in the spec's order."""


# --- per pod ------------------------------------------------------------------------


def pressure(load: PodLoad, capacity: int, ttft_reference: float | None) -> float:
    """How loaded a known pod is, 0 when idle (see the module docstring)."""
    # Bounds as conditional expressions, each exactly what min() or max() would return:
    # this runs once per pod and interval, and builtin calls were a third of it.
    running = load.running or 0.0
    waiting = load.waiting or 0.0
    value = (running + waiting) / (1 if capacity < 1 else capacity)
    value += load.kv_cache or 0.0
    if load.ttft_p95 is not None and ttft_reference:
        slower = load.ttft_p95 / ttft_reference - 1.0
        slower = 0.0 if slower < 0.0 else slower
        value += MAX_LATENCY_TERM if slower > MAX_LATENCY_TERM else slower
    errors = load.error_rate or 0.0
    value += MAX_ERROR_TERM if errors > MAX_ERROR_TERM else errors
    return value


def targets(model: ModelInput, *, static: bool = False) -> dict[str, float]:
    """Each serving pod's target in (0, 1] (1 for every pod when static)."""
    return _targets(model.serving, static=static or model.static)


def _targets(serving: tuple[PodInput, ...], *, static: bool) -> dict[str, float]:
    if static:
        return {p.name: 1.0 for p in serving}
    known = [p for p in serving if p.load.known]
    ttfts = [p.load.ttft_p95 for p in known if p.load.ttft_p95 is not None]
    # Against the fastest pod, not the median: with two pods the median is their mean,
    # and a pod 4x slower than its twin would look only 1.6x slow.
    reference = min(ttfts) if ttfts else None
    out = {p.name: 1.0 / (1.0 + pressure(p.load, p.capacity, reference)) for p in known}
    if len(out) == len(serving):  # every pod known (the usual case): no neutral share
        return out
    neutral = statistics.fmean(out.values()) if out else 1.0
    return {p.name: out.get(p.name, neutral) for p in serving}


def _full(load: PodLoad, limits: SaturationSpec) -> bool:
    return (load.waiting is not None and load.waiting > limits.max_waiting) or (
        load.kv_cache is not None and load.kv_cache > limits.max_kv_cache
    )


def _saturated(model: ModelInput, policy: PolicySpec) -> bool:
    serving = model.serving
    return bool(serving) and all(_full(p.load, policy.saturation) for p in serving)


# --- distributions ------------------------------------------------------------------


def _normalised(values: Mapping[str, float]) -> dict[str, float]:
    total = math.fsum(values.values())
    if not values:
        return {}
    if total <= 0 or not math.isfinite(total):
        return {k: 1.0 / len(values) for k in values}
    return {k: v / total for k, v in values.items()}


def _blend(
    previous: Mapping[str, float] | None,
    target: Mapping[str, float],
    *,
    smoothing: float,
    max_step: float,
) -> dict[str, float]:
    """EWMA then a step limit over distributions on ``target``'s keys (see module doc).

    Keys new to ``previous`` start at their target: a new pod joins at its fair share
    rather than at 0 (which would starve it) or at everything."""
    if not previous:
        return dict(target)
    # Columns zipped in the keys' order (start is built in target's), not looked up by
    # key: the same arithmetic, once per pod and interval.
    start = _normalised({k: previous.get(k, t) for k, t in target.items()})
    keep = 1.0 - smoothing
    moved = [smoothing * s + keep * t for s, t in zip(start.values(), target.values(), strict=True)]
    biggest = max(map(abs, map(operator.sub, moved, start.values())), default=0.0)
    scale = 1.0 if biggest <= max_step else max_step / biggest
    shares = {}
    for (k, s), m in zip(start.items(), moved, strict=True):
        share = s + scale * (m - s)
        shares[k] = 0.0 if share < 0.0 else share  # max(share, 0.0), without the call
    return shares


def _floored(shares: Mapping[str, float], min_weight: float) -> dict[str, float]:
    n = len(shares)
    if not n:
        return {}
    floor = min(min_weight, 1.0 / n)
    return {k: floor + (1.0 - n * floor) * v for k, v in shares.items()}


# --- whole router -------------------------------------------------------------------


def _assemble(
    models: Models,
    pod_shares: Mapping[str, Mapping[str, float]],
    model_shares: Mapping[str, float],
    policy: PolicySpec,
) -> Weights:
    pods: dict[str, dict[str, float]] = {}
    model_weights: dict[str, float] = {}
    for model in models:
        floored = _floored(pod_shares.get(model.name, {}), policy.min_weight)
        pods[model.name] = {p.name: floored.get(p.name, 0.0) for p in model.pods}
        model_weights[model.name] = model.base_weight * model_shares.get(model.name, 0.0)
    total = math.fsum(model_weights.values())
    if total > 0:
        model_weights = {k: v / total for k, v in model_weights.items()}
    return Weights(
        pods=pods,
        models=model_weights,
        saturated={m.name: _saturated(m, policy) for m in models},
        state=WeightState(pod_shares=pod_shares, model_shares=model_shares),
    )


def _headroom(
    serving: tuple[PodInput, ...], pod_targets: Mapping[str, float], static: bool
) -> float:
    if static:
        return float(sum(p.capacity for p in serving))
    return math.fsum(p.capacity * pod_targets[p.name] for p in serving)


def _step(
    previous: WeightState | None,
    models: Models,
    policy: PolicySpec,
    *,
    smoothing: float,
    max_step: float,
    pins: bool,
) -> Weights:
    """Targets, then shares moved towards them from ``previous`` (see module doc);
    with ``pins``, a static model's shares are its targets whatever came before."""
    pod_shares: dict[str, dict[str, float]] = {}
    headroom: dict[str, float] = {}
    for model in models:
        serving = model.serving
        if not serving:
            continue
        static = policy.static or model.static
        pod_targets = _targets(serving, static=static)
        fresh = _normalised({p.name: p.capacity * pod_targets[p.name] for p in serving})
        pinned = pins and static
        before = None if pinned or previous is None else previous.pod_shares.get(model.name)
        pod_shares[model.name] = _blend(before, fresh, smoothing=smoothing, max_step=max_step)
        headroom[model.name] = _headroom(serving, pod_targets, static)
    model_shares = _blend(
        None if previous is None else previous.model_shares,
        _normalised(headroom),
        smoothing=smoothing,
        max_step=max_step,
    )
    return _assemble(models, pod_shares, model_shares, policy)


def update(previous: WeightState | None, models: Models, policy: PolicySpec) -> Weights:
    """One interval's update from fresh loads: targets, EWMA, step limit, floor."""
    smoothing, max_step = policy.smoothing, policy.max_step
    return _step(previous, models, policy, smoothing=smoothing, max_step=max_step, pins=True)


def reshape(previous: WeightState | None, models: Models, policy: PolicySpec) -> Weights:
    """Pods came, went or changed readiness or drain, with no new load: keep every
    surviving share, let newcomers in at their target, renormalise. No smoothing step,
    so pod churn cannot speed weights past the step limit."""
    if previous is None:
        return update(None, models, policy)
    return _step(previous, models, policy, smoothing=1.0, max_step=1.0, pins=False)


def base_weights(models: Models, policy: PolicySpec) -> Weights:
    """The ladder's second rung: shares by capacity over ready pods, no load at all."""
    pod_shares = {
        m.name: _normalised({p.name: float(p.capacity) for p in m.serving})
        for m in models
        if m.serving
    }
    model_shares = _normalised(
        {m.name: float(sum(p.capacity for p in m.serving)) for m in models if m.serving}
    )
    return _assemble(models, pod_shares, model_shares, policy)
