"""A lean HTTP/1.1 client for the pods: keep-alive connections per address, one write
per request, responses parsed as they arrive.

Why not aiohttp's client: measured on one core, its per-request machinery (request and
response objects, tracing hooks, cookie jar, timers) costs about four times what the
aiohttp *server* costs for the same request, and made the sidecar a third as fast as a
Rust router. The pods speak plain HTTP/1.1 on a loopback-like pod network, to one known
address each, with bodies framed by ``Content-Length`` or chunked encoding: a small
:class:`asyncio.Protocol` covers that, and nothing else is needed.

What it does: a request is written as one buffer (head and body). The response head is
parsed once; the body is handed out piece by piece (:meth:`Exchange.readany`, for
streams) or whole (:meth:`Exchange.read`), de-chunked. Reading pauses while more than
:data:`_HIGH_WATER` bytes wait for the consumer, so a slow client never makes a stream
pile up in memory. A connection whose response was read to its end goes back to its
address's idle stack; any other is closed, which is also how a cancelled request stops
the pod's work.

Errors, all before or during a response (a tree of built-in exceptions):

- :class:`ConnectFailed` (a ``ConnectionError``): no connection could be opened; the
  request never left, so it is safe to retry elsewhere.
- :class:`Disconnected` (a ``ConnectionError``): the connection closed mid-exchange.
  ``before_response`` says whether any response byte had come.
- ``TimeoutError``: connect, first byte or idle timeout.
- :class:`ProtocolError` (a ``ConnectionError``): the pod's answer is not HTTP/1.1 as
  this client reads it.

A reused idle connection may have been closed by the pod just as a request was written
(keep-alive timeouts race); such a failure before any response byte is retried once on
a fresh connection, transparently, as Envoy does for "reset before request".
"""

import asyncio
import collections
import time
from collections.abc import Sequence
from typing import Final, cast

__all__ = ["ConnectFailed", "Disconnected", "Exchange", "Pool", "ProtocolError"]

_HIGH_WATER: Final = 1 << 20
"""Bytes of body buffered for the consumer before the socket stops being read."""

_MAX_HEAD: Final = 64 * 1024
"""Largest response head accepted."""

_IDLE_SECONDS: Final = 4.0
"""Idle connections older than this are closed, not reused: below uvicorn's 5 s
keep-alive default (vLLM's server), so the pod rarely closes one as it is reused."""

_MAX_IDLE_PER_ADDRESS: Final = 256

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _UNTIL_EOF, _DONE = range(8)


class ConnectFailed(ConnectionError):
    """No connection to the pod could be opened."""


class Disconnected(ConnectionError):
    """The connection closed before the response was complete."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class ProtocolError(ConnectionError):
    """The pod's answer could not be read as HTTP/1.1."""


class Exchange(asyncio.Protocol):
    """One connection, and the response in progress on it."""

    def __init__(self, pool: "Pool", address: str) -> None:
        self._pool = pool
        self.address = address
        self._loop = pool.loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._state = _DONE
        self._remaining = 0
        self._pieces: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None
        self._reusable = True
        self.idle_since = 0.0
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        """Response headers as received, in order."""
        self.content_type = ""

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they are one.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._reusable = False
        if self._state == _UNTIL_EOF:
            self._state = _DONE
        elif self._state != _DONE and self._lost is None:
            self._lost = Disconnected(
                f"connection to {self.address} lost: {exc or 'closed by the pod'}",
                before_response=self._state == _HEAD and not self._buffer,
            )
        self._wake()

    def data_received(self, data: bytes) -> None:
        if self._state == _HEAD:
            # Usually the whole head (and a short body) comes in one read: then it is
            # parsed from ``data`` as is, without going through the buffer.
            if self._buffer:
                self._buffer += data
                data = bytes(self._buffer)
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    self._fail(ProtocolError("response head too large"))
                elif not self._buffer:
                    self._buffer += data
                return
            self._buffer.clear()
            try:
                self._parse_head(data[:end])
            except (ValueError, IndexError) as exc:
                self._fail(ProtocolError(f"bad response head from {self.address}: {exc}"))
                return
            if len(data) > end + 4:
                self._body(data[end + 4 :])
            self._wake()
            return
        if self._state == _DONE:
            self._reusable = False  # bytes nobody asked for: do not trust this connection
            return
        self._body(data)
        self._wake()

    def pause_writing(self) -> None:  # requests are small; nothing to pause
        pass

    # --- parsing ------------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not HTTP/1.x: {lines[0][:40]!r}")
        self.status = int(status)
        headers = self.headers = []
        length = -1
        chunked = False
        close = version == "HTTP/1.0"
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"bad header line {line[:40]!r}")
            value = value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == "content-length":
                length = int(value)
            elif lower == "transfer-encoding":
                chunked = value.lower().endswith("chunked")
            elif lower == "content-type":
                self.content_type = value.partition(";")[0].strip().lower()
            elif lower == "connection":
                tokens = value.lower()
                close = "close" in tokens or (close and "keep-alive" not in tokens)
        if close:
            self._reusable = False
        if chunked:
            self._state = _CHUNK_SIZE
        elif length >= 0:
            self._state, self._remaining = (_LENGTH, length) if length else (_DONE, 0)
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self._state = _DONE
        else:
            self._state = _UNTIL_EOF
            self._reusable = False

    def _body(self, data: bytes) -> None:
        state = self._state
        if state == _LENGTH:
            if len(data) >= self._remaining:
                if len(data) > self._remaining:
                    self._reusable = False
                    data = data[: self._remaining]
                self._state = _DONE
            self._remaining -= len(data)
            self._push(data)
        elif state == _UNTIL_EOF:
            self._push(data)
        else:
            self._buffer += data
            self._dechunk()

    def _dechunk(self) -> None:  # noqa: PLR0912  # one state machine reads best in one place
        buf = self._buffer
        while buf:
            state = self._state
            if state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                try:
                    size = int(bytes(buf[:end]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._fail(ProtocolError("bad chunk size"))
                    return
                del buf[: end + 2]
                self._state, self._remaining = (_CHUNK_DATA, size) if size else (_TRAILER, 0)
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(buf))
                self._push(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    return
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:  # the empty line after the trailers
                    self._state = _DONE
                    if buf:
                        self._reusable = False
                    return
            else:
                self._reusable = False
                return

    def _push(self, data: bytes) -> None:
        if data:
            self._pieces.append(data)
            self._buffered += len(data)
            if self._buffered > _HIGH_WATER and not self._paused and self._transport:
                self._paused = True
                self._transport.pause_reading()

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

    # --- the consumer's side --------------------------------------------------------------

    async def _wait(self, within: float) -> None:
        waiter = self._waiter = self._loop.create_future()
        # One timer per wait, not an asyncio.timeout() context: cheaper on the hot path.
        timer = self._loop.call_later(within, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _send(self, data: bytes) -> None:
        assert self._transport is not None
        self._state = _HEAD
        self._buffer.clear()
        self.status, self.headers, self.content_type = 0, [], ""
        self._transport.write(data)

    async def readany(self, within: float) -> bytes:
        """The next body bytes, waiting at most ``within`` seconds; ``b""`` at the end."""
        while not self._pieces:
            if self._state == _DONE:
                return b""
            if self._lost is not None:
                raise self._lost
            await self._wait(within)
        data = self._pieces.popleft()
        self._buffered -= len(data)
        if self._paused and self._buffered <= _HIGH_WATER // 2 and self._transport:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def read(self, within: float) -> bytes:
        """The whole body, with at most ``within`` seconds between two pieces."""
        if self._state == _DONE and self._lost is None:
            # All of it is here (a short answer comes with its head): no waiting.
            pieces = self._pieces
            data = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            self._buffered = 0
            if self._paused and self._transport:
                self._paused = False
                self._transport.resume_reading()
            return data
        parts = []
        while chunk := await self.readany(within):
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with this exchange: back to the pool if complete and reusable, else closed."""
        if self._state == _DONE and self._reusable and self._lost is None and not self._pieces:
            self._pool.put(self)
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


def _expire(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Pool:
    """Idle keep-alive connections per pod address."""

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
                # The wait for the head, inline (not in a coroutine of its own).
                while exchange._state == _HEAD:
                    if exchange._lost is not None:
                        raise exchange._lost
                    await exchange._wait(first_byte_timeout)
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
