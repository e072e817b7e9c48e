"""What the benchmarks share around the processes they start: the peers Zeta is compared
with (nginx, the Rust ``vllm-router``) installed where missing, every process pinned to
its CPUs and stopped by PID, what a process costs (CPU time, resident memory, from
``/proc``), and the code and machine a report names.

``proxy_overhead.py``, ``open_streams.py``, ``sim_throughput.py`` and the routing
benchmark import it, so they install, start and measure their peers alike.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from zeta_testbed.harness import Child, free_port, start_child

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path.home() / ".cache" / "zeta-router" / "peers"
VLLM_ROUTER_VENV = PEERS / "vllm-router"
VLLM_ROUTER = VLLM_ROUTER_VENV / "bin" / "vllm-router"
PROXY_CPU = "1"
"""The proxy under test has this CPU to itself..."""
LOAD_CPU = "0"
"""...and the load generator and the backends share the other."""


def log(message: str) -> None:
    print(f"[{Path(sys.argv[0]).stem}] {message}", file=sys.stderr, flush=True)


# --- installing what is missing ------------------------------------------------------------


def ensure_apt(tools: Sequence[str], packages: Sequence[str]) -> None:
    """``apt-get install packages`` when any of ``tools`` is not on the PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        log(f"installing {missing} with apt-get")
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, timeout=600)


def ensure_vllm_router() -> None:
    """``vllm-router`` from PyPI into its own venv (never the project's) when missing."""
    if not VLLM_ROUTER.exists():
        log(f"installing vllm-router into {VLLM_ROUTER_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VLLM_ROUTER_VENV)], check=True)
        subprocess.run(
            [str(VLLM_ROUTER_VENV / "bin" / "pip"), "install", "-q", "vllm-router"],
            check=True,
            timeout=900,
        )


def ensure_tools() -> None:
    """wrk, nginx and taskset from Debian, and vllm-router: every peer a benchmark runs."""
    ensure_apt(("wrk", "nginx", "taskset"), ("wrk", "nginx", "util-linux"))
    ensure_vllm_router()


def vllm_router_argv(
    port: int, backends: Sequence[str], *, policy: str = "round_robin", extra: Sequence[str] = ()
) -> list[str]:
    """``vllm-router`` on loopback in front of ``backends`` (URLs), its metrics on a free
    port so that two of them never collide."""
    return [
        str(VLLM_ROUTER), "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
        "--worker-urls", *backends, "--log-level", "warning",
        "--prometheus-port", str(free_port()), *extra,
    ]  # fmt: skip


# --- processes -----------------------------------------------------------------------------


class Processes:
    """Every process this benchmark starts, each pinned to its CPUs; stopped by PID at
    the end, last started first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Child] = []

    def start(
        self, name: str, argv: list[str], cpu: str, env: dict[str, str] | None = None
    ) -> Child:
        child = start_child(
            name,
            ["taskset", "-c", cpu, *argv],
            log=self.workdir / f"{name}.log",
            env=env,
            new_session=True,
        )
        self.started.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()

    def stop_all(self) -> None:
        for child in reversed(self.started):
            child.stop()


# --- what a process costs ------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of a process (nginx's workers); none if it is gone."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process so far; 0 if it is gone."""
    try:
        # The command name may hold spaces; the fields after its ")" are fixed.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A ``/proc/PID/status`` memory figure in KiB: ``VmRSS`` (resident now) or ``VmHWM``
    (the resident peak); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- what a report names -------------------------------------------------------------------


def version_of(argv: list[str]) -> str:
    """The first line a ``--version``-like command prints; ``not installed`` without it."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def code_line() -> str:
    head = version_of(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True,
                           text=True, check=False).stdout.count("\n")  # fmt: skip
    return f"commit {head}" + (
        f" plus {dirty} uncommitted changes (the working tree as it was)" if dirty else ""
    )


def machine(code: str | None = None) -> list[str]:
    """The report's lines on the code, the machine and its load, and the peers' versions."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pip = VLLM_ROUTER_VENV / "bin" / "pip"
    vr = version_of([str(pip), "show", "vllm-router"]) if pip.exists() else "not installed"
    vr_version = "?"
    if pip.exists():
        out = subprocess.run([str(pip), "show", "vllm-router"], capture_output=True, text=True,
                             check=False).stdout  # fmt: skip
        vr_version = next(
            (x.split(":", 1)[1].strip() for x in out.splitlines() if x.startswith("Version")), vr
        )
    load = os.getloadavg()
    return [
        f"- Code: {code or code_line()}.",
        f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"load average when this report was written {load[0]:.1f}/{load[1]:.1f}/"
        f"{load[2]:.1f}. **Shared**: other work ran on the same 2 cores during the run, so "
        "figures are noisy; compare systems "
        "within a run, not across runs.",
        f"- Python {platform.python_version()}; {version_of(['nginx', '-v'])}; "
        f"vllm-router {vr_version} (PyPI, own venv); zeta-sim pods from the testbed.",
    ]
