"""Prefix and session affinity: block hashing, the bounded index, the load bound, the pick."""

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeta_api import Affinity, Balancing, ModelAffinity
from zeta_sidecar.affinity import AffinityIndex, Lru, longest, under_bound
from zeta_sidecar.affinity_keys import (
    CHARS_PER_TOKEN,
    AffinityPlan,
    Keys,
    block_chain,
    render,
    request_keys,
)
from zeta_sidecar.resilience import HealthState
from zeta_sidecar.routing import Router
from zeta_sidecar.table_store import Snapshot, TableStore
from zeta_sidecar.testing import endpoint, table_json

SYSTEM = "You are a careful assistant who answers in full sentences. " * 8
PLAN = AffinityPlan.of(ModelAffinity(prefix=True, block_tokens=4), None, ["a:1", "b:1", "c:1"])
assert PLAN is not None


def chat(*turns: str, system: str = SYSTEM) -> dict[str, object]:
    roles = ["user", "assistant"]
    return {
        "model": "m",
        "messages": [{"role": "system", "content": system}]
        + [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)],
    }


# --- block hashing ------------------------------------------------------------------


def test_the_chain_is_stable_and_ignores_how_the_json_was_written() -> None:
    body = chat("What is the capital of France, and why?")
    reordered = json.loads(
        json.dumps(
            {
                "messages": [dict(reversed(list(m.items()))) for m in body["messages"]],  # type: ignore[attr-defined]
                "model": "m",
                "temperature": 0.2,
            },
            indent=2,
        )
    )
    a, b = request_keys(body, {}, PLAN), request_keys(reordered, {}, PLAN)
    assert a is not None
    assert b is not None
    assert a.chain
    assert list(a.chain) == list(b.chain)
    assert a.placement == b.placement


def test_a_later_turn_extends_the_earlier_turns_chain() -> None:
    first = request_keys(chat("Tell me about tides."), {}, PLAN)
    later = request_keys(chat("Tell me about tides.", "Tides are...", "And rips?"), {}, PLAN)
    assert first is not None
    assert later is not None
    assert list(later.chain[: len(first.chain)]) == list(first.chain)
    assert len(later.chain) > len(first.chain)
    # The opening (system and first question) names the same placement in every turn.
    assert later.placement == first.placement


def test_different_prefixes_give_different_chains_from_the_first_different_block() -> None:
    block = 4 * CHARS_PER_TOKEN
    a = block_chain("x" * block * 3, block, 64)
    b = block_chain("x" * block + "y" * block * 2, block, 64)
    assert a[0] == b[0]
    assert a[1] != b[1]
    assert a[2] != b[2]
    other = request_keys(chat("hello", system="Another system prompt. " * 8), {}, PLAN)
    mine = request_keys(chat("hello"), {}, PLAN)
    assert other is not None
    assert mine is not None
    assert other.chain[0] != mine.chain[0]
    assert other.placement != mine.placement


def test_only_full_blocks_up_to_the_limit_are_hashed() -> None:
    assert block_chain("x" * 15, 16, 8) == []
    assert len(block_chain("x" * 16 * 100, 16, 8)) == 8
    assert block_chain("x" * 64, 16, 8) != block_chain("x" * 64, 32, 8)[:1]


def test_rendering_content_parts_prompts_and_bodies_without_text() -> None:
    parts = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}
        ]
    }
    assert render(parts, 1000) == ("user\nhi[image_url]\n", len("user\nhi[image_url]\n"))
    assert render({"prompt": "abc"}, 1000) == ("abc", 3)
    assert render({"input": "embed me"}, 1000) is None
    assert request_keys({"messages": []}, {}, PLAN) is None
    # A lone surrogate (valid JSON) must not break the placement key.
    assert request_keys({"prompt": "\ud800" * 100}, {}, PLAN) is not None


def test_rendering_stops_near_the_limit() -> None:
    body = chat(*["word " * 200] * 50)
    text, _ = render(body, 2000) or ("", 0)
    assert 2000 <= len(text) < 4000


# --- the index ----------------------------------------------------------------------


def test_the_index_never_holds_more_than_its_bound() -> None:
    lru: Lru[int] = Lru(max_entries=100, ttl=60.0)
    for i in range(10_000):
        lru.put([i, i + 1, i + 2], "a:1", now=0.0)
        assert len(lru) <= 100
    assert lru.get(10_001, 0.0) == "a:1"  # the most recent stay
    assert lru.get(5, 0.0) is None  # the least recently put went
    lru.resize(10, 60.0)
    assert len(lru) == 10


def test_entries_expire_and_expired_ones_are_dropped_as_traffic_goes_on() -> None:
    lru: Lru[int] = Lru(max_entries=1000, ttl=10.0)
    lru.put([1, 2, 3], "a:1", now=0.0)
    assert lru.get(1, 9.9) == "a:1"
    assert lru.get(1, 10.0) is None
    for t in range(20):
        lru.put([100 + t], "b:1", now=20.0 + t / 10)
    assert len(lru) == 20  # the three expired ones are gone, not merely ignored


def test_a_reput_refreshes_an_entrys_place_and_its_time() -> None:
    lru: Lru[int] = Lru(max_entries=2, ttl=10.0)
    lru.put([1], "a:1", now=0.0)
    lru.put([2], "a:1", now=0.0)
    lru.put([1], "b:1", now=5.0)
    lru.put([3], "a:1", now=5.0)  # evicts 2, the least recently put
    assert lru.get(2, 5.0) is None
    assert lru.get(1, 14.0) == "b:1"


def test_longest_finds_the_deepest_known_prefix() -> None:
    lru: Lru[int] = Lru(max_entries=100, ttl=10.0)
    lru.put([1, 2, 3], "a:1", now=0.0)
    lru.put([1, 2, 3, 4, 5, 6], "b:1", now=1.0)
    assert longest(lru, [1, 2, 3, 4, 5, 6, 7, 8], 2.0) == (6, "b:1")
    assert longest(lru, [1, 2, 3, 9], 2.0) == (3, "b:1")
    assert longest(lru, [7, 8], 2.0) is None
    assert longest(lru, [], 2.0) is None


# --- the load bound -----------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.sampled_from([8, 16, 32]), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    st.floats(0.0, 2.0),
    st.integers(0, 2**32 - 1),
)
def test_no_pod_over_the_bound_is_chosen_while_one_under_it_exists(
    pods: list[tuple[int, int, bool]], epsilon: float, key: int
) -> None:
    loads = [float(load) for load, _, _ in pods]
    caps = [cap for _, cap, _ in pods]
    serving = [ok for _, _, ok in pods]
    eligible = under_bound(loads, caps, serving, epsilon)
    total = sum(x for x, ok in zip(loads, serving, strict=True) if ok)
    capacity = sum(c for c, ok in zip(caps, serving, strict=True) if ok)
    for i, ok in enumerate(eligible):
        if ok:
            assert serving[i]
            assert (loads[i] + 1) / caps[i] <= (1 + epsilon) * (total + 1) / capacity + 1 / caps[i]
    if any(serving):  # the least loaded serving pod (per capacity) is always within it
        least = min((i for i in range(len(pods)) if serving[i]), key=lambda i: loads[i] / caps[i])
        assert eligible[least]
    addresses = [f"10.0.0.{i}:8000" for i in range(len(pods))]
    plan = AffinityPlan.of(ModelAffinity(prefix=True), None, addresses)
    assert plan is not None
    index = AffinityIndex()
    for keys in (Keys([key], 0, key), Keys((), 0, None, str(key), key)):
        index.record(keys, addresses[key % len(addresses)], 0.0)  # a pin, maybe over it
        i, _, outcome = index.choose(keys, plan, eligible, 1.0)
        assert (i >= 0 and eligible[i]) == any(eligible)
        assert (outcome == "no_candidate") == (not any(eligible))


def test_an_idle_model_takes_one_request_per_pod_before_doubling_up() -> None:
    assert under_bound([0.0] * 4, [32] * 4, [True] * 4, 0.25) == [True] * 4
    assert under_bound([1.0, 0.0, 0.0, 0.0], [32] * 4, [True] * 4, 0.25) == [
        False,
        True,
        True,
        True,
    ]
    assert under_bound([1.0], [32], [False], 0.25) == [False]


# --- choosing ----------------------------------------------------------------------


def test_rendezvous_placement_is_the_same_in_every_replica() -> None:
    addresses = [f"10.0.0.{i}:8000" for i in range(8)]
    plan = AffinityPlan.of(ModelAffinity(prefix=True), None, addresses)
    assert plan is not None
    chosen = set()
    for n in range(200):
        keys = request_keys(chat(f"question number {n}"), {}, plan)
        assert keys is not None
        a = AffinityIndex().choose(keys, plan, [True] * 8, 0.0)
        b = AffinityIndex().choose(keys, plan, [True] * 8, 0.0)
        assert a == b
        assert a[2] == "placed"
        chosen.add(a[0])
    assert len(chosen) == 8  # conversations spread over every pod


def test_a_pod_leaving_moves_only_the_keys_it_held() -> None:
    addresses = [f"10.0.0.{i}:8000" for i in range(5)]
    full = AffinityPlan.of(ModelAffinity(prefix=True), None, addresses)
    less = AffinityPlan.of(ModelAffinity(prefix=True), None, addresses[:-1])
    assert full is not None
    assert less is not None
    moved = 0
    for key in range(500):
        keys = Keys([], 0, key)
        a, _, _ = AffinityIndex().choose(keys, full, [True] * 5, 0.0)
        b, _, _ = AffinityIndex().choose(keys, less, [True] * 4, 0.0)
        if a != 4:
            assert a == b
        else:
            moved += 1
    assert 50 < moved < 150


def test_the_index_sends_a_conversation_where_it_went_and_bounds_it() -> None:
    index = AffinityIndex()
    assert PLAN is not None
    opening = request_keys(chat("Plan a trip."), {}, PLAN)
    second = request_keys(chat("Plan a trip.", "Sure: ...", "Where to?"), {}, PLAN)
    later = request_keys(
        chat("Plan a trip.", "Sure: ...", "Where to?", "Rome.", "Cheaper?"), {}, PLAN
    )
    assert opening is not None
    assert second is not None
    assert later is not None
    # Its opening alone known (all but a partial block of it is the shared system
    # prompt): the placement decides, not the index.
    index.record(opening, "c:1", 0.0)
    assert index.choose(later, PLAN, [True] * 3, 1.0)[2] == "placed"
    index.record(second, "c:1", 0.0)  # say it had been bounded out to c
    assert index.choose(later, PLAN, [True] * 3, 1.0) == (2, "prefix", "hit")
    i, kind, outcome = index.choose(later, PLAN, [True, True, False], 1.0)
    assert (kind, outcome) == ("prefix", "bounded_out")
    assert i in (0, 1)
    # Another conversation, the same system prompt: the placement decides, not the index.
    stranger = request_keys(chat("Something else entirely, please.", "Yes?", "More."), {}, PLAN)
    assert stranger is not None
    assert index.choose(stranger, PLAN, [True] * 3, 1.0)[2] == "placed"


def test_session_keys_come_from_the_header_or_the_user_field() -> None:
    plan = AffinityPlan.of(None, Affinity(session=True, session_header="x-conv"), ["a:1"])
    assert plan is not None
    assert not plan.prefix
    body = {"messages": [{"role": "user", "content": "hi"}], "user": "u-1"}
    by_header = request_keys(body, {"x-conv": "c-9"}, plan)
    by_user = request_keys(body, {}, plan)
    assert by_header is not None
    assert by_header.session == "c-9"
    assert by_user is not None
    assert by_user.session == "u-1"
    no_user = AffinityPlan.of(None, Affinity(session=True, session_user=False), ["a:1"])
    assert no_user is not None
    assert request_keys(body, {}, no_user) is None


def test_a_model_of_its_own_overrides_the_routers_settings() -> None:
    router = Affinity(prefix=True, session_header="x-conv")
    assert AffinityPlan.of(ModelAffinity(), router, ["a:1"]) is None  # both off for it
    plan = AffinityPlan.of(ModelAffinity(session=True), router, ["a:1"])
    assert plan is not None
    assert plan.session
    assert not plan.prefix
    assert plan.header == "x-conv"
    assert AffinityPlan.of(None, None, ["a:1"]) is None


# --- the pick, through the router ----------------------------------------------------


def snapshot(loads: list[float | None], **affinity: object) -> Snapshot:
    eps = [
        endpoint(
            f"127.0.0.{i + 1}:8000",
            load=None if load is None else {"running": load, "waiting": 0},
        )
        for i, load in enumerate(loads)
    ]
    text = table_json({"m": eps}, balancing={"warmup": "0s", "affinity": affinity})
    snap, _ = TableStore(max_bytes=1 << 20).load(text.encode(), 0.0)
    return snap


@pytest.mark.parametrize("replicas", [1, 3])
def test_a_session_pin_holds_and_moves_when_its_pod_is_over_the_bound_or_ejected(
    replicas: int,
) -> None:
    snap = snapshot([4.0, 4.0, 4.0, 4.0], session=True)
    model, balancing = snap.models["m"], snap.balancing
    assert model.affinity is not None
    decisions: list[tuple[str, str, str]] = []
    router = Router(rand=random.Random(0).random, headroom=0.25, replicas=replicas)
    router.decided = lambda *d: decisions.append(d)
    keys = request_keys({}, {"x-session-id": "s-1"}, model.affinity)
    assert keys is not None
    home = router.pick(model, balancing, 0.0, 1, keys=keys)
    assert home is not None
    for t in range(5):
        assert router.pick(model, balancing, 1.0 + t, 1, keys=keys) is home
    assert decisions[0][1:] == ("session", "placed")
    assert {d[2] for d in decisions[1:]} == {"hit"}
    # Over (1 + 1) x the average now: as a lone gateway counts it, or as reported.
    if replicas == 1:
        home.inflight = 20
    else:
        home.reported = 20.0
    moved = router.pick(model, balancing, 10.0, 1, keys=keys)
    assert moved is not None
    assert moved is not home
    assert decisions[-1][1:] == ("session", "session_moved")
    assert router.pick(model, balancing, 11.0, 1, keys=keys) is moved  # the pin moved too
    moved.health.state = HealthState.EJECTED
    again = router.pick(model, balancing, 12.0, 2, keys=keys)  # epoch 2: weights recomputed
    assert again is not None
    assert again is not moved
    assert again is not home
    assert decisions[-1][2] == "session_moved"


def test_a_lone_gateway_bounds_by_its_exact_counts_not_by_stale_reports() -> None:
    """The report counts requests that ended between the pods' scrape and the table's
    arrival; a lone gateway knows they ended. Judged on the report, the other pods look
    busy, the average high, and a pod above the true bound within it."""
    snap = snapshot([4.0, 6.0, 6.0, 6.0], session=True)
    model, balancing = snap.models["m"], snap.balancing
    assert model.affinity is not None
    decisions: list[tuple[str, str, str]] = []
    router = Router(rand=random.Random(0).random, headroom=0.25)
    router.decided = lambda *d: decisions.append(d)
    keys = request_keys({}, {"x-session-id": "s-1"}, model.affinity)
    assert keys is not None
    home = router.pick(model, balancing, 0.0, 1, keys=keys)
    assert home is not None
    for pod in model.pods:  # home holds 4 requests, the others none (theirs ended)
        pod.reported = 4.0 if pod is home else 6.0
        pod.inflight = pod.inflight_at_report = 4 if pod is home else 0
    # Truly 4 of 4 requests on home: with one more, over ceil(2 x 5 / 4) = 3.
    moved = router.pick(model, balancing, 1.0, 1, keys=keys)
    assert moved is not home
    assert decisions[-1][1:] == ("session", "session_moved")


def test_a_hot_prefix_spreads_once_its_pod_reaches_the_bound() -> None:
    snap = snapshot([None] * 4, prefix=True, loadBound=0.25)
    model, balancing = snap.models["m"], snap.balancing
    assert model.affinity is not None
    router = Router(rand=random.Random(0).random, headroom=0.25)
    keys = request_keys(chat("The same question."), {}, model.affinity)
    assert keys is not None
    for _ in range(40):  # none of them ends: in-flight counts grow
        pod = router.pick(model, balancing, 0.0, 1, keys=keys)
        assert pod is not None
        pod.inflight += 1
    counts = sorted(p.inflight for p in model.pods)
    assert counts[-1] <= 1.25 * 40 / 4 + 1  # never above the bound
    assert counts[0] >= 1


def test_a_retry_leaves_affinity_aside_and_the_index_follows_the_request() -> None:
    snap = snapshot([1.0, 1.0], prefix=True)
    model, balancing = snap.models["m"], snap.balancing
    assert model.affinity is not None
    router = Router(rand=random.Random(0).random, headroom=0.25)
    keys = request_keys(chat("Retry me.", "Done. " * 100, "Again?"), {}, model.affinity)
    assert keys is not None
    first = router.pick(model, balancing, 0.0, 1, keys=keys)
    retry = router.pick(model, balancing, 0.0, 1, first, keys=keys)
    assert first is not None
    assert retry is not None
    assert retry is not first
    assert router.pick(model, balancing, 1.0, 1, keys=keys) is retry  # where it last went


def test_without_affinity_the_pick_is_unchanged() -> None:
    snap = snapshot([1.0, 1.0, 1.0])
    assert snap.models["m"].affinity is None
    a = Router(rand=random.Random(3).random, headroom=0.25)
    b = Router(rand=random.Random(3).random, headroom=0.25)
    model = snap.models["m"]
    balancing = Balancing()
    for t in range(50):
        assert a.pick(model, balancing, float(t), 1) is b.pick(model, balancing, float(t), 1)
