"""The admission queue: order by class then arrival, time limits, clients that leave,
and hand-over one at a time (issue 9)."""

import asyncio

import pytest

from zeta_sidecar.admission import Admission, QueueFull, WaitQueue


class Room:
    """A model with ``free`` places; admitted requests take one, as being in flight does."""

    def __init__(self, free: int = 0) -> None:
        self.free = free

    def __call__(self, model: str) -> bool:
        return self.free > 0


async def admitted_in_order(
    admission: Admission, room: Room, waits: list[tuple[str, int]]
) -> list[str]:
    order: list[str] = []

    async def one(name: str, priority: int) -> None:
        await admission.wait("m", priority, within=5, limit=100)
        order.append(name)
        room.free -= 1  # in flight now
        admission.started("m")

    tasks = [asyncio.create_task(one(name, prio)) for name, prio in waits]
    await asyncio.sleep(0)  # all queued, none admitted: no room
    assert admission.waiting("m") == len(waits)
    room.free = len(waits)
    admission.wake("m")
    await asyncio.gather(*tasks)
    return order


async def test_higher_priority_first_then_arrival_order() -> None:
    room = Room()
    admission = Admission(room)
    waits = [("s1", 200), ("b1", 100), ("c1", 300), ("s2", 200), ("c2", 300), ("b2", 100)]
    assert await admitted_in_order(admission, room, waits) == ["c1", "c2", "s1", "s2", "b1", "b2"]
    assert admission.waiting("m") == 0


async def test_room_is_handed_over_one_at_a_time() -> None:
    room = Room()
    admission = Admission(room)
    started: list[int] = []

    async def one(i: int) -> None:
        await admission.wait("m", 1, within=5, limit=100)
        started.append(i)
        room.free -= 1
        admission.started("m")

    tasks = [asyncio.create_task(one(i)) for i in range(5)]
    await asyncio.sleep(0)
    room.free = 2  # two places: exactly two admitted, however often wake is called
    for _ in range(10):
        admission.wake("m")
    await asyncio.sleep(0.05)
    assert started == [0, 1]
    assert admission.waiting("m") == 3
    room.free = 3
    admission.wake_all()
    await asyncio.gather(*tasks)
    assert started == [0, 1, 2, 3, 4]


async def test_a_waiter_times_out_and_leaves_the_queue() -> None:
    admission = Admission(Room(0))
    with pytest.raises(TimeoutError):
        await admission.wait("m", 1, within=0.01, limit=10)
    assert admission.waiting("m") == 0


async def test_a_client_that_leaves_while_queued_leaves_the_queue() -> None:
    room = Room()
    admission = Admission(room)
    leaving = asyncio.create_task(admission.wait("m", 300, within=5, limit=10))
    staying = asyncio.create_task(admission.wait("m", 100, within=5, limit=10))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    assert admission.waiting("m") == 1
    room.free = 1
    admission.wake("m")
    await asyncio.wait_for(staying, 1)  # the room went to the one still there
    assert leaving.cancelled()


async def test_room_handed_to_a_client_that_just_left_passes_on() -> None:
    room = Room()
    admission = Admission(room)
    first = asyncio.create_task(admission.wait("m", 2, within=5, limit=10))
    second = asyncio.create_task(admission.wait("m", 1, within=5, limit=10))
    await asyncio.sleep(0)
    room.free = 1
    admission.wake("m")  # handed to `first`...
    first.cancel()  # ...which leaves before it runs
    await asyncio.wait_for(second, 1)
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_full_queue_refuses_at_once() -> None:
    admission = Admission(Room(0))
    waiter = asyncio.create_task(admission.wait("m", 1, within=5, limit=1))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await admission.wait("m", 1, within=5, limit=1)
    waiter.cancel()


async def test_a_lower_class_is_starved_only_for_its_queue_time() -> None:
    # Strict priority: while critical requests keep coming, a batch request waits, but
    # its own time limit bounds how long.
    admission = Admission(Room(0))
    with pytest.raises(TimeoutError):
        await admission.wait("m", 100, within=0.02, limit=10)


def test_wait_queue_skips_departed_waiters() -> None:
    loop = asyncio.new_event_loop()
    try:
        queue = WaitQueue()
        a = queue.push(1, loop.create_future())
        b = queue.push(1, loop.create_future())
        queue.leave(a)
        assert queue.waiting == 1
        popped = queue.pop()
        assert popped is b
        assert queue.pop() is None
        assert queue.waiting == 0
    finally:
        loop.close()
