"""The admin port's server: aiohttp's, whose client connections pass a gate and a watchdog.

(The traffic port has a server of its own with the same gate and timeouts,
:mod:`~zeta_sidecar.http_server`.)

:class:`GuardedServer` makes :class:`GuardedHandler`\\ s: each connection is counted in
by its listener's :class:`~zeta_sidecar.connections.Gate` (or closed at once over a
cap), and watched: the request head must be complete within ``head_timeout`` seconds
of its first byte (of the accept, for a connection's first request), and a request body
must not stall for ``body_timeout`` seconds; either answers 408 in OpenAI's error format
and closes. Connections idle between requests close after aiohttp's keep-alive timeout.

Cost on the hot path: one timer per connection, re-armed by itself (never a timer per
request), and in ``data_received`` two attribute reads and a comparison; the first chunk
of each request on a reused connection also reads the clock once.
"""

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from zeta_sidecar.connections import Gate

__all__ = ["GuardedHandler", "GuardedServer"]


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
        loop = self._loop
        client = self._gate.enter(loop, transport)
        if not client:
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
