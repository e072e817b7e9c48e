"""Wiring: the traffic and admin applications around one :class:`Gateway`.

The traffic application carries the gateway's lifetime in its ``cleanup_ctx``: the
upstream connection pool, the table source and the prober start before it serves and
stop after it. The admin application only reads the gateway. Serve both with
:func:`runners`, whose traffic runner cancels handlers of clients that disconnect.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zeta_sidecar import sources
from zeta_sidecar.gateway import GATEWAY, Gateway
from zeta_sidecar.proxy import completions, models
from zeta_sidecar.upstream import Pool as UpstreamPool

__all__ = ["admin_app", "runners", "traffic_app"]

logger = logging.getLogger(__name__)

_PROBE_CONNECTIONS = 16
"""Concurrent health probes: ejected pods are few."""


def traffic_app(gateway: Gateway) -> web.Application:
    """The OpenAI API on ``--port``."""
    app = web.Application(client_max_size=gateway.settings.max_body_bytes)
    app[GATEWAY] = gateway
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", completions)
    app.router.add_get("/v1/models", models)
    app.cleanup_ctx.append(_client_session)
    app.cleanup_ctx.append(_table_source)
    app.cleanup_ctx.append(_prober)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    gateway.upstream = UpstreamPool(asyncio.get_running_loop())
    # Health probes only: rare, so aiohttp's full client is fine for them.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=_PROBE_CONNECTIONS))
    gateway.session = session
    yield
    gateway.session = None
    await session.close()
    gateway.upstream.close()
    gateway.upstream = None


async def _table_source(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    settings = gateway.settings
    if settings.table_file is not None:
        coro = sources.watch_file(
            settings.table_file, gateway.load_table, interval=settings.file_poll_interval
        )
    else:
        assert settings.configmap is not None  # Settings checks exactly one is set
        connection = sources.load_connection(settings.kubeconfig)
        coro = sources.watch_configmap(
            connection, settings.configmap, gateway.load_table, retry=settings.watch_retry
        )
    task = asyncio.create_task(coro, name="zeta-table-source")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _prober(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[GATEWAY].probe_ejected(), name="zeta-prober")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def admin_app(gateway: Gateway) -> web.Application:
    """``/metrics``, ``/healthz``, ``/readyz`` and ``/table`` on ``--admin-port``."""
    app = web.Application()
    app[GATEWAY] = gateway
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/table", _table)
    return app


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[GATEWAY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    if gateway.draining:
        return web.Response(status=503, text="draining")
    if gateway.store.current is None:
        return web.Response(status=503, text="no routing table loaded yet")
    return web.Response(text="ok")


async def _table(request: web.Request) -> web.Response:
    snapshot = request.app[GATEWAY].store.current
    if snapshot is None:
        return web.json_response({"error": "no routing table loaded yet"}, status=503)
    head = json.dumps({"revision": snapshot.revision})[:-1].encode()
    return web.Response(
        body=head + b',"table":' + snapshot.raw + b"}", content_type="application/json"
    )


def runners(gateway: Gateway, *, grace: float) -> tuple[web.AppRunner, web.AppRunner]:
    """(traffic, admin) runners; in-flight traffic gets ``grace`` seconds at shutdown."""
    traffic = web.AppRunner(
        traffic_app(gateway),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=grace,
    )
    admin = web.AppRunner(admin_app(gateway), access_log=None, shutdown_timeout=1.0)
    return traffic, admin
