"""The policy: how the operator turns load into weights, and when a pod is saturated.

Its defaults are the operator's defaults too (the interval an invalid spec is retried
at, how long metrics may fail): take them from :class:`PolicySpec`, not from literals.
"""

from zeta_api.schema import prop, record

__all__ = ["PolicySpec", "SaturationSpec"]


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
