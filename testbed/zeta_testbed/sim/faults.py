"""Injected faults: what they are, how a JSON patch updates them, what each request gets.

Faults are set at run time through ``/admin/faults`` so that a test can make one model
server misbehave while a router is under load. They touch only generation requests;
``/health``, ``/metrics`` and ``/admin`` keep answering, as a wedged GPU worker behind
a live HTTP front end would.

- ``slowdown`` (>= 1) multiplies every engine step: a thermally throttled or noisy GPU.
- ``error_rate`` (in [0, 1]) answers that fraction of requests with a 500 before any
  byte of a response: an engine that raises.
- ``hang`` accepts requests and never answers them until cleared: a deadlocked engine.
- ``reset_connections`` closes each request's TCP connection without a response: a
  crashing process.

When several are on, the most abrupt wins: reset, then error, then hang (``decide``).
Pure logic: the random draw is passed in, so the decision is deterministic in tests.
"""

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace

__all__ = ["Action", "Faults", "FaultsError"]


class FaultsError(ValueError):
    """A fault patch named an unknown field or gave a field a bad value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        """The offending key of the patch."""


class Action(enum.Enum):
    """What the server does with one generation request under the current faults."""

    PROCEED = "proceed"
    RESET = "reset"
    ERROR = "error"
    HANG = "hang"


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """The faults in force; the default value is a healthy server."""

    slowdown: float = 1.0
    """Factor multiplying every engine step's duration; 1 is no slowdown."""

    error_rate: float = 0.0
    """Fraction of generation requests answered with a 500."""

    hang: bool = False
    """Hold generation requests unanswered until cleared."""

    reset_connections: bool = False
    """Close generation requests' connections without a response."""

    def to_json(self) -> dict[str, object]:
        """The faults as the JSON object ``GET /admin/faults`` returns."""
        return asdict(self)

    def patched(self, patch: Mapping[str, object]) -> "Faults":
        """A copy with the fields named in ``patch`` replaced; the others are kept.

        Raises ``FaultsError`` naming the first unknown field or invalid value.
        """
        changes: dict[str, object] = {}
        for field, value in patch.items():
            parse = _PARSERS.get(field)
            if parse is None:
                known = ", ".join(sorted(_PARSERS))
                raise FaultsError(field, f"unknown fault; known faults are {known}")
            changes[field] = parse(field, value)
        return replace(self, **changes)  # type: ignore[arg-type]  # values checked above

    def decide(self, draw: float) -> Action:
        """The action for one request, given a uniform random ``draw`` in [0, 1)."""
        if self.reset_connections:
            return Action.RESET
        if draw < self.error_rate:
            return Action.ERROR
        if self.hang:
            return Action.HANG
        return Action.PROCEED


def _number(field: str, value: object) -> float:
    # bool is an int subclass, but ``true`` as a rate is a client bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultsError(field, f"must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise FaultsError(field, "must be finite")
    return number


def _slowdown(field: str, value: object) -> float:
    number = _number(field, value)
    if number < 1.0:
        raise FaultsError(field, f"must be at least 1, got {number}")
    return number


def _rate(field: str, value: object) -> float:
    number = _number(field, value)
    if not 0.0 <= number <= 1.0:
        raise FaultsError(field, f"must be between 0 and 1, got {number}")
    return number


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise FaultsError(field, f"must be a boolean, got {type(value).__name__}")
    return value


_PARSERS: Mapping[str, Callable[[str, object], float | bool]] = {
    "slowdown": _slowdown,
    "error_rate": _rate,
    "hang": _flag,
    "reset_connections": _flag,
}
