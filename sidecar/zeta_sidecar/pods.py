"""A model's pods in this replica, and the weight each gets now.

:class:`Pod` is one pod with the state this replica keeps about it; :class:`ModelPods`
is one model of one table: its pods that may get new requests, and what the picker
draws by. The effective weight of a pod now is decided here and nowhere else: the
table's weight, times :func:`warmup_factor` while the pod is new, 0 while it is ejected
or probing (:class:`~zeta_sidecar.resilience.Health`), and 0 for the pod a retry moves
away from. :meth:`ModelPods.cumulative` hands them to :mod:`~zeta_sidecar.picking` as
running sums, recomputed only when health or warm-up changed.
"""

import json
from dataclasses import dataclass, field

from zeta_api import Affinity, ModelEntry
from zeta_sidecar.affinity_keys import AffinityPlan
from zeta_sidecar.picking import cumulative
from zeta_sidecar.resilience import Health

__all__ = ["ModelPods", "Pod", "warmup_factor"]

_WARMUP_FLOOR = 0.1
"""A new pod's share at first: enough to be measured, too little to be swamped."""


def warmup_factor(age: float, warmup: float) -> float:
    """Share of its weight a pod gets ``age`` seconds after joining: 0.1 rising to 1 over
    ``warmup`` seconds (cold caches, lazy compilation)."""
    if warmup <= 0 or age >= warmup:
        return 1.0
    return _WARMUP_FLOOR + (1.0 - _WARMUP_FLOOR) * max(0.0, age) / warmup


@dataclass(slots=True, eq=False)
class Pod:
    """One pod of one model, with the state this replica keeps about it."""

    model: str
    address: str
    url: str
    """``http://address``: built once, reused by every request."""
    name: str
    capacity: int
    weight: float
    draining: bool
    reported: float | None
    """Running plus waiting requests as the table reports them; ``None`` when unknown."""
    joined: float
    inflight: int = 0
    inflight_at_report: int = 0
    """This replica's in-flight count when the report arrived: what it sent since then
    is not in the report yet."""
    health: Health = field(default_factory=Health)


@dataclass(slots=True, eq=False)
class ModelPods:
    """One model of one table, and its pods' effective weights."""

    name: str
    served_model_name: str
    served_json: bytes
    """The served name as a JSON string, spliced into request bodies."""
    tier: int
    weight: float
    saturated: bool
    """The operator's verdict: every pod of the model is saturated."""
    reported: bool
    """Some pod's load is reported: only then can the sidecar judge saturation itself."""
    pods: list[Pod]
    """Pods that may get new requests (not draining, weight above 0)."""
    warm_until: float
    """Until then some pod is warming up and effective weights change with time."""
    swrr: list[float]
    """Smooth weighted round robin state."""
    base: list[float]
    """The table's weights: the effective ones when every pod is warm and serving."""
    base_cum: list[float]
    effective: list[float] = field(default_factory=list)
    cum: list[float] = field(default_factory=list)
    epoch: int = -1
    """The health epoch ``effective`` and ``cum`` were computed at; -1 while warming."""
    affinity: AffinityPlan | None = None
    """Prefix and session affinity over ``pods``; ``None`` when off."""

    @classmethod
    def of(
        cls,
        name: str,
        entry: ModelEntry,
        pods: list[Pod],
        warmup: float,
        affinity: Affinity | None = None,
    ) -> "ModelPods":
        """Model ``name`` of a table over its ``pods``; those that may not get new requests
        (draining, weight 0) are left out. ``affinity``: the table's (the model's own
        settings, if any, take precedence)."""
        serving = [p for p in pods if not p.draining and p.weight > 0]
        base = [p.weight for p in serving]
        return cls(
            name=name,
            served_model_name=entry.served_model_name,
            served_json=json.dumps(entry.served_model_name).encode(),
            tier=entry.tier,
            weight=entry.weight,
            saturated=entry.saturated,
            reported=any(p.reported is not None for p in serving),
            pods=serving,
            warm_until=max((p.joined + warmup for p in serving), default=float("-inf")),
            swrr=[0.0] * len(serving),
            base=base,
            base_cum=cumulative(base),
            affinity=AffinityPlan.of(entry.affinity, affinity, [p.address for p in serving]),
        )

    def load(self, i: int) -> float:
        """Load of pod ``i``, as the P2C picker compares it (a bound method: no closure
        is built per request)."""
        pod = self.pods[i]
        return pod.inflight / pod.capacity

    def _refresh(self, now: float, warmup: float, epoch: int) -> None:
        warm = now >= self.warm_until
        if warm and all(p.health.serving for p in self.pods):
            self.effective, self.cum = self.base, self.base_cum
        else:
            self.effective = [
                (p.weight * warmup_factor(now - p.joined, warmup)) if p.health.serving else 0.0
                for p in self.pods
            ]
            self.cum = cumulative(self.effective)
        self.epoch = epoch if warm else -1

    def weights(self, now: float, warmup: float, epoch: int) -> list[float]:
        """Effective weights now, pod by pod (``epoch``: the store's health epoch)."""
        if self.epoch != epoch or now < self.warm_until:
            self._refresh(now, warmup, epoch)
        return self.effective

    def cumulative(
        self, now: float, warmup: float, epoch: int, exclude: Pod | None = None
    ) -> list[float]:
        """Effective weights now as running sums; ``exclude`` (the pod a retry leaves)
        gets 0."""
        if self.epoch != epoch or now < self.warm_until:  # else nothing changed: the hot path
            self._refresh(now, warmup, epoch)
        if exclude is None:
            return self.cum
        pods = self.pods
        return cumulative([0.0 if pods[i] is exclude else w for i, w in enumerate(self.effective)])
