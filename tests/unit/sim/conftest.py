"""Fixtures for the zeta-sim tests: virtual time, running sims, and a task-leak guard."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import pytest

from zeta_testbed.sim.presets import PRESETS, Preset
from zeta_testbed.sim.server import RunningSim, SimConfig, start

TINY = Preset(
    name="tiny",
    capacity=2,
    decode_seconds_per_token=0.010,
    prefill_seconds_per_token=0.001,
    batch_penalty=0.5,
    kv_capacity_tokens=1000,
)
"""Round numbers, so that engine timings can be worked out by hand: a lone sequence's
step is 12.5 ms plus 1 ms per prefilled token."""

# Fast enough that a 7B step lasts 0.4 ms, slow enough that steps still take real time.
FAST = SimConfig(preset=PRESETS["7b"], time_scale=50.0, seed=7)


class VirtualClock:
    """A clock that only moves when the engine sleeps: steps take no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        # Still yield, as a real sleep would, so consumers see each step.
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


SimFactory = Callable[..., Awaitable[RunningSim]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Start sims on ephemeral loopback ports; all are stopped at teardown."""
    sims: list[RunningSim] = []

    async def make(config: SimConfig = FAST, **changes: object) -> RunningSim:
        sim = await start(replace(config, **changes))
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.aclose()


@pytest.fixture
async def sim(make_sim: SimFactory) -> RunningSim:
    return await make_sim()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


Eventually = Callable[..., Awaitable[None]]


@pytest.fixture
def eventually() -> Eventually:
    """Poll a condition until it holds; fail the test after a timeout."""

    async def wait(condition: Callable[[], bool], *, within: float = 3.0, what: str = "") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not condition():
            if loop.time() > deadline:
                pytest.fail(f"timed out waiting for {what or condition}")
            await asyncio.sleep(0.01)

    return wait
