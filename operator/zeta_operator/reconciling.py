"""One router's cycle, as one straight line: collect, extract, decide, publish, report.

- collect: parse the spec, select the router's pods from the index and, in a full
  cycle, ask Prometheus (I/O, :mod:`.metrics.client`), publishing pod changes at once
  while it answers (:func:`zeta_operator.looping.meanwhile`);
- extract: per-pod loads from the answers (pure, :mod:`.metrics.extraction`);
- decide: weights and the ladder's rung (pure, :mod:`.deciding`);
- publish: the routing table's ConfigMap, when it changed materially (I/O);
- report: one :class:`~zeta_operator.deciding.Outcome` to the status (I/O), once.

Extract, decide and the table's build and encoding grow with the pods (tens of
milliseconds at 1,000 pods), so they run in a worker thread: the event loop keeps
serving kopf's watches and the other routers meanwhile.

:class:`RouterLoop` keeps what a cycle leaves for the next (a
:class:`~zeta_operator.deciding.Memory`, the published revision, the Prometheus client);
when cycles run is :mod:`zeta_operator.looping`'s job. Nothing here raises out of a
cycle for a bad spec, an unreachable Prometheus or a failed write: each becomes a
condition with a reason, and the next cycle retries.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from zeta_api import ConditionStatus, Fallback, PolicySpec, SpecError, ZetaRouterSpec, parse_spec
from zeta_operator import deciding, discovery, looping
from zeta_operator.apiserver import Publisher
from zeta_operator.classifiers import classifier_verdict
from zeta_operator.collecting import Collector
from zeta_operator.deciding import Collected, Memory, Outcome, Selection
from zeta_operator.ladder import Ladder
from zeta_operator.looping import Pods, generation_of
from zeta_operator.metrics.client import PrometheusSource, Results
from zeta_operator.publishing import Publication
from zeta_operator.reporting import Verdict
from zeta_operator.runtime import Runtime
from zeta_operator.weighting import Weights

__all__ = ["RouterLoop"]

EventFn = Callable[[str, str, str], None]
"""(type, reason, message): posts a Kubernetes Event about the router."""
_DEFAULTS = PolicySpec()
"""The policy's defaults, for when no valid spec says otherwise."""
_WRITE_ERRORS = (ApiException, HTTPError, OSError)
"""How the apiserver's client fails: unreachable, or a write refused."""


class RouterLoop:
    """The state and the cycle of one ZetaRouter."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        namespace: str,
        name: str,
        uid: str,
        event: EventFn,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.runtime, self.settings = runtime, runtime.settings
        self.namespace, self.name, self.uid = namespace, name, uid
        self.publication = Publication(
            Publisher(runtime.api, identity=runtime.settings.identity),
            namespace=namespace,
            name=name,
            uid=uid,
            precision=runtime.settings.table_precision,
        )
        self.event, self.logger = event, logger
        self.memory = Memory()
        self.classifier_verdict: Verdict | None = None
        """What the last full cycle saw of the virtual models' classifiers, if any."""
        self.selection_key: tuple[object, ...] | None = None
        self.generation: int | None = None
        self.invalid_generation: int | None = None
        self.collector = Collector(runtime.settings, namespace=namespace)
        self.spec: ZetaRouterSpec | None = None
        self.key = f"{namespace}/{name}"
        """The router as the table and the metrics name it."""
        self.view = runtime.telemetry.router(self.key)

    @property
    def ladder(self) -> Ladder:
        return self.memory.ladder

    @property
    def metrics_verdict(self) -> Verdict | None:
        return self.memory.metrics

    @property
    def source(self) -> PrometheusSource | None:
        return self.collector.source

    @source.setter
    def source(self, source: PrometheusSource | None) -> None:
        self.collector.source = source

    async def run(self, body: Mapping[str, Any], pods: Pods, stopped: Any) -> None:
        """Until ``stopped`` or the router's deletion: cycles, when :mod:`.looping` says.
        ``body`` is kopf's live view."""
        stopping = looping.Stopping(stopped, self.runtime.deletion(self.uid))
        try:
            self.publication.restore(body.get("status"))
            await looping.run(
                self, body, pods, stopping, self.runtime.waker(self.namespace, self.name)
            )
        finally:
            self.runtime.forget(self.namespace, self.name, self.uid)
            self.runtime.telemetry.forget(self.key)
            self.collector.close()

    def stale_in(self, now: float) -> float | None:
        stale_after = (self.spec.policy if self.spec else _DEFAULTS).stale_after
        return self.memory.ladder.stale_in(now=now, stale_after=stale_after)

    async def cycle(self, body: Mapping[str, Any], pods: Pods, *, full: bool) -> float:
        """One cycle; returns the interval to the next full one (seconds)."""
        generation = generation_of(body)
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as exc:
            self.runtime.telemetry.cycle_errors.labels(self.key, "invalid-spec").inc()
            if self.invalid_generation != generation:
                self.invalid_generation = generation
                self.event("Warning", "InvalidSpec", str(exc))
            await self._report(body, generation, deciding.invalid(str(exc), self.ladder.rung))
            return _DEFAULTS.interval
        self.spec, self.generation = spec, generation
        selection = discovery.select(spec, pods())
        key = discovery.selection_key(selection)
        if not full and key == self.selection_key:
            return spec.policy.interval
        self.selection_key = key
        if full:
            # Once per interval: nothing else would tell of a change by someone else.
            self.publication.reread()
        await self._update(body, spec, selection, generation, full=full, pods=pods)
        return spec.policy.interval

    async def _update(
        self,
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        selection: Selection,
        generation: int,
        *,
        full: bool,
        pods: Pods,
    ) -> None:
        """collect (full cycles) -> extract -> decide -> publish -> report, in that order."""
        telemetry = self.runtime.telemetry
        started = time.monotonic()
        try:
            collected = None
            if full and deciding.serving(selection):
                collected = await self._collect(body, spec, selection, generation, pods)
                # Pods may have come and gone while Prometheus was asked (and been
                # published meanwhile): weigh the pods there are now.
                selection = discovery.select(spec, pods())
                self.selection_key = discovery.selection_key(selection)
            # Pure, and it grows with the pods: in a worker thread, off the event loop.
            # Nothing else updates this router's memory meanwhile (cycles of one router
            # never overlap, see looping.meanwhile).
            decision = await asyncio.to_thread(
                deciding.decide,
                self.memory,
                spec,
                selection,
                collected,
                now=time.monotonic(),
                shift_threshold=self.settings.shift_event_threshold,
            )
            self.memory = decision.memory
            for event in decision.events:
                self.event(*event)
            published = await self._publish(body, spec, selection, decision.weights)
            if full and decision.serving:
                self.classifier_verdict = await classifier_verdict(spec.virtual_models)
            result = deciding.outcome(
                decision,
                spec,
                selection,
                published=published,
                classifier=self.classifier_verdict,
                namespace=self.namespace,
            )
            await self._report(body, generation, result)
            self._observe(decision, result, fresh=collected is not None)
        except _WRITE_ERRORS as exc:
            # The apiserver is unreachable or refused a write: the next cycle retries.
            telemetry.cycle_errors.labels(self.key, "apiserver").inc()
            self.logger.warning(f"Publishing failed, retrying next interval: {exc}")
            self.publication.reread()
        kind = "full" if full else "pods"
        telemetry.cycle_duration.labels(self.key, kind).observe(time.monotonic() - started)

    def _observe(
        self, decision: deciding.Decision, outcome: deciding.Outcome, *, fresh: bool
    ) -> None:
        """What the scrape reads of this router (see :mod:`.telemetry`)."""
        view = self.view
        view.revision = self.publication.revision_floor
        view.fallback = decision.memory.ladder.rung
        view.model_weights, view.pod_weights = decision.weights.models, decision.weights.pods
        view.prefix_cache_hit_rates = {
            m.name: m.prefix_cache_hit_rate
            for m in outcome.models
            if m.prefix_cache_hit_rate is not None
        }
        if fresh:
            metrics = decision.memory.metrics
            if metrics is not None and metrics.status is ConditionStatus.FALSE:
                self.runtime.telemetry.cycle_errors.labels(self.key, "prometheus").inc()
            elif decision.memory.ladder.rung is Fallback.NONE:
                view.metrics_good_at = time.time()

    # --------------------------------------------------------- collect, extract
    async def _collect(
        self,
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        selection: Selection,
        generation: int,
        pods: Pods,
    ) -> Collected:
        async def pods_changed() -> None:
            current = discovery.select(spec, pods())
            key = discovery.selection_key(current)
            if key != self.selection_key:
                self.selection_key = key
                await self._update(body, spec, current, generation, full=False, pods=pods)

        def awaiting(fetch: Coroutine[Any, Any, Results]) -> Awaitable[Results]:
            waker = self.runtime.waker(self.namespace, self.name)
            return looping.meanwhile(fetch, waker, pods_changed, body=body, generation=generation)

        names = [p.name for chosen in selection.values() for p in chosen]
        return await self.collector.collect(spec, names, awaiting)

    # ---------------------------------------------------------- publish, report
    async def _publish(
        self, body: Mapping[str, Any], spec: ZetaRouterSpec, selection: Selection, weights: Weights
    ) -> Verdict:
        return await self.publication.table(spec, selection, weights, self.memory.loads)

    async def _report(self, body: Mapping[str, Any], generation: int, outcome: Outcome) -> None:
        if not await self.publication.status(body.get("status"), generation, outcome):
            # Gone, and its DELETED event missed (a watch that lost events): end the loop
            # all the same, as no finalizer keeps the router for kopf to stop it.
            self.runtime.deleted(self.uid)
