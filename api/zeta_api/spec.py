"""The ``ZetaRouter`` spec: what a cluster admin declares, assembled from its parts.

Which models a router balances and which virtual models clients may ask for
(:mod:`~zeta_api.models`, with :mod:`~zeta_api.selectors`), where Prometheus is and
which load signals it answers (here, with :mod:`~zeta_api.signals`), how weights move
(:mod:`~zeta_api.policy`), how sidecars pick and admit (:mod:`~zeta_api.balancing`,
:mod:`~zeta_api.traffic`), and where the routing table goes. The same declarations
feed :func:`parse_spec` and the CRD's schema (see :mod:`zeta_api.crd`), so what the
apiserver accepts and what the operator accepts cannot drift apart. The parts' names
are re-exported here, so ``from zeta_api.spec import ModelSpec`` keeps working.

Collections and strings carry explicit size limits: the apiserver estimates the
worst-case cost of every CEL rule from them and refuses a CRD whose rules could cost
too much (the candidates rule is cubic: virtual models x candidates x models).
32 models, 8 virtual models of 16 candidates each are far beyond any real model family.
"""

from typing import ClassVar

from zeta_api.balancing import Balancing
from zeta_api.codec import load
from zeta_api.errors import SpecError
from zeta_api.models import (
    MODEL_NAME_MAX_LENGTH,
    MODEL_NAME_PATTERN,
    URL_PATTERN,
    ClassifierSpec,
    ModelSpec,
    Spillover,
    Strategy,
    VirtualModelSpec,
)
from zeta_api.policy import PolicySpec, SaturationSpec
from zeta_api.schema import Rule, Violation, prop, record
from zeta_api.selectors import LabelSelector, SelectorOperator, SelectorRequirement
from zeta_api.signals import Engine, QueryOverrides, Signal
from zeta_api.traffic import Traffic

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "MODEL_NAME_MAX_LENGTH",
    "MODEL_NAME_PATTERN",
    "PLURAL",
    "SHORT_NAME",
    "SINGULAR",
    "VERSION",
    "ClassifierSpec",
    "Engine",
    "LabelSelector",
    "ModelSpec",
    "PolicySpec",
    "PrometheusSpec",
    "QueryOverrides",
    "RoutingTableRef",
    "SaturationSpec",
    "SelectorOperator",
    "SelectorRequirement",
    "Signal",
    "Spillover",
    "Strategy",
    "VirtualModelSpec",
    "ZetaRouterSpec",
    "parse_spec",
]

GROUP = "zeta.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ZetaRouter"
PLURAL = "zetarouters"
SINGULAR = "zetarouter"
SHORT_NAME = "zr"

MAX_MODELS = 32
MAX_VIRTUAL_MODELS = 8
_DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@record
class PrometheusSpec:
    """Where the per-pod load comes from."""

    url: str = prop(
        "Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
        max_length=2048,
        pattern=URL_PATTERN,
    )
    engine: Engine = prop(
        "The serving engine, which picks the default metric names and queries.",
        default=Engine.VLLM,
    )
    queries: QueryOverrides = prop(
        "Per-signal PromQL overrides of the engine's default queries (as in Flagger's "
        "metric templates).",
        default_factory=QueryOverrides,
    )
    timeout: float = prop(
        "Timeout of each Prometheus query.", default=2.0, duration=True, min_seconds=0.001
    )


@record
class RoutingTableRef:
    """Where the operator publishes the routing table."""

    config_map_name: str = prop(
        "The ConfigMap (in the router's namespace) that receives the table under the key "
        "routing.json; the operator owns it.",
        max_length=253,
        pattern=_DNS_SUBDOMAIN_PATTERN,
    )


def _virtual_names_differ(spec: "ZetaRouterSpec") -> Violation | None:
    models = {m.name for m in spec.models}
    for i, v in enumerate(spec.virtual_models):
        if v.name in models:
            return f".virtualModels[{i}].name", f"{v.name!r} is already the name of a model"
    return None


def _class_defaults_name_models(spec: "ZetaRouterSpec") -> Violation | None:
    names = {m.name for m in spec.models} | {v.name for v in spec.virtual_models}
    for name in spec.traffic.model_classes:
        if name not in names:
            return f".traffic.modelClasses.{name}", f"{name!r} is not a model or virtual model"
    return None


def _candidates_are_models(spec: "ZetaRouterSpec") -> Violation | None:
    models = {m.name for m in spec.models}
    for i, v in enumerate(spec.virtual_models):
        for j, c in enumerate(v.candidates):
            if c not in models:
                return (
                    f".virtualModels[{i}].candidates[{j}]",
                    f"{c!r} is not the name of a model in spec.models",
                )
    return None


@record
class ZetaRouterSpec:
    """The desired state of a router: models, virtual models, metrics and policy."""

    models: tuple[ModelSpec, ...] = prop(
        "The models this router balances, each a set of pods.",
        min_items=1,
        max_items=MAX_MODELS,
        list_map_keys=("name",),
    )
    virtual_models: tuple[VirtualModelSpec, ...] = prop(
        "Names clients may ask for that resolve to one of several models.",
        default=(),
        max_items=MAX_VIRTUAL_MODELS,
        list_map_keys=("name",),
    )
    prometheus: PrometheusSpec = prop("Where per-pod load is read.")
    policy: PolicySpec = prop("How load becomes weights.", default_factory=PolicySpec)
    routing_table: RoutingTableRef = prop("Where the routing table is published.")
    balancing: Balancing = prop(
        "How the sidecars pick pods, retry and eject; copied into the routing table.",
        default_factory=Balancing,
    )
    traffic: Traffic = prop(
        "Priority classes, admission when a model is saturated, and per-tenant rate "
        "limits; copied into the routing table.",
        default_factory=Traffic,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.virtualModels) || self.virtualModels.all(v, "
            "!self.models.exists(m, m.name == v.name))",
            "a virtual model must not have the name of a model",
            _virtual_names_differ,
            field_path=".virtualModels",
        ),
        Rule(
            "!has(self.virtualModels) || self.virtualModels.all(v, "
            "v.candidates.all(c, self.models.exists(m, m.name == c)))",
            "every candidate of a virtual model must be the name of a model in spec.models",
            _candidates_are_models,
            field_path=".virtualModels",
        ),
        Rule(
            "!has(self.traffic) || !has(self.traffic.modelClasses) || "
            "self.traffic.modelClasses.all(k, self.models.exists(m, m.name == k) || "
            "(has(self.virtualModels) && self.virtualModels.exists(v, v.name == k)))",
            "every key of traffic.modelClasses must name a model or a virtual model",
            _class_defaults_name_models,
            field_path=".traffic",
        ),
    )

    def model(self, name: str) -> ModelSpec | None:
        """The model called ``name``, if any."""
        return next((m for m in self.models if m.name == name), None)


def parse_spec(obj: object) -> ZetaRouterSpec:
    """Parse and validate a ZetaRouter ``spec``; raise :class:`SpecError` naming the field."""
    return load(ZetaRouterSpec, obj, path="spec", error=SpecError)
