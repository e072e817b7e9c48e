"""Client connections on the sidecar's two ports: how many may be open, so that slow or
idle clients cannot hold every file descriptor of the process and lock out other clients
and the kubelet's probes.

- :class:`Limits`: what one listener allows (caps, head and body timeouts).
- :class:`ConnectionMetrics`: the counts, by listener.
- :class:`Gate`: one listener's open connections, counted overall and per client address;
  a connection over a cap is closed at once, counted and logged (rate-limited by
  :class:`ThrottledLog`). At the overall cap, a keep-alive connection idle for a head
  timeout or more is closed to make room first: idle connections cannot lock new
  clients out. The connections themselves, and their timeouts, are
  :mod:`~zeta_sidecar.http_server`'s (traffic) and :mod:`~zeta_sidecar.guarded_server`'s
  (admin).
"""

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from zeta_sidecar.errors import RequestTimeout

__all__ = [
    "ADMIN_MAX_CONNECTIONS",
    "LOG_EVERY",
    "ConnectionMetrics",
    "Evictable",
    "Gate",
    "Limits",
    "ThrottledLog",
]

logger = logging.getLogger(__name__)

ADMIN_MAX_CONNECTIONS = 32
"""Cap of the admin port: a few probes and scrapes at a time; part of the reserve."""

LOG_EVERY = 10.0
"""Seconds between two log lines about the same kind of refusal."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one listener allows its clients."""

    max_connections: int
    """Open connections at most: at the cap, an idle keep-alive connection makes room, or
    else the new one is closed at once."""

    max_per_client: int = 0
    """Open connections per client address at most; 0 for no cap."""

    head_timeout: float = 10.0
    """Seconds for a request head, from its first byte (from the accept for the first)."""

    body_timeout: float = 30.0
    """Seconds a request body may go without a byte."""

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_per_client < 0:
            raise ValueError("connection caps must be positive (max_per_client 0: no cap)")
        for name in ("head_timeout", "body_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive and finite")


class Evictable(Protocol):
    """A connection a :class:`Gate` may close to make room (either port's)."""

    def evict(self) -> bool:
        """Close the connection if it waits between requests (no head begun); whether so."""
        ...


class ThrottledLog:
    """One kind of event, logged at most once per :data:`LOG_EVERY` seconds.

    The first event is logged at once; those within the next window are counted and
    summed up in one line when the window closes (a timer, armed only while events are
    being held back), so a flood costs a line per window and nothing is lost.
    """

    def __init__(self, level: int, text: str) -> None:
        self._level = level
        self._text = text  # a format string with {count}, {window} and {last}
        self._quiet_until = 0.0
        self._held = 0
        self._last = ""
        self._flush: asyncio.TimerHandle | None = None

    def event(self, loop: asyncio.AbstractEventLoop, client: str) -> None:
        now = loop.time()
        self._last = client
        if now >= self._quiet_until and self._flush is None:
            self._quiet_until = now + LOG_EVERY
            logger.log(self._level, self._text.format(count=1, last=client, window=""))
            return
        self._held += 1
        if self._flush is None:
            self._flush = loop.call_at(self._quiet_until, self._emit, loop)

    def _emit(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush = None
        self._quiet_until = loop.time() + LOG_EVERY
        self._log_held(f" in the last {LOG_EVERY:.0f} s")

    def _log_held(self, window: str) -> None:
        count, self._held = self._held, 0
        logger.log(self._level, self._text.format(count=count, last=self._last, window=window))

    def close(self) -> None:
        """Log what is held back now (shutdown): no timer outlives the listener."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
            self._log_held(" lately")


class ConnectionMetrics:
    """What a :class:`Gate` counts, by listener (a part of the sidecar's metrics; a worker
    group's admin port has its own)."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.connections_refused = Counter(
            "zeta_connections_refused",
            "Client connections closed at once because a cap was reached, by listener "
            "(traffic, admin) and cap (max_connections, max_per_client).",
            ["listener", "cap"],
            registry=r,
        )
        self.connections_timed_out = Counter(
            "zeta_connections_timed_out",
            "Client connections closed (with a 408) because the request head was not complete "
            "in time (phase head) or its body stalled (phase body), by listener and phase.",
            ["listener", "phase"],
            registry=r,
        )
        self.connections_evicted = Counter(
            "zeta_connections_evicted",
            "Idle keep-alive connections closed to make room for a new one at the cap, "
            "by listener.",
            ["listener"],
            registry=r,
        )
        self.open_connections = Gauge(
            "zeta_open_connections",
            "Client connections open, by listener.",
            ["listener"],
            registry=r,
        )


class Gate:
    """One listener's connection count and caps; refusals and timeouts counted and logged."""

    def __init__(self, name: str, limits: Limits, metrics: ConnectionMetrics) -> None:
        self.name = name
        self.limits = limits
        self.open = 0
        self._per_client: dict[str, int] = {}
        # Connections seen idle by their watchdog, oldest first; some may be busy again
        # (checked when one is needed): kept up to date without a hook per request.
        self._idle: dict[Evictable, None] = {}
        self._evicted = metrics.connections_evicted.labels(name)
        self._refused: dict[str, Counter] = {
            cap: metrics.connections_refused.labels(name, cap)
            for cap in ("max_connections", "max_per_client")
        }
        self._timed_out: dict[str, Counter] = {
            phase: metrics.connections_timed_out.labels(name, phase) for phase in ("head", "body")
        }
        metrics.open_connections.labels(name).set_function(lambda: self.open)
        flag = "--max-connections" if name == "traffic" else "the admin port's cap"
        self._logs = {
            "max_connections": ThrottledLog(
                logging.WARNING,
                f"{name} port: refused {{count}} connection(s){{window}}: "
                f"{limits.max_connections} open, the cap ({flag}); last from {{last}}",
            ),
            "max_per_client": ThrottledLog(
                logging.WARNING,
                f"{name} port: refused {{count}} connection(s){{window}} from a client "
                f"with {limits.max_per_client} open, the cap per client address "
                "(--max-connections-per-client); last from {last}",
            ),
            "head": ThrottledLog(
                logging.INFO,
                f"{name} port: closed {{count}} connection(s){{window}} whose request head "
                f"was not complete within {limits.head_timeout:g} s (--head-timeout); "
                "last from {last}",
            ),
            "evicted": ThrottledLog(
                logging.INFO,
                f"{name} port: closed {{count}} idle keep-alive connection(s){{window}} to "
                f"make room at the cap of {limits.max_connections}; last for {{last}}",
            ),
            "body": ThrottledLog(
                logging.INFO,
                f"{name} port: closed {{count}} connection(s){{window}} whose request body "
                f"stalled for {limits.body_timeout:g} s (--body-timeout); last from {{last}}",
            ),
        }
        self.answers = {
            phase: _timeout_answer(
                RequestTimeout(
                    f"The request {phase} was not received in time "
                    f"({seconds:g} s{' without progress' if phase == 'body' else ''})."
                )
            )
            for phase, seconds in (("head", limits.head_timeout), ("body", limits.body_timeout))
        }

    def enter(self, loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport) -> str:
        """The client address of a new connection, counted in; ``""`` when it is refused
        (and closed)."""
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self.admit(loop, client):
            transport.close()
            return ""
        return client

    def admit(self, loop: asyncio.AbstractEventLoop, client: str) -> bool:
        """Count a new connection in, or refuse it (counted and logged): False."""
        limits = self.limits
        per_client = limits.max_per_client
        if per_client and self._per_client.get(client, 0) >= per_client:
            self._refuse(loop, "max_per_client", client)
            return False
        if self.open >= limits.max_connections and not self._evict_idle(loop, client):
            self._refuse(loop, "max_connections", client)
            return False
        if per_client:
            self._per_client[client] = self._per_client.get(client, 0) + 1
        self.open += 1
        return True

    def idle(self, handler: Evictable) -> None:
        """Note a connection waiting between requests: the first to close at the cap."""
        self._idle[handler] = None

    def forget(self, handler: Evictable) -> None:
        self._idle.pop(handler, None)

    def _evict_idle(self, loop: asyncio.AbstractEventLoop, client: str) -> bool:
        idle = self._idle
        while idle:
            handler = next(iter(idle))
            del idle[handler]
            if handler.evict():
                self._evicted.inc()
                self._logs["evicted"].event(loop, client)
                return True
        return False

    def release(self, client: str) -> None:
        """Count an admitted connection out."""
        self.open -= 1
        if self.limits.max_per_client:
            count = self._per_client.get(client, 0) - 1
            if count > 0:
                self._per_client[client] = count
            else:
                self._per_client.pop(client, None)

    def timed_out(self, loop: asyncio.AbstractEventLoop, phase: str, client: str) -> None:
        self._timed_out[phase].inc()
        self._logs[phase].event(loop, client)

    def _refuse(self, loop: asyncio.AbstractEventLoop, cap: str, client: str) -> None:
        self._refused[cap].inc()
        self._logs[cap].event(loop, client)

    def close(self) -> None:
        """Log the refusals held back and stop the log timers (the listener is gone)."""
        for log in self._logs.values():
            log.close()


def _timeout_answer(error: RequestTimeout) -> bytes:
    body = error.body()
    head = (
        f"HTTP/1.1 {error.status} Request Timeout\r\n"
        f"Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
