"""The traffic port's HTTP/1.1 server: llhttp's request parser on a plain asyncio protocol.

Why not aiohttp's server: its per-request machinery (request, response and payload
objects, the stream writer, its task and timers) cost about 40 us of the ~100 us the
sidecar spent on a request. The traffic port serves four routes to OpenAI clients:
:class:`Connection` parses requests with ``httptools.HttpRequestParser`` (llhttp, the
parser of Node.js and uvicorn, which refuses every framing ambiguity a smuggler uses:
``Content-Length`` with chunked, duplicate or signed lengths, bad chunk sizes, obs-fold,
bare LF, CR/LF/NUL in values) and hands each to the handler as a :class:`Request`. A
whole answer (:class:`Answer`, or :meth:`Request.respond`) leaves in one
``transport.write``; a streamed one goes out by :meth:`Request.start`,
:meth:`Request.write` and :meth:`Request.write_eof`, chunked, waiting while the client's
socket is full (never buffered without bound).

What each connection keeps, as aiohttp's server did for the test suite:

- keep-alive and pipelining: requests are answered one at a time, in order; reading
  pauses while a few complete requests wait. HTTP/1.0 and ``Connection: close`` close
  after their answer;
- limits: the request line and each header at most :data:`MAX_FIELD` bytes, the head
  :data:`MAX_HEAD`, the body ``max_body_bytes`` (a 413 from :meth:`Request.read`);
  malformed requests get an OpenAI-style 400 and the connection closes;
- a gate and a watchdog: the listener's :class:`~zeta_sidecar.connections.Gate` counts
  it in (or it closes at once); one timer per connection, re-armed by itself, closes it
  with a 408 when a head is not complete ``head_timeout`` seconds after its first byte
  (after the accept, for the first) or a body stalls ``body_timeout`` seconds, and
  silently when idle ``idle_timeout`` seconds between requests;
- a client that leaves cancels its handler (so the pod's connection closes and the pod
  stops generating);
- graceful shutdown (:class:`Server`): idle connections close, in-flight requests get
  the grace period, then their handlers are cancelled.
"""

import asyncio
import collections
import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote

import httptools
from multidict import CIMultiDict

from zeta_sidecar.connections import Gate
from zeta_sidecar.errors import ApiError, BadRequest, BodyTooLarge

__all__ = ["MAX_FIELD", "MAX_HEAD", "Answer", "Connection", "Handler", "Request", "Server"]

logger = logging.getLogger(__name__)

MAX_FIELD: Final = 8190
"""Bytes at most in the request line and in each header name or value, as aiohttp's."""
MAX_HEAD: Final = 64 * 1024
"""Bytes at most of a request head (plus the read that completes it): llhttp would
buffer a header value of any length before handing it over."""
_MAX_WAITING: Final = 4
"""Complete requests waiting behind the one being answered before reading pauses."""
_LINGER: Final = 2.0
"""Seconds a connection closed before its request body was read keeps reading (and
dropping) it: closing a socket with unread bytes resets it, and the reset can destroy
the answer before the client has read it."""

_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}
_NO_BODY: Final = frozenset({204, 304})
_CHUNKED_EOF: Final = b"0\r\n\r\n"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_KEPT_ESCAPES: Final = re.compile("(%2[fF]|%25)")


class Answer:
    """A whole answer: status, headers (without framing ones) and body, written at once."""

    __slots__ = ("body", "close", "headers", "status")

    def __init__(
        self, status: int, headers: list[tuple[str, str]], body: bytes, *, close: bool = False
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.close = close
        """Close the connection after this answer."""

    @classmethod
    def of(cls, error: ApiError, *, close: bool = False) -> "Answer":
        """The OpenAI-style answer of ``error``."""
        status, headers, body = error.parts()
        return cls(status, headers, body, close=close)


Handler = Callable[["Request"], Awaitable[Answer | None]]
"""Answers a request: an :class:`Answer` to write, or ``None`` once it streamed its own
(:meth:`Request.start` ... :meth:`Request.write_eof`)."""


class Request:
    """One request as the handler sees it, and its answer's way out."""

    __slots__ = (
        "_chunked",
        "_complete",
        "_conn",
        "_error",
        "_finished",
        "_head",
        "_limit",
        "_pieces",
        "_size",
        "_waiter",
        "content_length",
        "headers",
        "http11",
        "keep_alive",
        "method",
        "path",
        "raw_path",
        "received",
        "started",
        "target",
    )

    def __init__(
        self,
        conn: "Connection",
        method: str,
        target: str,
        headers: CIMultiDict[str],
        *,
        http11: bool,
        keep_alive: bool,
        limit: int,
    ) -> None:
        self._conn = conn
        self.method = method
        self.headers = headers
        self.http11 = http11
        self.keep_alive = keep_alive
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None else None
        self.target, self.raw_path = _origin_form(target)
        """What goes to the pod (path and query, origin form) and the path as sent."""
        self.path = _decoded(self.raw_path) if "%" in self.raw_path else self.raw_path
        """The path percent-decoded, except ``%2F`` and ``%25`` (routes match on it)."""
        self._limit = limit
        self._pieces: list[bytes] = []
        self._size = 0
        self.received = 0
        """Body bytes received so far (kept or not): the body watchdog's progress."""
        self._complete = False
        self._error: ApiError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.started = False
        """An answer's head has gone out (an interim 100 does not count)."""
        self._chunked = False
        self._finished = False
        self._head = b""  # a streamed answer's head, sent with its first piece

    @property
    def transport(self) -> asyncio.Transport | None:
        """The client's transport, ``None`` once the client has left."""
        return self._conn.transport

    @property
    def client_left(self) -> bool:
        """The client's connection is gone or closing: nothing more reaches it."""
        transport = self._conn.transport
        return transport is None or transport.is_closing()

    def _writable(self) -> asyncio.Transport:
        """The client's transport; :class:`ConnectionResetError` if the client left."""
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client left")
        return transport

    # --- the body ---------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self.received += len(data)
        if self._error is not None:
            return
        size = self._size + len(data)
        if size > self._limit:
            self._pieces = []
            self._fail(BodyTooLarge(f"Request body is over the limit of {self._limit} bytes."))
            return
        self._size = size
        self._pieces.append(data)

    def _done(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: ApiError) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The whole body; :class:`BodyTooLarge` over the limit, :class:`BadRequest` if
        its framing is malformed."""
        while not self._complete and self._error is None:
            self._waiter = self._conn.loop.create_future()
            await self._waiter
            self._waiter = None
        if self._error is not None:
            raise self._error
        pieces = self._pieces
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def send_continue(self) -> None:
        """An interim ``100 Continue``: the client may send the body it holds back."""
        transport = self._conn.transport
        if transport is not None:
            transport.write(_CONTINUE)

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """Send a whole answer now, in one write; the handler then returns ``None``. What
        it does after this (bookkeeping) no longer holds the answer back."""
        transport = self._writable()
        self._finished = True
        transport.write(self._conn.whole(self, status, headers, body))

    # --- a streamed answer ------------------------------------------------------------------

    async def start(
        self, status: int, headers: list[tuple[str, str]], *, length: int | None = None
    ) -> None:
        """Begin an answer whose body follows by :meth:`write`; chunked unless ``length``
        is given (an HTTP/1.0 client's then runs to the close). The head leaves with the
        first piece of the body, in one segment."""
        self._writable()  # raises if the client left: nothing to begin
        conn = self._conn
        framing: tuple[str, str] | None
        if length is not None:
            framing = ("Content-Length", str(length))
        elif self.http11:
            framing = ("Transfer-Encoding", "chunked")
            self._chunked = self.method != "HEAD"
        else:
            framing = None
            conn.closing = True
        self.started = True
        self._head = conn.head(self, status, headers, framing)

    async def write(self, data: bytes) -> None:
        """Send a piece of the body; waits while the client's socket is full."""
        if not data or self.method == "HEAD":
            return
        transport = self._writable()
        head, self._head = self._head, b""
        if self._chunked:
            transport.write(b"%b%x\r\n%b\r\n" % (head, len(data), data))
        elif head:
            transport.write(head + data)
        else:
            transport.write(data)
        if self._conn.paused:
            await self._conn.drain()

    async def write_eof(self) -> None:
        """End the body: the answer is complete."""
        if self._finished:
            return
        self._finished = True
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            return
        head, self._head = self._head, b""
        if self._chunked:
            transport.write(head + _CHUNKED_EOF)
        elif head:
            transport.write(head)


class Connection(asyncio.Protocol):
    """One client connection: its requests parsed, answered in order, and watched."""

    def __init__(self, server: "Server") -> None:
        self._server = server
        self.loop = server.loop
        self._gate = server.gate
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._client = ""
        self._admitted = False
        self._counted = False  # in the gate's count (until closed or evicted)
        self._watchdog: asyncio.TimerHandle | None = None
        # Parsing
        self._url = b""
        self._fields: list[tuple[str, str]] = []
        self._in_head = False
        self._head_since = 0.0
        self._head_bytes = 0
        self._fresh = True  # no head complete yet: its clock runs from the accept
        self._body: Request | None = None  # the request whose body is being parsed
        self._stopped = False  # nothing more is parsed (an error, an upgrade, a close)
        self._bad: str | None = None  # a malformed head: answered 400 in its turn
        # Answering
        self._waiting: collections.deque[Request] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._idle_since = 0.0
        self.closing = False
        """Close once the answer in progress is out (no keep-alive, a drain, an error)."""
        self.paused = False
        self._drain: asyncio.Future[None] | None = None
        self._stall: Request | None = None
        self._stall_bytes = 0

    # --- the transport's side ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = self.loop
        client = self._gate.enter(loop, transport)
        if not client:
            return
        self._admitted = self._counted = True
        self._client = client
        # uvloop's transports do not subclass asyncio.Transport, though they are one.
        self.transport = transport  # type: ignore[assignment]
        self._server.connections[self] = None
        now = loop.time()
        self._head_since = self._idle_since = now
        self._watchdog = loop.call_at(now + self._gate.limits.head_timeout, self._watch)
        if self._server.closing:
            self.closing = True

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self.transport = None
        self._release()
        self._gate.forget(self)
        self._server.connections.pop(self, None)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the client left"))
        self._waiting.clear()
        self._stall = self._body = None
        task = self._task
        if task is not None:
            task.cancel()  # the handler's upstream exchange closes: the pod stops

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    async def drain(self) -> None:
        """Wait until the client's socket takes more (or raise if the client left)."""
        if self.transport is None:
            raise ConnectionResetError("the client left")
        if self._drain is None:
            self._drain = self.loop.create_future()
        await self._drain

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # CONNECT or an upgrade: the request is parsed, what follows is no HTTP/1.1 of
            # ours. It is answered (a 404) and the connection closes.
            self._stop()
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            self._malformed(str(cause) if isinstance(cause, _TooLong) else str(exc))
            return
        if self._in_head and self._head_bytes > MAX_HEAD:
            self._malformed(f"Request head over {MAX_HEAD} bytes.")

    # --- llhttp's callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if not self._fresh:
            self._head_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        url = self._url + url if self._url else url
        if len(url) > MAX_FIELD:
            raise _TooLong(f"Request line over {MAX_FIELD} bytes.")
        self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) > MAX_FIELD or len(value) > MAX_FIELD:
            raise _TooLong(f"Header over {MAX_FIELD} bytes.")
        # Values as aiohttp read them: UTF-8, undecodable bytes kept (re-encoded as sent).
        self._fields.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        request = Request(
            self,
            parser.get_method().decode("latin-1"),
            self._url.decode("utf-8", "surrogateescape"),
            CIMultiDict(self._fields),
            http11=parser.get_http_version() == "1.1",
            keep_alive=parser.should_keep_alive(),
            limit=self._server.max_body,
        )
        self._url = b""
        self._fields = []
        self._in_head = self._fresh = False
        self._body = request
        if self._task is None:
            self._task = self.loop.create_task(self._serve(request))
        else:
            self._waiting.append(request)

    def on_body(self, body: bytes) -> None:
        request = self._body
        if request is not None:
            request._feed(body)

    def on_message_complete(self) -> None:
        request = self._body
        if request is not None:
            self._body = None
            request._done()
        if len(self._waiting) >= _MAX_WAITING and self.transport is not None:
            self.transport.pause_reading()  # resumed as the waiting requests are taken

    # --- answering --------------------------------------------------------------------------

    async def _serve(self, request: Request) -> None:
        """Answer ``request``, then each request waiting behind it, in order."""
        handler = self._server.handler
        while True:
            try:
                answer = await handler(request)
            except ConnectionError:  # the client left mid-answer
                self._abort()
                return
            except Exception as exc:
                answer = self._failed(request, exc)
                if answer is None:
                    return
            if not self._answered(request, answer):
                return
            if not self._waiting:
                break
            request = self._waiting.popleft()
            if len(self._waiting) < _MAX_WAITING and self.transport is not None:
                self.transport.resume_reading()
        self._task = None
        self._idle_since = self.loop.time()
        if self._bad is not None:
            self._answer_malformed()

    def _failed(self, request: Request, exc: Exception) -> Answer | None:
        """The answer to a handler's exception: an :class:`ApiError`'s own (the body's 413
        or 400, say), else a 500, logged; ``None`` once an answer had begun (cut short)."""
        if not isinstance(exc, ApiError):
            logger.error("error answering %s %s", request.method, request.raw_path, exc_info=exc)
        if request.started:
            self._abort()
            return None
        if isinstance(exc, ApiError):
            return Answer.of(exc)
        return Answer.of(ApiError("Internal server error."), close=True)

    def _answered(self, request: Request, answer: Answer | None) -> bool:
        """Write ``answer`` (``None``: the handler streamed its own); whether the connection
        carries on with the next request."""
        transport = self.transport
        if transport is None:
            return False
        if answer is not None:
            if answer.close:
                self.closing = True
            transport.write(self.whole(request, answer.status, answer.headers, answer.body))
        elif not request._finished:
            self._abort()  # an answer left unfinished cannot be framed any more
            return False
        if self.closing or not request.keep_alive or not request._complete:
            # A body left unread (too large, say) is no request to parse on from.
            self._close_after(request)
            return False
        return True

    def head(
        self,
        request: Request,
        status: int,
        headers: list[tuple[str, str]],
        framing: tuple[str, str] | None,
    ) -> bytes:
        """An answer's head: status line, ``headers``, framing, ``Date``, ``Connection``."""
        keep = request.keep_alive and not self.closing and request._complete
        if not keep:
            self.closing = True
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"]
        for name, value in headers:
            if "\n" in value or "\r" in value:  # llhttp refuses them from pods: a bug here
                raise ValueError(f"CR or LF in the value of answer header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        if framing is not None:
            lines.append(f"{framing[0]}: {framing[1]}\r\n")
        lines.append(self._server.date_line())
        if not keep:
            lines.append("Connection: close\r\n\r\n")
        elif not request.http11:
            lines.append("Connection: keep-alive\r\n\r\n")
        else:
            lines.append("\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    def whole(
        self, request: Request, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> bytes:
        """A whole answer, head and body, ready to write."""
        request.started = True
        if status in _NO_BODY:
            return self.head(request, status, headers, None)
        head = self.head(request, status, headers, ("Content-Length", str(len(body))))
        if request.method == "HEAD" or not body:
            return head
        return head + body

    def _close_after(self, request: Request) -> None:
        """Close once the answer is out; a body still coming is read and dropped first
        (for up to :data:`_LINGER` seconds) so that the close does not reset the answer."""
        transport = self.transport
        if transport is None:
            return
        self._task = None
        if request._complete or self._stopped or not transport.can_write_eof():
            transport.close()
            return
        self._stopped = True  # bytes still coming are dropped unparsed
        self._body = None  # answered: no body timeout (nor 408) for what is dropped
        transport.resume_reading()
        transport.write_eof()
        self.loop.call_later(_LINGER, transport.close)

    def _abort(self) -> None:
        self._task = None
        if self.transport is not None:
            self.transport.abort()

    def _stop(self) -> None:
        """Parse nothing more: the requests parsed are answered, then the connection closes."""
        self._stop_reading()
        if self._task is None and self.transport is not None and self._body is None:
            self.transport.close()

    def _stop_reading(self) -> None:
        self._stopped = self.closing = True
        if self.transport is not None:
            self.transport.pause_reading()

    def _malformed(self, message: str) -> None:
        self._stop_reading()
        request = self._body
        if request is not None:  # its head was fine, its body is not: read() says so
            self._body = None
            request._fail(BadRequest(f"Malformed request body: {message}"))
            return
        self._bad = message
        if self._task is None:
            self._answer_malformed()

    def _answer_malformed(self) -> None:
        transport = self.transport
        if transport is None:
            return
        body = BadRequest(f"Malformed request: {self._bad}").body()
        date = self._server.date_line().encode()
        transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%bConnection: close\r\n\r\n%b" % (len(body), date, body)
        )
        transport.close()

    # --- the gate and the watchdog ----------------------------------------------------------

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._gate.release(self._client)

    def _idle(self) -> bool:
        return self._task is None and not self._in_head and self._body is None

    def evict(self) -> bool:
        """Close the connection if it waits between requests (no head begun); whether so."""
        if self.transport is None or self._fresh or not self._idle():
            return False
        self._release()  # its descriptor goes now: the newcomer may have its place
        self.transport.close()
        return True

    def close_idle(self) -> None:
        """A drain: close now if idle, else after the answer in progress."""
        self.closing = True
        if self.transport is not None and self._idle():
            self.transport.close()

    def _watch(self) -> None:
        self._watchdog = None
        if self.transport is None:
            return
        loop = self.loop
        now = loop.time()
        limits = self._gate.limits
        request = self._body
        if self._in_head or (self._fresh and self._idle()):
            self._stall = None
            deadline = self._head_since + limits.head_timeout
            if now >= deadline:
                self._time_out("head", None)
                return
        elif request is not None:  # a body under way
            received = request.received
            if request is self._stall and received == self._stall_bytes:
                self._time_out("body", request)
                return
            self._stall, self._stall_bytes = request, received
            deadline = now + limits.body_timeout
        elif self._idle():
            self._stall = None
            self._gate.idle(self)
            ends = self._idle_since + self._server.idle_timeout
            if now >= ends:
                self.transport.close()  # silently: no request was under way
                return
            deadline = min(now + limits.head_timeout, ends)
        else:  # a handler at work: look again later
            self._stall = None
            deadline = now + limits.head_timeout
        self._watchdog = loop.call_at(deadline, self._watch)

    def _time_out(self, phase: str, request: Request | None) -> None:
        transport = self.transport
        assert transport is not None
        self._gate.timed_out(self.loop, phase, self._client)
        # A 408 only where no answer has begun (a 100 Continue does not count).
        if request is None or not request.started:
            transport.write(self._gate.answers[phase])
            if transport.get_write_buffer_size():
                # A client that reads nothing must not hold the socket until it drains.
                transport.abort()
                return
        # Closes the transport; connection_lost cancels a handler still reading the body.
        transport.close()


class Server:
    """The traffic listener's protocol factory, and its connections for a graceful drain.

    Called by the event loop's ``create_server`` for each accepted connection; aiohttp's
    runner (``pre_shutdown``, ``shutdown``) drains it.
    """

    def __init__(
        self,
        handler: Handler,
        gate: Gate,
        *,
        max_body: int,
        idle_timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.handler = handler
        self.gate = gate
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.loop = loop
        self.connections: dict[Connection, None] = {}
        self.closing = False
        self._date_second = -1
        self._date = ""

    def __call__(self) -> Connection:
        return Connection(self)

    def date_line(self) -> str:
        """``Date: ...`` as RFC 9110 wants it, formatted once a second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = f"Date: {formatdate(now, usegmt=True)}\r\n"
        return self._date

    def pre_shutdown(self) -> None:
        """Stop taking requests: idle connections close, busy ones after their answer."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_idle()

    async def shutdown(self, timeout: float) -> None:  # noqa: ASYNC109 - aiohttp's runner's call
        """Give the requests in flight ``timeout`` seconds, then cancel them and close."""
        busy = {c._task for c in self.connections if c._task is not None}
        if busy:
            await asyncio.wait(busy, timeout=timeout)
        left = {c._task for c in self.connections if c._task is not None}
        for conn in list(self.connections):
            if conn.transport is not None:
                if conn._task is not None:
                    conn.transport.abort()  # connection_lost cancels the handler
                else:  # an answer may still be flushing: closed after it
                    conn.transport.close()
        if left:
            await asyncio.wait(left, timeout=1.0)


class _TooLong(Exception):
    """Raised from a parser callback: a request line or header over its limit."""


def _origin_form(target: str) -> tuple[str, str]:
    """(path and query, path) of a request target; an absolute URI is cut to its path."""
    if not target.startswith("/"):
        if "://" in target:
            try:
                # Any: httptools' stubs say bytes, but a part the URL lacks is None (and
                # compiled code would check the stubs' word).
                url: Any = httptools.parse_url(target.encode("utf-8", "surrogateescape"))
            except httptools.HttpParserInvalidURLError:
                return target, target
            path = (url.path or b"/").decode("utf-8", "surrogateescape")
            query = url.query
            if query:
                return f"{path}?{query.decode('utf-8', 'surrogateescape')}", path
            return path, path
        return target, target  # CONNECT's authority, or "*": no route has it
    path, _, _ = target.partition("?")
    return target, path


def _decoded(path: str) -> str:
    """``path`` percent-decoded, ``%2F`` and ``%25`` kept (a slash or percent sign that
    is data must not become a separator), as yarl's ``path_safe`` did."""
    pieces = _KEPT_ESCAPES.split(path)
    return "".join(p if i % 2 else unquote(p) for i, p in enumerate(pieces))
