"""The table store: each bad table refused with the last good one kept; pod state kept."""

import json
from pathlib import Path

import pytest

from zeta_api import TableError
from zeta_sidecar.table_store import TableStore
from zeta_sidecar.testing import endpoint, table_json

GOOD = table_json({"m": [endpoint("127.0.0.1:1"), endpoint("127.0.0.2:1", weight=3)]})


def mutate(change: str) -> bytes:
    doc = json.loads(GOOD)
    eps = doc["models"]["m"]["endpoints"]
    if change == "negative":
        eps[0]["weight"] = -1
    elif change == "all-zero":
        eps[0]["weight"] = eps[1]["weight"] = 0
    elif change == "duplicate":
        eps[1]["address"] = eps[0]["address"]
    elif change == "version":
        doc["apiVersion"] = "zeta.dev/v9"
    return json.dumps(doc).encode()


BAD = {
    "bad JSON": b'{"apiVersion": ',
    "unknown apiVersion": mutate("version"),
    "negative weight": mutate("negative"),
    "NaN weight": GOOD.replace('"weight": 3', '"weight": NaN').encode(),
    "all-zero weights": mutate("all-zero"),
    "duplicate addresses": mutate("duplicate"),
    "over the size limit": GOOD.encode() + b" " * 5000,
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_table_is_refused_and_the_last_good_one_kept(name: str) -> None:
    store = TableStore(max_bytes=4096)
    good, changed = store.load(GOOD.encode(), 0.0)
    assert changed
    with pytest.raises(TableError):
        store.load(BAD[name], 1.0)
    assert store.current is good


def test_identical_bytes_change_nothing() -> None:
    store = TableStore(max_bytes=4096)
    first, _ = store.load(GOOD.encode(), 0.0)
    again, changed = store.load(GOOD.encode(), 1.0)
    assert (again, changed) == (first, False)


def test_pods_keep_their_state_across_tables_and_leavers_leave() -> None:
    store = TableStore(max_bytes=4096)
    snap, _ = store.load(GOOD.encode(), 0.0)
    kept = snap.models["m"].pods[0]
    kept.inflight = 4
    leaving = snap.models["m"].pods[1]
    new = table_json(
        {"m": [endpoint("127.0.0.1:1", weight=2), endpoint("127.0.0.3:1")]}, revision=2
    )
    snap2, _ = store.load(new.encode(), 5.0)
    pods = snap2.models["m"].pods
    assert pods[0] is kept
    assert (kept.weight, kept.inflight, kept.inflight_at_report) == (2.0, 4, 4)
    assert leaving not in pods
    assert pods[1].joined == 5.0  # a newcomer warms up; first-table pods do not
    assert kept.joined == float("-inf")


def test_draining_pods_get_no_new_requests_and_models_json_lists_all() -> None:
    text = table_json(
        {"a": [endpoint("127.0.0.1:1"), endpoint("127.0.0.2:1", weight=0, draining=True)]},
        virtual={"auto": {"strategy": "weighted", "candidates": ["a"]}},
    )
    snap, _ = TableStore(max_bytes=4096).load(text.encode(), 0.0)
    assert [p.address for p in snap.models["a"].pods] == ["127.0.0.1:1"]
    ids = [m["id"] for m in json.loads(snap.models_json)["data"]]
    assert ids == ["a", "auto"]


def test_warmup_reduces_a_newcomers_share_until_it_is_over() -> None:
    store = TableStore(max_bytes=4096)
    balancing = {"warmup": "10s"}
    store.load(table_json({"m": [endpoint("127.0.0.1:1")]}, balancing=balancing).encode(), 0.0)
    two = table_json({"m": [endpoint("127.0.0.1:1"), endpoint("127.0.0.2:1")]}, balancing=balancing)
    snap, _ = store.load(two.encode(), 100.0)
    pool = snap.models["m"]
    assert pool.cumulative(100.0, 10.0, store.epoch) == pytest.approx([1.0, 1.1])
    assert pool.cumulative(105.0, 10.0, store.epoch) == pytest.approx([1.0, 1.55])
    assert pool.cumulative(110.0, 10.0, store.epoch) == pytest.approx([1.0, 2.0])


def test_pods_that_leave_take_their_metric_series_with_them() -> None:
    # Issue 10: per-pod label sets grew with pod churn, for the life of the process.
    from prometheus_client import generate_latest

    from zeta_sidecar.gateway import Gateway
    from zeta_sidecar.settings import Settings

    gw = Gateway(Settings(table_file=Path("unused")))
    first = table_json({"m": [endpoint("127.0.0.1:1", pod="a"), endpoint("127.0.0.2:1", pod="b")]})
    assert gw.load_table(first.encode())
    gw.metrics.request("m", "m", "a", 200)
    gw.metrics.request("m", "m", "b", 200)
    gw.metrics.ejections.labels("m", "b").inc()
    second = table_json({"m": [endpoint("127.0.0.1:1", pod="a")]}, revision=2)
    assert gw.load_table(second.encode())
    text = generate_latest(gw.metrics.registry).decode()
    assert 'pod="a"' in text
    assert 'pod="b"' not in text
