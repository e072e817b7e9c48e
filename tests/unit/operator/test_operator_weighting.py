"""Weighting: the properties the sidecars and the admins rely on, for any load."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeta_api import PolicySpec, parse_spec
from zeta_operator import weighting
from zeta_operator.snapshots import PodLoad
from zeta_operator.weighting import ModelInput, PodInput

BASE_SPEC = {
    "models": [{"name": "m", "tier": 1, "selector": {"matchLabels": {"a": "b"}}}],
    "prometheus": {"url": "http://p:9090"},
    "routingTable": {"configMapName": "t"},
}


def policy(**fields: object) -> PolicySpec:
    return parse_spec({**BASE_SPEC, "policy": fields}).policy


finite = st.floats(min_value=0, max_value=1e4, allow_nan=False)
unit = st.floats(min_value=0, max_value=1)
loads = st.one_of(
    st.just(PodLoad()),
    st.builds(
        PodLoad,
        running=finite,
        waiting=finite,
        kv_cache=st.one_of(st.none(), unit),
        ttft_p95=st.one_of(st.none(), st.floats(min_value=0.001, max_value=100)),
        error_rate=st.one_of(st.none(), st.floats(min_value=0, max_value=50)),
    ),
)
policies = st.builds(
    policy,
    smoothing=unit,
    maxStep=unit,
    minWeight=st.floats(min_value=0, max_value=0.5),
)


@st.composite
def routers(draw: st.DrawFn) -> tuple[ModelInput, ...]:
    models = []
    for m in range(draw(st.integers(1, 3))):
        pods = tuple(
            PodInput(
                name=f"m{m}-p{i}",
                capacity=draw(st.integers(1, 64)),
                load=draw(loads),
                draining=draw(st.booleans()) if i else False,
            )
            for i in range(draw(st.integers(1, 8)))
        )
        models.append(
            ModelInput(
                name=f"m{m}",
                base_weight=draw(st.floats(min_value=0.01, max_value=100)),
                static=draw(st.booleans()),
                pods=pods,
            )
        )
    return tuple(models)


def check_valid(w: weighting.Weights, models: tuple[ModelInput, ...]) -> None:
    for model in models:
        pods = w.pods[model.name]
        assert all(math.isfinite(v) and v >= 0 for v in pods.values())
        serving = [p.name for p in model.pods if not p.draining]
        assert math.isclose(sum(pods[p] for p in serving), 1.0, abs_tol=1e-9)
        assert all(pods[p.name] == 0 for p in model.pods if p.draining)
    assert all(math.isfinite(v) and v >= 0 for v in w.models.values())
    assert math.isclose(sum(w.models.values()), 1.0, abs_tol=1e-9)


@given(routers(), policies, routers())
@settings(max_examples=300)
def test_weights_are_finite_non_negative_and_sum_to_one_per_model(
    first: tuple[ModelInput, ...], pol: PolicySpec, second: tuple[ModelInput, ...]
) -> None:
    w1 = weighting.update(None, first, pol)
    check_valid(w1, first)
    # Whatever came before (other pods, other models), the next update is valid too.
    check_valid(weighting.update(w1.state, second, pol), second)
    check_valid(weighting.reshape(w1.state, second, pol), second)
    check_valid(weighting.base_weights(second, pol), second)


@given(st.lists(loads, min_size=2, max_size=8), policies, st.data())
@settings(max_examples=300)
def test_more_load_never_means_more_weight(
    pod_loads: list[PodLoad], pol: PolicySpec, data: st.DataObject
) -> None:
    pods = tuple(PodInput(name=f"p{i}", capacity=32, load=x) for i, x in enumerate(pod_loads))
    # Make a twin of one known pod, busier in every signal.
    base = data.draw(st.sampled_from(pods))
    if not base.load.known:
        return
    extra = data.draw(st.floats(min_value=0, max_value=100))
    busier = PodLoad(
        running=(base.load.running or 0) + extra,
        waiting=base.load.waiting,
        kv_cache=base.load.kv_cache,
        ttft_p95=base.load.ttft_p95,
        error_rate=base.load.error_rate,
    )
    model = ModelInput(name="m", pods=(*pods, PodInput(name="busy", capacity=32, load=busier)))
    w = weighting.update(None, (model,), pol).pods["m"]
    assert w["busy"] <= w[base.name] + 1e-12


@given(st.lists(loads, min_size=1, max_size=8), st.lists(loads, min_size=1, max_size=8), policies)
@settings(max_examples=300)
def test_change_per_interval_is_bounded_by_max_step(
    before: list[PodLoad], after: list[PodLoad], pol: PolicySpec
) -> None:
    n = min(len(before), len(after))

    def model(xs: list[PodLoad]) -> tuple[ModelInput, ...]:
        pods = tuple(PodInput(name=f"p{i}", capacity=32, load=xs[i]) for i in range(n))
        return (ModelInput(name="m", pods=pods), ModelInput(name="n", pods=pods[:1]))

    w1 = weighting.update(None, model(before), pol)
    w2 = weighting.update(w1.state, model(after), pol)
    for pod, weight in w2.pods["m"].items():
        assert abs(weight - w1.pods["m"][pod]) <= pol.max_step + 1e-9


@given(st.lists(loads.filter(lambda x: x.known), min_size=1, max_size=6), policies)
def test_unknown_pods_are_neutral(known: list[PodLoad], pol: PolicySpec) -> None:
    pods = tuple(PodInput(name=f"p{i}", capacity=32, load=x) for i, x in enumerate(known))
    model = ModelInput(name="m", pods=(*pods, PodInput(name="unknown", capacity=32)))
    targets = weighting.targets(model)
    others = [targets[p.name] for p in pods]
    assert targets["unknown"] > 0
    assert min(others) - 1e-12 <= targets["unknown"] <= max(others) + 1e-12
    w = weighting.update(None, (model,), pol).pods["m"]
    assert (
        min(w[p.name] for p in pods) - 1e-9 <= w["unknown"] <= max(w[p.name] for p in pods) + 1e-9
    )


def test_every_ready_pod_keeps_min_weight() -> None:
    idle, swamped = PodLoad(running=0, waiting=0), PodLoad(running=32, waiting=500, kv_cache=1)
    model = ModelInput(
        name="m",
        pods=(
            PodInput(name="a", capacity=32, load=idle),
            PodInput(name="b", capacity=32, load=swamped),
        ),
    )
    w = weighting.update(None, (model,), policy(minWeight=0.1)).pods["m"]
    assert w["b"] >= 0.1 - 1e-12
    assert w["a"] > w["b"]


def test_base_weight_twice_its_sibling_doubles_the_share_under_equal_load() -> None:
    def model(name: str, base: float) -> ModelInput:
        load = PodLoad(running=3, waiting=0)
        return ModelInput(
            name=name, base_weight=base, pods=(PodInput(name=f"{name}-0", capacity=32, load=load),)
        )

    w = weighting.update(None, (model("a", 2), model("b", 1)), policy())
    assert w.models["a"] == pytest.approx(2 * w.models["b"])


def test_static_models_ignore_load_and_drained_pods_get_zero() -> None:
    model = ModelInput(
        name="m",
        static=True,
        pods=(
            PodInput(name="a", capacity=32, load=PodLoad(running=0, waiting=0)),
            PodInput(name="b", capacity=32, load=PodLoad(running=90, waiting=90)),
            PodInput(name="c", capacity=32, draining=True),
        ),
    )
    w = weighting.update(None, (model,), policy()).pods["m"]
    assert w == {"a": 0.5, "b": 0.5, "c": 0.0}


def test_saturated_only_when_every_serving_pod_is() -> None:
    full, free = PodLoad(running=32, waiting=9), PodLoad(running=1, waiting=0)
    pods = (PodInput(name="a", capacity=32, load=full), PodInput(name="b", capacity=32, load=free))
    pol = policy(saturation={"maxWaiting": 5})
    assert not weighting.update(None, (ModelInput(name="m", pods=pods),), pol).saturated["m"]
    both = (pods[0], PodInput(name="b", capacity=32, load=full))
    assert weighting.update(None, (ModelInput(name="m", pods=both),), pol).saturated["m"]
