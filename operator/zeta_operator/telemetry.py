"""The operator's own Prometheus metrics, ``zeta_operator_``-prefixed, and the
``/metrics`` endpoint that serves them (``--metrics HOST:PORT``).

What an admin watches per router (label ``router``, ``namespace/name`` as in the
table): the table's revision, the ladder's rung, the published weights per model and
per pod (label ``endpoint``: the pod's name, not ``pod``, which Prometheus Operator
scrapes set to the operator's own pod), how old the last good metrics are, each model's
prefix-cache hit rate, and each cycle's duration and errors.

Routers' state is read when scraped (:class:`RouterView`, one per running loop, dropped
when the loop ends), so a router or pod that goes takes its series with it and the
cycles never touch prometheus_client's locks for gauges. Only replicas that act
export router series: with peering, the others have no loops.
"""

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zeta_api import Fallback

__all__ = ["RouterView", "Telemetry", "parse_address", "serve"]

# Seconds: a pods-only cycle takes milliseconds, a full one waits for Prometheus.
_CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ERROR_REASONS = ("invalid-spec", "prometheus", "apiserver")
"""Why a cycle failed: a spec the operator cannot use, metrics that did not come (the
ladder falls back), a write the apiserver refused or never got."""


@dataclass(slots=True)
class RouterView:
    """What one router's loop last published, for the scrape to read."""

    revision: int = 0
    fallback: Fallback = Fallback.NONE
    model_weights: Mapping[str, float] = field(default_factory=dict)
    pod_weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per model, per pod."""
    metrics_good_at: float | None = None
    """Wall-clock time of the last cycle with fresh metrics; ``None``: never yet."""
    prefix_cache_hit_rates: Mapping[str, float] = field(default_factory=dict)
    """Per model, as in the status; models whose pods count no lookups are absent."""


class _RouterCollector(Collector):
    def __init__(self, routers: Mapping[str, RouterView]) -> None:
        self._routers = routers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        revision = GaugeMetricFamily(
            "zeta_operator_table_revision",
            "Revision of the routing table last published.",
            labels=["router"],
        )
        rung = GaugeMetricFamily(
            "zeta_operator_fallback",
            "1 for the degradation ladder's active rung (none, last-good, base-weights), "
            "0 for the others.",
            labels=["router", "rung"],
        )
        models = GaugeMetricFamily(
            "zeta_operator_model_weight",
            "Published weight of each model.",
            labels=["router", "model"],
        )
        pods = GaugeMetricFamily(
            "zeta_operator_endpoint_weight",
            "Published weight of each pod within its model.",
            labels=["router", "model", "endpoint"],
        )
        age = GaugeMetricFamily(
            "zeta_operator_metrics_age_seconds",
            "Seconds since the router's last cycle with fresh metrics from Prometheus "
            "(absent until the first).",
            labels=["router"],
        )
        hits = GaugeMetricFamily(
            "zeta_operator_prefix_cache_hit_rate",
            "Each model's prefix-cache hit rate as the operator saw it (the pods' "
            "vllm:prefix_cache_hits over queries; absent for pods without the counters).",
            labels=["router", "model"],
        )
        # A copy: loops start and end on the event loop while a scrape reads.
        for router, view in list(self._routers.items()):
            revision.add_metric([router], view.revision)
            for value in Fallback:
                rung.add_metric([router, value.value], 1.0 if view.fallback is value else 0.0)
            for model, weight in view.model_weights.items():
                models.add_metric([router, model], weight)
            for model, by_pod in view.pod_weights.items():
                for pod, weight in by_pod.items():
                    pods.add_metric([router, model, pod], weight)
            if view.metrics_good_at is not None:
                age.add_metric([router], max(0.0, now - view.metrics_good_at))
            for model, rate in view.prefix_cache_hit_rates.items():
                hits.add_metric([router, model], rate)
        yield from (revision, rung, models, pods, age, hits)


class Telemetry:
    """Every metric of one operator process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.routers: dict[str, RouterView] = {}
        self.cycle_duration = Histogram(
            "zeta_operator_cycle_duration_seconds",
            "Time one cycle took, by router and kind: full (with metrics from Prometheus) "
            "or pods (pods changed, no Prometheus).",
            ["router", "kind"],
            buckets=_CYCLE_BUCKETS,
            registry=self.registry,
        )
        self.cycle_errors = Counter(
            "zeta_operator_cycle_errors",
            "Cycles that failed, by router and reason: " + ", ".join(ERROR_REASONS) + ".",
            ["router", "reason"],
            registry=self.registry,
        )
        self.registry.register(_RouterCollector(self.routers))

    def router(self, router: str) -> RouterView:
        view = self.routers.get(router)
        if view is None:
            view = self.routers[router] = RouterView()
            for reason in ERROR_REASONS:
                # At 0 from the start, so rate() sees the first error.
                self.cycle_errors.labels(router, reason)
        return view

    def forget(self, router: str) -> None:
        """The router's loop ended: its series go."""
        self.routers.pop(router, None)
        for kind in ("full", "pods"):
            with contextlib.suppress(KeyError):
                self.cycle_duration.remove(router, kind)
        for reason in ERROR_REASONS:
            with contextlib.suppress(KeyError):
                self.cycle_errors.remove(router, reason)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::]:9090`` for IPv6) as a host and a port; ``ValueError`` if not."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def serve(telemetry: Telemetry, host: str, port: int) -> web.AppRunner:
    """Serve ``/metrics`` on ``host:port`` until the runner is cleaned up."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
