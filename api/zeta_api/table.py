"""The routing table: the document the operator publishes and every sidecar reads.

It lives in a ConfigMap under the key ``routing.json`` and is versioned and
self-describing (``apiVersion``, ``kind``). These are its records; the text form, its
strict parser, the cross-field rules and the encoder are in :mod:`zeta_api.table_text`.
A table that changes meaning needs a new ``apiVersion``, not a field old sidecars
would ignore.

Weights are relative: endpoint weights within a model and model weights within a
virtual model need not sum to 1, but they must be finite and non-negative, and a
model that has endpoints to serve must give some of them a positive weight.
"""

from collections.abc import Mapping
from typing import ClassVar

from zeta_api.affinity import ModelAffinity
from zeta_api.balancing import Balancing
from zeta_api.models import (
    ClassifierSpec,
    Spillover,
    Strategy,
    thresholds_fit,
)
from zeta_api.schema import Rule, prop, record
from zeta_api.spec import API_VERSION
from zeta_api.traffic import Traffic

__all__ = [
    "DEFAULT_MAX_BYTES",
    "TABLE_API_VERSION",
    "TABLE_KEY",
    "TABLE_KIND",
    "Endpoint",
    "EndpointLoad",
    "ModelEntry",
    "RoutingTable",
    "VirtualModelEntry",
]

TABLE_API_VERSION = API_VERSION
TABLE_KIND = "RoutingTable"
#: The ConfigMap key that holds the table.
TABLE_KEY = "routing.json"
#: A ConfigMap holds at most 1 MiB, so a bigger table cannot be real.
DEFAULT_MAX_BYTES = 1024 * 1024

_ROUTER_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"


@record
class EndpointLoad:
    """A pod's load as Prometheus last reported it: shared by every gateway replica."""

    running: float | None = prop(
        "Requests being processed; null when unknown.", default=None, minimum=0
    )
    waiting: float | None = prop("Requests queued; null when unknown.", default=None, minimum=0)
    kv_cache: float | None = prop(
        "KV-cache use, 0 to 1; null when unknown.", default=None, minimum=0, maximum=1
    )


@record
class Endpoint:
    """One pod of a model."""

    address: str = prop(
        "Where to send requests: ip:port ([ipv6]:port).", min_length=1, max_length=64
    )
    pod: str = prop("The pod's name, for logs and metrics.", min_length=1, max_length=253)
    weight: float = prop("The pod's share within its model (relative).", minimum=0)
    capacity: int = prop("Concurrent sequences the pod serves well.", minimum=1)
    load: EndpointLoad | None = prop("The pod's reported load; null when unknown.", default=None)
    draining: bool = prop(
        "The pod is being drained: no new requests (its weight is 0), in-flight ones finish.",
        default=False,
    )


@record
class ModelEntry:
    """One model of the table, keyed by the name clients ask for."""

    served_model_name: str = prop("The model name the pods expect.", min_length=1, max_length=256)
    tier: int = prop("Rank by size and quality, 1 the smallest.", minimum=1)
    weight: float = prop(
        "The model's share when a weighted virtual model splits traffic (relative); "
        "0 when the model has no endpoint to serve.",
        minimum=0,
    )
    saturated: bool = prop("Every pod is saturated: spill over to another tier.", default=False)
    static: bool = prop(
        "Weights pinned to the admin's base weights (no load feedback).", default=False
    )
    endpoints: tuple[Endpoint, ...] = prop("The model's pods.", default=())
    affinity: ModelAffinity | None = prop(
        "The model's own affinity settings, in place of balancing.affinity's; null: those.",
        default=None,
    )


@record
class VirtualModelEntry:
    """A name that resolves to one of several models."""

    strategy: Strategy = prop("complexity (tier by request difficulty) or weighted.")
    candidates: tuple[str, ...] = prop("Names of models in this table.", min_items=1, list_set=True)
    spillover: Spillover = prop(
        "Where to go when the chosen tier is saturated.", default=Spillover.UP
    )
    thresholds: tuple[float, ...] = prop(
        "complexity: the score thresholds between candidates by tier, as declared; empty: "
        "the sidecar's built-in ones.",
        default=(),
        minimum=0,
        maximum=1,
    )
    classifier: ClassifierSpec | None = prop(
        "complexity: the external classifier, as declared; null: none.", default=None
    )

    # The spec's rule, checked again: a table may be written by hand.
    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("", "thresholds must fit the candidates", thresholds_fit, ".thresholds"),
    )


@record
class RoutingTable:
    """A whole routing table (``apiVersion`` and ``kind`` are implied)."""

    router: str = prop(
        "The ZetaRouter that produced it, as namespace/name.", pattern=_ROUTER_PATTERN
    )
    revision: int = prop("Grows by one per material change.", minimum=0)
    generated_at: str = prop("When the operator generated it (RFC 3339).", date_time=True)
    models: Mapping[str, ModelEntry] = prop("Models by the name clients ask for.", min_items=1)
    virtual_models: Mapping[str, VirtualModelEntry] = prop(
        "Virtual models by name.", default_factory=dict
    )
    balancing: Balancing = prop("How sidecars pick, retry and eject.", default_factory=Balancing)
    traffic: Traffic = prop("Priority classes, admission and rate limits.", default_factory=Traffic)
