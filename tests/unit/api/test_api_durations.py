"""Go-style durations: what parses, what is refused, and that formatting round-trips."""

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeta_api import DURATION_PATTERN, DurationError, format_duration, parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("2h45m30.5s", 9930.5),
        ("100us", 0.0001),
        ("10ns", 1e-08),
        ("1s500ms", 1.5),
        ("0", 0.0),
        ("0s", 0.0),
    ],
)
def test_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=0, rel=1e-12)


@pytest.mark.parametrize(
    "text",
    ["", "2", "-1s", "+1s", "1d", "1.s", ".5s", " 2s", "2s ", "2s\n", "1µs", "1e3s", "s", "1S"],
)
def test_refuses_malformed_durations(text: str) -> None:
    with pytest.raises(DurationError, match="must be a duration"):
        parse_duration(text)


def test_refuses_durations_go_cannot_hold() -> None:
    with pytest.raises(DurationError, match="out of range"):
        parse_duration("9999999h")


def test_refuses_non_strings() -> None:
    with pytest.raises(DurationError, match="got int"):
        parse_duration(2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (1e-06, "1us"),
        (1.5, "1.5s"),
        (10, "10s"),
        (90, "1m30s"),
        (3600, "1h"),
        (3661.25, "1h1m1.25s"),
    ],
)
def test_formats_shortest_go_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_refuses_negative_seconds() -> None:
    with pytest.raises(DurationError, match="negative"):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_is_identity(nanos: int) -> None:
    seconds = nanos / 1e9
    text = format_duration(seconds)
    assert re.search(DURATION_PATTERN, text)
    assert parse_duration(text) == seconds


_UNIT_NANOS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


@given(st.from_regex(DURATION_PATTERN.removesuffix("$") + r"\Z").filter(lambda s: len(s) < 16))
def test_everything_the_crd_pattern_accepts_parses_exactly(text: str) -> None:
    groups = re.findall(r"([0-9.]+)([a-z]+)", text)
    nanos = sum(int(Decimal(n) * _UNIT_NANOS[unit]) for n, unit in groups)
    if nanos >= 2**63:
        with pytest.raises(DurationError, match="out of range"):
            parse_duration(text)
    else:
        assert parse_duration(text) == nanos / 1e9
