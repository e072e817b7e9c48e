"""The operator's own metrics: what the scrape reads of each router, and nothing of a
router that is gone."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zeta_api import Fallback
from zeta_operator.cli import parse_args
from zeta_operator.telemetry import Telemetry, parse_address


def samples(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(telemetry.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_router_is_scraped_as_its_loop_left_it() -> None:
    telemetry = Telemetry()
    view = telemetry.router("llm/chat")
    view.revision, view.fallback = 7, Fallback.LAST_GOOD
    view.model_weights = {"a": 0.75, "b": 0.25}
    view.pod_weights = {"a": {"a-1": 1.0}, "b": {"b-1": 0.5, "b-2": 0.5}}
    got = samples(telemetry)
    r = ("router", "llm/chat")
    assert got[("zeta_operator_table_revision", (r,))] == 7
    assert got[("zeta_operator_fallback", (r, ("rung", "last-good")))] == 1
    assert got[("zeta_operator_fallback", (r, ("rung", "none")))] == 0
    assert got[("zeta_operator_model_weight", (("model", "a"), r))] == 0.75
    assert got[("zeta_operator_endpoint_weight", (("endpoint", "b-2"), ("model", "b"), r))] == 0.5
    # Errors start at 0, so the first one is a rate; no age before fresh metrics.
    assert got[("zeta_operator_cycle_errors_total", (("reason", "prometheus"), r))] == 0
    assert not [k for k in got if k[0] == "zeta_operator_metrics_age_seconds"]
    view.metrics_good_at = 0.0
    assert samples(telemetry)[("zeta_operator_metrics_age_seconds", (r,))] > 1e9
    # Hit rates as in the status: only models whose pods count lookups have one.
    assert not [k for k in got if k[0] == "zeta_operator_prefix_cache_hit_rate"]
    view.prefix_cache_hit_rates = {"a": 0.4}
    hits = [k for k in samples(telemetry) if k[0] == "zeta_operator_prefix_cache_hit_rate"]
    assert hits == [("zeta_operator_prefix_cache_hit_rate", (("model", "a"), r))]
    assert samples(telemetry)[hits[0]] == 0.4


def test_a_forgotten_router_leaves_no_series() -> None:
    telemetry = Telemetry()
    telemetry.router("llm/chat").model_weights = {"a": 1.0}
    telemetry.cycle_duration.labels("llm/chat", "full").observe(0.1)
    telemetry.forget("llm/chat")
    assert not [labels for _, labels in samples(telemetry) if ("router", "llm/chat") in labels]


def test_the_metrics_address() -> None:
    assert parse_address("0.0.0.0:9090") == ("0.0.0.0", 9090)
    assert parse_address("[::]:9090") == ("::", 9090)
    for bad in ("9090", ":9090", "host:", "host:0", "host:http"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_address(bad)
    settings = parse_args(["-A", "--metrics", "127.0.0.1:9191"])
    assert settings.metrics_address == ("127.0.0.1", 9191)
    assert parse_args(["-A"]).metrics_address is None
    with pytest.raises(SystemExit):
        parse_args(["-A", "--metrics", "9191"])
