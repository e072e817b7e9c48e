"""Wiring: the traffic server around one :class:`Gateway`, and both ports' runners.

The traffic port is served by our own HTTP/1.1 server (:mod:`~zeta_sidecar.http_server`;
aiohttp's cost about 40 us of CPU per request): four routes, dispatched by
:func:`~zeta_sidecar.proxy.traffic_handler` (compiled with the rest of the hot path). Its
runner, :class:`TrafficRunner`, carries the gateway's lifetime: the upstream connection
pool, the table source and the prober start before it serves and stop after it; it
cancels handlers of clients that disconnect. The admin port is
:mod:`~zeta_sidecar.admin`'s. Serve both with :func:`runners`: each port's connections
pass a gate of their own (caps: :mod:`~zeta_sidecar.connections`; head and body
timeouts: :mod:`~zeta_sidecar.http_server`'s, the admin port's
:mod:`~zeta_sidecar.guarded_server`'s), so a flood of slow clients on the traffic port
leaves the admin port answering.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import cast

import aiohttp
from aiohttp import web

from zeta_sidecar.admin import AdminRunner, admin_app
from zeta_sidecar.configmap_source import watch_configmap
from zeta_sidecar.connections import Gate, Limits
from zeta_sidecar.fd_limits import default_max_connections
from zeta_sidecar.file_source import watch_file
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.http_server import Server
from zeta_sidecar.kube_credentials import load_connection
from zeta_sidecar.proxy import traffic_handler
from zeta_sidecar.upstream import Connections

__all__ = ["TrafficRunner", "runners"]

logger = logging.getLogger(__name__)

_PROBE_CONNECTIONS = 16
"""Concurrent health probes: ejected pods are few."""


class TrafficRunner(web.BaseRunner):
    """Serves :func:`~zeta_sidecar.proxy.traffic_handler` on
    :class:`~zeta_sidecar.http_server.Server`; the gateway's resources live as long as it.

    An aiohttp runner still, for its sites (``TCPSite`` binds with ``SO_REUSEPORT`` and
    the backlog asked for) and its drain sequence (listener closed, ``pre_shutdown``,
    ``shutdown`` with the grace period), which call the server only as a protocol factory
    and through those two methods.
    """

    def __init__(self, gateway: Gateway, *, shutdown_timeout: float) -> None:
        super().__init__(shutdown_timeout=shutdown_timeout)
        self.gateway = gateway
        self._resources: contextlib.AsyncExitStack | None = None
        self._gate: Gate | None = None

    async def shutdown(self) -> None:
        """Nothing to announce: the handlers see ``gateway.draining``."""

    async def _make_server(self) -> web.Server:
        gateway = self.gateway
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(_client_session(gateway))
            source = await _table_source(gateway)
            await stack.enter_async_context(_running(source, "zeta-table-source"))
            await stack.enter_async_context(_running(gateway.probe_ejected(), "zeta-prober"))
            self._resources = stack.pop_all()
        settings = gateway.settings
        limits = Limits(
            max_connections=settings.max_connections or default_max_connections(),
            max_per_client=settings.max_connections_per_client,
            head_timeout=settings.head_timeout,
            body_timeout=settings.body_timeout,
        )
        self._gate = gate = Gate("traffic", limits, gateway.metrics)
        logger.info(
            "traffic connections: at most %d open, %s per client address; request head "
            "within %g s, body stalls up to %g s, idle keep-alive up to %g s",
            limits.max_connections,
            limits.max_per_client or "no cap",
            limits.head_timeout,
            limits.body_timeout,
            settings.idle_timeout,
        )
        server = Server(
            traffic_handler(gateway),
            gate,
            max_body=settings.max_body_bytes,
            idle_timeout=settings.idle_timeout,
            loop=asyncio.get_running_loop(),
        )
        # Not an aiohttp Server, but all the runner and its sites call of one.
        return cast(web.Server, server)

    async def _cleanup_server(self) -> None:
        if self._gate is not None:
            self._gate.close()
        resources, self._resources = self._resources, None
        if resources is not None:
            await resources.aclose()


@contextlib.asynccontextmanager
async def _client_session(gateway: Gateway) -> AsyncIterator[None]:
    gateway.upstream = Connections(asyncio.get_running_loop())
    # Health probes only: rare, so aiohttp's full client is fine for them.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=_PROBE_CONNECTIONS))
    gateway.session = session
    try:
        yield
    finally:
        gateway.session = None
        await session.close()
        await gateway.classifier.close()
        gateway.upstream.close()
        gateway.upstream = None


@contextlib.asynccontextmanager
async def _running(coro: Coroutine[None, None, None], name: str) -> AsyncIterator[None]:
    """``coro`` as a task for as long as the context lasts; cancelled and awaited after."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _table_source(gateway: Gateway) -> Coroutine[None, None, None]:
    """The watcher the settings name, ready to run (credentials loaded for a ConfigMap)."""
    settings = gateway.settings
    if settings.table_file is not None:
        return watch_file(
            settings.table_file, gateway.load_table, interval=settings.file_poll_interval
        )
    assert settings.configmap is not None  # Settings checks exactly one is set
    connection = await load_connection(settings.kubeconfig)
    return watch_configmap(
        connection, settings.configmap, gateway.load_table, retry=settings.watch_retry
    )


def runners(gateway: Gateway, *, grace: float) -> tuple[TrafficRunner, AdminRunner]:
    """(traffic, admin) runners; in-flight traffic gets ``grace`` seconds at shutdown."""
    admin = AdminRunner(admin_app(gateway), gateway.settings, gateway.metrics)
    return TrafficRunner(gateway, shutdown_timeout=grace), admin
