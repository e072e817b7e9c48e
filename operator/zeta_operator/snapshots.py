"""Typed snapshots passed between the stages: what a pod reported, what it is.

Plain frozen values: collection (discovery, metrics) produces them, the pure stages
(weighting, tables, reporting) only read them.
"""

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

from zeta_api import SIGNALS, slot_init

__all__ = ["PodLoad", "PodRecord"]

_SIGNAL_FIELDS = tuple(info.field for info in SIGNALS.values())
_signal_values = operator.attrgetter(*_SIGNAL_FIELDS)
_INF = math.inf


@slot_init  # one per pod and interval: the faster __init__ (see zeta_api.slots)
@dataclass(frozen=True, slots=True, kw_only=True)
class PodLoad:
    """One pod's load as Prometheus reported it; ``None`` is unknown (missing, NaN,
    Inf or stale), never a guess. One field per row of :data:`zeta_api.SIGNALS`, by
    its ``field`` name (typed here, because the weighting reads each by name)."""

    running: float | None = None
    waiting: float | None = None
    kv_cache: float | None = None
    ttft_p95: float | None = None
    """Seconds."""
    error_rate: float | None = None
    """Failed requests per second."""
    prefix_cache_hits: float | None = None
    """Prompt tokens found in the prefix cache per second (reported, not weighed)."""
    prefix_cache_queries: float | None = None
    """Prompt tokens looked up in the prefix cache per second (reported, not weighed)."""

    @property
    def known(self) -> bool:
        """Whether the core signals (running and waiting) are known: without them a
        pod's utilisation cannot be judged, whatever else is known."""
        return self.running is not None and self.waiting is not None

    def __post_init__(self) -> None:
        # One attrgetter call and a chained comparison (NaN fails it): extraction builds
        # one of these per pod and interval.
        for value in _signal_values(self):
            if value is not None and not 0.0 <= value < _INF:
                self._refuse()

    def _refuse(self) -> None:
        for name in _SIGNAL_FIELDS:
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < _INF:
                raise ValueError(f"{name} must be finite and >= 0 or None, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PodRecord:
    """What the operator keeps of a Pod object (the kopf index holds these)."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    ready: bool = False
    """The Pod's ``Ready`` condition is True (and it is not being deleted)."""
    draining: bool = False
    """Annotated ``zeta.dev/drain: "true"``: no new requests, in-flight ones finish."""
