"""The CRD: committed file up to date, and in agreement with the Python types."""

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_api import ZetaRouterSpec, ZetaRouterStatus, parse_spec
from zeta_api.crd import CRD_NAME, build_crd, render_crd
from zeta_api.dumping import dump
from zeta_api.schema import fields_of
from zeta_api.status import FOREIGN_STATUS_KEYS

pytestmark = pytest.mark.unit

CRD_FILE = Path(__file__).parents[3] / "manifests" / "crds" / "zetarouters.zeta.dev.yaml"
Schema = dict[str, Any]


@pytest.fixture(scope="module")
def committed() -> Schema:
    loaded: Schema = yaml.safe_load(CRD_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def root(committed: Schema) -> Schema:
    version = committed["spec"]["versions"][0]
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_up_to_date() -> None:
    assert CRD_FILE.read_text() == render_crd(), (
        "manifests/crds is stale: run `python -m zeta_api.crd > " + str(CRD_FILE.name) + "`"
    )


def test_yaml_holds_exactly_the_generated_object(committed: Schema) -> None:
    assert committed == build_crd()


def test_identity_and_subresources(committed: Schema) -> None:
    spec = committed["spec"]
    assert committed["metadata"]["name"] == CRD_NAME == "zetarouters.zeta.dev"
    assert spec["group"] == "zeta.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ZetaRouter"
    assert spec["names"]["plural"] == "zetarouters"
    assert spec["names"]["shortNames"] == ["zr"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns_point_at_status_fields(committed: Schema, root: Schema) -> None:
    columns = {
        c["name"]: c["jsonPath"]
        for c in committed["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert list(columns) == ["Ready", "Models", "Pods", "Revision", "Fallback", "Age"]
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == ".metadata.creationTimestamp"
    for name in ("Models", "Pods", "Revision", "Fallback"):
        node = root
        for part in columns[name].strip(".").split("."):
            node = node["properties"][part]
        assert node["type"] in ("integer", "string"), name


def test_status_keeps_room_for_kopf(root: Schema) -> None:
    kopf = root["properties"]["status"]["properties"]["kopf"]
    assert kopf == {**kopf, "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert "x-kubernetes-preserve-unknown-fields" not in root["properties"]["status"]


def _walk_agreement(cls: type, schema: Schema, where: str, extra: frozenset[str]) -> None:
    fields = fields_of(cls)
    properties = set(schema["properties"])
    assert set(fields) == properties - extra, where
    for wire, (meta, nested) in fields.items():
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", wire), f"{where}.{wire} is not camelCase"
        prop = schema["properties"][wire]
        assert meta.description, f"{where}.{wire}"
        assert prop["description"].startswith(meta.description), f"{where}.{wire}"
        if nested is not None:
            while prop.get("type") == "array" or "additionalProperties" in prop:
                prop = prop.get("items") or prop["additionalProperties"]
            _walk_agreement(nested, prop, f"{where}.{wire}", frozenset())


def test_every_field_has_a_property_and_back(root: Schema) -> None:
    spec, status = root["properties"]["spec"], root["properties"]["status"]
    _walk_agreement(ZetaRouterSpec, spec, "spec", frozenset())
    _walk_agreement(ZetaRouterStatus, status, "status", FOREIGN_STATUS_KEYS)


def _properties(schema: Schema, where: str) -> list[tuple[str, Schema]]:
    found = []
    for name, prop in schema.get("properties", {}).items():
        found.append((f"{where}.{name}", prop))
        found += _properties(prop, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _properties(schema[key], f"{where}[]")
    return found


def test_every_property_is_documented_for_kubectl_explain(root: Schema) -> None:
    undocumented = [
        where
        for where, prop in _properties(root, "")
        if where != ".metadata" and not prop.get("description")
    ]
    assert undocumented == []


def _nodes(schema: Schema, where: str) -> list[tuple[str, Schema]]:
    found = [(where, schema)]
    for name, prop in schema.get("properties", {}).items():
        found += _nodes(prop, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _nodes(schema[key], f"{where}[]")
    return found


def test_spec_bounds_every_collection_and_string_for_cel_costs(root: Schema) -> None:
    """The apiserver prices an unbounded list or string at the request size limit."""
    unbounded = []
    for where, node in _nodes(root["properties"]["spec"], "spec"):
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(where)
        if node.get("type") == "string" and "maxLength" not in node:
            unbounded.append(where)
        if "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(where)
    assert unbounded == []


def test_cel_rules_only_name_declared_fields(root: Schema) -> None:
    for where, node in _nodes(root, ""):
        for rule in node.get("x-kubernetes-validations", []):
            for name in re.findall(r"\bself\.(\w+)\b(?!\()", rule["rule"]):
                assert name in node.get("properties", {}), f"{where}: {rule['rule']}"
            if "fieldPath" in rule:
                assert rule["fieldPath"].lstrip(".") in node["properties"], where
            assert rule["message"]


def _apply_defaults(schema: Schema, value: Any) -> Any:
    """Structural defaulting as the apiserver does it: fill absent fields, then recurse."""
    if isinstance(value, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = _apply_defaults(prop, value[name])
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key in value:
            value[key] = _apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [_apply_defaults(schema["items"], v) for v in value]
    return value


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def test_schema_defaults_equal_python_defaults(root: Schema, spec_doc: Schema) -> None:
    """What the apiserver stores for a minimal spec is what Python fills in."""
    defaulted = _apply_defaults(root["properties"]["spec"], copy.deepcopy(spec_doc))
    python = dump(parse_spec(spec_doc))
    for given, model in zip(spec_doc["models"], python["models"], strict=True):  # type: ignore[call-overload]
        if "servedModelName" not in given:
            model.pop("servedModelName")  # computed from the name, not a schema default
    assert _drop_empty(defaulted) == _drop_empty(python)
    assert parse_spec(defaulted) == parse_spec(spec_doc)


def test_status_defaults_equal_python_defaults(root: Schema) -> None:
    defaulted = _apply_defaults(root["properties"]["status"], {})
    assert _drop_empty(defaulted) == _drop_empty(ZetaRouterStatus().to_dict())
