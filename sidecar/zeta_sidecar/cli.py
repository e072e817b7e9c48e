"""Command line of ``zeta-sidecar``: parse, serve, drain on SIGTERM.

At start-up the soft limit on open files is raised to the hard limit (logged): the caps on
client connections (``--max-connections``, derived from that limit by default) keep room
for pod connections and the admin port.

Shutdown, on SIGTERM or SIGINT: ``/readyz`` turns false at once; after ``--drain-delay``
(time for endpoints controllers to stop sending new connections) the traffic listener
closes; requests in flight get ``--drain-grace`` seconds to finish; then the process
exits 0.

``--workers`` (default: the CPUs the container may use, :mod:`~zeta_sidecar.cpu_quota`):
1 serves in this process as described; more fork that many workers, each served as
here, under a parent that serves the admin port (:mod:`~zeta_sidecar.supervisor`).
"""

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Coroutine
from importlib import metadata
from pathlib import Path

from aiohttp import web

from zeta_sidecar.admin import admin_app
from zeta_sidecar.app import TrafficRunner, runners
from zeta_sidecar.build_form import describe
from zeta_sidecar.cpu_quota import default_workers
from zeta_sidecar.fd_limits import listen_backlog, raise_fd_limit
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.settings import DEFAULT_MAX_BODY_BYTES, ConfigMapRef, Settings
from zeta_sidecar.supervisor import run_group

__all__ = ["main", "parse_args", "serve"]

logger = logging.getLogger("zeta_sidecar")


def _configmap(text: str) -> ConfigMapRef:
    try:
        return ConfigMapRef.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> tuple[Settings, str]:
    """Settings and log level from the command line; exits with a usage error if bad."""
    parser = argparse.ArgumentParser(
        prog="zeta-sidecar",
        description="Zeta Router sidecar: an OpenAI-compatible proxy balancing requests "
        "over the pods of a routing table.",
    )
    parser.add_argument(
        "--version", action="version", version=_version(), help="version and form, then exit"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--table-file", type=Path, help="routing table file (mounted ConfigMap)")
    source.add_argument(
        "--configmap", type=_configmap, metavar="NS/NAME", help="ConfigMap to watch via the API"
    )
    parser.add_argument("--kubeconfig", type=Path, help="for --configmap; default in-cluster")
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8080, help="traffic port (default 8080)")
    parser.add_argument("--admin-port", type=int, default=9090, help="admin port (default 9090)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="open traffic connections at most; at the cap an idle keep-alive connection "
        "makes room, else the new one is closed at once (default: half the file "
        "descriptors left after a reserve of 256)",
    )
    parser.add_argument(
        "--max-connections-per-client",
        type=int,
        default=0,
        help="open traffic connections per client address at most (default 0: no cap, as "
        "all traffic may come from one ingress address)",
    )
    parser.add_argument(
        "--head-timeout",
        type=float,
        default=10.0,
        help="seconds to send a request head, from its first byte (default 10; then 408)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds a request body may stall without a byte (default 30; then 408)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=620.0,
        help="seconds a keep-alive connection may idle between requests (default 620)",
    )
    parser.add_argument(
        "--drain-delay", type=float, default=0.0, help="seconds between SIGTERM and closing"
    )
    parser.add_argument(
        "--drain-grace", type=float, default=30.0, help="seconds in-flight requests get"
    )
    parser.add_argument(
        "--file-poll-interval", type=float, default=0.1, help="seconds between table file checks"
    )
    parser.add_argument(
        "--probe-interval", type=float, default=0.1, help="seconds between ejected-pod checks"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes serving the traffic port together (SO_REUSEPORT), the admin port "
        "merging them (default: the CPUs the container may use, from its cgroup's CPU "
        "quota rounded up, else the CPUs it may run on); caps such as --max-connections "
        "are per worker",
    )
    parser.add_argument("--seed", type=int, default=None, help="picker seed (tests)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    try:
        settings = Settings(
            host=args.host,
            port=args.port,
            admin_port=args.admin_port,
            table_file=args.table_file,
            configmap=args.configmap,
            kubeconfig=args.kubeconfig,
            max_body_bytes=args.max_body_bytes,
            max_connections=args.max_connections,
            max_connections_per_client=args.max_connections_per_client,
            head_timeout=args.head_timeout,
            body_timeout=args.body_timeout,
            idle_timeout=args.idle_timeout,
            drain_delay=args.drain_delay,
            drain_grace=args.drain_grace,
            seed=args.seed,
            workers=default_workers() if args.workers is None else args.workers,
            file_poll_interval=args.file_poll_interval,
            probe_interval=args.probe_interval,
        )
    except ValueError as exc:
        parser.error(str(exc))
    return settings, str(args.log_level)


def _version() -> str:
    """``zeta-sidecar VERSION, compiled (mypyc): N modules`` or ``..., pure Python``."""
    try:
        version = metadata.version("zeta-router")
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        version = "(not installed)"
    return f"zeta-sidecar {version}, {describe()}"


async def serve(
    settings: Settings, stop: asyncio.Event, *, admin_socket: socket.socket | None = None
) -> None:
    """Serve until ``stop`` is set, then drain.

    ``admin_socket``: a worker of a group, whose admin application answers the group's
    parent on that (listening) socket, and which shares the traffic port with the others.
    """
    gateway = Gateway(settings)
    admin: web.AppRunner
    if admin_socket is None:
        traffic, admin = runners(gateway, grace=settings.drain_grace)
        await admin.setup()
        await web.TCPSite(admin, settings.host, settings.admin_port).start()
    else:  # no gate: only the parent connects, and the parent's admin port has one
        traffic = TrafficRunner(gateway, shutdown_timeout=settings.drain_grace)
        admin = web.AppRunner(admin_app(gateway), access_log=None, shutdown_timeout=1.0)
        await admin.setup()
        await web.SockSite(admin, admin_socket).start()
    await traffic.setup()
    try:
        reuse_port = True if settings.workers > 1 else None  # None: aiohttp's default
        await web.TCPSite(
            traffic, settings.host, settings.port, reuse_port=reuse_port, backlog=listen_backlog()
        ).start()
        role = "as a worker" if admin_socket is not None else f"admin on {settings.admin_port}"
        logger.info("serving on %s:%d, %s", settings.host, settings.port, role)
        await stop.wait()
        gateway.draining = True
        logger.info("draining: readiness off, listener closes in %.1f s", settings.drain_delay)
        await asyncio.sleep(settings.drain_delay)
    finally:
        # Closes the listener, waits up to drain_grace for handlers, then cleans up.
        await traffic.cleanup()
        await admin.cleanup()
    logger.info("drained, exiting")


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


async def _worker_main(settings: Settings, admin: socket.socket, lifeline: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def orphaned() -> None:  # the lifeline's write end closed: the parent is gone
        loop.remove_reader(lifeline)
        logger.warning("the group's parent is gone: draining")
        stop.set()

    loop.add_reader(lifeline, orphaned)
    await serve(settings, stop, admin_socket=admin)


def _worker(settings: Settings, admin: socket.socket, lifeline: int) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        _run(_worker_main(settings, admin, lifeline))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``zeta-sidecar``."""
    settings, level = parse_args(argv)
    # Several processes write to one stream: each line says which.
    name = "%(name)s[%(process)d]" if settings.workers > 1 else "%(name)s"
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {name}: %(message)s")
    _raise_fd_limit()
    if settings.workers > 1:
        return run_group(settings, _worker)
    with contextlib.suppress(KeyboardInterrupt):
        _run(_main(settings))
    return 0


def _raise_fd_limit() -> None:
    before, after, hard = raise_fd_limit()
    if after > before:
        logger.info("open files: soft limit raised from %d to %d (the hard limit)", before, after)
    elif before < hard:
        logger.warning(
            "open files: could not raise the soft limit %d to the hard limit %d", before, hard
        )
    else:
        logger.info("open files: soft limit %d is the hard limit already", before)


def _run(main: Coroutine[None, None, None]) -> None:
    """Run on uvloop when it is installed: a faster event loop for the same code.

    Optional, imported lazily: without it the standard loop serves (more slowly).
    """
    try:
        import uvloop  # noqa: PLC0415  # an optional dependency
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
