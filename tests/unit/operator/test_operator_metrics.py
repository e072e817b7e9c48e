"""Queries per engine, placeholders, and the extraction of per-pod loads."""

import math
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zeta_api import Engine, Fallback, QueryOverrides, Signal
from zeta_operator.ladder import Ladder
from zeta_operator.metrics import queries
from zeta_operator.metrics.extraction import extract

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
        names = set(re.findall(r"(vllm:[a-z_]+)\{", query))
        assert names & exported, f"{signal}: none of {names} is exported by llm-d-inference-sim"


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
