"""When a router's cycle runs: the timing and the wake-ups, and nothing else.

A router's loop runs as long as its ZetaRouter exists (a kopf daemon, ended by kopf on
the operator's exit or a peering pause, or by the router's deletion: :class:`Stopping`).
It runs a cycle

- every ``spec.policy.interval``: a full cycle, with fresh metrics;
- at once when the spec changes (a new generation): a full cycle;
- at once when the router's pods come, go, change readiness or drain: a cycle without
  Prometheus (rung 3 of the ladder: pods are facts, metrics are opinions), even while
  a full cycle still awaits a slow Prometheus (:func:`meanwhile`);
- when last-good weights turn stale, so base weights are not late by an interval.

What a cycle does is :mod:`zeta_operator.reconciling`'s business.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from zeta_operator.snapshots import PodRecord

__all__ = ["Cycling", "Stopping", "generation_of", "meanwhile", "run"]

T = TypeVar("T")
Pods = Callable[[], Iterable[PodRecord]]
"""The router's namespace's pods as the index holds them now."""


class Cycling(Protocol):
    """What the loop needs of a router."""

    @property
    def generation(self) -> int | None:
        """The spec generation the last cycle served."""

    async def cycle(self, body: Mapping[str, Any], pods: Pods, *, full: bool) -> float:
        """One cycle; returns the interval to the next full one (seconds)."""

    def stale_in(self, now: float) -> float | None:
        """Seconds until last-good weights turn stale, if that is pending."""


class Stopping:
    """kopf's stop flag (truthy once set, awaitable) or the router's deletion, whichever
    comes first: with no finalizer on the router, kopf never learns of its deletion in
    time to stop the daemon itself."""

    def __init__(self, stopped: Any, deleted: asyncio.Event) -> None:
        self._stopped, self._deleted = stopped, deleted

    def __bool__(self) -> bool:
        return bool(self._stopped) or self._deleted.is_set()

    async def wait(self) -> None:
        waits = {
            asyncio.ensure_future(self._stopped.wait()),
            asyncio.ensure_future(self._deleted.wait()),
        }
        try:
            await asyncio.wait(waits, return_when="FIRST_COMPLETED")
        finally:
            for task in waits:
                task.cancel()


def generation_of(body: Mapping[str, Any]) -> int:
    """The generation of the resource as kopf's live view has it now."""
    return int(body.get("metadata", {}).get("generation") or 0)


async def run(
    router: Cycling,
    body: Mapping[str, Any],
    pods: Pods,
    stopped: Any,
    waker: asyncio.Event,
) -> None:
    """Until ``stopped``: cycle, then wait for the next reason to. ``body`` is kopf's
    live view of the resource, ``waker`` the router's wake-up event."""
    stop_task = asyncio.ensure_future(stopped.wait())
    next_full = 0.0
    try:
        while not stopped:
            now = time.monotonic()
            full = now >= next_full or generation_of(body) != router.generation
            # Cleared before the cycle, not after: a pod event that arrives while the
            # cycle awaits Prometheus or the apiserver must wake the next one, not wait
            # for the interval.
            waker.clear()
            interval = await router.cycle(body, pods, full=full)
            if full:
                next_full = time.monotonic() + interval
            wait = next_full - time.monotonic()
            stale_in = router.stale_in(time.monotonic())
            if stale_in is not None:
                wait = min(wait, stale_in + 0.05)
            wake_task = asyncio.ensure_future(waker.wait())
            await asyncio.wait(
                {wake_task, stop_task}, timeout=max(wait, 0.0), return_when="FIRST_COMPLETED"
            )
            wake_task.cancel()
    finally:
        stop_task.cancel()


async def meanwhile(
    work: Coroutine[Any, Any, T],
    waker: asyncio.Event,
    on_wake: Callable[[], Awaitable[None]],
    *,
    body: Mapping[str, Any],
    generation: int,
) -> T:
    """Await ``work``; every wake-up meanwhile runs ``on_wake`` at once, so a slow
    Prometheus delays the weights, never the pods."""
    task = asyncio.ensure_future(work)
    woken = False
    try:
        while True:
            wake = asyncio.ensure_future(waker.wait())
            try:
                await asyncio.wait({task, wake}, return_when="FIRST_COMPLETED")
            finally:
                wake.cancel()
            if task.done():
                return task.result()
            waker.clear()
            woken = True
            await on_wake()
    finally:
        task.cancel()
        # A wake-up consumed here may have been a new spec, not a pod: let the loop
        # look again rather than sleep for an interval.
        if woken and generation_of(body) != generation:
            waker.set()
