"""Faults set through /admin/faults, and what clients see while they are on."""

import asyncio

import aiohttp
import openai
import pytest

pytestmark = pytest.mark.unit

COMPLETION = {"model": "sim-7b", "prompt": "hello", "max_tokens": 2}


async def set_faults(http, sim, **faults) -> dict[str, object]:
    async with http.post(f"{sim.url}/admin/faults", json=faults) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def complete(http, sim, body=COMPLETION) -> tuple[int, dict[str, object]]:
    async with http.post(f"{sim.url}/v1/completions", json=body) as response:
        return response.status, await response.json()


class TestAdminEndpoint:
    async def test_get_post_delete(self, sim, http):
        assert await set_faults(http, sim, slowdown=2) == {
            "slowdown": 2.0,
            "error_rate": 0.0,
            "hang": False,
            "reset_connections": False,
        }
        await set_faults(http, sim, error_rate=0.5)
        async with http.get(f"{sim.url}/admin/faults") as response:
            assert (await response.json())["slowdown"] == 2.0  # kept by the partial update
        async with http.delete(f"{sim.url}/admin/faults") as response:
            assert (await response.json())["error_rate"] == 0.0
        assert sim.state.engine.slowdown == 1.0

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            (b'{"slowdown": "fast"}', "slowdown"),
            (b'{"error_rate": 2}', "error_rate"),
            (b'{"hang": "yes"}', "hang"),
            (b'{"explode": true}', "explode"),
            (b"{oops", None),
            (b"[]", None),
        ],
    )
    async def test_bad_fault_json_is_a_400_naming_the_field(self, sim, http, body, param):
        async with http.post(f"{sim.url}/admin/faults", data=body) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["param"] == param
        if param:
            assert param in error["message"]
        assert sim.state.faults.to_json()["slowdown"] == 1.0  # nothing applied


class TestSlowdown:
    async def test_slowdown_shows_in_measured_latency(self, make_sim, http):
        sim = await make_sim(time_scale=10.0)
        body = {**COMPLETION, "max_tokens": 20}
        e2e = sim.state.metrics.e2e_latency
        assert (await complete(http, sim, body))[0] == 200
        normal = e2e.sum
        await set_faults(http, sim, slowdown=4)
        assert (await complete(http, sim, body))[0] == 200
        slowed = e2e.sum - normal
        # Four times the step time; the margin absorbs event-loop overhead on a busy host.
        assert slowed > 2.5 * normal


class TestErrors:
    async def test_error_rate_one_fails_every_request_with_a_500(self, sim, http):
        await set_faults(http, sim, error_rate=1.0)
        status, body = await complete(http, sim)
        assert status == 500
        assert body["error"]["type"] == "server_error"
        assert sim.state.stats_json()["failed"] == 1
        assert sim.state.engine.stats().submitted_total == 0

    async def test_error_rate_fails_that_fraction(self, sim, http):
        await set_faults(http, sim, error_rate=0.5)
        statuses = [(await complete(http, sim))[0] for _ in range(40)]
        assert set(statuses) == {200, 500}
        assert 8 <= statuses.count(500) <= 32
        assert sim.state.stats_json()["failed"] == statuses.count(500)

    async def test_the_sdk_sees_an_internal_server_error(self, sim, http):
        await set_faults(http, sim, error_rate=1.0)
        client = openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0)
        async with client:
            with pytest.raises(openai.InternalServerError):
                await client.completions.create(model="sim-7b", prompt="x", max_tokens=1)


class TestHang:
    async def test_requests_hang_until_the_fault_is_cleared(self, sim, http, eventually):
        await set_faults(http, sim, hang=True)
        hung = asyncio.create_task(complete(http, sim))
        await eventually(lambda: sim.state.stats_json()["hung"] == 1, what="a hung request")
        await asyncio.sleep(0.05)
        assert not hung.done()
        async with http.get(f"{sim.url}/health") as response:
            assert response.status == 200  # only generation hangs
        async with http.delete(f"{sim.url}/admin/faults") as response:
            assert response.status == 200
        status, _ = await hung
        assert status == 200
        assert sim.state.stats_json()["hung"] == 0


class TestConnectionResets:
    async def test_connections_are_closed_without_a_response(self, sim, http):
        await set_faults(http, sim, reset_connections=True)
        with pytest.raises(aiohttp.ClientConnectionError):
            await complete(http, sim)
        assert sim.state.stats_json()["failed"] == 1
        async with http.get(f"{sim.url}/health") as response:
            assert response.status == 200

    async def test_the_sdk_sees_a_connection_error(self, sim, http):
        await set_faults(http, sim, reset_connections=True)
        client = openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0)
        async with client:
            with pytest.raises(openai.APIConnectionError):
                await client.chat.completions.create(
                    model="sim-7b", messages=[{"role": "user", "content": "x"}], stream=True
                )
