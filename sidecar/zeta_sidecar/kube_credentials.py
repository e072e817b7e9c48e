"""An apiserver's address and credentials for ``--configmap``, loaded by the
``kubernetes_asyncio`` library's loaders (imported only here and in
:mod:`~zeta_sidecar.configmap_source`).

Credentials come from the kubeconfig (``--kubeconfig``) or the pod's service account,
loaded once into a ``Configuration`` by the library's loaders, which refresh them as
they can: the in-cluster loader re-reads the rotating token file before a request once
the token it holds is a minute old, and the library's ``refresh_token`` re-runs an exec
plugin every minute unless the token's expiry is still ahead (GCP tokens likewise). A
``401`` means the apiserver no longer takes what we hold (revoked, rotated early, a
plugin's token that carries no expiry): the credentials are then loaded again, from
scratch, before the ConfigMap is listed again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes_asyncio.client import Configuration

__all__ = ["MAX_BACKOFF", "ApiConnection", "load_connection"]

logger = logging.getLogger(__name__)

MAX_BACKOFF = 8.0
"""Seconds at most between two tries after a failure (a refresh of the credentials, a
ConfigMap watch)."""


class ApiConnection:
    """An apiserver's address and credentials, as the library's loaders build them."""

    def __init__(self, kubeconfig: Path | None) -> None:
        self.kubeconfig = kubeconfig
        """The kubeconfig file; ``None`` for the pod's service account."""
        self.configuration: Configuration | None = None
        """What clients are built from; replaced (not mutated) by :meth:`load`."""
        self._loader: Any = None  # the kubeconfig's loader, for the library's refresher

    async def load(self) -> None:
        """Read the credentials (again): files, exec plugin, service-account token."""
        from kubernetes_asyncio import client, config  # noqa: PLC0415  # only for --configmap

        configuration = client.Configuration()
        if self.kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]  # untyped library function
            loader = None
        else:
            # persist_config=False: a refreshed token is never written back into what
            # may be a read-only mounted file.
            loader = await config.load_kube_config(
                config_file=str(self.kubeconfig),
                client_configuration=configuration,
                persist_config=False,
            )
        self.configuration, self._loader = configuration, loader

    async def refresh_tokens(self) -> None:
        """The library's refresher for the current kubeconfig (exec plugin, GCP); runs
        until cancelled, or returns at once when the credentials need none."""
        from kubernetes_asyncio import config  # noqa: PLC0415  # only for --configmap

        loader, configuration = self._loader, self.configuration
        if loader is None:
            return  # in-cluster: the configuration's own hook re-reads the token file
        while True:
            try:
                await config.refresh_token(loader, configuration)
                return
            except (TypeError, AttributeError):
                # A context without a user, or a plugin that returns a client certificate:
                # nothing this refresher can renew (a 401 reloads them).
                return
            except Exception as exc:  # a failing plugin must not end renewals
                logger.warning("refreshing the Kubernetes credentials failed: %s", exc)
                await asyncio.sleep(MAX_BACKOFF)


async def load_connection(kubeconfig: Path | None) -> ApiConnection:
    """Credentials from a kubeconfig, or the pod's service account if ``None``.

    Call it at start-up: a kubeconfig that cannot be loaded fails the start.
    """
    connection = ApiConnection(kubeconfig)
    await connection.load()
    return connection
