"""The continuous-batching engine, in virtual time: every timestamp here is exact."""

import asyncio

import pytest

from zeta_testbed.sim.engine import Engine, FinishReason, SequenceState
from zeta_testbed.sim.presets import PRESETS

from .conftest import TINY

pytestmark = pytest.mark.unit


def make_engine(clock, **kwargs) -> Engine:
    return Engine(kwargs.pop("preset", TINY), clock=clock, sleep=clock.sleep, **kwargs)


class TestStepDuration:
    def test_decode_grows_with_the_batch_and_prefill_with_admitted_prompt_tokens(self, clock):
        engine = make_engine(clock)
        assert engine.step_duration(1, 0) == pytest.approx(0.010 * (1 + 0.5 * 1 / 2))
        assert engine.step_duration(2, 0) == pytest.approx(0.010 * 1.5)
        assert engine.step_duration(1, 100) == pytest.approx(0.0125 + 0.100)

    def test_slowdown_multiplies_and_time_scale_divides(self, clock):
        engine = make_engine(clock, time_scale=4.0)
        engine.slowdown = 2.0
        assert engine.step_duration(1, 100) == pytest.approx(0.1125 * 2 / 4)

    def test_slowdown_below_one_is_refused(self, clock):
        engine = make_engine(clock)
        with pytest.raises(ValueError, match="slowdown"):
            engine.slowdown = 0.5

    @pytest.mark.parametrize(
        ("kwargs", "match"), [({"capacity": 0}, "capacity"), ({"time_scale": 0.0}, "time_scale")]
    )
    def test_bad_construction_is_refused(self, clock, kwargs, match):
        with pytest.raises(ValueError, match=match):
            make_engine(clock, **kwargs)

    def test_presets_get_slower_and_narrower_with_size(self):
        small, medium, large = PRESETS["4b"], PRESETS["7b"], PRESETS["14b"]
        assert small.capacity > medium.capacity > large.capacity
        assert (
            small.decode_seconds_per_token
            < medium.decode_seconds_per_token
            < large.decode_seconds_per_token
        )
        assert (
            small.prefill_seconds_per_token
            < medium.prefill_seconds_per_token
            < large.prefill_seconds_per_token
        )


class TestOneSequence:
    async def test_first_token_ends_the_admitting_step_which_carries_the_prefill(self, clock):
        engine = make_engine(clock)
        seq = engine.submit(prompt_tokens=100, output_tokens=3)
        for _ in range(3):
            await engine.step()
        assert seq.state is SequenceState.FINISHED
        assert seq.finish_reason is FinishReason.LENGTH
        assert seq.generated == 3
        assert seq.admitted_at == 0.0
        assert seq.first_token_at == pytest.approx(0.1125)
        assert seq.finished_at == pytest.approx(0.1125 + 2 * 0.0125)

    async def test_counters_and_kv_return_to_idle(self, clock):
        engine = make_engine(clock)
        engine.submit(prompt_tokens=100, output_tokens=2, finish_reason=FinishReason.STOP)
        await engine.step()
        await engine.step()
        stats = engine.stats()
        assert (stats.running, stats.waiting, stats.kv_cache_usage) == (0, 0, 0.0)
        assert stats.finished_total[FinishReason.STOP] == 1
        assert stats.prompt_tokens_total == 100
        assert stats.generation_tokens_total == 2
        assert stats.steps_total == 2

    def test_bad_submissions_are_refused(self, clock):
        engine = make_engine(clock)
        with pytest.raises(ValueError, match="output_tokens"):
            engine.submit(prompt_tokens=1, output_tokens=0)
        with pytest.raises(ValueError, match="prompt_tokens"):
            engine.submit(prompt_tokens=-1, output_tokens=1)


class TestQueueing:
    async def test_beyond_capacity_sequences_wait_in_fifo_order(self, clock):
        engine = make_engine(clock)
        a, b, c = (engine.submit(prompt_tokens=0, output_tokens=2) for _ in range(3))
        await engine.step()
        assert (engine.stats().running, engine.stats().waiting) == (2, 1)
        assert a.state is b.state is SequenceState.RUNNING
        assert c.state is SequenceState.WAITING
        await engine.step()  # a and b finish
        await engine.step()  # c admitted alone
        assert a.first_token_at == b.first_token_at == pytest.approx(0.015)
        assert c.admitted_at == pytest.approx(0.030)
        assert c.first_token_at == pytest.approx(0.030 + 0.0125)

    async def test_time_to_first_token_grows_with_the_queue(self, clock):
        engine = make_engine(clock)
        seqs = [engine.submit(prompt_tokens=10, output_tokens=4) for _ in range(8)]
        runner = asyncio.create_task(engine.run())
        await asyncio.gather(*(seq.wait_done() for seq in seqs))
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        ttfts = [seq.first_token_at - seq.arrived_at for seq in seqs]
        # Two slots: pairs are admitted together, and each pair waits for the one before.
        assert ttfts == sorted(ttfts)
        assert ttfts[0] == ttfts[1] < ttfts[2] == ttfts[3] < ttfts[4] == ttfts[5] < ttfts[6]

    async def test_admitting_a_long_prompt_slows_the_whole_batch(self, clock):
        engine = make_engine(clock)
        engine.submit(prompt_tokens=0, output_tokens=5)
        await engine.step()
        before = clock.now
        engine.submit(prompt_tokens=200, output_tokens=5)
        await engine.step()
        assert clock.now - before == pytest.approx(0.015 + 0.200)


class TestSpans:
    async def test_spans_rebuild_the_load_finished_cancelled_and_still_held(self, clock):
        engine = make_engine(clock, capacity=1)
        a = engine.submit(prompt_tokens=0, output_tokens=1)  # finishes in the first step
        clock.now = 1.0
        b = engine.submit(prompt_tokens=0, output_tokens=1)  # waits, then is cancelled
        c = engine.submit(prompt_tokens=0, output_tokens=5)  # still waiting at the end
        await engine.step()
        engine.cancel(b)
        assert engine.spans() == [
            (0.0, a.finished_at),
            (1.0, b.finished_at),
            (1.0, None),
        ]
        assert a.finished_at == pytest.approx(1.015)  # one step of one sequence, from 1.0
        assert engine.spans(since=0.5) == [(1.0, b.finished_at), (1.0, None)]
        assert c.state is SequenceState.WAITING
        assert engine.now() == clock.now


class TestCancellation:
    async def test_cancelling_a_running_sequence_frees_its_slot_at_once(self, clock):
        engine = make_engine(clock, capacity=1)
        a = engine.submit(prompt_tokens=50, output_tokens=10)
        b = engine.submit(prompt_tokens=0, output_tokens=1)
        await engine.step()
        assert engine.cancel(a) is True
        assert a.state is SequenceState.CANCELLED
        assert engine.stats().kv_cache_usage == 0.0
        await engine.step()
        assert b.state is SequenceState.FINISHED
        assert engine.stats().cancelled_total == 1

    async def test_cancelling_a_waiting_sequence_leaves_the_queue(self, clock):
        engine = make_engine(clock, capacity=1)
        a = engine.submit(prompt_tokens=0, output_tokens=1)
        b = engine.submit(prompt_tokens=0, output_tokens=1)
        c = engine.submit(prompt_tokens=0, output_tokens=1)
        engine.cancel(b)
        assert engine.stats().waiting == 2
        await engine.step()
        await engine.step()
        assert a.state is c.state is SequenceState.FINISHED
        assert b.generated == 0

    async def test_cancelling_an_ended_sequence_is_a_no_op(self, clock):
        engine = make_engine(clock)
        seq = engine.submit(prompt_tokens=0, output_tokens=1)
        await engine.step()
        assert engine.cancel(seq) is False
        assert seq.state is SequenceState.FINISHED
        assert engine.stats().cancelled_total == 0


class TestKvCache:
    async def test_usage_counts_prompt_and_generated_tokens_of_running_sequences(self, clock):
        engine = make_engine(clock)
        engine.submit(prompt_tokens=300, output_tokens=5)
        engine.submit(prompt_tokens=400, output_tokens=5)
        await engine.step()
        assert engine.stats().kv_cache_usage == pytest.approx((301 + 401) / 1000)

    async def test_usage_is_capped_at_one(self, clock):
        engine = make_engine(clock)
        engine.submit(prompt_tokens=5000, output_tokens=5)
        await engine.step()
        assert engine.stats().kv_cache_usage == 1.0


class TestStepLoop:
    async def test_idle_engine_does_not_step_and_wakes_on_submit(self, clock):
        engine = make_engine(clock)
        runner = asyncio.create_task(engine.run())
        for _ in range(20):
            await asyncio.sleep(0)
        assert (engine.stats().steps_total, clock.now) == (0, 0.0)
        seq = engine.submit(prompt_tokens=0, output_tokens=3)
        await seq.wait_done()
        assert engine.stats().steps_total == 3
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    async def test_stopping_the_loop_aborts_what_is_in_flight(self, clock):
        engine = make_engine(clock, capacity=1)
        running = engine.submit(prompt_tokens=0, output_tokens=1000)
        waiting = engine.submit(prompt_tokens=0, output_tokens=1)
        runner = asyncio.create_task(engine.run())
        await running.wait_progress(0)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await running.wait_done()
        await waiting.wait_done()
        assert running.state is waiting.state is SequenceState.ABORTED
        assert engine.stats().aborted_total == 2

    async def test_a_slow_consumer_gets_all_new_tokens_at_once(self, clock):
        engine = make_engine(clock)
        seq = engine.submit(prompt_tokens=0, output_tokens=5)
        for _ in range(3):
            await engine.step()
        assert await seq.wait_progress(0) == 3

    async def test_a_streaming_consumer_sees_every_token_in_order(self, clock):
        engine = make_engine(clock)
        seq = engine.submit(prompt_tokens=0, output_tokens=6)
        runner = asyncio.create_task(engine.run())
        seen = [0]
        while not seq.done:
            seen.append(await seq.wait_progress(seen[-1]))
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        assert seen == sorted(seen)
        assert seen[-1] == 6

    async def test_only_one_loop_may_run(self, clock):
        engine = make_engine(clock)
        runner = asyncio.create_task(engine.run())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            await engine.run()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
