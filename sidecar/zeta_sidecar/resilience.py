"""Retry budget and outlier ejection: pure bookkeeping, the time passed in.

- :class:`RetryBudget`: retries may add at most ``budget`` (about 20%) of the requests
  of the last ten seconds, plus ``min_per_second`` so a quiet gateway can still retry
  (Linkerd's budget). A failing model then sees at most 1.2x its load, never 2x.
- :class:`Health`: one pod's failure record. ``consecutive_failures`` failures in a
  row eject it for ``base_ejection * times ejected`` (capped at ``max_ejection``), but
  only if that keeps at most ``max_ejected_fraction`` of its model's pods ejected
  (:func:`may_eject`): a fault that hits every pod must not empty the model. When the
  ejection time is over the pod is *probing*: the prober checks it before it gets
  traffic again, and the first real failure after that ejects it again, for longer.

What a pod's health and age make of its weight is :mod:`~zeta_sidecar.pods`' job.
"""

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from zeta_api import Outlier

__all__ = ["Health", "HealthState", "RetryBudget", "may_eject"]

_WINDOW = 10
"""Seconds of history the retry budget weighs, in one-second buckets."""


@dataclass(slots=True)
class RetryBudget:
    """Retries allowed as a fraction of recent requests."""

    budget: float
    min_per_second: float
    _requests: list[int] = field(default_factory=lambda: [0] * _WINDOW)
    _retries: list[int] = field(default_factory=lambda: [0] * _WINDOW)
    _second: int = -1

    def _advance(self, now: float) -> int:
        second = int(now)
        if second != self._second:
            gap = second - self._second
            if self._second < 0 or gap >= _WINDOW or gap < 0:
                self._requests[:] = [0] * _WINDOW
                self._retries[:] = [0] * _WINDOW
            else:
                for s in range(self._second + 1, second + 1):
                    self._requests[s % _WINDOW] = 0
                    self._retries[s % _WINDOW] = 0
            self._second = second
        return second % _WINDOW

    def request(self, now: float) -> None:
        """Count a request (its first try)."""
        self._requests[self._advance(now)] += 1

    def try_retry(self, now: float) -> bool:
        """Spend a retry if the budget allows; ``False`` means do not retry."""
        slot = self._advance(now)
        allowed = self.budget * sum(self._requests) + self.min_per_second * _WINDOW
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[slot] += 1
        return True


class HealthState(enum.Enum):
    """Where a pod stands with the outlier detector."""

    HEALTHY = "healthy"
    EJECTED = "ejected"
    PROBING = "probing"
    """The ejection time is over; waiting for the prober's verdict."""
    PROBATION = "probation"
    """Back in traffic after a good probe; the next failure ejects at once."""


@dataclass(slots=True)
class Health:
    """One pod's failure record."""

    state: HealthState = HealthState.HEALTHY
    consecutive: int = 0
    ejections: int = 0
    ejected_until: float = 0.0

    @property
    def serving(self) -> bool:
        """Whether the pod may get new requests."""
        return self.state is HealthState.HEALTHY or self.state is HealthState.PROBATION

    def success(self) -> None:
        """A request got an answer (any status below 500)."""
        self.consecutive = 0
        if self.state is HealthState.PROBATION:
            self.state = HealthState.HEALTHY

    def failure(self, outlier: Outlier, now: float, *, may_eject: bool) -> bool:
        """A connect error or 5xx; ``True`` if it ejects the pod now."""
        self.consecutive += 1
        if not self.serving:
            return False
        threshold = 1 if self.state is HealthState.PROBATION else outlier.consecutive_failures
        if self.consecutive < threshold or not may_eject:
            return False
        self.eject(outlier, now)
        return True

    def eject(self, outlier: Outlier, now: float) -> None:
        """Eject for ``base * times`` seconds, capped; a failed probe calls this too."""
        self.ejections += 1
        duration = min(outlier.max_ejection, outlier.base_ejection * self.ejections)
        self.state = HealthState.EJECTED
        self.ejected_until = now + duration

    def due_for_probe(self, now: float) -> bool:
        """The ejection time is over: move to probing, return ``True`` once."""
        if self.state is HealthState.EJECTED and now >= self.ejected_until:
            self.state = HealthState.PROBING
            return True
        return False

    def probed(self, ok: bool, outlier: Outlier, now: float) -> None:
        """The prober's verdict: back to traffic on probation, or ejected for longer."""
        if self.state is not HealthState.PROBING:
            return
        if ok:
            self.state = HealthState.PROBATION
            self.consecutive = 0
        else:
            self.eject(outlier, now)


def may_eject(states: Iterable[Health], outlier: Outlier) -> bool:
    """Whether one more pod of a model may be ejected under ``max_ejected_fraction``.

    Probing pods count as ejected (they get no traffic). With 2 pods and the default
    0.5, one may go; a model's only pod is never ejected.
    """
    states = list(states)
    out = sum(1 for h in states if not h.serving)
    return out + 1 <= math.floor(outlier.max_ejected_fraction * len(states))
