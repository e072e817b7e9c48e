"""A lean HTTP/1.1 client for the pods: keep-alive connections per address, one write
per request, responses parsed by llhttp as they arrive.

Why not aiohttp's client: measured on one core, its per-request machinery (request and
response objects, tracing hooks, cookie jar, timers) costs about four times what the
aiohttp *server* costs for the same request, and made the sidecar a third as fast as a
Rust router. The pods speak plain HTTP/1.1 to one known address each: a small
:class:`asyncio.Protocol` around ``httptools.HttpResponseParser`` (llhttp, the C parser
of Node.js and uvicorn) covers that.

Why llhttp rather than a parser of our own: the framing of a response decides where the
*next* response on the connection starts. A hand-written parser here once took an
interim ``100 Continue`` for the answer and returned the connection to the pool with
the real answer unread, so the next client got it. Parsing, and what llhttp leaves to
its user, is :mod:`~zeta_sidecar.framing`'s; this module adds the reader's side:

- time limits are deadlines: the head must be complete within the first-byte timeout,
  and each :meth:`Exchange.readany` gets body bytes within its ``within``, however
  slowly other bytes trickle in;
- a connection returns to its address's idle stack only when its response ended
  exactly at its framing boundary, the pod allowed keep-alive and nothing else came.
  Any other connection is closed, which is also how a cancelled request stops the
  pod's work.

Errors, all before or during a response, are :mod:`~zeta_sidecar.pod_errors`'s tree of
built-in exceptions (``ConnectFailed``, ``Disconnected``, ``ProtocolError``, and
``TimeoutError`` for a passed deadline).

A reused idle connection may have been closed by the pod just as a request was written
(keep-alive timeouts race); such a failure before any response byte is retried once on
a fresh connection, transparently, as Envoy does for "reset before request".
"""

import asyncio
import time
from collections.abc import Sequence
from typing import Final

from zeta_sidecar.framing import (
    DONE,
    HEAD,
    HIGH_WATER,
    ResponseProtocol,
)
from zeta_sidecar.pod_errors import ConnectFailed, Disconnected, ProtocolError

__all__ = ["ConnectFailed", "Connections", "Disconnected", "Exchange", "ProtocolError"]

_IDLE_SECONDS: Final = 4.0
"""Idle connections older than this are closed, not reused: below uvicorn's 5 s
keep-alive default (vLLM's server), so the pod rarely closes one as it is reused."""

_MAX_IDLE_PER_ADDRESS: Final = 256

_TIMER_SLACK: Final = 0.001
"""A timer may fire up to a millisecond early (uvloop's clock counts milliseconds)."""


class Exchange(ResponseProtocol):
    """One connection, and the response in progress on it, as its reader sees them."""

    def __init__(self, connections: "Connections", address: str) -> None:
        super().__init__(connections.loop, address)
        self._connections = connections
        self.idle_since = 0.0
        # One timer per connection, left armed between waits and moved on only when it
        # fires: arming and cancelling one per wait (each request's head, each streamed
        # chunk) cost on the path of every answer.
        self._deadline = 0.0
        """When the wait in progress times out."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # --- the consumer's side --------------------------------------------------------------

    async def _wait(self, deadline: float) -> None:
        waiter = self._waiter = self._loop.create_future()
        self._deadline = deadline
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)
        try:
            await waiter
        finally:
            self._waiter = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._expire)
        self._timer_at = when

    def _expire(self) -> None:
        """The timer fired: the wait in progress times out if its deadline has passed;
        a later deadline (a newer wait) moves the timer on; no wait lets it rest."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() >= self._deadline - _TIMER_SLACK:
            waiter.set_exception(TimeoutError())
        else:
            self._arm(self._deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._timer is not None:  # it holds this exchange: let both go
            self._timer.cancel()
            self._timer = None

    def _send(self, data: bytes) -> None:
        assert self._transport is not None
        self._state = HEAD
        self._received = self._overhead = 0
        self.status, self.headers, self.content_type, self.content_length = 0, [], "", None
        self._transport.write(data)

    async def _head(self, within: float) -> None:
        """Wait until the response head is in, at most ``within`` seconds in all."""
        deadline = self._loop.time() + within
        while self._state == HEAD:
            if self._lost is not None:
                raise self._lost
            await self._wait(deadline)

    @property
    def complete(self) -> bool:
        """The whole body is here (in memory, not yet taken)."""
        return self._state == DONE and self._lost is None

    async def readany(self, within: float) -> bytes:
        """The next body bytes, within ``within`` seconds however others trickle; ``b""``
        at the end."""
        if not self._pieces:
            deadline = self._loop.time() + within
            while not self._pieces:
                if self._state == DONE:
                    return b""
                if self._lost is not None:
                    raise self._lost
                await self._wait(deadline)
        data = self._pieces.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered <= HIGH_WATER // 2 and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    def take(self) -> bytes:
        """All body bytes buffered now (the whole body once :attr:`complete`)."""
        pieces = self._pieces
        data = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self._buffered = 0
        if self._paused and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def read(self, within: float, *, limit: int | None = None) -> bytes:
        """The whole body, with at most ``within`` seconds between two pieces.

        With ``limit``, stops once more than ``limit`` bytes are in and returns what it
        has (check :attr:`complete`): the caller relays the rest piece by piece.
        """
        if self.complete:
            return self.take()  # a short answer comes with its head: no waiting
        parts = []
        size = 0
        while chunk := await self.readany(within):
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size > limit:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with this exchange: back to the pool if complete and reusable, else closed."""
        if self._state == DONE and self._reusable and self._lost is None and not self._pieces:
            self._connections.put(self)
        else:
            self.close()

    def close(self) -> None:
        """Close the connection at once (the pod sees its client leave)."""
        self._reusable = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    @property
    def usable(self) -> bool:
        """Idle, open and fresh enough to carry another request."""
        return (
            self._reusable
            and self._transport is not None
            and not self._transport.is_closing()
            and time.monotonic() - self.idle_since < _IDLE_SECONDS
        )


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Connections:
    """Idle keep-alive connections per pod address (the pods' connection pool)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._idle: dict[str, list[Exchange]] = {}
        self._closed = False

    def put(self, exchange: Exchange) -> None:
        """Keep an idle connection for the next request to its address."""
        stack = self._idle.setdefault(exchange.address, [])
        if self._closed or len(stack) >= _MAX_IDLE_PER_ADDRESS:
            exchange.close()
            return
        exchange.idle_since = time.monotonic()
        stack.append(exchange)

    def sweep(self) -> int:
        """Close idle connections too old to reuse; how many were closed. Without it they
        would stay open until the pod's own keep-alive ends them (75 s for some)."""
        closed = 0
        for stack in self._idle.values():
            stale = [e for e in stack if not e.usable]
            if stale:
                stack[:] = [e for e in stack if e.usable]
                for exchange in stale:
                    exchange.close()
                closed += len(stale)
        return closed

    def _take(self, address: str) -> Exchange | None:
        stack = self._idle.get(address)
        while stack:
            exchange = stack.pop()
            if exchange.usable:
                return exchange
            exchange.close()
        return None

    async def _open(self, address: str, connect_timeout: float) -> Exchange:
        host, port = _split(address)
        try:
            async with asyncio.timeout(connect_timeout):
                _, protocol = await self.loop.create_connection(
                    lambda: Exchange(self, address), host, port
                )
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {address}: {exc}") from exc
        return protocol

    async def request(
        self,
        address: str,
        data: bytes | Sequence[bytes],
        *,
        connect_timeout: float,
        first_byte_timeout: float,
    ) -> Exchange:
        """Send a request (head and body, already encoded) and wait for the response head.

        The caller must ``release()`` or ``close()`` the exchange it gets.
        """
        payload = data if isinstance(data, bytes) else b"".join(data)
        exchange = self._take(address)
        reused = exchange is not None
        for _ in range(2):
            if exchange is None:
                exchange = await self._open(address, connect_timeout)
            try:
                exchange._send(payload)
                await exchange._head(first_byte_timeout)
            except Disconnected as exc:
                exchange.close()
                if reused and exc.before_response:
                    exchange, reused = None, False  # a stale keep-alive connection
                    continue
                raise
            except BaseException:
                exchange.close()
                raise
            return exchange
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every idle connection; later releases close theirs."""
        self._closed = True
        for stack in self._idle.values():
            for exchange in stack:
                exchange.close()
        self._idle.clear()
