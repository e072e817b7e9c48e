"""What every handler shares in one operator process: settings, the API client, and
the wake-up events of the routers' loops. Lives in kopf's memo (built once in
:func:`zeta_operator.cli.main`), never in a module-level global."""

import asyncio
from dataclasses import dataclass, field

from kubernetes import client as k8s

from zeta_operator.settings import OperatorSettings

__all__ = ["Runtime"]


@dataclass(slots=True)
class Runtime:
    settings: OperatorSettings
    api: k8s.ApiClient
    wakers: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    """Per router (namespace, name): set to make its loop look at its pods now."""

    def waker(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakers.setdefault((namespace, name), asyncio.Event())

    def forget(self, namespace: str, name: str) -> None:
        self.wakers.pop((namespace, name), None)

    def wake(self, namespace: str, name: str | None = None) -> None:
        """Wake one router, or (``name`` None) every router in the namespace."""
        for (ns, router), event in self.wakers.items():
            if ns == namespace and name in (None, router):
                event.set()
