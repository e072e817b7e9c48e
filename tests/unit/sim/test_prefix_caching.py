"""Prefix caching: chained block hashes, the LRU block pool, and what a hit saves.

Engine figures are exact (virtual time, the round-number preset below); the HTTP tests
run a sim on the virtual clock too, so their latencies are exact as well.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from zeta_testbed.sim.caching import CHARS_PER_TOKEN, PrefixCache, block_hashes
from zeta_testbed.sim.cli import parse_options
from zeta_testbed.sim.engine import Engine, Sequence
from zeta_testbed.sim.presets import Preset
from zeta_testbed.sim.server import RunningSim, start
from zeta_testbed.sim.wire import parse_generation

from .conftest import FAST, TINY, VirtualClock

pytestmark = pytest.mark.unit

BLOCK = 16
BLOCK_CHARS = BLOCK * CHARS_PER_TOKEN


def text(*blocks: str) -> str:
    """A prompt of whole blocks, each one character repeated."""
    return "".join(char * BLOCK_CHARS for char in blocks)


def make_engine(clock: VirtualClock, preset: Preset = TINY, *, prefix_caching=True) -> Engine:
    return Engine(preset, prefix_caching=prefix_caching, clock=clock, sleep=clock.sleep)


def submit(engine: Engine, prompt: str, *, output_tokens: int = 1) -> Sequence:
    tokens = len(prompt) // CHARS_PER_TOKEN
    return engine.submit(
        prompt_tokens=tokens, output_tokens=output_tokens, blocks=block_hashes(prompt, BLOCK)
    )


async def run_alone(engine: Engine, prompt: str) -> Sequence:
    """Submit to an idle engine and step until the sequence is done."""
    seq = submit(engine, prompt)
    while not seq.done:
        await engine.step()
    return seq


def ttft(seq: Sequence) -> float:
    assert seq.first_token_at is not None
    return seq.first_token_at - seq.arrived_at


class TestBlockHashes:
    def test_a_shared_prefix_shares_its_hashes_and_only_those(self):
        first, second = block_hashes(text("a", "b", "c")), block_hashes(text("a", "b", "d"))
        assert len(first) == 3
        assert first[:2] == second[:2]
        assert first[2] != second[2]

    def test_a_block_is_hashed_with_everything_before_it(self):
        # Same second block, different first: chaining makes the second differ too.
        assert block_hashes(text("a", "b"))[1] != block_hashes(text("x", "b"))[1]

    def test_only_full_blocks_are_hashed_and_the_limit_holds(self):
        assert len(block_hashes("a" * (2 * BLOCK_CHARS - 1))) == 1
        assert block_hashes("a" * (BLOCK_CHARS - 1)) == []
        assert len(block_hashes(text("a", "b", "c"), limit=2)) == 2

    def test_token_ids_are_cut_every_block_size_ids(self):
        ids = list(range(40))
        hashes = block_hashes(ids, BLOCK)
        assert len(hashes) == 2
        assert hashes == block_hashes(tuple(ids), BLOCK)
        assert hashes[0] == block_hashes([*range(16), 99], BLOCK)[0]


class TestPool:
    def test_a_hit_is_the_cached_prefix_and_the_last_token_is_always_recomputed(self):
        cache = PrefixCache(block_size=BLOCK, capacity_tokens=1000)
        blocks = block_hashes(text("a", "b"))
        assert cache.acquire(blocks, 2 * BLOCK) == (0, 0)
        cache.release(blocks)
        # Both blocks cached, but the whole prompt is: only the first block is a hit.
        assert cache.acquire(blocks, 2 * BLOCK) == (BLOCK, 0)
        assert (cache.queries, cache.hits) == (4 * BLOCK, BLOCK)

    def test_a_block_held_twice_takes_room_once(self):
        cache = PrefixCache(block_size=BLOCK, capacity_tokens=1000)
        blocks = block_hashes(text("a", "b"))
        cache.acquire(blocks, 3 * BLOCK)
        assert cache.acquire(blocks, 3 * BLOCK) == (2 * BLOCK, 2 * BLOCK)
        assert cache.release(blocks) == 2 * BLOCK
        assert cache.release(blocks) == 0
        assert cache.cached_blocks == 2

    def test_free_blocks_are_evicted_least_recently_used_first(self):
        cache = PrefixCache(block_size=BLOCK, capacity_tokens=4 * BLOCK)
        a, b, c = (block_hashes(text(x, x)) for x in "abc")
        for blocks in (a, b, a):  # a used again: b is now the least recent
            cache.acquire(blocks, 3 * BLOCK)
            cache.release(blocks)
        cache.acquire(c, 3 * BLOCK)
        cache.trim(2 * BLOCK)  # c's two blocks held: room for two free ones of the four
        assert cache.cached_blocks == 4
        cache.release(c)
        assert cache.acquire(b, 3 * BLOCK)[0] == 0
        assert cache.acquire(a, 3 * BLOCK)[0] == 2 * BLOCK

    def test_a_prompt_is_evicted_tail_first(self):
        cache = PrefixCache(block_size=BLOCK, capacity_tokens=4 * BLOCK)
        blocks = block_hashes(text("a", "b", "c"))
        cache.acquire(blocks, 4 * BLOCK)
        cache.release(blocks)
        cache.trim(2 * BLOCK)  # room for two of the three
        assert cache.acquire(blocks, 4 * BLOCK)[0] == 2 * BLOCK

    def test_an_answer_is_kept_and_evicted_before_its_prompt(self):
        chain = block_hashes(text("a", "b", "c", "d"))
        prompt, answer = chain[:2], chain[2:]
        for room, hit in ((8, 4), (3, 3)):  # room for all four free blocks, or three
            cache = PrefixCache(block_size=BLOCK, capacity_tokens=8 * BLOCK)
            cache.acquire(prompt, 3 * BLOCK)
            cache.keep(answer)
            cache.release(prompt)
            cache.trim((8 - room) * BLOCK)
            assert cache.acquire(chain, 5 * BLOCK)[0] == hit * BLOCK  # the answer's tail first


class TestEngine:
    async def test_the_same_prefix_again_skips_its_prefill(self, clock):
        engine = make_engine(clock)
        prompt = text("s", "s", "s", "u") + "tail"  # 65 tokens, 4 full blocks
        first = await run_alone(engine, prompt)
        second = await run_alone(engine, prompt)
        assert (first.cached_tokens, second.cached_tokens) == (0, 4 * BLOCK)
        assert ttft(first) == pytest.approx(0.0125 + 0.065)
        assert ttft(second) == pytest.approx(0.0125 + 0.001)
        stats = engine.stats()
        assert (stats.prefix_cache_queries_total, stats.prefix_cache_hits_total) == (130, 64)
        assert stats.prompt_tokens_total == 130  # cached tokens count, as in vLLM

    async def test_a_different_prefix_hits_nothing(self, clock):
        engine = make_engine(clock)
        await run_alone(engine, text("a", "b", "c"))
        other = await run_alone(engine, text("x", "b", "c"))
        assert other.cached_tokens == 0
        assert engine.stats().prefix_cache_hits_total == 0

    async def test_a_conversation_hits_on_its_earlier_turns(self, clock):
        engine = make_engine(clock)
        await run_alone(engine, text("s", "u"))
        follow_up = await run_alone(engine, text("s", "u", "a", "u"))
        assert follow_up.cached_tokens == 2 * BLOCK

    async def test_sequences_admitted_together_share_their_prefix(self, clock):
        engine = make_engine(clock)
        a = submit(engine, text("s", "a"), output_tokens=2)
        b = submit(engine, text("s", "b"), output_tokens=2)
        await engine.step()
        assert (a.cached_tokens, b.cached_tokens) == (0, BLOCK)
        assert clock.now == pytest.approx(0.015 + 0.064 - 0.016)
        # The shared block is held once: 2 x 32 prompt + 2 generated - 16.
        assert engine.kv_cache_usage == pytest.approx(50 / 1000)

    async def test_free_blocks_stay_cached_but_count_as_unused(self, clock):
        engine = make_engine(clock)
        await run_alone(engine, text("a", "b"))
        stats = engine.stats()
        assert (stats.kv_cache_usage, stats.prefix_cached_blocks) == (0.0, 2)

    async def test_the_least_recently_used_prompt_is_evicted_under_a_small_cache(self, clock):
        small = replace(TINY, kv_capacity_tokens=7 * BLOCK)
        engine = make_engine(clock, small)
        # 49 tokens each: 3 full blocks, and 4 blocks of room while running.
        a, b, c = (text(x, x, x) + "!!!!" for x in "abc")
        await run_alone(engine, a)
        await run_alone(engine, b)
        await run_alone(engine, c)  # while it runs, 3 of the 6 free blocks fit: a's go
        assert (await run_alone(engine, b)).cached_tokens == 3 * BLOCK
        assert (await run_alone(engine, a)).cached_tokens == 0
        assert engine.stats().prefix_cached_blocks <= 7

    async def test_cancelled_and_aborted_sequences_give_their_blocks_back(self, clock):
        engine = make_engine(clock)
        a = submit(engine, text("s", "a"), output_tokens=5)
        b = submit(engine, text("s", "b"), output_tokens=5)
        await engine.step()
        engine.cancel(a)
        assert engine.kv_cache_usage == pytest.approx((32 + 1) / 1000)
        engine.abort_all()
        stats = engine.stats()
        assert (stats.kv_cache_usage, stats.prefix_cached_blocks) == (0.0, 3)
        assert b.done

    async def test_with_caching_off_nothing_is_cached_and_timing_is_unchanged(self, clock):
        engine = make_engine(clock, prefix_caching=False)
        prompt = text("s", "s", "s", "u") + "tail"
        first = await run_alone(engine, prompt)
        second = await run_alone(engine, prompt)
        assert ttft(first) == ttft(second) == pytest.approx(0.0125 + 0.065)
        stats = engine.stats()
        assert (stats.prefix_cache_queries_total, stats.prefix_cache_hits_total) == (0, 0)
        assert (first.blocks, second.cached_tokens) == ((), 0)
        assert engine.block_size is None


class TestChatRendering:
    MODELS = ("m",)

    def prompt_of(self, messages: list[dict[str, object]]) -> str:
        gen = parse_generation("chat", {"model": "m", "messages": messages}, self.MODELS)
        assert isinstance(gen.prompt, str)
        return gen.prompt

    def test_earlier_turns_are_a_prefix_of_the_next_request(self):
        turn1 = [{"role": "system", "content": "S" * 100}, {"role": "user", "content": "hi"}]
        turn2 = [
            *turn1,
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "?"},
        ]
        first, second = self.prompt_of(turn1), self.prompt_of(turn2)
        assert second.startswith(first)

    def test_roles_are_part_of_the_prompt_and_tokens_count_contents_only(self):
        as_system = self.prompt_of([{"role": "system", "content": "x" * 80}])
        as_user = self.prompt_of([{"role": "user", "content": "x" * 80}])
        assert as_system != as_user
        gen = parse_generation(
            "chat", {"model": "m", "messages": [{"role": "user", "content": "x" * 80}]}, self.MODELS
        )
        assert gen.prompt_tokens == 20

    def test_content_parts_render_like_the_same_text(self):
        parts = [
            {"type": "text", "text": "ab"},
            {"type": "image_url"},
            {"type": "text", "text": "c"},
        ]
        assert self.prompt_of([{"role": "user", "content": parts}]) == self.prompt_of(
            [{"role": "user", "content": "abc"}]
        )

    @pytest.mark.parametrize(
        ("prompt", "expected"),
        [("abc", "abc"), (["ab", "c"], "abc"), ([1, 2], (1, 2)), ([[1], [2, 3]], (1, 2, 3))],
    )
    def test_completion_prompts_keep_their_text_or_ids(self, prompt, expected):
        gen = parse_generation("completion", {"model": "m", "prompt": prompt}, self.MODELS)
        assert gen.prompt == expected


class TestFlags:
    def test_on_by_default_as_in_vllm(self):
        config = parse_options([]).config
        assert (config.prefix_caching, config.block_size) == (True, 16)

    @pytest.mark.parametrize(
        ("flags", "on"),
        [
            (["--no-prefix-caching"], False),
            (["--no-enable-prefix-caching"], False),
            (["--no-prefix-caching", "--enable-prefix-caching"], True),
        ],
    )
    def test_the_flag_turns_it_off_or_on(self, flags, on):
        assert parse_options(flags).config.prefix_caching is on

    def test_block_size(self):
        assert parse_options(["--block-size=32"]).config.block_size == 32


# --- Over HTTP, on the virtual clock -------------------------------------------------

SYSTEM = "You are a careful assistant. " * 20  # ~580 characters: 9 full blocks


@pytest.fixture
async def virtual_sim(clock: VirtualClock) -> AsyncIterator[Callable[..., Awaitable[RunningSim]]]:
    sims: list[RunningSim] = []

    async def make(**changes: object) -> RunningSim:
        sim = await start(replace(FAST, **changes), clock=clock, sleep=clock.sleep)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.aclose()


async def chat(http: aiohttp.ClientSession, sim: RunningSim, user: str) -> None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    body = {"model": "sim-7b", "messages": messages, "max_tokens": 1}
    async with http.post(f"{sim.url}/v1/chat/completions", json=body) as response:
        assert response.status == 200
        await response.read()


async def scrape(http: aiohttp.ClientSession, sim: RunningSim) -> dict[str, tuple[str, float]]:
    """The prefix-cache series by sample name: (family type, value)."""
    async with http.get(f"{sim.url}/metrics") as response:
        text = await response.text()
    series: dict[str, tuple[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("vllm:prefix_cache"):
            (sample,) = family.samples
            assert sample.labels == {"model_name": "sim-7b"}
            series[sample.name] = (family.type, sample.value)
    return series


class TestOverHttp:
    async def test_a_shared_system_prompt_lowers_ttft_and_counts_hits(self, virtual_sim, http):
        sim = await virtual_sim()
        await chat(http, sim, "first question, long enough to fill one more block" * 2)
        first_ttft = sim.state.metrics.ttft.sum
        await chat(http, sim, "a second, different question of about the same length" * 2)
        second_ttft = sim.state.metrics.ttft.sum - first_ttft
        assert second_ttft < first_ttft
        stats = sim.state.stats_json()
        # The system prompt's rendering fills 9 blocks; the questions part at the 10th.
        assert stats["prefix_cache_hits"] == 9 * BLOCK
        assert stats["prefix_cache_queries"] == sim.state.engine.stats().prompt_tokens_total

    async def test_a_follow_up_turn_hits_on_the_answer_it_sends_back(self, virtual_sim, http):
        # vLLM caches full blocks of generated tokens: a chat client's next turn repeats
        # the answer after the prompt that produced it, so the answer is a cached prefix.
        sim = await virtual_sim()
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "a first question"},
        ]
        body = {"model": "sim-7b", "messages": messages, "max_tokens": 64}
        async with http.post(f"{sim.url}/v1/chat/completions", json=body) as response:
            answer = (await response.json())["choices"][0]["message"]["content"]
        first_prompt = sim.state.engine.stats().prompt_tokens_total
        before = sim.state.stats_json()["prefix_cache_hits"]
        messages += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "and a second one"},
        ]
        async with http.post(f"{sim.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200
        hit = sim.state.stats_json()["prefix_cache_hits"] - before
        # More than the whole first prompt could give: the answer's blocks hit too.
        assert hit > first_prompt // BLOCK * BLOCK
        assert hit >= (first_prompt + 64) // BLOCK * BLOCK - 2 * BLOCK

    async def test_counters_are_exported_by_vllm_names_and_only_grow(self, virtual_sim, http):
        sim = await virtual_sim()
        seen: list[tuple[float, float]] = []
        for question in ("one", "two", "two", "three"):
            await chat(http, sim, question)
            families = await scrape(http, sim)
            assert families["vllm:prefix_cache_queries_total"][0] == "counter"
            assert families["vllm:prefix_cache_hits_total"][0] == "counter"
            seen.append(
                (
                    families["vllm:prefix_cache_queries_total"][1],
                    families["vllm:prefix_cache_hits_total"][1],
                )
            )
        assert seen == sorted(seen)
        assert len({queries for queries, _ in seen}) == len(seen)  # each request counted
        assert 0 < seen[-1][1] < seen[-1][0]

    async def test_with_caching_off_counters_stay_at_zero(self, virtual_sim, http):
        sim = await virtual_sim(prefix_caching=False)
        for _ in range(2):
            await chat(http, sim, "the same question twice")
        families = await scrape(http, sim)
        assert families["vllm:prefix_cache_queries_total"][1] == 0
        assert families["vllm:prefix_cache_hits_total"][1] == 0
        stats = sim.state.stats_json()
        assert (stats["prefix_caching"], stats["prefix_cache_hits"]) == (False, 0)

    async def test_requests_in_flight_together_are_counted_once_each(self, virtual_sim, http):
        sim = await virtual_sim()
        await asyncio.gather(*(chat(http, sim, f"question {i}") for i in range(4)))
        engine = sim.state.engine.stats()
        assert engine.prefix_cache_queries_total == engine.prompt_tokens_total

    async def test_reset_empties_the_cache_once_nothing_runs(self, virtual_sim, http):
        # vLLM's /reset_prefix_cache: a benchmark starts each system on cold caches.
        sim = await virtual_sim()
        await chat(http, sim, "the same question twice")
        async with http.post(f"{sim.url}/reset_prefix_cache") as response:
            assert response.status == 200
        await chat(http, sim, "the same question twice")
        assert sim.state.stats_json()["prefix_cache_hits"] == 0


class TestReset:
    def test_a_reset_is_refused_while_blocks_are_held(self):
        cache = PrefixCache(block_size=BLOCK, capacity_tokens=100 * BLOCK)
        blocks = block_hashes(text("a", "b"), BLOCK)
        cache.acquire(blocks, 2 * BLOCK)
        assert cache.reset() is False
        assert cache.cached_blocks == 2
        cache.release(blocks)
        assert cache.reset() is True
        assert cache.cached_blocks == 0
