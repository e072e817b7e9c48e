"""Model resolution, spillover by reported load, shedding (429) and 503."""

import random

import pytest

from zeta_api import Spillover
from zeta_sidecar.errors import ModelNotFound, NoHealthyPod
from zeta_sidecar.resilience import HealthState
from zeta_sidecar.routing import Router, spill_order
from zeta_sidecar.table_store import Snapshot, TableStore
from zeta_sidecar.testing import endpoint, table_json

BUSY = {"running": 32, "waiting": 10}
IDLE = {"running": 1, "waiting": 0}


def snapshot(
    loads: dict[str, dict[str, float] | None], spillover: str = "up", **kw: object
) -> Snapshot:
    models = {
        name: [endpoint(f"127.0.0.{i + 1}:8000", load=load)]
        for i, (name, load) in enumerate(loads.items())
    }
    virtual = {
        "auto": {"strategy": "complexity", "candidates": list(loads), "spillover": spillover}
    }
    text = table_json(models, virtual=virtual, **kw)  # type: ignore[arg-type]
    snap, _ = TableStore(max_bytes=1 << 20).load(text.encode(), 0.0)
    return snap


def router() -> Router:
    return Router(rand=random.Random(0).random, headroom=0.25)


SIMPLE = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
HARD = {
    "messages": [
        {
            "role": "user",
            "content": "Implement a thread-safe LRU cache with O(1) get and put, and explain "
            "how you avoid deadlocks.",
        }
    ],
    "max_tokens": 2048,
}


@pytest.mark.parametrize(
    ("spillover", "preferred", "count", "order"),
    [
        (Spillover.UP, 1, 3, [1, 2]),
        (Spillover.DOWN, 1, 3, [1, 0]),
        (Spillover.BOTH, 1, 4, [1, 2, 0, 3]),
        (Spillover.NONE, 1, 3, [1]),
    ],
)
def test_spill_order(spillover: Spillover, preferred: int, count: int, order: list[int]) -> None:
    assert spill_order(preferred, count, spillover) == order


def test_complexity_picks_the_tier_by_estimate() -> None:
    snap = snapshot({"small": IDLE, "mid": IDLE, "big": IDLE})
    assert router().resolve(snap, "auto", SIMPLE)[0].name == "small"
    assert router().resolve(snap, "auto", HARD)[0].name == "big"


def test_a_saturated_tier_spills_over_as_the_table_says() -> None:
    up = snapshot({"small": BUSY, "mid": IDLE, "big": IDLE})
    assert router().resolve(up, "auto", SIMPLE)[0].name == "mid"
    down = snapshot({"small": IDLE, "mid": IDLE, "big": BUSY}, spillover="down")
    assert router().resolve(down, "auto", HARD)[0].name == "mid"
    marked = snapshot({"small": IDLE, "mid": IDLE}, saturated=["small"])
    assert router().resolve(marked, "auto", SIMPLE)[0].name == "mid"


def test_all_saturated_or_no_spillover_marks_the_model_to_wait_for() -> None:
    # No blanket 429 any more: admission decides by the request's class (issue 9).
    snap = snapshot({"small": BUSY, "big": BUSY})
    pool, saturated = router().resolve(snap, "auto", SIMPLE)
    assert (pool.name, saturated) == ("small", True)  # the tier it prefers
    no_spill = snapshot({"small": BUSY, "big": IDLE}, spillover="none")
    pool, saturated = router().resolve(no_spill, "auto", SIMPLE)
    assert (pool.name, saturated) == ("small", True)
    pool, saturated = router().resolve(snap, "small", SIMPLE)
    assert (pool.name, saturated) == ("small", True)
    assert router().resolve(snapshot({"small": IDLE}), "small", SIMPLE)[1] is False


def test_room_returns_as_this_replicas_requests_end() -> None:
    # Defect (issue 9): ends since the last report did not count, so a model stayed
    # saturated until the next table though its queue had drained.
    snap = snapshot({"small": {"running": 40, "waiting": 0}})
    r = router()
    pool = snap.models["small"]
    pod = pool.pods[0]
    pod.inflight = pod.inflight_at_report = 40
    assert r.saturated(pool)
    assert not r.has_room(pool)
    pod.inflight = 30  # ten ended here since the report: 30 < 32 * 1.25
    assert r.has_room(pool)
    assert not r.saturated(pool)


def test_local_counts_add_to_reported_load_but_never_saturate_alone() -> None:
    snap = snapshot({"small": {"running": 30, "waiting": 0}, "big": None})
    r = router()
    small, big = snap.models["small"].pods[0], snap.models["big"].pods[0]
    assert not r.pod_saturated(small)
    small.inflight = 10  # sent since the report: 30 + 10 >= 32 * 1.25
    assert r.pod_saturated(small)
    assert r.resolve(snap, "auto", SIMPLE)[0].name == "big"
    big.inflight = 1000  # load unknown: this replica's share alone proves nothing
    assert not r.pod_saturated(big)


def test_weighted_virtual_model_splits_by_model_weight() -> None:
    text = table_json(
        {"a": [endpoint("127.0.0.1:1")], "b": [endpoint("127.0.0.2:1")]},
        model_weights={"a": 9, "b": 1},
        virtual={"split": {"strategy": "weighted", "candidates": ["a", "b"]}},
    )
    snap, _ = TableStore(max_bytes=1 << 20).load(text.encode(), 0.0)
    r = router()
    names = [r.resolve(snap, "split", {})[0].name for _ in range(5000)]
    assert names.count("a") / 5000 == pytest.approx(0.9, abs=0.02)
    snap.models["a"].pods[0].health.state = HealthState.EJECTED
    assert {r.resolve(snap, "split", {})[0].name for _ in range(100)} == {"b"}


def test_unknown_missing_and_podless_models() -> None:
    snap = snapshot({"small": IDLE})
    with pytest.raises(ModelNotFound):
        router().resolve(snap, "nope", {})
    with pytest.raises(ModelNotFound):
        router().resolve(snap, None, {})
    snap.models["small"].pods[0].health.state = HealthState.EJECTED
    with pytest.raises(NoHealthyPod):
        router().resolve(snap, "small", {})
    with pytest.raises(NoHealthyPod):
        router().resolve(snap, "auto", SIMPLE)


def test_each_replica_fills_only_its_share_of_the_room() -> None:
    # Issue 9: three gateways between two reports must not each admit a pod's worth.
    snap = snapshot({"small": {"running": 20, "waiting": 0}})
    r = router()
    pod = snap.models["small"].pods[0]
    pod.inflight = 7  # 20 + 7 < 40: room, alone
    assert not r.pod_saturated(pod)
    r.replicas = 3  # 20 + 3 x 7 >= 40: this replica's third of the 20 left is used up
    assert r.pod_saturated(pod)


def test_a_stale_report_never_counts_below_this_replicas_own_requests() -> None:
    # Defect (issue 9 benchmark): the table arrives seconds after the pods were scraped;
    # what this replica sent in between was in neither the report nor the count since
    # it, so in a ramp the pods queued a third more than the threshold allowed.
    snap = snapshot({"small": {"running": 0, "waiting": 0}})
    r = router()
    pod = snap.models["small"].pods[0]
    pod.inflight = pod.inflight_at_report = 40  # all sent before the table came in
    assert r.pod_saturated(pod)  # 40 >= 32 * 1.25, whatever the stale report says
    assert not r.has_room(snap.models["small"])
    pod.inflight = pod.inflight_at_report = 39
    assert not r.pod_saturated(pod)


def test_sheddable_requests_leave_a_reserve_of_the_batch_to_the_classes_that_wait() -> None:
    # Defect (issue 9 benchmark): sheddable requests were admitted up to the queue
    # threshold, so under load every critical request waited at a pod behind a queue of
    # them (critical p99 TTFT 8x that of the same run with no sheddable traffic).
    snap = snapshot({"small": {"running": 28, "waiting": 0}})
    pool = snap.models["small"]
    r = router()
    r.sheddable_reserve = 0.15  # sheddable ones only below 32 * 0.85 = 27.2
    assert r.has_room(pool)  # a request that waits still fits (28 < 40)
    assert not r.has_room_for_sheddable(pool)
    pool.pods[0].reported = 27.0
    assert r.has_room_for_sheddable(pool)
    r.sheddable_reserve = 0.0  # none kept back: sheddable up to the full batch
    pool.pods[0].reported = 31.0
    assert r.has_room_for_sheddable(pool)
