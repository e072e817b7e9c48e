"""The cache-aware benchmark's load-bound figures from sampled pod loads (issue 12)."""

from typing import Any

from routing.affinity import bound_figures
from routing.systems import Pod

PODS = [Pod(f"p{i}", "sim-7b", 0, 32, "127.0.0.1", 9000 + i) for i in range(4)]


def samples(rows: list[tuple[float, list[int], list[int]]]) -> list[dict[str, Any]]:
    """``(t, loads, requests_total)`` per moment, pod by pod, as the sampler writes them."""
    return [
        {"t": t, "pod": pod.name, "running": load, "waiting": 0, "requests_total": total}
        for t, loads, totals in rows
        for pod, load, total in zip(PODS, loads, totals, strict=True)
    ]


def figures_of(rows: list[tuple[float, list[int], list[int]]]) -> dict[str, Any]:
    return bound_figures(samples(rows), PODS, time_scale=4.0, load_bound=0.25)


def test_requests_sent_to_a_pod_above_its_bound_between_two_moments_count() -> None:
    # Mean 2, bound ceil(1.25 * 2) = 3: p0 at 6 is above it at 0.0 and 0.5, and got 2
    # more requests in between (of 5 in all); at 1.0 it is back within it.
    figures = figures_of(
        [
            (0.0, [6, 1, 1, 0], [10, 10, 10, 10]),
            (0.5, [6, 1, 1, 0], [12, 11, 12, 10]),
            (1.0, [3, 2, 2, 1], [13, 12, 12, 11]),
        ]
    )
    assert figures["bound_sent_above"] == 2 / 8
    assert figures["bound_longest"] == 4.0  # 1 wall s above, at time scale 4
    assert figures["bound_above"] == 2 / 3


def test_a_pod_that_kept_its_load_but_got_nothing_new_was_not_sent_above() -> None:
    # p0 stays above its bound while the others drain, and receives nothing: above it,
    # but not pinned there.
    figures = figures_of(
        [
            (0.0, [5, 2, 2, 1], [10, 10, 10, 10]),
            (0.5, [5, 1, 1, 1], [10, 12, 11, 11]),
            (1.0, [4, 1, 1, 0], [10, 13, 12, 11]),
        ]
    )
    assert figures["bound_sent_above"] == 0.0
    assert figures["bound_longest"] == 4.0  # still above at the last moment: 1 wall s
    assert figures["bound_above"] == 1.0


def test_moments_with_a_pod_unsampled_or_no_load_are_left_out() -> None:
    # Idle at 0.0; p3 not sampled at 0.5 (its sample timed out).
    rows = samples([(0.0, [0, 0, 0, 0], [1, 1, 1, 1]), (0.5, [9, 1, 0, 0], [5, 2, 1, 1])])
    rows = [r for r in rows if not (r["t"] == 0.5 and r["pod"] == "p3")]
    figures = bound_figures(rows, PODS, time_scale=4.0)
    assert figures == {
        "bound_max": None,
        "bound_above": None,
        "bound_longest": None,
        "bound_sent_above": None,
    }
