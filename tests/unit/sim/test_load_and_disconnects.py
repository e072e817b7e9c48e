"""Behaviour under load over HTTP: queueing, clients that leave, and shutdown."""

import asyncio
import time

import aiohttp
import pytest

from zeta_testbed.sim.server import SimConfig, start

pytestmark = pytest.mark.unit

# At real speed a 7B sequence of this length takes minutes: it stays in the engine
# for as long as a test needs it to.
LONG = {"model": "sim-7b", "prompt": "hello", "max_tokens": 10_000}


async def first_token_delay(http, sim) -> float:
    body = {"model": "sim-7b", "prompt": "hello", "max_tokens": 8, "stream": True}
    started = time.perf_counter()
    async with http.post(f"{sim.url}/v1/completions", json=body) as response:
        await response.content.readline()
        delay = time.perf_counter() - started
        await response.read()
    return delay


async def leave_once(session, sim, eventually, stat: str) -> None:
    """Send a long request, wait until the sim counts it under ``stat``, then leave
    (cancel it, as a client closing its connection would)."""
    request = asyncio.create_task(session.post(f"{sim.url}/v1/completions", json=LONG))
    await eventually(lambda: sim.state.stats_json()[stat] == 1, what=stat)
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)


class TestQueueing:
    async def test_time_to_first_token_grows_with_the_queue(self, make_sim, http):
        # One slot, ~6 ms steps: each request holds the slot for ~50 ms.
        sim = await make_sim(capacity=1, time_scale=5.0)
        delays = sorted(await asyncio.gather(*(first_token_delay(http, sim) for _ in range(3))))
        assert delays[1] > delays[0] + 0.02
        assert delays[2] > delays[1] + 0.02

    async def test_excess_requests_wait(self, make_sim, eventually):
        sim = await make_sim(capacity=1, time_scale=1.0)
        async with aiohttp.ClientSession() as session:
            tasks = [
                asyncio.create_task(session.post(f"{sim.url}/v1/completions", json=LONG))
                for _ in range(3)
            ]
            await eventually(lambda: sim.state.stats_json()["waiting"] == 2, what="two waiting")
            assert sim.state.stats_json()["running"] == 1
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class TestDisconnects:
    async def test_a_non_streaming_client_leaving_frees_its_slot(self, make_sim, eventually):
        sim = await make_sim(time_scale=1.0)
        async with aiohttp.ClientSession() as session:
            await leave_once(session, sim, eventually, "running")
        await eventually(lambda: sim.state.stats_json()["cancelled"] == 1, what="cancelled")
        assert sim.state.stats_json()["running"] == 0
        assert sim.state.engine.stats().cancelled_total == 1

    async def test_a_streaming_client_leaving_frees_its_slot(self, make_sim, eventually):
        sim = await make_sim(time_scale=1.0)
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{sim.url}/v1/completions", json={**LONG, "stream": True}
            )
            assert (await response.content.readline()).startswith(b"data: ")
            response.close()
        await eventually(lambda: sim.state.stats_json()["cancelled"] == 1, what="cancelled")
        assert sim.state.stats_json()["running"] == 0

    async def test_a_waiting_client_leaving_leaves_the_queue(self, make_sim, eventually):
        sim = await make_sim(capacity=1, time_scale=1.0)
        async with aiohttp.ClientSession() as session:
            first = asyncio.create_task(session.post(f"{sim.url}/v1/completions", json=LONG))
            await eventually(lambda: sim.state.stats_json()["running"] == 1, what="running")
            second = asyncio.create_task(session.post(f"{sim.url}/v1/completions", json=LONG))
            await eventually(lambda: sim.state.stats_json()["waiting"] == 1, what="waiting")
            second.cancel()
            await asyncio.gather(second, return_exceptions=True)
            await eventually(lambda: sim.state.stats_json()["waiting"] == 0, what="queue left")
            assert sim.state.stats_json()["running"] == 1  # the first is untouched
            assert sim.state.stats_json()["cancelled"] == 1
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)

    async def test_a_hung_client_leaving_is_cancelled(self, sim, http, eventually):
        sim.state.set_faults(sim.state.faults.patched({"hang": True}))
        async with aiohttp.ClientSession() as session:
            await leave_once(session, sim, eventually, "hung")
        await eventually(lambda: sim.state.stats_json()["cancelled"] == 1, what="cancelled")
        assert sim.state.stats_json()["hung"] == 0
        async with http.get(f"{sim.url}/metrics") as response:
            assert (
                'zeta_sim_requests_cancelled_total{model_name="sim-7b"} 1.0'
                in await response.text()
            )


class TestShutdown:
    async def test_in_flight_requests_are_answered_and_shutdown_is_prompt(self, eventually):
        sim = await start(SimConfig(time_scale=1.0))
        try:
            async with aiohttp.ClientSession() as session:
                whole = asyncio.create_task(session.post(f"{sim.url}/v1/completions", json=LONG))
                streamed = await session.post(
                    f"{sim.url}/v1/completions", json={**LONG, "stream": True}
                )
                await eventually(lambda: sim.state.stats_json()["running"] == 2, what="running")
                sim.state.set_faults(sim.state.faults.patched({"hang": True}))
                hung = asyncio.create_task(session.post(f"{sim.url}/v1/completions", json=LONG))
                await eventually(lambda: sim.state.stats_json()["hung"] == 1, what="hung")
                started = time.perf_counter()
                await sim.aclose()
                assert time.perf_counter() - started < 2.0
                assert (await whole).status == 503
                assert (await hung).status == 503
                tail = await streamed.read()
                assert b'"code":"shutdown"' in tail
                assert tail.endswith(b"data: [DONE]\n\n")
        finally:
            await sim.aclose()
