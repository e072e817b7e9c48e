"""The contract the operator and the sidecar share.

The ``ZetaRouter`` resource (spec and status) and the ``RoutingTable`` document the
operator writes and the sidecar reads, as typed values with their validation and
(de)serialisation. Purely data-manipulative: no I/O, no clock reads, and no import
of the processes that use it.

Layers, bottom up, one job each:

- :mod:`~zeta_api.errors` (the exception tree), :mod:`~zeta_api.durations`
  (Go durations to seconds and back) and :mod:`~zeta_api.slots` (a faster
  ``__init__`` for frozen, slotted dataclasses, the records' and the operator's);
- :mod:`~zeta_api.schema` (declarative fields: one declaration per field),
  :mod:`~zeta_api.codec` (the wire form to records, with field paths),
  :mod:`~zeta_api.dumping` (records to the wire form), :mod:`~zeta_api.checking`
  (whether a record built in-process loads back, without the round trip) and
  :mod:`~zeta_api.openapi` (records to the CRD's OpenAPI schema);
- the spec's parts: :mod:`~zeta_api.selectors` (label selectors),
  :mod:`~zeta_api.models` (models and virtual models), :mod:`~zeta_api.signals` (the
  load signals as one table: wire name, field, default PromQL per engine),
  :mod:`~zeta_api.policy` (how load becomes weights), :mod:`~zeta_api.balancing`
  (how sidecars pick, retry, eject), :mod:`~zeta_api.affinity` (prefix and session
  affinity, bounded by load; used by balancing and by models) and
  :mod:`~zeta_api.traffic` (priority classes, admission, rate limits);
- the documents: :mod:`~zeta_api.spec` (the ZetaRouter spec, assembled),
  :mod:`~zeta_api.status` (its status), :mod:`~zeta_api.table` (the routing table's
  records) and :mod:`~zeta_api.table_text` (its text: the strict parser, the
  cross-field rules, the one-pass encoder);
- :mod:`~zeta_api.crd` generates the CRD (``python -m zeta_api.crd``).

What is exported here is the public surface; the field machinery is not.
"""

from zeta_api.affinity import Affinity, ModelAffinity
from zeta_api.balancing import Balancing, Outlier, Picker, Retry, Timeouts
from zeta_api.durations import DURATION_PATTERN, format_duration, parse_duration
from zeta_api.errors import DurationError, SpecError, StatusError, TableError, ZetaApiError
from zeta_api.signals import SIGNALS, SignalInfo
from zeta_api.slots import slot_init
from zeta_api.spec import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    SINGULAR,
    VERSION,
    ClassifierSpec,
    Engine,
    LabelSelector,
    ModelSpec,
    PolicySpec,
    PrometheusSpec,
    QueryOverrides,
    RoutingTableRef,
    SaturationSpec,
    SelectorOperator,
    SelectorRequirement,
    Signal,
    Spillover,
    Strategy,
    VirtualModelSpec,
    ZetaRouterSpec,
    parse_spec,
)
from zeta_api.status import (
    CONDITION_DEGRADED,
    CONDITION_METRICS_AVAILABLE,
    CONDITION_READY,
    ClassInForce,
    Condition,
    ConditionStatus,
    Fallback,
    ModelStatus,
    StatusSummary,
    TableStatus,
    TrafficStatus,
    ZetaRouterStatus,
    parse_status,
    with_condition,
)
from zeta_api.table import (
    DEFAULT_MAX_BYTES,
    TABLE_API_VERSION,
    TABLE_KEY,
    TABLE_KIND,
    Endpoint,
    EndpointLoad,
    ModelEntry,
    RoutingTable,
    VirtualModelEntry,
)
from zeta_api.table_text import (
    EncodedTable,
    content_hash,
    dump_routing_table,
    encode_routing_table,
    parse_routing_table,
)
from zeta_api.traffic import MAX_PRIORITY, PriorityClass, QueueTimeoutStatus, Tenant, Traffic

__all__ = [
    "API_VERSION",
    "CONDITION_DEGRADED",
    "CONDITION_METRICS_AVAILABLE",
    "CONDITION_READY",
    "DEFAULT_MAX_BYTES",
    "DURATION_PATTERN",
    "GROUP",
    "KIND",
    "MAX_PRIORITY",
    "PLURAL",
    "SHORT_NAME",
    "SIGNALS",
    "SINGULAR",
    "TABLE_API_VERSION",
    "TABLE_KEY",
    "TABLE_KIND",
    "VERSION",
    "Affinity",
    "Balancing",
    "ClassInForce",
    "ClassifierSpec",
    "Condition",
    "ConditionStatus",
    "DurationError",
    "EncodedTable",
    "Endpoint",
    "EndpointLoad",
    "Engine",
    "Fallback",
    "LabelSelector",
    "ModelAffinity",
    "ModelEntry",
    "ModelSpec",
    "ModelStatus",
    "Outlier",
    "Picker",
    "PolicySpec",
    "PriorityClass",
    "PrometheusSpec",
    "QueryOverrides",
    "QueueTimeoutStatus",
    "Retry",
    "RoutingTable",
    "RoutingTableRef",
    "SaturationSpec",
    "SelectorOperator",
    "SelectorRequirement",
    "Signal",
    "SignalInfo",
    "SpecError",
    "Spillover",
    "StatusError",
    "StatusSummary",
    "Strategy",
    "TableError",
    "TableStatus",
    "Tenant",
    "Timeouts",
    "Traffic",
    "TrafficStatus",
    "VirtualModelEntry",
    "VirtualModelSpec",
    "ZetaApiError",
    "ZetaRouterSpec",
    "ZetaRouterStatus",
    "content_hash",
    "dump_routing_table",
    "encode_routing_table",
    "format_duration",
    "parse_duration",
    "parse_routing_table",
    "parse_spec",
    "parse_status",
    "slot_init",
    "with_condition",
]
