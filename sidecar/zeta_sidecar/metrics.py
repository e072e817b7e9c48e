"""The sidecar's Prometheus metrics, ``zeta_``-prefixed, in a registry of their own.

Per-request updates (requests, admissions, latency, time to first byte, affinity
decisions) go to :mod:`~zeta_sidecar.tallies`' compiled dicts, read into the same
families at scrape time; the rare ones (retries, ejections, table reloads...) to
prometheus_client's metric objects. Per-pod gauges (in flight, ejected) are read from
the table store at scrape time, so the hot path never touches them.

Label values come from the routing table (models, pods, classes, tenants) or bounded
sets (status codes, outcomes, reasons); a request for a model not in the table is
labelled ``unknown``, a client of no declared tenant ``other``. So the series grow only
with what tables name: a pod that leaves the table takes its series with it
(:meth:`Metrics.forget`); models, classes and tenants that later tables drop keep
theirs.
"""

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from zeta_sidecar.affinity import AffinityIndex
from zeta_sidecar.connections import ConnectionMetrics
from zeta_sidecar.pods import Pod
from zeta_sidecar.tallies import Buckets, Counts, StatusCounts, Timings

__all__ = ["Metrics"]

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


def _with_created() -> bool:
    # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES), read as its own
    # metric objects read it.
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


class _CountsCollector(Collector):
    """A counter family from :class:`~zeta_sidecar.tallies.Counts`, as ``Counter`` wrote it."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str], counts: Counts):
        self._name, self._doc, self._labels, self._counts = name, documentation, labels, counts

    def describe(self) -> Iterator[Metric]:
        yield Metric(self._name, self._doc, "counter")

    def collect(self) -> Iterator[Metric]:
        family = Metric(self._name, self._doc, "counter")
        created = self._counts.created if _with_created() else None
        total, since = f"{self._name}_total", f"{self._name}_created"
        for key, value in list(self._counts.values.items()):
            labels = dict(zip(self._labels, key, strict=True))
            family.add_sample(total, labels, value)
            if created is not None:
                family.add_sample(since, labels, created[key])
        yield family


class _HistogramCollector(Collector):
    """A histogram family (one label) from :class:`~zeta_sidecar.tallies.Buckets`, as
    ``Histogram`` wrote it: cumulative buckets, ``_count``, ``_sum``, ``_created``."""

    def __init__(self, name: str, documentation: str, label: str, tally: Buckets) -> None:
        self._name, self._doc, self._label, self._tally = name, documentation, label, tally
        # Untyped in prometheus_client; the bucket labels its Histogram writes.
        self._les: list[str] = [floatToGoString(b) for b in tally.bounds]  # type: ignore[no-untyped-call]

    def describe(self) -> Iterator[Metric]:
        yield Metric(self._name, self._doc, "histogram")

    def collect(self) -> Iterator[Metric]:
        name = self._name
        family = Metric(name, self._doc, "histogram")
        created = self._tally.created if _with_created() else None
        for value, counts in list(self._tally.series.items()):
            acc = 0.0
            for le, count in zip(self._les, counts, strict=False):
                acc += count
                family.add_sample(f"{name}_bucket", {self._label: value, "le": le}, acc)
            labels = {self._label: value}
            family.add_sample(f"{name}_count", labels, acc)
            family.add_sample(f"{name}_sum", labels, counts[-1])
            if created is not None:
                family.add_sample(f"{name}_created", labels, created[value])
        yield family


class Metrics(ConnectionMetrics):
    """Every metric of one sidecar."""

    def __init__(self, pods: Callable[[], Iterable[Pod]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Updated per request: plain compiled tallies, read at scrape time. Their methods
        # are the attributes the hot path calls (no interpreted frame in between).
        self.requests = StatusCounts()
        self.request: Callable[[str, str, str, int], None] = self.requests.count
        """Count one answered request: model, chosen model, pod, status code."""
        self.timings = Timings(_LATENCY_BUCKETS, _TTFB_BUCKETS)
        self.observe: Callable[[str, float, float | None], None] = self.timings.observe
        """Record a request's latency and, if a body started, its time to first byte."""
        self.admissions = Counts()
        self.admission: Callable[[str, str, str, str], None] = self.admissions.add
        """Count what admission did with one request: model, class, tenant, outcome."""
        self.affinity_decisions = Counts()
        self.affinity_decision: Callable[[str, str, str], None] = self.affinity_decisions.add
        """Count one affinity decision: model, kind, outcome."""
        r.register(
            _CountsCollector(
                "zeta_requests",
                "Requests answered, by requested model, chosen model, pod and status code.",
                ["model", "chosen_model", "pod", "code"],
                self.requests,
            )
        )
        r.register(
            _HistogramCollector(
                "zeta_request_duration_seconds",
                "Time from request to the last byte of the answer.",
                "model",
                self.timings.latency,
            )
        )
        r.register(
            _HistogramCollector(
                "zeta_time_to_first_byte_seconds",
                "Time from request to the first chunk of a streamed answer.",
                "model",
                self.timings.ttfb,
            )
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
        r.register(
            _CountsCollector(
                "zeta_admissions",
                "Requests by requested model, traffic class, tenant and what admission did: "
                "admitted (at once), queued (then sent), shed (429, sheddable class), "
                "limited (429, tenant over its rate limit), timed_out and queue_full (waited "
                "too long, or no place in the queue), client_left (gone while queued).",
                ["model", "class", "tenant", "outcome"],
                self.admissions,
            )
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
        r.register(
            _CountsCollector(
                "zeta_affinity_decisions",
                "Affinity decisions, by model, kind (prefix, session) and outcome: hit (the "
                "pod this replica last sent it to), placed (the placement order's first pod), "
                "bounded_out (that pod over its load bound: a later one), session_moved (the "
                "pinned pod over its bound, ejected or gone), no_candidate (no pod within the "
                "bound: the ordinary picker chose).",
                ["model", "kind", "outcome"],
                self.affinity_decisions,
            )
        )
        r.register(_PodCollector(pods))
        r.register(_TaskCollector())

    def forget(self, pods: Iterable[Pod]) -> None:
        """Drop the label sets of pods that left the table, so pod churn cannot grow the
        exported series (and this process's memory) without bound."""
        gone = {(pod.model, pod.name) for pod in pods}
        if not gone:
            return
        for key in [k for k in self.requests.values if (k[1], k[2]) in gone]:
            self.requests.remove(key)
        for model, pod in gone:
            with contextlib.suppress(KeyError):  # never ejected: no series to drop
                self.ejections.remove(model, pod)

    def watch_queues(self, queued: Callable[[], Mapping[str, int]]) -> None:
        """Export the admission queues' lengths (read at scrape time)."""
        self.registry.register(_QueueCollector(queued))

    def watch_affinity(self, index: AffinityIndex) -> None:
        """Export the affinity index's size (read at scrape time)."""
        self.registry.register(_AffinityCollector(index))

    def classifier_fallback(self, model: str, reason: str) -> None:
        """Count a request the built-in estimator routed because the classifier failed."""
        self.classifier_fallbacks.labels(model, reason).inc()

    def waited(self, model: str, cls: str, seconds: float) -> None:
        """Record a request's time in the admission queue."""
        self.queue_wait.labels(model, cls).observe(seconds)
