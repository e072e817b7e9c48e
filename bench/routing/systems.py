"""The routing systems compared, each started in front of the same pods and stopped
(by PID) after its run. A system gives the load generator one URL per gateway replica.

nginx's configuration comes from ``bench/proxy_overhead.py``, the processes helper, the
vllm-router install and the CPU readings from ``bench/peers.py``, imported, so the
benchmarks run and measure their peers alike; ports, waiting and the sidecar from
:mod:`zeta_testbed`, as the tests use them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peers
import proxy_overhead as po

from zeta_api import TABLE_API_VERSION, TABLE_KIND
from zeta_testbed.harness import Child, free_port, free_ports, wait_http, wait_listening
from zeta_testbed.sidecar import SidecarProcess, SidecarStartError, start_sidecar

HERE = Path(__file__).resolve().parent
ARGMIN_REFRESH = 2.0
"""Seconds between the naive router's metric refreshes ("every few seconds")."""


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    model: str
    tier: int
    capacity: int
    ip: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"


@dataclass
class Running:
    urls: list[str]
    admin: list[str] = field(default_factory=list)
    """Sidecar admin URLs (for the weights over time)."""
    stop_sidecars: list[SidecarProcess] = field(default_factory=list)
    started: list[Child] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class System:
    name: str
    kind: str
    """nginx-rr | nginx-random | sidecar-static | static-complexity | argmin | zeta | vllm-router"""
    policy: str = ""
    description: str = ""
    affinity: tuple[tuple[str, Any], ...] = ()
    """Zeta: the ZetaRouter's ``spec.balancing.affinity`` (wire names), none if empty."""


AFFINITY: tuple[tuple[str, Any], ...] = (("prefix", True), ("session", True))
"""What ``zeta-affinity`` declares: both kinds on, every other field the CRD's default."""

SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("round-robin", "nginx-rr", description="nginx upstream, round robin (IPVS-like)"),
        System("random", "nginx-random", description="nginx upstream `random` (iptables-like)"),
        System("least-request", "sidecar-static",
               description="zeta-sidecar, static equal weights: P2C on local in-flight only"),
        System("argmin", "argmin",
               description=f"naive: argmin(waiting + mean e2e) from metrics every "
                           f"{ARGMIN_REFRESH:g} s"),
        System("static-complexity", "static-complexity",
               description="tier by request difficulty, no load (weighted random in a tier, "
                           "no spillover)"),
        System("zeta", "zeta", description="zeta-operator + zeta-sidecar, default policy"),
        System("zeta-affinity", "zeta",
               description="Zeta with prefix and session affinity (`spec.balancing.affinity`, "
                           "the CRD's defaults otherwise)",
               affinity=AFFINITY),
        System("vllm-router-rr", "vllm-router", "round_robin",
               "vllm-router round_robin (nginx's policy: only on request, `--systems`)"),
        System("vllm-router-p2", "vllm-router", "power_of_two", "vllm-router power_of_two"),
        System("vllm-router-cache", "vllm-router", "cache_aware", "vllm-router cache_aware"),
    )
}  # fmt: skip


def _table(pods: Sequence[Pod], *, picker: str, virtual: bool) -> str:
    models: dict[str, Any] = {}
    for pod in pods:
        entry = models.setdefault(
            pod.model,
            {"servedModelName": pod.model, "tier": pod.tier, "weight": 1.0, "endpoints": []},
        )
        entry["endpoints"].append(
            {"address": f"{pod.ip}:{pod.port}", "pod": pod.name, "weight": 1.0,
             "capacity": pod.capacity}
        )  # fmt: skip
    table: dict[str, Any] = {
        "apiVersion": TABLE_API_VERSION,
        "kind": TABLE_KIND,
        "router": "bench/static",
        "revision": 1,
        "generatedAt": "2026-01-01T00:00:00Z",
        "models": models,
        "balancing": {"picker": picker},
    }
    if virtual:
        ordered = sorted(models, key=lambda m: models[m]["tier"])
        table["virtualModels"] = {
            "auto": {"strategy": "complexity", "candidates": ordered, "spillover": "none"}
        }
    return json.dumps(table)


def _nginx(procs: peers.Processes, workdir: Path, pods: Sequence[Pod], replicas: int,
           random: bool) -> Running:  # fmt: skip
    ports = free_ports(replicas)
    members = "\n".join(f"server {p.ip}:{p.port};" for p in pods)
    blocks = []
    for port in ports:
        blocks.append(
            f"""upstream pods{port} {{ {"random;" if random else ""} {members} keepalive 256; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://pods{port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
            # Conversations re-send their history: keep bodies in memory, since the
            # workers (user nobody) cannot write the root-owned work folder.
            client_body_buffer_size 1m;
        }}
    }}"""
        )
    conf = po.nginx_conf(workdir, "\n".join(blocks))
    started = procs.start(f"nginx-{ports[0]}", ["nginx", "-c", str(conf)], "0-1")
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    for port in ports:
        wait_listening(port, started)
    return Running(urls, started=[started])


def start(
    system: System,
    pods: Sequence[Pod],
    *,
    replicas: int,
    workdir: Path,
    procs: peers.Processes,
    configmap: tuple[str, Path] | None = None,
) -> Running:
    """Start ``replicas`` gateways of ``system`` over ``pods``; ``configmap`` is
    (NS/NAME, kubeconfig) of the operator's table, for Zeta."""
    running = Running([])
    try:
        return _start(system, pods, replicas=replicas, workdir=workdir, procs=procs,
                      configmap=configmap, running=running)  # fmt: skip
    except BaseException:
        stop(running, procs)  # the replicas that did start
        raise


def _start(
    system: System,
    pods: Sequence[Pod],
    *,
    replicas: int,
    workdir: Path,
    procs: peers.Processes,
    configmap: tuple[str, Path] | None,
    running: Running,
) -> Running:
    virtual = len({p.model for p in pods}) > 1
    if system.kind in ("nginx-rr", "nginx-random"):
        got = _nginx(procs, workdir, pods, replicas, random=system.kind == "nginx-random")
        running.urls, running.started = got.urls, got.started
        return running
    if system.kind in ("sidecar-static", "static-complexity", "zeta"):
        for i in range(replicas):
            if system.kind == "zeta":
                assert configmap is not None
                source: tuple[str, ...] = (
                    "--configmap", configmap[0], "--kubeconfig", str(configmap[1]),
                )  # fmt: skip
            else:
                picker = "weighted-p2c" if system.kind == "sidecar-static" else "weighted-random"
                path = workdir / f"{system.name}-table.json"
                path.write_text(_table(pods, picker=picker, virtual=virtual))
                source = ("--table-file", str(path))
            try:
                sidecar = start_sidecar(
                    source,
                    log=workdir / f"{system.name}-sidecar-{i}.log",
                    extra=("--log-level", "INFO" if system.kind == "zeta" else "WARNING"),
                    within=60,
                )
            except SidecarStartError:
                # Once seen on the loaded machine: not ready within 60 s; one more try,
                # with its own log, before the run is reported as failed.
                sidecar = start_sidecar(
                    source,
                    log=workdir / f"{system.name}-sidecar-{i}-retry.log",
                    extra=("--log-level", "INFO"),
                    within=60,
                )
            running.urls.append(sidecar.url)
            running.admin.append(sidecar.admin)
            running.stop_sidecars.append(sidecar)
        return running
    if system.kind == "argmin":
        for i in range(replicas):
            port = free_port()
            argv = [sys.executable, str(HERE / "argmin.py"), "--port", str(port),
                    "--refresh", str(ARGMIN_REFRESH),
                    *(f"--pod={p.model}={p.url}" for p in pods)]  # fmt: skip
            started = procs.start(f"argmin-{i}-{port}", argv, "0-1")
            wait_http(f"http://127.0.0.1:{port}/health", started)
            running.urls.append(f"http://127.0.0.1:{port}")
            running.started.append(started)
        return running
    if system.kind == "vllm-router":
        for i in range(replicas):
            port = free_port()
            argv = peers.vllm_router_argv(port, [p.url for p in pods], policy=system.policy)
            started = procs.start(f"{system.name}-{i}-{port}", argv, "0-1")
            wait_http(f"http://127.0.0.1:{port}/health", started, within=90)
            running.urls.append(f"http://127.0.0.1:{port}")
            running.started.append(started)
        return running
    raise ValueError(f"unknown system kind {system.kind!r}")


def cpu_seconds(running: Running) -> float:
    """CPU seconds used so far by the system's processes and their direct children
    (nginx's workers): how much of the shared machine the router itself takes."""
    pids = [s.process.pid for s in running.stop_sidecars]
    pids += [s.process.pid for s in running.started]
    pids += [child for pid in list(pids) for child in peers.children(pid)]
    return sum(peers.cpu_seconds(pid) for pid in pids)


def stop(running: Running, procs: peers.Processes) -> None:
    for sidecar in running.stop_sidecars:
        sidecar.stop()
    for started in running.started:
        procs.stop(started)
