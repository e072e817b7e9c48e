"""The routing table from a mounted file (``--table-file``), handed as raw bytes to
:meth:`Gateway.load_table <zeta_sidecar.gateway.Gateway.load_table>`, which validates it
and keeps the last good table on refusal.

The kubelet updates a ConfigMap volume by writing a new timestamped directory and
swapping the ``..data`` symlink, so the file's inode and real path change, not the file
in place. The watcher polls ``os.stat`` of the path (which follows the symlinks) and its
real path every ``file_poll_interval`` (0.1 s): the standard library has no inotify
binding, a stat is a microsecond, polling works on every filesystem and needs no
dependency, and 0.1 s keeps the 1 s promise. This path imports no Kubernetes client.
"""

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["Apply", "watch_file"]

logger = logging.getLogger(__name__)

Apply = Callable[[bytes], bool]
"""Where a table's bytes go: validated and applied, ``True`` if new."""


def _file_key(path: Path) -> tuple[str, int, int, int] | None:
    try:
        st = os.stat(path)
        return (os.path.realpath(path), st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return None


async def watch_file(path: Path, apply: Apply, *, interval: float) -> None:
    """Apply ``path`` now and whenever it changes; runs until cancelled."""
    seen: tuple[str, int, int, int] | None = None
    missing_logged = False
    while True:
        key = _file_key(path)
        if key is None:
            if not missing_logged:
                logger.warning("routing table file %s is missing; waiting for it", path)
                missing_logged = True
        elif key != seen:
            missing_logged = False
            try:
                raw = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                logger.warning("cannot read routing table file %s: %s", path, exc)
            else:
                # Read the key again: a swap between stat and read shows next round.
                seen = key
                apply(raw)
        await asyncio.sleep(interval)
