"""The operator's own settings: built once from the command line, passed down.

Per-router behaviour (interval, smoothing, staleAfter, ...) belongs to each
``ZetaRouter``'s spec; what is here is about the process: what it watches, how it
takes part in peering, and the few knobs the spec deliberately does not expose.
"""

from dataclasses import dataclass, field

from zeta_operator.metrics.client import DEFAULT_MAX_QUERIES

__all__ = ["OperatorSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSettings:
    """How one ``zeta-operator`` process runs."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty with ``all_namespaces`` false means the default one."""

    all_namespaces: bool = False
    """Watch every namespace (the RBAC must be a ClusterRole then)."""

    standalone: bool = True
    """No peering: this process acts alone. The default, because a peering object must
    exist before ``--peering`` works, and a single replica needs none."""

    peering_name: str = "zeta-operator"
    """The KopfPeering (namespaced) or ClusterKopfPeering (all namespaces) object."""

    priority: int | None = None
    """Peering priority; the highest acts, the others pause. ``None`` draws a random
    one at start, because kopf lets replicas with *equal* priorities all act (it only
    warns), which would defeat HA with identical replicas of one Deployment."""

    peering_lifetime: float = 60.0
    """Seconds a peer's heartbeat stays valid: how long a killed leader blocks the
    others. kopf's default; tests shorten it."""

    liveness_endpoint: str | None = None
    """e.g. ``http://0.0.0.0:8080/healthz``, for the Deployment's liveness probe."""

    metrics_address: tuple[str, int] | None = None
    """Where to serve the operator's own ``/metrics`` (host, port); ``None``: nowhere."""

    rate_window: str = "1m"
    """Range of ``rate()`` in the default latency and error queries: at least four
    scrape intervals of a typical Prometheus (15 s), so one missed scrape is no gap."""

    prometheus_max_queries: int = DEFAULT_MAX_QUERIES
    """Prometheus queries one router may have in flight (its own threads, never shared
    with the ConfigMap and status writes). When hung queries hold them all, the next
    collection fails at once (``PrometheusStalled``) instead of queueing behind them.
    The default, two collections' worth (one query per signal), lets one stalled
    collection pass and stops at the second: by then Prometheus is not coming back
    within an interval."""

    sample_max_age: float = 120.0
    """Seconds after which a sample counts as stale (the pod then is unknown), when the
    Prometheus answer carries an older timestamp than the query's evaluation time."""

    shift_event_threshold: float = 0.25
    """A pod or model weight that moves by more than this (absolute share) in one
    update is reported as a Kubernetes Event: big shifts are what an admin asks about."""

    table_precision: int = 4
    """Decimal places of weights in the table: finer jitter is no material change, so
    it does not churn the ConfigMap, its watchers and the kubelet."""

    identity: str = field(default="")
    """Who this process is (host/pid), written on the ConfigMap it publishes."""
