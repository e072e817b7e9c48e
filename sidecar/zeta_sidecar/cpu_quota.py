"""How many CPUs this process may use: the default of ``--workers``.

A container's CPU limit is a CFS quota, not a CPU count: ``os.cpu_count()`` in a pod
limited to 2 CPUs on a 64-core node says 64, and 64 workers would share 2 CPUs' worth of
time (each throttled, each holding its own pool of pod connections). So the quota
decides, rounded up (1.5 CPUs of quota: 2 workers, each busy three quarters of the time,
rather than one that leaves half a CPU unused), capped by the CPUs the process may run
on (its affinity mask), and at least 1.

- :func:`cpus_from_cpu_max`, :func:`cpus_from_cfs`, :func:`workers_for`: pure, on the
  files' text (cgroup v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``).
- :func:`cgroup_cpus`, :func:`default_workers`: read those files for this process.

The limit may sit on any ancestor of the process's cgroup (a pod's limit on the pod's
cgroup, a container's on its own): every level from the process's cgroup up to the
mount's root is read and the smallest quota wins. Inside a container the mount's root
is usually the container's own cgroup, and the path in ``/proc/self/cgroup`` names the
host's hierarchy: levels that do not exist under the mount are skipped.
"""

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["cgroup_cpus", "cpus_from_cfs", "cpus_from_cpu_max", "default_workers", "workers_for"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")

_V1_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
"""Where cgroup v1 mounts the ``cpu`` controller under the root, by distribution."""


def cpus_from_cpu_max(text: str) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` (``"$QUOTA $PERIOD"``, ``"max ..."`` unlimited);
    ``None`` when unlimited or unreadable."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000  # the kernel's default
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpus_from_cfs(quota_us: str, period_us: str) -> float | None:
    """CPUs of cgroup v1's ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` (a quota of
    ``-1``: unlimited); ``None`` when unlimited or unreadable."""
    try:
        quota, period = int(quota_us), int(period_us)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def workers_for(quotas: Iterable[float], available: int) -> int:
    """Workers for the smallest of ``quotas`` (CPUs), rounded up, within ``available``
    CPUs (the affinity mask); ``available`` when there is no quota; at least 1."""
    limit = min(quotas, default=None)
    # A quota a hair over a whole number (float noise of 200000/100000) is that number.
    wanted = available if limit is None else math.ceil(round(limit, 6))
    return max(1, min(wanted, available))


def _self_cgroups(text: str) -> tuple[str | None, str | None]:
    """(v2 path, v1 ``cpu`` path) of ``/proc/self/cgroup``'s lines."""
    v2 = v1 = None
    for line in text.splitlines():
        ident, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if ident == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _levels(mount: Path, path: str | None) -> Iterator[Path]:
    """The directories from ``path`` (under ``mount``) up to ``mount``, those that exist."""
    parts = [p for p in (path or "").split("/") if p]
    for depth in range(len(parts), -1, -1):
        level = mount.joinpath(*parts[:depth])
        if level.is_dir():
            yield level


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cgroup_cpus(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> list[float]:
    """The CPU quotas (in CPUs) on this process's cgroup and its ancestors; empty if none.

    cgroup v2 (``cpu.max``) when the root is a v2 mount, else v1's ``cpu`` controller.
    """
    v2_path, v1_path = _self_cgroups(_read(self_cgroup) or "")
    quotas: list[float] = []
    if (root / "cgroup.controllers").is_file():
        for level in _levels(root, v2_path):
            text = _read(level / "cpu.max")
            cpus = cpus_from_cpu_max(text) if text is not None else None
            if cpus is not None:
                quotas.append(cpus)
        return quotas
    for name in _V1_DIRS:
        mount = root / name
        if not mount.is_dir():
            continue
        for level in _levels(mount, v1_path):
            quota, period = _read(level / "cpu.cfs_quota_us"), _read(level / "cpu.cfs_period_us")
            cpus = cpus_from_cfs(quota, period) if quota and period else None
            if cpus is not None:
                quotas.append(cpus)
        break
    return quotas


def _available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Workers for this process: the cgroup's CPU quota rounded up, else its CPUs."""
    return workers_for(cgroup_cpus(), _available())
