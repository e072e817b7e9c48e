"""From Prometheus' instant-query answers to per-pod loads. Pure: no I/O, no clock.

A sample is usable only when it names a pod, its value is a finite, non-negative
number, and it is not older than ``max_age`` at the query's evaluation time. Anything
else (missing, NaN, Inf, negative, stale, two samples for one pod that disagree on
nothing sensible) leaves that signal of that pod unknown, which the weighting treats
as neutral: a bad answer must never become a weight of 0 or of everything.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

from zeta_api import SIGNALS, Signal
from zeta_operator.snapshots import PodLoad

__all__ = ["extract", "samples_by_pod"]


def samples_by_pod(
    result: Iterable[Mapping[str, Any]], *, now: float, max_age: float
) -> dict[str, float]:
    """One value per pod from an instant vector; unusable samples are dropped.

    Should a query return several series per pod (a user override without
    ``by (pod)``), the largest value counts: for load, erring towards busy is the
    safe side."""
    values: dict[str, float] = {}
    known = values.get
    for sample in result:
        metric = sample.get("metric")
        # Parsed JSON gives dicts: the exact type is asked first, the ABC only otherwise.
        pod = metric.get("pod") if type(metric) is dict or isinstance(metric, Mapping) else None
        if not isinstance(pod, str) or not pod:
            continue
        # Inline, not a helper: this runs once per pod and signal.
        try:
            stamp, text = sample["value"]
            value = float(text)
            stamp = float(stamp)
        except (KeyError, TypeError, ValueError):
            continue
        # One chained comparison for finite and non-negative: NaN fails it too.
        if not 0.0 <= value < _INF or now - stamp > max_age:
            continue
        previous = known(pod)
        if previous is None or not previous > value:  # as max(value, previous)
            values[pod] = value
    return values


_INF = math.inf


def extract(
    results: Mapping[Signal, Iterable[Mapping[str, Any]]],
    pod_names: Iterable[str],
    *,
    now: float,
    max_age: float,
) -> dict[str, PodLoad]:
    """The load of every named pod; pods absent from the answers are wholly unknown."""
    columns: list[tuple[str, dict[str, float]]] = []
    for signal, result in results.items():
        info = SIGNALS[signal]
        values = samples_by_pod(result, now=now, max_age=max_age)
        ceiling = info.ceiling
        if ceiling is not None:  # once per sample here, not once per pod and signal below
            values = {pod: ceiling if ceiling < v else v for pod, v in values.items()}
        columns.append((info.field, values))
    return {
        pod: PodLoad(**{field: values.get(pod) for field, values in columns}) for pod in pod_names
    }
