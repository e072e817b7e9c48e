"""Wiring: the traffic server and the admin application around one :class:`Gateway`.

The traffic port is served by aiohttp's low-level server: four routes, dispatched by
:func:`traffic_handler` without an ``Application`` and its router (about a third of the
proxy's CPU per request went to them). Its runner, :class:`TrafficRunner`, carries the
gateway's lifetime: the upstream connection pool, the table source and the prober start
before it serves and stop after it; it cancels handlers of clients that disconnect. The
admin application only reads the gateway. Serve both with :func:`runners`.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zeta_sidecar import sources
from zeta_sidecar.errors import MethodNotAllowed, UnknownRoute
from zeta_sidecar.gateway import GATEWAY, Gateway
from zeta_sidecar.proxy import completions, models
from zeta_sidecar.upstream import Pool as UpstreamPool

__all__ = ["TrafficRunner", "admin_app", "runners", "traffic_handler"]

logger = logging.getLogger(__name__)

_PROBE_CONNECTIONS = 16
"""Concurrent health probes: ejected pods are few."""

_COMPLETIONS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
_MODELS = "/v1/models"
_POST = ("POST",)
_GET = ("GET", "HEAD")

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _not_allowed(request: web.BaseRequest, allow: tuple[str, ...]) -> web.Response:
    message = f"Method {request.method} is not allowed for {request.rel_url.raw_path}."
    return MethodNotAllowed(message, allow=allow).response()


def traffic_handler(gateway: Gateway) -> Handler:
    """The OpenAI API on ``--port``: ``POST`` completions and embeddings, ``GET /v1/models``.

    As aiohttp's ``Application`` router would: ``Expect: 100-continue`` honoured, paths
    matched decoded (``%2F`` kept), ``HEAD`` with ``GET``; anything else is a 404 or a
    405 (with ``Allow``), with an OpenAI-style body as every other error here.
    """

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get(hdrs.EXPECT):
            await _expect(request)
        path = request.rel_url.path_safe
        if path in _COMPLETIONS:
            if request.method == "POST":
                return await completions(gateway, request)
            return _not_allowed(request, _POST)
        if path == _MODELS:
            if request.method in _GET:
                return await models(gateway, request)
            return _not_allowed(request, _GET)
        return UnknownRoute(
            f"Invalid URL ({request.method} {request.rel_url.raw_path})."
        ).response()

    return handle


async def _expect(request: web.BaseRequest) -> None:
    """``Expect: 100-continue`` as aiohttp's router answers it; 417 for anything else."""
    if request.version == HttpVersion11:
        expect = request.headers.get(hdrs.EXPECT, "")
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    await request.writer.drain()


class TrafficRunner(web.BaseRunner):
    """Serves :func:`traffic_handler`; the gateway's resources live as long as it."""

    def __init__(self, gateway: Gateway, *, shutdown_timeout: float) -> None:
        super().__init__(shutdown_timeout=shutdown_timeout)
        self.gateway = gateway
        self._resources: contextlib.AsyncExitStack | None = None

    async def shutdown(self) -> None:
        """Nothing to announce: the handlers see ``gateway.draining``."""

    async def _make_server(self) -> web.Server:
        loop = asyncio.get_running_loop()
        gateway = self.gateway
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(_client_session(gateway))
            await stack.enter_async_context(_table_source(gateway))
            await stack.enter_async_context(_prober(gateway))
            self._resources = stack.pop_all()
        limit = gateway.settings.max_body_bytes

        def make_request(
            message: RawRequestMessage,
            payload: StreamReader,
            protocol: RequestHandler,
            writer: AbstractStreamWriter,
            task: "asyncio.Task[None]",
        ) -> web.BaseRequest:
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=limit
            )

        return web.Server(
            traffic_handler(gateway),
            request_factory=make_request,
            handler_cancellation=True,
            access_log=None,
        )

    async def _cleanup_server(self) -> None:
        resources, self._resources = self._resources, None
        if resources is not None:
            await resources.aclose()


@contextlib.asynccontextmanager
async def _client_session(gateway: Gateway) -> AsyncIterator[None]:
    gateway.upstream = UpstreamPool(asyncio.get_running_loop())
    # Health probes only: rare, so aiohttp's full client is fine for them.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=_PROBE_CONNECTIONS))
    gateway.session = session
    try:
        yield
    finally:
        gateway.session = None
        await session.close()
        gateway.upstream.close()
        gateway.upstream = None


@contextlib.asynccontextmanager
async def _table_source(gateway: Gateway) -> AsyncIterator[None]:
    settings = gateway.settings
    if settings.table_file is not None:
        coro = sources.watch_file(
            settings.table_file, gateway.load_table, interval=settings.file_poll_interval
        )
    else:
        assert settings.configmap is not None  # Settings checks exactly one is set
        connection = await sources.load_connection(settings.kubeconfig)
        coro = sources.watch_configmap(
            connection, settings.configmap, gateway.load_table, retry=settings.watch_retry
        )
    task = asyncio.create_task(coro, name="zeta-table-source")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _prober(gateway: Gateway) -> AsyncIterator[None]:
    task = asyncio.create_task(gateway.probe_ejected(), name="zeta-prober")
    try:
        yield
    finally:
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


def runners(gateway: Gateway, *, grace: float) -> tuple[TrafficRunner, web.AppRunner]:
    """(traffic, admin) runners; in-flight traffic gets ``grace`` seconds at shutdown."""
    traffic = TrafficRunner(gateway, shutdown_timeout=grace)
    admin = web.AppRunner(admin_app(gateway), access_log=None, shutdown_timeout=1.0)
    return traffic, admin
