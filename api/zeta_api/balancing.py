"""How the sidecar balances: picker, retries, outlier ejection, timeouts, warm-up, affinity.

Declared once and used twice: as the optional ``spec.balancing`` of a ``ZetaRouter``
(what the admin asks for) and as ``balancing`` in the routing table (what the operator
hands every sidecar), so a gateway's behaviour is set declaratively, in one place,
and all replicas agree. Defaults follow the proxies that made them common (Envoy's
outlier detection, Linkerd's retry budget), and every one is documented for
``kubectl explain``.
"""

import enum

from zeta_api.affinity import Affinity
from zeta_api.schema import prop, record

__all__ = ["Balancing", "Outlier", "Picker", "Retry", "Timeouts"]

_MS = 0.001


class Picker(enum.StrEnum):
    """How the sidecar chooses one pod of a model for each request."""

    #: Draw two pods by weight; the one with fewer local in-flight requests per capacity wins.
    WEIGHTED_P2C = "weighted-p2c"
    #: Nginx-style smooth weighted round robin: deterministic, weight-proportional.
    SMOOTH_WRR = "smooth-wrr"
    #: One draw by weight, ignoring local load.
    WEIGHTED_RANDOM = "weighted-random"


@record
class Retry:
    """Retries of requests that failed before any byte reached the client."""

    attempts: int = prop(
        "Retries per request after the first try, each on a different pod. Only connect "
        "errors and 502/503 answers received before any byte went to the client are "
        "retried; a stream that has started is never retried.",
        default=1,
        minimum=0,
        maximum=3,
    )
    budget: float = prop(
        "Retries allowed as a fraction of recent requests, so that retries cannot "
        "multiply the load on a struggling model (a retry budget, as in Linkerd).",
        default=0.2,
        minimum=0,
        maximum=1,
    )
    min_per_second: float = prop(
        "Retries per second allowed whatever the budget says, so a quiet gateway can "
        "still retry (Linkerd's default).",
        default=10.0,
        minimum=0,
    )


@record
class Outlier:
    """Ejection of pods that keep failing; they are probed back after the ejection time."""

    consecutive_failures: int = prop(
        "Consecutive failures (connect errors, 5xx) that eject a pod (Envoy's default).",
        default=5,
        minimum=1,
        maximum=1000,
    )
    base_ejection: float = prop(
        "How long a pod stays ejected the first time; each new ejection of the same pod "
        "multiplies it, up to maxEjection (Envoy's default).",
        default=30.0,
        duration=True,
        min_seconds=_MS,
    )
    max_ejection: float = prop(
        "The longest a pod stays ejected, however often it failed.",
        default=300.0,
        duration=True,
        min_seconds=_MS,
    )
    max_ejected_fraction: float = prop(
        "The largest fraction of a model's pods ejected at once: never more than half, so "
        "a fault that hits every pod (a bad request pattern) cannot empty the model.",
        default=0.5,
        minimum=0,
        maximum=0.5,
    )


@record
class Timeouts:
    """Upstream timeouts; none bounds a whole streamed response, which may run for minutes."""

    connect: float = prop(
        "Time to open a connection to a pod.",
        default=5.0,
        duration=True,
        min_seconds=_MS,
    )
    first_byte: float = prop(
        "Time from sending the request to the first response byte. Without streaming a "
        "model answers only when it has generated everything, hence the long default.",
        default=300.0,
        duration=True,
        min_seconds=_MS,
    )
    idle: float = prop(
        "Longest silence between two chunks of a streamed response.",
        default=60.0,
        duration=True,
        min_seconds=_MS,
    )


@record
class Balancing:
    """The sidecar's balancing settings."""

    picker: Picker = prop(
        "How one pod of a model is chosen: weighted-p2c (two weighted draws, the less "
        "loaded wins; avoids herding on stale weights), smooth-wrr or weighted-random.",
        default=Picker.WEIGHTED_P2C,
    )
    warmup: float = prop(
        "How long a pod that just joined the table takes to ramp up from a small share to "
        "its full weight (cold caches, lazy compilation); 0s disables it.",
        default=30.0,
        duration=True,
    )
    retry: Retry = prop("Retries before any byte reached the client.", default_factory=Retry)
    outlier: Outlier = prop("Ejection of failing pods.", default_factory=Outlier)
    timeouts: Timeouts = prop("Upstream timeouts.", default_factory=Timeouts)
    affinity: Affinity | None = prop(
        "Prefix and session affinity of requests to pods, bounded by load (every "
        "model's, unless it declares its own); absent: none.",
        default=None,
    )
