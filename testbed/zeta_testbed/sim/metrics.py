"""The Prometheus exposition: vLLM's metric names over the sim's engine and counters.

Metric names are data (``MetricNames``), so a consumer such as the router's scraper can
be tested against both the current and the legacy KV-cache gauge from one table.

Gauges and counters are not kept twice: a collector reads the engine's snapshot and the
server's ``RequestCounters`` at scrape time, so ``/metrics`` and ``/admin/stats`` agree
by construction. The two latency histograms are observed per request by the server;
they are small lock-free accumulators here rather than ``prometheus_client`` metrics,
because those also export ``*_created`` series that vLLM does not, and turning them off
is a process-wide switch. Everything is registered in a registry per application, so
several sims can share one test process.
"""

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from zeta_testbed.sim.engine import Engine, FinishReason

__all__ = [
    "E2E_LATENCY_BUCKETS",
    "LEGACY_METRIC_NAMES",
    "METRIC_NAMES",
    "TTFT_BUCKETS",
    "LatencyHistogram",
    "MetricNames",
    "RequestCounters",
    "SimMetrics",
    "render",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricNames:
    """The exposed metric names, as they appear in the scrape (counters with ``_total``)."""

    num_requests_running: str = "vllm:num_requests_running"
    num_requests_waiting: str = "vllm:num_requests_waiting"
    kv_cache_usage: str = "vllm:kv_cache_usage_perc"
    time_to_first_token: str = "vllm:time_to_first_token_seconds"
    e2e_request_latency: str = "vllm:e2e_request_latency_seconds"
    request_success: str = "vllm:request_success_total"
    prompt_tokens: str = "vllm:prompt_tokens_total"
    generation_tokens: str = "vllm:generation_tokens_total"
    prefix_cache_queries: str = "vllm:prefix_cache_queries_total"
    prefix_cache_hits: str = "vllm:prefix_cache_hits_total"
    requests_cancelled: str = "zeta_sim_requests_cancelled_total"
    requests_failed: str = "zeta_sim_requests_failed_total"


METRIC_NAMES = MetricNames()
"""The names of vLLM's V1 engine."""

LEGACY_METRIC_NAMES = replace(METRIC_NAMES, kv_cache_usage="vllm:gpu_cache_usage_perc")
"""The V0 engine's KV gauge name, still expected by older dashboards and routers.

The prefix-cache counters keep their V1 names: V0 had only a hit-rate gauge, which a
consumer cannot sum across pods or over a window."""

TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""vLLM's bucket bounds for time to first token, in seconds."""

E2E_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""vLLM's bucket bounds for end-to-end request latency, in seconds."""


class LatencyHistogram:
    """Counts of observations per bucket, plus their sum; exported cumulatively."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        # One slot per bound, plus the implicit +Inf bucket.
        self._counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Add one observation; a value equal to a bound falls in that bound's bucket."""
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as the exposition format wants them, ending at +Inf."""
        pairs: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self._counts, strict=True):
            running += count
            pairs.append((_le(bound), float(running)))
        return pairs


@dataclass(slots=True)
class RequestCounters:
    """Per-request outcomes the server sees and the engine does not."""

    total: int = 0
    """Valid generation requests received (malformed or misrouted ones excluded)."""
    cancelled: int = 0
    """Requests whose client went away before the response was complete."""
    failed: int = 0
    """Requests answered with an injected error or an injected connection reset."""
    hung: int = 0
    """Requests currently held by the ``hang`` fault (a gauge)."""


# eq=False keeps identity hashing: the registry keys its collectors by them.
@dataclass(slots=True, kw_only=True, eq=False)
class SimMetrics:
    """Everything ``/metrics`` exports for one sim, readable as a Prometheus collector."""

    model_name: str
    names: MetricNames
    engine: Engine
    requests: RequestCounters = field(default_factory=RequestCounters)
    ttft: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(TTFT_BUCKETS))
    e2e_latency: LatencyHistogram = field(
        default_factory=lambda: LatencyHistogram(E2E_LATENCY_BUCKETS)
    )

    def registry(self) -> CollectorRegistry:
        """A fresh registry holding only this sim's metrics."""
        registry = CollectorRegistry()
        registry.register(self)
        return registry

    def collect(self) -> Iterable[Metric]:
        """Build the metric families from the current state (the Collector protocol)."""
        names = self.names
        label = [self.model_name]
        stats = self.engine.stats()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["model_name"])
            family.add_metric(label, value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["model_name"])
            family.add_metric(label, value)
            return family

        def histogram(name: str, doc: str, hist: LatencyHistogram) -> HistogramMetricFamily:
            family = HistogramMetricFamily(name, doc, labels=["model_name"])
            family.add_metric(label, hist.cumulative(), hist.sum)
            return family

        yield gauge(
            names.num_requests_running,
            "Number of requests in model execution batches.",
            stats.running,
        )
        yield gauge(
            names.num_requests_waiting, "Number of requests waiting to be processed.", stats.waiting
        )
        yield gauge(
            names.kv_cache_usage, "KV-cache usage. 1 means 100 percent usage.", stats.kv_cache_usage
        )
        yield histogram(
            names.time_to_first_token, "Histogram of time to first token in seconds.", self.ttft
        )
        yield histogram(
            names.e2e_request_latency,
            "Histogram of end to end request latency in seconds.",
            self.e2e_latency,
        )

        success = CounterMetricFamily(
            names.request_success,
            "Count of successfully processed requests.",
            labels=["model_name", "finished_reason"],
        )
        for reason in FinishReason:
            success.add_metric([self.model_name, reason.value], stats.finished_total[reason])
        yield success
        yield counter(
            names.prompt_tokens, "Number of prefill tokens processed.", stats.prompt_tokens_total
        )
        yield counter(
            names.generation_tokens,
            "Number of generation tokens processed.",
            stats.generation_tokens_total,
        )
        # vLLM's own help texts: both counters are in tokens, not requests or blocks.
        yield counter(
            names.prefix_cache_queries,
            "Prefix cache queries, in terms of number of queried tokens.",
            stats.prefix_cache_queries_total,
        )
        yield counter(
            names.prefix_cache_hits,
            "Prefix cache hits, in terms of number of cached tokens.",
            stats.prefix_cache_hits_total,
        )
        yield counter(
            names.requests_cancelled,
            "Requests whose client went away first.",
            self.requests.cancelled,
        )
        yield counter(
            names.requests_failed, "Requests failed by an injected fault.", self.requests.failed
        )


def _le(bound: float) -> str:
    # The exposition format's spelling: "+Inf", and floats as Python's repr ("1.0").
    return "+Inf" if bound == float("inf") else repr(float(bound))


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """Encode the registry in the format the scraper's ``Accept`` header prefers.

    Returns the body and its content type.
    """
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
