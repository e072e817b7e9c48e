"""The routing table from a ConfigMap watched through the API (``--configmap NS/NAME``),
handed as raw bytes to :meth:`Gateway.load_table
<zeta_sidecar.gateway.Gateway.load_table>`, which validates it and keeps the last good
table on refusal.

``kubernetes_asyncio`` (the official client's loaders and models on aiohttp, imported
only for ``--configmap``) lists then watches the one ConfigMap on the application's
event loop; a watch delivers an edit within milliseconds, where
polling would cost the apiserver a GET per interval and still lag. The rules:

- list, then watch from the list's resourceVersion: a ConfigMap created at any moment is
  either in the list or an ``ADDED`` event, never missed;
- the watch asks for bookmarks and a server-side timeout, so an idle watch still moves
  its resourceVersion forward and a silently dead connection is renewed; when the
  server ends it, watch again from the last resourceVersion seen;
- ``410 Gone`` (an ``ERROR`` event or the response's status) lists again, at once if
  the watch had delivered events; any other failure backs off (``watch_retry``,
  doubling to 8 s) and lists again, because a resourceVersion that failed once may be
  what fails;
- a deleted ConfigMap, or one without the table's key, keeps the last good table.

Credentials: :mod:`~zeta_sidecar.kube_credentials`; a ``401`` loads them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from zeta_api import TABLE_KEY
from zeta_sidecar.file_source import Apply
from zeta_sidecar.kube_credentials import MAX_BACKOFF, ApiConnection
from zeta_sidecar.settings import ConfigMapRef

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient, CoreV1Api

__all__ = ["watch_configmap"]

logger = logging.getLogger(__name__)


WATCH_SECONDS = 290
"""Server-side watch timeout: below the apiserver's usual 5-minute cap, so watches end
cleanly and are re-opened from the last resourceVersion rather than cut."""

_READ_MARGIN = 30.0
"""Seconds of silence past the server's timeout (at most the timeout again) before the
client gives up on a watch: the connection is dead, not idle."""

_LIST_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)

_QUICK_END = 1.0
"""A watch the server ends sooner than this without a single event is a fault (a proxy
closing streams, say): reopening it at once would spin."""


async def watch_configmap(
    conn: ApiConnection,
    ref: ConfigMapRef,
    apply: Apply,
    *,
    retry: float,
    timeout_seconds: int = WATCH_SECONDS,
) -> None:
    """Apply the ConfigMap's table now and on every change; runs until cancelled."""
    await _ConfigMapWatch(conn, ref, apply, retry=retry, timeout_seconds=timeout_seconds).run()


class _ConfigMapWatch:
    """One ConfigMap's list-then-watch loop (see the module's docstring for the rules)."""

    def __init__(
        self,
        conn: ApiConnection,
        ref: ConfigMapRef,
        apply: Apply,
        *,
        retry: float,
        timeout_seconds: int,
    ) -> None:
        self.conn, self.ref, self.apply = conn, ref, apply
        self.retry, self.timeout_seconds = retry, timeout_seconds
        self.delivered = False
        """An event came since the last (re)connection: the watch was working."""
        self._client: ApiClient | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def run(self) -> None:
        from kubernetes_asyncio.client import ApiException  # noqa: PLC0415  # only for --configmap

        loop = asyncio.get_running_loop()
        backoff = self.retry
        version: str | None = None
        self._start_refresher()
        try:
            while True:
                self.delivered = False
                try:
                    api = self._api()
                    if version is None:
                        version = await self._list(api)
                    opened = loop.time()
                    version = await self._watch(api, version)
                    if self.delivered or loop.time() - opened >= _QUICK_END:
                        backoff = self.retry
                        continue  # the server's timeout: resume from the last version
                    logger.warning("watch of ConfigMap %s ended at once", self.ref)
                except ApiException as exc:
                    version = None
                    if exc.status == 410 and self.delivered:
                        logger.info("resourceVersion of ConfigMap %s too old; listing", self.ref)
                        continue
                    logger.warning(
                        "watch of ConfigMap %s failed (HTTP %s %s); listing again in %.2f s",
                        self.ref, exc.status, exc.reason, backoff,
                    )  # fmt: skip
                    if exc.status == 401:
                        await self._reload()
                except Exception as exc:  # the watch must outlive any failure
                    version = None
                    logger.warning(
                        "watch of ConfigMap %s failed (%s: %s); listing again in %.2f s",
                        self.ref, type(exc).__name__, exc, backoff,
                    )  # fmt: skip
                if self.delivered:
                    backoff = self.retry
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
        finally:
            await self._close()

    def _api(self) -> CoreV1Api:
        from kubernetes_asyncio import client  # noqa: PLC0415  # only for --configmap

        if self._client is None:
            self._client = client.ApiClient(self.conn.configuration)
        return client.CoreV1Api(self._client)

    def _start_refresher(self) -> None:
        self._refresher = asyncio.create_task(
            self.conn.refresh_tokens(), name="zeta-credentials-refresh"
        )

    async def _reload(self) -> None:
        """Credentials refused: load them again, and a client (its TLS too) from them."""
        await self._close()
        try:
            await self.conn.load()
        except Exception as exc:  # keep the last credentials and retry later
            logger.error("cannot load the Kubernetes credentials again: %s", exc)
        self._start_refresher()

    async def _close(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _list(self, api: CoreV1Api) -> str:
        """The ConfigMap if it exists, and the resourceVersion to watch from.

        One list call (filtered to the one name) gives both at the same resourceVersion;
        a GET followed by a separate list could miss one created in between.
        """
        listing = await api.list_namespaced_config_map(
            self.ref.namespace,
            field_selector=f"metadata.name={self.ref.name}",
            _request_timeout=_LIST_TIMEOUT,
        )
        if listing.items:
            self._apply_data(listing.items[0].data)
        else:
            logger.warning("ConfigMap %s does not exist (yet)", self.ref)
        return str(listing.metadata.resource_version)

    async def _watch(self, api: CoreV1Api, version: str) -> str:
        """Follow events until the server ends the watch; the last resourceVersion."""
        from kubernetes_asyncio import watch  # noqa: PLC0415  # only for --configmap
        from kubernetes_asyncio.client import ApiException  # noqa: PLC0415

        async def open_watch(namespace: str, **kwargs: Any) -> aiohttp.ClientResponse:
            # Unread (streamed) responses are not checked by the client: a 401 or a 500
            # with a body that is no Status would otherwise come back as a line of text.
            resp = cast(
                aiohttp.ClientResponse, await api.list_namespaced_config_map(namespace, **kwargs)
            )
            if resp.status != 200:
                body = (await resp.text(errors="replace"))[:300]
                resp.release()
                raise ApiException(status=resp.status, reason=f"{resp.reason}: {body}")
            return resp

        silence = self.timeout_seconds + min(_READ_MARGIN, self.timeout_seconds)
        read = aiohttp.ClientTimeout(sock_connect=5, sock_read=silence)
        # open_watch names no return type, so events keep their objects as plain dicts.
        async with watch.Watch() as events:
            stream = events.stream(
                open_watch,
                self.ref.namespace,
                field_selector=f"metadata.name={self.ref.name}",
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.timeout_seconds,
                _request_timeout=read,
            )
            async for event in stream:
                self.delivered = True
                kind, obj = event["type"], event["raw_object"]
                if kind in ("ADDED", "MODIFIED"):
                    self._apply_data(obj.get("data"))
                elif kind == "DELETED":
                    logger.error("ConfigMap %s was deleted; keeping the last good table", self.ref)
            return str(events.resource_version or version)

    def _apply_data(self, data: Mapping[str, str] | None) -> None:
        raw = data.get(TABLE_KEY) if data else None
        if not isinstance(raw, str):
            logger.error(
                "ConfigMap %s has no %r key; keeping the last good table", self.ref, TABLE_KEY
            )
            return
        self.apply(raw.encode())
