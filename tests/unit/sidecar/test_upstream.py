"""The lean HTTP/1.1 client against raw servers: framing, keep-alive, failures."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from zeta_sidecar.upstream import ConnectFailed, Connections, Disconnected, ProtocolError

from .conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(handler: Handler) -> str:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await handler(reader, writer)

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        servers.append(server)
        return f"127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0.05)  # let the handlers see their connections close


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


REQUEST = (b"POST /v1/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n", b"{}")


async def test_chunked_body_split_anywhere_is_decoded(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        raw = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        for i in range(len(raw)):  # one byte at a time: every state boundary is crossed
            writer.write(raw[i : i + 1])
            await writer.drain()
        await reader.read()

    pool = Connections(asyncio.get_running_loop())
    address = await serve(handler)
    exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
    assert (exchange.status, exchange.content_type) == (200, "text/event-stream")
    assert await exchange.read(2) == b"hello, world"
    exchange.release()
    pool.close()


async def test_keep_alive_reuses_one_connection(serve: Callable[[Handler], Awaitable[str]]) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")

    pool = Connections(asyncio.get_running_loop())
    address = await serve(handler)
    for _ in range(5):
        exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
        assert await exchange.read(2) == b"abc"
        exchange.release()
    assert connections == 1
    pool.close()


async def test_a_stale_keep_alive_connection_is_replaced_transparently(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # the server ends keep-alive after one request, without saying so

    pool = Connections(asyncio.get_running_loop())
    address = await serve(handler)
    for _ in range(3):
        exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
        assert await exchange.read(2) == b"ok"
        exchange.release()
        await asyncio.sleep(0.01)
    pool.close()


async def test_failures_map_to_their_exceptions(serve: Callable[[Handler], Awaitable[str]]) -> None:
    pool = Connections(asyncio.get_running_loop())
    with pytest.raises(ConnectFailed):
        await pool.request(
            f"127.0.0.1:{free_port()}", REQUEST, connect_timeout=1, first_byte_timeout=1
        )

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    with pytest.raises(Disconnected) as caught:
        await pool.request(await serve(hang_up), REQUEST, connect_timeout=1, first_byte_timeout=1)
    assert caught.value.before_response

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await reader.read()

    with pytest.raises(ProtocolError):
        await pool.request(await serve(garbage), REQUEST, connect_timeout=1, first_byte_timeout=1)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    with pytest.raises(TimeoutError):
        await pool.request(await serve(silent), REQUEST, connect_timeout=1, first_byte_timeout=0.05)

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    exchange = await pool.request(
        await serve(cut), REQUEST, connect_timeout=1, first_byte_timeout=1
    )
    with pytest.raises(Disconnected) as caught:
        await exchange.read(1)
    assert not caught.value.before_response
    exchange.release()
    pool.close()


async def test_body_until_close_when_unframed(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"a": 1}')
        await writer.drain()
        writer.close()

    pool = Connections(asyncio.get_running_loop())
    exchange = await pool.request(
        await serve(handler), REQUEST, connect_timeout=1, first_byte_timeout=1
    )
    assert await exchange.read(1) == b'{"a": 1}'
    exchange.release()
    pool.close()


# --- issue 7: framing the pod decides, never guessed ------------------------------------


def _answering(*answers: bytes, then_wait: bool = True) -> Handler:
    """A server that answers the requests on one connection with ``answers`` in turn."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(answer)
            await writer.drain()
        if then_wait:
            await reader.read()

    return handler


async def test_an_interim_100_is_skipped_and_the_real_answer_read(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    # Defect: the old parser took "100 Continue" for the answer and pooled the connection
    # with the real answer unread, so the next request got it (a cross-client leak).
    first = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
    second = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"
    pool = Connections(asyncio.get_running_loop())
    address = await serve(_answering(first, second))
    bodies = []
    for _ in range(2):
        exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
        assert exchange.status == 200
        bodies.append(await exchange.read(2))
        exchange.release()
    assert bodies == [b"first", b"second"]
    pool.close()


async def test_bytes_after_a_complete_answer_keep_the_connection_out_of_the_pool(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    connections = 0
    smuggled = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _answering(smuggled, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")(
            reader, writer
        )

    pool = Connections(asyncio.get_running_loop())
    address = await serve(handler)
    exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
    assert await exchange.read(2) == b"ok"
    exchange.release()
    exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
    assert await exchange.read(2) == b"ok"  # a new connection, whose first answer is "ok"
    exchange.release()
    assert connections == 2
    pool.close()


_OK = b"HTTP/1.1 200 OK\r\n"
_CL2 = b"Content-Length: 2\r\n"
_BAD_HEADS = {
    "two-lengths": _OK + _CL2 + b"Content-Length: 3\r\n\r\nok",
    "same-length-twice": _OK + _CL2 + _CL2 + b"\r\nok",
    "signed-length": _OK + b"Content-Length: +2\r\n\r\nok",
    "underscore-length": _OK + b"Content-Length: 1_2\r\n\r\nok",
    "length-and-chunked": _OK + _CL2 + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "obs-fold": _OK + b"X-A: a\r\n b\r\n" + _CL2 + b"\r\nok",
    "space-before-colon": _OK + b"X-A : a\r\n" + _CL2 + b"\r\nok",
    "nul-in-value": _OK + b"X-A: a\x00b\r\n" + _CL2 + b"\r\nok",
    "cr-in-value": _OK + b"X-A: a\rb\r\n" + _CL2 + b"\r\nok",
    "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
    "status-600": b"HTTP/1.1 600 Nope\r\n" + _CL2 + b"\r\nok",
    "status-000": b"HTTP/1.1 000 Nope\r\n" + _CL2 + b"\r\nok",
    "status-1000": b"HTTP/1.1 1000 Nope\r\n" + _CL2 + b"\r\nok",
    "http-2.0": b"HTTP/2.0 200 OK\r\n" + _CL2 + b"\r\nok",
    "1MB-header": _OK + b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n",
    "gzip-under-chunked": _OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "gzip-to-close": _OK + b"Transfer-Encoding: gzip\r\n\r\nok",
}


@pytest.mark.parametrize("answer", list(_BAD_HEADS.values()), ids=list(_BAD_HEADS))
async def test_an_ambiguous_or_invalid_head_is_a_protocol_error(
    serve: Callable[[Handler], Awaitable[str]], answer: bytes
) -> None:
    pool = Connections(asyncio.get_running_loop())
    address = await serve(_answering(answer))
    with pytest.raises(ProtocolError):
        await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
    pool.close()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"-1\r\nok\r\n0\r\n\r\n", id="negative-size"),
        pytest.param(b"0x2\r\nok\r\n0\r\n\r\n", id="hex-prefixed-size"),
        pytest.param(b"FFFFFFFFFFFFFFFFFFFF\r\nok\r\n", id="huge-size"),
        pytest.param(b"2\r\nokXX0\r\n\r\n", id="no-crlf-after-data"),
        pytest.param(b"2;" + b"e" * (100 * 1024), id="endless-extension"),
        pytest.param(b"2\r\nok\r\n0\r\n" + b"X-T: 1\r\n" * 20_000 + b"\r\n", id="endless-trailers"),
    ],
)
async def test_bad_chunked_framing_is_a_protocol_error(
    serve: Callable[[Handler], Awaitable[str]], body: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    pool = Connections(asyncio.get_running_loop())
    address = await serve(_answering(head + body))
    exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
    with pytest.raises(ProtocolError):
        await exchange.read(2)
    exchange.release()
    pool.close()


async def test_a_trickled_chunk_line_does_not_hold_the_deadline_open(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    # Defect: the idle timer restarted on every byte, so a pod trickling a chunk-size
    # line held the client as long as it liked.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(200):
            writer.write(b"0")  # a chunk-size line that never ends
            await writer.drain()
            await asyncio.sleep(0.01)

    pool = Connections(asyncio.get_running_loop())
    exchange = await pool.request(
        await serve(handler), REQUEST, connect_timeout=1, first_byte_timeout=1
    )
    loop = asyncio.get_running_loop()
    begun = loop.time()
    with pytest.raises(TimeoutError):
        await exchange.readany(0.2)
    # Virtual-time-free check on ordering, not speed: the deadline passed long before the
    # 2 s the pod would trickle for.
    assert loop.time() - begun < 1.5
    exchange.release()
    pool.close()


async def test_a_trickled_head_does_not_hold_the_first_byte_deadline_open(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.01)

    pool = Connections(asyncio.get_running_loop())
    loop = asyncio.get_running_loop()
    begun = loop.time()
    with pytest.raises(TimeoutError):
        await pool.request(await serve(handler), REQUEST, connect_timeout=1, first_byte_timeout=0.2)
    assert loop.time() - begun < 1.5
    pool.close()


async def test_a_long_answer_is_read_in_pieces_with_bounded_buffering(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    size = 8 << 20

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        piece = b"x" * 65536
        for _ in range(size // len(piece)):
            writer.write(piece)
            await writer.drain()
        await reader.read()

    pool = Connections(asyncio.get_running_loop())
    exchange = await pool.request(
        await serve(handler), REQUEST, connect_timeout=1, first_byte_timeout=2
    )
    assert exchange.content_length == size
    first = await exchange.read(2, limit=1 << 20)
    assert not exchange.complete
    assert (1 << 20) < len(first) < size
    received = len(first)
    while piece := await exchange.readany(2):
        received += len(piece)
        assert exchange._buffered <= 2 << 20  # paused reading keeps the backlog bounded
    assert received == size
    assert exchange.complete
    exchange.release()
    pool.close()
