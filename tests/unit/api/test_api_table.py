"""The routing table: what the sidecar accepts, what it refuses, and canonical forms."""

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeta_api import (
    DEFAULT_MAX_BYTES,
    Balancing,
    Endpoint,
    EndpointLoad,
    ModelEntry,
    Picker,
    RoutingTable,
    Spillover,
    Strategy,
    TableError,
    VirtualModelEntry,
    content_hash,
    dump_routing_table,
    parse_routing_table,
)

pytestmark = pytest.mark.unit

Doc = dict[str, Any]


def _text(doc: Doc) -> str:
    return json.dumps(doc)


class TestAccepts:
    def test_the_design_example(self, table_doc: Doc) -> None:
        table = parse_routing_table(_text(table_doc))
        assert table.router == "llm/chat"
        assert table.revision == 118
        medium = table.models["qwen-7b"]
        assert medium.weight == 0.41
        assert medium.endpoints[0].load == EndpointLoad(running=12, waiting=3, kv_cache=0.52)
        assert medium.endpoints[1].load is None
        assert table.models["qwen-14b"].endpoints == ()
        assert table.virtual_models["auto"].spillover is Spillover.UP
        assert table.balancing == Balancing()

    def test_bytes_and_str_alike(self, table_doc: Doc) -> None:
        text = _text(table_doc)
        assert parse_routing_table(text.encode()) == parse_routing_table(text)

    def test_minimal_table_gets_default_balancing(self, table_doc: Doc) -> None:
        del table_doc["balancing"], table_doc["virtualModels"]
        table = parse_routing_table(_text(table_doc))
        assert table.balancing.picker is Picker.WEIGHTED_P2C
        assert table.balancing.retry.budget == 0.2
        assert table.virtual_models == {}

    def test_a_model_whose_pods_all_drain(self, table_doc: Doc) -> None:
        small = table_doc["models"]["qwen-4b"]
        small["weight"] = 0
        small["endpoints"][0].update(weight=0, draining=True)
        table = parse_routing_table(_text(table_doc))
        assert table.models["qwen-4b"].endpoints[0].draining

    def test_no_pod_ready_anywhere(self, table_doc: Doc) -> None:
        # Issue 7: with no pod ready the operator kept the last table, and the sidecar
        # kept sending to pods no longer ready; now it publishes this, answered with 503.
        for model in table_doc["models"].values():
            model.update(weight=0, endpoints=[])
        table = parse_routing_table(_text(table_doc))
        assert all(not m.endpoints for m in table.models.values())

    def test_ipv6_endpoints(self, table_doc: Doc) -> None:
        table_doc["models"]["qwen-4b"]["endpoints"][0]["address"] = "[fd00::1]:8000"
        parse_routing_table(_text(table_doc))


def _set(path: str, value: object) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split("/")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _endpoint(address: str, weight: float = 1.0) -> dict[str, object]:
    return {"address": address, "pod": "p", "weight": weight, "capacity": 8}


_EP7 = "models/qwen-7b/endpoints"

INVALID = [
    (
        "unknown apiVersion",
        _set("apiVersion", "zeta.dev/v2"),
        "apiVersion: unsupported 'zeta.dev/v2'",
    ),
    ("no apiVersion", lambda d: d.pop("apiVersion"), "apiVersion: unsupported None"),
    ("unknown kind", _set("kind", "ConfigMap"), "kind: must be 'RoutingTable'"),
    (
        "negative endpoint weight",
        _set(f"{_EP7}/0/weight", -0.1),
        "models[qwen-7b].endpoints[0].weight: must be >= 0",
    ),
    (
        "negative model weight",
        _set("models/qwen-4b/weight", -1),
        "models[qwen-4b].weight: must be >= 0",
    ),
    (
        "weight as string",
        _set("models/qwen-4b/weight", "1"),
        "models[qwen-4b].weight: must be a number",
    ),
    (
        "all endpoint weights zero",
        lambda d: [e.update(weight=0) for e in d["models"]["qwen-7b"]["endpoints"]],
        "models[qwen-7b].endpoints: every endpoint weight is 0",
    ),
    (
        "model weight without endpoints",
        _set("models/qwen-14b/weight", 0.5),
        "models[qwen-14b].weight: must be 0 for a model with no endpoint",
    ),
    (
        "all model weights zero",
        lambda d: [m.update(weight=0) for m in d["models"].values()],
        "models: every model weight is 0",
    ),
    (
        "no models",
        lambda d: d.update(models={}, virtualModels={}),
        "models: must have at least 1 item",
    ),
    (
        "duplicate address in a model",
        _set(f"{_EP7}/1/address", "10.1.2.3:8000"),
        "models[qwen-7b].endpoints[1].address: duplicate '10.1.2.3:8000' "
        "(also models[qwen-7b].endpoints[0].address)",
    ),
    (
        "duplicate address across models",
        _set(f"{_EP7}/0/address", "10.1.2.1:8000"),
        "models[qwen-7b].endpoints[0].address: duplicate '10.1.2.1:8000' "
        "(also models[qwen-4b].endpoints[0].address)",
    ),
    (
        "same IPv6 spelled twice",
        lambda d: (
            _set("models/qwen-4b/endpoints/0/address", "[fd00::1]:80")(d),
            _set(f"{_EP7}/0/address", "[fd00:0::0:1]:80")(d),
        ),
        "models[qwen-7b].endpoints[0].address: duplicate",
    ),
    (
        "hostname address",
        _set(f"{_EP7}/0/address", "example.com:80"),
        "models[qwen-7b].endpoints[0].address: must be ip:port",
    ),
    (
        "address without port",
        _set(f"{_EP7}/0/address", "10.0.0.1"),
        "models[qwen-7b].endpoints[0].address: must be ip:port",
    ),
    (
        "port out of range",
        _set(f"{_EP7}/0/address", "10.0.0.1:0"),
        "models[qwen-7b].endpoints[0].address: port must be 1..65535",
    ),
    (
        "unbracketed IPv6",
        _set(f"{_EP7}/0/address", "fd00::1:80"),
        "models[qwen-7b].endpoints[0].address",
    ),
    (
        "draining with weight",
        _set(f"{_EP7}/0/draining", True),
        "models[qwen-7b].endpoints[0].weight: must be 0 for a draining endpoint",
    ),
    (
        "zero capacity",
        _set(f"{_EP7}/0/capacity", 0),
        "models[qwen-7b].endpoints[0].capacity: must be >= 1",
    ),
    (
        "kv cache above 1",
        _set(f"{_EP7}/0/load/kvCache", 1.5),
        "models[qwen-7b].endpoints[0].load.kvCache: must be <= 1",
    ),
    (
        "candidate not a model",
        _set("virtualModels/auto/candidates", ["qwen-4b", "qwen-70b"]),
        "virtualModels[auto].candidates[1]: 'qwen-70b' is not a model of the table",
    ),
    (
        "virtual named like a model",
        lambda d: d["virtualModels"].update({"qwen-4b": d["virtualModels"]["auto"]}),
        "virtualModels[qwen-4b]: 'qwen-4b' is already the name of a model",
    ),
    (
        "bad model name",
        lambda d: d["models"].update({"bad name": d["models"].pop("qwen-4b")}),
        "models[bad name]: not a valid model name",
    ),
    (
        "unknown picker",
        _set("balancing/picker", "least-loaded"),
        "balancing.picker: must be one of 'weighted-p2c', 'smooth-wrr', 'weighted-random'",
    ),
    (
        "unknown strategy",
        _set("virtualModels/auto/strategy", "cheapest"),
        "virtualModels[auto].strategy: must be one of",
    ),
    (
        "unknown field",
        _set("models/qwen-4b/priority", 1),
        "models[qwen-4b].priority: unknown field",
    ),
    ("negative revision", _set("revision", -1), "revision: must be >= 0"),
    (
        "bad timestamp",
        _set("generatedAt", "2026-13-01T00:00:00Z"),
        "generatedAt: must be an RFC 3339 date-time",
    ),
    ("bad router", _set("router", "chat"), "router: must match"),
    (
        "missing served name",
        lambda d: d["models"]["qwen-4b"].pop("servedModelName"),
        "models[qwen-4b].servedModelName: required",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [pytest.param(m, msg, id=name) for name, m, msg in INVALID]
)
def test_each_bad_table_is_refused_with_a_reason(
    table_doc: Doc, mutate: Callable[[Doc], object], message: str
) -> None:
    mutate(table_doc)
    with pytest.raises(TableError) as caught:
        parse_routing_table(_text(table_doc))
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "table is not valid JSON"),
        ("{", "table is not valid JSON"),
        (b"\xff\xfe{}", "table is not valid JSON"),
        ("[]", "table must be a JSON object, got list"),
        ('{"revision": NaN}', "table is not valid JSON: NaN is not a number JSON allows"),
        ('{"revision": Infinity}', "table is not valid JSON: Infinity"),
        (
            '{"kind": "RoutingTable", "kind": "RoutingTable"}',
            "table is not valid JSON: duplicate key 'kind'",
        ),
    ],
)
def test_malformed_json_is_refused(text: str | bytes, message: str) -> None:
    with pytest.raises(TableError, match=f"^{message}"):
        parse_routing_table(text)


def test_size_limit_is_checked_before_parsing(table_doc: Doc) -> None:
    text = _text(table_doc)
    with pytest.raises(TableError, match=rf"^table is {len(text)} bytes, over the limit of 100$"):
        parse_routing_table(text, max_bytes=100)
    parse_routing_table(text, max_bytes=len(text))
    with pytest.raises(TableError, match="over the limit"):
        parse_routing_table(" " * (DEFAULT_MAX_BYTES + 1))


def test_size_counts_utf8_bytes(table_doc: Doc) -> None:
    table_doc["models"]["qwen-4b"]["servedModelName"] = "ü" * 10
    text = json.dumps(table_doc, ensure_ascii=False)
    with pytest.raises(TableError, match="over the limit"):
        parse_routing_table(text, max_bytes=len(text))


class TestCanonicalForm:
    def test_sorted_compact_and_parses_back(self, table_doc: Doc) -> None:
        table = parse_routing_table(_text(table_doc))
        text = dump_routing_table(table)
        assert text.startswith('{"apiVersion":"zeta.dev/v1alpha1","balancing":{')
        assert ": " not in text
        assert ", " not in text
        assert json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")) == text
        assert parse_routing_table(text) == table

    def test_equal_tables_dump_equal_whatever_the_input_order(self, table_doc: Doc) -> None:
        shuffled = json.loads(json.dumps(table_doc, sort_keys=True))
        shuffled["models"] = dict(reversed(list(shuffled["models"].items())))
        first = dump_routing_table(parse_routing_table(_text(table_doc)))
        assert dump_routing_table(parse_routing_table(_text(shuffled))) == first

    def test_dump_refuses_what_the_sidecar_would_refuse(self, table_doc: Doc) -> None:
        table = parse_routing_table(_text(table_doc))
        zero = {n: dataclasses.replace(m, weight=0.0) for n, m in table.models.items()}
        with pytest.raises(TableError, match="every model weight is 0"):
            dump_routing_table(dataclasses.replace(table, models=zero))
        nan = dict(
            table.models,
            **{"qwen-4b": dataclasses.replace(table.models["qwen-4b"], weight=float("nan"))},
        )
        with pytest.raises(TableError, match="JSON cannot carry"):
            dump_routing_table(dataclasses.replace(table, models=nan))


class TestContentHash:
    def test_ignores_revision_and_timestamp(self, table_doc: Doc) -> None:
        table = parse_routing_table(_text(table_doc))
        later = dataclasses.replace(table, revision=119, generated_at="2026-01-01T00:00:10Z")
        assert content_hash(later) == content_hash(table)
        assert len(content_hash(table)) == 64

    def test_sees_a_weight_change(self, table_doc: Doc) -> None:
        before = parse_routing_table(_text(table_doc))
        table_doc["models"]["qwen-7b"]["endpoints"][0]["weight"] = 0.61
        assert content_hash(parse_routing_table(_text(table_doc))) != content_hash(before)

    def test_int_and_float_weights_hash_alike(self, table_doc: Doc) -> None:
        table = parse_routing_table(_text(table_doc))
        ints = copy.deepcopy(table)
        small = ints.models["qwen-4b"]
        ep = dataclasses.replace(small.endpoints[0], weight=1)
        ints = dataclasses.replace(
            ints, models={**ints.models, "qwen-4b": dataclasses.replace(small, endpoints=(ep,))}
        )
        assert content_hash(ints) == content_hash(table)


# --- round trips over generated tables ------------------------------------------------

_names = st.from_regex(r"\A[a-z][a-z0-9.-]{0,12}[a-z0-9]\Z")
_weights = st.floats(0, 1e6, allow_nan=False)
_positive = st.floats(1e-6, 1e6)
_maybe_load = st.none() | st.builds(
    EndpointLoad,
    running=st.none() | st.floats(0, 1e4),
    waiting=st.none() | st.floats(0, 1e4),
    kv_cache=st.none() | st.floats(0, 1),
)


@st.composite
def tables(draw: st.DrawFn) -> RoutingTable:
    names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    octets = iter(draw(st.lists(st.integers(1, 250), min_size=30, max_size=30, unique=True)))
    models = {}
    for index, name in enumerate(names):
        count = draw(st.integers(0 if index else 1, 5))
        endpoints = [
            Endpoint(
                address=f"10.{index}.0.{next(octets)}:{draw(st.integers(1, 65535))}",
                pod=f"{name}-{i}",
                weight=draw(_positive if i == 0 else _weights),
                capacity=draw(st.integers(1, 512)),
                load=draw(_maybe_load),
            )
            for i in range(count)
        ]
        models[name] = ModelEntry(
            served_model_name=draw(st.text(min_size=1, max_size=20)),
            tier=draw(st.integers(1, 5)),
            weight=draw(_positive)
            if endpoints and index == 0
            else (draw(_weights) if endpoints else 0.0),
            saturated=draw(st.booleans()),
            static=draw(st.booleans()),
            endpoints=tuple(endpoints),
        )
    virtual_names = draw(
        st.lists(_names.filter(lambda n: n not in models), max_size=2, unique=True)
    )
    virtual = {
        name: VirtualModelEntry(
            strategy=draw(st.sampled_from(Strategy)),
            candidates=tuple(draw(st.lists(st.sampled_from(names), min_size=1, unique=True))),
            spillover=draw(st.sampled_from(Spillover)),
        )
        for name in virtual_names
    }
    return RoutingTable(
        router="llm/chat",
        revision=draw(st.integers(0, 2**53)),
        generated_at="2026-01-01T00:00:00Z",
        models=models,
        virtual_models=virtual,
        balancing=Balancing(picker=draw(st.sampled_from(Picker))),
    )


@given(tables())
def test_any_valid_table_round_trips(table: RoutingTable) -> None:
    text = dump_routing_table(table)
    parsed = parse_routing_table(text)
    assert parsed == table
    assert dump_routing_table(parsed) == text
    assert content_hash(parsed) == content_hash(table)
