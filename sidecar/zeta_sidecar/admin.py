"""The admin port: ``/metrics``, ``/healthz``, ``/readyz`` and ``/table``.

An aiohttp application that only reads the :class:`~zeta_sidecar.gateway.Gateway`,
served by :class:`AdminRunner` behind a connection gate of its own
(:data:`~zeta_sidecar.connections.ADMIN_MAX_CONNECTIONS`), so a flood of slow clients on
the traffic port leaves probes and scrapes answering.
"""

import json

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zeta_sidecar.connections import ADMIN_MAX_CONNECTIONS, ConnectionMetrics, Gate, Limits
from zeta_sidecar.gateway import GATEWAY, Gateway
from zeta_sidecar.guarded_server import GuardedServer
from zeta_sidecar.settings import Settings

__all__ = ["AdminRunner", "admin_app"]


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


class AdminRunner(web.AppRunner):
    """Serves an admin application (:func:`admin_app`, or a worker group's) behind a gate
    of its own (:data:`ADMIN_MAX_CONNECTIONS`), counted in ``metrics``."""

    def __init__(
        self, app: web.Application, settings: Settings, metrics: ConnectionMetrics
    ) -> None:
        super().__init__(app, access_log=None, shutdown_timeout=1.0)
        self.settings = settings
        self.metrics = metrics
        self._gate: Gate | None = None

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app; its handler is reused below
        settings = self.settings
        limits = Limits(
            max_connections=ADMIN_MAX_CONNECTIONS,
            head_timeout=settings.head_timeout,
            body_timeout=settings.body_timeout,
        )
        self._gate = gate = Gate("admin", limits, self.metrics)
        return GuardedServer(
            plain.request_handler,
            gate,
            request_factory=plain.request_factory,
            access_log=None,
            keepalive_timeout=settings.idle_timeout,
        )

    async def _cleanup_server(self) -> None:
        if self._gate is not None:
            self._gate.close()
        await super()._cleanup_server()
