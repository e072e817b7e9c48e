"""Raw-socket HTTP/1.1 clients for the hostile suites: exact bytes out, every read bounded.

Stable API (other suites import it; add, do not change):

- :func:`post` / :func:`build_request`: the bytes of a request, exactly as given;
  :func:`post_json`: one request on a fresh connection, its response.
- :class:`Client`: one blocking TCP connection; ``send(bytes)``,
  ``read_response(timeout)`` (interim 1xx answers collected, body de-chunked, or handed
  to a ``sink`` piece by piece for huge bodies), ``read_head(timeout)`` (one head,
  interim or final: the ``Expect: 100-continue`` dance), ``closed_within(timeout)``.
- :class:`Response`: ``status``, ``headers``, ``body``, ``interim``, ``complete``
  (framing ended cleanly), ``header(name)``, ``json()``, ``events()`` (SSE payloads).
- :func:`openai_error`: asserts the OpenAI error shape and returns the error object.
- :class:`ReadTimeout` (the peer sent nothing final in time: a hang, bounded) and
  :class:`Closed` (the peer closed before a complete response); both keep what came.

Every read has a deadline; nothing here can block a test for longer than asked.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "Client",
    "Closed",
    "ReadTimeout",
    "Response",
    "build_request",
    "openai_error",
    "post",
    "post_json",
]

MAX_HEAD = 1 << 20
"""Largest response head this client reads before giving up on it."""

Sink = Callable[[bytes], None]


class ReadTimeout(AssertionError):
    """No complete answer within the deadline (an AssertionError: a hang is a failure)."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(f"{message}; received so far: {partial[:300]!r}")
        self.partial = partial


class Closed(AssertionError):
    """The peer closed the connection before a complete answer."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(f"{message}; received so far: {partial[:300]!r}")
        self.partial = partial


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    interim: list[int] = field(default_factory=list)
    """Statuses of the 1xx answers that came before this one."""
    complete: bool = False
    """The body ended at its framing (length reached, last chunk read), not by a close."""
    size: int = 0
    """Body bytes received (also counted when they went to a sink)."""

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def header_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]

    def json(self) -> object:
        return json.loads(self.body)

    def events(self) -> list[bytes]:
        """The ``data:`` payloads of an SSE body, in order."""
        out = []
        for block in self.body.split(b"\n\n"):
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    out.append(line[5:].strip())
        return out


def openai_error(response: Response, status: int, code: str | None = None) -> dict[str, object]:
    """Assert ``response`` is an OpenAI-style error with ``status`` (and ``code``)."""
    assert response.status == status, (response.status, response.body[:500])
    assert (response.header("content-type") or "").startswith("application/json"), response.headers
    doc = response.json()
    assert isinstance(doc, dict), doc
    assert set(doc) == {"error"}, doc
    error = doc["error"]
    assert isinstance(error, dict), doc
    assert {"message", "type", "code"} <= set(error), error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def build_request(
    method: str,
    target: str,
    *,
    host: str = "sidecar",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_length: bool = True,
) -> bytes:
    """A request with exactly these headers (plus ``Host`` and ``Content-Length``)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(
    body: bytes | Mapping[str, object],
    *,
    path: str = "/v1/chat/completions",
    headers: Iterable[tuple[str, str]] = (),
    host: str = "sidecar",
) -> bytes:
    """A ``POST`` of ``body`` (a dict is sent as JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return build_request(
        "POST",
        path,
        host=host,
        headers=[("Content-Type", "application/json"), *headers],
        body=data,
    )


class Client:
    """One connection to ``host:port``; every read bounded by its timeout."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, connect_timeout: float = 2.0):
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._eof = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, *, timeout: float = 10.0) -> None:
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    # --- reading ---------------------------------------------------------------------------

    def _fill(self, deadline: float, what: str) -> None:
        """Read more bytes into the buffer, or raise ReadTimeout / Closed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise ReadTimeout(f"no {what} in time", bytes(self._buf))
        if self._eof:
            raise Closed(f"connection closed before the {what}", bytes(self._buf))
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            raise ReadTimeout(f"no {what} in time", bytes(self._buf)) from None
        except ConnectionResetError:
            data = b""
        if not data:
            self._eof = True
            raise Closed(f"connection closed before the {what}", bytes(self._buf))
        self._buf += data

    def _line(self, deadline: float, what: str) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            if len(self._buf) > MAX_HEAD:
                raise AssertionError(f"{what} line over {MAX_HEAD} bytes")
            self._fill(deadline, what)

    def _exactly(self, n: int, deadline: float, what: str, sink: Sink) -> None:
        while n > 0:
            if not self._buf:
                self._fill(deadline, what)
            take = min(n, len(self._buf))
            sink(bytes(self._buf[:take]))
            del self._buf[:take]
            n -= take

    def read_head(self, timeout: float = 5.0) -> Response:
        """The next response head (interim or final), its body not read."""
        deadline = time.monotonic() + timeout
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > MAX_HEAD:
                raise AssertionError(f"response head over {MAX_HEAD} bytes")
            self._fill(deadline, "response head")
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        assert version.startswith("HTTP/1."), lines[0]
        code, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep, f"bad header line from the sidecar: {line!r}"
            headers.append((name, value.strip()))
        return Response(int(code), reason, headers)

    def read_response(
        self,
        timeout: float = 5.0,
        *,
        sink: Sink | None = None,
        head_request: bool = False,
    ) -> Response:
        """The next final response, its 1xx predecessors in ``interim``.

        The body is de-chunked into ``body``, or handed to ``sink`` piece by piece (then
        ``body`` stays empty and ``size`` counts). A body without framing runs to the
        close. Raises :class:`ReadTimeout` after ``timeout`` seconds in all, :class:`Closed`
        if the connection ends before the framing says the body is complete.
        """
        deadline = time.monotonic() + timeout
        interim: list[int] = []
        while True:
            response = self.read_head(max(deadline - time.monotonic(), 0.0))
            if 100 <= response.status < 200 and response.status != 101:
                interim.append(response.status)
                continue
            break
        response.interim = interim
        pieces: list[bytes] = []

        def collect(data: bytes) -> None:
            response.size += len(data)
            if sink is None:
                pieces.append(data)
            else:
                sink(data)

        try:
            self._body(response, deadline, collect, head_request)
        finally:
            response.body = b"".join(pieces)
        return response

    def _body(self, response: Response, deadline: float, collect: Sink, head: bool) -> None:
        status = response.status
        if head or status in (204, 304) or 100 <= status < 200:
            response.complete = True
            return
        te = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if te.endswith("chunked"):
            while True:
                size_line = self._line(deadline, "chunk size")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    while self._line(deadline, "trailer"):
                        pass
                    response.complete = True
                    return
                self._exactly(size, deadline, "chunk data", collect)
                assert self._line(deadline, "chunk end") == b"", "chunk not ended by CRLF"
        elif length is not None:
            self._exactly(int(length), deadline, "body", collect)
            response.complete = True
        else:
            try:
                while True:
                    if self._buf:
                        collect(bytes(self._buf))
                        self._buf.clear()
                    self._fill(deadline, "end of the body")
            except Closed:
                response.complete = False

    def closed_within(self, timeout: float) -> bool:
        """Whether the peer closes within ``timeout`` s (bytes meanwhile are kept)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline, "close")
        except Closed:
            return True
        except ReadTimeout:
            return False

    @property
    def leftover(self) -> bytes:
        """Bytes received and not yet read as part of a response."""
        return bytes(self._buf)


def post_json(
    port: int,
    body: bytes | Mapping[str, object],
    *,
    path: str = "/v1/chat/completions",
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = 5.0,
) -> Response:
    """One request on a fresh connection; the response (the connection is then closed)."""
    with Client(port) as client:
        client.send(post(body, path=path, headers=headers))
        return client.read_response(timeout)
