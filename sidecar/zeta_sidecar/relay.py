"""A pod's answer on its way to the client: whole if plain, piece by piece if long, event
by event if a stream; never buffered beyond a bound.

One :class:`Relay` per answer carries everything its passage needs (the client's
request, the gateway, the model asked for and the one chosen, the pod and its
:class:`~zeta_sidecar.upstream.Exchange`, the clock at the start, the table's timeouts,
the tenant's token usage) and reports how it went, once: to outlier ejection, the
metrics and the tenant's bucket.

Before the client has a byte, a pod failing or falling silent becomes a clean 502 or
504. After it, a stream ends with an SSE error event (only whole events are relayed, so
the error starts clean) and a long plain answer is cut short by closing the connection:
nothing else is honest once a status and a length have gone out.
"""

import contextlib
import logging

from zeta_api import Timeouts
from zeta_sidecar.errors import ApiError, UpstreamFailed, UpstreamTimeout, sse_error_event
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.headers import downstream_headers
from zeta_sidecar.http_server import Answer, Request
from zeta_sidecar.limits import Usage
from zeta_sidecar.pods import ModelPods, Pod
from zeta_sidecar.upstream import Exchange

__all__ = ["Relay", "whole_events"]

logger = logging.getLogger(__name__)

_MAX_HELD_EVENT = 1 << 20
"""An SSE event is relayed only once it is complete, so a stream cut mid-event never
hands the client half an event (its SDK would fail to parse it, and the error event
after it would be glued to it); an "event" longer than this is passed on as it comes."""
_WHOLE_ANSWER_BYTES = 1 << 20
"""Plain answers up to this size are read whole before the client gets a byte (a cut one
is still a clean 502); longer ones are relayed piece by piece."""


class Relay:
    """One pod's answer to one client request, and whom to tell how it went."""

    # A plain class, not a dataclass: mypyc leaves a dataclass's generated __init__
    # interpreted, and one Relay is built per request.
    def __init__(
        self,
        request: Request,
        gw: Gateway,
        *,
        name: str,
        model: ModelPods,
        pod: Pod,
        exchange: Exchange,
        start: float,
        timeouts: Timeouts,
        usage: Usage | None,
        explained: tuple[str, str] | None,
    ) -> None:
        self.request = request
        self.gw = gw
        self.name = name
        """The model the client asked for (its metric label)."""
        self.model = model
        """The model chosen for it."""
        self.pod = pod
        self.exchange = exchange
        self.start = start
        self.timeouts = timeouts
        self.usage = usage
        self.explained = explained
        """An answer header saying why the request went where it went, if asked for."""

    async def answer(self) -> Answer | None:
        """Pass the answer through: whole if plain (sent at once when it came with its
        head), chunk by chunk if an event stream; ``None`` once it went out."""
        exchange = self.exchange
        status = exchange.status
        stream = exchange.content_type == "text/event-stream"
        if exchange.complete and not stream:  # the common case: it came with its head
            data = exchange.take()
            try:
                self.request.respond(status, self._headers(), data)
            finally:
                # After the answer left: the client does not wait for the bookkeeping.
                self._health(status)
                self._whole_done(status, data)
            return None
        self._health(status)
        if stream:
            return await self._stream()
        return await self._plain()

    async def _plain(self) -> Answer | None:
        """A plain answer still coming: read up to a bound, so a pod's failure mid-answer
        can still become a clean 502 while it is short; relayed piece by piece past it."""
        exchange = self.exchange
        status = exchange.status
        try:
            data = await exchange.read(self.timeouts.first_byte, limit=_WHOLE_ANSWER_BYTES)
        except TimeoutError:
            return self._refused(UpstreamTimeout("Pod answer timed out."))
        except ConnectionError as exc:
            return self._refused(UpstreamFailed(f"Pod answer cut: {exc}"))
        if not exchange.complete:
            await self._pieces(data)
            return None
        self._whole_done(status, data)
        return Answer(status, self._headers(), data)

    def _whole_done(self, status: int, data: bytes) -> None:
        """A whole plain answer: its usage read, and counted (its first byte is its last)."""
        if self.usage is not None:
            self.usage.seen(data)
        self._done(status, None)

    def _health(self, status: int) -> None:
        """Tell outlier detection how the pod answered."""
        if status >= 500:
            self.gw.failed(self.pod)
        else:
            self.gw.succeeded(self.pod)

    async def _pieces(self, first: bytes) -> None:
        """A plain answer too long to hold: relayed as it comes, never whole in memory.

        Its status and headers are gone once the first piece is: a failure after that can
        only cut the answer short (the client sees fewer bytes than ``Content-Length``
        promised, or no final chunk), and the pod is counted as failed.
        """
        request, exchange, usage = self.request, self.exchange, self.usage
        await request.start(exchange.status, self._headers(), length=exchange.content_length)
        chunk = first
        try:
            while chunk:
                await request.write(chunk)
                if usage is not None:
                    usage.seen(chunk)
                chunk = await exchange.readany(self.timeouts.idle)
            await request.write_eof()
        except (TimeoutError, ConnectionError) as exc:
            if request.client_left:
                raise ConnectionResetError("the client left") from exc
            self.gw.failed(self.pod)
            logger.warning("answer from %s cut after its first byte: %r", self.pod.name, exc)
            if request.transport is not None:
                request.transport.abort()  # the only honest end of a half-sent answer
            self._count(502)
            return
        self._done(exchange.status, None)

    async def _stream(self) -> Answer | None:
        request, exchange, usage, gw = self.request, self.exchange, self.usage, self.gw
        # The first chunk is awaited before anything goes to the client: headers and first
        # event leave together, and a pod failing before it still gets a clean 502/504.
        try:
            chunk = await exchange.readany(self.timeouts.first_byte)
        except TimeoutError:
            return self._refused(UpstreamTimeout("Pod stream never started."))
        except ConnectionError as exc:
            return self._refused(UpstreamFailed(f"Pod stream failed: {exc}"))
        ttfb = gw.clock() - self.start
        await request.start(exchange.status, self._headers())
        held = b""  # the start of an event not yet complete: it waits for its end
        try:
            while chunk:
                if usage is not None:
                    usage.seen(chunk)
                chunk, held = whole_events(held, chunk)
                if chunk:
                    await request.write(chunk)
                chunk = await exchange.readany(self.timeouts.idle)
            if held:
                await request.write(held)  # a stream that ends without its last blank line
            await request.write_eof()
        except TimeoutError:
            gw.failed(self.pod)
            await _end_with_error(request, "The pod went silent mid-stream.", "upstream_timeout")
        except ConnectionError as exc:
            if request.client_left:
                raise  # the client left; the handler ends, the upstream connection is closed
            gw.failed(self.pod)
            logger.warning("stream from %s cut after its first byte: %s", self.pod.name, exc)
            await _end_with_error(request, f"The pod's stream was cut: {exc}", "upstream_failed")
        self._done(exchange.status, ttfb)
        return None

    def _headers(self) -> list[tuple[str, str]]:
        headers = downstream_headers(self.exchange.headers)
        if self.explained is not None:
            headers.append(self.explained)
        return headers

    def _count(self, status: int) -> None:
        self.gw.metrics.request(self.name, self.model.name, self.pod.name, status)

    def _refused(self, error: ApiError) -> Answer:
        """The pod failed before the client had a byte: a clean error answer."""
        self.gw.failed(self.pod)
        self._count(error.status)
        return Answer.of(error)

    def _done(self, status: int, ttfb: float | None) -> None:
        """The answer is over (a stream's perhaps with an error event): count it."""
        gw = self.gw
        self._count(status)
        gw.metrics.observe(self.name, gw.clock() - self.start, ttfb)
        if self.usage is not None:
            self.usage.settle(gw.clock())


def whole_events(held: bytes, chunk: bytes) -> tuple[bytes, bytes]:
    """(the complete SSE events of ``held + chunk``, the start of one still incomplete)."""
    data = held + chunk if held else chunk
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
    if end == len(data) or len(data) - end > _MAX_HELD_EVENT:
        return data, b""
    return data[:end], data[end:]


async def _end_with_error(request: Request, message: str, code: str) -> None:
    # Only whole events were relayed (see Relay._stream), so this one starts clean.
    # The client may be gone too: then there is nobody left to tell.
    with contextlib.suppress(ConnectionError):
        await request.write(sse_error_event(message, code=code))
        await request.write_eof()
