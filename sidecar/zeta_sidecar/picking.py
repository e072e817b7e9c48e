"""Choosing one pod of a model: pure functions, randomness passed in.

Each picker sees the candidates as parallel sequences, index by index: effective weight
(table weight, reduced during warm-up, 0 when ejected or excluded) and load (this
replica's in-flight requests per unit of capacity).

- :func:`weighted_p2c`: two draws by weight (the second among the other pods); the one
  with less load wins; a tie goes to the first draw, so with equal loads the choice is
  exactly weighted random (the shares match the table's weights). Local in-flight
  counts react within one request, which the operator's weights, seconds old, cannot;
  two random draws instead of the least-loaded pod keep many replicas from herding
  onto the same one.
- :func:`smooth_wrr`: nginx's smooth weighted round robin: deterministic and spread
  out (weights 5,1,1 give a a b a c a a, not a a a a a b c). Keeps its state in a
  list the caller owns.
- :func:`weighted_random`: one draw by weight, load ignored.

All return an index, or ``-1`` when no candidate has a positive weight.
"""

import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate

__all__ = [
    "Draw",
    "cumulative",
    "default_draw",
    "draw",
    "smooth_wrr",
    "weighted_p2c",
    "weighted_random",
]

Draw = Callable[[], float]
"""Uniform numbers in [0, 1): ``random.Random().random`` in production, a seeded one in tests."""


def cumulative(weights: Sequence[float]) -> list[float]:
    """Running sums of ``weights``, the form :func:`draw` needs (precompute it per table)."""
    return list(accumulate(weights))


def draw(cum: Sequence[float], rand: Draw) -> int:
    """One index drawn with probability proportional to its weight; -1 if all are 0."""
    total = cum[-1] if cum else 0.0
    if total <= 0:
        return -1
    i = bisect_right(cum, rand() * total)
    # rand() < 1, yet float rounding may land exactly on the total.
    n = len(cum)
    if i >= n:
        i = n - 1
    # Zero-weight entries have cum[i] == cum[i-1]: bisect_right never lands on them.
    return i


def weighted_random(cum: Sequence[float], rand: Draw) -> int:
    """One draw by weight."""
    return draw(cum, rand)


def weighted_p2c(cum: Sequence[float], load: Callable[[int], float], rand: Draw) -> int:
    """Two distinct pods drawn by weight; the lower ``load(i)`` wins, the first on a tie.

    The second draw excludes the first pod, so a stalled pod is picked only when it
    is drawn alongside a pod even more loaded: never merely because it was drawn twice.
    """
    first = draw(cum, rand)
    if first < 0:
        return first
    total = cum[-1]
    low = cum[first - 1] if first else 0.0
    width = cum[first] - low
    rest = total - width
    if rest <= 0:
        return first
    r = rand() * rest
    if r >= low:
        r += width
    second = bisect_right(cum, r)
    if second >= len(cum) or second == first:  # float rounding at an edge
        return first
    return second if load(second) < load(first) else first


def smooth_wrr(current: list[float], weights: Sequence[float]) -> int:
    """One step of smooth weighted round robin; ``current`` is the caller's state.

    Every candidate gains its weight; the largest current wins and gives back the total.
    ``current`` must have the length of ``weights`` (start from zeros).
    """
    total = 0.0
    best = -1
    best_value = 0.0
    for i, weight in enumerate(weights):
        if weight <= 0:
            continue
        value = current[i] + weight
        current[i] = value
        total += weight
        if best < 0 or value > best_value:
            best, best_value = i, value
    if best >= 0:
        current[best] -= total
    return best


def default_draw(seed: int | None = None) -> Draw:
    """A uniform source for production (``seed=None``) or reproducible runs."""
    return random.Random(seed).random
