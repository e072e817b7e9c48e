"""A TCP relay: the node's pods reach loopback-only testbed services through it.

The apiserver and Prometheus listen on 127.0.0.1, and no kube-proxy runs here, so a pod on
the node's bridge cannot reach either. The node starts one relay that listens on addresses
only the bridge can reach (the ``kubernetes`` Service's ClusterIP, the bridge's gateway)
and passes bytes through untouched: TLS ends at the apiserver, whose certificate names
``kubernetes.default.svc`` and the ClusterIP.

    python -m zeta_testbed.relay LISTEN_IP:PORT=TARGET_IP:PORT [...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence
from dataclasses import dataclass

CONNECT_TIMEOUT = 5.0
CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Route:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        listen, _, target = text.partition("=")
        lhost, _, lport = listen.rpartition(":")
        thost, _, tport = target.rpartition(":")
        if not (lhost and lport.isdigit() and thost and tport.isdigit()):
            raise argparse.ArgumentTypeError(f"expected LISTEN_IP:PORT=TARGET_IP:PORT: {text!r}")
        return cls(lhost, int(lport), thost, int(tport))

    def __str__(self) -> str:
        return f"{self.listen_host}:{self.listen_port}={self.target_host}:{self.target_port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        # Half-close: the other side may still be sending its answer.
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _handle(route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        target_reader, target_writer = await asyncio.wait_for(
            asyncio.open_connection(route.target_host, route.target_port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError):
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))
    finally:
        for end in (writer, target_writer):
            end.close()


async def serve(routes: Sequence[Route]) -> None:
    """Relay every route until SIGTERM or SIGINT."""
    servers = []
    for route in routes:

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route = route
        ) -> None:
            await _handle(route, reader, writer)

        servers.append(await asyncio.start_server(handle, route.listen_host, route.listen_port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("relaying " + ", ".join(str(route) for route in routes), flush=True)
    await stop.wait()
    for server in servers:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_testbed.relay", description=__doc__)
    parser.add_argument("routes", nargs="+", type=Route.parse, metavar="LISTEN=TARGET")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.routes))


if __name__ == "__main__":
    main()
