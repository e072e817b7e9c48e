"""A pod that misbehaves on purpose: a raw asyncio HTTP/1.1 server whose answer to each
request is scripted by the test, in its own thread so that blocking test code and raw
socket clients can run beside it.

The server reads each request (head, then ``Content-Length`` bytes of body) and records
it with the raw bytes as received; then it looks up a behaviour by the request's
``X-Hostile-Case`` header (the sidecar forwards it as any end-to-end header) and runs
it. Without a case, or for an unknown one, it answers :func:`echo_answer`: a small JSON
body that names the request's ``X-Hostile-Marker`` and a per-pod serial number, so every
answer is told apart from every other (one client's bytes in another client's response
are caught by comparing markers).

A behaviour is ``async def behaviour(conn: PodConnection, request: Received) -> None``;
:func:`script` builds one from steps (:func:`send`, :func:`trickle`, :func:`sleep`,
:func:`hold`, :func:`close`, :func:`repeat`, :func:`body_of`, ...). When a behaviour
returns without closing, the connection stays open for the next request (keep-alive).
A request written to a connection while :func:`hold` keeps an unfinished answer on it
is recorded (:meth:`MaliciousPod.late`): the sidecar reused a connection it should have
retired.

Scripted waits last at most :data:`MAX_HOLD`, and ``stop()`` resets every connection,
so no test leaves the pod busy after its fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = [
    "MAX_HOLD",
    "Behaviour",
    "MaliciousPod",
    "PodConnection",
    "PodProcess",
    "Received",
    "body_of",
    "chunk",
    "close",
    "continue_if_expected",
    "echo_answer",
    "hold",
    "http_answer",
    "json_answer",
    "pattern",
    "repeat",
    "script",
    "send",
    "send_echo",
    "sleep",
    "sse_head",
    "trickle",
]

MAX_HOLD = 20.0
"""The longest any scripted wait or stream lasts, whatever the script says."""

_MAX_REQUEST_HEAD = 1 << 20


@dataclass
class Received:
    """One request as the pod read it."""

    connection: int
    """Serial number of the connection it came on (1, 2, ... per pod)."""
    serial: int
    """Serial number of the request (1, 2, ... per pod)."""
    head: bytes
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    """Header names lowered, values as received (latin-1)."""

    @property
    def raw(self) -> bytes:
        return self.head + self.body

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k == lower), None)

    @property
    def case(self) -> str:
        return self.header("x-hostile-case") or ""

    @property
    def marker(self) -> str:
        return self.header("x-hostile-marker") or ""


class PodConnection:
    """The pod's side of one accepted connection, as a behaviour sees it."""

    def __init__(
        self,
        serial: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_late: Callable[[int, bytes], None],
    ) -> None:
        self.serial = serial
        self.reader = reader
        self.writer = writer
        self.keep_alive = True
        self._on_late = on_late

    @property
    def closing(self) -> bool:
        return self.writer.is_closing()

    async def send(self, data: bytes) -> None:
        """Write and drain; a peer that left ends the behaviour (``ConnectionError``)."""
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        """Close after what was written (FIN)."""
        self.keep_alive = False
        self.writer.close()

    def abort(self) -> None:
        """Reset the connection at once (RST)."""
        self.keep_alive = False
        self.writer.transport.abort()

    async def peer_gone(self, within: float) -> bool:
        """Wait up to ``within`` s for the peer to close.

        Bytes arriving meanwhile mean the peer sent another request on a connection
        whose answer was never finished: recorded (:attr:`MaliciousPod.late`), and the
        connection is reset so that the failure stays with the case that caused it.
        """
        try:
            async with asyncio.timeout(min(within, MAX_HOLD)):
                data = await self.reader.read(65536)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        if data:
            self._on_late(self.serial, data)
            self.abort()
        return True


Behaviour = Callable[[PodConnection, Received], Awaitable[None]]
Step = Callable[[PodConnection, Received], Awaitable[None]]


def script(*steps: Step) -> Behaviour:
    """A behaviour that runs ``steps`` in order."""

    async def run(conn: PodConnection, request: Received) -> None:
        for step in steps:
            await step(conn, request)

    return run


def send(data: bytes) -> Step:
    """Send these exact bytes."""

    async def step(conn: PodConnection, request: Received) -> None:
        await conn.send(data)

    return step


def send_echo(status: int = 200) -> Step:
    """Send :func:`echo_answer` for the request."""

    async def step(conn: PodConnection, request: Received) -> None:
        await conn.send(echo_answer(request, status))

    return step


def trickle(data: bytes, every: float) -> Step:
    """Send ``data`` one byte at a time, ``every`` seconds apart (bounded by MAX_HOLD)."""

    async def step(conn: PodConnection, request: Received) -> None:
        deadline = time.monotonic() + MAX_HOLD
        for i in range(len(data)):
            if time.monotonic() > deadline or conn.closing:
                return
            await conn.send(data[i : i + 1])
            await asyncio.sleep(every)

    return step


def sleep(seconds: float) -> Step:
    async def step(conn: PodConnection, request: Received) -> None:
        await asyncio.sleep(min(seconds, MAX_HOLD))

    return step


def hold(seconds: float = MAX_HOLD) -> Step:
    """Keep the connection open and silent until the peer leaves (or ``seconds``)."""

    async def step(conn: PodConnection, request: Received) -> None:
        if await conn.peer_gone(seconds):
            conn.keep_alive = False

    return step


def close(*, reset: bool = False) -> Step:
    """Close the connection (FIN, or RST with ``reset``)."""

    async def step(conn: PodConnection, request: Received) -> None:
        conn.abort() if reset else conn.close()

    return step


def repeat(data: bytes, *, seconds: float, limit: int = 1 << 30) -> Step:
    """Send ``data`` again and again, as fast as the peer reads, for at most ``seconds``
    and ``limit`` bytes, or until the peer leaves."""

    async def step(conn: PodConnection, request: Received) -> None:
        deadline = time.monotonic() + min(seconds, MAX_HOLD)
        sent = 0
        with contextlib.suppress(ConnectionError):
            while time.monotonic() < deadline and sent < limit and not conn.closing:
                await conn.send(data)
                sent += len(data)

    return step


def body_of(size: int, *, piece: int = 1 << 20) -> Step:
    """Send ``size`` bytes of :func:`pattern` generated on the fly, ``piece`` at a time."""

    async def step(conn: PodConnection, request: Received) -> None:
        block = pattern(piece)
        left = size
        while left > 0:
            n = min(left, piece)
            await conn.send(block if n == piece else block[:n])
            left -= n

    return step


def continue_if_expected() -> Step:
    """As uvicorn does: ``100 Continue`` first if the request carried ``Expect``."""

    async def step(conn: PodConnection, request: Received) -> None:
        if (request.header("expect") or "").lower() == "100-continue":
            await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    return step


def pattern(size: int) -> bytes:
    """Deterministic filler bytes: a client can check any piece of a huge body."""
    unit = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
    return (unit * (size // len(unit) + 1))[:size]


def http_answer(
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A well-formed ``Content-Length`` answer."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def json_answer(doc: object, status: int = 200) -> bytes:
    return http_answer(status, json.dumps(doc).encode())


def echo_answer(request: Received, status: int = 200) -> bytes:
    """The default answer: names the request, so no answer can pass for another's."""
    return json_answer(
        {
            "object": "chat.completion",
            "marker": request.marker,
            "case": request.case,
            "serial": request.serial,
            "connection": request.connection,
        },
        status,
    )


def sse_head() -> bytes:
    """The head of a chunked event stream, as vLLM's server sends it."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _default(conn: PodConnection, request: Received) -> None:
    await conn.send(echo_answer(request))


class MaliciousPod:
    """The server; ``start()`` it, script it with :meth:`on`, ``stop()`` it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._behaviours: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self._raw: list[bytearray] = []
        self._late: list[tuple[int, bytes]] = []
        self._serials = itertools.count(1)
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None

    # --- the test's side ----------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def on(self, case: str, behaviour: Behaviour) -> None:
        """Answer requests of ``case`` (their ``X-Hostile-Case`` header) with ``behaviour``."""
        with self._lock:
            self._behaviours[case] = behaviour

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    def requests(self, case: str | None = None) -> list[Received]:
        """Requests read so far (of one case, if given), in arrival order."""
        with self._lock:
            return [r for r in self._requests if case is None or r.case == case]

    def late(self, connection: int | None = None) -> list[bytes]:
        """Bytes that came on a connection while the pod held an unfinished answer on it
        (a request written to a connection that should have been retired)."""
        with self._lock:
            return [d for c, d in self._late if connection is None or c == connection]

    def _record_late(self, connection: int, data: bytes) -> None:
        with self._lock:
            self._late.append((connection, data))

    def raw_bytes(self) -> bytes:
        """Every byte received on every connection, connection after connection."""
        with self._lock:
            return b"".join(bytes(b) for b in self._raw)

    def start(self) -> MaliciousPod:
        self._thread = threading.Thread(target=self._run, name="malicious-pod", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the malicious pod did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stopped = self._stopped
        assert stopped is not None
        loop.call_soon_threadsafe(stopped.set)
        thread.join(10)

    # --- the server -----------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=_MAX_REQUEST_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopped.wait()
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._connections += 1
            serial = self._connections
            raw = bytearray()
            self._raw.append(raw)
        self._writers.add(writer)
        conn = PodConnection(serial, reader, writer, self._record_late)
        try:
            while conn.keep_alive and not writer.is_closing():
                request = await self._read_request(conn, raw)
                if request is None:
                    break
                with self._lock:
                    self._requests.append(request)
                    behaviour = self._behaviours.get(request.case, _default)
                await behaviour(conn, request)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _read_request(self, conn: PodConnection, raw: bytearray) -> Received | None:
        reader = conn.reader
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raw += exc.partial
            return None
        raw += head
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.append((name.strip().lower(), value.strip()))
        length = next((int(v) for k, v in headers if k == "content-length"), 0)
        body = await reader.readexactly(length) if length else b""
        raw += body
        return Received(conn.serial, next(self._serials), head, body, headers)


class PodProcess:
    """A :class:`MaliciousPod` with the default behaviour in a forked process of its own,
    for measurements that the test process's own threads must not disturb (they share
    one interpreter lock with an in-process pod)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_pod_child, args=(child,), daemon=True)
        self._process.start()
        if not self._conn.poll(10):
            self._process.kill()
            raise RuntimeError("the pod process did not start")
        self.address: str = self._conn.recv()

    def stop(self) -> list[tuple[str, str, int]]:
        """Stop it; the (case, marker, body length) of every request it read."""
        self._conn.send(None)
        got: list[tuple[str, str, int]] = self._conn.recv() if self._conn.poll(10) else []
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
        return got


def _pod_child(conn: multiprocessing.connection.Connection) -> None:
    pod = MaliciousPod().start()
    conn.send(pod.address)
    conn.recv()
    conn.send([(r.case, r.marker, len(r.body)) for r in pod.requests()])
    pod.stop()
