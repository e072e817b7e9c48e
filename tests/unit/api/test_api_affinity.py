"""Affinity settings: declared on the spec (router-wide and per model), validated the same
way by the CRD and the parser, and carried by the routing table."""

import copy
import json
from typing import Any

import pytest

from zeta_api import (
    Affinity,
    ModelAffinity,
    SpecError,
    TableError,
    dump_routing_table,
    parse_routing_table,
    parse_spec,
)
from zeta_api.crd import build_crd

Doc = dict[str, Any]

AFFINITY = {
    "prefix": True,
    "session": True,
    "blockTokens": 16,
    "maxBlocks": 128,
    "loadBound": 0.5,
    "sessionHeader": "x-conversation",
    "sessionUser": False,
    "indexEntries": 1000,
    "indexTTL": "2m",
}


def test_no_affinity_declared_means_none(spec_doc: Doc) -> None:
    spec = parse_spec(spec_doc)
    assert spec.balancing.affinity is None
    assert all(m.affinity is None for m in spec.models)


def test_an_empty_declaration_takes_the_safe_defaults(spec_doc: Doc) -> None:
    spec_doc["balancing"] = {"affinity": {}}
    affinity = parse_spec(spec_doc).balancing.affinity
    assert affinity == Affinity()
    assert (affinity.prefix, affinity.session) == (False, False)
    assert (affinity.block_tokens, affinity.max_blocks, affinity.load_bound) == (64, 64, 1.0)
    assert (affinity.session_header, affinity.session_user) == ("x-session-id", True)
    assert (affinity.index_entries, affinity.index_ttl) == (65536, 600.0)


def test_every_field_is_read(spec_doc: Doc) -> None:
    spec_doc["balancing"] = {"affinity": AFFINITY}
    spec_doc["models"][1]["affinity"] = {"prefix": False, "session": True, "loadBound": 0.1}
    spec = parse_spec(spec_doc)
    assert spec.balancing.affinity == Affinity(
        prefix=True,
        session=True,
        block_tokens=16,
        max_blocks=128,
        load_bound=0.5,
        session_header="x-conversation",
        session_user=False,
        index_entries=1000,
        index_ttl=120.0,
    )
    assert spec.models[1].affinity == ModelAffinity(session=True, load_bound=0.1)


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("blockTokens", 0, "spec.balancing.affinity.blockTokens"),
        ("maxBlocks", 5000, "spec.balancing.affinity.maxBlocks"),
        ("loadBound", -0.1, "spec.balancing.affinity.loadBound"),
        ("sessionHeader", "X-Session", "spec.balancing.affinity.sessionHeader"),
        ("indexEntries", 0, "spec.balancing.affinity.indexEntries"),
        ("indexTTL", "100ms", "spec.balancing.affinity.indexTTL"),
        ("prefix", "yes", "spec.balancing.affinity.prefix"),
    ],
)
def test_each_mistake_names_its_field(
    spec_doc: Doc, where: str, value: object, message: str
) -> None:
    spec_doc["balancing"] = {"affinity": {where: value}}
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_doc)


def test_a_model_may_not_set_what_only_the_router_sets(spec_doc: Doc) -> None:
    spec_doc["models"][0]["affinity"] = {"sessionHeader": "x-mine"}
    with pytest.raises(SpecError, match=r"spec\.models\[0\]\.affinity\.sessionHeader: unknown"):
        parse_spec(spec_doc)


def _schema(*path: str) -> Doc:
    node: Doc = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[index]
    for key in path:
        node = node["properties"][key]
    return node


def test_the_crd_declares_and_documents_every_field_with_its_default() -> None:
    router = _schema("spec", "balancing", "affinity")
    model = _schema("spec", "models")["items"]["properties"]["affinity"]
    assert set(router["properties"]) == set(AFFINITY)
    assert set(model["properties"]) == {
        "prefix",
        "session",
        "blockTokens",
        "maxBlocks",
        "loadBound",
    }
    for name, prop in router["properties"].items():
        assert prop["description"], name
        assert "default" in prop, name
    assert router["properties"]["sessionHeader"]["pattern"]
    assert router["properties"]["loadBound"]["minimum"] == 0


def test_the_table_carries_the_settings_and_leaves_them_out_when_none(table_doc: Doc) -> None:
    plain = parse_routing_table(json.dumps(table_doc))
    assert plain.balancing.affinity is None
    assert '"affinity"' not in dump_routing_table(plain)  # older sidecars read it as before
    doc = copy.deepcopy(table_doc)
    doc["balancing"]["affinity"] = AFFINITY
    doc["models"]["qwen-7b"]["affinity"] = {"prefix": True}
    table = parse_routing_table(json.dumps(doc))
    assert table.balancing.affinity is not None
    assert table.balancing.affinity.index_entries == 1000
    assert table.models["qwen-7b"].affinity == ModelAffinity(prefix=True)
    assert parse_routing_table(dump_routing_table(table)) == table
    doc["models"]["qwen-7b"]["affinity"] = {"blockTokens": -1}
    with pytest.raises(TableError, match=r"models\[qwen-7b\]\.affinity\.blockTokens"):
        parse_routing_table(json.dumps(doc))
