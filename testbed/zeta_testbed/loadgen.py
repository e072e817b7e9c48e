"""A bounded OpenAI-API load generator that records the outcome of every request it sends.

The fault suite and the soak drive the sidecar with it: a fixed number of clients, each
sending one request at a time (streaming or not, as a :data:`Mix` draws them) until told
to stop or a request count is reached. Every request ends as exactly one
:class:`Outcome`, classified from what the client saw:

- ``ok``: a 200 with a complete JSON completion; ``done``: a stream that ended with
  ``[DONE]`` and no error event;
- ``error``: a non-200 answer with an OpenAI-shaped error body (the status is kept);
  ``error-event``: a stream that carried an OpenAI error event and then ended cleanly
  (what the OpenAI SDK raises as an ``APIError``). Both are well-formed failures;
- ``malformed``: a body that is neither (bad JSON, a non-OpenAI error, a stream that
  ended without ``[DONE]`` or an error event: silently cut);
- ``refused``: no response at all (connect error, reset before the status line);
  ``cut``: the connection dropped in the middle of a response;
- ``hang``: the client's own timeout fired. Every request has one, so nothing waits
  forever, and a hang is an outcome to assert on, not a stuck test.

Streams keep their text and completion ids, so a test can check that the content of a
stream is one generation (one id, the text of one run), not a restart spliced in.

Loopback traffic only, always bounded by ``clients`` and the caller's stop condition.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "SUCCESS",
    "WELL_FORMED",
    "BackgroundLoad",
    "Kind",
    "LoadGenerator",
    "Mix",
    "Outcome",
    "Report",
    "Request",
    "chat_mix",
    "send",
]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


class Kind(enum.StrEnum):
    """How one request ended, as its client saw it."""

    OK = "ok"
    DONE = "done"
    ERROR = "error"
    ERROR_EVENT = "error-event"
    MALFORMED = "malformed"
    REFUSED = "refused"
    CUT = "cut"
    HANG = "hang"


SUCCESS = frozenset({Kind.OK, Kind.DONE})
WELL_FORMED = frozenset({Kind.OK, Kind.DONE, Kind.ERROR, Kind.ERROR_EVENT})
"""Outcomes a client can act on: an answer, or an error it can read."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request to send: a path under the base URL and its JSON body."""

    path: str
    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))


Mix = Callable[[random.Random, int], Request]
"""Draws the ``n``-th request of a run from a seeded random source."""


def chat_mix(
    models: Sequence[str],
    *,
    stream_share: float = 0.5,
    max_tokens: tuple[int, int] = (2, 16),
    completions_share: float = 0.0,
    prompt: str = "Say hello.",
) -> Mix:
    """Chat (and optionally legacy completion) requests over ``models``, a share streamed."""

    def draw(rng: random.Random, n: int) -> Request:
        model = models[n % len(models)]
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": rng.randint(*max_tokens),
            "stream": rng.random() < stream_share,
        }
        if rng.random() < completions_share:
            return Request(COMPLETIONS, {**body, "prompt": prompt})
        return Request(CHAT, {**body, "messages": [{"role": "user", "content": prompt}]})

    return draw


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one request."""

    kind: Kind
    status: int
    """The HTTP status, 0 if none came."""
    stream: bool
    model: str
    """The model asked for."""
    target: str
    """The base URL it went to."""
    started: float
    """``time.monotonic()`` when it was sent."""
    seconds: float
    served: str = ""
    """The ``model`` the answer named (the served model name)."""
    content: str = ""
    tokens: int = 0
    """Content pieces of a stream, or the usage's completion tokens of a plain answer."""
    ids: tuple[str, ...] = ()
    """Distinct completion ids in the answer, in order of appearance."""
    detail: str = ""
    """The error's code (or type), or the exception, for anything but a success."""

    @property
    def succeeded(self) -> bool:
        return self.kind in SUCCESS

    @property
    def well_formed(self) -> bool:
        return self.kind in WELL_FORMED

    @property
    def label(self) -> str:
        """The kind, with the status for an ``error`` (``error-503``)."""
        return f"{self.kind}-{self.status}" if self.kind is Kind.ERROR else str(self.kind)


@dataclass(slots=True)
class Report:
    """Every outcome of a run, in the order they ended."""

    outcomes: list[Outcome] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcomes)

    def counts(self) -> Counter[str]:
        """Outcomes by :attr:`Outcome.label`."""
        return Counter(o.label for o in self.outcomes)

    def failures(self) -> list[Outcome]:
        """Requests that did not succeed."""
        return [o for o in self.outcomes if not o.succeeded]

    def badly_formed(self) -> list[Outcome]:
        """Requests whose client got neither an answer nor a readable error."""
        return [o for o in self.outcomes if not o.well_formed]

    def streams(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.stream]

    def summary(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts().items()))
        return f"{len(self.outcomes)} requests: {counts}"


def _error_detail(data: bytes) -> str | None:
    """The code (or type) of an OpenAI-shaped error body, or None if it is not one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    if not isinstance(error.get("type"), str):
        return None
    return str(error.get("code") or error["type"])


def _piece(choice: dict[str, Any]) -> str:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return str(delta.get("content") or "")
    return str(choice.get("text") or "")


def _classify_stream(data: bytes) -> dict[str, Any]:
    """Fields of an :class:`Outcome` from a whole SSE body that ended cleanly."""
    pieces: list[str] = []
    ids: list[str] = []
    served = ""
    error: str | None = None
    last = b""
    for raw in data.split(b"\n\n"):
        event = raw.strip()
        if not event:
            continue
        if not event.startswith(b"data: "):
            return {"kind": Kind.MALFORMED, "detail": f"not an SSE data event: {event[:80]!r}"}
        payload = event[6:]
        last = payload
        if payload == b"[DONE]":
            continue
        try:
            doc = json.loads(payload)
        except ValueError:
            return {"kind": Kind.MALFORMED, "detail": f"bad JSON in an event: {payload[:80]!r}"}
        if "error" in doc:
            error = _error_detail(payload)
            if error is None:
                return {"kind": Kind.MALFORMED, "detail": f"bad error event: {payload[:80]!r}"}
            continue
        if doc.get("id") and doc["id"] not in ids:
            ids.append(doc["id"])
        served = doc.get("model") or served
        for choice in doc.get("choices") or ():
            text = _piece(choice)
            if text:
                pieces.append(text)
    fields: dict[str, Any] = {
        "content": "".join(pieces),
        "tokens": len(pieces),
        "ids": tuple(ids),
        "served": served,
    }
    if error is not None:
        return {**fields, "kind": Kind.ERROR_EVENT, "detail": error}
    if last != b"[DONE]":
        return {**fields, "kind": Kind.MALFORMED, "detail": "stream ended without [DONE]"}
    return {**fields, "kind": Kind.DONE}


def _classify_plain(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
        choice = doc["choices"][0]
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else choice.get("text")
        usage = doc.get("usage") or {}
        return {
            "kind": Kind.OK,
            "content": str(content or ""),
            "tokens": int(usage.get("completion_tokens") or 0),
            "ids": (str(doc.get("id", "")),),
            "served": str(doc.get("model", "")),
        }
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return {"kind": Kind.MALFORMED, "detail": f"not a completion: {data[:80]!r}"}


async def send(
    session: aiohttp.ClientSession, base: str, request: Request, *, within: float
) -> Outcome:
    """Send one request and classify how it ended; never raises for the server's sake."""
    started = time.monotonic()
    status = 0
    fields: dict[str, Any]
    try:
        async with asyncio.timeout(within):
            async with session.post(base + request.path, json=request.body) as resp:
                status = resp.status
                data = await resp.read()
        if status != 200:
            detail = _error_detail(data)
            if detail is None:
                fields = {"kind": Kind.MALFORMED, "detail": f"{status}: {data[:80]!r}"}
            else:
                fields = {"kind": Kind.ERROR, "detail": detail}
        elif request.stream:
            fields = _classify_stream(data)
        else:
            fields = _classify_plain(data)
    except TimeoutError:
        fields = {"kind": Kind.HANG, "detail": f"no end within {within} s"}
    except (aiohttp.ClientError, OSError) as exc:
        kind = Kind.REFUSED if status == 0 else Kind.CUT
        fields = {"kind": kind, "detail": f"{type(exc).__name__}: {exc}"}
    return Outcome(
        status=status,
        stream=request.stream,
        model=request.model,
        target=base,
        started=started,
        seconds=time.monotonic() - started,
        **fields,
    )


class LoadGenerator:
    """``clients`` concurrent clients, each sending one request at a time.

    ``target`` is a base URL, or a function called before each request that returns
    one (a client-side balancer). Runs until ``stop`` is set or ``requests`` have been
    sent, whichever comes first; each client then finishes its request in flight.
    """

    def __init__(
        self,
        target: str | Callable[[], str],
        mix: Mix,
        *,
        clients: int,
        timeout: float = 30.0,
        seed: int = 0,
        pause: float = 0.0,
    ) -> None:
        self._target = target if callable(target) else (lambda: target)
        self._mix = mix
        self.clients = clients
        self.timeout = timeout
        self.pause = pause
        """Seconds each client waits between two requests (0: back to back)."""
        self._rng = random.Random(seed)
        self._sent = 0
        self.report = Report()

    @property
    def sent(self) -> int:
        return self._sent

    async def run(self, stop: threading.Event, *, requests: int | None = None) -> Report:
        async def client() -> None:
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                while not stop.is_set() and (requests is None or self._sent < requests):
                    n = self._sent
                    self._sent += 1
                    request = self._mix(self._rng, n)
                    outcome = await send(session, self._target(), request, within=self.timeout)
                    self.report.outcomes.append(outcome)
                    if self.pause:
                        await asyncio.sleep(self.pause)

        await asyncio.gather(*(client() for _ in range(self.clients)))
        return self.report


class BackgroundLoad:
    """A :class:`LoadGenerator` on its own thread and event loop, for synchronous tests.

    ``with BackgroundLoad(gen) as load: ...; report = load.stop()``. ``stop`` waits for
    the requests in flight (each bounded by the generator's timeout) and raises
    ``TimeoutError`` if the clients do not finish within it: a hang of the load itself.
    """

    def __init__(self, generator: LoadGenerator, *, requests: int | None = None) -> None:
        self.generator = generator
        self._requests = requests
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="zeta-loadgen", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self.generator.run(self._stop, requests=self._requests))
        except BaseException as exc:  # re-raised in stop(): a thread's error is otherwise lost
            self._error = exc

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def report(self) -> Report:
        """The outcomes so far (the list grows while the load runs)."""
        return self.generator.report

    def done(self) -> bool:
        """The clients finished (``requests`` reached, or stopped)."""
        return not self._thread.is_alive()

    def wait(self, within: float) -> Report:
        """Wait for a run bounded by ``requests`` to end by itself."""
        self._thread.join(within)
        return self.stop()

    def stop(self) -> Report:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(self.generator.timeout + 10)
            if self._thread.is_alive():
                raise TimeoutError("the load generator's clients did not finish")
        if self._error is not None:
            raise self._error
        return self.generator.report
