"""One router's loop: collect, extract, weigh, build, publish, report; then wait.

The loop runs as long as its ZetaRouter exists (a kopf daemon) and keeps the state
an update needs: the last weights, the ladder, the published revision. It wakes

- every ``spec.policy.interval``: a full update with fresh metrics;
- at once when the spec changes (a new generation): a full update;
- at once when the router's pods come, go, change readiness or drain: the table is
  rebuilt from the pod index and the weights already known, without asking
  Prometheus (rung 3 of the ladder: pods are facts, metrics are opinions), even
  while a full update still awaits a slow Prometheus;
- when last-good weights turn stale, so base weights are not late by an interval.

Nothing here raises out of the loop for a bad spec, an unreachable Prometheus or a
failed write: each becomes a condition with a reason, and the next wake-up retries.
"""

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from zeta_api import (
    CONDITION_DEGRADED,
    CONDITION_METRICS_AVAILABLE,
    CONDITION_READY,
    ConditionStatus,
    Fallback,
    SpecError,
    StatusError,
    TableError,
    TableStatus,
    Traffic,
    ZetaRouterSpec,
    ZetaRouterStatus,
    content_hash,
    dump_routing_table,
    parse_spec,
    parse_status,
)
from zeta_operator import discovery, weighting
from zeta_operator.classifiers import classifier_verdict
from zeta_operator.ladder import Ladder, Transition
from zeta_operator.metrics import queries
from zeta_operator.metrics.client import MetricsError, PrometheusSource, Results
from zeta_operator.metrics.extraction import extract
from zeta_operator.publishing import ConfigMapConflict, Published, Publisher
from zeta_operator.reporting import Verdict, build_status, model_statuses, shifts
from zeta_operator.runtime import Runtime
from zeta_operator.snapshots import PodLoad, PodRecord
from zeta_operator.tables import build_table
from zeta_operator.weighting import Weights, WeightState

__all__ = ["RouterLoop"]

TRUE, FALSE, UNKNOWN = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
EventFn = Callable[[str, str, str], None]
"""(type, reason, message): posts a Kubernetes Event about the router."""


def _now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _serving(selection: Mapping[str, list[PodRecord]]) -> bool:
    return any(not p.draining for pods in selection.values() for p in pods)


@dataclass(slots=True)
class _Metrics:
    """The outcome of one collection."""

    loads: dict[str, PodLoad] = field(default_factory=dict)
    verdict: Verdict | None = None
    ok: bool = True


class RouterLoop:
    """The state and the loop of one ZetaRouter."""

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
        self.runtime = runtime
        self.settings = runtime.settings
        self.namespace, self.name, self.uid = namespace, name, uid
        self.router = f"{namespace}/{name}"
        self.publisher = Publisher(runtime.api, identity=runtime.settings.identity)
        self.event = event
        self.logger = logger
        self.ladder = Ladder()
        self.weights: Weights | None = None
        self.good_state: WeightState | None = None
        self.loads: dict[str, PodLoad] = {}
        self.metrics_verdict: Verdict | None = None
        self.classifier_verdict: Verdict | None = None
        """What the last full cycle saw of the virtual models' classifiers, if any."""
        self.published: Published | None = None
        self.revision_floor = 0
        self.table_status: TableStatus | None = None
        self.selection_key: tuple[object, ...] | None = None
        self.generation: int | None = None
        self.invalid_generation: int | None = None
        self.last_status: dict[str, Any] | None = None
        self.source: PrometheusSource | None = None
        self.config_map: str | None = None
        self.spec: ZetaRouterSpec | None = None

    # ------------------------------------------------------------------ loop
    async def run(
        self,
        body: Mapping[str, Any],
        pods: Callable[[], Iterable[PodRecord]],
        stopped: Any,
    ) -> None:
        """Until ``stopped``: wake, update, wait. ``body`` is kopf's live view."""
        waker = self.runtime.waker(self.namespace, self.name)
        stop_task = asyncio.ensure_future(stopped.wait())
        next_full = 0.0
        try:
            self._restore(body)
            while not stopped:
                now = time.monotonic()
                generation = int(body.get("metadata", {}).get("generation") or 0)
                full = now >= next_full or generation != self.generation
                # Cleared before the cycle, not after: a pod event that arrives while
                # the cycle awaits Prometheus or the apiserver must wake the next one,
                # not wait for the interval.
                waker.clear()
                interval = await self.cycle(body, pods, full=full)
                if full:
                    next_full = time.monotonic() + interval
                wait = next_full - time.monotonic()
                stale_in = self.ladder.stale_in(now=time.monotonic(), stale_after=self._stale())
                if stale_in is not None:
                    wait = min(wait, stale_in + 0.05)
                wake_task = asyncio.ensure_future(waker.wait())
                await asyncio.wait(
                    {wake_task, stop_task}, timeout=max(wait, 0.0), return_when="FIRST_COMPLETED"
                )
                wake_task.cancel()
        finally:
            stop_task.cancel()
            self.runtime.forget(self.namespace, self.name)
            if self.source is not None:
                self.source.close()

    def _stale(self) -> float:
        return self.spec.policy.stale_after if self.spec else 60.0

    def _restore(self, body: Mapping[str, Any]) -> None:
        """Carry the revision over from the stored status (a restart, a new leader)."""
        try:
            status = parse_status(body.get("status") or {})
        except StatusError:
            return
        if status.routing_table is not None:
            self.revision_floor = status.routing_table.revision
            self.table_status = status.routing_table

    # ----------------------------------------------------------------- cycle
    async def cycle(
        self,
        body: Mapping[str, Any],
        pods: Callable[[], Iterable[PodRecord]],
        *,
        full: bool,
    ) -> float:
        """One update; returns the interval to the next full one (seconds)."""
        generation = int(body.get("metadata", {}).get("generation") or 0)
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as exc:
            await self._invalid(body, generation, exc)
            return 10.0
        self.spec = spec
        self.generation = generation
        selection = discovery.select(spec, pods())
        key = discovery.selection_key(selection)
        if not full and key == self.selection_key:
            return spec.policy.interval
        self.selection_key = key
        if full:
            # Re-read the ConfigMap once per interval: someone else may have changed or
            # deleted it, and nothing else would tell.
            self.published = None
        try:
            await self._update(body, spec, selection, generation, full=full, pods=pods)
        except (ApiException, HTTPError, OSError) as exc:
            # The apiserver is unreachable or refused a write: say so where we still can.
            self.logger.warning(f"Publishing failed, retrying next interval: {exc}")
            self.published = None  # re-read the ConfigMap next time
        return spec.policy.interval

    async def _invalid(self, body: Mapping[str, Any], generation: int, exc: SpecError) -> None:
        if self.invalid_generation != generation:
            self.invalid_generation = generation
            self.event("Warning", "InvalidSpec", str(exc))
        await self._report(
            body,
            generation,
            [Verdict(CONDITION_READY, FALSE, "InvalidSpec", str(exc))],
            models=(),
            fallback=self.ladder.rung,
        )

    async def _collect(
        self,
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        selection: Mapping[str, list[PodRecord]],
        generation: int,
        pods: Callable[[], Iterable[PodRecord]],
    ) -> _Metrics:
        names = [p.name for pods in selection.values() for p in pods]
        if spec.policy.static or all(m.static for m in spec.models):
            return _Metrics(
                verdict=Verdict(
                    CONDITION_METRICS_AVAILABLE,
                    UNKNOWN,
                    "StaticWeights",
                    "every model is static: weights are pinned, Prometheus is not asked",
                )
            )
        prom = spec.prometheus
        if self.source is None or (self.source.url, self.source.timeout) != (
            prom.url,
            prom.timeout,
        ):
            if self.source is not None:
                self.source.close()
            self.source = PrometheusSource(
                prom.url, timeout=prom.timeout, max_queries=self.settings.prometheus_max_queries
            )
        plan = queries.plan(
            prom.engine,
            prom.queries,
            namespace=self.namespace,
            pod_names=names,
            window=self.settings.rate_window,
        )
        try:
            results = await self._fetch_serving_pods(
                self.source.fetch(plan), body, spec, generation, pods
            )
        except MetricsError as exc:
            return _Metrics(
                ok=False, verdict=Verdict(CONDITION_METRICS_AVAILABLE, FALSE, exc.reason, str(exc))
            )
        loads = extract(results, names, now=time.time(), max_age=self.settings.sample_max_age)
        known = sum(1 for load in loads.values() if load.known)
        if not known:
            return _Metrics(
                ok=False,
                verdict=Verdict(
                    CONDITION_METRICS_AVAILABLE,
                    FALSE,
                    "NoData",
                    f"Prometheus answered, but with no usable running/waiting sample "
                    f"(missing, NaN, Inf or stale) for any of the {len(names)} pods",
                ),
            )
        message = f"fresh load for {known} of {len(names)} pods"
        if known < len(names):
            message += "; the others get a neutral weight"
        return _Metrics(
            loads=loads, verdict=Verdict(CONDITION_METRICS_AVAILABLE, TRUE, "MetricsFresh", message)
        )

    async def _fetch_serving_pods(
        self,
        fetch: Coroutine[Any, Any, Results],
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        generation: int,
        pods: Callable[[], Iterable[PodRecord]],
    ) -> Results:
        """Await Prometheus; meanwhile, pod changes are published at once (rung 3), so a
        slow Prometheus delays the weights, never the pods."""
        waker = self.runtime.waker(self.namespace, self.name)
        task = asyncio.ensure_future(fetch)
        woken = False
        try:
            while True:
                wake = asyncio.ensure_future(waker.wait())
                try:
                    await asyncio.wait({task, wake}, return_when="FIRST_COMPLETED")
                finally:
                    wake.cancel()
                if task.done():
                    return task.result()
                waker.clear()
                woken = True
                await self._pods_changed(body, spec, generation, pods)
        finally:
            task.cancel()
            # A wake-up consumed here may have been a new spec, not a pod: let the loop
            # look again rather than sleep for an interval.
            if woken and int(body.get("metadata", {}).get("generation") or 0) != generation:
                waker.set()

    async def _pods_changed(
        self,
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        generation: int,
        pods: Callable[[], Iterable[PodRecord]],
    ) -> None:
        selection = discovery.select(spec, pods())
        key = discovery.selection_key(selection)
        if key == self.selection_key:
            return
        self.selection_key = key
        try:
            await self._update(body, spec, selection, generation, full=False, pods=pods)
        except (ApiException, HTTPError, OSError) as exc:
            self.logger.warning(f"Publishing failed, retrying next interval: {exc}")
            self.published = None

    async def _update(
        self,
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        selection: Mapping[str, list[PodRecord]],
        generation: int,
        *,
        full: bool,
        pods: Callable[[], Iterable[PodRecord]],
    ) -> None:
        if not _serving(selection):
            await self._no_pods(body, spec, selection, generation)
            return
        policy = spec.policy
        if full:
            collected = await self._collect(body, spec, selection, generation, pods)
            # Pods may have come and gone while Prometheus was asked (and been
            # published meanwhile): weigh the pods there are now.
            selection = discovery.select(spec, pods())
            self.selection_key = discovery.selection_key(selection)
            if not _serving(selection):
                await self._no_pods(body, spec, selection, generation)
                return
        before = self.weights
        if full:
            self.metrics_verdict = collected.verdict
            if collected.ok:
                self.ladder, step = self.ladder.succeeded()
                self.loads = collected.loads
                weights = weighting.update(
                    self.good_state, weighting.model_inputs(spec, selection, self.loads), policy
                )
                self.good_state = weights.state
            else:
                self.ladder, step = self.ladder.failed(
                    now=time.monotonic(), stale_after=policy.stale_after
                )
                self.loads = {}
                weights = self._fallback_weights(spec, selection)
            self._announce(step, collected.verdict)
        else:
            weights = self._fallback_weights(spec, selection)
            if self.ladder.rung is Fallback.NONE:
                self.good_state = weights.state
        self.weights = weights
        for shift in shifts(before, weights, self.settings.shift_event_threshold):
            self.event(
                "Normal",
                "WeightShift",
                f"{shift.what}: weight {shift.before:.3f} -> {shift.after:.3f}",
            )
        ready = await self._publish(body, spec, selection, weights)
        if full:
            self.classifier_verdict = await classifier_verdict(spec.virtual_models)
        extra = [self.classifier_verdict] if self.classifier_verdict else []
        await self._report(
            body,
            generation,
            [ready, *self._metrics_and_degraded(spec, selection), *extra],
            models=model_statuses(spec, selection, weights, self.loads),
            fallback=self.ladder.rung,
            traffic=spec.traffic,
        )

    def _fallback_weights(
        self, spec: ZetaRouterSpec, selection: Mapping[str, list[PodRecord]]
    ) -> Weights:
        """Weights without fresh metrics: the ladder's rung says which."""
        inputs = weighting.model_inputs(spec, selection, self.loads)
        if self.ladder.rung is Fallback.BASE_WEIGHTS or self.good_state is None:
            return weighting.base_weights(inputs, spec.policy)
        return weighting.reshape(self.good_state, inputs, spec.policy)

    def _announce(self, step: Transition, verdict: Verdict | None) -> None:
        why = f" ({verdict.reason}: {verdict.message})" if verdict else ""
        if step.fell and step.after is Fallback.LAST_GOOD:
            self.event("Warning", "FallbackLastGood", f"metrics failing: last good weights{why}")
        elif step.fell:
            self.event("Warning", "FallbackBaseWeights", f"metrics failing: base weights{why}")
        elif step.recovered:
            self.event("Normal", "MetricsRecovered", "fresh metrics again: live weights")

    def _metrics_and_degraded(
        self, spec: ZetaRouterSpec, selection: Mapping[str, list[PodRecord]]
    ) -> list[Verdict]:
        verdicts = [self.metrics_verdict] if self.metrics_verdict else []
        empty = [m.name for m in spec.models if not selection.get(m.name)]
        rung = self.ladder.rung
        if rung is Fallback.LAST_GOOD:
            degraded = Verdict(
                CONDITION_DEGRADED, TRUE, "LastGoodWeights", "metrics failing: last good weights"
            )
        elif rung is Fallback.BASE_WEIGHTS:
            degraded = Verdict(
                CONDITION_DEGRADED,
                TRUE,
                "BaseWeights",
                "metrics failing for longer than staleAfter (or never read): base weights "
                "by capacity over ready pods",
            )
        elif empty:
            degraded = Verdict(
                CONDITION_DEGRADED,
                TRUE,
                "ModelsWithoutPods",
                f"no ready pod matches the selector of: {', '.join(empty)}",
            )
        else:
            degraded = Verdict(CONDITION_DEGRADED, FALSE, "AsExpected", "live weights")
        return [*verdicts, degraded]

    async def _no_pods(
        self,
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        selection: Mapping[str, list[PodRecord]],
        generation: int,
    ) -> None:
        # Nothing to route to: a table whose models have no endpoint, so the sidecars
        # answer 503 at once rather than keep sending to pods no longer ready (or gone).
        empty = weighting.base_weights(weighting.model_inputs(spec, selection, {}), spec.policy)
        published = await self._publish(body, spec, selection, empty)
        verdicts = [
            Verdict(
                CONDITION_READY,
                FALSE,
                "NoPodsSelected",
                "no ready, undrained pod matches any model's selector in namespace "
                f"{self.namespace}",
            ),
            *self._metrics_and_degraded(spec, selection),
        ]
        if published.status is not TRUE:  # the table could not be written: say why
            verdicts[0] = published
        await self._report(
            body,
            generation,
            verdicts,
            models=model_statuses(spec, selection, None, {}),
            fallback=self.ladder.rung,
            traffic=spec.traffic,
        )

    async def _publish(
        self,
        body: Mapping[str, Any],
        spec: ZetaRouterSpec,
        selection: Mapping[str, list[PodRecord]],
        weights: Weights,
    ) -> Verdict:
        cm_name = spec.routing_table.config_map_name
        try:
            if self.published is None or self.config_map != cm_name:
                self.config_map = cm_name
                self.published = await self.publisher.current(self.namespace, cm_name, self.uid)
        except ConfigMapConflict as exc:
            return Verdict(CONDITION_READY, FALSE, "ConfigMapConflict", str(exc))
        floor = max(self.revision_floor, self.published.revision if self.published else 0)
        table = build_table(
            router=self.router,
            spec=spec,
            selection=selection,
            weights=weights,
            loads=self.loads,
            revision=floor + 1,
            generated_at=_now_text(),
            precision=self.settings.table_precision,
        )
        digest = content_hash(table)
        pods = sum(len(p) for p in selection.values())
        if self.published is not None and self.published.content_hash == digest:
            return Verdict(
                CONDITION_READY, TRUE, "TablePublished", f"{pods} pods in revision {floor}"
            )
        try:
            text = dump_routing_table(table)
        except TableError as exc:
            return Verdict(CONDITION_READY, FALSE, "TableInvalid", str(exc))
        published = Published(floor + 1, digest)
        await self.publisher.write(
            namespace=self.namespace,
            name=cm_name,
            router=self.name,
            router_uid=self.uid,
            text=text,
            published=published,
        )
        self.published = published
        self.revision_floor = published.revision
        self.table_status = TableStatus(revision=published.revision, updated_at=table.generated_at)
        return Verdict(
            CONDITION_READY, TRUE, "TablePublished", f"{pods} pods in revision {published.revision}"
        )

    async def _report(
        self,
        body: Mapping[str, Any],
        generation: int,
        verdicts: list[Verdict],
        *,
        models: tuple[Any, ...],
        fallback: Fallback,
        traffic: Traffic | None = None,
    ) -> None:
        try:
            previous = parse_status(body.get("status") or {})
        except StatusError:
            previous = ZetaRouterStatus()
        status = build_status(
            previous,
            generation=generation,
            now=_now_text(),
            verdicts=verdicts,
            models=models,
            table=self.table_status,
            fallback=fallback,
            traffic=traffic,
        ).to_dict()
        if status == self.last_status:
            return
        await self.publisher.patch_status(self.namespace, self.name, status)
        self.last_status = status
