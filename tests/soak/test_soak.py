"""The soak (issue 7, point 4): the whole product on the testbed under mixed load for
``ZETA_SOAK_SECONDS`` (120 by default, 600 under ``make soak``), with faults on a schedule.

A real operator process publishes the routing table of the sample ``ZetaRouter``; the
sidecar watches it through the API; :mod:`zeta_testbed.loadgen` clients send streaming
and non-streaming requests over every model and virtual model, each bounded by a client
timeout. Meanwhile, in turn: a pod is killed and replaced, a pod slows down, the router's
balancing is edited (a new table), Prometheus restarts, the operator restarts.

Asserted: every request accounted for (a success or a well-formed error, none hanging),
the sidecar's RSS grows less than 10% after warm-up, and its file descriptors and
upstream connections are back to their warm-up level once the load stops. Both levels are
measured the same way, at rest after the same idle time.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zeta_testbed import zetarouter
from zeta_testbed.harness import Child
from zeta_testbed.loadgen import BackgroundLoad, LoadGenerator, Report, chat_mix
from zeta_testbed.sidecar import SidecarFactory, SidecarProcess, get
from zeta_testbed.testbed import PodInfo, Testbed

SECONDS = float(os.environ.get("ZETA_SOAK_SECONDS", "120"))
MODELS = ["sim-4b", "sim-7b", "sim-14b", "auto", "balanced"]
TASKS_GAUGE = "zeta_event_loop_tasks"
"""A gauge of ``len(asyncio.all_tasks())`` the sidecar should export: leaked tasks show
nowhere else. Checked once it exists."""
IDLE = 7.0
"""Seconds at rest before measuring: past the sidecar's 4 s upstream idle timeout."""


# ------------------------------------------------------------------ the process


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def established(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of the ESTABLISHED TCP sockets the process holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                found.append((local, remote))
    return found


@dataclass(frozen=True, slots=True)
class Rest:
    """The sidecar at rest: what it holds once the load has stopped for :data:`IDLE` s."""

    rss_kib: int
    fds: int
    upstream: int
    """ESTABLISHED connections to model pods (port 8000)."""
    clients: int
    """ESTABLISHED connections on its traffic port."""
    tasks: int | None
    """Its asyncio tasks, from :data:`TASKS_GAUGE` (``None`` while it exports none)."""


def tasks(proc: SidecarProcess) -> int | None:
    """The sidecar's count of asyncio tasks, if its metrics export one (``None`` if not)."""
    _, body = get(f"{proc.admin}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(TASKS_GAUGE + " "):
            return int(float(line.split()[1]))
    return None


def at_rest(proc: SidecarProcess) -> Rest:
    time.sleep(IDLE)
    pid = proc.process.pid
    conns = established(pid)
    return Rest(
        rss_kib=rss_kib(pid),
        fds=fd_count(pid),
        upstream=sum(1 for _, remote in conns if remote == 8000),
        clients=sum(1 for local, _ in conns if local == proc.port),
        tasks=tasks(proc),
    )


# ------------------------------------------------------------------ the product


def add_pod(testbed: Testbed, namespace: str, size: str) -> PodInfo:
    return testbed.add_pod(size, namespace=namespace)


class Operator:
    """``zeta-operator`` as a process of its own, restartable; one log for all its runs."""

    def __init__(self, testbed: Testbed, namespace: str, log: Path) -> None:
        self.testbed, self.namespace, self.log = testbed, namespace, log
        self.child: Child | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.process.poll() is None

    def start(self) -> None:
        self.child = zetarouter.start_operator(
            self.testbed, self.log, "--namespace", self.namespace, "--standalone"
        )
        self.starts += 1

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(grace=30)


@pytest.fixture
def product(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> Iterator[tuple[SidecarProcess, Operator]]:
    """Pods 4b x2, 7b x2, 14b x1, the sample ZetaRouter, an operator and a sidecar."""
    for size in ("4b", "4b", "7b", "7b", "14b"):
        add_pod(testbed, namespace, size)
    zetarouter.install_crd(testbed)
    router = zetarouter.sample(testbed, {"interval": "1s", "staleAfter": "10s"})
    # Killed pods come back on the prober's word within seconds, not Envoy's 30 s.
    router["spec"]["balancing"] = {"outlier": {"baseEjection": "1s", "maxEjection": "5s"}}
    zetarouter.apply(testbed, namespace, router)
    operator = Operator(testbed, namespace, tmp_path / "operator.log")
    operator.start()
    try:
        zetarouter.first_table(testbed, namespace, "chat-routing", within=60)
        proc = sidecar(
            f"--configmap={namespace}/chat-routing",
            "--kubeconfig",
            str(testbed.kubeconfig),
            extra=("--log-level", "WARNING"),
        )
        yield proc, operator
    finally:
        # While the operator still runs, so it ends the router's loop itself (the routers
        # carry no finalizer: the namespace goes either way).
        if not operator.running:
            operator.start()
        testbed.kubectl("delete", "zr", "chat", "-n", namespace, "--timeout=30s")
        operator.stop()


# --------------------------------------------------------------------- faults


class Faults:
    """The schedule's actions, each one step; what was done is logged for the report."""

    def __init__(self, testbed: Testbed, namespace: str, operator: Operator) -> None:
        self.testbed = testbed
        self.namespace = namespace
        self.operator = operator
        self.rng = random.Random(7)
        self.slowed: PodInfo | None = None
        self.churn = 0
        self.turn = 0
        self.log: list[str] = []

    def _pods(self, *sizes: str) -> list[PodInfo]:
        return [p for p in self.testbed.pods(self.namespace) if p.size in sizes]

    def _post(self, pod: PodInfo, method: str, body: object = None) -> None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{pod.url}/admin/faults",
            data=data,
            headers={"Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=5):  # loopback only
            pass

    def kill_pod(self) -> None:
        """SIGKILL a pod's simulator (a crash), delete the Pod, start a replacement."""
        victim = self.rng.choice(self._pods("4b", "7b"))
        if self.slowed is not None and victim.name == self.slowed.name:
            self.slowed = None
        os.kill(victim.process.pid, 9)
        self.testbed.remove_pod(victim.name, self.namespace)
        add_pod(self.testbed, self.namespace, victim.size)
        self.log.append(f"killed and replaced {victim.name}")

    def replace_pod(self) -> None:
        """A graceful rollout of one pod: Pod deleted, simulator SIGTERMed, a new one."""
        victim = self.rng.choice(self._pods("4b", "7b"))
        if self.slowed is not None and victim.name == self.slowed.name:
            self.slowed = None
        self.testbed.remove_pod(victim.name, self.namespace)
        add_pod(self.testbed, self.namespace, victim.size)
        self.log.append(f"replaced {victim.name}")

    def slow_down(self) -> None:
        """One pod 4x slower until the next slowdown step clears it."""
        self.clear()
        self.slowed = self.rng.choice(self._pods("4b", "7b", "14b"))
        self._post(self.slowed, "POST", {"slowdown": 4.0})
        self.log.append(f"slowed {self.slowed.name}")

    def churn_table(self) -> None:
        """An edit of the router's balancing: the operator publishes a new table."""
        self.churn += 1
        patch = {"spec": {"balancing": {"outlier": {"consecutiveFailures": 5 + self.churn % 2}}}}
        self.testbed.kubectl(
            "patch", "zr", "chat", "-n", self.namespace, "--type=merge", "-p", json.dumps(patch)
        )
        self.log.append("table churn")

    def restart_prometheus(self) -> None:
        self.testbed.stop_prometheus()
        time.sleep(2.0)
        self.testbed.start_prometheus()
        self.log.append("prometheus restarted")

    def restart_operator(self) -> None:
        self.operator.stop()
        time.sleep(1.0)
        self.operator.start()
        self.log.append("operator restarted")

    def clear(self) -> None:
        if self.slowed is not None:
            self._post(self.slowed, "DELETE")
            self.slowed = None

    def next(self) -> None:
        """The schedule's next fault."""
        self.schedule[self.turn % len(self.schedule)]()
        self.turn += 1

    @property
    def schedule(self) -> list[Callable[[], None]]:
        return [
            self.slow_down,
            self.churn_table,
            self.kill_pod,
            self.churn_table,
            self.restart_prometheus,
            self.slow_down,
            self.replace_pod,
            self.churn_table,
            self.restart_operator,
        ]


def run_phase(
    proc: SidecarProcess,
    seconds: float,
    faults: Faults | None,
    *,
    step: float,
    rss: list[int],
    seed: int,
) -> tuple[Report, int]:
    """Load for ``seconds``, a fault every ``step`` s; (report, requests sent)."""
    mix = chat_mix(MODELS, stream_share=0.5, max_tokens=(4, 64), completions_share=0.2)
    load = LoadGenerator(proc.url, mix, clients=8, timeout=30, seed=seed, pause=0.01)
    end = time.monotonic() + seconds
    with BackgroundLoad(load) as running:
        next_fault = time.monotonic() + step
        while time.monotonic() < end:
            rss.append(rss_kib(proc.process.pid))
            if faults is not None and time.monotonic() >= next_fault:
                faults.next()
                next_fault = time.monotonic() + step
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        report = running.stop()
    return report, load.sent


@pytest.mark.timeout(int(SECONDS) + 400)
def test_soak(testbed: Testbed, namespace: str, product: tuple[SidecarProcess, Operator]) -> None:
    proc, operator = product
    faults = Faults(testbed, namespace, operator)
    warmup = max(20.0, SECONDS * 0.2)
    step = 6.0
    rss: list[int] = []

    # Warm-up: the same load and faults, so caches, pools and tables reach their size.
    warm, warm_sent = run_phase(proc, warmup, faults, step=step, rss=rss, seed=1)
    base = at_rest(proc)
    main, main_sent = run_phase(proc, SECONDS - warmup, faults, step=step, rss=rss, seed=2)
    faults.clear()
    end = at_rest(proc)

    outcomes = warm.outcomes + main.outcomes
    total = Report(outcomes)
    counts = total.counts()
    streams = sum(1 for o in outcomes if o.stream)
    errors = {k: v for k, v in counts.items() if k not in {"ok", "done"}}
    figures = (
        f"\nsoak {SECONDS:.0f} s: {len(outcomes)} requests ({streams} streamed), "
        f"{counts['ok'] + counts['done']} succeeded, errors by kind {errors}\n"
        f"faults: {len(faults.log)} {dict(Counter(f.split()[0] for f in faults.log))}\n"
        f"sidecar RSS at rest {base.rss_kib} -> {end.rss_kib} KiB "
        f"(+{100 * (end.rss_kib / base.rss_kib - 1):.1f}%), peak under load {max(rss)} KiB; "
        f"fds {base.fds} -> {end.fds}; upstream connections {base.upstream} -> {end.upstream}; "
        f"client connections {base.clients} -> {end.clients}; tasks {base.tasks} -> {end.tasks}; "
        f"operator starts {operator.starts}"
    )
    print(figures)
    assert len(outcomes) == warm_sent + main_sent, figures  # every request accounted for
    assert total.badly_formed() == [], (total.badly_formed()[:5], figures)
    assert counts["ok"] + counts["done"] >= 0.9 * len(outcomes), figures
    assert get(f"{proc.admin}/readyz")[0] == 200
    assert end.rss_kib < 1.10 * base.rss_kib, figures
    assert end.fds <= base.fds + 3, figures
    assert end.upstream <= base.upstream + 3, figures
    assert end.clients == 0, figures
    if base.tasks is not None and end.tasks is not None:
        assert end.tasks <= base.tasks + 2, figures
    assert proc.process.poll() is None
