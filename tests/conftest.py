"""Fixtures shared by every test: the testbed, once per session, and a namespace per test.

Set ``ZETA_TESTBED_DIR`` to the state folder of a testbed you already run
(``zeta-testbed up --state-dir DIR``) to reuse it and skip the start-up; otherwise
the session starts its own in a temporary folder and takes it down at the end.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from zeta_testbed.sidecar import SidecarFactory, SidecarProcess, SidecarStartError, start_sidecar
from zeta_testbed.testbed import Testbed

SESSION_PODS = {"4b": 2, "7b": 2, "14b": 1}
"""The shape of the cluster the design benchmarks: heterogeneous, with twins to compare."""


def pytest_sessionstart(session: pytest.Session) -> None:
    # An editable install builds the sidecar's compiled modules in place (setup.py); a
    # source edited since runs its old compiled form, so the tests would judge old code.
    package = Path(__file__).resolve().parent.parent / "sidecar" / "zeta_sidecar"
    if os.environ.get("ZETA_PURE_PYTHON", "") not in ("", "0"):
        return
    stale = [
        so.name.partition(".")[0]
        for so in package.glob("*.so")
        if (source := so.with_name(so.name.partition(".")[0] + ".py")).exists()
        and source.stat().st_mtime > so.stat().st_mtime
    ]
    if stale:
        pytest.exit(
            f"compiled modules older than their source: {', '.join(sorted(stale))}; rebuild "
            "them (make setup) or run the pure form (ZETA_PURE_PYTHON=1)",
            returncode=4,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder says what a test needs: tests/unit runs anywhere, tests/integration needs
    # the testbed, tests/e2e the whole product on it; tests/hostile, tests/chaos and
    # tests/soak are the hardening suites (issue 7).
    for item in items:
        parts = Path(str(item.fspath)).parts
        for marker in ("unit", "integration", "e2e", "hostile", "chaos", "soak"):
            if marker in parts:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    existing = os.environ.get("ZETA_TESTBED_DIR")
    if existing and Testbed(Path(existing)).exists():
        yield Testbed(Path(existing))
        return
    bed = Testbed(tmp_path_factory.mktemp("testbed"))
    # Ten times real time: the simulated models answer in milliseconds, tests stay short.
    bed.up(SESSION_PODS, time_scale=10.0)
    try:
        yield bed
    finally:
        bed.down()


@pytest.fixture
def core(testbed: Testbed) -> Iterator[k8s.CoreV1Api]:
    with testbed.api_client() as api:
        yield k8s.CoreV1Api(api)


@contextlib.contextmanager
def scratch_namespace(
    testbed: Testbed, core: k8s.CoreV1Api, before_delete: Callable[[str], None] | None = None
) -> Iterator[str]:
    """A fresh namespace, deleted (with its pods) on leaving; ``before_delete(name)``
    first lets go of what would hold the deletion up, such as finalizers."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        if before_delete is not None:
            before_delete(name)
        for pod in testbed.pods(name):
            testbed.remove_pod(pod.name, name)
        core.delete_namespace(name)


@pytest.fixture
def namespace(testbed: Testbed, core: k8s.CoreV1Api) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    with scratch_namespace(testbed, core) as name:
        yield name


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[SidecarFactory]:
    """Start ``zeta-sidecar`` processes; each is SIGTERMed (by PID) at teardown."""
    started: list[SidecarProcess] = []

    def start(*source: str, ready: bool = True, extra: tuple[str, ...] = ()) -> SidecarProcess:
        log = tmp_path / f"sidecar-{len(started)}.log"
        try:
            proc = start_sidecar(source, log=log, extra=extra, ready=ready)
        except SidecarStartError as exc:
            pytest.fail(str(exc))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
