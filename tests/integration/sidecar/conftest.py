"""Fixtures for the sidecar against the testbed: a real ``zeta-sidecar`` process.

The process helpers live in :mod:`zeta_testbed.sidecar`; the ``sidecar`` fixture is in
the root conftest, shared with the hardening suites.
"""

from zeta_testbed.sidecar import (
    SidecarFactory,
    SidecarProcess,
    get,
    kubelet_dir,
    swap_kubelet_dir,
    wait_until,
)

__all__ = [
    "SidecarFactory",
    "SidecarProcess",
    "get",
    "kubelet_dir",
    "swap_kubelet_dir",
    "wait_until",
]
