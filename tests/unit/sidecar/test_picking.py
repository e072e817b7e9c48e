"""Pickers: weight-proportional shares, P2C avoiding a loaded pod, smooth WRR order."""

import random
from collections import Counter

import pytest

from zeta_sidecar.picking import cumulative, draw, smooth_wrr, weighted_p2c, weighted_random

N = 20_000


def shares(counts: Counter[int], n: int) -> list[float]:
    return [counts[i] / n for i in range(max(counts) + 1)]


def test_weighted_random_matches_weights() -> None:
    rand = random.Random(1).random
    cum = cumulative([1.0, 2.0, 7.0])
    counts = Counter(weighted_random(cum, rand) for _ in range(N))
    assert shares(counts, N) == pytest.approx([0.1, 0.2, 0.7], abs=0.015)


def test_p2c_with_equal_load_matches_weights() -> None:
    rand = random.Random(2).random
    cum = cumulative([3.0, 1.0])
    counts = Counter(weighted_p2c(cum, lambda i: 0.0, rand) for _ in range(N))
    assert shares(counts, N) == pytest.approx([0.75, 0.25], abs=0.015)


def test_p2c_sends_a_stalled_pod_almost_nothing() -> None:
    # Pod 1 is stalled: its requests never finish, so its in-flight count only grows.
    rand = random.Random(3).random
    cum = cumulative([1.0, 1.0, 1.0, 1.0])
    inflight = [0, 0, 0, 0]
    counts: Counter[int] = Counter()
    for _ in range(2000):
        i = weighted_p2c(cum, lambda j: inflight[j] / 8, rand)
        counts[i] += 1
        inflight[i] += 1
        for j in (0, 2, 3):  # healthy pods finish their work at once
            inflight[j] = 0
    # Once it holds a request it loses every pairing: it gets its first one only.
    assert counts[1] <= 2
    assert counts[0] + counts[2] + counts[3] > 0.98 * 2000


def test_zero_weights_are_never_drawn_and_all_zero_gives_minus_one() -> None:
    rand = random.Random(4).random
    cum = cumulative([0.0, 1.0, 0.0])
    assert {draw(cum, rand) for _ in range(1000)} == {1}
    assert draw(cumulative([0.0, 0.0]), rand) == -1
    assert weighted_p2c([], lambda i: 0.0, rand) == -1


def test_smooth_wrr_is_spread_and_exact() -> None:
    state = [0.0, 0.0, 0.0]
    order = [smooth_wrr(state, [5.0, 1.0, 1.0]) for _ in range(7)]
    assert order == [0, 0, 1, 0, 2, 0, 0]
    state = [0.0, 0.0]
    counts = Counter(smooth_wrr(state, [2.0, 1.0]) for _ in range(300))
    assert counts == {0: 200, 1: 100}
    assert smooth_wrr([0.0], [0.0]) == -1
