"""The process's file descriptors: the open-files limit raised at start-up, and the
traffic port's connection cap derived from it.

- :func:`raise_fd_limit`: the soft ``RLIMIT_NOFILE`` up to the hard one.
- :func:`default_max_connections`: half of what is left after :func:`reserved_fds`, since
  every client connection may have its connection to a pod open at the same time.
- :func:`listen_backlog`: the traffic port's listen queue, within the same budget.
"""

import resource

__all__ = ["default_max_connections", "listen_backlog", "raise_fd_limit", "reserved_fds"]

OTHER_FDS = 128
"""Descriptors for listeners, the table file, logs, health probes to pods and the admin
port's connections."""


def _soft_limit() -> int:
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _nr_open() if fd_limit == resource.RLIM_INFINITY else fd_limit


def listen_backlog(fd_limit: int | None = None) -> int:
    """The traffic port's queue of connections the kernel accepts for the process.

    Up to 1,024, as vLLM's and vllm-router's: aiohttp's 128 overflowed when the event loop
    was busy for a moment under a burst of connects, and the kernel dropped the rest
    (clients waited for their SYN's retransmission, or never connected;
    bench/open_streams.py). A sixteenth of the fds at most, since a burst can be accepted
    before its count is checked and the reserve must hold it (128 for the usual 1,024).
    """
    return max(128, min(1024, (_soft_limit() if fd_limit is None else fd_limit) // 16))


def reserved_fds(fd_limit: int | None = None) -> int:
    """Descriptors kept out of the traffic cap: :data:`OTHER_FDS`, and a listen
    backlog's worth of connections accepted in one burst before their count is checked."""
    return OTHER_FDS + listen_backlog(fd_limit)


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

    Half of what is left after :func:`reserved_fds`: every client connection can have its
    connection to a pod open at the same time.
    """
    if fd_limit is None:
        fd_limit = _soft_limit()
    return max(16, (fd_limit - reserved_fds(fd_limit)) // 2)
