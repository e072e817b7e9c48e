"""The routers carry no finalizer, and a router's deletion still ends its loop."""

from __future__ import annotations

import asyncio
import logging

from kubernetes import client as k8s

from zeta_operator.handlers import build_registry
from zeta_operator.reconciling import RouterLoop
from zeta_operator.runtime import Runtime
from zeta_operator.settings import OperatorSettings


def test_no_handler_puts_a_finalizer_on_the_routers() -> None:
    registry = build_registry(peering_lifetime=60)
    # kopf's registries, as handlers._without_finalizer edits them: a kopf upgrade that
    # changes their shape fails here, not in a cluster.
    spawning = registry._spawning._handlers
    assert [h.id for h in spawning] == ["route"]
    assert all(h.requires_finalizer is False for h in spawning)
    assert all(not h.requires_finalizer for h in registry._changing._handlers)


class NeverStopped:
    """kopf's ``DaemonStopped`` that kopf never sets: only the deletion ends the loop."""

    def __bool__(self) -> bool:
        return False

    async def wait(self) -> None:
        await asyncio.Event().wait()


async def test_the_deletion_ends_the_loop_even_before_it_started() -> None:
    runtime = Runtime(settings=OperatorSettings(), api=k8s.ApiClient())
    runtime.deleted("uid")  # the DELETED event may come before kopf spawns the daemon
    loop = RouterLoop(
        runtime,
        namespace="ns",
        name="chat",
        uid="uid",
        event=lambda *_: None,
        logger=logging.getLogger(__name__),
    )
    await asyncio.wait_for(loop.run({"metadata": {"generation": 1}}, list, NeverStopped()), 10)
    assert runtime.deletions == {}
    assert runtime.wakers == {}


async def test_the_deletion_ends_a_running_loop() -> None:
    runtime = Runtime(settings=OperatorSettings(), api=k8s.ApiClient())
    loop = RouterLoop(
        runtime,
        namespace="ns",
        name="chat",
        uid="uid",
        event=lambda *_: None,
        logger=logging.getLogger(__name__),
    )
    cycles: list[bool] = []

    async def cycle(*_: object, full: bool) -> float:
        cycles.append(full)
        if len(cycles) == 1:
            runtime.deleted("uid")
        return 3600.0

    loop.cycle = cycle  # type: ignore[method-assign]
    # Bounded: a deletion that does not end the loop leaves it asleep for an hour.
    await asyncio.wait_for(loop.run({"metadata": {"generation": 1}}, list, NeverStopped()), 10)
    assert cycles == [True]
    assert runtime.deletions == {}


class GonePublisher:
    """The apiserver's answer to a status write for a router that no longer exists."""

    async def patch_status(self, *_: object) -> bool:
        return False


async def test_a_router_found_gone_ends_its_loop_without_its_deleted_event() -> None:
    runtime = Runtime(settings=OperatorSettings(), api=k8s.ApiClient())
    loop = RouterLoop(
        runtime, namespace="ns", name="chat", uid="uid", event=lambda *_: None,
        logger=logging.getLogger(__name__),
    )  # fmt: skip
    loop.publication.publisher = GonePublisher()  # type: ignore[assignment]
    # A spec the operator cannot use: the cycle only reports, and the report finds it gone.
    body = {"metadata": {"generation": 1}, "spec": {"models": []}}
    await asyncio.wait_for(loop.run(body, list, NeverStopped()), 10)
    assert runtime.deletions == {}
