"""vLLM's priority scheduling in zeta-sim: lower ``priority`` first, a better one preempts.

The traffic-classes benchmark found critical requests waiting in full batches behind
sheddable ones admitted earlier; vLLM's ``--scheduling-policy priority`` is what frees a
place for them, and the gateway passes each class's rank as ``priority`` (issue 9).
"""

import aiohttp
import pytest

from zeta_testbed.sim.engine import Engine, SequenceState
from zeta_testbed.sim.server import RunningSim

from .conftest import TINY, SimFactory

pytestmark = pytest.mark.unit


def make_engine(clock, **kwargs) -> Engine:
    return Engine(TINY, clock=clock, sleep=clock.sleep, capacity=1, **kwargs)


async def test_a_better_priority_preempts_a_running_sequence_in_a_full_batch(clock):
    engine = make_engine(clock, priority_scheduling=True)
    low = engine.submit(prompt_tokens=10, output_tokens=5, priority=500)
    await engine.step()
    assert (low.state, low.generated) == (SequenceState.RUNNING, 1)
    high = engine.submit(prompt_tokens=10, output_tokens=2, priority=0)
    await engine.step()  # the batch of one is full: the better priority takes it
    assert (high.state, low.state) == (SequenceState.RUNNING, SequenceState.WAITING)
    assert high.first_token_at is not None
    await engine.step()
    assert high.state is SequenceState.FINISHED
    await engine.step()  # readmitted, its generated token computed again, then on
    assert (low.state, low.generated) == (SequenceState.RUNNING, 2)


async def test_waiting_sequences_are_admitted_by_priority_then_arrival(clock):
    engine = make_engine(clock, priority_scheduling=True)
    first = engine.submit(prompt_tokens=1, output_tokens=1, priority=5)
    later_same = engine.submit(prompt_tokens=1, output_tokens=1, priority=5)
    better = engine.submit(prompt_tokens=1, output_tokens=1, priority=1)
    order = []
    for _ in range(3):
        await engine.step()
        order += [s for s in (first, later_same, better) if s.state is SequenceState.FINISHED
                  and s not in order]  # fmt: skip
    assert order == [better, first, later_same]


async def test_first_come_first_served_never_preempts(clock):
    engine = make_engine(clock)
    low = engine.submit(prompt_tokens=10, output_tokens=3, priority=500)
    await engine.step()
    engine.submit(prompt_tokens=10, output_tokens=1, priority=0)
    await engine.step()
    assert low.state is SequenceState.RUNNING


async def test_a_priority_without_priority_scheduling_is_refused_as_vllm_does(
    make_sim: SimFactory,
) -> None:
    plain: RunningSim = await make_sim()
    ranked: RunningSim = await make_sim(priority_scheduling=True)
    body = {"model": "sim-7b", "prompt": "hi", "max_tokens": 2, "priority": 3}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{plain.url}/v1/completions", json=body) as resp:
            assert resp.status == 400
            assert "Priority scheduling is not enabled" in (await resp.json())["error"]["message"]
        async with http.post(f"{ranked.url}/v1/completions", json=body) as resp:
            assert resp.status == 200
        async with http.post(f"{plain.url}/v1/completions", json={**body, "priority": 0}) as resp:
            assert resp.status == 200  # 0 is every request's default: always taken
