"""From a request's ``model`` to one pod: resolution, spillover, saturation, picking.

- An explicit model is used as is.
- A ``weighted`` virtual model draws one candidate by model weight among those not
  saturated (an admin's split, moved by load).
- A ``complexity`` virtual model prefers the tier the estimate names
  (:mod:`~zeta_sidecar.complexity`); if it is saturated it spills over as the table
  says (``up``: bigger tiers first; ``down``: smaller; ``both``: the nearest, bigger
  first on a tie; ``none``: stay).
- Every choice saturated: the model to wait for is returned marked *saturated*, and
  admission (:mod:`~zeta_sidecar.admission`) decides by the request's class: shed a
  sheddable one, queue the others. No pod that may take a request: 503.

Saturation combines the operator's verdict with the pods' reported load (shared by all
replicas) plus what *this* replica sent each pod since that report, less what ended
since, counted once per replica (each replica fills only its share). Local counts
alone never saturate a pod whose load is unknown: a replica sees only its share of the
load.

The headroom above a pod's batch (its capacity), and a reserve of the batch itself
(``traffic.sheddableReserve``), are for requests that would wait rather than be shed:
a sheddable request finds no room once every pod's load reaches the reserve, so the
pods' queues hold only traffic that must be served, a request that waits finds a batch
place soon, and a critical request never waits at a pod behind a sheddable one.
"""

from collections.abc import Mapping, Sequence

from zeta_api import Picker, Spillover, Strategy, Traffic
from zeta_sidecar.complexity import score, tier_index
from zeta_sidecar.errors import ModelNotFound, NoHealthyPod
from zeta_sidecar.picking import Draw, draw, smooth_wrr, weighted_p2c, weighted_random
from zeta_sidecar.tables import Pod, Pool, Snapshot, VirtualModel

__all__ = ["Router", "spill_order"]


def spill_order(preferred: int, count: int, spillover: Spillover) -> list[int]:
    """Candidate indices to try, the preferred one first."""
    order = [preferred]
    if spillover is Spillover.UP:
        order += range(preferred + 1, count)
    elif spillover is Spillover.DOWN:
        order += range(preferred - 1, -1, -1)
    elif spillover is Spillover.BOTH:
        for step in range(1, count):
            for i in (preferred + step, preferred - step):
                if 0 <= i < count:
                    order.append(i)
    return order


class Router:
    """Resolves models and picks pods; holds the randomness and the saturation rule."""

    def __init__(self, *, rand: Draw, headroom: float, replicas: int = 1) -> None:
        self.rand = rand
        self.headroom = headroom
        self.replicas = replicas
        """Gateway replicas sharing the pods (``traffic.gatewayReplicas``)."""
        self.sheddable_reserve = 0.0
        """Share of a batch kept from sheddable requests (``traffic.sheddableReserve``)."""

    def follow(self, traffic: Traffic) -> None:
        """Take the table's replica count and sheddable reserve."""
        self.replicas = traffic.gateway_replicas
        self.sheddable_reserve = traffic.sheddable_reserve

    def pod_saturated(self, pod: Pod, headroom: float | None = None) -> bool:
        """The pod's estimated load reaches ``capacity * (1 + headroom)`` (the router's
        headroom by default; 0 for a full batch)."""
        if pod.reported is None:
            return False
        # Signed: requests of this replica that ended since the report have left the pod,
        # so a queue drains here as it drains there (not only at the next report). Times
        # the replicas: each replica may fill only its share of the room the report left,
        # so N gateways between two reports do not each admit a whole pod's worth.
        since = (pod.inflight - pod.inflight_at_report) * self.replicas
        # The report is seconds old when it arrives, and what this replica sent between
        # the pod's scrape and the table's arrival is in neither term: in a ramp the sum
        # falls short. This replica's own in-flight count is fresh, and its share of the
        # pod's load: never estimate below it.
        load = max(pod.reported + since, pod.inflight * self.replicas)
        room = self.headroom if headroom is None else headroom
        return load >= pod.capacity * (1.0 + room)

    def has_room(self, pool: Pool, headroom: float | None = None) -> bool:
        """Some serving pod of the pool is below the saturation threshold."""
        return any(p.health.serving and not self.pod_saturated(p, headroom) for p in pool.pods)

    def has_room_for_sheddable(self, pool: Pool) -> bool:
        """Some serving pod's batch has a place outside the reserve of waiting classes."""
        return self.has_room(pool, headroom=-self.sheddable_reserve)

    def saturated(self, pool: Pool) -> bool:
        """The operator says so, or every serving pod's load says so."""
        if pool.saturated:
            return True
        if not pool.reported:
            return False  # no pod's load is known: local counts alone never saturate
        live = [p for p in pool.pods if p.health.serving]
        return bool(live) and all(self.pod_saturated(p) for p in live)

    @staticmethod
    def available(pool: Pool) -> bool:
        """Some pod of the pool may take a request."""
        # A plain loop, not any() over a generator: this runs for every request.
        for p in pool.pods:  # noqa: SIM110
            if p.health.serving:
                return True
        return False

    def resolve(
        self,
        snapshot: Snapshot,
        name: object,
        body: Mapping[str, object],
        tier: int | None = None,
    ) -> tuple[Pool, bool]:
        """The model a request goes to, and whether every choice it had is saturated;
        raises the matching :class:`ApiError` when there is none."""
        if not isinstance(name, str) or not name:
            raise ModelNotFound("Request has no 'model'.", param="model")
        pool = snapshot.pools.get(name)
        if pool is not None:
            if not self.available(pool):
                raise NoHealthyPod(f"Model {name!r} has no healthy pod.")
            return pool, self.saturated(pool)
        virtual = snapshot.virtual.get(name)
        if virtual is None:
            raise ModelNotFound(f"The model {name!r} does not exist.", param="model")
        if virtual.strategy is Strategy.WEIGHTED:
            return self._weighted(virtual)
        return self._complexity(virtual, body, tier)

    def _split(self, pools: Sequence[Pool], cum: list[float], ok: list[bool]) -> int:
        if all(ok):
            return draw(cum, self.rand)
        weights: list[float] = []
        total = 0.0
        for pool, good in zip(pools, ok, strict=True):
            total += pool.weight if good else 0.0
            weights.append(total)
        return draw(weights, self.rand)

    def _weighted(self, virtual: VirtualModel) -> tuple[Pool, bool]:
        pools = virtual.candidates
        up = [self.available(p) for p in pools]
        i = self._split(
            pools,
            virtual.cum,
            [a and not self.saturated(p) for a, p in zip(up, pools, strict=True)],
        )
        if i >= 0:
            return pools[i], False
        i = self._split(pools, virtual.cum, up)  # all saturated: wait by the admin's split
        if i < 0:
            raise NoHealthyPod(f"No model of {virtual.name!r} has a healthy pod.")
        return pools[i], True

    def _complexity(
        self, virtual: VirtualModel, body: Mapping[str, object], tier: int | None = None
    ) -> tuple[Pool, bool]:
        """``tier``: the candidate index an external classifier named, if it answered;
        else the built-in estimate decides, by the virtual model's thresholds."""
        pools = virtual.candidates
        if tier is not None and 0 <= tier < len(pools):
            preferred = tier
        else:
            preferred = tier_index(score(body), len(pools), virtual.thresholds)
        order = spill_order(preferred, len(pools), virtual.spillover)
        fallback: Pool | None = None
        for i in order:
            pool = pools[i]
            if self.available(pool):
                if not self.saturated(pool):
                    return pool, False
                fallback = fallback or pool
        if fallback is None:
            raise NoHealthyPod(f"No model of {virtual.name!r} has a healthy pod.")
        return fallback, True  # the first tier it may use, saturated: wait for it

    def pick(
        self,
        pool: Pool,
        picker: Picker,
        cum: list[float],
        exclude: Pod | None = None,
    ) -> Pod | None:
        """One pod of ``pool`` by ``picker`` over cumulative weights ``cum``."""
        pods = pool.pods
        if exclude is not None:
            # A retry: the same weights without the pod that failed.
            weights = [
                (cum[i] - (cum[i - 1] if i else 0.0)) * (pods[i] is not exclude)
                for i in range(len(pods))
            ]
            cum = [sum(weights[: i + 1]) for i in range(len(weights))]
            picker = Picker.WEIGHTED_P2C if picker is Picker.SMOOTH_WRR else picker
        if picker is Picker.WEIGHTED_P2C:
            i = weighted_p2c(cum, pool.load, self.rand)
        elif picker is Picker.SMOOTH_WRR:
            weights = [cum[i] - (cum[i - 1] if i else 0.0) for i in range(len(cum))]
            i = smooth_wrr(pool.swrr, weights)
        else:
            i = weighted_random(cum, self.rand)
        return pods[i] if i >= 0 else None
