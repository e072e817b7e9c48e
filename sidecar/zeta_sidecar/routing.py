"""From a request's ``model`` to one pod: resolution, spillover, saturation, picking.

Picking prefers, for a model with affinity, the pod that holds the request's prefix or
session while that pod is within the load bound (:mod:`~zeta_sidecar.affinity`, over the
load estimate below); otherwise the table's picker decides.

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

from collections.abc import Callable, Mapping, Sequence

from zeta_api import Balancing, Picker, Spillover, Strategy, Traffic
from zeta_sidecar.affinity import AffinityIndex, under_bound
from zeta_sidecar.affinity_keys import Keys
from zeta_sidecar.complexity import score, tier_index
from zeta_sidecar.errors import ModelNotFound, NoHealthyPod
from zeta_sidecar.picking import Draw, cumulative, draw, smooth_wrr, weighted_p2c, weighted_random
from zeta_sidecar.pods import ModelPods, Pod
from zeta_sidecar.table_store import Snapshot, VirtualModel

__all__ = ["Decided", "Router", "spill_order"]

Decided = Callable[[str, str, str], None]
"""Told each affinity decision: model, kind (prefix, session), outcome."""


def _ignore(model: str, kind: str, outcome: str) -> None:
    pass


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

    def __init__(self, *, rand: Draw, headroom: float, replicas: int = 1, workers: int = 1) -> None:
        self.rand = rand
        self.headroom = headroom
        self.workers = workers
        """Processes of this gateway replica, each routing on its own (``--workers``)."""
        self.replicas = replicas * workers
        """Processes sharing the pods: ``traffic.gatewayReplicas`` times the workers."""
        self.sheddable_reserve = 0.0
        """Share of a batch kept from sheddable requests (``traffic.sheddableReserve``)."""
        self.affinity = AffinityIndex()
        """Where this replica sent prefixes and sessions (bounded)."""
        self.decided: Decided = _ignore

    def follow(self, traffic: Traffic) -> None:
        """Take the table's replica count and sheddable reserve."""
        self.replicas = traffic.gateway_replicas * self.workers
        self.sheddable_reserve = traffic.sheddable_reserve

    def pod_load(self, pod: Pod) -> float:
        """The pod's estimated load in requests: as reported, plus what this replica sent
        since, never below this replica's in-flight share; this replica's in-flight count
        when no load is reported."""
        if pod.reported is None:
            return pod.inflight
        # Signed: requests of this replica that ended since the report have left the pod,
        # so a queue drains here as it drains there (not only at the next report). Times
        # the replicas: each replica may fill only its share of the room the report left,
        # so N gateways between two reports do not each admit a whole pod's worth.
        since = (pod.inflight - pod.inflight_at_report) * self.replicas
        # The report is seconds old when it arrives, and what this replica sent between
        # the pod's scrape and the table's arrival is in neither term: in a ramp the sum
        # falls short. This replica's own in-flight count is fresh, and its share of the
        # pod's load: never estimate below it.
        return max(pod.reported + since, pod.inflight * self.replicas)

    def bound_load(self, pod: Pod) -> float:
        """The pod's load as the affinity bound weighs it: exact when this process is the
        model's only gateway (its in-flight count is then the pods' load, and fresh),
        else :meth:`pod_load`.

        Why not :meth:`pod_load` when alone: the reported load is seconds old and still
        counts requests that ended since, on every pod; the average the bound is taken
        from runs high with it, so a pod above the true bound could still look within it
        (0.8-2 % of requests were sent to such pods in the affinity benchmark)."""
        if self.replicas == 1:
            return pod.inflight
        return self.pod_load(pod)

    def pod_saturated(self, pod: Pod, headroom: float | None = None) -> bool:
        """The pod's estimated load reaches ``capacity * (1 + headroom)`` (the router's
        headroom by default; 0 for a full batch)."""
        if pod.reported is None:
            return False
        room = self.headroom if headroom is None else headroom
        return self.pod_load(pod) >= pod.capacity * (1.0 + room)

    def has_room(self, model: ModelPods, headroom: float | None = None) -> bool:
        """Some serving pod of the model is below the saturation threshold."""
        return any(p.health.serving and not self.pod_saturated(p, headroom) for p in model.pods)

    def has_room_for_sheddable(self, model: ModelPods) -> bool:
        """Some serving pod's batch has a place outside the reserve of waiting classes."""
        return self.has_room(model, headroom=-self.sheddable_reserve)

    def saturated(self, model: ModelPods) -> bool:
        """The operator says so, or every serving pod's load says so."""
        if model.saturated:
            return True
        if not model.reported:
            return False  # no pod's load is known: local counts alone never saturate
        live = [p for p in model.pods if p.health.serving]
        return bool(live) and all(self.pod_saturated(p) for p in live)

    @staticmethod
    def available(model: ModelPods) -> bool:
        """Some pod of the model may take a request."""
        # A plain loop, not any() over a generator: this runs for every request.
        for p in model.pods:  # noqa: SIM110
            if p.health.serving:
                return True
        return False

    def resolve(
        self,
        snapshot: Snapshot,
        name: object,
        body: Mapping[str, object],
        tier: int | None = None,
    ) -> tuple[ModelPods, bool]:
        """The model a request goes to, and whether every choice it had is saturated;
        raises the matching :class:`ApiError` when there is none."""
        if not isinstance(name, str) or not name:
            raise ModelNotFound("Request has no 'model'.", param="model")
        model = snapshot.models.get(name)
        if model is not None:
            if not self.available(model):
                raise NoHealthyPod(f"Model {name!r} has no healthy pod.")
            return model, self.saturated(model)
        virtual = snapshot.virtual.get(name)
        if virtual is None:
            raise ModelNotFound(f"The model {name!r} does not exist.", param="model")
        if virtual.strategy is Strategy.WEIGHTED:
            return self._weighted(virtual)
        return self._complexity(virtual, body, tier)

    def _split(self, models: Sequence[ModelPods], cum: list[float], ok: list[bool]) -> int:
        if all(ok):
            return draw(cum, self.rand)
        weights = [m.weight if good else 0.0 for m, good in zip(models, ok, strict=True)]
        return draw(cumulative(weights), self.rand)

    def _weighted(self, virtual: VirtualModel) -> tuple[ModelPods, bool]:
        models = virtual.candidates
        up = [self.available(m) for m in models]
        i = self._split(
            models,
            virtual.cum,
            [a and not self.saturated(m) for a, m in zip(up, models, strict=True)],
        )
        if i >= 0:
            return models[i], False
        i = self._split(models, virtual.cum, up)  # all saturated: wait by the admin's split
        if i < 0:
            raise NoHealthyPod(f"No model of {virtual.name!r} has a healthy pod.")
        return models[i], True

    def _complexity(
        self, virtual: VirtualModel, body: Mapping[str, object], tier: int | None = None
    ) -> tuple[ModelPods, bool]:
        """``tier``: the candidate index an external classifier named, if it answered;
        else the built-in estimate decides, by the virtual model's thresholds."""
        models = virtual.candidates
        if tier is not None and 0 <= tier < len(models):
            preferred = tier
        else:
            preferred = tier_index(score(body), len(models), virtual.thresholds)
        order = spill_order(preferred, len(models), virtual.spillover)
        fallback: ModelPods | None = None
        for i in order:
            model = models[i]
            if self.available(model):
                if not self.saturated(model):
                    return model, False
                fallback = fallback or model
        if fallback is None:
            raise NoHealthyPod(f"No model of {virtual.name!r} has a healthy pod.")
        return fallback, True  # the first tier it may use, saturated: wait for it

    def pick(
        self,
        model: ModelPods,
        balancing: Balancing,
        now: float,
        epoch: int,
        exclude: Pod | None = None,
        *,
        keys: Keys | None = None,
    ) -> Pod | None:
        """One pod of ``model`` by the table's picker over the pods' effective weights
        now (``epoch``: the store's health epoch); a retry passes the pod it leaves as
        ``exclude``. ``keys``: the request's affinity keys, when the model has affinity:
        a pod within the load bound that holds its prefix or session is preferred (not on
        a retry), and where it went is remembered."""
        i = -1
        plan = model.affinity
        if keys is not None and plan is not None and exclude is None:
            weights = model.weights(now, balancing.warmup, epoch)
            pods = model.pods
            eligible = under_bound(
                list(map(self.bound_load, pods)),
                [p.capacity for p in pods],
                [w > 0 for w in weights],
                plan.epsilon,
            )
            i, kind, outcome = self.affinity.choose(keys, plan, eligible, now)
            self.decided(model.name, kind, outcome)
        if i < 0:
            i = self._pick(model, balancing, now, epoch, exclude)
        if i < 0:
            return None
        pod = model.pods[i]
        if keys is not None:
            self.affinity.record(keys, pod.address, now)
        return pod

    def _pick(
        self, model: ModelPods, balancing: Balancing, now: float, epoch: int, exclude: Pod | None
    ) -> int:
        picker = balancing.picker
        if picker is Picker.SMOOTH_WRR and exclude is None:
            return smooth_wrr(model.swrr, model.weights(now, balancing.warmup, epoch))
        # A retry leaves round robin's turns alone: P2C over the remaining pods.
        cum = model.cumulative(now, balancing.warmup, epoch, exclude)
        if picker is Picker.WEIGHTED_RANDOM:
            return weighted_random(cum, self.rand)
        return weighted_p2c(cum, model.load, self.rand)
