"""Fixtures for the sidecar against the testbed: a real ``zeta-sidecar`` process."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SIDECAR = Path(sys.executable).with_name("zeta-sidecar")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(condition: Callable[[], bool], *, within: float, what: str) -> float:
    """Poll every 10 ms; the seconds it took, or fail the test."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


@dataclass
class SidecarProcess:
    process: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def revision(self) -> int | None:
        import json

        status, body = get(f"{self.admin}/table")
        return int(json.loads(body)["revision"]) if status == 200 else None

    def metric(self, name: str, **labels: str) -> float:
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


SidecarFactory = Callable[..., SidecarProcess]


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[SidecarFactory]:
    """Start ``zeta-sidecar`` processes; each is SIGTERMed (by PID) at teardown."""
    started: list[SidecarProcess] = []

    def start(*source: str, ready: bool = True, extra: tuple[str, ...] = ()) -> SidecarProcess:
        port, admin_port = free_port(), free_port()
        log = tmp_path / f"sidecar-{len(started)}.log"
        argv = [
            str(SIDECAR), *source, "--host", "127.0.0.1", "--port", str(port),
            "--admin-port", str(admin_port), "--file-poll-interval", "0.02",
            "--drain-grace", "5", "--seed", "3", *extra,
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
        proc = SidecarProcess(process, port, admin_port, log)
        started.append(proc)
        probe = "readyz" if ready else "healthz"

        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"zeta-sidecar exited: {log.read_text()}")
            return _listening(admin_port) and get(f"{proc.admin}/{probe}")[0] == 200

        wait_until(up, within=15, what="the sidecar to start")
        return proc

    yield start
    for proc in started:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
            try:
                proc.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def kubelet_dir(root: Path, text: str) -> Path:
    """A ConfigMap volume as the kubelet lays it out; returns the file path to watch."""
    root.mkdir(parents=True, exist_ok=True)
    swap_kubelet_dir(root, text)
    (root / "routing.json").symlink_to("..data/routing.json")
    return root / "routing.json"


def swap_kubelet_dir(root: Path, text: str) -> None:
    """The kubelet's atomic update: a new timestamped dir, then ``..data`` renamed over."""
    stamp = root / f"..{time.time_ns()}"
    stamp.mkdir()
    (stamp / "routing.json").write_text(text)
    tmp = root / "..data_tmp"
    tmp.symlink_to(stamp.name)
    tmp.replace(root / "..data")
