"""What every handler shares in one operator process: settings, the API client, the
wake-up events of the routers' loops, and the operator's own metrics. Lives in kopf's
memo (built once in :func:`zeta_operator.cli.main`), never in a module-level global."""

import asyncio
from dataclasses import dataclass, field

from kubernetes import client as k8s

from zeta_operator.settings import OperatorSettings
from zeta_operator.telemetry import Telemetry

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    settings: OperatorSettings
    api: k8s.ApiClient
    telemetry: Telemetry = field(default_factory=Telemetry)
    wakers: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    """Per router (namespace, name): set to make its loop look at its pods now."""
    deletions: dict[str, asyncio.Event] = field(default_factory=dict)
    """Per router uid: set when the ZetaRouter is deleted. No finalizer holds the
    deletion back for kopf to stop the router's daemon, so its DELETED event does."""

    def waker(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakers.setdefault((namespace, name), asyncio.Event())

    def deletion(self, uid: str) -> asyncio.Event:
        return self.deletions.setdefault(uid, asyncio.Event())

    def deleted(self, uid: str) -> None:
        """The router ``uid`` is gone: its loop ends, even if it has not started yet."""
        self.deletion(uid).set()

    def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        self.wakers.pop((namespace, name), None)
        if uid is not None:
            self.deletions.pop(uid, None)

    def wake(self, namespace: str, name: str | None = None) -> None:
        """Wake one router, or (``name`` None) every router in the namespace."""
        for (ns, router), event in self.wakers.items():
            if ns == namespace and name in (None, router):
                event.set()
