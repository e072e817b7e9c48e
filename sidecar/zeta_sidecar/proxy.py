"""The traffic handlers: parse just enough, pick a pod, pass the answer through.

Per request: read the body (bounded), parse it once (the model, and for ``complexity``
the estimate's inputs), splice the served model name into the original bytes, pick,
send. Answers stream back as they come: a plain answer (one body) is relayed whole,
an SSE stream chunk by chunk, never buffered.

Failures before any byte reached the client (connect error, reset, 502/503) are retried
once on another pod if the retry budget allows; other failures become OpenAI-style
errors (502, 504). After the first byte of a stream, a failure ends the stream with an
error event, and nothing is retried. A client that disconnects cancels the handler
(the traffic server has ``handler_cancellation``), which closes the upstream connection, so the
pod stops generating.
"""

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping

from aiohttp import web

from zeta_api import PriorityClass, QueueTimeoutStatus, Strategy, Timeouts
from zeta_sidecar.admission import QueueFull
from zeta_sidecar.complexity import describe
from zeta_sidecar.errors import (
    ApiError,
    BadRequest,
    BodyTooLarge,
    NoCapacity,
    NoHealthyPod,
    RateLimited,
    UpstreamFailed,
    UpstreamTimeout,
    sse_error_event,
)
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.headers import downstream_headers, request_head, upstream_headers
from zeta_sidecar.limits import BYTES_PER_TOKEN, TenantLimits
from zeta_sidecar.tables import Pod, Pool, Snapshot, VirtualModel
from zeta_sidecar.upstream import Exchange

__all__ = ["completions", "models", "rewrite_model"]

logger = logging.getLogger(__name__)

_FAST_LOADS: Callable[[bytes], object] | None
try:
    import orjson
except ImportError:  # optional: without it the standard parser serves alone
    _FAST_LOADS = None
else:
    _FAST_LOADS = orjson.loads
"""orjson's parser for request bodies when installed (several times faster than json's)."""
_INT64 = 2.0**63

_RETRY_STATUSES = frozenset({502, 503})
_DEBUG_HEADER = "x-zeta-debug"
"""A request with ``x-zeta-debug: 1`` to a complexity virtual model is answered with an
``x-zeta-complexity`` header: its score, tier and the signals that weighed most."""
_EXPLAIN_KEY = web.RequestKey("zeta_explain", tuple[str, str])
_TOTAL_TOKENS = re.compile(rb'"total_tokens"\s*:\s*(\d{1,12})')
_LARGE_BODY_BYTES = 1 << 20
"""Request bodies above this size are parsed one at a time (see :func:`completions`)."""
_MAX_HELD_EVENT = 1 << 20
"""An SSE event is relayed only once it is complete, so a stream cut mid-event never
hands the client half an event (its SDK would fail to parse it, and the error event
after it would be glued to it); an "event" longer than this is passed on as it comes."""
_WHOLE_ANSWER_BYTES = 1 << 20
"""Plain answers up to this size are read whole before the client gets a byte (a cut one
is still a clean 502); longer ones are relayed piece by piece."""
_WHITESPACE = frozenset(b" \t\r\n")
_COLON = ord(":")
_UNKNOWN = "unknown"
"""Metric label for a model that is not in the table (keeps label sets bounded)."""


def rewrite_model(
    raw: bytes,
    name: str,
    served: str,
    served_json: bytes,
    *,
    name_json: bytes | None = None,
) -> bytes:
    """The body with ``model`` set to ``served``, splicing the original bytes if safe.

    Splicing avoids re-serialising a long prompt. It is done only when the literal
    ``"model"`` key occurs once and nothing is ``\\u``-escaped (an escaped key could hide
    the real top-level one); otherwise the body is serialised again. ``name_json`` is
    ``name`` as a JSON string if the caller has it (the snapshot keeps one per name).
    """
    if name == served:
        return raw
    key = raw.find(b'"model"')
    if key >= 0 and raw.find(b'"model"', key + 7) < 0 and b"\\u" not in raw:
        # After the key: optional whitespace, a colon, optional whitespace, the value.
        at = key + 7
        size = len(raw)
        while at < size and raw[at] in _WHITESPACE:
            at += 1
        if at < size and raw[at] == _COLON:
            at += 1
            while at < size and raw[at] in _WHITESPACE:
                at += 1
            value = json.dumps(name).encode() if name_json is None else name_json
            if raw.startswith(value, at):
                return raw[:key] + b'"model":' + served_json + raw[at + len(value) :]
    # Parsed again, by json: orjson (the caller's parse) turns integers beyond 64 bits
    # into floats, and they must go out as they came. Rare: the splice almost always fits.
    body = json.loads(raw)
    body["model"] = served
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _explain(
    request: web.BaseRequest, virtual: VirtualModel, body: Mapping[str, object], tier: int | None
) -> None:
    """Why a request went where: the ``x-zeta-complexity`` answer header (asked for)."""
    if virtual.strategy is Strategy.COMPLEXITY:
        why = describe(body, virtual.thresholds, len(virtual.candidates), classified=tier)
        request[_EXPLAIN_KEY] = ("x-zeta-complexity", why)


def _answer_headers(request: web.BaseRequest, exchange: Exchange) -> list[tuple[str, str]]:
    headers = downstream_headers(exchange.headers)
    explained = request.get(_EXPLAIN_KEY)
    if explained is not None:
        headers.append(explained)
    return headers


class Usage:
    """A token estimate taken from a tenant's bucket, settled by the usage the pod reports.

    The pod's ``"total_tokens": N`` is found by a byte search, the last one winning
    (OpenAI puts usage at the end of an answer and in a stream's last event); inside a
    JSON string the quotes would be escaped, so content cannot fake it.
    """

    __slots__ = ("estimate", "limits", "used")

    def __init__(self, limits: TenantLimits, estimate: int) -> None:
        self.limits = limits
        self.estimate = estimate
        self.used: int | None = None

    def seen(self, data: bytes) -> None:
        if b'"total_tokens"' in data:
            found = _TOTAL_TOKENS.findall(data)
            if found:
                self.used = int(found[-1])

    def settle(self, now: float) -> None:
        if self.used is not None:
            self.limits.settle(self.estimate, self.used, now)


def _parse_json(raw: bytes) -> dict[str, object]:
    """The body as a JSON object; 400 if it is none.

    orjson first when installed. What it refuses goes to ``json``, which decides: it
    accepts a few documents orjson does not (``NaN``, ``Infinity``, UTF-16, a BOM, lone
    surrogates), and its error messages name what is wrong and where. orjson reads
    integers beyond 64 bits as floats: at the top level (``max_tokens``...) json parses
    such a body again; deeper, nothing reads them, and :func:`rewrite_model` re-parses
    with json before it serialises.
    """
    body: object
    if _FAST_LOADS is None:
        body = _loads(raw)
    else:
        try:
            body = _FAST_LOADS(raw)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            body = _loads(raw)
        else:
            if type(body) is dict:
                for value in body.values():
                    # orjson turns integers beyond 64 bits into floats: json keeps them.
                    if type(value) is float and not -_INT64 <= value < _INT64:
                        body = _loads(raw)
                        break
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def _loads(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:  # a hostile nesting depth; orjson refuses past 1,024 levels too
        raise BadRequest("Request body is nested too deeply.") from None


async def models(gw: Gateway, request: web.BaseRequest) -> web.Response:
    """``GET /v1/models``: the table's models and virtual models."""
    snapshot = gw.store.current
    if snapshot is None:
        return NoHealthyPod("No routing table is loaded yet.").response()
    return web.Response(body=snapshot.models_json, content_type="application/json")


async def completions(gw: Gateway, request: web.BaseRequest) -> web.StreamResponse:
    """``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``."""
    start = gw.clock()
    label = _UNKNOWN
    try:
        snapshot = gw.store.current
        if snapshot is None:
            raise NoHealthyPod("No routing table is loaded yet.")
        # Read inline, not in a helper coroutine: one coroutine less per request.
        limit = gw.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise BodyTooLarge(f"Request body of {length} bytes is over the limit of {limit}.")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(f"Request body is over the limit of {limit} bytes.") from None
        if len(raw) > _LARGE_BODY_BYTES:
            # Parsing holds the event loop (~5 ms per MiB; no JSON parser lets go of the
            # GIL): large bodies take turns, and the requests waiting meanwhile run between
            # them, so no burst of big prompts stalls every other client at once.
            async with gw.large_bodies:
                await asyncio.sleep(0)
                body = _parse_json(raw)
        else:
            body = _parse_json(raw)
        name = body.get("model")
        virtual = snapshot.virtual.get(name) if type(name) is str else None
        tier = None
        if virtual is not None and virtual.classifier is not None:
            tier = await gw.classifier.tier(virtual, body)  # None: the estimate decides
        pool, saturated = gw.router.resolve(snapshot, name, body, tier)
        assert isinstance(name, str)  # resolve refuses anything else
        if virtual is not None and request.headers.get(_DEBUG_HEADER) == "1":
            _explain(request, virtual, body, tier)
        payload = rewrite_model(
            raw, name, pool.served_model_name, pool.served_json,
            name_json=snapshot.names_json.get(name),
        )  # fmt: skip
        label = name
        cls, tenant, limits = gw.traffic.classify(name, request.headers)
        usage = None
        if limits is not None:
            usage = _limit(gw, limits, raw, body, now=start, labels=(name, cls.name, tenant))
        queued = False
        # What is left of the batches is kept for classes that wait (sheddableReserve).
        saturated = saturated or (cls.sheddable and not gw.router.has_room_for_sheddable(pool))
        if saturated or gw.admission.waiting(pool.name):
            if cls.sheddable:
                gw.metrics.admission(name, cls.name, tenant, "shed")
                raise NoCapacity(
                    f"Model {pool.name!r} is saturated; requests of class {cls.name!r} are "
                    "shed while it is.",
                    retry_after=gw.settings.retry_after,
                )
            if gw.admission.waiting(pool.name) or not gw.router.has_room(pool):
                snapshot, pool = await _queue(gw, pool, cls, name, tenant)
                queued = True
        gw.metrics.admission(name, cls.name, tenant, "queued" if queued else "admitted")
    except ApiError as exc:
        gw.metrics.request(label, "", "", exc.status)
        return exc.response()
    return await _forward(
        request,
        gw=gw,
        snapshot=snapshot,
        pool=pool,
        name=name,
        payload=payload,
        start=start,
        queued=queued,
        usage=usage,
    )


def _limit(
    gw: Gateway,
    limits: TenantLimits,
    raw: bytes,
    body: Mapping[str, object],
    *,
    now: float,
    labels: tuple[str, str, str],
) -> Usage | None:
    """Take the request from its tenant's buckets, or raise :class:`RateLimited`."""
    asked = body.get("max_tokens", body.get("max_completion_tokens"))
    estimate = len(raw) // BYTES_PER_TOKEN + (asked if type(asked) is int and asked > 0 else 0)
    refusal = limits.admit(estimate, now)
    if refusal is not None:
        model, cls, tenant = labels
        gw.metrics.admission(model, cls, tenant, "limited")
        raise RateLimited(refusal)
    return Usage(limits, estimate) if limits.tokens is not None else None


async def _queue(
    gw: Gateway, pool: Pool, cls: PriorityClass, name: str, tenant: str
) -> tuple[Snapshot, Pool]:
    """Wait in the admission queue; the table and pool in force once admitted."""
    traffic = gw.traffic.traffic
    begun = gw.clock()
    try:
        await gw.admission.wait(
            pool.name, cls.priority, within=cls.max_queue_time, limit=traffic.queue_limit
        )
    except (TimeoutError, QueueFull) as exc:
        full = isinstance(exc, QueueFull)
        gw.metrics.admission(name, cls.name, tenant, "queue_full" if full else "timed_out")
        gw.metrics.waited(pool.name, cls.name, gw.clock() - begun)
        why = "its admission queue is full" if full else "no pod had room in time"
        message = f"Model {pool.name!r} is saturated and {why}."
        if cls.queue_timeout_status is QueueTimeoutStatus.TOO_MANY_REQUESTS:
            raise NoCapacity(message, retry_after=gw.settings.retry_after) from None
        raise NoHealthyPod(message) from None
    except asyncio.CancelledError:
        gw.metrics.admission(name, cls.name, tenant, "client_left")
        raise
    gw.metrics.waited(pool.name, cls.name, gw.clock() - begun)
    snapshot = gw.store.current
    assert snapshot is not None  # a table once loaded is only ever replaced
    return snapshot, snapshot.pools.get(pool.name, pool)


async def _forward(  # noqa: PLR0915  # one retry loop reads best in one place
    request: web.BaseRequest,
    *,
    gw: Gateway,
    snapshot: Snapshot,
    pool: Pool,
    name: str,
    payload: bytes,
    start: float,
    queued: bool,
    usage: "Usage | None",
) -> web.StreamResponse:
    balancing = snapshot.balancing
    timeouts = balancing.timeouts
    headers = upstream_headers(request.headers)
    path = request.rel_url.raw_path_qs
    upstream = gw.upstream
    gw.budget.request(start)
    tries = 1 + balancing.retry.attempts
    failed: Pod | None = None
    error: ApiError | None = None  # built only when needed: an exception per request costs
    for attempt in range(tries):
        if attempt:
            if not gw.budget.try_retry(gw.clock()):
                gw.metrics.retries_denied.labels(pool.name).inc()
                break
            gw.metrics.retries.labels(pool.name).inc()
        cum = pool.cumulative(start, balancing.warmup, gw.store.epoch)
        pod = gw.router.pick(pool, balancing.picker, cum, failed)
        if pod is None:
            break
        pod.inflight += 1
        if queued:
            queued = False
            gw.admission.started(pool.name)  # counted in flight: room may be left for more
        try:
            head = request_head(path, pod.address, len(payload), headers)
            try:
                exchange = await upstream.request(
                    pod.address,
                    (head, payload),
                    connect_timeout=timeouts.connect,
                    first_byte_timeout=timeouts.first_byte,
                )
            except TimeoutError:
                # The pod took the request and may be generating: not retried.
                gw.failed(pod)
                error = UpstreamTimeout(f"Pod of {pool.name!r} did not answer in time.")
                failed = pod
                break
            except ConnectionError as exc:  # connect failed, reset, or not HTTP
                gw.failed(pod)
                failed, error = pod, UpstreamFailed(f"Pod of {pool.name!r} failed: {exc}")
                continue
            try:
                if exchange.status in _RETRY_STATUSES and attempt + 1 < tries:
                    gw.failed(pod)
                    failed = pod
                    error = UpstreamFailed(f"Pod of {pool.name!r} answered {exchange.status}.")
                    continue
                return await _relay(
                    request, gw=gw, pool=pool, pod=pod, name=name, exchange=exchange,
                    start=start, timeouts=timeouts, usage=usage,
                )  # fmt: skip
            finally:
                exchange.release()  # closes it unless its answer was read to the end
        finally:
            pod.inflight -= 1
            gw.admission.wake(pool.name)  # a request ended: room for a waiter, maybe
    if queued:
        gw.admission.started(pool.name)  # admitted but no pod taken: pass the room on
    if error is None:
        error = NoHealthyPod(f"Model {pool.name!r} has no healthy pod.")
    gw.metrics.request(name, pool.name, failed.name if failed else "", error.status)
    return error.response()


async def _relay(
    request: web.BaseRequest,
    *,
    gw: Gateway,
    pool: Pool,
    pod: Pod,
    name: str,
    exchange: Exchange,
    start: float,
    timeouts: Timeouts,
    usage: "Usage | None",
) -> web.StreamResponse:
    """Pass an answer through: whole if plain, chunk by chunk if an event stream."""
    status = exchange.status
    if status >= 500:
        gw.failed(pod)
    else:
        gw.succeeded(pod)
    if exchange.content_type == "text/event-stream":
        return await _relay_stream(
            request, gw=gw, pool=pool, pod=pod, name=name, exchange=exchange, start=start,
            timeouts=timeouts, usage=usage,
        )  # fmt: skip
    try:
        # Most answers are whole by now; a long one is read up to a bound, so a pod's
        # failure mid-answer can still become a clean 502 while it is short.
        data = (
            exchange.take()
            if exchange.complete
            else await exchange.read(timeouts.first_byte, limit=_WHOLE_ANSWER_BYTES)
        )
    except TimeoutError:
        gw.failed(pod)
        return _answer_error(gw, name, pool, pod, UpstreamTimeout("Pod answer timed out."))
    except ConnectionError as exc:
        gw.failed(pod)
        return _answer_error(gw, name, pool, pod, UpstreamFailed(f"Pod answer cut: {exc}"))
    if not exchange.complete:
        return await _relay_pieces(
            request, gw=gw, pool=pool, pod=pod, name=name, exchange=exchange, start=start,
            first=data, timeouts=timeouts, usage=usage,
        )  # fmt: skip
    elapsed = gw.clock() - start
    if usage is not None:
        usage.seen(data)
        usage.settle(gw.clock())
    gw.metrics.request(name, pool.name, pod.name, status)
    gw.metrics.observe(name, elapsed, None)  # a plain answer's first byte is its last
    return web.Response(status=status, body=data, headers=_answer_headers(request, exchange))


async def _relay_pieces(
    request: web.BaseRequest,
    *,
    gw: Gateway,
    pool: Pool,
    pod: Pod,
    name: str,
    exchange: Exchange,
    start: float,
    first: bytes,
    timeouts: Timeouts,
    usage: "Usage | None",
) -> web.StreamResponse:
    """A plain answer too long to hold: relayed as it comes, never whole in memory.

    Its status and headers are gone once the first piece is: a failure after that can
    only cut the answer short (the client sees fewer bytes than ``Content-Length``
    promised, or no final chunk), and the pod is counted as failed.
    """
    response = web.StreamResponse(
        status=exchange.status, headers=_answer_headers(request, exchange)
    )
    if exchange.content_length is not None:
        response.content_length = exchange.content_length
    await response.prepare(request)
    chunk = first
    try:
        while chunk:
            await response.write(chunk)
            if usage is not None:
                usage.seen(chunk)
            chunk = await exchange.readany(timeouts.idle)
        await response.write_eof()
    except (TimeoutError, ConnectionError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("the client left") from exc
        gw.failed(pod)
        logger.warning("answer from %s cut after its first byte: %r", pod.name, exc)
        if request.transport is not None:
            request.transport.abort()  # the only honest end of a half-sent answer
        gw.metrics.request(name, pool.name, pod.name, 502)
        return response
    gw.metrics.request(name, pool.name, pod.name, exchange.status)
    gw.metrics.observe(name, gw.clock() - start, None)
    if usage is not None:
        usage.settle(gw.clock())
    return response


def _answer_error(gw: Gateway, name: str, pool: Pool, pod: Pod, error: ApiError) -> web.Response:
    gw.metrics.request(name, pool.name, pod.name, error.status)
    return error.response()


async def _relay_stream(
    request: web.BaseRequest,
    *,
    gw: Gateway,
    pool: Pool,
    pod: Pod,
    name: str,
    exchange: Exchange,
    start: float,
    timeouts: Timeouts,
    usage: "Usage | None",
) -> web.StreamResponse:
    # The first chunk is awaited before anything goes to the client: headers and first
    # event leave together, and a pod failing before it still gets a clean 502/504.
    try:
        chunk = await exchange.readany(timeouts.first_byte)
    except TimeoutError:
        gw.failed(pod)
        return _answer_error(gw, name, pool, pod, UpstreamTimeout("Pod stream never started."))
    except ConnectionError as exc:
        gw.failed(pod)
        return _answer_error(gw, name, pool, pod, UpstreamFailed(f"Pod stream failed: {exc}"))
    ttfb = gw.clock() - start
    response = web.StreamResponse(
        status=exchange.status, headers=_answer_headers(request, exchange)
    )
    await response.prepare(request)
    held = b""  # the start of an event not yet complete: it waits for its end
    try:
        while chunk:
            if usage is not None:
                usage.seen(chunk)
            chunk, held = _whole_events(held, chunk)
            if chunk:
                await response.write(chunk)
            chunk = await exchange.readany(timeouts.idle)
        if held:
            await response.write(held)  # a stream that ends without its last blank line
        await response.write_eof()
    except TimeoutError:
        gw.failed(pod)
        await _end_with_error(response, "The pod went silent mid-stream.", "upstream_timeout")
    except ConnectionError as exc:
        if request.transport is None or request.transport.is_closing():
            raise  # the client left; the handler ends, the upstream connection is closed
        gw.failed(pod)
        logger.warning("stream from %s cut after its first byte: %s", pod.name, exc)
        await _end_with_error(response, f"The pod's stream was cut: {exc}", "upstream_failed")
    gw.metrics.request(name, pool.name, pod.name, exchange.status)
    gw.metrics.observe(name, gw.clock() - start, ttfb)
    if usage is not None:
        usage.settle(gw.clock())
    return response


def _whole_events(held: bytes, chunk: bytes) -> tuple[bytes, bytes]:
    """(the complete SSE events of ``held + chunk``, the start of one still incomplete)."""
    data = held + chunk if held else chunk
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
    if end == len(data) or len(data) - end > _MAX_HELD_EVENT:
        return data, b""
    return data[:end], data[end:]


async def _end_with_error(response: web.StreamResponse, message: str, code: str) -> None:
    # Only whole events were relayed (see _relay_stream), so this one starts clean.
    # The client may be gone too: then there is nobody left to tell.
    with contextlib.suppress(ConnectionError):
        await response.write(sse_error_event(message, code=code))
        await response.write_eof()
