"""Starting, watching and stopping the testbed's background processes.

``zeta-testbed up`` returns while its processes run on, so each is started in its
own session (no terminal signal reaches it) and recorded with its PID and the
kernel's start time for that PID. ``down`` ends exactly those processes: a PID the
kernel has since given to another program has another start time and is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A process the testbed started, as written to its state file."""

    name: str
    pid: int
    start_ticks: int
    """Field 22 of /proc/PID/stat: tells this process from a later one with its PID."""
    argv: tuple[str, ...]
    log: str


class StartError(RuntimeError):
    """A process exited or did not become ready in time."""


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return ProcessRecord(name, process.pid, _start_ticks(process.pid), tuple(argv), str(log))


def is_running(record: ProcessRecord) -> bool:
    ticks = _start_ticks(record.pid)
    if ticks != record.start_ticks or ticks == -1:
        return False
    return _state(record.pid) not in {"Z", "X"}


def stop(record: ProcessRecord, *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only if it is still our process."""
    if not is_running(record):
        return
    _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_running(record):
            return
        time.sleep(0.05)
    _signal(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while is_running(record) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_all(records: Sequence[ProcessRecord], *, grace: float = 10.0) -> None:
    """Stop many at once: signal all, then wait, so ``down`` is not N x grace."""
    live = [record for record in records if is_running(record)]
    for record in live:
        _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_running(record) for record in live):
        time.sleep(0.05)
    for record in live:
        stop(record, grace=0)


def wait_ready(
    record: ProcessRecord,
    probe: Callable[[], bool],
    *,
    timeout: float,
    what: str,
) -> None:
    """Poll ``probe`` every 100 ms (as envtest does) until true, the process dies, or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(record):
            raise StartError(f"{what} exited during start-up; see {record.log}:\n{_tail(record)}")
        if probe():
            return
        time.sleep(0.1)
    raise StartError(
        f"{what} was not ready after {timeout:.0f} s; see {record.log}:\n{_tail(record)}"
    )


def listens_on(record: ProcessRecord, ip: str, port: int) -> bool:
    """The process itself holds a listening TCP socket on ``ip:port`` (IPv4).

    A probe over HTTP cannot tell: another testbed on this machine may have bound the
    same address a moment earlier, and its process would answer for ours.
    """
    local = "".join(f"{int(b):02X}" for b in reversed(ip.split("."))) + f":{port:04X}"
    try:
        fd_dir = f"/proc/{record.pid}/fd"
        inodes = {os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)}
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(
        f[1] == local and f[3] == "0A" and f"socket:[{f[9]}]" in inodes  # 0A: LISTEN
        for f in (line.split() for line in lines)
    )


def http_ok(url: str, *, ca_file: Path | None = None, token: str | None = None) -> bool:
    """True when ``url`` answers 200; any error (refused, TLS, timeout) is just 'not yet'."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=1, context=context) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its end.
    return raw[raw.rindex(")") + 2 :].split()


def _start_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else -1


def _state(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[0] if fields else "X"


def _tail(record: ProcessRecord, lines: int = 15) -> str:
    try:
        return "\n".join(Path(record.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
