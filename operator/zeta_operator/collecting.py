"""The collect and extract stages of a cycle: one router's Prometheus, asked once.

:class:`Collector` keeps the router's Prometheus client across cycles (connection
reuse) while the spec names the same URL and timeout, renders the queries
(:mod:`.metrics.queries`), awaits the answers (I/O, :mod:`.metrics.client`) and turns
them into per-pod loads (pure, :mod:`.metrics.extraction`) with a verdict on them
(:func:`assess`). A failing Prometheus is a value here, never an
exception: the ladder decides what it means. The optional signals (the prefix cache's
counters, reported and never weighed) are asked once the load has answered, and
their failure only leaves them unknown.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from zeta_api import CONDITION_METRICS_AVAILABLE, ConditionStatus, Signal, ZetaRouterSpec
from zeta_operator.deciding import Collected
from zeta_operator.metrics import queries
from zeta_operator.metrics.client import MetricsError, PrometheusSource, Results, reuse
from zeta_operator.metrics.extraction import extract
from zeta_operator.reporting import Verdict
from zeta_operator.settings import OperatorSettings
from zeta_operator.snapshots import PodLoad

__all__ = ["Awaiting", "Collector", "assess", "metrics_failed", "static_metrics"]

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

Awaiting = Callable[[Coroutine[Any, Any, Results]], Awaitable[Results]]
"""How the answers are awaited (the router's loop publishes pod changes meanwhile)."""


class Collector:
    """One router's Prometheus, across cycles."""

    def __init__(self, settings: OperatorSettings, *, namespace: str) -> None:
        self.settings = settings
        self.namespace = namespace
        self.source: PrometheusSource | None = None

    async def collect(
        self, spec: ZetaRouterSpec, names: Sequence[str], awaiting: Awaiting
    ) -> Collected:
        """The load of the named pods, and what to say about it."""
        if spec.policy.static or all(m.static for m in spec.models):
            return static_metrics()
        prom = spec.prometheus
        self.source = reuse(
            self.source, prom.url, prom.timeout, max_queries=self.settings.prometheus_max_queries
        )
        plan = queries.plan(
            prom.engine,
            prom.queries,
            namespace=self.namespace,
            pod_names=names,
            window=self.settings.rate_window,
        )
        try:
            results = await awaiting(_fetch(self.source, *queries.split(plan)))
        except MetricsError as exc:
            return metrics_failed(exc.reason, str(exc))
        # Pure, and it grows with the pods: in a worker thread, off the event loop.
        loads = await asyncio.to_thread(
            extract, results, names, now=time.time(), max_age=self.settings.sample_max_age
        )
        return assess(loads, names)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


async def _fetch(
    source: PrometheusSource, load: Mapping[Signal, str], optional: Mapping[Signal, str]
) -> Results:
    """The load's answers, or its :class:`MetricsError`; then the optional signals'
    answers, if they come."""
    results = await source.fetch(load)
    if optional:
        # Failing, they are unknown, as for pods that export no such counter.
        with contextlib.suppress(MetricsError):
            results.update(await source.fetch(optional))
    return results


def static_metrics() -> Collected:
    """Every model is static: nothing to ask, and nothing failing."""
    return Collected(
        Verdict(
            CONDITION_METRICS_AVAILABLE,
            UNKNOWN,
            "StaticWeights",
            "every model is static: weights are pinned, Prometheus is not asked",
        )
    )


def metrics_failed(reason: str, message: str) -> Collected:
    return Collected(Verdict(CONDITION_METRICS_AVAILABLE, FALSE, reason, message), ok=False)


def assess(loads: Mapping[str, PodLoad], names: Sequence[str]) -> Collected:
    """Whether Prometheus' answer holds enough: at least one pod's core signals."""
    known = sum(1 for load in loads.values() if load.known)
    if not known:
        return metrics_failed(
            "NoData",
            f"Prometheus answered, but with no usable running/waiting sample "
            f"(missing, NaN, Inf or stale) for any of the {len(names)} pods",
        )
    message = f"fresh load for {known} of {len(names)} pods"
    if known < len(names):
        message += "; the others get a neutral weight"
    return Collected(Verdict(CONDITION_METRICS_AVAILABLE, TRUE, "MetricsFresh", message), loads)
