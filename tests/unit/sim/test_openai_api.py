"""The OpenAI-compatible surface, checked with the official SDK and with raw HTTP."""

import asyncio
import json

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.unit

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Say something, anything."}]},
]


def sync_client(sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0, timeout=10)


def async_client(sim) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="x", max_retries=0, timeout=10)


class TestSyncSdk:
    # The sync client blocks, so it runs in a thread while the sim serves on this loop.

    async def test_chat_completion(self, sim):
        def call():
            with sync_client(sim) as client:
                return client.chat.completions.create(
                    model="sim-7b", messages=MESSAGES, max_tokens=7
                )

        response = await asyncio.to_thread(call)
        choice = response.choices[0]
        assert choice.finish_reason == "length"
        assert choice.message.role == "assistant"
        assert len(choice.message.content.split()) == 7
        # ceil(("Be brief." + "Say something, anything.") chars / 4)
        assert response.usage.prompt_tokens == -(-(9 + 24) // 4)
        assert response.usage.completion_tokens == 7
        assert response.usage.total_tokens == response.usage.prompt_tokens + 7
        assert response.model == "sim-7b"

    async def test_streamed_chat_completion_with_usage(self, sim):
        def call():
            with sync_client(sim) as client:
                stream = client.chat.completions.create(
                    model="sim-7b",
                    messages=MESSAGES,
                    max_tokens=5,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                return list(stream)

        chunks = await asyncio.to_thread(call)
        assert chunks[0].choices[0].delta.role == "assistant"
        contents = [c.choices[0].delta.content for c in chunks[1:-2]]
        assert len(contents) == 5
        assert all(contents)
        assert chunks[-2].choices[0].finish_reason == "length"
        assert chunks[-1].choices == []
        assert chunks[-1].usage.completion_tokens == 5
        assert len({chunk.id for chunk in chunks}) == 1

    async def test_models_list(self, make_sim):
        sim = await make_sim(model="qwen-sim", served_model_name="alias")

        def call():
            with sync_client(sim) as client:
                return [model.id for model in client.models.list()]

        assert await asyncio.to_thread(call) == ["qwen-sim", "alias"]


class TestAsyncSdk:
    async def test_text_completion(self, sim):
        async with async_client(sim) as client:
            response = await client.completions.create(
                model="sim-7b", prompt="x" * 40, max_tokens=3
            )
        assert response.object == "text_completion"
        assert response.choices[0].finish_reason == "length"
        assert len(response.choices[0].text.split()) == 3
        assert response.usage.prompt_tokens == 10

    async def test_streamed_text_completion_without_usage(self, sim):
        async with async_client(sim) as client:
            stream = await client.completions.create(
                model="sim-7b", prompt="hi", max_tokens=4, stream=True
            )
            chunks = [chunk async for chunk in stream]
        assert [bool(c.choices[0].text) for c in chunks] == [True] * 4 + [False]
        assert chunks[-1].choices[0].finish_reason == "length"
        assert all(chunk.usage is None for chunk in chunks)

    async def test_streamed_chat_completion(self, sim):
        async with async_client(sim) as client:
            stream = await client.chat.completions.create(
                model="sim-7b", messages=MESSAGES, max_completion_tokens=3, stream=True
            )
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
        assert len(text.split()) == 3

    async def test_the_served_model_name_is_accepted(self, make_sim):
        sim = await make_sim(served_model_name="alias")
        async with async_client(sim) as client:
            response = await client.chat.completions.create(
                model="alias", messages=MESSAGES, max_tokens=1
            )
        assert response.model == "alias"

    async def test_unknown_model_is_a_404(self, sim):
        async with async_client(sim) as client:
            with pytest.raises(openai.NotFoundError) as caught:
                await client.chat.completions.create(model="gpt-9", messages=MESSAGES)
        assert caught.value.code == "model_not_found"


class TestDefaults:
    async def test_without_max_tokens_the_length_is_drawn_from_the_seed_and_stops(self, make_sim):
        lengths = []
        for _ in range(2):
            sim = await make_sim(seed=42)
            async with async_client(sim) as client:
                responses = [
                    await client.chat.completions.create(model="sim-7b", messages=MESSAGES)
                    for _ in range(4)
                ]
            assert {r.choices[0].finish_reason for r in responses} == {"stop"}
            lengths.append([r.usage.completion_tokens for r in responses])
        assert lengths[0] == lengths[1]
        assert all(16 <= n <= 128 for n in lengths[0])
        assert len(set(lengths[0])) > 1


VALID_CHAT = {"model": "sim-7b", "messages": [{"role": "user", "content": "hi"}]}


class TestRawHttp:
    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (b"{not json", 400, "invalid_json"),
            (b"[1, 2]", 400, "invalid_json"),
            (b'{"messages": [{"role": "user", "content": "hi"}]}', 404, "model_not_found"),
            (b'{"model": "sim-7b"}', 400, "invalid_value"),
            (json.dumps({**VALID_CHAT, "max_tokens": 0}).encode(), 400, "invalid_value"),
            (json.dumps({**VALID_CHAT, "n": 2}).encode(), 400, "invalid_value"),
            (json.dumps({**VALID_CHAT, "messages": "hi"}).encode(), 400, "invalid_value"),
        ],
    )
    async def test_bad_requests_get_openai_errors(self, sim, http, body, status, code):
        async with http.post(f"{sim.url}/v1/chat/completions", data=body) as response:
            assert response.status == status
            error = (await response.json())["error"]
        assert error["code"] == code
        assert error["type"] == "invalid_request_error"
        assert error["message"]

    async def test_sse_framing(self, sim, http):
        body = {"model": "sim-7b", "prompt": "hi", "max_tokens": 2, "stream": True}
        async with http.post(f"{sim.url}/v1/completions", json=body) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            raw = (await response.read()).decode()
        events = [event for event in raw.split("\n\n") if event]
        assert all(event.startswith("data: ") for event in events)
        assert events[-1] == "data: [DONE]"
        assert [json.loads(e[6:])["object"] for e in events[:-1]] == ["text_completion"] * 3

    async def test_health(self, sim, http):
        async with http.get(f"{sim.url}/health") as response:
            assert (response.status, await response.text()) == (200, "ok")

    async def test_metrics_count_served_requests(self, sim, http):
        body = {"model": "sim-7b", "prompt": "abcdefgh", "max_tokens": 3}
        for _ in range(2):
            async with http.post(f"{sim.url}/v1/completions", json=body) as response:
                assert response.status == 200
        async with http.get(f"{sim.url}/metrics") as response:
            families = {f.name: f for f in text_string_to_metric_families(await response.text())}
        samples = {
            (s.name, s.labels.get("finished_reason")): s.value
            for f in families.values()
            for s in f.samples
        }
        assert samples[("vllm:request_success_total", "length")] == 2
        assert samples[("vllm:prompt_tokens_total", None)] == 4
        assert samples[("vllm:generation_tokens_total", None)] == 6
        assert samples[("vllm:time_to_first_token_seconds_count", None)] == 2
        assert samples[("vllm:e2e_request_latency_seconds_count", None)] == 2

    async def test_admin_spans_say_when_each_request_arrived_and_left(self, sim, http):
        async with http.get(f"{sim.url}/admin/spans") as response:
            before = (await response.json())["now"]
        body = {"model": "sim-7b", "prompt": "hi", "max_tokens": 2}
        async with http.post(f"{sim.url}/v1/completions", json=body) as response:
            assert response.status == 200
        async with http.get(f"{sim.url}/admin/spans", params={"since": before}) as response:
            got = await response.json()
        [(arrived, left)] = got["spans"]
        assert before <= arrived < left <= got["now"]
        async with http.get(f"{sim.url}/admin/spans", params={"since": "soon"}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["param"] == "since"

    async def test_admin_stats(self, sim, http):
        body = {"model": "sim-7b", "prompt": "hi", "max_tokens": 1}
        async with http.post(f"{sim.url}/v1/completions", json=body) as response:
            assert response.status == 200
        async with http.get(f"{sim.url}/admin/stats") as response:
            stats = await response.json()
        assert stats == {
            "requests_total": 1,
            "completed": 1,
            "cancelled": 0,
            "failed": 0,
            "running": 0,
            "waiting": 0,
            "hung": 0,
            "kv_cache_usage": 0.0,
            # "hi" is one token: looked up, too short to fill a block.
            "prefix_caching": True,
            "prefix_cache_queries": 1,
            "prefix_cache_hits": 0,
            "prefix_cached_blocks": 0,
        }
