"""The traffic port's HTTP/1.1 server on its own, with handlers of the test's: framing
(pipelining, HTTP/1.0, HEAD, chunked bodies), limits, backpressure, client departure and
the graceful drain. What the proxy does on top is test_proxy's and the hostile suite's."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from zeta_sidecar.connections import ConnectionMetrics, Gate, Limits
from zeta_sidecar.http_server import MAX_FIELD, Answer, Handler, Request, Server

LIMIT = 1000
"""Request body bytes at most."""

Serve = Callable[[Handler], Awaitable[tuple[Server, int]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    listeners: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[Server, int]:
        limits = Limits(max_connections=64, head_timeout=5.0, body_timeout=5.0)
        gate = Gate("traffic", limits, ConnectionMetrics(CollectorRegistry()))
        loop = asyncio.get_running_loop()
        server = Server(handler, gate, max_body=LIMIT, idle_timeout=60.0, loop=loop)
        listener = await loop.create_server(server, "127.0.0.1", 0)
        listeners.append(listener)
        return server, listener.sockets[0].getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()


async def echo(request: Request) -> Answer:
    """The request as JSON: method, target, path, body."""
    body = await request.read() if request.method == "POST" else b""
    doc = {
        "method": request.method,
        "target": request.target,
        "path": request.path,
        "body": body.decode(),
    }
    return Answer(200, [("Content-Type", "application/json")], json.dumps(doc).encode())


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer: status, headers (lower-case names), body (de-chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
            body += await reader.readexactly(size)
            assert await reader.readexactly(2) == b"\r\n"
        assert await reader.readexactly(2) == b"\r\n"
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


async def test_pipelined_requests_are_answered_in_order(serve: Serve) -> None:
    _, port = await serve(echo)
    reader, writer = await connect(port)
    writer.write(
        b"GET /v1/m%6Fdels?x=1 HTTP/1.1\r\nHost: s\r\n\r\n"
        b"POST /a%2Fb HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nhello"
        b"POST http://elsewhere:9/v1/x?y=2 HTTP/1.1\r\nHost: s\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    answers = [json.loads((await response(reader))[2]) for _ in range(3)]
    assert answers == [
        {"method": "GET", "target": "/v1/m%6Fdels?x=1", "path": "/v1/models", "body": ""},
        {"method": "POST", "target": "/a%2Fb", "path": "/a%2Fb", "body": "hello"},
        {"method": "POST", "target": "/v1/x?y=2", "path": "/v1/x", "body": "abcde"},
    ]
    writer.close()


async def test_http_1_0_closes_unless_kept_alive_and_head_has_no_body(serve: Serve) -> None:
    _, port = await serve(echo)
    reader, writer = await connect(port)
    writer.write(b"GET /x HTTP/1.0\r\n\r\n")
    status, headers, _ = await response(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await closed(reader)
    reader, writer = await connect(port)
    writer.write(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, _ = await response(reader)
    assert (status, headers["connection"]) == (200, "keep-alive")
    writer.write(b"HEAD /x HTTP/1.1\r\nHost: s\r\n\r\nGET /y HTTP/1.1\r\nHost: s\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"Content-Length: " in head
    assert b"Date: " in head
    # The next answer follows the head at once: the HEAD answer had no body.
    assert json.loads((await response(reader))[2])["path"] == "/y"
    writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (
            b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (LIMIT + 1, b"x" * (LIMIT + 1)),
            413,
            "request_too_large",
        ),
        (b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * (MAX_FIELD + 1) + b"\r\n\r\n", 400, None),
        (b"GET /" + b"a" * MAX_FIELD + b" HTTP/1.1\r\n\r\n", 400, None),
        (b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400, None),
        (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, None),
    ],
    ids=["chunked-over-the-limit", "long-header", "long-line", "two-lengths", "bad-chunk"],
)
async def test_refused_requests_get_an_openai_error_and_a_close(
    serve: Serve, request_bytes: bytes, status: int, code: str | None
) -> None:
    _, port = await serve(echo)
    reader, writer = await connect(port)
    writer.write(request_bytes)
    got, headers, body = await response(reader)
    error = json.loads(body)["error"]
    assert (got, error["code"]) == (status, code or "invalid_request")
    if status == 400:  # where the next request would start is unknown: closed
        assert headers["connection"] == "close"
        assert await closed(reader)
    else:  # the whole body was read (and dropped): the connection carries on
        writer.write(b"GET /next HTTP/1.1\r\nHost: s\r\n\r\n")
        assert json.loads((await response(reader))[2])["path"] == "/next"
    writer.close()


async def test_a_stream_waits_for_a_slow_client_instead_of_buffering(serve: Serve) -> None:
    buffered: list[int] = []
    piece = b"x" * 65536

    async def stream(request: Request) -> None:
        await request.start(200, [("Content-Type", "text/event-stream")])
        for _ in range(256):  # 16 MiB
            await request.write(piece)
            transport = request.transport
            assert transport is not None
            buffered.append(transport.get_write_buffer_size())
        await request.write_eof()

    _, port = await serve(stream)
    reader, writer = await connect(port)
    writer.write(b"GET /s HTTP/1.1\r\nHost: s\r\n\r\n")
    await asyncio.sleep(0.3)  # the client reads nothing meanwhile
    assert len(buffered) < 256, "the handler wrote on while the client read nothing"
    status, _, body = await response(reader)
    assert (status, len(body)) == (200, 256 * len(piece))
    assert max(buffered) <= 4 * len(piece)
    writer.close()


async def test_a_client_that_leaves_cancels_its_handler(serve: Serve) -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: Request) -> Answer:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Answer(200, [], b"")

    _, port = await serve(slow)
    _, writer = await connect(port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: s\r\n\r\n")
    await asyncio.wait_for(started.wait(), 5)
    writer.close()
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_a_drain_closes_idle_connections_and_gives_busy_ones_their_grace(
    serve: Serve,
) -> None:
    async def handler(request: Request) -> Answer:
        await asyncio.sleep(float(request.path.strip("/")))
        return Answer(200, [], b"done")

    server, port = await serve(handler)
    idle_reader, idle_writer = await connect(port)
    idle_writer.write(b"GET /0 HTTP/1.1\r\nHost: s\r\n\r\n")
    assert (await response(idle_reader))[0] == 200
    busy_reader, busy_writer = await connect(port)
    busy_writer.write(b"GET /0.3 HTTP/1.1\r\nHost: s\r\n\r\n")
    late_reader, late_writer = await connect(port)
    late_writer.write(b"GET /30 HTTP/1.1\r\nHost: s\r\n\r\n")
    await asyncio.sleep(0.1)
    server.pre_shutdown()
    assert await closed(idle_reader)
    drained = asyncio.create_task(server.shutdown(1.0))
    status, headers, body = await response(busy_reader)
    assert (status, headers["connection"], body) == (200, "close", b"done")
    assert await closed(late_reader)  # past the grace: cancelled, closed without an answer
    await asyncio.wait_for(drained, 5)
    for writer in (idle_writer, busy_writer, late_writer):
        writer.close()
