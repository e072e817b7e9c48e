"""Go-style duration strings ("500ms", "2s", "1m30s"), as Kubernetes users write them.

The wire form is a string because that is what ``kubectl``/Go users expect and what
CEL's ``duration()`` parses; in Python a duration is a float number of seconds.

Parsing goes through whole nanoseconds, as Go's ``time.ParseDuration`` does, so
``parse_duration(format_duration(x)) == x`` for every value that came from a string.
Only the units ``ns us ms s m h`` are accepted (not ``µs``), with no sign: every
duration in this API is a positive span, and :data:`DURATION_PATTERN` is also the
CRD's pattern, so the apiserver and the parser accept exactly the same strings.
"""

import re
from decimal import Decimal

from zeta_api.errors import DurationError

__all__ = ["DURATION_PATTERN", "format_duration", "parse_duration"]

#: One or more ``<number><unit>`` groups, or a lone ``0``. RE2- and Python-compatible, and
#: free of backslashes so it can sit inside a CEL string literal.
DURATION_PATTERN = r"^(0|([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+)$"

_NANOS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_GROUP = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_WHOLE = re.compile(DURATION_PATTERN.removesuffix("$") + r"\Z")
# Go's time.Duration (and CEL's duration) is an int64 of nanoseconds.
_MAX_NANOS = 2**63 - 1


def parse_duration(text: str) -> float:
    """Parse a Go-style duration into seconds; raise :class:`DurationError` if malformed."""
    if not isinstance(text, str):
        raise DurationError(f"must be a duration string such as '2s', got {type(text).__name__}")
    if not _WHOLE.match(text):
        raise DurationError(
            f"must be a duration such as '500ms', '2s' or '1m30s' "
            f"(units ns, us, ms, s, m, h), got {text!r}"
        )
    nanos = 0
    for number, unit in _GROUP.findall(text):
        nanos += int(Decimal(number) * _NANOS[unit])  # truncates below 1ns, as Go does
    if nanos > _MAX_NANOS:
        raise DurationError(f"out of range (at most about 292 years), got {text!r}")
    return nanos / 1e9


def format_duration(seconds: float) -> str:
    """Format seconds as the shortest Go-style duration string, e.g. ``90.0 -> '1m30s'``."""
    nanos = round(seconds * 1e9)
    if nanos < 0:
        raise DurationError(f"must not be negative, got {seconds!r}")
    if nanos == 0:
        return "0s"
    if nanos < _NANOS["s"]:
        for unit in ("ms", "us", "ns"):
            if nanos >= _NANOS[unit]:
                return _decimal(nanos, _NANOS[unit]) + unit
    hours, rest = divmod(nanos, _NANOS["h"])
    minutes, rest = divmod(rest, _NANOS["m"])
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if rest:
        parts.append(_decimal(rest, _NANOS["s"]) + "s")
    return "".join(parts)


def _decimal(nanos: int, scale: int) -> str:
    whole, frac = divmod(nanos, scale)
    if not frac:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")
