"""The operator's own calls to the apiserver: the table's ConfigMap, the router's status.

(The watches of routers and pods are kopf's, see :mod:`.handlers`.) The kubernetes
client is synchronous: its calls, one or two per router per interval,
run in a worker thread (``asyncio.to_thread``), never on the event loop.

The ConfigMap is owned by its ZetaRouter (a controller owner reference), so deleting
the router lets the garbage collector delete the table. Its annotations carry the
table's content hash (written only when it changes) and revision (monotonic across
operator restarts and peering hand-overs, since a new leader reads it back first).
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zeta_api import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    TABLE_KEY,
    VERSION,
    TableError,
    content_hash,
    parse_routing_table,
)

__all__ = [
    "ANNOTATION_HASH",
    "ANNOTATION_PUBLISHER",
    "ANNOTATION_REVISION",
    "ConfigMapConflict",
    "Published",
    "Publisher",
    "owner_reference",
]

ANNOTATION_HASH = "zeta.dev/content-hash"
ANNOTATION_REVISION = "zeta.dev/revision"
ANNOTATION_PUBLISHER = "zeta.dev/published-by"
LABEL_ROUTER = "zeta.dev/router"


class ConfigMapConflict(Exception):
    """The ConfigMap named in the spec is controlled by something else: never taken over."""


@dataclass(frozen=True, slots=True)
class Published:
    """What the ConfigMap holds now."""

    revision: int
    content_hash: str


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


class Publisher:
    """ConfigMap and status writes for every router, over one API client."""

    def __init__(self, api: k8s.ApiClient, *, identity: str) -> None:
        self._core = k8s.CoreV1Api(api)
        self._custom = k8s.CustomObjectsApi(api)
        self._identity = identity

    async def current(self, namespace: str, name: str, owner_uid: str) -> Published | None:
        """The published table's revision and hash, or ``None`` if there is none yet."""
        try:
            cm = await asyncio.to_thread(self._core.read_namespaced_config_map, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        meta = cm.metadata or k8s.V1ObjectMeta()
        for ref in meta.owner_references or ():
            if ref.controller and ref.uid != owner_uid:
                raise ConfigMapConflict(
                    f"ConfigMap {namespace}/{name} is controlled by {ref.kind} {ref.name}"
                )
        annotations: Mapping[str, str] = meta.annotations or {}
        try:
            revision = int(annotations.get(ANNOTATION_REVISION, "0"))
        except ValueError:
            revision = 0
        # The hash of what the ConfigMap holds, not what its annotation claims: someone
        # else may have changed the data (then it no longer matches, and is rewritten).
        stated = annotations.get(ANNOTATION_HASH, "")
        try:
            actual = content_hash(parse_routing_table((cm.data or {}).get(TABLE_KEY, "")))
        except TableError:
            actual = ""
        return Published(revision, stated if stated == actual else "")

    async def write(
        self,
        *,
        namespace: str,
        name: str,
        router: str,
        router_uid: str,
        text: str,
        published: Published,
    ) -> None:
        """Create or update the ConfigMap with this table."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {LABEL_ROUTER: router},
                "annotations": {
                    ANNOTATION_HASH: published.content_hash,
                    ANNOTATION_REVISION: str(published.revision),
                    ANNOTATION_PUBLISHER: self._identity,
                },
                "ownerReferences": [owner_reference(router, router_uid)],
            },
            "data": {TABLE_KEY: text},
        }
        try:
            # The client sends a plain dict as it is; its stubs only know the model classes.
            await asyncio.to_thread(
                self._core.patch_namespaced_config_map,
                name,
                namespace,
                body,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            await asyncio.to_thread(
                self._core.create_namespaced_config_map,
                namespace,
                body,  # type: ignore[arg-type]
            )

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge-patch the status subresource; ``False`` if the router is gone."""
        try:
            await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
