"""The testbed's readiness probe of a starting sidecar (``zeta_testbed.sidecar.answers``)."""

import socket
import threading
from collections.abc import Iterator

import pytest

from zeta_testbed.sidecar import answers

pytestmark = pytest.mark.unit


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a busy process)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_probe_slower_than_its_timeout_is_not_yet_up(silent_server: int) -> None:
    # Before: the read timeout escaped as TimeoutError, which start_sidecar took for its
    # own deadline and gave up at once (a routing benchmark's zeta run failed so).
    assert answers(f"http://127.0.0.1:{silent_server}/readyz") is False


def test_a_refused_probe_is_not_yet_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert answers(f"http://127.0.0.1:{port}/readyz") is False
