"""The fault suite's shared switch: a short form in ``make test``, the full one in
``make chaos`` (``ZETA_CHAOS=full``). Each test scales its counts and durations by it,
and asserts the same figures in both forms."""

import os

import pytest


@pytest.fixture(scope="session")
def full_chaos() -> bool:
    """True under ``make chaos``: more repetitions, longer runs."""
    return os.environ.get("ZETA_CHAOS", "") == "full"
