"""Fixtures for the sidecar's in-process tests: sims and sidecars on loopback ports."""

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from zeta_sidecar.app import runners
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.settings import Settings
from zeta_testbed.sim.presets import PRESETS
from zeta_testbed.sim.server import RunningSim, SimConfig, start

# A 7B step lasts 20 us: requests of a few tokens take about a millisecond.
FAST = SimConfig(preset=PRESETS["7b"], time_scale=1000.0, seed=7)


SimFactory = Callable[..., Awaitable[RunningSim]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    sims: list[RunningSim] = []

    async def make(config: SimConfig = FAST, *, port: int = 0, **changes: object) -> RunningSim:
        sim = await start(replace(config, **changes), port=port)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.aclose()


@dataclass
class Sidecar:
    gateway: Gateway
    url: str
    admin_url: str
    table_file: Path

    def write(self, text: str) -> None:
        """Replace the table file atomically (rename), as a careful writer would."""
        tmp = self.table_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.table_file)


SidecarFactory = Callable[..., Awaitable[Sidecar]]


def _port(runner: web.BaseRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise AssertionError("runner has no TCP address")


@pytest.fixture
async def make_sidecar(tmp_path: Path) -> AsyncIterator[SidecarFactory]:
    started: list[tuple[web.BaseRunner, web.AppRunner]] = []

    async def make(table: str | None, **changes: object) -> Sidecar:
        path = tmp_path / f"routing-{len(started)}.json"
        if table is not None:
            path.write_text(table)
        settings = Settings(
            host="127.0.0.1",
            port=0,
            admin_port=0,
            table_file=path,
            file_poll_interval=0.02,
            probe_interval=0.02,
            seed=11,
            drain_grace=2.0,
        )
        gateway = Gateway(replace(settings, **changes))
        traffic, admin = runners(gateway, grace=2.0)
        for runner in (traffic, admin):
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        started.append((traffic, admin))
        sidecar = Sidecar(
            gateway, f"http://127.0.0.1:{_port(traffic)}", f"http://127.0.0.1:{_port(admin)}", path
        )
        if table is not None:
            await wait_for(lambda: gateway.store.current is not None, what="first table")
        return sidecar

    yield make
    for traffic, admin in started:
        await traffic.cleanup()
        await admin.cleanup()


async def wait_for(condition: Callable[[], bool], *, within: float = 3.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def free_port() -> int:
    """A loopback port nobody listens on (just bound and closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chat(model: str, *, max_tokens: int = 2, stream: bool = False) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
