"""Tables the operator builds are tables the sidecar reads: built from drawn pods (IPv4
and IPv6, draining or not, with loads known, partly known or unknown, idle or flooded)
through the real weighting, every encoded table parses back, equal, with its hash."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeta_api import content_hash, encode_routing_table, parse_routing_table, parse_spec
from zeta_operator import deciding, weighting
from zeta_operator.snapshots import PodLoad, PodRecord
from zeta_operator.tables import build_table

pytestmark = pytest.mark.unit

MODELS = ("qwen-4b", "qwen-7b", "qwen-14b")
SPEC = parse_spec(
    {
        "models": [
            {"name": name, "tier": tier, "selector": {"matchLabels": {"model": name}}}
            for tier, name in enumerate(MODELS, start=1)
        ],
        "virtualModels": [{"name": "auto", "strategy": "complexity", "candidates": list(MODELS)}],
        "prometheus": {"url": "http://prometheus:9090"},
        "routingTable": {"configMapName": "chat-routing"},
    }
)

_signal = st.none() | st.floats(0, 1e6) | st.sampled_from((0.0, 5e-324, 1e300))
_loads = st.none() | st.builds(
    PodLoad,
    running=_signal,
    waiting=_signal,
    kv_cache=st.none() | st.floats(0, 1),
    ttft_p95=_signal,
    error_rate=_signal,
)


@st.composite
def pods(draw: st.DrawFn) -> tuple[dict[str, list[PodRecord]], dict[str, PodLoad]]:
    count = draw(st.integers(0, 40))
    selection: dict[str, list[PodRecord]] = {name: [] for name in MODELS}
    loads: dict[str, PodLoad] = {}
    for i in range(count):
        name = f"pod-{i}"
        v6 = draw(st.booleans())
        record = PodRecord(
            namespace="llm",
            name=name,
            ip=f"fd00::{i:x}" if v6 else f"10.0.{i // 250}.{i % 250}",
            ready=True,
            draining=draw(st.integers(0, 4)) == 0,
        )
        selection[draw(st.sampled_from(MODELS))].append(record)
        load = draw(_loads)
        if load is not None:
            loads[name] = load
    return selection, loads


@settings(max_examples=300)
@given(pods(), st.integers(0, 3), st.sampled_from((2, 4, 6)))
def test_every_built_table_parses_back(
    drawn: tuple[dict[str, list[PodRecord]], dict[str, PodLoad]], updates: int, precision: int
) -> None:
    selection, loads = drawn
    inputs = deciding.model_inputs(SPEC, selection, loads)
    weights = weighting.base_weights(inputs, SPEC.policy)
    for _ in range(updates):
        weights = weighting.update(weights.state, inputs, SPEC.policy)
    table = build_table(
        router="llm/chat",
        spec=SPEC,
        selection=selection,
        weights=weights,
        loads=loads,
        revision=7,
        generated_at="2026-01-01T00:00:00Z",
        precision=precision,
    )
    encoded = encode_routing_table(table)
    parsed = parse_routing_table(encoded.text.encode())
    assert parsed == table
    assert encoded.content_hash == content_hash(parsed)


def test_the_table_carries_the_routers_and_each_models_affinity() -> None:
    doc = {
        "models": [
            {"name": name, "tier": tier, "selector": {"matchLabels": {"model": name}}}
            for tier, name in enumerate(MODELS, start=1)
        ],
        "prometheus": {"url": "http://prometheus:9090"},
        "routingTable": {"configMapName": "chat-routing"},
        "balancing": {"affinity": {"prefix": True, "loadBound": 0.5, "sessionHeader": "x-conv"}},
    }
    doc["models"][2]["affinity"] = {"session": True}  # type: ignore[index]
    spec = parse_spec(doc)
    selection: dict[str, list[PodRecord]] = {name: [] for name in MODELS}
    inputs = deciding.model_inputs(spec, selection, {})
    table = build_table(
        router="llm/chat",
        spec=spec,
        selection=selection,
        weights=weighting.base_weights(inputs, spec.policy),
        loads={},
        revision=1,
        generated_at="2026-01-01T00:00:00Z",
        precision=4,
    )
    assert table.balancing.affinity == spec.balancing.affinity
    assert table.models["qwen-4b"].affinity is None  # the router's settings apply
    assert table.models["qwen-14b"].affinity == spec.models[2].affinity
    assert parse_routing_table(encode_routing_table(table).text) == table
