"""The degradation ladder (DESIGN.md section 7) as a pure state machine.

Rungs, by how long metrics have been failing (an error, a timeout, or answers with
no usable sample for any pod)::

    none ──fail──> last-good ──failing for staleAfter──> base-weights
      ^                │                                     │
      └──── data ──────┴──────────────── data ───────────────┘

With no good weights ever computed (Prometheus down since the start) there is
nothing to keep: the ladder starts at base-weights, and says so.

Time is passed in (monotonic seconds), so tests need no clock.
"""

from dataclasses import dataclass, replace

from zeta_api import Fallback

__all__ = ["Ladder", "Transition"]


@dataclass(frozen=True, slots=True)
class Transition:
    """What one step did: the rung before and after, for Events."""

    before: Fallback
    after: Fallback

    @property
    def fell(self) -> bool:
        return _ORDER[self.after] > _ORDER[self.before]

    @property
    def recovered(self) -> bool:
        return self.after is Fallback.NONE and self.before is not Fallback.NONE


_ORDER = {Fallback.NONE: 0, Fallback.LAST_GOOD: 1, Fallback.BASE_WEIGHTS: 2}


@dataclass(frozen=True, slots=True)
class Ladder:
    """Where a router stands; a new value per observation."""

    rung: Fallback = Fallback.NONE
    failing_since: float | None = None
    """When the current run of failures began (monotonic seconds)."""
    has_good: bool = False
    """Whether live weights were ever computed: last-good needs something to keep."""

    def succeeded(self) -> tuple["Ladder", Transition]:
        after = Ladder(rung=Fallback.NONE, failing_since=None, has_good=True)
        return after, Transition(self.rung, after.rung)

    def failed(self, *, now: float, stale_after: float) -> tuple["Ladder", Transition]:
        since = self.failing_since if self.failing_since is not None else now
        if not self.has_good or now - since >= stale_after:
            rung = Fallback.BASE_WEIGHTS
        else:
            rung = Fallback.LAST_GOOD
        after = replace(self, rung=rung, failing_since=since)
        return after, Transition(self.rung, rung)

    def stale_in(self, *, now: float, stale_after: float) -> float | None:
        """Seconds until last-good turns into base-weights, if that is pending: the
        router's loop wakes then, so the fallback is not late by up to an interval."""
        if self.rung is not Fallback.LAST_GOOD or self.failing_since is None:
            return None
        return max(0.0, self.failing_since + stale_after - now)
