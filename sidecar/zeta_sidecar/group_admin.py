"""The admin port of a worker group (``--workers`` over 1): the group as one sidecar.

The group's parent serves it; each worker serves its own admin application
(:func:`~zeta_sidecar.admin.admin_app`) on a private loopback socket that only the
parent knows, and the parent asks them:

- ``/metrics``: every worker's, merged (:mod:`~zeta_sidecar.merged_metrics`), with the
  admin port's own connection counts; a 503 if a worker does not answer, so that a
  scrape never shows counters that seem to fall;
- ``/readyz``: ready only while no worker has exited, the group is not draining, and
  every worker is ready (has a table, is not draining itself);
- ``/healthz``: every worker answers its own (a stuck event loop fails the liveness
  probe, as it would in one process);
- ``/table``: the first worker's;
- ``/workers``: each worker's pid, state, table revision (a reload reaching them all),
  requests answered and open traffic connections (how evenly the kernel spreads them).
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from zeta_sidecar.merged_metrics import merge_expositions, sample_sum

__all__ = ["Group", "WorkerState", "group_admin_app"]

WORKER_TIMEOUT = 5.0
"""Seconds a worker has to answer the parent: longer than a probe's usual timeout, so
the kubelet's own timeout is the one that judges a slow answer."""


@dataclass(slots=True)
class WorkerState:
    """One worker as the parent sees it."""

    index: int
    pid: int
    admin_port: int
    """Its private admin application, on ``127.0.0.1``."""
    exit_code: int | None = None
    """Its exit code once it has exited (negative: killed by that signal)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def describe(self) -> str:
        return f"worker {self.index} (pid {self.pid})"


@dataclass(slots=True)
class Group:
    """The workers, and whether the group drains."""

    workers: list[WorkerState]
    draining: bool = False
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    """The parent's own metrics (its admin port's connections)."""

    def exited(self) -> list[WorkerState]:
        return [w for w in self.workers if w.exit_code is not None]


_GROUP = web.AppKey("group", Group)
_SESSION = web.AppKey("session", aiohttp.ClientSession)


def group_admin_app(group: Group) -> web.Application:
    """``/metrics``, ``/healthz``, ``/readyz``, ``/table`` and ``/workers`` of a group."""
    app = web.Application()
    app[_GROUP] = group
    app.cleanup_ctx.append(_session)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/table", _table)
    app.router.add_get("/workers", _workers)
    return app


async def _session(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=WORKER_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[_SESSION] = session
        yield


async def _ask(request: web.Request, worker: WorkerState, path: str) -> tuple[int, bytes]:
    """(status, body) of a worker's admin ``path``; status 0 when it did not answer."""
    try:
        async with request.app[_SESSION].get(worker.url + path) as answer:
            return answer.status, await answer.read()
    except (aiohttp.ClientError, TimeoutError):
        return 0, b""


async def _ask_all(request: web.Request, path: str) -> list[tuple[int, bytes]]:
    workers = request.app[_GROUP].workers
    return list(await asyncio.gather(*(_ask(request, w, path) for w in workers)))


def _refusal(group: Group, answers: list[tuple[int, bytes]]) -> str | None:
    """Why the group is not ready: an exited worker, or one that did not say ok."""
    gone = group.exited()
    if gone:
        return ", ".join(f"{w.describe()} exited with {w.exit_code}" for w in gone)
    bad = [
        f"{w.describe()}: {body.decode(errors='replace') or 'no answer'}"
        for w, (status, body) in zip(group.workers, answers, strict=True)
        if status != 200
    ]
    return "; ".join(bad) or None


async def _metrics(request: web.Request) -> web.Response:
    group = request.app[_GROUP]
    answers = await _ask_all(request, "/metrics")
    missing = [
        w.describe() for w, (status, _) in zip(group.workers, answers, strict=True) if status != 200
    ]
    if missing:
        return web.Response(status=503, text=f"no metrics from {', '.join(missing)}")
    texts = [body.decode() for _, body in answers]
    texts.append(generate_latest(group.registry).decode())
    return web.Response(
        body=merge_expositions(texts), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _healthz(request: web.Request) -> web.Response:
    group = request.app[_GROUP]
    refusal = _refusal(group, await _ask_all(request, "/healthz"))
    return web.Response(status=503, text=refusal) if refusal else web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    group = request.app[_GROUP]
    if group.draining and not group.exited():
        return web.Response(status=503, text="draining")
    refusal = _refusal(group, await _ask_all(request, "/readyz"))
    return web.Response(status=503, text=refusal) if refusal else web.Response(text="ok")


async def _table(request: web.Request) -> web.Response:
    status, body = await _ask(request, request.app[_GROUP].workers[0], "/table")
    if status == 0:
        return web.json_response({"error": "worker 0 did not answer"}, status=503)
    return web.Response(status=status, body=body, content_type="application/json")


async def _workers(request: web.Request) -> web.Response:
    group = request.app[_GROUP]
    tables, metrics = await asyncio.gather(
        _ask_all(request, "/table"), _ask_all(request, "/metrics")
    )
    states = []
    for worker, (status, table), (scraped, text) in zip(
        group.workers, tables, metrics, strict=True
    ):
        exposition = text.decode() if scraped == 200 else ""
        states.append({
            "worker": worker.index,
            "pid": worker.pid,
            "running": worker.exit_code is None,
            "exitCode": worker.exit_code,
            "revision": json.loads(table)["revision"] if status == 200 else None,
            # How evenly the kernel spreads connections: what each worker answered.
            "requests": sample_sum(exposition, "zeta_requests_total"),
            "openConnections": sample_sum(
                exposition, "zeta_open_connections", listener="traffic"
            ),
        })  # fmt: skip
    return web.json_response({"draining": group.draining, "workers": states})
