"""The workers' ``/metrics`` merged into one exposition, as one process would export them.

Each worker keeps its own registry, exactly as a single sidecar does (nothing on the
hot path changes with ``--workers``); the group's admin port asks every worker for its
text at scrape time and merges it here, series by series (same name, same labels):

- counters and histograms (buckets, ``_count``, ``_sum``): summed, so
  ``zeta_requests_total`` counts the requests of the whole group. A series only some
  workers have is taken as it is;
- ``_created`` timestamps: the earliest (when the group's series began);
- gauges by what they mean, :data:`GAUGE_MODES`; a gauge not named there is summed, as
  most gauges here count something each worker holds (requests in flight per pod, open
  connections, queued requests, event-loop tasks: the group holds their sum).

Why this and not prometheus_client's multiprocess mode: that mode makes every metric
value a shared-memory file write under a lock (on each request's counter and histogram
updates), and exports only what is in those files, so the gauges read at scrape time
from the worker's live state (in flight and ejected per pod, queue lengths, the affinity
index, event-loop tasks) would have to be copied into files on a timer. Asking the
workers costs a local HTTP round trip per worker per scrape and nothing per request.
The group never restarts a worker (a worker's death takes the group down), so a merged
counter never falls because a worker went away and came back empty.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = ["GAUGE_MODES", "merge_expositions", "merge_families", "sample_sum"]

Combine = Callable[[float, float], float]

GAUGE_MODES: dict[str, Combine] = {
    # The revision every worker serves: one still on the old table holds it back, so a
    # dashboard shows a reload as done only once it reached the whole group.
    "zeta_table_revision": min,
    # 1 while the pod is ejected (or probing) in at least one worker: each worker ejects
    # on its own failures, and alerts written for one process (== 1) keep their meaning.
    "zeta_pod_ejected": max,
    # Each worker's index is bounded by indexEntries per kind: the fullest worker tells
    # whether the bound is too small (a sum would exceed the bound it is compared with).
    "zeta_affinity_index_entries": max,
}
"""How gauges other than sums combine across workers, by family name."""

_Key = tuple[str, tuple[tuple[str, str], ...]]


def _combine_for(family: Metric) -> Combine:
    if family.type == "gauge":
        if family.name.endswith("_created"):
            return min
        return GAUGE_MODES.get(family.name, _add)
    return _add  # counter, histogram, summary, untyped: counts


def _add(a: float, b: float) -> float:
    return a + b


def merge_families(workers: Iterable[Iterable[Metric]]) -> list[Metric]:
    """Families of several processes merged (see the module's rules), in first-seen order."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[_Key, Sample]] = {}
    for families in workers:
        for family in families:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            combine = _combine_for(family)
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                seen = series.get(key)
                if seen is None:
                    series[key] = sample
                else:
                    series[key] = seen._replace(value=combine(seen.value, sample.value))
    for name, family in merged.items():
        family.samples = list(values[name].values())
    return list(merged.values())


class _Fixed(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge_expositions(texts: Iterable[str]) -> bytes:
    """Prometheus text expositions (one per process) merged into one."""
    families = merge_families(text_string_to_metric_families(text) for text in texts)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of an exposition's samples named ``name`` whose labels include ``labels``
    (one worker's total of a counter over its other labels, say)."""
    wanted = labels.items()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and wanted <= sample.labels.items()
    )
