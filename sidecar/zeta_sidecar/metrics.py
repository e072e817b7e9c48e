"""The sidecar's Prometheus metrics, ``zeta_``-prefixed, in a registry of their own.

Per-request updates go through cached label children (a dict look-up, not
prometheus_client's label validation each time). Per-pod gauges (in flight, ejected)
are read from the table store at scrape time, so the hot path never touches them.
"""

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zeta_sidecar.tables import Pod

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


class Metrics:
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
        r.register(_PodCollector(pods))
        self._request_children: dict[tuple[str, str, str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self._ttfb_children: dict[str, Histogram] = {}

    def request(self, model: str, chosen: str, pod: str, code: int) -> None:
        """Count one answered request."""
        key = (model, chosen, pod, code)
        child = self._request_children.get(key)
        if child is None:
            if len(self._request_children) > 10_000:  # unknown models must not grow it forever
                self._request_children.clear()
            child = self.requests.labels(model, chosen, pod, str(code))
            self._request_children[key] = child
        child.inc()

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
