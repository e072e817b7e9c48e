"""The cache-aware benchmark's load-bound figures from the pods' request spans (issue 12)."""

from typing import Any

import pytest
from routing.affinity import LOAD_BOUND, TRANSIT, bound_figures, declared_bound
from routing.systems import Pod

PODS = [Pod(f"p{i}", "sim-7b", 0, 32, "127.0.0.1", 9000 + i) for i in range(4)]


def figures_of(spans: dict[str, list[tuple[float, float | None]]]) -> dict[str, Any]:
    return bound_figures(spans, PODS, time_scale=4.0, load_bound=0.25)


def test_requests_sent_to_a_pod_that_stayed_above_its_bound_count() -> None:
    # One request per pod from 0; p0 gets four more, at 1, 2, 3 and 4, all held to 10. With
    # one more, the bound is ceil(1.25 * (L + 1) / 4): p0 could take the request at 1 (2
    # with it, bound 2) but none after (3 against 2, 4 against 3, 5 against 3).
    spans: dict[str, list[tuple[float, float | None]]] = {
        "p0": [(t, 10.0) for t in (0.0, 1.0, 2.0, 3.0, 4.0)],
        **{f"p{i}": [(0.0, 10.0)] for i in (1, 2, 3)},
    }
    figures = figures_of(spans)
    assert figures["bound_sent_above"] == 3 / 8
    assert (figures["bound_sent_above_at_once"], figures["sent"]) == (3, 8)
    # Above ceil(1.25 * mean) from 2 (3 against 2) to the end at 10: 8 wall s, at time
    # scale 4; 8 of the 10 busy seconds; at worst 5 requests against 1.25 * 2.
    assert figures["bound_longest"] == 32.0
    assert figures["bound_above"] == pytest.approx(0.8)
    assert figures["bound_max"] == pytest.approx(2.0)


def test_a_request_that_arrived_within_the_transit_of_a_moment_with_room_is_not_counted() -> None:
    # As above, but p0's second extra request arrives just after the first: the gateway
    # may have decided it while p0 still had room, a moment before the pod saw it.
    late = 1.0 + TRANSIT / 2
    spans: dict[str, list[tuple[float, float | None]]] = {
        "p0": [(0.0, 10.0), (1.0, 10.0), (late, None)],
        **{f"p{i}": [(0.0, 10.0)] for i in (1, 2, 3)},
    }
    assert figures_of(spans)["bound_sent_above"] == 0.0
    spans["p0"][2] = (1.0 + 2 * TRANSIT, None)
    assert figures_of(spans)["bound_sent_above"] == 1 / 6


def test_a_request_another_pod_received_just_after_may_have_been_decided_before() -> None:
    # p0 cannot take its request at 2 on what the pods hold (3 against 2), but p1 received
    # one within the transit after: decided first, it was in the gateway's count, where it
    # makes room (3 against ceil(1.25 * 7 / 4) = 3).
    spans: dict[str, list[tuple[float, float | None]]] = {
        "p0": [(0.0, 10.0), (1.0, 10.0), (2.0, 10.0)],
        "p1": [(0.0, 10.0), (2.0 + TRANSIT / 2, 10.0)],
        **{f"p{i}": [(0.0, 10.0)] for i in (2, 3)},
    }
    assert figures_of(spans)["bound_sent_above"] == 0.0
    spans["p1"][1] = (2.0 + 2 * TRANSIT, 10.0)  # too late to have been decided before it
    assert figures_of(spans)["bound_sent_above"] == 1 / 7


def test_a_pod_that_kept_its_load_but_got_nothing_new_was_not_sent_above() -> None:
    # p0 keeps 3 requests while the others drain from 2 each to 1 at 4 and to 0 at 6: it
    # is above ceil(1.25 * mean) from 4 (3 against 2) until the mean falls below one
    # request a pod at 6, and it never receives one more.
    spans: dict[str, list[tuple[float, float | None]]] = {
        "p0": [(0.0, 10.0)] * 3,
        **{f"p{i}": [(0.0, 4.0), (0.0, 6.0)] for i in (1, 2, 3)},
    }
    figures = figures_of(spans)
    assert figures["bound_sent_above"] == 0.0
    assert figures["bound_longest"] == 8.0  # 2 wall s at time scale 4
    assert figures["bound_above"] == pytest.approx(2 / 6)  # of the 6 s with a mean of 1 or more


def test_a_pod_without_spans_leaves_the_figures_unmeasured() -> None:
    figures = figures_of({"p0": [(0.0, 1.0)], "p1": [], "p2": []})
    assert set(figures) >= {"bound_max", "bound_above", "bound_longest", "bound_sent_above"}
    assert set(figures.values()) == {None}


def test_the_bound_judged_is_the_one_the_system_declares() -> None:
    assert declared_bound((("prefix", True), ("loadBound", 0.5))) == 0.5
    assert declared_bound((("prefix", True),)) == LOAD_BOUND
