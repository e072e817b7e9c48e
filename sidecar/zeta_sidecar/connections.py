"""Client connections on the sidecar's two ports: how many may be open, and how long a
client may take to send its request, so that slow or idle clients cannot hold every file
descriptor of the process and lock out other clients and the kubelet's probes.

- :func:`raise_fd_limit`: the soft ``RLIMIT_NOFILE`` up to the hard one, at start-up.
- :class:`Gate`: one listener's open connections, counted overall and per client address;
  a connection over a cap is closed at once, counted and logged (rate-limited). At the
  overall cap, a keep-alive connection idle for a head timeout or more is closed to make
  room first: idle connections cannot lock new clients out.
- :class:`GuardedServer`: aiohttp's low-level ``Server`` whose connections go through a
  gate and a watchdog: the request head must be complete within ``head_timeout`` seconds
  of its first byte (of the accept, for a connection's first request), and a request body
  must not stall for ``body_timeout`` seconds; either answers 408 in OpenAI's error format
  and closes. Connections idle between requests close after aiohttp's keep-alive timeout.

Cost on the hot path: one timer per connection, re-armed by itself (never a timer per
request), and in ``data_received`` two attribute reads and a comparison; the first chunk
of each request on a reused connection also reads the clock once.
"""

import asyncio
import logging
import math
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from prometheus_client import Counter

from zeta_sidecar.errors import RequestTimeout
from zeta_sidecar.metrics import Metrics

__all__ = [
    "ADMIN_MAX_CONNECTIONS",
    "RESERVED_FDS",
    "Gate",
    "GuardedServer",
    "Limits",
    "ThrottledLog",
    "default_max_connections",
    "raise_fd_limit",
]

logger = logging.getLogger(__name__)

RESERVED_FDS = 256
"""File descriptors kept out of the traffic cap: listeners, the table file, logs, health
probes to pods, the admin port's connections, and connections accepted in one burst
before their count is checked (aiohttp's listen backlog is 128)."""

ADMIN_MAX_CONNECTIONS = 32
"""Cap of the admin port: a few probes and scrapes at a time; part of the reserve."""

LOG_EVERY = 10.0
"""Seconds between two log lines about the same kind of refusal."""


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def raise_fd_limit() -> tuple[int, int, int]:
    """Raise the soft limit on open files to the hard limit; (before, after, hard).

    The soft default (often 1,024) is a relic of ``select()``; asyncio never uses it, and
    a gateway holds two descriptors per request in flight (client and pod). An unlimited
    hard limit counts as the kernel's ``nr_open``. Never fails: the limit stays where it
    was if the kernel refuses.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft, hard
    return soft, target, hard


def default_max_connections(fd_limit: int | None = None) -> int:
    """The traffic cap for a soft fd limit (the current one by default).

    Half of what is left after :data:`RESERVED_FDS`: every client connection can have its
    connection to a pod open at the same time.
    """
    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if fd_limit == resource.RLIM_INFINITY:
            fd_limit = _nr_open()
    return max(16, (fd_limit - RESERVED_FDS) // 2)


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


class Gate:
    """One listener's connection count and caps; refusals and timeouts counted and logged."""

    def __init__(self, name: str, limits: Limits, metrics: Metrics) -> None:
        self.name = name
        self.limits = limits
        self.open = 0
        self._per_client: dict[str, int] = {}
        # Connections seen idle by their watchdog, oldest first; some may be busy again
        # (checked when one is needed): kept up to date without a hook per request.
        self._idle: dict[GuardedHandler, None] = {}
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

    def idle(self, handler: "GuardedHandler") -> None:
        """Note a connection waiting between requests: the first to close at the cap."""
        self._idle[handler] = None

    def forget(self, handler: "GuardedHandler") -> None:
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
    response = error.response()
    body = response.body
    assert isinstance(body, bytes)
    head = (
        f"HTTP/1.1 {error.status} Request Timeout\r\n"
        f"Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol behind a :class:`Gate`, with a per-connection watchdog.

    The watchdog is one timer that re-arms itself at the next moment something could be
    due: while the connection waits for a request, the head deadline (or one head timeout
    later, when no head has started); while a handler reads a body, one body timeout later,
    closing the connection when no body byte came in a whole period (a stall is caught
    between ``body_timeout`` and twice that). ``data_received`` only notes when the first
    byte of a request head arrives.
    """

    __slots__ = (
        "_admitted",
        "_body",
        "_body_bytes",
        "_client",
        "_counted",
        "_gate",
        "_head_count",
        "_head_since",
        "_watchdog",
    )

    def __init__(self, manager: "GuardedServer", **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gate = manager.gate
        self._client = ""
        self._admitted = False
        self._counted = False  # in the gate's count (until closed or evicted)
        self._watchdog: asyncio.TimerHandle | None = None
        self._head_since = 0.0
        # The head clock runs while _head_count equals aiohttp's count of parsed requests:
        # parsing the head moves the count on, which stops it without a hook per request.
        self._head_count = 0
        self._body: object = None
        self._body_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        loop = self._loop
        if not self._gate.admit(loop, client):
            transport.close()
            return
        self._admitted = self._counted = True
        self._client = client
        super().connection_made(transport)
        now = loop.time()
        self._head_since = now
        self._watchdog = loop.call_at(now + self._gate.limits.head_timeout, self._watch)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._release()
        self._gate.forget(self)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._body = None
        super().connection_lost(exc)

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._gate.release(self._client)

    def evict(self) -> bool:
        """Close the connection if it waits between requests (no head begun); whether so."""
        waiter = self._waiter
        if (
            self.transport is None
            or waiter is None
            or waiter.done()
            or self._head_count == self._request_count
        ):
            return False
        self._release()  # its descriptor goes now: the newcomer may have its place
        self.force_close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._head_count != self._request_count:
            waiter = self._waiter
            if waiter is not None and not waiter.done():  # waiting for a request: a head starts
                self._head_count = self._request_count
                self._head_since = self._loop.time()
        RequestHandler.data_received(self, data)

    def _watch(self) -> None:
        self._watchdog = None
        if self.transport is None:
            return
        loop = self._loop
        now = loop.time()
        limits = self._gate.limits
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._body = None
            if self._head_count == self._request_count:
                deadline = self._head_since + limits.head_timeout
                if now >= deadline:
                    self._time_out("head", None)
                    return
            else:  # idle between requests: aiohttp's keep-alive timeout closes it
                self._gate.idle(self)
                deadline = now + limits.head_timeout
        else:
            request = self._current_request
            payload = request.content if request is not None else None
            if payload is not None and not payload.is_eof():
                received = payload.total_bytes
                if payload is self._body and received == self._body_bytes:
                    self._time_out("body", request)
                    return
                self._body, self._body_bytes = payload, received
                deadline = now + limits.body_timeout
            else:  # a handler at work, or nothing yet: look again later
                self._body = None
                deadline = now + limits.head_timeout
        self._watchdog = loop.call_at(deadline, self._watch)

    def _time_out(self, phase: str, request: BaseRequest | None) -> None:
        transport = self.transport
        assert transport is not None
        self._gate.timed_out(self._loop, phase, self._client)
        # A 408 only where no answer has begun (a 100 Continue does not count).
        if request is None or request.writer.output_size == 0:
            transport.write(self._gate.answers[phase])
            if transport.get_write_buffer_size():
                # A client that reads nothing must not hold the socket until it drains.
                transport.abort()
        # Closes the transport; connection_lost cancels a handler still reading the body.
        self.force_close()


class GuardedServer(web.Server):
    """aiohttp's low-level server whose connections are :class:`GuardedHandler`\\ s."""

    def __init__(
        self,
        handler: Callable[..., Any],
        gate: Gate,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, loop=loop, **kwargs)
        self.gate = gate
        self._handler_loop = loop or asyncio.get_running_loop()
        self._handler_kwargs = {
            k: v for k, v in kwargs.items() if k not in ("request_factory", "handler_cancellation")
        }

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=self._handler_loop, **self._handler_kwargs)
