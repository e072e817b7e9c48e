"""The Prometheus exposition: vLLM's names, labels, and values that track the engine."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zeta_testbed.sim.engine import Engine
from zeta_testbed.sim.metrics import (
    LEGACY_METRIC_NAMES,
    METRIC_NAMES,
    LatencyHistogram,
    SimMetrics,
    render,
)
from zeta_testbed.sim.presets import PRESETS

pytestmark = pytest.mark.unit

EXPECTED = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    # The parser reports counters by their family name, without "_total".
    "vllm:request_success": "counter",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "zeta_sim_requests_cancelled": "counter",
    "zeta_sim_requests_failed": "counter",
}


def scrape(metrics: SimMetrics) -> dict[str, object]:
    body, content_type = render(metrics.registry(), None)
    assert content_type.startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def make_metrics(clock, names=METRIC_NAMES) -> SimMetrics:
    engine = Engine(PRESETS["7b"], clock=clock, sleep=clock.sleep)
    return SimMetrics(model_name="sim-7b", names=names, engine=engine)


class TestNames:
    def test_every_vllm_metric_is_exported_with_its_type_and_model_label(self, clock):
        families = scrape(make_metrics(clock))
        assert {name: families[name].type for name in EXPECTED} == EXPECTED
        for name in EXPECTED:
            for sample in families[name].samples:
                assert sample.labels["model_name"] == "sim-7b"

    def test_no_created_series_that_vllm_does_not_export(self, clock):
        body, _ = render(make_metrics(clock).registry(), None)
        assert b"_created" not in body

    def test_legacy_flag_renames_only_the_kv_gauge(self, clock):
        families = scrape(make_metrics(clock, LEGACY_METRIC_NAMES))
        assert "vllm:gpu_cache_usage_perc" in families
        assert "vllm:kv_cache_usage_perc" not in families
        assert "vllm:num_requests_running" in families

    def test_success_is_split_by_finished_reason(self, clock):
        success = scrape(make_metrics(clock))["vllm:request_success"]
        reasons = {sample.labels["finished_reason"] for sample in success.samples}
        assert reasons == {"length", "stop"}


class TestValues:
    async def test_gauges_and_counters_read_the_engine_at_scrape_time(self, clock):
        metrics = make_metrics(clock)
        engine = metrics.engine
        engine.submit(prompt_tokens=40, output_tokens=2)
        for _ in range(40):
            engine.submit(prompt_tokens=0, output_tokens=1)
        await engine.step()
        families = scrape(metrics)

        def value(name: str) -> float:
            return families[name].samples[0].value

        assert value("vllm:num_requests_running") == 32 - 31  # 31 one-token ones are done
        assert value("vllm:num_requests_waiting") == 41 - 32
        assert value("vllm:prompt_tokens") == 40
        assert value("vllm:generation_tokens") == 32
        assert value("vllm:kv_cache_usage_perc") == pytest.approx(41 / (32 * 1536))

    def test_histogram_buckets_are_cumulative_and_bounds_inclusive(self):
        hist = LatencyHistogram([0.1, 1.0])
        for seconds in (0.05, 0.1, 0.5, 3.0):
            hist.observe(seconds)
        assert hist.cumulative() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
        assert (hist.count, hist.sum) == (4, pytest.approx(3.65))

    def test_openmetrics_is_served_when_asked_for(self, clock):
        _, content_type = render(make_metrics(clock).registry(), "application/openmetrics-text")
        assert content_type.startswith("application/openmetrics-text")
