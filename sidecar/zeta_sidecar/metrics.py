"""The sidecar's Prometheus metrics, ``zeta_``-prefixed, in a registry of their own.

Per-request updates go through cached label children (a dict look-up, not
prometheus_client's label validation each time). Per-pod gauges (in flight, ejected)
are read from the table store at scrape time, so the hot path never touches them.

Label values come from the routing table (models, pods, classes, tenants) or bounded
sets (status codes, outcomes, reasons); a request for a model not in the table is
labelled ``unknown``, a client of no declared tenant ``other``. So the series grow only
with what tables name: a pod that leaves the table takes its series with it
(:meth:`Metrics.forget`); models, classes and tenants that later tables drop keep
theirs.
"""

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zeta_sidecar.affinity import AffinityIndex
from zeta_sidecar.connections import ConnectionMetrics
from zeta_sidecar.pods import Pod

__all__ = ["Metrics"]

_Key = TypeVar("_Key", bound=Hashable)

# Seconds: from a cached answer (ms) to a long generation (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _PodCollector(Collector):
    """In-flight requests and ejection state per pod, read when scraped."""

    def __init__(self, pods: Callable[[], Iterable[Pod]]) -> None:
        self._pods = pods

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inflight = GaugeMetricFamily(
            "zeta_inflight_requests",
            "Requests this replica has in flight, per pod.",
            labels=["model", "pod"],
        )
        ejected = GaugeMetricFamily(
            "zeta_pod_ejected", "1 while the pod is ejected or probing.", labels=["model", "pod"]
        )
        for pod in self._pods():
            inflight.add_metric([pod.model, pod.name], pod.inflight)
            ejected.add_metric([pod.model, pod.name], 0.0 if pod.health.serving else 1.0)
        yield inflight
        yield ejected


class _TaskCollector(Collector):
    """Tasks alive on the event loop, read when scraped (a leak shows as growth)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            count = len(asyncio.all_tasks())
        except RuntimeError:  # scraped from outside the loop (tests): nothing to count
            return
        yield GaugeMetricFamily(
            "zeta_event_loop_tasks", "Tasks alive on the sidecar's event loop.", value=count
        )


class _QueueCollector(Collector):
    """Requests waiting in the admission queue per model, read when scraped."""

    def __init__(self, queued: Callable[[], Mapping[str, int]]) -> None:
        self._queued = queued

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "zeta_admission_queue_length",
            "Requests waiting in this replica's admission queue, per model.",
            labels=["model"],
        )
        for model, count in self._queued().items():
            family.add_metric([model], count)
        yield family


class _AffinityCollector(Collector):
    """Entries of the affinity index, by kind, read when scraped."""

    def __init__(self, index: AffinityIndex) -> None:
        self._index = index

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "zeta_affinity_index_entries",
            "Entries of this replica's affinity index, by kind: prefix (blocks), session "
            "(pins). Bounded by balancing.affinity.indexEntries per kind.",
            labels=["kind"],
        )
        family.add_metric(["prefix"], len(self._index.prefixes))
        family.add_metric(["session"], len(self._index.sessions))
        yield family


_MAX_CACHED = 10_000
"""Label children cached per metric: past it the cache starts again (the series stay)."""


def _cache(cache: dict[_Key, Counter], key: _Key, metric: Counter, *labels: str) -> Counter:
    """The child of ``metric`` for ``labels``, cached under ``key`` (a cache miss only)."""
    if len(cache) > _MAX_CACHED:  # a bound on the cache, whatever the tables did over time
        cache.clear()
    child = cache[key] = metric.labels(*labels)
    return child


class Metrics(ConnectionMetrics):
    """Every metric of one sidecar."""

    def __init__(self, pods: Callable[[], Iterable[Pod]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "zeta_requests",
            "Requests answered, by requested model, chosen model, pod and status code.",
            ["model", "chosen_model", "pod", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "zeta_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "zeta_time_to_first_byte_seconds",
            "Time from request to the first chunk of a streamed answer.",
            ["model"],
            buckets=_TTFB_BUCKETS,
            registry=r,
        )
        self.retries = Counter("zeta_retries", "Retries on another pod.", ["model"], registry=r)
        self.retries_denied = Counter(
            "zeta_retries_denied", "Retries the retry budget refused.", ["model"], registry=r
        )
        self.ejections = Counter(
            "zeta_ejections", "Pods ejected by outlier detection.", ["model", "pod"], registry=r
        )
        self.table_revision = Gauge(
            "zeta_table_revision", "Revision of the routing table in use.", registry=r
        )
        self.table_reloads = Counter(
            "zeta_table_reloads",
            "Routing tables read, by result: applied, unchanged or refused.",
            ["result"],
            registry=r,
        )
        super().__init__(r)
        self.admissions = Counter(
            "zeta_admissions",
            "Requests by requested model, traffic class, tenant and what admission did: "
            "admitted (at once), queued (then sent), shed (429, sheddable class), "
            "limited (429, tenant over its rate limit), timed_out and queue_full (waited "
            "too long, or no place in the queue), client_left (gone while queued).",
            ["model", "class", "tenant", "outcome"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "zeta_admission_wait_seconds",
            "Time requests spent in the admission queue, by model and class.",
            ["model", "class"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.classifier_fallbacks = Counter(
            "zeta_classifier_fallbacks",
            "Requests of a virtual model whose external classifier did not decide, so the "
            "built-in estimator did, by virtual model and reason: timeout, error (connection "
            "or HTTP status), answer (unreadable).",
            ["model", "reason"],
            registry=r,
        )
        self.affinity_decisions = Counter(
            "zeta_affinity_decisions",
            "Affinity decisions, by model, kind (prefix, session) and outcome: hit (the pod "
            "this replica last sent it to), placed (the placement order's first pod), "
            "bounded_out (that pod over its load bound: a later one), session_moved (the "
            "pinned pod over its bound, ejected or gone), no_candidate (no pod within the "
            "bound: the ordinary picker chose).",
            ["model", "kind", "outcome"],
            registry=r,
        )
        r.register(_PodCollector(pods))
        r.register(_TaskCollector())
        self._request_children: dict[tuple[str, str, str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self._ttfb_children: dict[str, Histogram] = {}
        self._admission_children: dict[tuple[str, str, str, str], Counter] = {}
        self._affinity_children: dict[tuple[str, str, str], Counter] = {}

    def request(self, model: str, chosen: str, pod: str, code: int) -> None:
        """Count one answered request."""
        key = (model, chosen, pod, code)
        child = self._request_children.get(key)
        if child is None:
            child = _cache(
                self._request_children, key, self.requests, model, chosen, pod, str(code)
            )
        child.inc()

    def forget(self, pods: Iterable[Pod]) -> None:
        """Drop the label sets of pods that left the table, so pod churn cannot grow the
        exported series (and this process's memory) without bound."""
        gone = {(pod.model, pod.name) for pod in pods}
        if not gone:
            return
        for key in [k for k in self._request_children if (k[1], k[2]) in gone]:
            del self._request_children[key]
            model, chosen, pod, code = key
            self.requests.remove(model, chosen, pod, str(code))
        for model, pod in gone:
            with contextlib.suppress(KeyError):  # never ejected: no series to drop
                self.ejections.remove(model, pod)

    def watch_queues(self, queued: Callable[[], Mapping[str, int]]) -> None:
        """Export the admission queues' lengths (read at scrape time)."""
        self.registry.register(_QueueCollector(queued))

    def admission(self, model: str, cls: str, tenant: str, outcome: str) -> None:
        """Count what admission did with one request."""
        key = (model, cls, tenant, outcome)
        child = self._admission_children.get(key)
        if child is None:
            child = _cache(self._admission_children, key, self.admissions, *key)
        child.inc()

    def watch_affinity(self, index: AffinityIndex) -> None:
        """Export the affinity index's size (read at scrape time)."""
        self.registry.register(_AffinityCollector(index))

    def affinity_decision(self, model: str, kind: str, outcome: str) -> None:
        """Count one affinity decision."""
        key = (model, kind, outcome)
        child = self._affinity_children.get(key)
        if child is None:
            child = _cache(self._affinity_children, key, self.affinity_decisions, *key)
        child.inc()

    def classifier_fallback(self, model: str, reason: str) -> None:
        """Count a request the built-in estimator routed because the classifier failed."""
        self.classifier_fallbacks.labels(model, reason).inc()

    def waited(self, model: str, cls: str, seconds: float) -> None:
        """Record a request's time in the admission queue."""
        self.queue_wait.labels(model, cls).observe(seconds)

    def observe(self, model: str, latency: float, ttfb: float | None) -> None:
        """Record a request's latency and, if a body started, its time to first byte."""
        child = self._latency_children.get(model)
        if child is None:
            child = self._latency_children[model] = self.latency.labels(model)
        child.observe(latency)
        if ttfb is not None:
            t = self._ttfb_children.get(model)
            if t is None:
                t = self._ttfb_children[model] = self.ttfb.labels(model)
            t.observe(ttfb)
