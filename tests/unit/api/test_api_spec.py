"""The ZetaRouter spec: defaults, round trips, and one clear message per kind of mistake."""

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeta_api import (
    Balancing,
    Engine,
    LabelSelector,
    ModelSpec,
    Picker,
    PrometheusSpec,
    QueryOverrides,
    RoutingTableRef,
    SelectorOperator,
    SelectorRequirement,
    Signal,
    SpecError,
    Spillover,
    Strategy,
    VirtualModelSpec,
    ZetaApiError,
    ZetaRouterSpec,
    parse_spec,
)
from zeta_api.dumping import dump

pytestmark = pytest.mark.unit

Doc = dict[str, Any]


class TestTraffic:
    def test_the_default_classes_shed_only_sheddable(self, spec_doc: Doc) -> None:
        traffic = parse_spec(spec_doc).traffic
        assert [(c.name, c.priority, c.sheddable) for c in traffic.classes] == [
            ("critical", 300, False),
            ("standard", 200, False),
            ("sheddable", 100, True),
        ]
        assert traffic.default_class == "standard"
        assert (traffic.class_header, traffic.tenant_header) == ("x-zeta-priority", "x-zeta-tenant")
        assert traffic.tenants == ()
        assert traffic.gateway_replicas == 1

    def test_classes_tenants_and_limits_parse(self, spec_doc: Doc) -> None:
        spec_doc["traffic"] = {
            "classes": [
                {"name": "gold", "priority": 10, "maxQueueTime": "5s"},
                {"name": "batch", "priority": 1, "sheddable": True, "queueTimeoutStatus": "429"},
            ],
            "defaultClass": "gold",
            "tenants": [
                {"name": "acme", "priorityClass": "batch", "requestsPerSecond": 2.5,
                 "tokensPerMinute": 6000, "apiKeySha256": ["a" * 64]},
            ],
            "modelClasses": {"auto": "batch"},
            "gatewayReplicas": 3,
        }  # fmt: skip
        traffic = parse_spec(spec_doc).traffic
        assert traffic.classes[0].max_queue_time == 5.0
        assert traffic.classes[1].queue_timeout_status == "429"
        acme = traffic.tenants[0]
        assert (acme.requests_per_second, acme.burst, acme.tokens_per_minute) == (2.5, None, 6000)
        assert traffic.model_classes == {"auto": "batch"}


class TestDefaults:
    def test_a_minimal_spec_gets_the_documented_defaults(self, spec_doc: Doc) -> None:
        spec = parse_spec(spec_doc)
        small, medium = spec.models[0], spec.models[1]
        assert small.served_model_name == "Qwen/Qwen2.5-4B-Instruct"
        assert medium.served_model_name == "qwen-7b"  # defaults to the name
        assert (small.port, small.capacity, small.base_weight, small.static) == (
            8000,
            32,
            1.0,
            False,
        )
        assert medium.capacity == 16
        assert spec.virtual_models[0].spillover is Spillover.UP
        assert spec.virtual_models[0].strategy is Strategy.COMPLEXITY
        assert spec.prometheus.engine is Engine.VLLM
        assert spec.prometheus.timeout == 2.0
        assert spec.prometheus.queries.as_map() == {}
        policy = spec.policy
        assert (policy.interval, policy.smoothing, policy.max_step) == (10.0, 0.5, 0.2)
        assert (policy.min_weight, policy.stale_after, policy.static) == (0.02, 60.0, False)
        assert (policy.saturation.max_waiting, policy.saturation.max_kv_cache) == (5, 0.8)
        assert spec.balancing == Balancing()
        assert spec.balancing.picker is Picker.WEIGHTED_P2C
        assert spec.routing_table.config_map_name == "chat-routing"

    def test_durations_become_seconds(self, spec_doc: Doc) -> None:
        spec_doc["policy"] = {"interval": "1m30s", "staleAfter": "5m"}
        spec_doc["prometheus"]["timeout"] = "500ms"
        spec = parse_spec(spec_doc)
        assert (spec.policy.interval, spec.policy.stale_after) == (90.0, 300.0)
        assert spec.prometheus.timeout == 0.5

    def test_query_overrides_by_signal(self, spec_doc: Doc) -> None:
        spec_doc["prometheus"]["queries"] = {"kvCache": "max by (pod) (x)", "errorRate": "y"}
        queries = parse_spec(spec_doc).prometheus.queries
        assert queries.as_map() == {Signal.KV_CACHE: "max by (pod) (x)", Signal.ERROR_RATE: "y"}

    def test_query_override_fields_are_the_signals(self) -> None:
        every = QueryOverrides(**dict.fromkeys(QueryOverrides.__dataclass_fields__, "q"))
        assert set(every.as_map()) == set(Signal)

    def test_parse_and_lookup(self, spec_doc: Doc) -> None:
        spec = parse_spec(spec_doc)
        assert spec.model("qwen-14b") is spec.models[2]
        assert spec.model("nope") is None

    def test_kopf_style_mappings_are_accepted(self, spec_doc: Doc) -> None:
        from types import MappingProxyType

        assert parse_spec(MappingProxyType(spec_doc)) == parse_spec(spec_doc)


class TestRoundTrip:
    def test_dump_spells_out_defaults_and_parses_back(self, spec_doc: Doc) -> None:
        spec = parse_spec(spec_doc)
        wire = dump(spec)
        assert wire["policy"]["interval"] == "10s"  # type: ignore[index]
        assert wire["models"][1]["servedModelName"] == "qwen-7b"  # type: ignore[index]
        assert parse_spec(wire) == spec

    @given(st.data())
    def test_any_valid_spec_round_trips(self, data: st.DataObject) -> None:
        spec = data.draw(specs())
        assert parse_spec(dump(spec)) == spec


_NAME = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z")


@st.composite
def specs(draw: st.DrawFn) -> ZetaRouterSpec:
    names = draw(st.lists(_NAME, min_size=1, max_size=4, unique=True))
    models = tuple(
        ModelSpec(
            name=name,
            tier=draw(st.integers(1, 100)),
            selector=LabelSelector(
                match_labels=draw(st.dictionaries(st.sampled_from(["a", "b"]), _NAME, min_size=1)),
                match_expressions=draw(
                    st.lists(
                        st.builds(
                            SelectorRequirement,
                            key=_NAME,
                            operator=st.just(SelectorOperator.EXISTS),
                        ),
                        max_size=2,
                    ).map(tuple)
                ),
            ),
            port=draw(st.integers(1, 65535)),
            capacity=draw(st.integers(1, 100000)),
            base_weight=draw(st.floats(0, 1e6, exclude_min=True)),
            static=draw(st.booleans()),
        )
        for name in names
    )
    virtual_names = draw(st.lists(_NAME.filter(lambda n: n not in names), max_size=3, unique=True))
    virtual = tuple(
        VirtualModelSpec(
            name=name,
            strategy=draw(st.sampled_from(Strategy)),
            candidates=tuple(draw(st.lists(st.sampled_from(names), min_size=1, unique=True))),
            spillover=draw(st.sampled_from(Spillover)),
        )
        for name in virtual_names
    )
    millis = st.integers(1, 10**7).map(lambda ms: ms / 1000)
    return ZetaRouterSpec(
        models=models,
        virtual_models=virtual,
        prometheus=PrometheusSpec(
            url="http://prom:9090",
            engine=draw(st.sampled_from(Engine)),
            queries=QueryOverrides(waiting=draw(st.none() | st.just("sum by (pod) (w)"))),
            timeout=draw(millis),
        ),
        routing_table=RoutingTableRef(config_map_name="chat-routing"),
    )


def _set(path: str, value: object) -> Callable[[Doc], None]:
    """A mutation that sets a dotted path (``models.1.capacity``) in the spec."""

    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return mutate


def _append(path: str, value: object) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        node: Any = doc
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        node.append(value)

    return mutate


INVALID = [
    # wrong types
    (
        "wrong type: int as string",
        _set("models.0.tier", "1"),
        "spec.models[0].tier",
        "must be an integer",
    ),
    (
        "wrong type: bool as int",
        _set("models.0.port", True),
        "spec.models[0].port",
        "must be an integer",
    ),
    (
        "wrong type: float as int",
        _set("models.0.capacity", 1.5),
        "spec.models[0].capacity",
        "must be an integer",
    ),
    ("wrong type: object as list", _set("models", {}), "spec.models", "must be an array"),
    ("wrong type: list as object", _set("prometheus", []), "spec.prometheus", "must be an object"),
    (
        "wrong type: number as bool",
        _set("models.0.static", 1),
        "spec.models[0].static",
        "must be a boolean",
    ),
    (
        "wrong type: duration as number",
        _set("prometheus.timeout", 2),
        "spec.prometheus.timeout",
        "must be a duration",
    ),
    # out of range
    (
        "capacity below 1",
        _set("models.1.capacity", 0),
        "spec.models[1].capacity",
        "must be >= 1, got 0",
    ),
    ("tier below 1", _set("models.0.tier", 0), "spec.models[0].tier", "must be >= 1"),
    ("port above 65535", _set("models.0.port", 70000), "spec.models[0].port", "must be <= 65535"),
    ("base weight 0", _set("models.0.baseWeight", 0), "spec.models[0].baseWeight", "must be > 0"),
    (
        "base weight NaN",
        _set("models.0.baseWeight", float("nan")),
        "spec.models[0].baseWeight",
        "finite",
    ),
    (
        "smoothing above 1",
        _set("policy", {"smoothing": 1.5}),
        "spec.policy.smoothing",
        "must be <= 1",
    ),
    (
        "min weight above 0.5",
        _set("policy", {"minWeight": 0.6}),
        "spec.policy.minWeight",
        "must be <= 0.5",
    ),
    (
        "negative max waiting",
        _set("policy", {"saturation": {"maxWaiting": -1}}),
        "spec.policy.saturation.maxWaiting",
        ">= 0",
    ),
    (
        "kv cache above 1",
        _set("policy", {"saturation": {"maxKVCache": 2}}),
        "spec.policy.saturation.maxKVCache",
        "<= 1",
    ),
    (
        "interval below 1s",
        _set("policy", {"interval": "500ms"}),
        "spec.policy.interval",
        "at least 1s",
    ),
    (
        "bad duration",
        _set("policy", {"staleAfter": "1 minute"}),
        "spec.policy.staleAfter",
        "must be a duration",
    ),
    ("no models", _set("models", []), "spec.models", "at least 1 item"),
    (
        "empty candidates",
        _set("virtualModels.0.candidates", []),
        "spec.virtualModels[0].candidates",
        "at least 1",
    ),
    ("name too long", _set("models.0.name", "a" * 129), "spec.models[0].name", "at most 128"),
    (
        "empty served name",
        _set("models.0.servedModelName", ""),
        "spec.models[0].servedModelName",
        "at least 1",
    ),
    # patterns
    ("bad model name", _set("models.0.name", "-x"), "spec.models[0].name", "must match"),
    ("bad url", _set("prometheus.url", "prometheus:9090"), "spec.prometheus.url", "must match"),
    (
        "bad config map name",
        _set("routingTable.configMapName", "Chat_Routing"),
        "spec.routingTable.configMapName",
        "must match",
    ),
    (
        "bad label value",
        _set("models.0.selector.matchLabels.model", "a b"),
        "spec.models[0].selector.matchLabels[model]",
        "must match",
    ),
    # unknown enums
    (
        "unknown strategy",
        _set("virtualModels.0.strategy", "fastest"),
        "spec.virtualModels[0].strategy",
        "must be one of 'complexity', 'weighted'",
    ),
    (
        "unknown spillover",
        _set("virtualModels.0.spillover", "sideways"),
        "spec.virtualModels[0].spillover",
        "must be one of",
    ),
    (
        "unknown engine",
        _set("prometheus.engine", "tgi"),
        "spec.prometheus.engine",
        "must be one of 'vllm', 'sglang'",
    ),
    (
        "unknown picker",
        _set("balancing", {"picker": "random"}),
        "spec.balancing.picker",
        "must be one of",
    ),
    (
        "unknown operator",
        _set("models.1.selector.matchExpressions.0.operator", "Like"),
        "spec.models[1].selector.matchExpressions[0].operator",
        "must be one of",
    ),
    # required and unknown fields
    ("missing prometheus", _delete("prometheus"), "spec.prometheus", "required"),
    ("missing tier", _delete("models.0.tier"), "spec.models[0].tier", "required"),
    ("missing table ref", _set("routingTable", {}), "spec.routingTable.configMapName", "required"),
    ("unknown field", _set("models.0.capasity", 4), "spec.models[0].capasity", "unknown field"),
    (
        "unknown signal",
        _set("prometheus.queries", {"latency": "x"}),
        "spec.prometheus.queries.latency",
        "unknown field",
    ),
    (
        "empty query",
        _set("prometheus.queries", {"waiting": ""}),
        "spec.prometheus.queries.waiting",
        "at least 1",
    ),
    # cross-field rules
    (
        "duplicate model",
        _append("models", {"name": "qwen-4b", "tier": 1, "selector": {"matchLabels": {"a": "b"}}}),
        "spec.models[3].name",
        "duplicate value 'qwen-4b' (also in spec.models[0])",
    ),
    (
        "duplicate virtual model",
        _append(
            "virtualModels", {"name": "auto", "strategy": "weighted", "candidates": ["qwen-4b"]}
        ),
        "spec.virtualModels[1].name",
        "duplicate value 'auto'",
    ),
    (
        "virtual named like a model",
        _set("virtualModels.0.name", "qwen-7b"),
        "spec.virtualModels[0].name",
        "'qwen-7b' is already the name of a model",
    ),
    (
        "dangling candidate",
        _append("virtualModels.0.candidates", "qwen-70b"),
        "spec.virtualModels[0].candidates[3]",
        "'qwen-70b' is not the name of a model in spec.models",
    ),
    (
        "duplicate candidate",
        _append("virtualModels.0.candidates", "qwen-4b"),
        "spec.virtualModels[0].candidates[3]",
        "duplicate value 'qwen-4b'",
    ),
    (
        "empty selector",
        _set("models.0.selector", {}),
        "spec.models[0].selector",
        "must not be empty",
    ),
    (
        "In without values",
        _set("models.1.selector.matchExpressions.0.values", []),
        "spec.models[1].selector.matchExpressions[0].values",
        "non-empty for In",
    ),
    (
        "default class not declared",
        _set("traffic", {"defaultClass": "gold"}),
        "spec.traffic.defaultClass",
        "'gold' is not a declared class",
    ),
    (
        "tenant class not declared",
        _set("traffic", {"tenants": [{"name": "acme", "priorityClass": "gold"}]}),
        "spec.traffic.tenants[0].priorityClass",
        "'gold' is not a declared class",
    ),
    (
        "model class not declared",
        _set("traffic", {"modelClasses": {"qwen-4b": "gold"}}),
        "spec.traffic.modelClasses.qwen-4b",
        "'gold' is not a declared class",
    ),
    (
        "model class for no model",
        _set("traffic", {"modelClasses": {"qwen-70b": "standard"}}),
        "spec.traffic.modelClasses.qwen-70b",
        "'qwen-70b' is not a model or virtual model",
    ),
    (
        "api key not a digest",
        _set("traffic", {"tenants": [{"name": "acme", "apiKeySha256": ["sk-secret"]}]}),
        "spec.traffic.tenants[0].apiKeySha256[0]",
        "must match",
    ),
    (
        "queue timeout status",
        _set(
            "traffic",
            {
                "classes": [{"name": "a", "priority": 1, "queueTimeoutStatus": "500"}],
                "defaultClass": "a",
            },
        ),
        "spec.traffic.classes[0].queueTimeoutStatus",
        "must be one of",
    ),
    (
        "Exists with values",
        _set("models.1.selector.matchExpressions.0.operator", "Exists"),
        "spec.models[1].selector.matchExpressions[0].values",
        "empty for Exists",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [pytest.param(m, p, msg, id=name) for name, m, p, msg in INVALID],
)
def test_each_mistake_names_its_field(
    spec_doc: Doc, mutate: Callable[[Doc], None], path: str, message: str
) -> None:
    mutate(spec_doc)
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_doc)
    text = str(caught.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text
    assert isinstance(caught.value, ZetaApiError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", [None, [], "spec", 3])
def test_a_spec_must_be_an_object(value: object) -> None:
    with pytest.raises(SpecError, match=r"^spec: must be an object"):
        parse_spec(value)


def test_bad_durations_are_chained_to_the_duration_error(spec_doc: Doc) -> None:
    spec_doc["prometheus"]["timeout"] = "2x"
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_doc)
    assert caught.value.__cause__ is not None


class TestSelectorMatching:
    @pytest.mark.parametrize(
        ("operator", "values", "labels", "expected"),
        [
            (SelectorOperator.IN, ("a", "b"), {"k": "a"}, True),
            (SelectorOperator.IN, ("a",), {"k": "c"}, False),
            (SelectorOperator.IN, ("a",), {}, False),
            (SelectorOperator.NOT_IN, ("a",), {"k": "c"}, True),
            (SelectorOperator.NOT_IN, ("a",), {}, True),
            (SelectorOperator.NOT_IN, ("a",), {"k": "a"}, False),
            (SelectorOperator.EXISTS, (), {"k": ""}, True),
            (SelectorOperator.EXISTS, (), {}, False),
            (SelectorOperator.DOES_NOT_EXIST, (), {}, True),
            (SelectorOperator.DOES_NOT_EXIST, (), {"k": "a"}, False),
        ],
    )
    def test_requirements(
        self,
        operator: SelectorOperator,
        values: tuple[str, ...],
        labels: dict[str, str],
        expected: bool,
    ) -> None:
        req = SelectorRequirement(key="k", operator=operator, values=values)
        assert req.matches(labels) is expected

    def test_labels_and_expressions_must_all_hold(self) -> None:
        selector = LabelSelector(
            match_labels={"app": "vllm"},
            match_expressions=(
                SelectorRequirement(key="model", operator=SelectorOperator.IN, values=("a",)),
            ),
        )
        assert selector.matches({"app": "vllm", "model": "a", "extra": "x"})
        assert not selector.matches({"app": "vllm", "model": "b"})
        assert not selector.matches({"app": "sglang", "model": "a"})
