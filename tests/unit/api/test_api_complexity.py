"""Complexity thresholds and the external classifier, in the spec and in the table."""

import json
from typing import Any

import pytest

from zeta_api import SpecError, TableError, dump_routing_table, parse_routing_table, parse_spec
from zeta_api.dumping import dump

Doc = dict[str, Any]


def test_thresholds_and_classifier_default_to_none(spec_doc: Doc) -> None:
    (auto,) = parse_spec(spec_doc).virtual_models
    assert auto.thresholds == ()
    assert auto.classifier is None


def test_thresholds_and_classifier_are_read_and_written_back(spec_doc: Doc) -> None:
    spec_doc["virtualModels"][0]["thresholds"] = [0.2, 0.75]
    spec_doc["virtualModels"][0]["classifier"] = {"url": "http://cls.zeta:8080/classify"}
    spec = parse_spec(spec_doc)
    (auto,) = spec.virtual_models
    assert auto.thresholds == (0.2, 0.75)
    assert auto.classifier is not None
    assert auto.classifier.url == "http://cls.zeta:8080/classify"
    assert auto.classifier.timeout == 0.05
    written = dump(spec)["virtualModels"][0]  # type: ignore[index]
    assert written["thresholds"] == [0.2, 0.75]
    assert written["classifier"] == {"url": "http://cls.zeta:8080/classify", "timeout": "50ms"}
    assert parse_spec(dump(spec)) == spec


@pytest.mark.parametrize(
    ("thresholds", "where", "message"),
    [
        ([0.5], "thresholds", "one item fewer than candidates (2), got 1"),
        ([0.2, 0.4, 0.6], "thresholds", "one item fewer than candidates (2), got 3"),
        ([0.6, 0.4], "thresholds[1]", "above the one before"),
        ([0.6, 0.6], "thresholds[1]", "duplicate value"),
        ([0.2, 1.0], "thresholds[1]", "above 0 and below 1"),
        ([0.0, 0.5], "thresholds[0]", "must be > 0"),
        ([0.2, 1.5], "thresholds[1]", "must be <= 1"),
        (["0.2", 0.5], "thresholds[0]", "must be a number"),
    ],
)
def test_bad_thresholds_name_their_field(
    spec_doc: Doc, thresholds: list[object], where: str, message: str
) -> None:
    spec_doc["virtualModels"][0]["thresholds"] = thresholds
    with pytest.raises(SpecError) as raised:
        parse_spec(spec_doc)
    assert str(raised.value).startswith(f"spec.virtualModels[0].{where}: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("classifier", "message"),
    [
        ({}, r"classifier\.url: required"),
        ({"url": "ftp://x"}, r"classifier\.url"),
        ({"url": "http://x", "timeout": "0s"}, r"classifier\.timeout: must be at least 1ms"),
        ({"url": "http://x", "extra": 1}, r"classifier\.extra: unknown field"),
    ],
)
def test_bad_classifiers_name_their_field(
    spec_doc: Doc, classifier: dict[str, object], message: str
) -> None:
    spec_doc["virtualModels"][0]["classifier"] = classifier
    with pytest.raises(SpecError, match=message):
        parse_spec(spec_doc)


def test_the_table_carries_thresholds_and_classifier(table_doc: Doc) -> None:
    auto = table_doc["virtualModels"]["auto"]
    auto["thresholds"] = [0.3, 0.8]
    auto["classifier"] = {"url": "http://cls:8080/classify", "timeout": "20ms"}
    table = parse_routing_table(dump_routing_table(parse_routing_table(_json(table_doc))))
    entry = table.virtual_models["auto"]
    assert entry.thresholds == (0.3, 0.8)
    assert entry.classifier is not None
    assert entry.classifier.timeout == 0.02


def test_a_table_with_thresholds_that_do_not_fit_is_refused(table_doc: Doc) -> None:
    table_doc["virtualModels"]["auto"]["thresholds"] = [0.5]
    with pytest.raises(TableError, match=r"virtualModels\[auto\]\.thresholds: must have one"):
        parse_routing_table(_json(table_doc))


def _json(doc: Doc) -> str:
    return json.dumps(doc)
