"""The kopf handlers: thin. They translate kopf's callbacks into calls on the
router loops (:mod:`zeta_operator.reconciling`) and keep the pod index.

- ``pods_by_namespace``: an index of every pod as a :class:`PodRecord`, by namespace
  (see :mod:`zeta_operator.discovery` for why not by router).
- ``pod_changed``: any pod event wakes the loops of the routers in its namespace,
  which rebuild their table if *their* pods changed (kopf updates indices before it
  calls handlers, so the loop sees the new pod).
- ``spec_changed``: a router whose generation is ahead of its status wakes its loop.
- ``configure`` and ``serve_metrics`` at start-up, ``stop_metrics`` at exit: kopf's
  settings, and the operator's own ``/metrics`` (:mod:`.telemetry`).
- ``route``: one daemon per router, running its loop for as long as it exists.
- ``router_deleted``: a router's DELETED event ends its loop.

No finalizer on the routers: the operator has nothing to clean up when one goes (its
table's ConfigMap has an owner reference, so the garbage collector deletes it), and a
finalizer would hold every router, and so its namespace, in Terminating whenever the
operator is not running (after ``helm uninstall``, say). kopf puts one on every object
that has a daemon (to stop the daemon before the object goes, nolar/kopf#833), so
:func:`_without_finalizer` takes that requirement off ours, and ``router_deleted`` stops
the loop instead. kopf still stops daemons itself on exit and when peering pauses this
replica; and it removes the finalizer that earlier versions left (``FINALIZER``), since
no handler requires it any more.

Handlers are registered on a registry built here, not on kopf's global default one.
"""

import dataclasses
import logging
from typing import Any

import kopf
from aiohttp import web

from zeta_api import GROUP, PLURAL, VERSION
from zeta_operator import discovery
from zeta_operator.reconciling import RouterLoop
from zeta_operator.runtime import Runtime
from zeta_operator.snapshots import PodRecord
from zeta_operator.telemetry import serve

__all__ = ["FINALIZER", "build_registry"]

FINALIZER = "zeta.dev/operator"
INDEX = "pods_by_namespace"
"""The pod index's id, and so the name of the kwarg kopf passes it as."""


def build_registry(*, peering_lifetime: float) -> kopf.OperatorRegistry:
    """Every handler of the operator, on a fresh registry."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.peering.lifetime = int(peering_lifetime)
        # Our loop posts its own Events; kopf's per-log-line Events would drown them.
        settings.posting.level = logging.WARNING
        # Reconnect lost watches quickly: a stale index means a stale table.
        settings.watching.server_timeout = 300
        settings.watching.reconnect_backoff = 1.0

    runners: list[web.AppRunner] = []

    @kopf.on.startup(id="serve_metrics", registry=registry)
    async def serve_metrics(memo: Any, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        if runtime.settings.metrics_address is not None:
            host, port = runtime.settings.metrics_address
            runners.append(await serve(runtime.telemetry, host, port))

    @kopf.on.cleanup(id="stop_metrics", registry=registry)
    async def stop_metrics(**_: Any) -> None:
        while runners:
            await runners.pop().cleanup()

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own gets none of kopf's default login handlers: in a pod,
        # the service account; elsewhere, the kubeconfig ($KUBECONFIG).
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
            **kwargs
        ) or kopf.login_with_kubeconfig(**kwargs)
        return info

    @kopf.index("", "v1", "pods", id=INDEX, registry=registry)
    def pods_by_namespace(
        *, body: kopf.Body, namespace: str | None, **_: Any
    ) -> dict[str, PodRecord]:
        return {namespace or "": discovery.pod_record(body)}

    @kopf.on.event("", "v1", "pods", id="pod_changed", registry=registry)
    def pod_changed(*, namespace: str | None, memo: Any, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        runtime.wake(namespace or "")

    @kopf.on.event(GROUP, VERSION, PLURAL, id="router_deleted", registry=registry)
    def router_deleted(*, event: kopf.RawEvent, uid: str, memo: Any, **_: Any) -> None:
        if event["type"] == "DELETED":
            runtime: Runtime = memo.runtime
            runtime.deleted(uid)

    @kopf.on.event(GROUP, VERSION, PLURAL, id="spec_changed", registry=registry)
    def spec_changed(
        *, body: kopf.Body, name: str, namespace: str | None, memo: Any, **_: Any
    ) -> None:
        if body.meta.get("generation") != body.status.get("observedGeneration"):
            runtime: Runtime = memo.runtime
            runtime.wake(namespace or "", name)

    # A failed loop (a bug) restarts soon rather than after kopf's default minute.
    @kopf.daemon(
        GROUP, VERSION, PLURAL, id="route", registry=registry, cancellation_timeout=10.0, backoff=5
    )
    async def route(
        *,
        body: kopf.Body,
        name: str,
        namespace: str | None,
        uid: str,
        stopped: kopf.DaemonStopped,
        memo: Any,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **kwargs: Any,
    ) -> None:
        index: kopf.Index[str, PodRecord] = kwargs[INDEX]
        namespace = namespace or ""

        def event(type_: str, reason: str, message: str) -> None:
            kopf.event(body, type=type_, reason=reason, message=message)

        def pods() -> list[PodRecord]:
            # The index is live: kopf updates it in place as pods change.
            return list(index.get(namespace, ()))

        loop = RouterLoop(
            memo.runtime, namespace=namespace, name=name, uid=uid, event=event, logger=logger
        )
        await loop.run(body, pods, stopped)

    _without_finalizer(registry, "route")
    return registry


def _without_finalizer(registry: kopf.OperatorRegistry, handler_id: str) -> None:
    """Take kopf's finalizer requirement off one daemon (see the module docstring).

    kopf has no public switch for it, so this replaces the registered handler with a
    copy; it fails loudly, at start, if kopf's registry ever changes shape.
    """
    # The registry's private parts: checked by tests/unit/operator/test_operator_handlers.py.
    spawning = registry._spawning._handlers
    for i, handler in enumerate(spawning):
        if handler.id == handler_id:
            spawning[i] = dataclasses.replace(handler, requires_finalizer=False)
            return
    raise LookupError(f"no daemon {handler_id!r} to take the finalizer off")
