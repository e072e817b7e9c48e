"""The process's file descriptors: the open-files limit raised at start-up, and the
traffic port's connection cap derived from it.

- :func:`raise_fd_limit`: the soft ``RLIMIT_NOFILE`` up to the hard one.
- :func:`default_max_connections`: half of what is left after :data:`RESERVED_FDS`, since
  every client connection may have its connection to a pod open at the same time.
"""

import resource

__all__ = ["RESERVED_FDS", "default_max_connections", "raise_fd_limit"]

RESERVED_FDS = 256
"""File descriptors kept out of the traffic cap: listeners, the table file, logs, health
probes to pods, the admin port's connections, and connections accepted in one burst
before their count is checked (aiohttp's listen backlog is 128)."""


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def raise_fd_limit() -> tuple[int, int, int]:
    """Raise the soft limit on open files to the hard limit; (before, after, hard).

    The soft default (often 1,024) is a relic of ``select()``; asyncio never uses it, and
    a gateway holds two descriptors per request in flight (client and pod). An unlimited
    hard limit counts as the kernel's ``nr_open``. Never fails: the limit stays where it
    was if the kernel refuses.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft, hard
    return soft, target, hard


def default_max_connections(fd_limit: int | None = None) -> int:
    """The traffic cap for a soft fd limit (the current one by default).

    Half of what is left after :data:`RESERVED_FDS`: every client connection can have its
    connection to a pod open at the same time.
    """
    if fd_limit is None:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if fd_limit == resource.RLIM_INFINITY:
            fd_limit = _nr_open()
    return max(16, (fd_limit - RESERVED_FDS) // 2)
