"""Per-request counters and histograms in plain dicts, compiled, for the registry to read
at scrape time.

Why not ``prometheus_client``'s ``labels(...).inc()``: each update runs about a dozen
interpreted calls and takes a lock, three updates a request (5 % of the sidecar's CPU,
and latency on the path of every answer). Here an update is a dict look-up and an add in
compiled code; :mod:`~zeta_sidecar.metrics` hands the values to the registry, as the same
families (names, types, labels, ``_created`` series) the metric objects exported.
Everything runs on the event loop's thread: no lock.
"""

import time
from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["Buckets", "Counts", "StatusCounts", "Timings"]

_INF = float("inf")


class Counts:
    """A counter's series: its value and creation time per tuple of label values."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}
        """Unix time each series began (``_created``)."""

    def add(self, *labels: str) -> None:
        """Count one for ``labels``."""
        self._add(labels)

    def _add(self, key: tuple[str, ...]) -> None:
        values = self.values
        value = values.get(key)
        if value is None:
            self.created[key] = time.time()
            value = 0.0
        values[key] = value + 1.0

    def remove(self, key: tuple[str, ...]) -> None:
        """Drop a series (its labels left the table)."""
        self.values.pop(key, None)
        self.created.pop(key, None)


class StatusCounts(Counts):
    """Counts whose last label is a status code (``zeta_requests``)."""

    def count(self, model: str, chosen: str, pod: str, code: int) -> None:
        """Count one answer."""
        self._add((model, chosen, pod, str(code)))


class Buckets:
    """A histogram's series per one label value: observations per bucket, not cumulative,
    and their sum last."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds: list[float] = [float(b) for b in buckets]
        if not self.bounds or self.bounds[-1] != _INF:
            self.bounds.append(_INF)
        self.series: dict[str, list[float]] = {}
        self.created: dict[str, float] = {}

    def observe(self, label: str, value: float) -> None:
        """Record ``value`` in the first bucket whose bound is at least it."""
        counts = self.series.get(label)
        if counts is None:
            counts = self.series[label] = [0.0] * (len(self.bounds) + 1)
            self.created[label] = time.time()
        counts[bisect_left(self.bounds, value)] += 1.0
        counts[-1] += value


class Timings:
    """Latency and time to first byte per requested model."""

    def __init__(self, latency: Sequence[float], ttfb: Sequence[float]) -> None:
        self.latency = Buckets(latency)
        self.ttfb = Buckets(ttfb)

    def observe(self, model: str, latency: float, ttfb: float | None) -> None:
        """Record a request's latency and, if a body started, its time to first byte."""
        self.latency.observe(model, latency)
        if ttfb is not None:
            self.ttfb.observe(model, ttfb)
