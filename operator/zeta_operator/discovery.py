"""Which pods serve which model of a router, from the kopf index. Pure.

The index (see :mod:`zeta_operator.handlers`) keeps a :class:`PodRecord` per pod,
keyed by namespace, updated by kopf's watch: finding a router's pods is then a
filter over the namespace's records, with no list call per cycle. It is keyed by
namespace, not by router, on purpose: selectors live in routers and change with their
spec, while an index entry is only recomputed when its pod changes, so a router-keyed
index would go stale on every spec edit.

A pod that matches the selectors of two models serves the first one in the spec:
one address must not appear twice in a table (the sidecar refuses it).
"""

import operator
from collections.abc import Iterable, Mapping
from typing import Any

from zeta_api import ZetaRouterSpec
from zeta_operator.snapshots import PodRecord

__all__ = ["DRAIN_ANNOTATION", "pod_record", "select", "selection_key"]

DRAIN_ANNOTATION = "zeta.dev/drain"


def pod_record(body: Mapping[str, Any]) -> PodRecord:
    """A Pod object as the operator keeps it."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    annotations = meta.get("annotations") or {}
    return PodRecord(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        labels=dict(meta.get("labels") or {}),
        ip=status.get("podIP") or None,
        # A pod being deleted is on its way out: stop sending it work now.
        ready=ready and not meta.get("deletionTimestamp"),
        draining=str(annotations.get(DRAIN_ANNOTATION, "")).lower() == "true",
    )


def select(spec: ZetaRouterSpec, records: Iterable[PodRecord]) -> dict[str, list[PodRecord]]:
    """Ready pods with an address, per model name (every model present), sorted by name."""
    chosen: dict[str, list[PodRecord]] = {m.name: [] for m in spec.models}
    for record in records:
        if not record.ready or not record.ip:
            continue
        for model in spec.models:
            if model.selector.matches(record.labels):
                chosen[model.name].append(record)
                break
    for pods in chosen.values():
        pods.sort(key=_NAME)
    return chosen


_NAME = operator.attrgetter("name")


def selection_key(selection: Mapping[str, list[PodRecord]]) -> tuple[object, ...]:
    """What about a selection changes the table: who, where, and drained or not."""
    return tuple(
        (model, tuple((p.name, p.ip, p.draining) for p in pods))
        for model, pods in sorted(selection.items())
    )
