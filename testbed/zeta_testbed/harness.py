"""What a test or a benchmark needs around the processes it starts itself, on loopback:
free ports, HTTP gets, polling, and a child process with its log, stopped by its PID.

The testbed's own long-lived processes are :mod:`zeta_testbed.processes` (detached and
recorded, so a later ``zeta-testbed down`` ends them); a :class:`Child` lives only as
long as the test or benchmark that holds its handle.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zeta_testbed.processes import StartError

__all__ = [
    "Child",
    "StartError",
    "free_port",
    "free_ports",
    "get",
    "listening",
    "start_child",
    "terminate",
    "wait_http",
    "wait_listening",
    "wait_until",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that were free a moment ago."""
    # Hold all sockets open until every port is known, so no two are the same.
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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


def wait_until(
    condition: Callable[[], bool], *, within: float, what: str, every: float = 0.01
) -> float:
    """Poll every ``every`` s (10 ms: a local process answers within a few); the seconds
    it took, or ``TimeoutError`` naming ``what``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def terminate(process: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """SIGTERM (by PID), then SIGKILL after ``grace`` seconds; the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


@dataclass
class Child:
    """A process this test or benchmark started, and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self, grace: float = 10.0) -> int:
        return terminate(self.process, grace)


def start_child(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    append: bool = False,
) -> Child:
    """Start ``argv`` with stdout and stderr to ``log``; ``env`` is added to this one.

    ``new_session`` keeps terminal signals (Ctrl-C on a benchmark) from reaching it, so
    it is stopped in order, by its handle.
    """
    with log.open("ab" if append else "wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=new_session,
        )
    return Child(name, process, log)


def _wait(child: Child, ready: Callable[[], bool], within: float, where: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StartError(f"{child.name} exited:\n{child.tail()}")
        if ready():
            return
        time.sleep(0.05)
    raise StartError(f"{child.name} not ready at {where}:\n{child.tail()}")


def wait_http(url: str, child: Child, within: float = 60.0) -> None:
    """Until ``url`` answers 200; ``StartError`` with its log if it exits or is late."""

    def ok() -> bool:
        try:
            return get(url, timeout=1)[0] == 200
        except OSError:
            return False

    _wait(child, ok, within, url)


def wait_listening(port: int, child: Child, within: float = 30.0) -> None:
    """Until something accepts connections on the loopback ``port``; for a server that
    answers any path by proxying, a refused connection is what "not up" means."""
    _wait(child, lambda: listening(port), within, f"port {port}")
