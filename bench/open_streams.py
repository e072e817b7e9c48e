"""Open streams: thousands of concurrent slow SSE streams through one proxy process, and
what each costs the proxy in memory and CPU, against the Rust vllm-router on the same
streams (issue 11, point 4).

Several zeta-sim pods on loopback emit a token every ``--itl`` seconds to every stream
(preset 4b, slots far above the streams each pod holds, time scaled so that one decode
step lasts ``--itl``); every stream asks for enough tokens to stay open through the
whole measurement. One asyncio load generator opens ``--streams`` chat streams at
``--rate`` per second through the proxy and holds them open; per stream it records the
time to the first body byte, the longest gap between two reads (a stream whose longest
gap exceeds 5x the inter-token time + 1 s is *stalled*) and whether it ended with
``[DONE]``. Meanwhile it samples the proxy's resident memory (``VmRSS``) and CPU time
(``utime + stime``) from ``/proc``; the steady window opens a second after the last
stream's first byte and lasts ``--window`` seconds.

Targets in one run, on the same pods and the same streams: direct to the pods (the load
generator's sanity), zeta-sidecar (one process, its full routing path, table from a
file) and vllm-router (``round_robin``). The proxy is pinned to CPU 1, the pods and the
load generator to CPU 0. Figures: resident memory idle, steady and peak; MiB per 1,000
streams above idle; CPU per stream-second; stalls; ratios to vllm-router.

Bounded: about 40 s per target with the defaults (``--quick``: 200 streams, a few
seconds each, the form ``make test`` runs). Loopback only. Writes a markdown report to
stdout and ``bench/results/open_streams.md`` (``--report`` elsewhere).

Usage: ``python bench/open_streams.py [--streams 2000] [--pods 4] [--itl 0.5] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import peers

from zeta_api import TABLE_API_VERSION, TABLE_KIND
from zeta_testbed.harness import Child, StartError, free_port, free_ports, wait_http
from zeta_testbed.sidecar import SIDECAR, sidecar_argv
from zeta_testbed.sim.presets import PRESETS

RESULTS = peers.ROOT / "bench" / "results" / "open_streams.md"
PRESET = PRESETS["4b"]
MODEL = PRESET.default_model_name
RESERVED_FDS = 512
"""Descriptors beyond two per stream: listeners, logs, the pods' own, warm-up streams."""
RSS_TARGET_MIB = 300.0
TARGET_STREAMS = 2000
"""Issue 11's bound: one sidecar process holding 2,000 streams in under 300 MiB."""


@dataclass(frozen=True, slots=True)
class Plan:
    streams: int
    pods: int
    itl: float
    """Seconds between two tokens of one stream, as the pods are set up to emit them."""
    rate: float
    """Streams opened per second."""
    window: float
    """Seconds of the steady window, every stream open."""

    @property
    def per_pod(self) -> int:
        return math.ceil(self.streams / self.pods)

    @property
    def capacity(self) -> int:
        # Slots far above the streams a pod holds: a step then lasts within 6 % of --itl
        # whether the batch is full or not (the preset's batch penalty is 0.5 when full).
        return 8 * self.per_pod

    @property
    def time_scale(self) -> float:
        return PRESET.decode_seconds_per_token / self.itl

    @property
    def stall_after(self) -> float:
        return 5 * self.itl + 1.0

    @property
    def max_tokens(self) -> int:
        # Long enough that the last stream opened is still open when the window closes,
        # with a margin for the first token's wait and the window's late start.
        lifetime = self.streams / self.rate + 2.0 + self.window + 3.0
        return math.ceil(lifetime / self.itl)


# --- the load generator --------------------------------------------------------------------


@dataclass(slots=True)
class Stream:
    sent: float
    reads: array[float] = field(default_factory=lambda: array("d"))
    """Monotonic time of every read that brought body bytes."""
    status: int = 0
    done: bool = False
    """It ended with ``data: [DONE]``."""
    error: str = ""

    @property
    def first(self) -> float | None:
        return self.reads[0] if self.reads else None

    @property
    def last(self) -> float | None:
        return self.reads[-1] if self.reads else None

    def max_gap(self, start: float = 0.0, end: float = math.inf) -> float:
        """The longest wait between two reads, of those that ended within [start, end]."""
        reads = self.reads
        return max(
            (b - a for a, b in itertools.pairwise(reads) if start <= b <= end),
            default=0.0,
        )


async def _stream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    rec: Stream,
    settled: Callable[[], None] = lambda: None,
) -> None:
    """One stream read to its end into ``rec``; ``settled`` is called once, at its first
    body byte or at its end without one."""
    headers = {"Content-Type": "application/json"}
    tail = b""
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            rec.status = resp.status
            async for chunk in resp.content.iter_any():
                rec.reads.append(time.monotonic())
                if len(rec.reads) == 1:
                    settled()
                tail = (tail + chunk)[-32:]
            rec.done = resp.status == 200 and tail.endswith(b"data: [DONE]\n\n")
            if not rec.done:
                rec.error = f"status {resp.status}, ended {tail!r}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        rec.error = f"{type(exc).__name__}: {exc}"[:200]
    except asyncio.CancelledError:
        rec.error = "still open when the run ended"
        raise
    finally:
        if not rec.reads:
            settled()


def _body(max_tokens: int) -> bytes:
    return json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
         "max_tokens": max_tokens, "stream": True}
    ).encode()  # fmt: skip


def _tree(pids: Sequence[int]) -> list[int]:
    return [*pids, *(c for pid in pids for c in peers.children(pid))]


def _rss_mib(pids: Sequence[int], field: str = "VmRSS") -> float:
    return sum(peers.memory_kib(pid, field) for pid in _tree(pids)) / 1024


def _cpu(pids: Sequence[int]) -> float:
    return sum(peers.cpu_seconds(pid) for pid in _tree(pids))


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Outcome:
    name: str
    streams: list[Stream]
    window: tuple[float, float]
    proxy: bool
    idle_rss: float = 0.0
    steady_rss: float = 0.0
    peak_rss: float = 0.0
    window_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)

    def stream_seconds(self) -> float:
        """Seconds of open streams inside the window, summed over streams."""
        start, end = self.window
        total = 0.0
        for s in self.streams:
            if s.first is not None and s.last is not None:
                total += max(0.0, min(end, s.last) - max(start, s.first))
        return total

    def stalled(self, after: float) -> int:
        return sum(1 for s in self.streams if s.first is None or s.max_gap() > after)

    def stall_ends(self, after: float) -> list[float]:
        """When each stall over ``after`` seconds ended, in seconds from the window's start:
        one moment for many streams points at one pod's step or one process's pause."""
        ends = []
        for s in self.streams:
            reads = s.reads
            ends += [b - self.window[0] for a, b in itertools.pairwise(reads) if b - a > after]
        return sorted(ends)


async def _sample(pids: Sequence[int], out: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append((time.monotonic(), _rss_mib(pids)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def _drive(name: str, urls: Sequence[str], pids: Sequence[int], plan: Plan) -> Outcome:
    """``plan.streams`` streams, the i-th to ``urls[i % len(urls)]``; ``pids`` the proxy's."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=plan.stall_after * 3)
    # One connection per stream, none reused across targets: what clients of a gateway do.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm-up: the proxy's code paths, pools and lazy imports, before "idle" is read.
        warm = [Stream(time.monotonic()) for _ in range(20)]
        await asyncio.gather(
            *(_stream(session, urls[i % len(urls)], _body(2), w) for i, w in enumerate(warm))
        )
        if not all(w.done for w in warm):
            raise RuntimeError(f"{name}: warm-up failed: {[w.error for w in warm][:3]}")
        await asyncio.sleep(1.0)
        outcome = Outcome(name, [], (0.0, 0.0), proxy=bool(pids))
        outcome.idle_rss = _rss_mib(pids)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(pids, outcome.samples, stop))
        body = _body(plan.max_tokens)
        tasks: list[asyncio.Task[None]] = []
        all_settled = asyncio.Event()
        pending = plan.streams

        def settled() -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                all_settled.set()

        start = time.monotonic()
        for i in range(plan.streams):
            delay = start + i / plan.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            rec = Stream(time.monotonic())
            outcome.streams.append(rec)
            url = urls[i % len(urls)]
            tasks.append(asyncio.create_task(_stream(session, url, body, rec, settled)))
        # The window opens a second after every stream has its first byte (or has failed).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_settled.wait(), 10 * plan.itl + 10)
        await asyncio.sleep(1.0)
        w_start, cpu0, self0 = time.monotonic(), _cpu(pids), _self_cpu()
        await asyncio.sleep(plan.window)
        w_end, cpu1, self1 = time.monotonic(), _cpu(pids), _self_cpu()
        outcome.window = (w_start, w_end)
        outcome.window_cpu, outcome.loadgen_cpu = cpu1 - cpu0, self1 - self0
        await asyncio.wait(tasks, timeout=plan.max_tokens * plan.itl * 2 + 30)
        # The kernel's high-water mark catches a peak between two samples.
        high_water = _rss_mib(pids, "VmHWM")
        for task in tasks:
            task.cancel()  # bounded: a stream still open now is reported as not done
        stop.set()
        await sampler
        steady = [rss for t, rss in outcome.samples if w_start <= t <= w_end]
        outcome.steady_rss = statistics.median(steady) if steady else 0.0
        outcome.peak_rss = max([high_water, *(rss for _, rss in outcome.samples)])
    return outcome


# --- the run -------------------------------------------------------------------------------


def _table(ports: Sequence[int], capacity: int) -> str:
    endpoints = [
        {"address": f"127.0.0.1:{p}", "pod": f"sim-{i}", "weight": 1.0, "capacity": capacity}
        for i, p in enumerate(ports)
    ]
    return json.dumps(
        {
            "apiVersion": TABLE_API_VERSION,
            "kind": TABLE_KIND,
            "router": "bench/streams",
            "revision": 1,
            "generatedAt": "2026-01-01T00:00:00Z",
            "models": {
                MODEL: {"servedModelName": MODEL, "tier": 1, "weight": 1.0,
                        "endpoints": endpoints},
            },
        }
    )  # fmt: skip


def _raise_fd_limit(plan: Plan) -> int:
    """This process's soft open-files limit up to the hard one, which every process it
    starts inherits; exits when even the hard limit cannot hold the run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * plan.streams + RESERVED_FDS  # a proxy: every stream in, every stream out
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {need} needed for {plan.streams} streams")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _sidecar_extra() -> tuple[str, ...]:
    # One process, whatever the default: `--workers` (issue 11, point 3) may default to
    # every core where it exists; a sidecar without it is one process anyway.
    out = subprocess.run([str(SIDECAR), "--help"], capture_output=True, text=True, check=False)
    return ("--workers", "1") if "--workers" in out.stdout else ()


def run(plan: Plan, include_peer: bool) -> str:
    if include_peer:
        peers.ensure_vllm_router()
    fd_limit = _raise_fd_limit(plan)
    os.sched_setaffinity(0, {int(peers.LOAD_CPU)})  # the load generator beside the pods
    workdir = Path(tempfile.mkdtemp(prefix="zeta-streams-bench-"))
    procs = peers.Processes(workdir)
    pod_ports = free_ports(plan.pods)
    outcomes: list[Outcome] = []
    notes: list[str] = []
    try:
        for i, port in enumerate(pod_ports):
            sim = procs.start(
                f"sim-{i}",
                [sys.executable, "-m", "zeta_testbed.sim.cli", "--port", str(port),
                 "--preset", PRESET.name, "--capacity", str(plan.capacity),
                 "--time-scale", f"{plan.time_scale:g}", "--log-level", "WARNING"],
                peers.LOAD_CPU,
            )  # fmt: skip
            wait_http(f"http://127.0.0.1:{port}/health", sim)
        pods = [f"http://127.0.0.1:{p}" for p in pod_ports]

        # Direct: each stream to the next pod, as a round-robin proxy would send it.
        peers.log(f"{plan.streams} streams direct to the pods")
        outcomes.append(asyncio.run(_drive("direct (no proxy)", [_url(p) for p in pods], [], plan)))

        table = workdir / "routing.json"
        table.write_text(_table(pod_ports, plan.capacity))
        port, admin = free_ports(2)
        argv = sidecar_argv(("--table-file", str(table)), port=port, admin_port=admin,
                            extra=("--log-level", "WARNING", *_sidecar_extra()))  # fmt: skip
        sidecar = procs.start("zeta-sidecar", argv, peers.PROXY_CPU)
        wait_http(f"http://127.0.0.1:{admin}/readyz", sidecar)
        outcomes.append(_through("zeta-sidecar", f"http://127.0.0.1:{port}", sidecar, plan))
        procs.stop(sidecar)

        if include_peer:
            port = free_port()
            router = procs.start("vllm-router", peers.vllm_router_argv(port, pods), peers.PROXY_CPU)
            try:
                wait_http(f"http://127.0.0.1:{port}/health", router, within=90)
            except StartError as exc:
                notes.append(f"vllm-router did not start: {str(exc)[-300:]}")
            else:
                name = "vllm-router (round_robin)"
                outcomes.append(_through(name, f"http://127.0.0.1:{port}", router, plan))
            procs.stop(router)
    finally:
        procs.stop_all()
    return report(plan, outcomes, fd_limit=fd_limit, notes=notes)


def _url(base: str) -> str:
    return f"{base}/v1/chat/completions"


def _through(name: str, base: str, child: Child, plan: Plan) -> Outcome:
    peers.log(f"{plan.streams} streams through {name}")
    return asyncio.run(_drive(name, [_url(base)], [child.process.pid], plan))


# --- the report ----------------------------------------------------------------------------


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def _per_thousand(o: Outcome, streams: int) -> float:
    return (o.steady_rss - o.idle_rss) / streams * 1000


def _us_per_stream_second(o: Outcome) -> float:
    seconds = o.stream_seconds()
    return o.window_cpu / seconds * 1e6 if seconds else float("nan")


def report(plan: Plan, outcomes: list[Outcome], *, fd_limit: int, notes: list[str]) -> str:
    uvloop = "yes" if _has_uvloop() else "no"
    lines = [
        "# Open streams",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`python {' '.join(sys.argv)}`.",
        "",
        *peers.machine(),
        "",
        f"{plan.streams:,} chat streams opened at {plan.rate:g}/s over {plan.pods} zeta-sim "
        f"pods (preset {PRESET.name}, {plan.capacity} slots each, time scale "
        f"{plan.time_scale:g}: a token every {plan.itl:g} s per stream), {plan.max_tokens} "
        f"tokens each, so every stream is open through the {plan.window:g} s steady window. "
        f"Proxy pinned to CPU {peers.PROXY_CPU}, pods and load generator (one asyncio "
        f"process) to CPU {peers.LOAD_CPU}; open-files limit {fd_limit}. A stream is "
        f"*stalled* when two reads are more than {plan.stall_after:g} s apart (5x the "
        "inter-token time + 1 s) or no byte came. zeta-sidecar: one process, its full routing "
        f"path (table file, weighted P2C, retry budget, metrics), uvloop: {uvloop}. "
        "vllm-router: `--policy round_robin`, its defaults otherwise. Memory is the "
        "process's resident set (`VmRSS`): idle after a warm-up, steady as the median over "
        "the window, peak as the kernel's high-water mark (`VmHWM`); CPU is `utime + stime` "
        "over the window divided by the stream-seconds open in it.",
        "",
        _row("path", "completed", "stalled", "longest gap (in the window)", "TTFB p50", "TTFB p99",
             "RSS idle", "RSS steady", "RSS peak", "MiB per 1,000 streams", "CPU of a core",
             "CPU per stream-second", "load generator CPU"),
        _row(*["---"] + ["---:"] * 12),
    ]  # fmt: skip
    for o in outcomes:
        ttfb = [s.first - s.sent for s in o.streams if s.first is not None]
        gaps = [s.max_gap() for s in o.streams]
        window_gaps = [s.max_gap(*o.window) for s in o.streams]
        span = o.window[1] - o.window[0]
        cells = [
            o.name,
            f"{sum(s.done for s in o.streams):,}/{len(o.streams):,}",
            str(o.stalled(plan.stall_after)),
            f"{max(gaps, default=0.0):.2f} s ({max(window_gaps, default=0.0):.2f} s)",
            f"{_pct(ttfb, 0.5) * 1e3:.1f} ms",
            f"{_pct(ttfb, 0.99) * 1e3:.1f} ms",
        ]
        if o.proxy:
            cells += [
                f"{o.idle_rss:.1f} MiB",
                f"{o.steady_rss:.1f} MiB",
                f"{o.peak_rss:.1f} MiB",
                f"{_per_thousand(o, plan.streams):.1f}",
                f"{100 * o.window_cpu / span:.1f} %",
                f"{_us_per_stream_second(o):.1f} us",
            ]
        else:
            cells += ["-"] * 6
        cells.append(f"{100 * o.loadgen_cpu / span:.1f} %")
        lines.append(_row(*cells))
    by_name = {o.name.split(" ")[0]: o for o in outcomes}
    sidecar, peer = by_name.get("zeta-sidecar"), by_name.get("vllm-router")
    if sidecar is not None and peer is not None:

        def ratio(mine: float, theirs: float) -> str:
            return f"{mine / theirs:.2f}x" if theirs > 0 else "-"

        lines += [
            "",
            "Ratios (zeta-sidecar / vllm-router, same run, same streams):",
            "",
            _row("RSS steady", "MiB per 1,000 streams above idle", "RSS peak",
                 "CPU per stream-second"),
            _row(*["---:"] * 4),
            _row(ratio(sidecar.steady_rss, peer.steady_rss),
                 ratio(_per_thousand(sidecar, plan.streams), _per_thousand(peer, plan.streams)),
                 ratio(sidecar.peak_rss, peer.peak_rss),
                 ratio(_us_per_stream_second(sidecar), _us_per_stream_second(peer))),
        ]  # fmt: skip
    if sidecar is not None:
        met = (
            sidecar.peak_rss < RSS_TARGET_MIB
            and sidecar.stalled(plan.stall_after) == 0
            and all(s.done for s in sidecar.streams)
        )
        verdict = f"**{'met' if met else 'not met'}**"
        if plan.streams != TARGET_STREAMS:
            verdict = f"not judged: {plan.streams:,} streams here"
        lines += [
            "",
            f"Target (issue 11): {TARGET_STREAMS:,} open streams through one sidecar process "
            f"with RSS under {RSS_TARGET_MIB:g} MiB and no stream stalled: {verdict} "
            f"(peak {sidecar.peak_rss:.1f} MiB, {sidecar.stalled(plan.stall_after)} stalled).",
        ]
    for o in outcomes:
        errors = sorted({s.error for s in o.streams if s.error})
        if errors:
            failed = sum(1 for s in o.streams if s.error)
            notes.append(f"{o.name}: {failed} streams failed, e.g. {'; '.join(errors[:3])}")
        ends = o.stall_ends(plan.stall_after)
        if ends:
            notes.append(
                f"{o.name}: {len(ends)} stalls ended between {ends[0]:+.2f} s and "
                f"{ends[-1]:+.2f} s from the window's start "
                f"(median {statistics.median(ends):+.2f} s)"
            )
    if notes:
        lines += ["", *(f"Note: {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _has_uvloop() -> bool:
    out = subprocess.run([sys.executable, "-c", "import uvloop"], capture_output=True, check=False)
    return out.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000, help="open streams (<= 5000)")
    parser.add_argument("--pods", type=int, default=4, help="zeta-sim pods")
    parser.add_argument("--itl", type=float, default=0.5, help="seconds between two tokens")
    parser.add_argument("--rate", type=float, default=200.0, help="streams opened per second")
    parser.add_argument("--window", type=float, default=20.0, help="steady seconds (<= 120)")
    parser.add_argument("--no-peer", action="store_true", help="without vllm-router")
    quick = "200 streams, a token every 0.1 s, a 2 s window (make test)"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--report", type=Path, default=RESULTS, help="where to write it")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.itl, args.window, args.rate = 200, 0.1, 2.0, 400.0
    if not 1 <= args.streams <= 5000 or not 1 <= args.pods <= 16:
        parser.error("--streams must be 1..5000 and --pods 1..16")
    if not 0.05 <= args.itl <= 5 or not 1 <= args.window <= 120 or args.rate <= 0:
        parser.error("--itl must be 0.05..5 s, --window 1..120 s, --rate positive")
    if (os.cpu_count() or 1) < 2:
        parser.error("needs 2 cores: one for the proxy, one for the pods and the load")
    plan = Plan(args.streams, args.pods, args.itl, args.rate, args.window)
    text = run(plan, include_peer=not args.no_peer)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
