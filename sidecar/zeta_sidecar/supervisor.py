"""``zeta-sidecar --workers N`` (N over 1): N forked workers on one port, one parent.

Each worker is a whole sidecar (its own table source and table, pods' state, metrics
and connection caps) binding the traffic port with ``SO_REUSEPORT``, so the kernel
spreads new connections over the workers by their addresses' hash. The parent serves
no traffic: it serves the group's admin port (:mod:`~zeta_sidecar.group_admin`), each
worker's admin application listening on a loopback socket the parent bound before
forking.

Lifetime:

- the workers are forked before any event loop or thread exists, then each runs its
  own loop;
- SIGTERM (or SIGINT) to the parent: the group's ``/readyz`` turns false, each worker
  gets SIGTERM and drains as one sidecar does (``--drain-delay``, then in-flight
  requests get ``--drain-grace``); the parent exits 0 once all have exited (a worker
  still there ``_KILL_AFTER`` seconds after its drain should have ended is SIGKILLed);
- a worker that exits on its own takes the group down: ``/readyz`` false at once, the
  others drain as on SIGTERM, the parent exits 1 and the kubelet restarts the
  container. Not restarted in place: the kubelet already restarts with back-off and
  shows the restarts (a worker crashing on every request would otherwise loop
  unseen), and the merged counters would fall with a restarted worker's;
- the parent gone (even SIGKILLed): every worker sees its lifeline pipe close and
  drains, so no worker outlives the group.
"""

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Callable

from aiohttp import web

from zeta_sidecar.admin import AdminRunner
from zeta_sidecar.connections import ConnectionMetrics
from zeta_sidecar.group_admin import Group, WorkerState, group_admin_app
from zeta_sidecar.settings import Settings

__all__ = ["Worker", "run_group"]

logger = logging.getLogger(__name__)

_KILL_AFTER = 10.0
"""Seconds past a worker's own drain time before the parent SIGKILLs it."""

Worker = Callable[[Settings, socket.socket, int], int]
"""What a forked worker runs: (its settings, its admin socket, the lifeline's read end)
to its exit code."""


@dataclasses.dataclass(slots=True)
class _Child:
    state: WorkerState
    death: int
    """Read end of a pipe whose write end only the worker holds: EOF when it exits."""


def _fork(settings: Settings, worker: Worker, lifeline: tuple[int, int]) -> list[_Child]:
    """Fork the workers (before any loop or thread exists); the parent's view of them."""
    children: list[_Child] = []
    for index in range(settings.workers):
        admin = socket.create_server(("127.0.0.1", 0))
        death_r, death_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(lifeline[1])
                os.close(death_r)
                for child in children:  # its elder siblings' ends are not its own
                    os.close(child.death)
                seed = None if settings.seed is None else settings.seed + index
                code = worker(dataclasses.replace(settings, seed=seed), admin, lifeline[0])
            except BaseException:
                logger.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(death_w)
        children.append(_Child(WorkerState(index, pid, admin.getsockname()[1]), death_r))
        admin.close()  # the worker serves it; the parent only connects to its port
    return children


def run_group(settings: Settings, worker: Worker) -> int:
    """Fork ``settings.workers`` workers running ``worker``, serve the group's admin port
    until SIGTERM or a worker's exit, drain; the parent's exit code."""
    lifeline = os.pipe()
    children = _fork(settings, worker, lifeline)
    os.close(lifeline[0])
    logger.info(
        "%d workers on port %d (pids %s), admin on %d",
        len(children), settings.port, ", ".join(str(c.state.pid) for c in children),
        settings.admin_port,
    )  # fmt: skip
    try:
        return asyncio.run(_supervise(settings, children))
    finally:
        os.close(lifeline[1])


async def _supervise(settings: Settings, children: list[_Child]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    group = Group([c.state for c in children])
    changed = asyncio.Event()

    def exited(child: _Child) -> None:
        loop.remove_reader(child.death)
        os.close(child.death)
        _, status = os.waitpid(child.state.pid, 0)
        child.state.exit_code = os.waitstatus_to_exitcode(status)
        changed.set()

    for child in children:
        loop.add_reader(child.death, exited, child)
    admin = AdminRunner(group_admin_app(group), settings, ConnectionMetrics(group.registry))
    await admin.setup()
    try:
        try:
            await web.TCPSite(admin, settings.host, settings.admin_port).start()
        except OSError as exc:  # the port taken, say: the workers must not live on unseen
            logger.error("admin port %d: %s", settings.admin_port, exc)
            group.draining = True
            await _drain(settings, group, changed)
            return 1
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set() and not group.exited():
            changed.clear()
            waiting = asyncio.ensure_future(changed.wait())
            await asyncio.wait({stopping, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
        group.draining = True
        died = group.exited()
        for w in died:
            logger.error("%s exited with %s: the group drains and exits", w.describe(), w.exit_code)
        if not died:
            logger.info("draining %d workers", len(children))
        await _drain(settings, group, changed)
        failed = [w for w in group.workers if w.exit_code != 0]
        stopping.cancel()
    finally:
        await admin.cleanup()
    logger.info("all workers exited")
    return 1 if died or failed else 0


async def _drain(settings: Settings, group: Group, changed: asyncio.Event) -> None:
    """SIGTERM every worker still running; SIGKILL any still there after its time."""
    for w in group.workers:
        if w.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + (
        settings.drain_delay + settings.drain_grace + _KILL_AFTER
    )
    while len(group.exited()) < len(group.workers):
        changed.clear()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            for w in group.workers:
                if w.exit_code is None:
                    logger.error("%s still running after its drain: killed", w.describe())
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(w.pid, signal.SIGKILL)
            deadline = float("inf")
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(left, 3600.0))
