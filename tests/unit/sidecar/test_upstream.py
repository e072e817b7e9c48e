"""The lean HTTP/1.1 client against raw servers: framing, keep-alive, failures."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from zeta_sidecar.upstream import ConnectFailed, Disconnected, Pool, ProtocolError

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

    pool = Pool(asyncio.get_running_loop())
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

    pool = Pool(asyncio.get_running_loop())
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

    pool = Pool(asyncio.get_running_loop())
    address = await serve(handler)
    for _ in range(3):
        exchange = await pool.request(address, REQUEST, connect_timeout=1, first_byte_timeout=2)
        assert await exchange.read(2) == b"ok"
        exchange.release()
        await asyncio.sleep(0.01)
    pool.close()


async def test_failures_map_to_their_exceptions(serve: Callable[[Handler], Awaitable[str]]) -> None:
    pool = Pool(asyncio.get_running_loop())
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

    pool = Pool(asyncio.get_running_loop())
    exchange = await pool.request(
        await serve(handler), REQUEST, connect_timeout=1, first_byte_timeout=1
    )
    assert await exchange.read(1) == b'{"a": 1}'
    exchange.release()
    pool.close()
