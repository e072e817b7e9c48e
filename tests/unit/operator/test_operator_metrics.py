"""Queries per engine, placeholders, the extraction of per-pod loads, and the bounded
threads that ask Prometheus."""

import asyncio
import concurrent.futures
import logging
import math
import re
import threading
from collections.abc import Mapping
from typing import Any

import pytest
import requests
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from zeta_api import (
    CONDITION_READY,
    SIGNALS,
    ConditionStatus,
    Engine,
    Fallback,
    QueryOverrides,
    Signal,
)
from zeta_operator.ladder import Ladder
from zeta_operator.metrics import queries
from zeta_operator.metrics.client import (
    MetricsError,
    PrometheusSource,
    PrometheusStalled,
    PrometheusTimeout,
    PrometheusUnreachable,
)
from zeta_operator.metrics.extraction import extract
from zeta_operator.reconciling import RouterLoop
from zeta_operator.reporting import Verdict
from zeta_operator.runtime import Runtime
from zeta_operator.settings import OperatorSettings
from zeta_operator.snapshots import PodRecord

LOGGER = logging.getLogger(__name__)

# /metrics of an llm-d-inference-sim pod (its names and labels; values made up).
LLM_D_SIM_METRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 1
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} 0.25
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.1"} 4
vllm:time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} 5
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.6
vllm:time_to_first_token_seconds_count{model_name="m"} 5
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 5
"""


def exported_series(text: str) -> set[str]:
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_default_vllm_queries_find_llm_d_inference_sim_metrics() -> None:
    exported = exported_series(LLM_D_SIM_METRICS)
    for signal, query in queries.DEFAULT_QUERIES[Engine.VLLM].items():
        if SIGNALS[signal].optional:
            continue  # may answer nothing by design: older releases export no such counter
        names = set(re.findall(r"(vllm:[a-z_]+)\{", query))
        assert names & exported, f"{signal}: none of {names} is exported by llm-d-inference-sim"


def test_only_the_prefix_cache_counters_may_answer_nothing() -> None:
    # The check above skips optional signals: no load signal may become one unnoticed.
    optional = {s for s, info in SIGNALS.items() if info.optional}
    assert optional == {Signal.PREFIX_CACHE_HITS, Signal.PREFIX_CACHE_QUERIES}


def test_kv_cache_query_reads_both_the_current_and_the_legacy_gauge() -> None:
    query = queries.DEFAULT_QUERIES[Engine.VLLM][Signal.KV_CACHE]
    assert "vllm:kv_cache_usage_perc" in query
    assert "vllm:gpu_cache_usage_perc" in query


def test_plan_fills_placeholders_and_takes_overrides() -> None:
    overrides = QueryOverrides(
        waiting='sum by (pod) (q{namespace="{{namespace}}",pod=~"{{pods}}"})'
    )
    plan = queries.plan(
        Engine.SGLANG, overrides, namespace="llm", pod_names=["b.x", "a-1"], window="30s"
    )
    assert plan[Signal.WAITING] == 'sum by (pod) (q{namespace="llm",pod=~"a-1|b\\\\.x"})'
    assert "sglang:num_running_reqs" in plan[Signal.RUNNING]
    assert "[30s]" in plan[Signal.TTFT_P95]
    assert all("{{" not in q for q in plan.values())


def sample(pod: str, value: str, ts: float = 100.0) -> dict[str, object]:
    return {"metric": {"pod": pod}, "value": [ts, value]}


def test_nan_inf_negative_stale_and_missing_samples_make_pods_unknown() -> None:
    results = {
        Signal.RUNNING: [
            sample("ok", "2"),
            sample("nan", "NaN"),
            sample("inf", "+Inf"),
            sample("neg", "-1"),
            sample("stale", "1", ts=0.0),
        ],
        Signal.WAITING: [sample(p, "0") for p in ("ok", "nan", "inf", "neg", "stale")],
        Signal.KV_CACHE: [sample("ok", "1.2"), {"metric": {}, "value": [100, "1"]}],
    }
    pods = ["ok", "nan", "inf", "neg", "stale", "missing"]
    loads = extract(results, pods, now=100.0, max_age=30.0)
    assert loads["ok"].known
    assert loads["ok"].kv_cache == 1.0
    for pod in pods[1:]:
        assert not loads[pod].known, pod
    assert all(
        v is None or math.isfinite(v)
        for load in loads.values()
        for v in (load.running, load.waiting, load.kv_cache)
    )


def test_ladder_keeps_last_good_then_base_weights_then_recovers() -> None:
    ladder, step = Ladder().succeeded()
    ladder, step = ladder.failed(now=10.0, stale_after=5.0)
    assert (ladder.rung, step.fell) == (Fallback.LAST_GOOD, True)
    assert ladder.stale_in(now=12.0, stale_after=5.0) == pytest.approx(3.0)
    ladder, _ = ladder.failed(now=14.0, stale_after=5.0)
    assert ladder.rung is Fallback.LAST_GOOD
    ladder, step = ladder.failed(now=15.0, stale_after=5.0)
    assert (ladder.rung, step.fell) == (Fallback.BASE_WEIGHTS, True)
    ladder, step = ladder.succeeded()
    assert (ladder.rung, step.recovered) == (Fallback.NONE, True)


def test_ladder_without_any_good_weights_starts_at_base_weights() -> None:
    ladder, _ = Ladder().failed(now=0.0, stale_after=60.0)
    assert ladder.rung is Fallback.BASE_WEIGHTS


# ---------------------------------------------------------------- the query threads
class Blocking(PrometheusSource):
    """A source whose queries hang until released, as on a Prometheus that trickles."""

    def __init__(self, *, timeout: float = 0.01, max_queries: int = 10) -> None:
        super().__init__("http://prometheus.invalid", timeout=timeout, max_queries=max_queries)
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def _query(self, promql: str) -> list[Mapping[str, Any]]:
        self.started.release()
        self.release.wait(30)
        return [{"metric": {"pod": promql}, "value": [0, "1"]}]


class NoDefaultExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor, where the ConfigMap and status writes run:
    Prometheus queries must never land here."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a Prometheus query used the loop's default executor")


PLAN = {s: f"q-{s}" for s in Signal}


@pytest.fixture
async def no_default_executor() -> None:
    asyncio.get_running_loop().set_default_executor(NoDefaultExecutor())


async def test_hung_queries_time_out_then_hold_their_slots_then_fail_fast(
    no_default_executor: None,
) -> None:
    source = Blocking(max_queries=2 * len(PLAN))
    try:
        for _ in range(2):
            with pytest.raises(PrometheusTimeout):
                await source.fetch(PLAN)
        # The hung threads outlive the wait: they still count.
        assert source.busy == 2 * len(PLAN)
        with pytest.raises(PrometheusStalled) as caught:
            await source.fetch(PLAN)
        assert caught.value.reason == "PrometheusStalled"
        assert source.busy == 2 * len(PLAN)
    finally:
        source.release.set()
        source.close()


async def test_slots_come_back_when_hung_queries_finish(no_default_executor: None) -> None:
    source = Blocking(max_queries=len(PLAN))
    try:
        with pytest.raises(PrometheusTimeout):
            await source.fetch(PLAN)
        assert source.busy == len(PLAN)
        source.release.set()
        source._executor.shutdown(wait=True)
        assert source.busy == 0
    finally:
        source.close()


async def test_answers_within_the_timeout_are_returned_by_signal(
    no_default_executor: None,
) -> None:
    source = Blocking(timeout=30.0, max_queries=len(PLAN))
    source.release.set()
    try:
        answers = await source.fetch(PLAN)
        assert {s: a[0]["metric"]["pod"] for s, a in answers.items()} == PLAN
        assert source.busy == 0
    finally:
        source.close()


async def test_a_collection_that_needs_more_slots_than_free_is_refused_whole() -> None:
    source = Blocking(max_queries=len(PLAN) + 1)
    try:
        with pytest.raises(PrometheusTimeout):
            await source.fetch(dict(list(PLAN.items())[:2]))
        # Two hung; the next collection needs five of the four left: none is started.
        with pytest.raises(PrometheusStalled):
            await source.fetch(PLAN)
        assert source.busy == 2
    finally:
        source.release.set()
        source.close()


async def test_queries_cancelled_before_they_start_give_their_slots_back() -> None:
    source = Blocking(max_queries=len(PLAN))
    source.close()
    with pytest.raises(PrometheusUnreachable):
        await source.fetch(PLAN)
    assert source.busy == 0


class Answering(PrometheusSource):
    """A source whose HTTP client raises what a real one would."""

    def __init__(self, error: Exception | None, result: object = ()) -> None:
        super().__init__("http://prometheus.invalid", timeout=1.0)
        self.error, self.result = error, result

    def _query(self, promql: str) -> list[Mapping[str, Any]]:
        self._client.custom_query = self._custom_query
        return super()._query(promql)

    def _custom_query(self, query: str, timeout: float | None = None) -> object:
        assert timeout == self.timeout, "the spec's timeout reaches requests"
        if self.error is not None:
            raise self.error
        return list(self.result) if isinstance(self.result, tuple) else self.result


@pytest.mark.parametrize(
    ("error", "result", "reason"),
    [
        (requests.ReadTimeout("slow"), (), "PrometheusTimeout"),
        # What requests raises for a read timeout when urllib3 retries are off.
        (
            requests.ConnectionError(
                MaxRetryError(None, "/api/v1/query", ReadTimeoutError(None, "/", "timed out"))  # type: ignore[arg-type]
            ),
            (),
            "PrometheusTimeout",
        ),
        (requests.ConnectionError("refused"), (), "PrometheusUnreachable"),
        (ValueError("not JSON"), (), "QueryFailed"),
        (None, {"resultType": "matrix"}, "QueryFailed"),
    ],
)
async def test_client_failures_become_reasons(
    error: Exception | None, result: object, reason: str
) -> None:
    source = Answering(error, result)
    try:
        with pytest.raises(MetricsError) as caught:
            await source.fetch(PLAN)
        assert caught.value.reason == reason
        assert source.busy == 0
    finally:
        source.close()


# ------------------------------------------------- the loop while Prometheus is asked
SPEC = {
    "models": [{"name": "m", "tier": 1, "capacity": 8, "selector": {"matchLabels": {"app": "m"}}}],
    "prometheus": {"url": "http://prometheus.invalid", "timeout": "1s"},
    "routingTable": {"configMapName": "m-routing"},
}


def pod(name: str) -> PodRecord:
    return PodRecord(namespace="ns", name=name, labels={"app": "m"}, ip="127.0.0.9", ready=True)


class Unanswered:
    """A Prometheus source that answers (with a timeout) only when told to."""

    def __init__(self) -> None:
        self.url, self.timeout = "http://prometheus.invalid", 1.0
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def fetch(self, queries: Mapping[Signal, str]) -> Any:
        self.asked.set()
        await self.answer.wait()
        raise PrometheusTimeout("no answer")

    def close(self) -> None:
        pass


class Recording(RouterLoop):
    """A loop whose writes are recorded instead of sent to an apiserver."""

    def __init__(self) -> None:
        runtime = Runtime(settings=OperatorSettings(), api=k8s.ApiClient())
        super().__init__(
            runtime, namespace="ns", name="r", uid="u", event=lambda *_: None, logger=LOGGER
        )
        self.tables: list[set[str]] = []
        self.wrote = asyncio.Event()
        self.prometheus = Unanswered()
        self.source = self.prometheus  # type: ignore[assignment]

    async def _publish(self, body: Any, spec: Any, selection: Any, weights: Any) -> Verdict:
        self.tables.append({p.name for pods in selection.values() for p in pods})
        self.wrote.set()
        return Verdict(CONDITION_READY, ConditionStatus.TRUE, "TablePublished", "")

    async def _report(self, *args: Any, **kwargs: Any) -> None:
        pass


async def test_pods_are_published_while_prometheus_is_still_awaited() -> None:
    loop = Recording()
    pods = [pod("a"), pod("b")]
    body = {"metadata": {"generation": 1}, "spec": SPEC}
    cycle = asyncio.create_task(loop.cycle(body, lambda: list(pods), full=True))
    await loop.prometheus.asked.wait()
    pods.append(pod("c"))
    loop.runtime.wake("ns")
    # Bounded: a loop that waits for Prometheus first would never get here.
    await asyncio.wait_for(loop.wrote.wait(), timeout=10)
    # Published from the pod index while the collection is still pending.
    assert loop.tables == [{"a", "b", "c"}]
    assert not cycle.done()
    loop.prometheus.answer.set()
    await cycle
    assert loop.tables[-1] == {"a", "b", "c"}
    assert loop.metrics_verdict is not None
    assert loop.metrics_verdict.reason == "PrometheusTimeout"
    assert loop.ladder.rung is Fallback.BASE_WEIGHTS


async def test_a_new_spec_seen_while_prometheus_is_awaited_wakes_the_loop_again() -> None:
    loop = Recording()
    body: dict[str, Any] = {"metadata": {"generation": 1}, "spec": SPEC}
    cycle = asyncio.create_task(loop.cycle(body, lambda: [pod("a")], full=True))
    await loop.prometheus.asked.wait()
    body["metadata"]["generation"] = 2
    loop.runtime.wake("ns", "r")  # as the spec_changed handler does
    await asyncio.sleep(0)
    loop.prometheus.answer.set()
    await cycle
    assert loop.runtime.waker("ns", "r").is_set()
