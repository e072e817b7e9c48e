"""The publish and report stages of a cycle, for one router.

:class:`Publication` builds the routing table (pure, :mod:`.tables`), writes its
ConfigMap only when its content changed materially (the content hash, see
:func:`zeta_api.content_hash`), with a revision that only grows, even across restarts
and leader hand-overs (carried in the status); and patches the status only when it
changed. The calls themselves are :mod:`.apiserver`'s.

Building, checking, serialising and hashing a table grow with its pods (tens of
milliseconds for a 10,000-pod router), so they run in a worker thread: the event loop
keeps serving kopf's watches and the other routers meanwhile.
"""

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from zeta_api import (
    CONDITION_READY,
    ConditionStatus,
    EncodedTable,
    StatusError,
    TableError,
    TableStatus,
    ZetaRouterSpec,
    ZetaRouterStatus,
    encode_routing_table,
    parse_status,
)
from zeta_operator.apiserver import ConfigMapConflict, Published, Publisher
from zeta_operator.deciding import Outcome, Selection
from zeta_operator.reporting import Verdict, build_status
from zeta_operator.snapshots import PodLoad
from zeta_operator.tables import build_table
from zeta_operator.weighting import Weights

__all__ = ["Publication", "now_text"]


def now_text() -> str:
    """The time now, as status and table timestamps spell it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(status: ConditionStatus, reason: str, message: str) -> Verdict:
    return Verdict(CONDITION_READY, status, reason, message)


def _published(pods: int, revision: int) -> Verdict:
    return _ready(ConditionStatus.TRUE, "TablePublished", f"{pods} pods in revision {revision}")


class Publication:
    """One router's table and status as published, and their writes."""

    def __init__(
        self, publisher: Publisher, *, namespace: str, name: str, uid: str, precision: int
    ) -> None:
        self.publisher, self.precision = publisher, precision
        self.namespace, self.name, self.uid = namespace, name, uid
        self.published: Published | None = None
        """What the ConfigMap holds, as last read or written; ``None``: read it again."""
        self.config_map: str | None = None
        self.revision_floor = 0
        self.table_status: TableStatus | None = None
        self.last_status: dict[str, Any] | None = None

    def reread(self) -> None:
        """Read the ConfigMap again before the next write: someone else may have
        changed or deleted it, or a write failed halfway."""
        self.published = None

    def restore(self, stored: object) -> None:
        """Carry the revision over from the stored status (a restart, a new leader)."""
        try:
            status = parse_status(stored or {})
        except StatusError:
            return
        if status.routing_table is not None:
            self.revision_floor = status.routing_table.revision
            self.table_status = status.routing_table

    async def table(
        self,
        spec: ZetaRouterSpec,
        selection: Selection,
        weights: Weights,
        loads: Mapping[str, PodLoad],
    ) -> Verdict:
        """Read what the ConfigMap holds (once per interval, see :attr:`published`);
        write the table if it changed materially."""
        name = spec.routing_table.config_map_name
        try:
            if self.published is None or self.config_map != name:
                self.config_map = name
                self.published = await self.publisher.current(self.namespace, name, self.uid)
        except ConfigMapConflict as exc:
            return _ready(ConditionStatus.FALSE, "ConfigMapConflict", str(exc))
        floor = max(self.revision_floor, self.published.revision if self.published else 0)
        generated_at = now_text()

        def encode() -> EncodedTable:
            table = build_table(
                router=f"{self.namespace}/{self.name}",
                spec=spec,
                selection=selection,
                weights=weights,
                loads=loads,
                revision=floor + 1,
                generated_at=generated_at,
                precision=self.precision,
            )
            return encode_routing_table(table)

        try:
            encoded = await asyncio.to_thread(encode)
        except TableError as exc:
            return _ready(ConditionStatus.FALSE, "TableInvalid", str(exc))
        digest = encoded.content_hash
        pods = sum(len(p) for p in selection.values())
        if self.published is not None and self.published.content_hash == digest:
            return _ready(
                ConditionStatus.TRUE, "TablePublished", f"{pods} pods in revision {floor}"
            )
        published = Published(floor + 1, digest)
        await self.publisher.write(
            namespace=self.namespace,
            name=name,
            router=self.name,
            router_uid=self.uid,
            text=encoded.text,
            published=published,
        )
        self.published, self.revision_floor = published, published.revision
        self.table_status = TableStatus(revision=published.revision, updated_at=generated_at)
        return _published(pods, published.revision)

    async def status(self, stored: object, generation: int, outcome: Outcome) -> bool:
        """Patch the status with ``outcome``, unless that changes nothing; ``False`` if
        the router turned out to be gone."""
        try:
            previous = parse_status(stored or {})
        except StatusError:
            previous = ZetaRouterStatus()
        status = build_status(
            previous,
            generation=generation,
            now=now_text(),
            verdicts=outcome.verdicts,
            models=outcome.models,
            table=self.table_status,
            fallback=outcome.fallback,
            traffic=outcome.traffic,
        ).to_dict()
        if status == self.last_status:
            return True
        if not await self.publisher.patch_status(self.namespace, self.name, status):
            return False
        self.last_status = status
        return True
