"""The state one sidecar shares across requests, and the outcomes that change it.

One :class:`Gateway` per application, stored under :data:`GATEWAY`: the table store,
the router, admission and the traffic policy (classes, tenants' buckets), the retry
budget, the metrics, the pods' keep-alive connections and the prober's client session.
Success and failure of each upstream try feed outlier ejection here; the prober
(:meth:`Gateway.probe_ejected`) checks pods whose ejection time is over before they
get traffic again.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from zeta_api import Retry, Traffic
from zeta_sidecar.admission import Admission
from zeta_sidecar.classifier import Classifier
from zeta_sidecar.metrics import Metrics
from zeta_sidecar.picking import default_draw
from zeta_sidecar.pods import Pod
from zeta_sidecar.resilience import RetryBudget, may_eject
from zeta_sidecar.routing import Router
from zeta_sidecar.settings import Settings
from zeta_sidecar.table_store import Snapshot, TableStore
from zeta_sidecar.traffic import TrafficPolicy
from zeta_sidecar.upstream import Connections

__all__ = ["GATEWAY", "Gateway"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class Gateway:
    """Everything the handlers share."""

    def __init__(self, settings: Settings, *, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.store = TableStore(max_bytes=settings.max_table_bytes)
        self.router = Router(
            rand=default_draw(settings.seed),
            headroom=settings.saturation_headroom,
            workers=settings.workers,
        )
        self.admission = Admission(self._has_room)
        self.traffic = TrafficPolicy(Traffic(), clock(), workers=settings.workers)
        """Classes and tenants in force (the defaults until a table says otherwise)."""
        self.router.follow(self.traffic.traffic)
        self.metrics = Metrics(self.store.pods)
        self.metrics.watch_queues(self.admission.queued)
        self.metrics.watch_affinity(self.router.affinity)
        self.router.decided = self.metrics.affinity_decision
        self.classifier = Classifier(self.metrics.classifier_fallback)
        """External tier classifiers of virtual models (a session of its own, opened lazily)."""
        retry = Retry()  # the table's defaults, until a table says otherwise
        self.budget = RetryBudget(budget=retry.budget, min_per_second=retry.min_per_second)
        self.draining = False
        self.large_bodies = asyncio.Semaphore(1)
        """Held while a large request body is parsed: one at a time (see proxy.py)."""
        self._session: aiohttp.ClientSession | None = None
        self._upstream: Connections | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session of the prober's health checks (opened by the cleanup context)."""
        if self._session is None:
            raise RuntimeError("the gateway's client session is not open")
        return self._session

    @session.setter
    def session(self, session: aiohttp.ClientSession | None) -> None:
        self._session = session

    def load_table(self, raw: bytes) -> bool:
        """Validate and apply a table; refused ones are counted and logged. ``True`` if new."""
        try:
            snapshot, changed = self.store.load(raw, self.clock())
        except ValueError as exc:  # TableError is a ValueError
            self.metrics.table_reloads.labels("refused").inc()
            logger.error("routing table refused, keeping the last good one: %s", exc)
            return False
        if changed:
            self.metrics.forget(self.store.departed)
            retry = snapshot.balancing.retry
            self.budget.budget, self.budget.min_per_second = retry.budget, retry.min_per_second
            self.router.affinity.configure(snapshot.balancing.affinity)
            if snapshot.table.traffic != self.traffic.traffic:
                self.traffic = TrafficPolicy(
                    snapshot.table.traffic,
                    self.clock(),
                    self.traffic,
                    workers=self.settings.workers,
                )
                self.router.follow(snapshot.table.traffic)
            self.admission.wake_all()  # new reported load: waiters may have room now
            self.metrics.table_revision.set(snapshot.revision)
            self.metrics.table_reloads.labels("applied").inc()
            logger.info("routing table revision %d applied", snapshot.revision)
        else:
            self.metrics.table_reloads.labels("unchanged").inc()
        return changed

    @property
    def upstream(self) -> Connections:
        """The pods' keep-alive connections (opened by the application's cleanup context)."""
        if self._upstream is None:
            raise RuntimeError("the gateway's upstream pool is not open")
        return self._upstream

    @upstream.setter
    def upstream(self, connections: Connections | None) -> None:
        self._upstream = connections

    def _has_room(self, name: str) -> bool:
        snapshot = self.store.current
        model = snapshot.models.get(name) if snapshot is not None else None
        return model is not None and self.router.has_room(model)

    def succeeded(self, pod: Pod) -> None:
        """An upstream try got an answer below 500."""
        if pod.health.consecutive or not pod.health.serving:
            pod.health.success()

    def failed(self, pod: Pod) -> None:
        """An upstream try failed (connect error, reset, 5xx, timeout)."""
        snapshot = self.store.current
        if snapshot is None:
            return
        model = snapshot.models.get(pod.model)
        members = model.pods if model is not None else []
        outlier = snapshot.balancing.outlier
        allowed = pod in members and may_eject((p.health for p in members), outlier)
        if pod.health.failure(outlier, self.clock(), may_eject=allowed):
            self.store.epoch += 1
            self.metrics.ejections.labels(pod.model, pod.name).inc()
            logger.warning(
                "pod %s (%s, %s) ejected for %.1f s after %d failures",
                pod.name, pod.model, pod.address,
                pod.health.ejected_until - self.clock(), pod.health.consecutive,
            )  # fmt: skip

    async def probe_ejected(self) -> None:
        """Check every pod whose ejection is over; runs until cancelled."""
        swept = self.clock()
        while True:
            await asyncio.sleep(self.settings.probe_interval)
            # Other replicas' requests ending show only in reported load: look again.
            self.admission.wake_all()
            if self._upstream is not None and self.clock() - swept >= 1.0:
                swept = self.clock()
                self._upstream.sweep()
            snapshot = self.store.current
            if snapshot is None:
                continue
            now = self.clock()
            due = [p for p in self.store.pods() if p.health.due_for_probe(now)]
            if due:
                results = await asyncio.gather(*(self._probe(p, snapshot) for p in due))
                outlier = snapshot.balancing.outlier
                for pod, ok in zip(due, results, strict=True):
                    pod.health.probed(ok, outlier, self.clock())
                    logger.info("pod %s probed: %s", pod.name, "back" if ok else "still failing")
                self.store.epoch += 1

    async def _probe(self, pod: Pod, snapshot: Snapshot) -> bool:
        t = snapshot.balancing.timeouts
        timeout = aiohttp.ClientTimeout(total=max(1.0, t.connect), sock_connect=t.connect)
        try:
            async with self.session.get(f"{pod.url}/health", timeout=timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False


GATEWAY = web.AppKey("zeta_gateway", Gateway)
