"""The ``ZetaRouter`` status: what the operator reports about a router.

Conditions follow ``metav1.Condition`` (``Ready``, ``MetricsAvailable``, ``Degraded``),
so generic tooling (``kubectl wait --for=condition=Ready``) works. ``summary`` exists
for ``kubectl get zr``: printer columns are JSONPath and cannot count a list, so the
operator writes the counts.

Timestamps are RFC 3339 strings passed in by the caller: this package reads no clock.
"""

import dataclasses
import enum
from collections.abc import Iterable

from zeta_api.codec import load
from zeta_api.dumping import dump
from zeta_api.errors import StatusError
from zeta_api.schema import prop, record

__all__ = [
    "CONDITION_DEGRADED",
    "CONDITION_METRICS_AVAILABLE",
    "CONDITION_READY",
    "FOREIGN_STATUS_KEYS",
    "ClassInForce",
    "Condition",
    "ConditionStatus",
    "Fallback",
    "ModelStatus",
    "StatusSummary",
    "TableStatus",
    "TrafficStatus",
    "ZetaRouterStatus",
    "parse_status",
    "with_condition",
]

CONDITION_READY = "Ready"
CONDITION_METRICS_AVAILABLE = "MetricsAvailable"
CONDITION_DEGRADED = "Degraded"

# metav1.Condition's own patterns and limits.
_CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
_CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionStatus(enum.StrEnum):
    """A condition's status, as in ``metav1.ConditionStatus``."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Fallback(enum.StrEnum):
    """Which rung of the degradation ladder (DESIGN.md section 7) is active."""

    #: Live weights from fresh metrics.
    NONE = "none"
    #: Metrics failing: the last good weights are kept.
    LAST_GOOD = "last-good"
    #: Metrics failing for longer than staleAfter: base weights by capacity.
    BASE_WEIGHTS = "base-weights"


@record
class Condition:
    """One observation about the router, as ``metav1.Condition``."""

    type: str = prop(
        "The condition's type: Ready, MetricsAvailable or Degraded.",
        max_length=316,
        pattern=_CONDITION_TYPE_PATTERN,
    )
    status: ConditionStatus = prop("True, False or Unknown.")
    reason: str = prop(
        "A CamelCase reason for the last transition, for machines.",
        min_length=1,
        max_length=1024,
        pattern=_CONDITION_REASON_PATTERN,
    )
    message: str = prop("What happened, for humans.", default="", max_length=32768)
    last_transition_time: str = prop("When the status last changed (RFC 3339).", date_time=True)
    observed_generation: int | None = prop(
        "The spec generation this condition was computed from.", default=None, minimum=0
    )


@record
class ModelStatus:
    """What the operator sees of one model."""

    name: str = prop("The model's name in spec.models.", max_length=128)
    ready_pods: int = prop("Ready pods in the routing table.", default=0, minimum=0)
    weight: float = prop(
        "The model's share of traffic in the routing table (0 to 1).",
        default=0.0,
        minimum=0,
        maximum=1,
    )
    saturated: bool = prop("Whether every pod of the model is saturated.", default=False)
    waiting: float | None = prop(
        "Requests waiting in the model's queues, summed over pods; absent when unknown.",
        default=None,
        minimum=0,
    )
    kv_cache: float | None = prop(
        "Mean KV-cache use over the model's pods (0 to 1); absent when unknown.",
        default=None,
        minimum=0,
        maximum=1,
    )
    ttft_p95: float | None = prop(
        "95th percentile time to first token, in seconds; absent when unknown.",
        default=None,
        minimum=0,
    )
    prefix_cache_hit_rate: float | None = prop(
        "The pods' prefix-cache hit rate (0 to 1): prompt tokens found cached per prompt "
        "token looked up, summed over the model's pods, over the operator's rate window; "
        "absent when no pod exports prefix-cache counters or none looked anything up.",
        default=None,
        minimum=0,
        maximum=1,
    )


@record
class TableStatus:
    """The routing table last published."""

    revision: int = prop("The table's revision; grows by one per material change.", minimum=0)
    updated_at: str = prop("When that revision was published (RFC 3339).", date_time=True)


@record
class StatusSummary:
    """Counts for ``kubectl get zr`` (printer columns cannot count lists)."""

    models: int = prop("Models with at least one ready pod in the table.", default=0, minimum=0)
    pods: int = prop("Ready pods in the table, over all models.", default=0, minimum=0)


@record
class ClassInForce:
    """A traffic class the sidecars apply."""

    name: str = prop("The class's name.", max_length=63)
    priority: int = prop("Its rank in the admission queue (higher first).", minimum=0)
    sheddable: bool = prop("Answered 429 at once while its model is saturated.", default=False)


@record
class TrafficStatus:
    """The traffic classes and limits in force (from spec.traffic)."""

    classes: tuple[ClassInForce, ...] = prop(
        "Classes by rank, highest first.", default=(), max_items=16, list_map_keys=("name",)
    )
    default_class: str = prop("The class of requests nothing else places.", max_length=63)
    tenants: int = prop("Tenants declared.", default=0, minimum=0)
    rate_limited_tenants: int = prop("Tenants with a rate limit.", default=0, minimum=0)
    gateway_replicas: int = prop(
        "Gateway replicas the rate limits are shared among.", default=1, minimum=1
    )


@record
class ZetaRouterStatus:
    """The observed state of a router."""

    observed_generation: int = prop(
        "The spec generation the operator last acted on.", default=0, minimum=0
    )
    conditions: tuple[Condition, ...] = prop(
        "Ready, MetricsAvailable and Degraded, with reasons.",
        default=(),
        max_items=16,
        list_map_keys=("type",),
    )
    models: tuple[ModelStatus, ...] = prop(
        "Per-model summary: ready pods, weight and load.",
        default=(),
        max_items=32,
        list_map_keys=("name",),
    )
    summary: StatusSummary = prop("Counts shown by kubectl get.", default_factory=StatusSummary)
    routing_table: TableStatus | None = prop(
        "The routing table last published; absent until the first one.", default=None
    )
    fallback: Fallback = prop(
        "The active rung of the degradation ladder: none (live weights), last-good "
        "(metrics failing, last good weights kept) or base-weights (failing for longer "
        "than staleAfter).",
        default=Fallback.NONE,
    )
    traffic: TrafficStatus | None = prop(
        "The traffic classes and rate limits the sidecars apply.", default=None
    )

    @classmethod
    def from_dict(cls, obj: object) -> "ZetaRouterStatus":
        """Parse a stored status (kopf's own ``status.kopf`` is ignored)."""
        return parse_status(obj)

    def to_dict(self) -> dict[str, object]:
        """The wire form. ``None`` fields are left out: under a JSON merge patch (kopf's
        ``patch.status``) that keeps the stored value, so clear a field with an explicit
        ``None`` in the patch instead."""
        return dump(self)

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)


#: Keys of ``status`` owned by others: kopf keeps its progress under ``status.kopf``.
FOREIGN_STATUS_KEYS = frozenset({"kopf"})


def parse_status(obj: object) -> ZetaRouterStatus:
    """Parse a ZetaRouter ``status``; raise :class:`StatusError` naming the field."""
    return load(ZetaRouterStatus, obj, path="status", error=StatusError, ignore=FOREIGN_STATUS_KEYS)


def with_condition(conditions: Iterable[Condition], new: Condition) -> tuple[Condition, ...]:
    """Set ``new`` among ``conditions``, as ``meta.SetStatusCondition`` does in Go.

    The last transition time only moves when the status changes: a condition that
    stays ``False`` for an hour must say since when, not since the last reconcile.
    """
    out: list[Condition] = []
    placed = False
    for old in conditions:
        if old.type != new.type:
            out.append(old)
            continue
        placed = True
        if old.status == new.status:
            new = dataclasses.replace(new, last_transition_time=old.last_transition_time)
        out.append(new)
    if not placed:
        out.append(new)
    return tuple(out)
