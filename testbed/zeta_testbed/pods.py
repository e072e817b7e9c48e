"""Model pods without a kubelet: Pod objects plus a simulator on a loopback address.

The testbed plays scheduler and kubelet for its pods. It creates a real Pod object
(labels ``app=vllm, model=<size>``, annotated for scraping), starts a simulated model
server on a loopback address of its own (127.1.x.y, port 8000), and patches the pod's
status to Running and Ready with that address as its podIP. Pods carry no
``nodeName``: the apiserver then deletes them at once on delete, as no kubelet would
ever confirm a graceful stop.

This module holds the pure parts: addresses, manifests, status patches and the
simulator command lines.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MODEL_PORT = 8000
SIZES = ("4b", "7b", "14b")
BACKENDS = ("zeta-sim", "llm-d-sim")
POD_NETWORK = ipaddress.IPv4Network("127.1.0.0/16")
"""Loopback addresses for pods: Linux routes all of 127.0.0.0/8 to lo, so each pod
gets its own IP and every simulator can listen on the same port, as in a cluster."""


def parse_pod_counts(text: str) -> dict[str, int]:
    """``"4b=2,7b=2,14b=1"`` -> ``{"4b": 2, "7b": 2, "14b": 1}``."""
    counts: dict[str, int] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        size, sep, number = part.partition("=")
        if not sep or size not in SIZES or not number.isdigit():
            raise ValueError(
                f"bad pod count {part!r}: expected SIZE=N with SIZE one of {', '.join(SIZES)}"
            )
        counts[size] = counts.get(size, 0) + int(number)
    return counts


def address_index(ip: str) -> int:
    """The position of ``ip`` among the pod network's addresses."""
    return int(ipaddress.ip_address(ip)) - int(POD_NETWORK.network_address) - 1


def next_free_ip(
    taken: Iterable[str], is_free: Callable[[str], bool] = lambda ip: True, *, start: int = 0
) -> str:
    """The first pod address from the ``start``-th on (wrapping around) not ``taken`` by
    this testbed and ``is_free`` on the machine. Testbeds that run side by side start at
    random places, so two of them rarely pick the same free address at the same moment
    (checking and binding are not one step)."""
    used = set(taken)
    hosts = list(POD_NETWORK.hosts())
    start %= len(hosts)
    for address in hosts[start:] + hosts[:start]:
        if address.packed[-1] in (0, 255):
            continue  # Skip .0 and .255 so addresses read like ordinary pod IPs.
        if str(address) not in used and is_free(str(address)):
            return str(address)
    raise RuntimeError(f"no free address left in {POD_NETWORK}")


SIMULATED_SCHEDULER = "zeta-testbed-simulated"
"""The scheduler simulated pods wait for: none runs, so they stay unbound."""


def pod_manifest(
    name: str, namespace: str, size: str, *, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "vllm", "model": size, **(labels or {})},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(MODEL_PORT),
                "prometheus.io/path": "/metrics",
                "zeta.dev/simulated": "true",
            },
        },
        "spec": {
            # No scheduler has this name: with `up --node`, the real kube-scheduler would
            # otherwise bind the pod to the node, whose kubelet would then try to run it.
            "schedulerName": SIMULATED_SCHEDULER,
            "containers": [
                {
                    "name": "model",
                    "image": "zeta-testbed/simulated-model:local",
                    "ports": [{"name": "http", "containerPort": MODEL_PORT}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": MODEL_PORT}},
                }
            ],
        },
    }


def scraped_pod_manifest(
    name: str, namespace: str, port: int, *, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Pod object for a process of the product that listens on loopback (the
    operator, a sidecar), annotated so the testbed's Prometheus scrapes its ``/metrics``
    on ``port``, as a cluster's Prometheus scrapes the chart's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "zeta-router", **(labels or {})},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {"containers": [{"name": "process", "image": "zeta-testbed/process:local"}]},
    }


def status_patch(ip: str, *, ready: bool, now: dt.datetime) -> dict[str, Any]:
    """What a kubelet would report for a started pod (the ``status`` subresource)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    ready_text = "True" if ready else "False"
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": stamp,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": stamp},
                {"type": "Ready", "status": ready_text, "lastTransitionTime": stamp},
            ],
            "containerStatuses": [
                {
                    "name": "model",
                    "image": "zeta-testbed/simulated-model:local",
                    "imageID": "",
                    "ready": ready,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": stamp}},
                }
            ],
        }
    }


def simulator_argv(
    backend: str,
    size: str,
    ip: str,
    *,
    time_scale: float,
    prefix_caching: bool = False,
    priority_scheduling: bool = False,
) -> list[str]:
    """The command line of a simulated pod; prefix caching and priority scheduling are
    off unless asked for."""
    if backend == "zeta-sim":
        return [
            sys.executable,
            "-m",
            "zeta_testbed.sim.cli",
            f"--host={ip}",
            f"--port={MODEL_PORT}",
            f"--preset={size}",
            f"--model=sim-{size}",
            f"--time-scale={time_scale}",
            # Explicit either way: the sim's own default is on, as vLLM's.
            "--prefix-caching" if prefix_caching else "--no-prefix-caching",
            f"--scheduling-policy={'priority' if priority_scheduling else 'fcfs'}",
        ]
    if backend == "llm-d-sim":
        # Not available yet: the module github.com/llm-d/llm-d-inference-sim is refused
        # by this machine's Go module proxy (403), so nothing here can build or test it.
        raise ValueError(
            "the llm-d-sim backend is not available: its Go module "
            "github.com/llm-d/llm-d-inference-sim cannot be fetched from the module proxy"
        )
    raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
