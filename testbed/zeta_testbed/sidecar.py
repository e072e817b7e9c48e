"""A real ``zeta-sidecar`` process for tests and benchmarks, and the small helpers
around it (HTTP gets, polling, a kubelet-style ConfigMap volume).

One place spells out the sidecar's command line, so the integration tests, the
hardening suites and the benchmarks start it alike.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SIDECAR",
    "SidecarFactory",
    "SidecarProcess",
    "SidecarStartError",
    "free_port",
    "get",
    "kubelet_dir",
    "listening",
    "start_sidecar",
    "swap_kubelet_dir",
    "wait_until",
]

SIDECAR = Path(sys.executable).with_name("zeta-sidecar")


class SidecarStartError(RuntimeError):
    """The sidecar exited or did not become ready; the message carries its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """``GET url`` on loopback: (status, body), whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(condition: Callable[[], bool], *, within: float, what: str) -> float:
    """Poll every 10 ms; the seconds it took, or ``TimeoutError`` naming ``what``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


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
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


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
    port, admin_port = free_port(), free_port()
    argv = [
        str(SIDECAR), *source, "--host", "127.0.0.1", "--port", str(port),
        "--admin-port", str(admin_port), "--file-poll-interval", "0.02",
        "--drain-grace", "5", "--seed", "3", *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env if env is not None else os.environ
        )
    proc = SidecarProcess(process, port, admin_port, log, argv)
    probe = "readyz" if ready else "healthz"

    def up() -> bool:
        if process.poll() is not None:
            raise SidecarStartError(f"zeta-sidecar exited: {log.read_text()}")
        return listening(admin_port) and get(f"{proc.admin}/{probe}")[0] == 200

    try:
        wait_until(up, within=within, what="the sidecar to start")
    except TimeoutError as exc:
        proc.stop()
        raise SidecarStartError(f"{exc}: {log.read_text()}") from None
    return proc


def kubelet_dir(root: Path, text: str, key: str = "routing.json") -> Path:
    """A ConfigMap volume as the kubelet lays it out; returns the file path to watch."""
    root.mkdir(parents=True, exist_ok=True)
    swap_kubelet_dir(root, text, key)
    (root / key).symlink_to(f"..data/{key}")
    return root / key


def swap_kubelet_dir(root: Path, text: str, key: str = "routing.json") -> None:
    """The kubelet's atomic update: a new timestamped dir, then ``..data`` renamed over."""
    stamp = root / f"..{time.time_ns()}"
    stamp.mkdir()
    (stamp / key).write_text(text)
    tmp = root / "..data_tmp"
    tmp.symlink_to(stamp.name)
    tmp.replace(root / "..data")
