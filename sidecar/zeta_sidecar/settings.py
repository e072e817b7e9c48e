"""The sidecar's process settings: what the command line sets, built once, passed down.

Balancing behaviour (picker, retries, ejection, timeouts) is *not* here: it comes with
the routing table, so every gateway replica behaves alike and an admin changes it
declaratively. These are the knobs of one process.
"""

import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ConfigMapRef", "Settings"]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""8 MiB holds a ~2M-character prompt: more than any context window, far less than a
memory risk."""


@dataclass(frozen=True, slots=True)
class ConfigMapRef:
    """A ConfigMap by namespace and name."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> "ConfigMapRef":
        """``NAMESPACE/NAME`` to a reference; ``ValueError`` saying what is wrong."""
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"expected NAMESPACE/NAME, got {text!r}")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """One sidecar process's settings."""

    host: str = "0.0.0.0"  # a sidecar serves its pod's network namespace
    """Address both listeners bind to."""

    port: int = 8080
    """Traffic port (the OpenAI API)."""

    admin_port: int = 9090
    """Admin port: ``/metrics``, ``/healthz``, ``/readyz``, ``/table``. Separate, so that
    scrapes and probes never queue behind traffic and the table is not exposed to clients."""

    table_file: Path | None = None
    """The routing table as a file (a mounted ConfigMap key); exclusive with ``configmap``."""

    configmap: ConfigMapRef | None = None
    """The ConfigMap holding the table, watched through the Kubernetes API."""

    kubeconfig: Path | None = None
    """Kubeconfig for ``configmap``; in-cluster service-account credentials when unset."""

    file_poll_interval: float = 0.1
    """Seconds between two looks at ``table_file``. A ``stat`` ten times a second costs
    nothing and keeps a kubelet symlink swap well within the one-second promise."""

    watch_retry: float = 0.5
    """Seconds before re-opening a failed ConfigMap watch (doubling up to 8 s)."""

    max_table_bytes: int = 1024 * 1024
    """Largest table accepted; a ConfigMap cannot hold more than 1 MiB anyway."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body in bytes (413 above)."""

    max_connections: int | None = None
    """Open client connections on the traffic port at most. At the cap, a keep-alive
    connection idle for ``head_timeout`` or longer is closed to make room
    (``zeta_connections_evicted``); with none, the new connection is closed at once,
    counted in ``zeta_connections_refused`` and logged (once per 10 s at most). ``None``:
    derived from the file-descriptor limit (raised to the hard limit at start-up): half of
    what is left after a reserve of 256 for the admin port, listeners, probes and accept
    bursts, so that every client connection can have its pod connection open too."""

    max_connections_per_client: int = 0
    """Open traffic connections per client address at most; 0 (the default): no cap. Off
    by default because in Kubernetes one address often carries everyone's traffic (an
    ingress controller, a gateway, a node's SNAT, or localhost for an in-pod sidecar): a
    cap there would refuse healthy clients. Set it where clients connect directly."""

    head_timeout: float = 10.0
    """Seconds a client has to send a complete request head (request line and headers),
    from its first byte, or from the accept for a connection's first request; then a 408
    and the connection closes. Clients send a head at once: this only cuts slow senders
    (slowloris) who would otherwise hold a connection for ever."""

    body_timeout: float = 30.0
    """Seconds a request body may go without a single byte arriving (408 and close). Not a
    bound on the whole upload: a slow client that keeps sending is served."""

    idle_timeout: float = 620.0
    """Seconds a keep-alive connection may wait between requests before it is closed.
    Longer than the idle timeout of the proxies and load balancers that may keep
    connections to the sidecar (nginx ingress 60 s, AWS ALB 60 s, Google Cloud's 600 s),
    which must be the ones to close an idle connection: else one may reuse a connection
    the sidecar is closing at that moment and fail the request."""

    saturation_headroom: float = 0.25
    """A pod counts as saturated when its reported running+waiting, plus the requests this
    replica sent it since the report, reach ``capacity * (1 + saturation_headroom)``:
    a short queue is normal for continuous batching, a longer one is not."""

    retry_after: int = 1
    """Seconds in a 429's ``Retry-After``: about one operator interval of a busy tier."""

    probe_interval: float = 0.1
    """Seconds between looks for ejected pods whose ejection time is over."""

    drain_delay: float = 0.0
    """Seconds between SIGTERM (``/readyz`` false) and closing the listener, so that
    endpoints controllers stop sending new connections first (set a few seconds in pods)."""

    drain_grace: float = 30.0
    """Seconds in-flight requests get to finish after the listener closes."""

    seed: int | None = None
    """Seed of the picker's randomness; ``None`` (production) seeds from the OS."""

    workers: int = 1
    """Processes serving ``port`` together (``SO_REUSEPORT``), each with its own table,
    pods' state and connection caps. Each is one more replica to the rules that share the
    pods or a rate between replicas (``traffic.gatewayReplicas`` times this)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.workers > 1 and self.port == 0:
            raise ValueError("port 0 needs workers 1: each worker would bind a port of its own")
        if (self.table_file is None) == (self.configmap is None):
            raise ValueError("exactly one of table_file and configmap must be set")
        for name in ("port", "admin_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ValueError(f"{name} must be 0..65535, got {value}")
        for name in ("file_poll_interval", "watch_retry", "probe_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_body_bytes < 1 or self.max_table_bytes < 1:
            raise ValueError("size limits must be positive")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be positive")
        if self.max_connections_per_client < 0:
            raise ValueError("max_connections_per_client must be positive, or 0 for no cap")
        for name in ("head_timeout", "body_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
