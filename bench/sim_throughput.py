"""Requests per second of one zeta-sim process on one core, at a fast time scale.

The sim must never be what limits a benchmark of the router, so this measures its
ceiling: the server runs in its own process pinned to one CPU, this script's asyncio
client runs on the others (where there are others), and time runs fast enough that the
simulated GPU is never the limit; what remains is the cost of HTTP, JSON and the
engine's bookkeeping. The server's CPU use is reported too: near 100 % of a core means
the server was the bottleneck and the figure is its ceiling; well below means the
client was, and the server can do more.

Bounded in both count and time:

    .venv/bin/python bench/sim_throughput.py                 # 3,000 requests, <= 30 s
    .venv/bin/python bench/sim_throughput.py --stream --max-tokens 16
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import aiohttp
from peers import cpu_seconds

_SERVING = re.compile(rb"on (http://127\.0\.0\.1:\d+)")


@dataclass(frozen=True, slots=True)
class Result:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu_seconds: float


def _pin(pid: int, cpus: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        os.sched_setaffinity(pid, cpus)


async def _start_server(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, str]:
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zeta_testbed.sim.cli",
        "--port=0",
        f"--preset={args.preset}",
        f"--time-scale={args.time_scale}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert server.stderr is not None
    line = await asyncio.wait_for(server.stderr.readline(), timeout=20)
    match = _SERVING.search(line)
    if match is None:
        server.kill()
        raise RuntimeError(f"zeta-sim did not start: {line!r}")
    return server, match.group(1).decode()


async def _drain(stream: asyncio.StreamReader) -> None:
    # Keep reading the server's log so that a full pipe never blocks it.
    while await stream.readline():
        pass


async def _load(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, object],
    *,
    requests: int,
    concurrency: int,
    deadline: float,
) -> tuple[int, int, list[float]]:
    issued = 0
    errors = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal issued, errors
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            started = time.perf_counter()
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) + errors, errors, latencies


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""
_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


async def _load_wrk(
    url: str, body: dict[str, object], *, cpus: list[int], args: argparse.Namespace
) -> tuple[int, int, float]:
    """wrk (C, event-driven) as the client: it needs far less CPU per request than
    asyncio, so the server, not the client, is what saturates."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_SCRIPT % json.dumps(body))
        script.flush()
        argv = [
            "wrk",
            "-t1",
            f"-c{args.concurrency}",
            f"-d{min(args.duration, 10):.0f}s",
            "-s",
            script.name,
            url,
        ]
        if len(cpus) > 1 and shutil.which("taskset"):
            argv = ["taskset", "-c", ",".join(map(str, cpus[1:])), *argv]
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output = (await process.communicate())[0].decode()
    rps = _WRK_RPS.search(output)
    if rps is None:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    errors = _WRK_ERRORS.search(output)
    seconds = min(args.duration, 10)
    return round(float(rps.group(1)) * seconds), int(errors.group(1)) if errors else 0, seconds


async def _run(args: argparse.Namespace) -> Result:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    server, base = await _start_server(args)
    assert server.stderr is not None
    drain = asyncio.create_task(_drain(server.stderr))
    _pin(server.pid, {cpus[0]})
    if len(cpus) > 1:
        _pin(0, set(cpus[1:]))
    url = f"{base}/v1/completions"
    body: dict[str, object] = {
        "model": f"sim-{args.preset}",
        "prompt": "x" * 256,
        "max_tokens": args.max_tokens,
        "stream": args.stream,
    }
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            # Warm up connections and code paths; not measured.
            await _load(
                session,
                url,
                body,
                requests=100,
                concurrency=args.concurrency,
                deadline=time.perf_counter() + 10,
            )
            cpu_before = cpu_seconds(server.pid)
            started = time.perf_counter()
            latencies: list[float] = []
            if args.client == "wrk":
                done, errors, _ = await _load_wrk(url, body, cpus=cpus, args=args)
            else:
                done, errors, latencies = await _load(
                    session,
                    url,
                    body,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    deadline=started + args.duration,
                )
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), timeout=10)
        except TimeoutError:
            server.kill()
            await server.wait()
        await drain
    return Result(
        requests=done, errors=errors, seconds=seconds, latencies=latencies, server_cpu_seconds=cpu
    )


def _report(args: argparse.Namespace, result: Result) -> str:
    mode = "streaming" if args.stream else "non-streaming"
    lines = [
        f"zeta-sim throughput: preset {args.preset}, time scale {args.time_scale:g}, "
        f"max_tokens {args.max_tokens}, concurrency {args.concurrency}, {mode}, "
        f"client {args.client}",
        f"  {result.requests} requests in {result.seconds:.2f} s: "
        f"{result.requests / result.seconds:.0f} req/s ({result.errors} errors)",
    ]
    if len(result.latencies) >= 2:
        cuts = statistics.quantiles(result.latencies, n=100)
        lines.append(f"  latency p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms")
    lines.append(
        f"  server CPU {100 * result.server_cpu_seconds / result.seconds:.0f} % of one core"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--requests", type=int, default=3000, help="measured requests (after 100 warm-up)"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="stop issuing after this many seconds"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--time-scale", type=float, default=100.0)
    parser.add_argument("--preset", default="4b", choices=["4b", "7b", "14b"])
    parser.add_argument("--stream", action="store_true", help="SSE responses instead of JSON")
    parser.add_argument(
        "--client",
        choices=["wrk", "aiohttp"],
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="load generator: wrk (Debian package `wrk`; the default where installed) "
        "measures the server's ceiling, aiohttp needs nothing extra",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(_run(args))
    print(_report(args, result))
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
