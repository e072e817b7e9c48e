"""The router loop's wake-ups: a pod event is never lost, whenever it arrives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import client as k8s

from zeta_operator.reconciling import RouterLoop
from zeta_operator.runtime import Runtime
from zeta_operator.settings import OperatorSettings
from zeta_operator.snapshots import PodRecord


class Stopped:
    """kopf's ``DaemonStopped`` as the loop uses it: truthy once set, awaitable."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class WakeDuringCycle(RouterLoop):
    """A loop whose first cycle is interrupted by a pod event, as kopf would deliver it
    while the cycle awaits Prometheus; the interval is an hour, so only that event can
    start a second cycle."""

    def __init__(self, runtime: Runtime, stopped: Stopped) -> None:
        super().__init__(
            runtime,
            namespace="ns",
            name="chat",
            uid="uid",
            event=lambda *_: None,
            logger=logging.getLogger(__name__),
        )
        self.stopped = stopped
        self.cycles: list[bool] = []

    async def cycle(
        self,
        body: Mapping[str, Any],
        pods: Callable[[], Iterable[PodRecord]],
        *,
        full: bool,
    ) -> float:
        self.cycles.append(full)
        self.generation = 1  # as a real cycle records the generation it served
        if len(self.cycles) == 1:
            await asyncio.sleep(0)
            self.runtime.wake("ns")  # the pod event, mid-cycle
            await asyncio.sleep(0)
        else:
            self.stopped.set()
        return 3600.0


async def test_a_pod_event_during_a_cycle_wakes_the_next_one() -> None:
    runtime = Runtime(settings=OperatorSettings(), api=k8s.ApiClient())
    stopped = Stopped()
    loop = WakeDuringCycle(runtime, stopped)
    # Bounded: a lost wake-up would leave the loop asleep for the hour-long interval.
    await asyncio.wait_for(loop.run({"metadata": {"generation": 1}}, list, stopped), timeout=10)
    assert loop.cycles == [True, False]
