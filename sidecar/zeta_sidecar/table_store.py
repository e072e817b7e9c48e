"""The table store: validate each new table, compile it for the hot path, swap it in.

A table is parsed and checked by :func:`zeta_api.parse_routing_table`; a bad one raises
and the store keeps its last good table, so a broken publication never takes traffic
down. A good one is compiled into a :class:`Snapshot` (per model: its
:class:`~zeta_sidecar.pods.ModelPods`; per virtual model: its candidates; the answers
and names built once) and swapped in by one assignment, between two requests of the
event loop.

Pods are identified by model and address. The store keeps each pod's runtime state
(in-flight count, failure record, when it joined) across tables, so a reload resets
neither the picker's view of load nor an ejection. A request in flight holds its
:class:`Pod`, so it finishes on the pod it started on and its count stays right even
if the pod has left the table; a pod that left gets no new requests.
"""

import json
from dataclasses import dataclass

from zeta_api import (
    Balancing,
    ClassifierSpec,
    Endpoint,
    RoutingTable,
    Spillover,
    Strategy,
    VirtualModelEntry,
    parse_routing_table,
)
from zeta_sidecar.complexity import default_thresholds
from zeta_sidecar.picking import cumulative
from zeta_sidecar.pods import ModelPods, Pod

__all__ = ["Snapshot", "TableStore", "VirtualModel"]


@dataclass(frozen=True, slots=True)
class VirtualModel:
    """A virtual model: its candidate models sorted by tier."""

    name: str
    strategy: Strategy
    spillover: Spillover
    candidates: tuple[ModelPods, ...]
    cum: list[float]
    """Cumulative model weights, for the ``weighted`` strategy."""
    thresholds: tuple[float, ...] = ()
    """``complexity``: the score thresholds between candidates, as declared or else the
    built-in estimator's defaults for this many candidates (resolved once, here)."""
    classifier: ClassifierSpec | None = None
    """``complexity``: the external classifier to ask first, if any."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A validated table, compiled for the hot path."""

    table: RoutingTable
    raw: bytes
    revision: int
    loaded_at: float
    models: dict[str, ModelPods]
    virtual: dict[str, VirtualModel]
    models_json: bytes
    """The ``GET /v1/models`` answer, built once."""
    names_json: dict[str, bytes]
    """Every model and virtual model name as a JSON string, for the body rewrite (built
    once: ``json.dumps`` per request costs more than the rest of the rewrite)."""

    @property
    def balancing(self) -> Balancing:
        """How to pick, retry, eject and time out, as the table says."""
        return self.table.balancing


class TableStore:
    """The current table and the pods' runtime state; not thread-safe (one event loop)."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.current: Snapshot | None = None
        self.epoch = 0
        """Bumped on every health change and table swap; models recompute weights then."""
        self._pods: dict[tuple[str, str], Pod] = {}
        self.departed: list[Pod] = []
        """Pods the last table swap removed (their metric labels go with them)."""

    def load(self, raw: bytes, now: float) -> tuple[Snapshot, bool]:
        """Validate and swap in ``raw``; ``(snapshot, changed)``.

        Raises :class:`TableError` (the current table stays) if ``raw`` is refused.
        The same bytes as the current table change nothing.
        """
        current = self.current
        if current is not None and raw == current.raw:
            return current, False
        table = parse_routing_table(raw, max_bytes=self.max_bytes)
        snapshot = self._compile(table, raw, now, first=current is None)
        self.current = snapshot
        self.epoch += 1
        return snapshot, True

    def _pod(self, model: str, ep: Endpoint, now: float, first: bool) -> Pod:
        reported = None
        if ep.load is not None and ep.load.running is not None:
            reported = ep.load.running + (ep.load.waiting or 0.0)
        pod = self._pods.get((model, ep.address))
        if pod is None:
            # Pods of the first table are not "new": the gateway is, not they.
            joined = float("-inf") if first else now
            pod = Pod(model, ep.address, f"http://{ep.address}", ep.pod, ep.capacity,
                      ep.weight, ep.draining, reported, joined)  # fmt: skip
        else:
            pod.name, pod.capacity, pod.weight = ep.pod, ep.capacity, ep.weight
            pod.draining, pod.reported = ep.draining, reported
        pod.inflight_at_report = pod.inflight
        return pod

    def _compile(self, table: RoutingTable, raw: bytes, now: float, first: bool) -> Snapshot:
        warmup = table.balancing.warmup
        pods: dict[tuple[str, str], Pod] = {}
        models: dict[str, ModelPods] = {}
        for name, entry in table.models.items():
            members = [self._pod(name, ep, now, first) for ep in entry.endpoints]
            for pod in members:
                pods[(name, pod.address)] = pod
            models[name] = ModelPods.of(name, entry, members, warmup, table.balancing.affinity)
        self.departed = [pod for key, pod in self._pods.items() if key not in pods]
        self._pods = pods
        virtual = {
            name: _virtual(name, v, [models[c] for c in v.candidates])
            for name, v in table.virtual_models.items()
        }
        names_json = {name: json.dumps(name).encode() for name in [*models, *virtual]}
        return Snapshot(
            table, raw, table.revision, now, models, virtual, _models_json(table), names_json
        )

    def pods(self) -> list[Pod]:
        """Every pod of the current table."""
        return list(self._pods.values())


def _virtual(name: str, entry: VirtualModelEntry, models: list[ModelPods]) -> VirtualModel:
    ordered = tuple(sorted(models, key=lambda m: (m.tier, m.name)))
    return VirtualModel(
        name,
        entry.strategy,
        entry.spillover,
        ordered,
        cumulative([m.weight for m in ordered]),
        entry.thresholds or default_thresholds(len(ordered)),
        entry.classifier,
    )


def _models_json(table: RoutingTable) -> bytes:
    created = 0
    data: list[dict[str, object]] = [
        {"id": name, "object": "model", "created": created, "owned_by": "zeta-router"}
        for name in table.models
    ]
    data += [
        {"id": name, "object": "model", "created": created, "owned_by": "zeta-router"}
        for name in table.virtual_models
    ]
    return json.dumps({"object": "list", "data": data}, separators=(",", ":")).encode()
