"""Where tables come from: a mounted file, or a ConfigMap watched through the API.

Both hand raw bytes to :meth:`Gateway.load_table`, which validates and keeps the last
good table on refusal.

**File** (``--table-file``): the kubelet updates a ConfigMap volume by writing a new
timestamped directory and swapping the ``..data`` symlink, so the file's inode and
real path change, not the file in place. The watcher polls ``os.stat`` of the path
(which follows the symlinks) and its real path every ``file_poll_interval`` (0.1 s):
the standard library has no inotify binding, a stat is a microsecond, polling works
on every filesystem and needs no dependency, and 0.1 s keeps the 1 s promise.

**ConfigMap** (``--configmap NS/NAME``): aiohttp against the apiserver's own watch
endpoint (``?watch=1&fieldSelector=metadata.name=NAME``), on the application's event
loop. Not the ``kubernetes`` client's watch: it is synchronous, so it would need a
thread for the life of the process; and not polling, which costs the apiserver a GET
per interval and still lags by up to the interval. A watch delivers an edit within
milliseconds. On a ``410 Gone`` (resourceVersion too old) it lists again; on any
other failure it backs off (``watch_retry``, doubling to 8 s) and resumes. Credentials
come from the kubeconfig or the pod's service account, through the ``kubernetes``
client's loaders (read once at start; the token again at every reconnect, since
service-account tokens rotate).
"""

import asyncio
import json
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from kubernetes import client, config

from zeta_api import TABLE_KEY
from zeta_sidecar.settings import ConfigMapRef

__all__ = ["ApiConnection", "load_connection", "watch_configmap", "watch_file"]

logger = logging.getLogger(__name__)

Apply = Callable[[bytes], bool]

_MAX_BACKOFF = 8.0
_WATCH_SECONDS = 290
"""Server-side watch timeout: below the apiserver's usual 5-minute cap, so watches end
cleanly and are re-opened from the last resourceVersion rather than cut."""


def _file_key(path: Path) -> tuple[str, int, int, int] | None:
    try:
        st = os.stat(path)
        return (os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return None


async def watch_file(path: Path, apply: Apply, *, interval: float) -> None:
    """Apply ``path`` now and whenever it changes; runs until cancelled."""
    seen: tuple[str, int, int, int] | None = None
    missing_logged = False
    while True:
        key = _file_key(path)
        if key is None:
            if not missing_logged:
                logger.warning("routing table file %s is missing; waiting for it", path)
                missing_logged = True
        elif key != seen:
            missing_logged = False
            try:
                raw = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                logger.warning("cannot read routing table file %s: %s", path, exc)
            else:
                # Read the key again: a swap between stat and read shows next round.
                seen = key
                apply(raw)
        await asyncio.sleep(interval)


@dataclass(frozen=True, slots=True)
class ApiConnection:
    """How to reach and authenticate to an apiserver."""

    server: str
    ssl: ssl.SSLContext | bool
    headers: Callable[[], dict[str, str]]
    """Authentication headers, built again at each (re)connection."""


def load_connection(kubeconfig: Path | None) -> ApiConnection:
    """Credentials from a kubeconfig, or the pod's service account if ``None``.

    Blocking (reads files once); call it at start-up.
    """
    cfg = client.Configuration()
    if kubeconfig is None:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]  # untyped library
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]  # untyped library
            config_file=str(kubeconfig), client_configuration=cfg
        )
    context: ssl.SSLContext | bool = False
    if cfg.host.startswith("https://"):
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
        if not cfg.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)

    def headers() -> dict[str, str]:
        # auth_settings() calls the loader's refresh hook: in-cluster tokens are re-read
        # as they rotate. The settings' names differ between client versions; the
        # header they describe does not.
        settings: Mapping[str, object] = cfg.auth_settings()
        return {
            str(auth["key"]): str(auth["value"])
            for auth in settings.values()
            if isinstance(auth, dict) and auth.get("in") == "header" and auth.get("value")
        }

    return ApiConnection(cfg.host.rstrip("/"), context, headers)


class _Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


async def watch_configmap(
    conn: ApiConnection, ref: ConfigMapRef, apply: Apply, *, retry: float
) -> None:
    """Apply the ConfigMap's table now and on every change; runs until cancelled."""
    timeout = aiohttp.ClientTimeout(sock_connect=5, sock_read=_WATCH_SECONDS + 30)
    base = f"{conn.server}/api/v1/namespaces/{ref.namespace}/configmaps"
    backoff = retry
    async with aiohttp.ClientSession(timeout=timeout) as session:
        version: str | None = None
        while True:
            headers = conn.headers()
            try:
                if version is None:
                    version = await _list(
                        session=session,
                        url=base,
                        name=ref.name,
                        headers=headers,
                        conn=conn,
                        ref=ref,
                        apply=apply,
                    )
                params = {
                    "watch": "1",
                    "fieldSelector": f"metadata.name={ref.name}",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(_WATCH_SECONDS),
                }
                async with session.get(base, params=params, headers=headers, ssl=conn.ssl) as resp:
                    resp.raise_for_status()
                    backoff = retry
                    version = await _follow(resp, ref, apply, version)
                continue
            except _Gone:
                version = None
                continue
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                logger.warning(
                    "watch of ConfigMap %s failed (%s); again in %.1f s", ref, exc, backoff
                )
            await asyncio.sleep(backoff)
            backoff = min(_MAX_BACKOFF, backoff * 2)


async def _list(
    *,
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    headers: dict[str, str],
    conn: ApiConnection,
    ref: ConfigMapRef,
    apply: Apply,
) -> str:
    """List-then-watch: the ConfigMap if it exists, and the version to watch from.

    One list call (filtered to the one name) gives both at the same resourceVersion, so
    a ConfigMap created at any moment is either in the list or an ADDED event of the
    watch; a GET followed by a separate list could miss one created in between.
    """
    params = {"fieldSelector": f"metadata.name={name}"}
    async with session.get(url, params=params, headers=headers, ssl=conn.ssl) as resp:
        resp.raise_for_status()
        listing = await resp.json()
    items = listing.get("items") or []
    if items:
        _apply_object(items[0], ref, apply)
    else:
        logger.warning("ConfigMap %s does not exist (yet)", ref)
    return str(listing["metadata"]["resourceVersion"])


def _apply_object(obj: dict[str, object], ref: ConfigMapRef, apply: Apply) -> None:
    data = obj.get("data")
    raw = data.get(TABLE_KEY) if isinstance(data, dict) else None
    if not isinstance(raw, str):
        logger.error("ConfigMap %s has no %r key; keeping the last good table", ref, TABLE_KEY)
        return
    apply(raw.encode())


async def _follow(
    resp: aiohttp.ClientResponse, ref: ConfigMapRef, apply: Apply, version: str
) -> str:
    """Read watch events until the server ends the watch; the last resourceVersion seen."""
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Gone
                raise ValueError(f"watch error: {obj.get('message')}")
            version = str(obj["metadata"]["resourceVersion"])
            if kind in ("ADDED", "MODIFIED"):
                _apply_object(obj, ref, apply)
            elif kind == "DELETED":
                logger.error("ConfigMap %s was deleted; keeping the last good table", ref)
    return version
