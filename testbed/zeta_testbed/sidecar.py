"""A real ``zeta-sidecar`` process for tests and benchmarks, and the small helpers
around it (HTTP gets, polling, a kubelet-style ConfigMap volume).

One place spells out the sidecar's command line (:func:`sidecar_argv`), so the
integration tests, the hardening suites, the e2e test, the demo and the benchmarks start
it alike. The port, HTTP and polling helpers are :mod:`zeta_testbed.harness`'s, named
here too for the tests that import them from this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zeta_api import TABLE_KEY
from zeta_testbed.harness import free_port, free_ports, get, listening, terminate, wait_until

__all__ = [
    "SIDECAR",
    "TEST_FLAGS",
    "SidecarFactory",
    "SidecarProcess",
    "SidecarStartError",
    "free_port",
    "get",
    "kubelet_dir",
    "listening",
    "sidecar_argv",
    "start_sidecar",
    "swap_kubelet_dir",
    "wait_until",
]

SIDECAR = Path(sys.executable).with_name("zeta-sidecar")
TEST_FLAGS = (
    "--file-poll-interval", "0.02", "--drain-grace", "5", "--seed", "3", "--workers", "1",
)  # fmt: skip
"""What the tests add: a table file re-read within 20 ms, a short drain, fixed picks (in
one process: with several, which picker a request meets depends on its connection). A
test of ``--workers`` passes its own, later on the command line."""


class SidecarStartError(RuntimeError):
    """The sidecar exited or did not become ready; the message carries its log."""


def sidecar_argv(
    source: Sequence[str], *, port: int, admin_port: int, extra: Sequence[str] = ()
) -> list[str]:
    """The ``zeta-sidecar`` command line on loopback: ``source`` is
    ``("--table-file", PATH)`` or ``("--configmap", "NS/NAME", "--kubeconfig", PATH)``."""
    return [
        str(SIDECAR), *source, "--host", "127.0.0.1", "--port", str(port),
        "--admin-port", str(admin_port), *extra,
    ]  # fmt: skip


@dataclass
class SidecarProcess:
    """A running ``zeta-sidecar`` and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log: Path
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def revision(self) -> int | None:
        """The revision of the table it serves, or ``None`` before any."""
        status, body = get(f"{self.admin}/table")
        return int(json.loads(body)["revision"]) if status == 200 else None

    def metric(self, name: str, **labels: str) -> float:
        """One sample of its ``/metrics`` by name and exact labels; 0 if absent."""
        _, body = get(f"{self.admin}/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in body.decode().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, rest = key.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return 0.0

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (by PID), then SIGKILL after ``timeout``; the exit code."""
        return terminate(self.process, timeout)


SidecarFactory = Callable[..., SidecarProcess]
"""The tests' ``sidecar`` fixture: ``sidecar(*source, ready=True, extra=())``."""


def start_sidecar(
    source: Sequence[str],
    *,
    log: Path,
    extra: Sequence[str] = (),
    ready: bool = True,
    within: float = 15.0,
    env: dict[str, str] | None = None,
) -> SidecarProcess:
    """Start ``zeta-sidecar`` on free loopback ports and wait until it answers.

    ``source`` is ``("--table-file", PATH)`` or ``("--configmap", "NS/NAME", ...)``;
    ``ready`` waits for ``/readyz`` (a table loaded), else for ``/healthz``.
    """
    port, admin_port = free_ports(2)
    argv = sidecar_argv(source, port=port, admin_port=admin_port, extra=(*TEST_FLAGS, *extra))
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env if env is not None else os.environ
        )
    proc = SidecarProcess(process, port, admin_port, log, argv)
    probe = "readyz" if ready else "healthz"

    def up() -> bool:
        if process.poll() is not None:
            raise SidecarStartError(f"zeta-sidecar exited: {log.read_text()}")
        return listening(admin_port) and answers(f"{proc.admin}/{probe}")

    try:
        wait_until(up, within=within, what="the sidecar to start")
    except TimeoutError as exc:
        proc.stop()
        raise SidecarStartError(f"{exc}: {log.read_text()}") from None
    return proc


def answers(url: str) -> bool:
    """``url`` answers 200. A probe slower than its timeout is "not yet", not an error:
    on a loaded machine a starting sidecar can take seconds to answer its first one, and
    the caller's deadline is what decides (a slow probe once failed a routing benchmark)."""
    try:
        return get(url)[0] == 200
    except (TimeoutError, urllib.error.URLError):
        return False


def kubelet_dir(root: Path, text: str, key: str = TABLE_KEY) -> Path:
    """A ConfigMap volume as the kubelet lays it out; returns the file path to watch."""
    root.mkdir(parents=True, exist_ok=True)
    swap_kubelet_dir(root, text, key)
    (root / key).symlink_to(f"..data/{key}")
    return root / key


def swap_kubelet_dir(root: Path, text: str, key: str = TABLE_KEY) -> None:
    """The kubelet's atomic update: a new timestamped dir, then ``..data`` renamed over."""
    stamp = root / f"..{time.time_ns()}"
    stamp.mkdir()
    (stamp / key).write_text(text)
    tmp = root / "..data_tmp"
    tmp.symlink_to(stamp.name)
    tmp.replace(root / "..data")
