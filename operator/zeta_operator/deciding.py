"""What one cycle decides from what it collected, and what it will report. Pure.

The middle of a cycle (see :mod:`zeta_operator.reconciling`): the previous
:class:`Memory`, the spec, the selected pods and the metrics (:class:`Collected`, or
``None`` when the cycle is about pods only) go in; a :class:`Decision` (the weights to
publish, the new memory, the Events to post) comes out. After publishing,
:func:`outcome` gathers everything the status will say into one :class:`Outcome`.
Time is passed in (monotonic seconds).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from zeta_api import (
    CONDITION_DEGRADED,
    CONDITION_READY,
    ConditionStatus,
    Fallback,
    ModelStatus,
    Traffic,
    ZetaRouterSpec,
)
from zeta_operator import weighting
from zeta_operator.ladder import Ladder, Transition
from zeta_operator.reporting import Verdict, model_statuses, shifts
from zeta_operator.snapshots import PodLoad, PodRecord
from zeta_operator.weighting import Weights, WeightState

__all__ = [
    "Collected",
    "Decision",
    "Event",
    "Memory",
    "Outcome",
    "Selection",
    "decide",
    "invalid",
    "model_inputs",
    "outcome",
    "serving",
]

TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE
_UNKNOWN = PodLoad()
"""The load of a pod Prometheus said nothing about (one value, not one per pod)."""
Selection = Mapping[str, list[PodRecord]]
Event = tuple[str, str, str]
"""(type, reason, message) of a Kubernetes Event about the router."""


@dataclass(frozen=True, slots=True)
class Collected:
    """What one collection from Prometheus gave: loads, and the verdict on them."""

    verdict: Verdict
    loads: Mapping[str, PodLoad] = field(default_factory=dict)
    ok: bool = True


@dataclass(frozen=True, slots=True)
class Memory:
    """What one cycle leaves for the next."""

    ladder: Ladder = field(default_factory=Ladder)
    weights: Weights | None = None
    """The weights last published with pods to serve (for weight-shift Events)."""
    good_state: WeightState | None = None
    """The state of the last weights from fresh metrics (or reshaped from them)."""
    loads: Mapping[str, PodLoad] = field(default_factory=dict)
    metrics: Verdict | None = None
    """What the last full cycle said about the metrics."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What one cycle decided: the weights to publish, and what to remember and say."""

    memory: Memory
    weights: Weights
    """What to publish now."""
    serving: bool
    """Whether any selected pod takes requests (not draining)."""
    events: tuple[Event, ...] = ()


def serving(selection: Selection) -> bool:
    return any(not p.draining for pods in selection.values() for p in pods)


def decide(
    memory: Memory,
    spec: ZetaRouterSpec,
    selection: Selection,
    collected: Collected | None,
    *,
    now: float,
    shift_threshold: float,
) -> Decision:
    """The weights for these pods: live from fresh metrics, else as the ladder says.

    With no pod to serve, the memory stays as it is and the weights are empty: a
    table whose models have no endpoint, so the sidecars answer 503 at once rather
    than keep sending to pods no longer ready (or gone)."""
    policy = spec.policy
    if not serving(selection):
        empty = weighting.base_weights(model_inputs(spec, selection, {}), policy)
        return Decision(memory, empty, serving=False)
    ladder, step, loads, good = memory.ladder, None, memory.loads, memory.good_state
    metrics = memory.metrics if collected is None else collected.verdict
    if collected is not None and collected.ok:
        ladder, step = ladder.succeeded()
        loads = collected.loads
    elif collected is not None:
        ladder, step = ladder.failed(now=now, stale_after=policy.stale_after)
        loads = {}
    inputs = model_inputs(spec, selection, loads)
    if collected is not None and collected.ok:
        weights = weighting.update(good, inputs, policy)
    elif ladder.rung is Fallback.BASE_WEIGHTS or good is None:
        weights = weighting.base_weights(inputs, policy)
    else:
        weights = weighting.reshape(good, inputs, policy)
    if (collected is not None and collected.ok) or (
        collected is None and ladder.rung is Fallback.NONE
    ):
        good = weights.state
    events = [] if step is None else _ladder_events(step, metrics)
    for shift in shifts(memory.weights, weights, shift_threshold):
        message = f"{shift.what}: weight {shift.before:.3f} -> {shift.after:.3f}"
        events.append(("Normal", "WeightShift", message))
    after = Memory(ladder=ladder, weights=weights, good_state=good, loads=loads, metrics=metrics)
    return Decision(after, weights, serving=True, events=tuple(events))


def _ladder_events(step: Transition, verdict: Verdict | None) -> list[Event]:
    why = f" ({verdict.reason}: {verdict.message})" if verdict else ""
    if step.fell and step.after is Fallback.LAST_GOOD:
        return [("Warning", "FallbackLastGood", f"metrics failing: last good weights{why}")]
    if step.fell:
        return [("Warning", "FallbackBaseWeights", f"metrics failing: base weights{why}")]
    if step.recovered:
        return [("Normal", "MetricsRecovered", "fresh metrics again: live weights")]
    return []


def model_inputs(
    spec: ZetaRouterSpec,
    selection: Selection,
    loads: Mapping[str, PodLoad],
) -> weighting.Models:
    """The weighting's input for a router: its models, their selected pods and loads."""
    return tuple(
        weighting.ModelInput(
            name=m.name,
            base_weight=m.base_weight,
            static=m.static,
            pods=_pod_inputs(selection.get(m.name, []), m.capacity, loads),
        )
        for m in spec.models
    )


def _pod_inputs(
    pods: list[PodRecord], capacity: int, loads: Mapping[str, PodLoad]
) -> tuple[weighting.PodInput, ...]:
    # A list made then frozen, and the lookup bound once: this runs per pod and interval.
    load_of, pod_input = loads.get, weighting.PodInput
    return tuple(
        [
            pod_input(
                name=p.name, capacity=capacity, load=load_of(p.name, _UNKNOWN), draining=p.draining
            )
            for p in pods
        ]
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one cycle reports: conditions, per-model status, the ladder's rung."""

    verdicts: tuple[Verdict, ...]
    models: tuple[ModelStatus, ...]
    fallback: Fallback
    traffic: Traffic | None = None


def invalid(message: str, rung: Fallback) -> Outcome:
    """A spec the operator cannot use: not ready, and nothing else is known."""
    return Outcome((Verdict(CONDITION_READY, FALSE, "InvalidSpec", message),), (), rung)


def outcome(
    decision: Decision,
    spec: ZetaRouterSpec,
    selection: Selection,
    *,
    published: Verdict,
    classifier: Verdict | None,
    namespace: str,
) -> Outcome:
    """The status of a cycle that published (or tried to) ``decision``'s weights."""
    memory = decision.memory
    rung = memory.ladder.rung
    reported = [*([memory.metrics] if memory.metrics else []), _degraded(spec, selection, rung)]
    if not decision.serving:
        ready = published
        if published.status is TRUE:  # the table was written: say why it is empty
            ready = Verdict(
                CONDITION_READY,
                FALSE,
                "NoPodsSelected",
                f"no ready, undrained pod matches any model's selector in namespace {namespace}",
            )
        models = model_statuses(spec, selection, None, {})
        return Outcome((ready, *reported), models, rung, spec.traffic)
    extra = [classifier] if classifier else []
    models = model_statuses(spec, selection, decision.weights, memory.loads)
    return Outcome((published, *reported, *extra), models, rung, spec.traffic)


def _degraded(spec: ZetaRouterSpec, selection: Selection, rung: Fallback) -> Verdict:
    if rung is Fallback.LAST_GOOD:
        return Verdict(
            CONDITION_DEGRADED, TRUE, "LastGoodWeights", "metrics failing: last good weights"
        )
    if rung is Fallback.BASE_WEIGHTS:
        return Verdict(
            CONDITION_DEGRADED,
            TRUE,
            "BaseWeights",
            "metrics failing for longer than staleAfter (or never read): base weights "
            "by capacity over ready pods",
        )
    empty = [m.name for m in spec.models if not selection.get(m.name)]
    if empty:
        return Verdict(
            CONDITION_DEGRADED,
            TRUE,
            "ModelsWithoutPods",
            f"no ready pod matches the selector of: {', '.join(empty)}",
        )
    return Verdict(CONDITION_DEGRADED, FALSE, "AsExpected", "live weights")
