"""Label selectors: which pods serve a model, with Kubernetes' semantics.

The same shape as ``metav1.LabelSelector`` (``matchLabels`` and ``matchExpressions``),
declared once for the parser and the CRD's schema, and matched here as the apiserver
would match it. An empty selector is refused: it would select every pod of the namespace.
"""

import enum
from collections.abc import Mapping
from typing import ClassVar

from zeta_api.schema import Rule, Violation, prop, record

__all__ = ["LABEL_VALUE_PATTERN", "LabelSelector", "SelectorOperator", "SelectorRequirement"]

LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


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
        pattern=LABEL_VALUE_PATTERN,
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
        pattern=LABEL_VALUE_PATTERN,
    )
    match_expressions: tuple[SelectorRequirement, ...] = prop(
        "Label requirements a pod must meet, all of them.",
        default=(),
        max_items=16,
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a pod with these labels is selected, with Kubernetes' semantics."""
        # A loop, not any() over a generator: this runs per pod and model.
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        return not self.match_expressions or all(
            req.matches(labels) for req in self.match_expressions
        )

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.matchLabels) && size(self.matchLabels) > 0)"
            " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "must not be empty (an empty selector matches every pod in the namespace)",
            _not_empty,
        ),
    )
