"""Proxy overhead: zeta-sidecar against direct, nginx and the Rust vllm-router.

What it measures, in one run, against the same backends and the same load generator:

- added latency p50/p99: ``wrk -c1`` (one keep-alive connection, one request at a
  time) through each proxy, minus the same figures direct to a backend;
- requests per second per core: ``wrk -c32`` through each proxy, the proxy pinned to
  one core (``taskset``), wrk and the backends on the other;
- streaming time to first byte with keep-alive: one reused connection, sequential
  SSE requests, time from sending to the first body chunk, proxy minus direct.

Backends are deliberately trivial so the proxy is what is measured: two nginx server
blocks answering a fixed chat-completion JSON (plain), and a minimal aiohttp SSE server
that sends its first event at once (streaming). zeta-sidecar runs its full routing path
(table lookup, body parse, model rewrite, weighted P2C, retry budget, metrics).

Installs what it lacks (``apt-get install wrk nginx``; ``vllm-router`` from PyPI into
``~/.cache/zeta-router/peers/vllm-router``, never the project venv). Bounded: about a
three minutes with the defaults. Loopback only. Writes a markdown table to stdout and
``bench/results/proxy_overhead.md``.

``--baseline DIR`` also serves the sidecar of another checkout (``DIR``'s packages, its
extensions built in place, e.g. main's) beside this one, loaded in turn like every other
target: a change's before and after in one run.

Usage: ``python bench/proxy_overhead.py [--seconds 4] [--connections 32] [--rounds 3]
[--baseline DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from peers import (
    LOAD_CPU,
    PROXY_CPU,
    ROOT,
    Processes,
    ensure_tools,
    log,
    vllm_router_argv,
)

from zeta_api import TABLE_API_VERSION, TABLE_KIND
from zeta_testbed.harness import StartError, free_port, wait_http
from zeta_testbed.sidecar import sidecar_argv

RESULTS = ROOT / "bench" / "results" / "proxy_overhead.md"
PURE_NAME = "zeta-sidecar (pure Python)"
BASELINE_NAME = "zeta-sidecar (baseline)"

CHAT_BODY = json.dumps(
    {
        "model": "bench",
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 8,
    }
)
ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-served",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11},
    }
)


# --- backends and proxies ------------------------------------------------------------------

SSE_BACKEND = """
import asyncio, json, sys
from aiohttp import web

EVENT = b'data: ' + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0,
    "model": "bench-served", "choices": [{"index": 0, "delta": {"content": " hi"},
    "finish_reason": None}]}).encode() + b'\\n\\n'

async def chat(request):
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(EVENT)
    for _ in range(3):
        await asyncio.sleep(0.001)
        await resp.write(EVENT)
    await resp.write(b'data: [DONE]\\n\\n')
    await resp.write_eof()
    return resp

async def health(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_post("/v1/chat/completions", chat)
app.router.add_get("/health", health)
app.router.add_get("/v1/models", lambda r: web.json_response({"object": "list", "data": []}))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def nginx_conf(workdir: Path, servers: str) -> Path:
    conf = workdir / f"nginx-{len(list(workdir.glob('nginx-*.conf')))}.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {conf.with_suffix(".pid")};
error_log {conf.with_suffix(".err")} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 1000000;
    {servers}
}}
"""
    )
    return conf


def backend_servers(ports: list[int]) -> str:
    answer = ANSWER.replace("'", "\\'")
    return "\n".join(
        f"""server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/json; return 200 '{answer}'; }}
    }}"""
        for port in ports
    )


def proxy_server(port: int, upstreams: list[int]) -> str:
    members = "\n".join(f"server 127.0.0.1:{p};" for p in upstreams)
    return f"""upstream backends{port} {{ {members} keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends{port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}"""


def sidecar_table(plain: list[int], sse: list[int]) -> str:
    def eps(ports: list[int]) -> list[dict[str, object]]:
        return [
            {"address": f"127.0.0.1:{p}", "pod": f"backend-{p}", "weight": 1.0, "capacity": 64}
            for p in ports
        ]

    return json.dumps(
        {
            "apiVersion": TABLE_API_VERSION,
            "kind": TABLE_KIND,
            "router": "bench/router",
            "revision": 1,
            "generatedAt": "2026-01-01T00:00:00Z",
            "models": {
                "bench": {"servedModelName": "bench-served", "tier": 1, "weight": 1.0,
                          "endpoints": eps(plain)},
                "bench-sse": {"servedModelName": "bench-served", "tier": 1, "weight": 1.0,
                              "endpoints": eps(sse)},
            },
        }
    )  # fmt: skip


# --- load generation -------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"cannot read wrk time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class WrkResult:
    rps: float
    p50: float
    p99: float
    errors: int


def wrk(url: str, script: Path, *, connections: int, seconds: int) -> WrkResult:
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
         "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*"):
        m = re.search(pattern, out)
        if m:
            errors += sum(int(n) for n in re.findall(r"\d+", m.group(0)))
    return WrkResult(rps, p50, p99, errors)


async def _ttfb(url: str, model: str, count: int) -> list[float]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 4, "stream": True}).encode()  # fmt: skip
    headers = {"Content-Type": "application/json"}
    times: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection, reused
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(count + 20):
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.content.readany()
                first = time.perf_counter() - start
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}: status {resp.status}")
            if i >= 20:  # warm-up
                times.append(first)
    return times


def ttfb(url: str, model: str, count: int = 400) -> tuple[float, float]:
    times = sorted(asyncio.run(_ttfb(url, model, count)))
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


# --- the run -------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    latency: WrkResult
    load: WrkResult
    ttfb: tuple[float, float]


def _median_row(name: str, results: list[tuple[WrkResult, WrkResult, tuple[float, float]]]) -> Row:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    lat = WrkResult(
        med([r[0].rps for r in results]),
        med([r[0].p50 for r in results]),
        med([r[0].p99 for r in results]),
        sum(r[0].errors for r in results),
    )
    load = WrkResult(
        med([r[1].rps for r in results]),
        med([r[1].p50 for r in results]),
        med([r[1].p99 for r in results]),
        sum(r[1].errors for r in results),
    )
    return Row(name, lat, load, (med([r[2][0] for r in results]), med([r[2][1] for r in results])))


def run(  # noqa: PLR0915  # one linear script
    seconds: int, connections: int, rounds: int, baseline: Path | None = None
) -> str:
    ensure_tools()
    workdir = Path(tempfile.mkdtemp(prefix="zeta-proxy-bench-"))
    procs = Processes(workdir)
    plain_ports = [free_port(), free_port()]
    sse_ports = [free_port(), free_port()]
    ports = {name: free_port() for name in ("nginx", "vllm-router")}
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(CHAT_BODY)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    uvloop = "yes" if _has_uvloop() else "no"
    try:
        backend = procs.start(
            "backend-nginx",
            ["nginx", "-c", str(nginx_conf(workdir, backend_servers(plain_ports)))],
            LOAD_CPU,
        )
        for port in sse_ports:
            sse = procs.start(
                f"backend-sse-{port}", [sys.executable, "-c", SSE_BACKEND, str(port)], LOAD_CPU
            )
            wait_http(f"http://127.0.0.1:{port}/health", sse)
        wait_http(f"http://127.0.0.1:{plain_ports[0]}/health", backend)

        nginx = procs.start(
            "proxy-nginx",
            [
                "nginx",
                "-c",
                str(
                    nginx_conf(
                        workdir,
                        proxy_server(ports["nginx"], plain_ports)
                        + proxy_server(free_port(), sse_ports),
                    )
                ),
            ],
            PROXY_CPU,
        )
        # nginx for SSE on its own port: read it back from the config we just wrote.
        nginx_sse_port = int(
            re.findall(r"listen 127\.0\.0\.1:(\d+)", (workdir / "nginx-1.conf").read_text())[-1]
        )
        wait_http(f"http://127.0.0.1:{ports['nginx']}/health", nginx)

        table = workdir / "routing.json"
        table.write_text(sidecar_table(plain_ports, sse_ports))
        # Each sidecar: (port, PID). Beside the one measured, the same code forced to pure
        # Python (the compiled form against its own source) and another checkout's.
        sidecars = {"zeta-sidecar": start_sidecar(procs, table, "proxy-zeta-sidecar")}
        form = sidecar_form()
        if form.startswith("compiled"):
            sidecars[PURE_NAME] = start_sidecar(
                procs, table, "proxy-zeta-sidecar-pure", {"ZETA_PURE_PYTHON": "1"}
            )
        if baseline:
            path = ":".join(str(baseline / p) for p in ("api", "operator", "sidecar", "testbed"))
            log(f"baseline {baseline}: {sidecar_form({'PYTHONPATH': path})}")
            sidecars[BASELINE_NAME] = start_sidecar(
                procs, table, "proxy-zeta-sidecar-baseline", {"PYTHONPATH": path}
            )

        router_note = ""
        vr_sse_port = free_port()

        def vllm_router(port: int, backends: list[int]) -> list[str]:
            return vllm_router_argv(
                port,
                [f"http://127.0.0.1:{p}" for p in backends],
                extra=("--disable-retries", "--disable-circuit-breaker"),
            )

        vrouter = procs.start(
            "proxy-vllm-router", vllm_router(ports["vllm-router"], plain_ports), PROXY_CPU
        )
        vrouter_sse = procs.start(
            "proxy-vllm-router-sse", vllm_router(vr_sse_port, sse_ports), PROXY_CPU
        )
        try:
            wait_http(f"http://127.0.0.1:{ports['vllm-router']}/health", vrouter, within=90)
            wait_http(f"http://127.0.0.1:{vr_sse_port}/health", vrouter_sse, within=90)
        except StartError as exc:
            router_note = f"vllm-router did not start: {str(exc)[-300:]}"
            log(router_note)

        targets = [
            (
                "direct (backend)",
                f"http://127.0.0.1:{plain_ports[0]}/v1/chat/completions",
                f"http://127.0.0.1:{sse_ports[0]}/v1/chat/completions",
                "bench-served",
            ),
            (
                "nginx",
                f"http://127.0.0.1:{ports['nginx']}/v1/chat/completions",
                f"http://127.0.0.1:{nginx_sse_port}/v1/chat/completions",
                "bench-served",
            ),
        ]
        for name, (port, _) in sidecars.items():
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            targets.append((name, url, url, "bench-sse"))
        if not router_note:
            targets.append(
                (
                    "vllm-router (round_robin)",
                    f"http://127.0.0.1:{ports['vllm-router']}/v1/chat/completions",
                    f"http://127.0.0.1:{vr_sse_port}/v1/chat/completions",
                    "bench-served",
                )
            )
        pids = {name: pid for name, (_, pid) in sidecars.items()}
        pids["vllm-router (round_robin)"] = vrouter.process.pid
        cpu_us: dict[str, list[float]] = {}
        for _, url, _, _ in targets:
            wrk(url, script, connections=connections, seconds=1)  # warm-up: pools, caches
        # Rounds, each target in turn: noise from other work on this shared machine then
        # hits every target alike, and the median of each figure is reported.
        runs: dict[str, list[tuple[WrkResult, WrkResult, tuple[float, float]]]] = {}
        for round_ in range(rounds):
            for name, url, sse_url, sse_model in targets:
                log(f"round {round_ + 1}/{rounds}: {name}")
                latency = wrk(url, script, connections=1, seconds=seconds)
                before = cpu_seconds(pids[name]) if name in pids else 0.0
                load = wrk(url, script, connections=connections, seconds=seconds)
                if name in pids:  # the proxy's CPU per request, whatever else shares its core
                    used = cpu_seconds(pids[name]) - before
                    cpu_us.setdefault(name, []).append(used / (load.rps * seconds) * 1e6)
                runs.setdefault(name, []).append((latency, load, ttfb(sse_url, sse_model, 200)))
        rows = [_median_row(name, results) for name, results in runs.items()]
    finally:
        procs.stop_all()
    per_round = {name: [r[1].rps for r in results] for name, results in runs.items()}
    # Each round's p50, p99 (wrk -c1) and first streamed byte p50, for the added figures
    # per round: one round's noise hits every target of that round alike.
    latency_rounds = {
        name: [(r[0].p50, r[0].p99, r[2][0]) for r in results] for name, results in runs.items()
    }
    return report(
        rows, seconds=seconds, connections=connections, rounds=rounds, uvloop=uvloop,
        note=router_note, form=form, per_round=per_round, cpu_us=cpu_us,
        latency_rounds=latency_rounds,
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sidecar(
    procs: Processes, table: Path, name: str, env: dict[str, str] | None = None
) -> tuple[int, int]:
    """A sidecar serving ``table`` on the proxy's core, as one process (the per-core
    figure: the default would also find 1 CPU under taskset, but the benchmark says what
    it measures); its port and PID. ``env``: what makes it another form (pure Python,
    another checkout's packages first on ``PYTHONPATH``)."""
    port, admin_port = free_port(), free_port()
    argv = sidecar_argv(
        ("--table-file", str(table)), port=port, admin_port=admin_port,
        extra=("--log-level", "WARNING", "--workers", "1"),
    )  # fmt: skip
    child = procs.start(name, argv, PROXY_CPU, env=env)
    wait_http(f"http://127.0.0.1:{admin_port}/readyz", child)
    return port, child.process.pid


def sidecar_form(env: dict[str, str] | None = None) -> str:
    """What ``zeta-sidecar --version`` says of the form that runs (with ``env`` added),
    e.g. ``compiled (mypyc): 16 modules`` or ``pure Python``."""
    out = subprocess.run(
        [*sidecar_argv((), port=0, admin_port=0)[:1], "--version"],
        capture_output=True, text=True, check=True, timeout=60, env={**os.environ, **(env or {})},
    ).stdout  # fmt: skip
    return out.strip().partition(", ")[2] or "unknown"


def _has_uvloop() -> bool:
    out = subprocess.run([sys.executable, "-c", "import uvloop"], capture_output=True, check=False)
    return out.returncode == 0


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def report(
    rows: list[Row],
    *,
    seconds: int,
    connections: int,
    rounds: int,
    uvloop: str,
    note: str,
    form: str,
    per_round: dict[str, list[float]],
    cpu_us: dict[str, list[float]],
    latency_rounds: dict[str, list[tuple[float, float, float]]] | None = None,
) -> str:
    direct = rows[0]
    by_name = {r.name: r for r in rows}
    peer = next((r for r in rows if r.name.startswith("vllm-router")), None)
    sidecar = by_name["zeta-sidecar"]
    lines = [
        "# Proxy overhead",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} "
        f"cores; proxy pinned to CPU {PROXY_CPU}, wrk and backends to CPU {LOAD_CPU}. "
        "Backends: nginx returning a fixed chat-completion JSON (plain) and a minimal aiohttp "
        "SSE server (first event at once; streaming). wrk: 1 thread; latency with 1 "
        f"connection, throughput with {connections} connections, {seconds} s each; "
        f"{rounds} rounds over all targets in turn, medians reported. "
        "zeta-sidecar with its full routing path (parse, model rewrite, weighted P2C, retry "
        f"budget, metrics); uvloop: {uvloop}; form: {form}"
        + (f", and the same forced to pure Python ({PURE_NAME!r})" if PURE_NAME in by_name
           else "")
        + (f"; {BASELINE_NAME!r}: another checkout's sidecar (--baseline)."
           if BASELINE_NAME in by_name else "."),
        "",
        _row("path", "added p50", "added p99", "req/s on 1 core", "streaming TTFB p50 (added)",
             "TTFB p99 (added)", "errors"),
        _row(*["---"] * 7),
    ]  # fmt: skip
    for r in rows:
        errors = str(r.load.errors + r.latency.errors)
        if r is direct:
            lines.append(
                _row(r.name, f"p50 {r.latency.p50 * 1e3:.3f} ms",
                     f"p99 {r.latency.p99 * 1e3:.3f} ms",
                     f"{r.load.rps:,.0f} (backend, not a proxy)", f"{r.ttfb[0] * 1e3:.3f} ms",
                     f"{r.ttfb[1] * 1e3:.3f} ms", errors)
            )  # fmt: skip
            continue
        lines.append(
            _row(r.name, f"+{(r.latency.p50 - direct.latency.p50) * 1e3:.3f} ms",
                 f"+{(r.latency.p99 - direct.latency.p99) * 1e3:.3f} ms", f"{r.load.rps:,.0f}",
                 f"+{(r.ttfb[0] - direct.ttfb[0]) * 1e3:.3f} ms",
                 f"+{(r.ttfb[1] - direct.ttfb[1]) * 1e3:.3f} ms", errors)
        )  # fmt: skip
    lines.append("")
    if peer is not None:

        def ratios(other: Row) -> str:
            added = max(1e-6, sidecar.latency.p50 - direct.latency.p50)
            other_added = max(1e-6, other.latency.p50 - direct.latency.p50)
            ttfb = max(1e-6, sidecar.ttfb[0] - direct.ttfb[0])
            other_ttfb = max(1e-6, other.ttfb[0] - direct.ttfb[0])
            return _row(other.name, f"{sidecar.load.rps / other.load.rps:.2f}x",
                        f"{added / other_added:.2f}x", f"{ttfb / other_ttfb:.2f}x")  # fmt: skip

        lines += [
            "Ratios (zeta-sidecar / peer):",
            "",
            _row("peer", "req/s per core", "added p50", "streaming TTFB added p50"),
            _row(*["---"] * 4),
            ratios(peer),
            ratios(by_name["nginx"]),
            "",
            "Requests per second on 1 core, each round (a round loads every target in turn):",
            "",
            _row("path", *(f"round {i + 1}" for i in range(rounds)), "spread (max/min)"),
            _row(*["---"] * (rounds + 2)),
        ]
        for name, values in per_round.items():
            if name != direct.name:
                lines.append(_row(name, *(f"{v:,.0f}" for v in values),
                                  f"{max(values) / min(values):.2f}x"))  # fmt: skip
        if latency_rounds is not None and direct.name in latency_rounds:
            lines += _added_per_round(latency_rounds, direct.name, peer.name, rounds)
        lines += [
            "",
            f"CPU time of the proxy per request under wrk -c{connections} (us; all its threads; "
            "less sensitive than req/s to other work on its core):",
            "",
            _row("path", *(f"round {i + 1}" for i in range(rounds)), "median"),
            _row(*["---"] * (rounds + 2)),
        ]
        for name, values in cpu_us.items():
            lines.append(_row(name, *(f"{v:.1f}" for v in values),
                              f"{statistics.median(values):.1f}"))  # fmt: skip
        for name in ("zeta-sidecar", PURE_NAME, BASELINE_NAME):
            if name in cpu_us and peer.name in cpu_us:
                each = ", ".join(
                    f"{b / a:.2f}x" for a, b in zip(cpu_us[name], cpu_us[peer.name], strict=True)
                )
                lines.append(
                    f"\n{name}: requests per CPU-second / {peer.name}'s, per round: {each}."
                )
        for name in ("zeta-sidecar", PURE_NAME, BASELINE_NAME):
            if name in per_round:
                each = ", ".join(
                    f"{a / b:.2f}x" for a, b in zip(per_round[name], per_round[peer.name],
                                                    strict=True)
                )  # fmt: skip
                lines.append(f"\n{name} / {peer.name}, req/s per round: {each}.")
        lines += [
            "",
            "Aim (issue 11): req/s per core >= 1.00x vllm-router's; added p50 and streaming "
            "first-byte time <= vllm-router's (ratio <= 1.00x).",
        ]
    if note:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def _added_per_round(
    rounds_of: dict[str, list[tuple[float, float, float]]], direct: str, peer: str, rounds: int
) -> list[str]:
    """Added p50, p99 and first streamed byte per round (each round's figure minus
    direct's in that round), and zeta-sidecar's added p50 and first byte / the peer's."""
    base = rounds_of[direct]

    def added(name: str) -> list[tuple[float, float, float]]:
        return [
            (p50 - d50, p99 - d99, ttfb - dttfb)
            for (p50, p99, ttfb), (d50, d99, dttfb) in zip(rounds_of[name], base, strict=True)
        ]

    lines = [
        "",
        "Added latency per round (ms; minus direct's in the same round): p50 / p99 (wrk -c1)"
        " / streaming first byte p50:",
        "",
        _row("path", *(f"round {i + 1}" for i in range(rounds))),
        _row(*["---"] * (rounds + 1)),
    ]
    for name in rounds_of:
        if name != direct:
            cells = (f"{a * 1e3:+.3f} / {b * 1e3:+.3f} / {c * 1e3:+.3f}" for a, b, c in added(name))
            lines.append(_row(name, *cells))
    if "zeta-sidecar" in rounds_of and peer in rounds_of:
        ours, theirs = added("zeta-sidecar"), added(peer)
        p50 = ", ".join(f"{a[0] / max(1e-6, b[0]):.2f}x" for a, b in zip(ours, theirs, strict=True))
        ttfb = ", ".join(
            f"{a[2] / max(1e-6, b[2]):.2f}x" for a, b in zip(ours, theirs, strict=True)
        )
        lines += [
            "",
            f"zeta-sidecar / {peer}, per round: added p50 {p50}; streaming first byte {ttfb}.",
        ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4, help="seconds per wrk run (<= 30)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all targets (<= 9)")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose sidecar is served beside this one"
    )
    args = parser.parse_args()
    if not 1 <= args.seconds <= 30:
        parser.error("--seconds must be 1..30")
    if not 1 <= args.rounds <= 9:
        parser.error("--rounds must be 1..9")
    if (os.cpu_count() or 1) < 2:
        parser.error("needs 2 cores: one for the proxy, one for wrk and the backends")
    text = run(args.seconds, args.connections, args.rounds, args.baseline)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
