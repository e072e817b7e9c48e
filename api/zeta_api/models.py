"""Models and virtual models: what a router balances, and the names clients may ask for.

A model is a set of pods serving the same weights (one Deployment, say), found by a
label selector; a virtual model is a name that resolves to one of several models, by
request complexity (tiers) or by their live weights. The name rules here are shared
with the routing table, which repeats these declarations for the sidecar.
"""

import enum
from typing import ClassVar

from zeta_api.affinity import ModelAffinity
from zeta_api.schema import Rule, Violation, prop, record
from zeta_api.selectors import LabelSelector

__all__ = [
    "MAX_CANDIDATES",
    "MODEL_NAME_MAX_LENGTH",
    "MODEL_NAME_PATTERN",
    "URL_PATTERN",
    "ClassifierSpec",
    "ModelSpec",
    "Spillover",
    "Strategy",
    "VirtualModelSpec",
    "thresholds_fit",
]

#: What clients put in a request's ``model``: letters, digits and ``. _ : / -``
#: (``org/model-7b`` style names work), starting and ending alphanumeric.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._:/-]*[A-Za-z0-9])?$"
MODEL_NAME_MAX_LENGTH = 128
MAX_CANDIDATES = 16
#: An http(s) URL with a host: Prometheus', a classifier's.
URL_PATTERN = r"^https?://[^/?#\s]+([/?#]\S*)?$"


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
    affinity: ModelAffinity | None = prop(
        "This model's prefix and session affinity, in place of spec.balancing.affinity's "
        "(whose session header and index settings still apply, or their defaults).",
        default=None,
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
        pattern=URL_PATTERN,
    )
    timeout: float = prop(
        "How long the sidecar waits for an answer; past it (or on any error) the built-in "
        "estimator decides. It adds to the request's latency: keep it short.",
        default=0.05,
        duration=True,
        min_seconds=0.001,
    )


def thresholds_fit(virtual: "VirtualModelSpec") -> Violation | None:
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
            thresholds_fit,
            field_path=".thresholds",
        ),
    )
