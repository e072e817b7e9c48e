"""Traffic classes and rate limits: who waits, who is shed, and how much a tenant may send.

Declared as ``spec.traffic`` of a ``ZetaRouter`` and copied into the routing table, so
every gateway replica applies the same rules. Why: shedding is right for some traffic
and wrong for the rest, and only the admin can say which (the Gateway API Inference
Extension sheds only requests whose criticality is ``Sheddable``). When a model is
saturated (for a sheddable class: when its pods' batches are nearly full, see
``sheddableReserve``), a request of a *sheddable* class is answered 429 at once; any
other waits in the sidecar's admission queue, highest priority first, until a pod has room, for at
most its class's ``maxQueueTime``. Rate limits are per tenant, as token buckets in each
sidecar, each replica enforcing its share (``gatewayReplicas``).

A request's class: the class header if it names a declared class; else its tenant's
class; else the model's (or virtual model's) default class; else ``defaultClass``.
Unknown values fall through to the next rule: never an error.
"""

import enum
from collections.abc import Mapping
from typing import ClassVar

from zeta_api.schema import Rule, Violation, prop, record

__all__ = ["MAX_PRIORITY", "PriorityClass", "QueueTimeoutStatus", "Tenant", "Traffic"]

MAX_CLASSES = 16
MAX_PRIORITY = 1000
"""The highest priority a class may have."""
MAX_TENANTS = 256
MAX_KEYS_PER_TENANT = 16
_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_HEADER_PATTERN = r"^[a-z0-9!#$%&'*+.^_`|~-]+$"
_SHA256_PATTERN = r"^[0-9a-f]{64}$"


class QueueTimeoutStatus(enum.StrEnum):
    """What a request that waited its class's longest time is answered."""

    #: Too Many Requests, with ``Retry-After``: the client may come back.
    TOO_MANY_REQUESTS = "429"
    #: Service Unavailable: the model had no room in time.
    UNAVAILABLE = "503"


@record
class PriorityClass:
    """One class of traffic: its rank, and what happens to it when a model is saturated."""

    name: str = prop(
        "The class's name, as clients send it in the class header.",
        max_length=63,
        pattern=_NAME_PATTERN,
    )
    priority: int = prop(
        "Rank in the admission queue: higher is admitted first; equal ranks in arrival order.",
        minimum=0,
        maximum=MAX_PRIORITY,
    )
    sheddable: bool = prop(
        "Answer 429 with Retry-After at once when the model is saturated, instead of "
        "waiting. Only requests of a sheddable class are ever refused for load.",
        default=False,
    )
    max_queue_time: float = prop(
        "The longest a request of this class waits in a sidecar's admission queue for a "
        "pod with room; then it is answered with queueTimeoutStatus.",
        default=60.0,
        duration=True,
        min_seconds=0.001,
    )
    queue_timeout_status: QueueTimeoutStatus = prop(
        "The answer to a request that waited maxQueueTime: 429 (with Retry-After) or 503.",
        default=QueueTimeoutStatus.UNAVAILABLE,
    )


DEFAULT_CLASSES = (
    PriorityClass(name="critical", priority=300),
    PriorityClass(name="standard", priority=200),
    PriorityClass(name="sheddable", priority=100, sheddable=True),
)


@record
class Tenant:
    """A client of the router, found by the tenant header or by its API key."""

    name: str = prop(
        "The tenant's name: requests whose tenant header has this value belong to it.",
        max_length=63,
        pattern=_NAME_PATTERN,
    )
    api_key_sha256: tuple[str, ...] = prop(
        'Hex SHA-256 digests of the tenant\'s API keys (`printf %s "$KEY" | sha256sum`): '
        "a request whose `Authorization: Bearer` key hashes to one of them belongs to "
        "this tenant. Keys themselves are never stored.",
        default=(),
        max_items=MAX_KEYS_PER_TENANT,
        list_set=True,
        pattern=_SHA256_PATTERN,
        max_length=64,
    )
    priority_class: str | None = prop(
        "The class of this tenant's requests when they name none; defaults to the "
        "model's class, then defaultClass.",
        default=None,
        max_length=63,
        pattern=_NAME_PATTERN,
    )
    requests_per_second: float | None = prop(
        "Requests per second this tenant may send, across all gateway replicas; none for no limit.",
        default=None,
        minimum=0,
        exclusive_minimum=True,
        maximum=1e6,
    )
    burst: int | None = prop(
        "Requests this tenant may send at once above its rate; defaults to one second's "
        "worth (at least 1).",
        default=None,
        minimum=1,
        maximum=1000000,
    )
    tokens_per_minute: int | None = prop(
        "Tokens per minute (prompt, estimated at 4 characters a token, plus max_tokens "
        "requested; corrected by the usage the pod reports) this tenant may use, across "
        "all gateway replicas; none for no limit.",
        default=None,
        minimum=1,
        maximum=10**12,
    )


def _class_names(traffic: "Traffic") -> set[str]:
    return {c.name for c in traffic.classes}


def _default_declared(traffic: "Traffic") -> Violation | None:
    if traffic.default_class not in _class_names(traffic):
        return ".defaultClass", f"{traffic.default_class!r} is not a declared class"
    return None


def _tenant_classes_declared(traffic: "Traffic") -> Violation | None:
    names = _class_names(traffic)
    for i, tenant in enumerate(traffic.tenants):
        if tenant.priority_class is not None and tenant.priority_class not in names:
            return (
                f".tenants[{i}].priorityClass",
                f"{tenant.priority_class!r} is not a declared class",
            )
    return None


def _model_classes_declared(traffic: "Traffic") -> Violation | None:
    names = _class_names(traffic)
    for model, cls in traffic.model_classes.items():
        if cls not in names:
            return f".modelClasses.{model}", f"{cls!r} is not a declared class"
    return None


# In CEL, an absent `classes` means the three default classes (the Python side fills
# them in; the CRD cannot default a list of objects and still document it).
_DEFAULT_NAMES_CEL = "[" + ", ".join(f"'{c.name}'" for c in DEFAULT_CLASSES) + "]"


def _declared_cel(name: str) -> str:
    return (
        f"(has(self.classes) ? self.classes.exists(c, c.name == {name}) "
        f": {name} in {_DEFAULT_NAMES_CEL})"
    )


@record
class Traffic:
    """Priority classes, admission and per-tenant rate limits."""

    classes: tuple[PriorityClass, ...] = prop(
        "The classes requests may belong to.",
        default=DEFAULT_CLASSES,
        min_items=1,
        max_items=MAX_CLASSES,
        list_map_keys=("name",),
        default_doc=(
            "critical (priority 300), standard (200) and sheddable (100, sheddable), each "
            "waiting at most 60s"
        ),
    )
    default_class: str = prop(
        "The class of requests that no header, tenant or model default places.",
        default="standard",
        max_length=63,
        pattern=_NAME_PATTERN,
    )
    class_header: str = prop(
        "The request header that names a request's class (lower case). A value that is "
        "not a declared class is ignored.",
        default="x-zeta-priority",
        max_length=128,
        pattern=_HEADER_PATTERN,
    )
    tenant_header: str = prop(
        "The request header that names a request's tenant (lower case), usually set by "
        "an authenticating proxy in front of the gateway.",
        default="x-zeta-tenant",
        max_length=128,
        pattern=_HEADER_PATTERN,
    )
    tenants: tuple[Tenant, ...] = prop(
        "Tenants with their class and rate limits.",
        default=(),
        max_items=MAX_TENANTS,
        list_map_keys=("name",),
    )
    model_classes: Mapping[str, str] = prop(
        "Default class per model or virtual model name (clients may still name a class).",
        default_factory=dict,
        max_items=48,
        max_length=63,
        pattern=_NAME_PATTERN,
    )
    queue_limit: int = prop(
        "Most requests waiting per model in one sidecar's admission queue; past it, a "
        "request is answered as if it had waited its longest time.",
        default=1024,
        minimum=0,
        maximum=100000,
    )
    sheddable_reserve: float = prop(
        "Share of each pod's batch (its capacity) kept free of sheddable requests: a "
        "sheddable request is shed once every pod's load reaches capacity x (1 - this), "
        "so requests that wait for a pod find a batch place soon and never queue behind "
        "a sheddable one. 0 sheds them only when the batches are full.",
        default=0.15,
        minimum=0,
        maximum=1,
    )
    engine_priority: bool = prop(
        "The pods schedule by request priority (vLLM's `--scheduling-policy priority`): "
        "the gateway sends each request's class as vLLM's `priority` (1000 minus the "
        "class's priority: lower is served first), so a critical request preempts a "
        "sheddable one in a full batch. Leave it off unless every pod runs that policy: "
        "vLLM refuses a priority it does not schedule by.",
        default=False,
    )
    gateway_replicas: int = prop(
        "How many gateway replicas share the rate limits: each enforces 1/N of every "
        "tenant's limit (keep it equal to the gateway Deployment's replicas).",
        default=1,
        minimum=1,
        maximum=1000,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.defaultClass) || " + _declared_cel("self.defaultClass"),
            "defaultClass must name a declared class",
            _default_declared,
            field_path=".defaultClass",
        ),
        Rule(
            "!has(self.tenants) || self.tenants.all(t, !has(t.priorityClass) || "
            + _declared_cel("t.priorityClass")
            + ")",
            "every tenant's priorityClass must name a declared class",
            _tenant_classes_declared,
            field_path=".tenants",
        ),
        Rule(
            "!has(self.modelClasses) || self.modelClasses.all(k, "
            + _declared_cel("self.modelClasses[k]")
            + ")",
            "every class in modelClasses must name a declared class",
            _model_classes_declared,
            field_path=".modelClasses",
        ),
    )
