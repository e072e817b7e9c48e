"""Encoding a table checks it where it stands: it must refuse exactly what the sidecar's
parser refuses, and what it accepts the parser must read back. The message is the
parser's too, but for which of several problems comes first: the parser meets the
models in the JSON's key order, the encoder in the table's.

The tables are drawn near the edges: most leaves valid, many just past a limit (NaN,
infinities, negative zero, a bool for a number, an address spelt two ways, a port out
of range, a name one character too long), so both sides meet every check.
"""

import dataclasses
import json
import math
from collections.abc import Callable
from typing import TypeVar
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeta_api import (
    DEFAULT_MAX_BYTES,
    TABLE_API_VERSION,
    TABLE_KIND,
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
    encode_routing_table,
    parse_routing_table,
    table_text,
)
from zeta_api.dumping import dump

pytestmark = pytest.mark.unit
T = TypeVar("T")

_EDGE_NUMBERS = (0.0, -0.0, -1e-9, 5e-324, 1, True, False, math.nan, math.inf, -math.inf, 1e308)
_weights = st.floats(0, 1e6) | st.sampled_from(_EDGE_NUMBERS)
_loads = st.none() | st.floats(0, 100) | st.sampled_from((*_EDGE_NUMBERS, 1.0000001, 2))
_ADDRESSES = (
    "10.0.0.1:8000",
    "10.0.0.2:8000",
    "10.0.0.1:8001",
    "[::1]:8000",
    "[0:0:0:0:0:0:0:1]:8000",  # the line above, spelt otherwise
    "[fe80::1]:80",
    "::1:8000",  # IPv6 without brackets
    "[10.0.0.3]:80",  # IPv4 in brackets
    "010.0.0.1:8000",  # a leading zero
    "10.0.0.256:8000",
    "10.0.0.1:0",
    "10.0.0.1:65536",
    "10.0.0.1:080",
    "10.0.0.1:",
    "10.0.0.1:\u0663",  # a non-ASCII digit
    "1.2.3:80",
    "pod.local:80",
    " 10.0.0.4:80",
    "",
    "1" * 70,
)
_NAMES = ("qwen-4b", "qwen-7b", "a", "Qwen/Q2.5:7b", "-bad", "bad_", "x" * 128, "x" * 129)
_TEXTS = st.sampled_from(("", "x" * 253, "x" * 254, "ü" * 3)) | st.text(max_size=8)


def _either(
    draw: st.DrawFn, edgy: bool, valid: st.SearchStrategy[T], edge: st.SearchStrategy[T]
) -> T:
    return draw(valid | edge if edgy else valid)


@st.composite
def _endpoint(draw: st.DrawFn, edgy: bool, address: str) -> Endpoint:
    good_loads = st.none() | st.floats(0, 1)
    load = draw(
        st.none()
        | st.builds(
            EndpointLoad,
            running=good_loads | _loads if edgy else good_loads,
            waiting=good_loads | _loads if edgy else good_loads,
            kv_cache=good_loads | _loads if edgy else good_loads,
        )
    )
    return Endpoint(
        address=_either(draw, edgy, st.just(address), st.sampled_from(_ADDRESSES)),
        pod=_either(draw, edgy, st.text(min_size=1, max_size=8), _TEXTS),
        weight=_either(draw, edgy, st.floats(1e-6, 1e6), _weights),
        capacity=_either(
            draw, edgy, st.integers(1, 64), st.sampled_from((0, -1, 1.0, True, 2**70))
        ),
        load=load,
        draining=_either(draw, edgy, st.just(False), st.booleans() | st.just(1)),
    )


@st.composite
def _model(draw: st.DrawFn, edgy: bool, addresses: list[str]) -> ModelEntry:
    endpoints = [draw(_endpoint(edgy, address)) for address in addresses]
    return ModelEntry(
        served_model_name=_either(draw, edgy, st.text(min_size=1, max_size=8), _TEXTS),
        tier=_either(draw, edgy, st.integers(1, 5), st.sampled_from((0, -1, 2.0))),
        weight=_either(draw, edgy, st.floats(1e-6, 1) if endpoints else st.just(0.0), _weights),
        saturated=draw(st.booleans()),
        static=_either(draw, edgy, st.booleans(), st.none()),
        endpoints=tuple(endpoints),
    )


@st.composite
def _virtual(draw: st.DrawFn, models: list[str]) -> VirtualModelEntry:
    candidates = draw(st.lists(st.sampled_from([*models, "missing"]), min_size=0, max_size=3))
    return VirtualModelEntry(
        strategy=draw(st.sampled_from(Strategy)),
        candidates=tuple(candidates),
        spillover=draw(st.sampled_from(Spillover)),
        thresholds=tuple(draw(st.lists(st.floats(0, 1) | st.just(1.5), max_size=2))),
    )


@st.composite
def edge_tables(draw: st.DrawFn) -> RoutingTable:
    """A table near the edges; one in four wholly valid but for its virtual models."""
    edgy = draw(st.integers(0, 3)) > 0
    valid_names = st.lists(st.sampled_from(_NAMES[:4]), min_size=1, max_size=3, unique=True)
    names = _either(
        draw, edgy, valid_names, st.lists(st.sampled_from(_NAMES), max_size=3, unique=True)
    )
    pool = iter(f"10.0.{i // 250}.{i % 250 + 1}:8000" for i in range(1000))
    models = {
        name: draw(_model(edgy, [next(pool) for _ in range(draw(st.integers(1, 4)))]))
        for name in names
    }
    virtual_names = draw(st.lists(st.sampled_from((*_NAMES, "auto")), max_size=2, unique=True))
    return RoutingTable(
        router=_either(
            draw,
            edgy,
            st.just("llm/chat"),
            st.sampled_from(("LLM/chat", "llm", "llm/chat/x", "a/b.c")),
        ),
        revision=_either(draw, edgy, st.integers(0, 2**53), st.sampled_from((-1, 1.0, True))),
        generated_at=_either(
            draw,
            edgy,
            st.just("2026-01-01t00:00:00.5+01:00"),
            st.sampled_from(("2026-13-01T00:00:00Z", "yesterday", "2026-01-01 00:00:00Z")),
        ),
        models=models,
        virtual_models={name: draw(_virtual(names)) for name in virtual_names},
        balancing=Balancing(picker=draw(st.sampled_from(Picker))),
    )


def _parsed(table: RoutingTable) -> RoutingTable | str:
    """What the sidecar makes of the table's JSON: the table, or its refusal."""
    try:
        raw = dump_routing_table(table, validate=False).encode()
    except TableError as exc:  # NaN or Infinity: no JSON to send at all
        return str(exc)
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 to send at all
        return str(exc)
    try:
        return parse_routing_table(raw)
    except TableError as exc:
        return str(exc)


def _encoded(table: RoutingTable) -> str | None:
    try:
        encode_routing_table(table)
    except TableError as exc:
        return str(exc)
    return None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(edge_tables())
def test_encoding_refuses_what_the_parser_refuses(table: RoutingTable) -> None:
    parsed, refused = _parsed(table), _encoded(table)
    if isinstance(parsed, str):
        assert refused is not None
        if len(table.models) <= 1 and len(table.virtual_models) <= 1:
            assert refused == parsed
    else:
        assert refused is None
        encoded = encode_routing_table(table)
        assert parse_routing_table(encoded.text) == parsed
        assert encoded.content_hash == content_hash(table)
        assert encoded.size == len(encoded.text.encode())


def _json_text(table: RoutingTable) -> str:
    """The canonical form as the standard library alone writes it."""
    doc = {"apiVersion": TABLE_API_VERSION, "kind": TABLE_KIND, **dump(table)}
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(edge_tables())
def test_the_canonical_text_is_json_s_to_the_byte(table: RoutingTable) -> None:
    """A faster serialiser may write it, never another text: hashes must not move."""
    try:
        expected = _json_text(table)
    except ValueError:
        with pytest.raises(TableError, match="JSON cannot carry"):
            dump_routing_table(table, validate=False)
        return
    assert dump_routing_table(table, validate=False) == expected


@pytest.mark.parametrize(
    "weight", [1e-4, 1e-05, 2.5e-07, 1.5e-09, 1e-10, 1e-11, 5e-324, 1e16, 1e22, 123456.789]
)
def test_small_and_large_floats_are_spelt_as_json_spells_them(weight: float) -> None:
    endpoint = Endpoint(address="10.0.0.1:8000", pod="null", weight=weight, capacity=2**64)
    model = ModelEntry(served_model_name="m", tier=1, weight=weight, endpoints=(endpoint,))
    table = RoutingTable(
        router="llm/chat", revision=1, generated_at="2026-01-01T00:00:00Z", models={"m": model}
    )
    assert dump_routing_table(table) == _json_text(table)
    assert encode_routing_table(table).content_hash == content_hash(table)


def _verdict(check: Callable[[], None]) -> str | None:
    try:
        check()
    except (TableError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(edge_tables())
def test_endpoints_checked_by_column_or_one_by_one_get_one_verdict(table: RoutingTable) -> None:
    """Distinct IPv4 addresses let the cross-field rules run a column at a time; the
    verdict, and the message, must be the endpoint-by-endpoint one."""
    by_column = _verdict(lambda: table_text._check(table))
    with mock.patch.object(table_text, "_distinct_ipv4", return_value=False):
        assert _verdict(lambda: table_text._check(table)) == by_column


def test_the_edges_are_met() -> None:
    """The generator reaches both verdicts, and many distinct refusals."""
    verdicts: set[str | None] = set()

    @settings(max_examples=200, database=None)
    @given(edge_tables())
    def collect(table: RoutingTable) -> None:
        refused = _encoded(table)
        verdicts.add(None if refused is None else refused.split(":")[0])

    collect()
    assert None in verdicts
    assert len(verdicts) > 10


def test_a_table_over_the_size_limit_is_refused() -> None:
    endpoints = tuple(
        Endpoint(address=f"10.0.{i // 256}.{i % 256}:8000", pod=f"p-{i}", weight=1.0, capacity=1)
        for i in range(14000)
    )
    table = RoutingTable(
        router="llm/chat",
        revision=1,
        generated_at="2026-01-01T00:00:00Z",
        models={"m": ModelEntry(served_model_name="m", tier=1, weight=1.0, endpoints=endpoints)},
    )
    encoded = encode_routing_table(table, max_bytes=2 * DEFAULT_MAX_BYTES)
    assert encoded.size > DEFAULT_MAX_BYTES
    with pytest.raises(TableError, match=rf"^table is {encoded.size} bytes, over the limit"):
        encode_routing_table(table)
    with pytest.raises(TableError, match=rf"^table is {encoded.size} bytes, over the limit"):
        parse_routing_table(encoded.text)


def test_text_utf8_cannot_carry_is_refused() -> None:
    model = ModelEntry(served_model_name="\ud800", tier=1, weight=0.0)
    table = RoutingTable(
        router="llm/chat", revision=1, generated_at="2026-01-01T00:00:00Z", models={"m": model}
    )
    with pytest.raises(TableError, match="UTF-8 cannot carry"):
        encode_routing_table(table)


def test_a_changed_table_encodes_a_new_hash_but_not_a_new_revision() -> None:
    model = ModelEntry(served_model_name="m", tier=1, weight=0.0)
    table = RoutingTable(
        router="llm/chat", revision=1, generated_at="2026-01-01T00:00:00Z", models={"m": model}
    )
    later = dataclasses.replace(table, revision=2, generated_at="2026-01-01T00:01:00Z")
    other = dataclasses.replace(table, router="llm/other")
    assert encode_routing_table(later).content_hash == encode_routing_table(table).content_hash
    assert encode_routing_table(other).content_hash != encode_routing_table(table).content_hash
    assert encode_routing_table(later).text != encode_routing_table(table).text
