"""Fixtures of the hostile suite: a scripted malicious pod and a real ``zeta-sidecar``
pointed at it through a table file, with short upstream timeouts so that every timeout
case ends in about a second. No testbed.

- ``hostile``: one pod and one sidecar shared by a module (starting a sidecar costs about
  half a second); the test scripts the pod per case (``X-Hostile-Case``), and the
  fixture checks after each test that the sidecar is still alive and healthy.
- ``fresh``: a pod of the test's own behind the module's sidecar (the table file is
  rewritten to name only it, and the sidecar reloads it): the upstream connection pool
  for a new address starts empty, so connection counts are the test's alone.
- ``own_sidecar``: a pod and a sidecar process of the test's own, for what must start
  clean in the process itself (memory high-water marks).
- ``decoy``: a listener on another loopback port that no request may ever reach.

To run the suite against another copy of the sidecar (say the code before a fix), put
that copy first on ``PYTHONPATH``: the sidecar process inherits it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.sidecar import (
    SidecarProcess,
    SidecarStartError,
    get,
    start_sidecar,
    wait_until,
)

from .malicious_pod import MaliciousPod
from .raw import Client, Response, post

MODEL = "m"
CONNECT_TIMEOUT = 1.0
FIRST_BYTE_TIMEOUT = 1.0
IDLE_TIMEOUT = 0.5
BALANCING = {
    "timeouts": {
        "connect": f"{int(CONNECT_TIMEOUT * 1000)}ms",
        "firstByte": f"{int(FIRST_BYTE_TIMEOUT * 1000)}ms",
        "idle": f"{int(IDLE_TIMEOUT * 1000)}ms",
    },
    # One pod per model: no retry to hide a failure, and no ejection to turn the next
    # case's answer into a 503.
    "retry": {"attempts": 0},
    "outlier": {"consecutiveFailures": 1000},
    "warmup": "0s",
}
HANG = 5.0
"""Bound on any answer expected at once (a hang shows up as a ReadTimeout)."""


@dataclass
class Hostile:
    """A malicious pod behind a real sidecar."""

    pod: MaliciousPod
    sidecar: SidecarProcess
    table: Path

    @property
    def port(self) -> int:
        return self.sidecar.port

    def client(self) -> Client:
        return Client(self.sidecar.port)

    def request_bytes(
        self,
        case: str,
        *,
        marker: str | None = None,
        stream: bool = False,
        headers: Iterable[tuple[str, str]] = (),
        body: dict[str, object] | None = None,
    ) -> bytes:
        doc: dict[str, object] = (
            body
            if body is not None
            else {
                "model": MODEL,
                "messages": [{"role": "user", "content": "hi"}],
            }
        )
        if stream:
            doc = {**doc, "stream": True}
        return post(
            doc,
            headers=[
                ("X-Hostile-Case", case),
                ("X-Hostile-Marker", marker or uuid.uuid4().hex),
                *headers,
            ],
        )

    def ask(
        self, case: str, *, timeout: float = HANG, stream: bool = False, marker: str | None = None
    ) -> Response:
        """One request of ``case`` on a fresh client connection; its response."""
        with self.client() as client:
            client.send(self.request_bytes(case, stream=stream, marker=marker))
            return client.read_response(timeout)

    def memory(self) -> tuple[int, int]:
        """The sidecar's (VmRSS, VmHWM) in bytes, from /proc."""
        values = {}
        status = Path(f"/proc/{self.sidecar.process.pid}/status").read_text()
        for line in status.splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
        return values["VmRSS"], values["VmHWM"]

    def point_at(self, address: str) -> None:
        """Make the table name only ``address`` and wait until the sidecar serves it."""
        revision = (self.sidecar.revision() or 0) + 1
        text = table_json({MODEL: [endpoint(address)]}, balancing=BALANCING, revision=revision)
        tmp = self.table.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.table)  # atomic: the poller never reads half a table
        wait_until(lambda: self.sidecar.revision() == revision, within=10, what="the table")

    def assert_healthy(self) -> None:
        code = self.sidecar.process.poll()
        assert code is None, f"the sidecar exited ({code}): {self.sidecar.log.read_text()[-3000:]}"
        assert get(f"{self.sidecar.admin}/healthz")[0] == 200


def start_hostile(tmp: Path, *, extra: tuple[str, ...] = ()) -> Hostile:
    pod = MaliciousPod().start()
    path = tmp / "routing.json"
    path.write_text(table_json({MODEL: [endpoint(pod.address)]}, balancing=BALANCING))
    try:
        proc = start_sidecar(("--table-file", str(path)), log=tmp / "sidecar.log", extra=extra)
    except SidecarStartError as exc:
        pod.stop()
        pytest.fail(str(exc))
    return Hostile(pod, proc, path)


def stop_hostile(env: Hostile) -> None:
    env.sidecar.stop()
    env.pod.stop()
    # Shown only when a test failed: what the sidecar said about it.
    print(f"--- sidecar log ({env.sidecar.log}), last lines ---")
    print("\n".join(env.sidecar.log.read_text(errors="replace").splitlines()[-40:]))


@pytest.fixture(scope="module")
def _shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    env = start_hostile(tmp_path_factory.mktemp("hostile"))
    yield env
    stop_hostile(env)


@pytest.fixture
def hostile(_shared: Hostile) -> Iterator[Hostile]:
    """The module's pod and sidecar; the sidecar must survive the test."""
    yield _shared
    _shared.assert_healthy()


@pytest.fixture
def fresh(_shared: Hostile) -> Iterator[Hostile]:
    """A pod of this test's own, alone in the module sidecar's table."""
    pod = MaliciousPod().start()
    try:
        _shared.point_at(pod.address)
        yield Hostile(pod, _shared.sidecar, _shared.table)
        _shared.assert_healthy()
    finally:
        _shared.point_at(_shared.pod.address)
        pod.stop()


@pytest.fixture
def own_sidecar(tmp_path: Path) -> Iterator[Hostile]:
    """A pod and a sidecar process of this test's own."""
    env = start_hostile(tmp_path)
    yield env
    try:
        env.assert_healthy()
    finally:
        stop_hostile(env)


@pytest.fixture
def decoy() -> Iterator[MaliciousPod]:
    """A listener on another loopback port: any connection to it is a failure."""
    pod = MaliciousPod().start()
    yield pod
    pod.stop()


def echo_of(response: Response) -> dict[str, object]:
    """The pod's default answer, as relayed (asserts a 200 JSON answer)."""
    assert response.status == 200, (response.status, response.body[:300])
    doc = json.loads(response.body)
    assert isinstance(doc, dict)
    return doc
