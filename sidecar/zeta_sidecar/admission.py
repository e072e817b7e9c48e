"""Admission when a model is saturated: shed the sheddable, queue the rest by class.

Why a queue and not a 429: a model counts as saturated from the pods' reported load, a
few seconds old, and a momentary burst over the threshold is not overload; the pods (as
vLLM does) would queue what they cannot batch. Refusing everyone then turns a short
wait into a failure for the person who sent the request. So only requests of a class
the admin declared *sheddable* are refused at once; the others wait here, highest
priority first and in arrival order within a priority, until a pod has room by the
same saturation rule (:meth:`~zeta_sidecar.routing.Router.has_room`), for at most
their class's longest queue time.

Hand-over: a waiter is woken only when there is room, one at a time. The woken request
picks its pod and counts itself in flight, then calls :meth:`Admission.started`, which
wakes the next if room is left, so a burst of wake-ups can never overshoot a pod. Room
is looked at again when a request ends, when a table arrives, and on the gateway's
periodic tick (other replicas' requests ending show only through reported load).

Strict priority between classes (no weighted sharing): a lower class is never admitted
while a higher one waits, and its longest queue time bounds how long it can be
starved. Everything here runs on the event loop; time comes from the caller.
"""

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Admission", "QueueFull", "WaitQueue", "Waiter"]


class QueueFull(Exception):
    """The model's admission queue holds its limit already."""


@dataclass(order=True, slots=True)
class Waiter:
    """One request waiting for room, ordered by (higher priority, earlier arrival)."""

    rank: int
    seq: int
    future: "asyncio.Future[None]" = field(compare=False)
    gone: bool = field(default=False, compare=False)


class WaitQueue:
    """The waiters of one model, highest priority first, then in arrival order."""

    def __init__(self) -> None:
        self._heap: list[Waiter] = []
        self._seq = itertools.count()
        self.waiting = 0
        """Waiters still queued (the heap may hold some that left, not yet popped)."""

    def push(self, priority: int, future: "asyncio.Future[None]") -> Waiter:
        waiter = Waiter(-priority, next(self._seq), future)
        heapq.heappush(self._heap, waiter)
        self.waiting += 1
        return waiter

    def pop(self) -> Waiter | None:
        """The first waiter still waiting, removed from the queue; ``None`` if none."""
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if not waiter.gone:
                waiter.gone = True
                self.waiting -= 1
                return waiter
        return None

    def leave(self, waiter: Waiter) -> None:
        """A waiter that timed out or whose client left: skipped when its turn comes."""
        if not waiter.gone:
            waiter.gone = True
            self.waiting -= 1
        if not self.waiting:
            self._heap.clear()  # only departed waiters left: drop them at once


class Admission:
    """Every model's wait queue, and the hand-over of room to waiters."""

    def __init__(self, has_room: Callable[[str], bool]) -> None:
        self._has_room = has_room
        self._queues: dict[str, WaitQueue] = {}
        self._handing: set[str] = set()
        """Models whose room was handed to a waiter that has not started yet."""

    def waiting(self, model: str) -> int:
        """Requests waiting for ``model`` now."""
        queue = self._queues.get(model)
        return queue.waiting if queue is not None else 0

    def queued(self) -> dict[str, int]:
        """Waiting requests per model (for metrics)."""
        return {model: q.waiting for model, q in self._queues.items()}

    async def wait(self, model: str, priority: int, *, within: float, limit: int) -> None:
        """Wait until this request may go to ``model``.

        Raises ``TimeoutError`` after ``within`` seconds, :class:`QueueFull` at once if
        ``limit`` requests wait already; a cancelled wait (the client left) leaves the
        queue and passes on any room it was handed.
        """
        queue = self._queues.get(model)
        if queue is None:
            queue = self._queues[model] = WaitQueue()
        if queue.waiting >= limit:
            raise QueueFull(model)
        future = asyncio.get_running_loop().create_future()
        waiter = queue.push(priority, future)
        self.wake(model)  # room may be there already, for this waiter or a better one
        try:
            async with asyncio.timeout(within):
                await future
        except BaseException:
            queue.leave(waiter)
            if future.done() and not future.cancelled():
                self.started(model)  # handed room at the last moment: pass it on
            raise

    def started(self, model: str) -> None:
        """A woken request counts itself in flight now: room may be left for the next."""
        self._handing.discard(model)
        self.wake(model)

    def wake(self, model: str) -> None:
        """Hand room to the first waiter of ``model``, if it has waiters and room."""
        queue = self._queues.get(model)
        if queue is None or not queue.waiting or model in self._handing:
            return
        if not self._has_room(model):
            return
        waiter = queue.pop()
        if waiter is not None:
            self._handing.add(model)
            waiter.future.set_result(None)

    def wake_all(self) -> None:
        """Look for room for every model with waiters (a table arrived, or a tick)."""
        for model, queue in self._queues.items():
            if queue.waiting:
                self.wake(model)
