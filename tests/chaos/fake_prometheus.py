"""Prometheus faults the real one cannot be made to show, served on loopback.

- :class:`HungPrometheus`: a TCP server that accepts connections and never answers.
- :class:`FakePrometheus`: an HTTP server answering ``/api/v1/query`` as told by its
  ``mode``: sane values, an empty vector, NaN values, an answer slower than the
  timeout, or one that trickles a byte at a time and never ends (which requests'
  per-read timeout does not stop).
- :func:`refused_url`: a loopback address where nothing listens.

Each counts what it was asked, so a test can see a collection in flight. Servers run
on daemon threads and are closed by their context managers.
"""

from __future__ import annotations

import abc
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["MODES", "FakePrometheus", "HungPrometheus", "refused_url"]

MODES = ("ok", "empty", "nan", "slow", "trickle")


def refused_url() -> str:
    """A loopback URL whose port was free a moment ago: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _Server(abc.ABC):
    """A server the tests use as a context manager; each kind says how it closes."""

    url: str

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Stop serving and release the socket."""


class HungPrometheus(_Server):
    """Accepts every connection, reads nothing, answers nothing, closes nothing."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def accepted(self) -> int:
        with self._lock:
            return len(self._held)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(conn)

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        with self._lock:
            for conn in self._held:
                conn.close()


class FakePrometheus(_Server):
    """Answers instant queries per ``mode``; ``pods`` are the pods it reports on."""

    def __init__(self, mode: str = "ok", *, delay: float = 0.0) -> None:
        self.mode = mode
        self.delay = delay
        """Seconds the ``slow`` mode waits before answering; the ``trickle`` mode sends
        one byte every ``delay`` seconds."""
        self.pods: list[str] = []
        self.queries = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _vector(self, mode: str) -> list[dict[str, Any]]:
        if mode == "empty":
            return []
        value = "NaN" if mode == "nan" else "1"
        return [{"metric": {"pod": pod}, "value": [time.time(), value]} for pod in self.pods]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.queries += 1
        mode = self.mode
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "slow" and self._closed.wait(self.delay):
            return
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": self._vector(mode)}}
        ).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if mode != "trickle":
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        # No length: the body runs until the connection closes (HTTP/1.0), and every
        # read gets its byte within the client's timeout, so the answer never ends
        # (until the mode changes: then the client gets a body that is no JSON).
        handler.end_headers()
        try:
            while self.mode == "trickle" and not self._closed.wait(self.delay):
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except OSError:
            return

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
