"""The ``ZetaRouter`` spec: what a cluster admin declares.

Which models a router balances (pod selectors, capacity, a declarative base weight),
which virtual models clients may ask for, where Prometheus is, how weights move, and
where the routing table goes. The same declarations feed :func:`parse_spec` and the
CRD's schema (see :mod:`zeta_api.crd`), so what the apiserver accepts and what the
operator accepts cannot drift apart.

Collections and strings carry explicit size limits: the apiserver estimates the
worst-case cost of every CEL rule from them and refuses a CRD whose rules could cost
too much (the candidates rule is cubic: virtual models x candidates x models).
32 models, 8 virtual models of 16 candidates each are far beyond any real model family.
"""

import enum
from collections.abc import Mapping
from typing import Any, ClassVar

from zeta_api.balancing import Balancing
from zeta_api.codec import dump, load
from zeta_api.errors import SpecError
from zeta_api.schema import Rule, Violation, prop, record
from zeta_api.traffic import Traffic

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
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

#: What clients put in a request's ``model``: letters, digits and ``. _ : / -``
#: (``org/model-7b`` style names work), starting and ending alphanumeric.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._:/-]*[A-Za-z0-9])?$"
MODEL_NAME_MAX_LENGTH = 128
MAX_MODELS = 32
MAX_VIRTUAL_MODELS = 8
MAX_CANDIDATES = 16
_LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_URL_PATTERN = r"^https?://[^/?#\s]+([/?#]\S*)?$"


class Strategy(enum.StrEnum):
    """How a virtual model spreads requests over its candidates."""

    COMPLEXITY = "complexity"
    WEIGHTED = "weighted"


class Spillover(enum.StrEnum):
    """Where a request goes when the tier it was meant for is saturated."""

    UP = "up"
    DOWN = "down"
    BOTH = "both"
    NONE = "none"


class Engine(enum.StrEnum):
    """The serving engine, which decides the default metric names and queries."""

    VLLM = "vllm"
    SGLANG = "sglang"


class Signal(enum.StrEnum):
    """A per-pod load signal read from Prometheus."""

    RUNNING = "running"
    WAITING = "waiting"
    KV_CACHE = "kvCache"
    TTFT_P95 = "ttftP95"
    ERROR_RATE = "errorRate"


class SelectorOperator(enum.StrEnum):
    """A label selector requirement's operator, as in ``metav1.LabelSelector``."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


def _values_fit_operator(req: "SelectorRequirement") -> Violation | None:
    wants_values = req.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
    if wants_values != bool(req.values):
        return (
            ".values",
            "must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
        )
    return None


@record
class SelectorRequirement:
    """One ``matchExpressions`` entry of a label selector."""

    key: str = prop("The label key.", min_length=1, max_length=317)
    operator: SelectorOperator = prop("How the key's value is compared with values.")
    values: tuple[str, ...] = prop(
        "The label values; non-empty for In and NotIn, empty for Exists and DoesNotExist.",
        default=(),
        max_items=64,
        max_length=63,
        pattern=_LABEL_VALUE_PATTERN,
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether labels meet this requirement (NotIn also matches an absent key)."""
        value = labels.get(self.key)
        match self.operator:
            case SelectorOperator.IN:
                return value is not None and value in self.values
            case SelectorOperator.NOT_IN:
                return value is None or value not in self.values
            case SelectorOperator.EXISTS:
                return value is not None
        return value is None

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
            "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
            _values_fit_operator,
            field_path=".values",
        ),
    )


def _not_empty(selector: "LabelSelector") -> Violation | None:
    if not selector.match_labels and not selector.match_expressions:
        return "", "must not be empty (an empty selector matches every pod in the namespace)"
    return None


@record
class LabelSelector:
    """Which pods serve a model, as in a Deployment's selector; must not be empty."""

    match_labels: Mapping[str, str] = prop(
        "Labels a pod must carry, all of them.",
        default_factory=dict,
        max_items=16,
        max_length=63,
        pattern=_LABEL_VALUE_PATTERN,
    )
    match_expressions: tuple[SelectorRequirement, ...] = prop(
        "Label requirements a pod must meet, all of them.",
        default=(),
        max_items=16,
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a pod with these labels is selected, with Kubernetes' semantics."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(req.matches(labels) for req in self.match_expressions)

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.matchLabels) && size(self.matchLabels) > 0)"
            " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "must not be empty (an empty selector matches every pod in the namespace)",
            _not_empty,
        ),
    )


@record
class ModelSpec:
    """One model: a set of pods serving the same weights, e.g. one Deployment."""

    name: str = prop(
        "The name clients ask for in a request's `model`.",
        max_length=MODEL_NAME_MAX_LENGTH,
        pattern=MODEL_NAME_PATTERN,
    )
    served_model_name: str = prop(
        "The model name the pods expect (vLLM's --served-model-name); the sidecar "
        "rewrites the request's `model` to it.",
        default="",
        min_length=1,
        max_length=256,
        default_doc="the model's name",
    )
    tier: int = prop(
        "The model's rank by size and quality, 1 the smallest. Complexity-based virtual "
        "models send harder requests to higher tiers, and spill over between tiers.",
        minimum=1,
        maximum=100,
    )
    selector: LabelSelector = prop("Which pods in the router's namespace serve this model.")
    port: int = prop(
        "The port the model server listens on in each pod.", default=8000, minimum=1, maximum=65535
    )
    capacity: int = prop(
        "Concurrent sequences one pod serves well (vLLM's max_num_seqs); utilisation and "
        "the sidecar's in-flight comparison are relative to it.",
        default=32,
        minimum=1,
        maximum=100000,
    )
    base_weight: float = prop(
        "The admin's declarative share of this model relative to its siblings (e.g. a canary "
        "at 0.1); load moves the live weight around it.",
        default=1.0,
        minimum=0,
        exclusive_minimum=True,
        maximum=1e6,
    )
    static: bool = prop(
        "Pin this model's weights to its base weight: no load feedback from Prometheus.",
        default=False,
    )

    def __post_init__(self) -> None:
        if not self.served_model_name:
            object.__setattr__(self, "served_model_name", self.name)


@record
class ClassifierSpec:
    """An external service that names the tier of each request (see the sidecar's
    ``zeta_sidecar.classifier`` for the request and answer it must speak)."""

    url: str = prop(
        "Where the sidecar POSTs the request's text, e.g. http://classifier.zeta:8080/classify.",
        max_length=2048,
        pattern=_URL_PATTERN,
    )
    timeout: float = prop(
        "How long the sidecar waits for an answer; past it (or on any error) the built-in "
        "estimator decides. It adds to the request's latency: keep it short.",
        default=0.05,
        duration=True,
        min_seconds=0.001,
    )


def _thresholds_fit(virtual: "VirtualModelSpec") -> Violation | None:
    thresholds = virtual.thresholds
    if not thresholds:
        return None
    if len(thresholds) != len(virtual.candidates) - 1:
        return (
            ".thresholds",
            f"must have one item fewer than candidates ({len(virtual.candidates) - 1}), "
            f"got {len(thresholds)}",
        )
    for i, t in enumerate(thresholds):
        if not 0.0 < t < 1.0:
            return f".thresholds[{i}]", f"must be above 0 and below 1, got {t!r}"
        if i and t <= thresholds[i - 1]:
            return f".thresholds[{i}]", f"must be above the one before, got {t!r}"
    return None


@record
class VirtualModelSpec:
    """A name clients may ask for that the router resolves to one of several models."""

    name: str = prop(
        "The name clients ask for; must differ from every model's name.",
        max_length=MODEL_NAME_MAX_LENGTH,
        pattern=MODEL_NAME_PATTERN,
    )
    strategy: Strategy = prop(
        "complexity: estimate how hard a request is and prefer the matching tier; "
        "weighted: split requests over the candidates by their live model weights "
        "(e.g. a canary)."
    )
    candidates: tuple[str, ...] = prop(
        "Names of models (in spec.models) this virtual model may route to.",
        min_items=1,
        max_items=MAX_CANDIDATES,
        list_set=True,
        max_length=MODEL_NAME_MAX_LENGTH,
    )
    spillover: Spillover = prop(
        "Where requests go when the chosen tier is saturated: up (bigger models), down, "
        "both (nearest first), or none (answer 429).",
        default=Spillover.UP,
    )
    thresholds: tuple[float, ...] = prop(
        "complexity only: where the complexity score (0 to 1) moves to the next candidate, "
        "by tier; increasing, one fewer than candidates (e.g. [0.4, 0.8] for three). Lower "
        "values send more requests to bigger models.",
        default=(),
        max_items=MAX_CANDIDATES - 1,
        list_set=True,
        minimum=0,
        exclusive_minimum=True,
        maximum=1,
        default_doc="the built-in estimator's fitted thresholds, 1/3 and 2/3 for three "
        "candidates (an even split of the score)",
    )
    classifier: ClassifierSpec | None = prop(
        "complexity only: an external classifier that names each request's tier; the "
        "built-in estimator decides when it is slow or fails.",
        default=None,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.thresholds) || size(self.thresholds) == 0 || "
            "(size(self.thresholds) == size(self.candidates) - 1 && "
            "self.thresholds.all(t, t < 1.0) && self.thresholds.isSorted())",
            "thresholds must be increasing, below 1, and one fewer than candidates",
            _thresholds_fit,
            field_path=".thresholds",
        ),
    )


_QUERY_NOTE = (
    " It must return one sample per pod with a `pod` label; the operator replaces "
    "{{namespace}} and {{pods}} (a regex alternation of the router's pod names) first."
)


def _query(signal: str) -> Any:  # a prop(), typed as prop() is
    return prop(
        f"PromQL for {signal}, replacing the engine's default." + _QUERY_NOTE,
        default=None,
        min_length=1,
        max_length=4096,
    )


@record
class QueryOverrides:
    """PromQL overrides, one optional field per :class:`Signal` (wire names match)."""

    running: str | None = _query("requests being processed per pod")
    waiting: str | None = _query("requests queued per pod")
    kv_cache: str | None = _query("KV-cache use per pod, 0 to 1")
    ttft_p95: str | None = _query("95th percentile time to first token per pod, in seconds")
    error_rate: str | None = _query("failed requests per second per pod")

    def as_map(self) -> dict[Signal, str]:
        """The overrides that are set, by signal."""
        values = {
            Signal.RUNNING: self.running,
            Signal.WAITING: self.waiting,
            Signal.KV_CACHE: self.kv_cache,
            Signal.TTFT_P95: self.ttft_p95,
            Signal.ERROR_RATE: self.error_rate,
        }
        return {signal: query for signal, query in values.items() if query is not None}


@record
class PrometheusSpec:
    """Where the per-pod load comes from."""

    url: str = prop(
        "Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
        max_length=2048,
        pattern=_URL_PATTERN,
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
class SaturationSpec:
    """When a pod counts as saturated; a model is saturated when all its pods are."""

    max_waiting: int = prop(
        "Requests waiting in a pod's queue above which the pod is saturated.",
        default=5,
        minimum=0,
    )
    max_kv_cache: float = prop(
        "KV-cache use (0 to 1) above which the pod is saturated.",
        wire="maxKVCache",
        default=0.8,
        minimum=0,
        maximum=1,
    )


@record
class PolicySpec:
    """How the operator turns load into weights."""

    interval: float = prop(
        "How often weights are recomputed from Prometheus (pods joining or leaving are "
        "handled at once, whatever the interval).",
        default=10.0,
        duration=True,
        min_seconds=1.0,
    )
    smoothing: float = prop(
        "How much of the previous weight each update keeps (EWMA): new = smoothing * "
        "previous + (1 - smoothing) * target. 0 follows the target at once.",
        default=0.5,
        minimum=0,
        maximum=1,
    )
    max_step: float = prop(
        "The largest change of one weight per interval, against oscillation.",
        default=0.2,
        minimum=0,
        maximum=1,
    )
    min_weight: float = prop(
        "The share every ready pod keeps, so that it keeps being measured.",
        default=0.02,
        minimum=0,
        maximum=0.5,
    )
    saturation: SaturationSpec = prop(
        "When pods and models count as saturated (for tier spillover).",
        default_factory=SaturationSpec,
    )
    stale_after: float = prop(
        "How long Prometheus may fail before the weights fall back to base weights by "
        "capacity; until then the last good weights stay.",
        default=60.0,
        duration=True,
        min_seconds=1.0,
    )
    static: bool = prop(
        "Pin every model's weights to their base weights: no load feedback at all.",
        default=False,
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

    @classmethod
    def from_dict(cls, obj: object) -> "ZetaRouterSpec":
        """Parse the ``spec`` of a ZetaRouter as the apiserver returns it."""
        return parse_spec(obj)

    def to_dict(self) -> dict[str, object]:
        """The wire form, every default spelled out (as the apiserver would store it)."""
        return dump(self)

    def model(self, name: str) -> ModelSpec | None:
        """The model called ``name``, if any."""
        return next((m for m in self.models if m.name == name), None)


def parse_spec(obj: object) -> ZetaRouterSpec:
    """Parse and validate a ZetaRouter ``spec``; raise :class:`SpecError` naming the field."""
    return load(ZetaRouterSpec, obj, path="spec", error=SpecError)
