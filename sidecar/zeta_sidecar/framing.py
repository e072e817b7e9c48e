"""A pod's HTTP/1.1 response as it arrives on one connection: parsed by llhttp, checked,
buffered for its reader.

:class:`ResponseProtocol` is the :class:`asyncio.Protocol` of a pod connection. Bytes go to
``httptools.HttpResponseParser`` (llhttp, the C parser of Node.js and uvicorn), which
rejects every framing ambiguity (duplicate or signed ``Content-Length``,
``Content-Length`` with chunked, bad chunk sizes, a missing CRLF after chunk data,
obs-fold, CR/LF/NUL in values) and finds message boundaries exactly; they come out as a
status, headers and body pieces, and whoever waits is woken. This module adds what
llhttp leaves to its user:

- interim ``1xx`` responses are skipped; ``101``, statuses outside 100-599, versions
  other than HTTP/1.x and transfer codings other than plain chunked are protocol errors;
- limits: a response head, and any bytes that carry no body (chunk-size lines,
  extensions, trailers), are bounded by :data:`_MAX_OVERHEAD`; body bytes waiting for
  the reader by :data:`HIGH_WATER` (reading pauses above it);
- bytes nobody asked for (a second answer, anything on an idle connection) make the
  connection unusable: its framing can no longer be trusted.

Waiting, deadlines and reuse are the reader's: :class:`~zeta_sidecar.upstream.Exchange`.
"""

import asyncio
import collections
from typing import Final, cast

import httptools

from zeta_sidecar.pod_errors import Disconnected, ProtocolError

__all__ = [
    "BODY",
    "DONE",
    "HEAD",
    "HIGH_WATER",
    "Disconnected",
    "ProtocolError",
    "ResponseProtocol",
]

HIGH_WATER: Final = 1 << 20
"""Bytes of body buffered for the reader before the socket stops being read."""

_MAX_OVERHEAD: Final = 64 * 1024
"""Most bytes accepted without any body progress: the head, or chunk-size lines,
extensions and trailers between two pieces of body (and all framing within one read).
A real head is under 1 KiB and a chunk-size line under 20 bytes; without a bound a pod
could grow memory at will."""

HEAD, BODY, DONE = range(3)
"""Where the response in progress stands: waiting for its head, in its body, complete
(or none asked for)."""


class _Unexpected(Exception):
    """Raised from a parser callback to stop llhttp at bytes nobody asked for."""


class ResponseProtocol(asyncio.Protocol):
    """One pod connection's bytes, parsed into the response in progress."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str) -> None:
        self.address = address
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._state = DONE
        self._until_eof = False
        self._received = 0
        """Bytes received for the current response (tells a stale connection apart)."""
        self._overhead = 0
        """Bytes received since the last body progress (or since the request)."""
        self._body_bytes = 0
        """Body bytes in the read being parsed."""
        self._pieces: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None
        self._reusable = True
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        """Response headers as received, in order (names and values are latin-1)."""
        self.content_type = ""
        self.content_length: int | None = None
        """The body's declared length, or ``None`` when chunked or until close."""

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they are one.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._reusable = False
        if self._state == BODY and self._until_eof:
            self._state = DONE  # a body framed by the connection's end is complete now
        elif self._state != DONE and self._lost is None:
            self._lost = Disconnected(
                f"connection to {self.address} lost: {exc or 'closed by the pod'}",
                before_response=self._state == HEAD and not self._received,
            )
        self._wake()

    def data_received(self, data: bytes) -> None:
        if self._state == DONE:
            # Bytes nobody asked for (after a complete answer, or on an idle connection):
            # this connection's framing can no longer be trusted.
            self._reusable = False
            return
        self._received += len(data)
        self._body_bytes = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, _Unexpected):
                self._fail(ProtocolError(f"bad response from {self.address}: {cause or exc}"))
                return
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError(f"{self.address} switched protocols"))
            return
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"bad response from {self.address}: {exc}"))
            return
        if self._lost is None:
            # Framing bytes since the last body progress (within one read, all of its
            # framing: a real stream's chunk lines are a few bytes per event).
            body = self._body_bytes
            self._overhead = len(data) - body if body else self._overhead + len(data)
            if self._overhead > _MAX_OVERHEAD:
                what = "response head" if self._state == HEAD else "chunk framing or trailers"
                self._fail(ProtocolError(f"{what} from {self.address} over {_MAX_OVERHEAD} B"))
                return
        self._wake()

    def pause_writing(self) -> None:  # requests are small; nothing to pause
        pass

    # --- llhttp callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._state == DONE:
            self._reusable = False
            raise _Unexpected  # a second answer to one request: stop parsing here
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == HEAD:  # after the head, these are trailers: dropped
            self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if not 100 <= status <= 599 or status == 101:
            raise ProtocolError(f"status {status}")
        if parser.get_http_version() not in ("1.1", "1.0"):
            raise ProtocolError(f"HTTP/{parser.get_http_version()}")
        if status < 200:
            self.headers = []  # interim (100 Continue, 103 Early Hints): the answer follows
            return
        self.status = status
        if not parser.should_keep_alive():
            self._reusable = False
        chunked = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == "content-type":
                self.content_type = value.partition(";")[0].strip().lower()
            elif lower == "content-length":
                self.content_length = int(value)  # llhttp accepted it: digits only
            elif lower == "transfer-encoding":
                # Only plain chunked: a coding under it (gzip, chunked) would reach the
                # client undeclared, as the header is hop-by-hop and not forwarded.
                if value.strip().lower() != "chunked":
                    raise ProtocolError(f"transfer coding {value[:40]!r}")
                chunked = True
        # No length and not chunked: the body runs to the connection's end (llhttp
        # knows 204 and 304 have none, and completes them at once).
        self._until_eof = self.content_length is None and not chunked and status not in (204, 304)
        if self._until_eof:
            self._reusable = False
        self._state = BODY

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._pieces.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._state == BODY:
            self._state = DONE

    # --- failures and wake-ups ----------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        self._lost = exc
        self._reusable = False
        if self._transport is not None:
            self._transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
