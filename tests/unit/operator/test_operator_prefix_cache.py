"""Each model's prefix-cache hit rate: read from the pods' counters as rates, summed over
pods, absent (never 0) where no pod reports the counters; asked apart from the load,
so that its failure or silence leaves the load's collection standing."""

import time
from collections.abc import Mapping

import pytest

from zeta_api import Engine, QueryOverrides, Signal, ZetaRouterStatus, parse_spec
from zeta_operator.collecting import Collector
from zeta_operator.metrics import queries
from zeta_operator.metrics.client import PrometheusTimeout, QueryFailed, Results
from zeta_operator.metrics.extraction import extract
from zeta_operator.reporting import hit_rate, model_statuses
from zeta_operator.settings import OperatorSettings
from zeta_operator.snapshots import PodLoad, PodRecord

HITS, QUERIES = Signal.PREFIX_CACHE_HITS, Signal.PREFIX_CACHE_QUERIES
SPEC = parse_spec(
    {
        "models": [
            {"name": name, "tier": tier, "selector": {"matchLabels": {"model": name}}}
            for tier, name in ((1, "cached"), (2, "plain"))
        ],
        "prometheus": {"url": "http://prometheus:9090"},
        "routingTable": {"configMapName": "chat-routing"},
    }
)


def cache(hits: float | None, looked_up: float | None) -> PodLoad:
    return PodLoad(running=1, waiting=0, prefix_cache_hits=hits, prefix_cache_queries=looked_up)


def sample(pod: str, value: float, at: float = 100.0) -> dict[str, object]:
    return {"metric": {"pod": pod}, "value": [at, str(value)]}


# ------------------------------------------------------------------ the computation
def test_hit_rate_is_hits_over_lookups_summed_over_pods() -> None:
    # 90 of 100 tokens on a busy pod, 0 of 10 on an idle one: 90 of 110, not a mean of
    # 0.9 and 0.0.
    assert hit_rate([cache(90, 100), cache(0, 10)]) == pytest.approx(0.818, abs=1e-3)


def test_hit_rate_is_absent_without_counters_or_lookups() -> None:
    assert hit_rate([]) is None
    assert hit_rate([cache(None, None), PodLoad()]) is None
    assert hit_rate([cache(0, 0), cache(0, 0)]) is None  # idle: nothing looked up


def test_a_pod_reporting_one_counter_of_two_is_left_out() -> None:
    assert hit_rate([cache(50, None), cache(None, 80), cache(10, 40)]) == 0.25


def test_hit_rate_stays_within_0_and_1() -> None:
    # Two rates extrapolated apart may put hits a hair above lookups.
    assert hit_rate([cache(100.4, 100.0)]) == 1.0
    assert hit_rate([cache(0, 5)]) == 0.0


def test_the_rates_from_prometheus_become_each_models_hit_rate() -> None:
    results = {
        Signal.RUNNING: [sample(p, 1) for p in ("c-1", "c-2", "p-1")],
        Signal.WAITING: [sample(p, 0) for p in ("c-1", "c-2", "p-1")],
        # Only the cached model's pods export the counters.
        HITS: [sample("c-1", 30.0), sample("c-2", 10.0)],
        QUERIES: [sample("c-1", 40.0), sample("c-2", 40.0)],
    }
    loads = extract(results, ["c-1", "c-2", "p-1"], now=100.0, max_age=30.0)
    selection = {
        "cached": [PodRecord(namespace="ns", name=n, ready=True) for n in ("c-1", "c-2")],
        "plain": [PodRecord(namespace="ns", name="p-1", ready=True)],
    }
    cached, plain = model_statuses(SPEC, selection, None, loads)
    assert cached.prefix_cache_hit_rate == 0.5
    assert plain.prefix_cache_hit_rate is None
    wire = ZetaRouterStatus(models=(cached, plain)).to_dict()["models"]
    assert isinstance(wire, list)
    assert wire[0]["prefixCacheHitRate"] == 0.5
    assert "prefixCacheHitRate" not in wire[1]  # absent, not 0


# -------------------------------------------------------------------- the queries
def test_vllm_reads_both_counter_names_per_pod_over_the_rate_window() -> None:
    plan = queries.plan(
        Engine.VLLM, QueryOverrides(), namespace="llm", pod_names=["a"], window="30s"
    )
    for signal, new, old in (
        (HITS, "vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
        (QUERIES, "vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    ):
        query = plan[signal]
        # Per pod before `or`: a pod exporting both names counts once.
        assert query == (
            f'sum by (pod) (rate({new}{{namespace="llm",pod=~"a"}}[30s])) or '
            f'sum by (pod) (rate({old}{{namespace="llm",pod=~"a"}}[30s]))'
        )
    assert HITS not in queries.DEFAULT_QUERIES[Engine.SGLANG]  # a gauge only: nothing to sum


def test_split_puts_the_prefix_cache_apart_and_takes_overrides() -> None:
    overrides = QueryOverrides(prefix_cache_hits='sum by (pod) (my_hits{pod=~"{{pods}}"})')
    plan = queries.plan(Engine.VLLM, overrides, namespace="llm", pod_names=["a"], window="1m")
    load, optional = queries.split(plan)
    assert set(load) == {Signal.RUNNING, Signal.WAITING, Signal.KV_CACHE, Signal.TTFT_P95}
    assert set(optional) == {HITS, QUERIES}
    assert optional[HITS] == 'sum by (pod) (my_hits{pod=~"a"})'


# ---------------------------------------------------------------- the collection
class Source:
    """A Prometheus source that answers the load and fails the optional queries as told."""

    def __init__(self, optional_error: Exception | None = None) -> None:
        self.asked: list[set[Signal]] = []
        self.optional_error = optional_error
        self.url, self.timeout = "http://prometheus:9090", 2.0

    async def fetch(self, plan: Mapping[Signal, str]) -> Results:
        self.asked.append(set(plan))
        if HITS in plan and self.optional_error is not None:
            raise self.optional_error
        value = {HITS: 3.0, QUERIES: 4.0}
        # Stamped now: the collector reads the clock to drop stale samples.
        return {s: [sample("c-1", value.get(s, 1.0), time.time())] for s in plan}

    def close(self) -> None:
        pass


async def collect(source: Source) -> Mapping[str, PodLoad]:
    collector = Collector(OperatorSettings(namespaces=("ns",)), namespace="ns")
    collector.source = source  # type: ignore[assignment]  # kept: same URL and timeout
    collected = await collector.collect(SPEC, ["c-1"], lambda fetch: fetch)
    assert collected.ok
    return collected.loads


async def test_the_prefix_cache_is_asked_after_the_load() -> None:
    source = Source()
    loads = await collect(source)
    assert [HITS in asked for asked in source.asked] == [False, True]
    assert (loads["c-1"].prefix_cache_hits, loads["c-1"].prefix_cache_queries) == (3.0, 4.0)


@pytest.mark.parametrize("error", [QueryFailed("bad override"), PrometheusTimeout("slow")])
async def test_a_failing_prefix_cache_query_leaves_the_load_standing(error: Exception) -> None:
    loads = await collect(Source(optional_error=error))
    assert loads["c-1"].known
    assert loads["c-1"].prefix_cache_hits is None
