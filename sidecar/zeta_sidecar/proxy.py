"""The traffic handlers: parse just enough, admit, pick a model, hand the request on.

Per request: read the body (bounded), parse it once (the model, and for ``complexity``
the estimate's inputs; :mod:`~zeta_sidecar.bodies`), resolve the model
(:mod:`~zeta_sidecar.routing`), take its affinity keys if the model has affinity
(:mod:`~zeta_sidecar.affinity`), splice the served model name into the original bytes,
classify and admit it (rate limits, shedding, the admission queue), then
:func:`~zeta_sidecar.forwarding.forward` it. Anything refused here is an OpenAI-style
error answered at once. A client that disconnects cancels the handler (the traffic
server, :mod:`~zeta_sidecar.http_server`, does), which closes the upstream connection, so the pod
stops generating.
"""

import asyncio
from collections.abc import Mapping

from zeta_api import PriorityClass, QueueTimeoutStatus, Strategy
from zeta_sidecar.admission import QueueFull
from zeta_sidecar.affinity_keys import request_keys
from zeta_sidecar.bodies import parse_body, rewrite_model, with_priority
from zeta_sidecar.complexity import describe
from zeta_sidecar.errors import (
    JSON_TYPE,
    ApiError,
    BodyTooLarge,
    ExpectationFailed,
    MethodNotAllowed,
    NoCapacity,
    NoHealthyPod,
    RateLimited,
    UnknownRoute,
)
from zeta_sidecar.forwarding import forward
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.http_server import Answer, Handler, Request
from zeta_sidecar.limits import BYTES_PER_TOKEN, TenantLimits, Usage
from zeta_sidecar.pods import ModelPods
from zeta_sidecar.table_store import Snapshot, VirtualModel

__all__ = ["completions", "models", "traffic_handler"]

_DEBUG_HEADER = "x-zeta-debug"
"""A request with ``x-zeta-debug: 1`` to a complexity virtual model is answered with an
``x-zeta-complexity`` header: its score, tier and the signals that weighed most."""
_LARGE_BODY_BYTES = 1 << 20
"""Request bodies above this size are parsed one at a time (see :func:`completions`)."""
_UNKNOWN = "unknown"
"""Metric label for a model that is not in the table (keeps label sets bounded)."""


_COMPLETIONS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
_MODELS = "/v1/models"
_POST = ("POST",)
_GET = ("GET", "HEAD")


def _not_allowed(request: Request, allow: tuple[str, ...]) -> Answer:
    message = f"Method {request.method} is not allowed for {request.raw_path}."
    return Answer.of(MethodNotAllowed(message, allow=allow))


def traffic_handler(gateway: Gateway) -> Handler:
    """The OpenAI API on ``--port``: ``POST`` completions and embeddings, ``GET /v1/models``.

    As aiohttp's ``Application`` router did: ``Expect`` answered (:func:`_expect`),
    paths matched decoded (``%2F`` kept), ``HEAD`` with ``GET``; anything else is a 404 or
    a 405 (with ``Allow``), with an OpenAI-style body as every other error here.
    """
    limit = gateway.settings.max_body_bytes

    async def handle(request: Request) -> Answer | None:
        if "Expect" in request.headers:
            refusal = _expect(request, limit)
            if refusal is not None:
                # Labelled as the proxy labels requests refused before their model is read.
                gateway.metrics.request(_UNKNOWN, "", "", refusal.status)
                return refusal
        path = request.path
        if path in _COMPLETIONS:
            if request.method == "POST":
                return await completions(gateway, request)
            return _not_allowed(request, _POST)
        if path == _MODELS:
            if request.method in _GET:
                return await models(gateway, request)
            return _not_allowed(request, _GET)
        return Answer.of(UnknownRoute(f"Invalid URL ({request.method} {request.raw_path})."))

    return handle


def _expect(request: Request, limit: int) -> Answer | None:
    """Answer ``Expect``: ``100 Continue`` only when the declared body is within ``limit``.

    A declared ``Content-Length`` over ``limit`` gets its 413 instead (the client need not
    send the body at all), any expectation other than ``100-continue`` a 417; both close
    the connection, since the body the client holds back would otherwise be read as the
    next request. HTTP/1.0 has no ``Expect`` (RFC 9110, 10.1.1): ignored.
    """
    if not request.http11:
        return None
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        refusal = ExpectationFailed(
            f"Unsupported Expect header {expect[:64]!r}: only 100-continue is supported."
        )
        return Answer.of(refusal, close=True)
    too_large = _declared_too_large(request, limit)
    if too_large is not None:
        return Answer.of(too_large, close=True)
    request.send_continue()
    return None


def _declared_too_large(request: Request, limit: int) -> BodyTooLarge | None:
    """The 413 of a body whose declared ``Content-Length`` is over ``limit``: refused before
    a byte of it is read."""
    length = request.content_length
    if length is not None and length > limit:
        return BodyTooLarge(f"Request body of {length} bytes is over the limit of {limit}.")
    return None


def _explain(
    virtual: VirtualModel, body: Mapping[str, object], tier: int | None
) -> tuple[str, str] | None:
    """Why a request went where: the ``x-zeta-complexity`` answer header (asked for)."""
    if virtual.strategy is not Strategy.COMPLEXITY:
        return None
    why = describe(body, virtual.thresholds, len(virtual.candidates), classified=tier)
    return ("x-zeta-complexity", why)


async def models(gw: Gateway, request: Request) -> Answer:
    """``GET /v1/models``: the table's models and virtual models."""
    snapshot = gw.store.current
    if snapshot is None:
        return Answer.of(NoHealthyPod("No routing table is loaded yet."))
    return Answer(200, [JSON_TYPE], snapshot.models_json)


async def completions(gw: Gateway, request: Request) -> Answer | None:
    """``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``."""
    start = gw.clock()
    label = _UNKNOWN
    try:
        snapshot = gw.store.current
        if snapshot is None:
            raise NoHealthyPod("No routing table is loaded yet.")
        # Read inline, not in a helper coroutine: one coroutine less per request.
        limit = gw.settings.max_body_bytes
        too_large = _declared_too_large(request, limit)
        if too_large is not None:
            raise too_large
        raw = await request.read()  # BodyTooLarge past the limit, BadRequest if malformed
        if len(raw) > _LARGE_BODY_BYTES:
            # Parsing holds the event loop (~5 ms per MiB; no JSON parser lets go of the
            # GIL): large bodies take turns, and the requests waiting meanwhile run between
            # them, so no burst of big prompts stalls every other client at once.
            async with gw.large_bodies:
                await asyncio.sleep(0)
                body = parse_body(raw)
        else:
            body = parse_body(raw)
        name = body.get("model")
        virtual = snapshot.virtual.get(name) if type(name) is str else None
        tier = None
        if virtual is not None and virtual.classifier is not None:
            tier = await gw.classifier.tier(virtual, body)  # None: the estimate decides
        chosen, saturated = gw.router.resolve(snapshot, name, body, tier)
        assert isinstance(name, str)  # resolve refuses anything else
        explained = None
        if virtual is not None and request.headers.get(_DEBUG_HEADER) == "1":
            explained = _explain(virtual, body, tier)
        label = name
        cls, tenant, limits = gw.traffic.classify(name, request.headers)
        payload = _payload(gw, snapshot, raw, name=name, chosen=chosen, cls=cls)
        usage = None
        if limits is not None:
            usage = _limit(gw, limits, raw, body, now=start, labels=(name, cls.name, tenant))
        queued = False
        # What is left of the batches is kept for classes that wait (sheddableReserve).
        saturated = saturated or (cls.sheddable and not gw.router.has_room_for_sheddable(chosen))
        if saturated or gw.admission.waiting(chosen.name):
            if cls.sheddable:
                gw.metrics.admission(name, cls.name, tenant, "shed")
                raise NoCapacity(
                    f"Model {chosen.name!r} is saturated; requests of class {cls.name!r} are "
                    "shed while it is.",
                    retry_after=gw.settings.retry_after,
                )
            if _must_wait(gw, chosen, cls):
                snapshot, chosen = await _queue(gw, chosen, cls, name, tenant)
                queued = True
        gw.metrics.admission(name, cls.name, tenant, "queued" if queued else "admitted")
    except ApiError as exc:
        gw.metrics.request(label, "", "", exc.status)
        return Answer.of(exc)
    return await forward(
        request, gw, snapshot=snapshot, model=chosen, name=name, payload=payload,
        start=start, queued=queued, usage=usage, explained=explained,
        keys=None if chosen.affinity is None else request_keys(
            body, request.headers, chosen.affinity
        ),
    )  # fmt: skip


def _must_wait(gw: Gateway, chosen: ModelPods, cls: PriorityClass) -> bool:
    """Whether a request that may not be shed waits in the admission queue: others wait
    already, or no pod has room. When the pods schedule by priority, the highest class
    goes on at once: its pod preempts lower classes for it, and holding it here would
    make it wait for load it outranks."""
    if gw.traffic.traffic.engine_priority and cls.priority >= gw.traffic.top:
        return False
    return bool(gw.admission.waiting(chosen.name)) or not gw.router.has_room(chosen)


def _payload(
    gw: Gateway, snapshot: Snapshot, raw: bytes, *, name: str, chosen: ModelPods, cls: PriorityClass
) -> bytes:
    """The body the pod gets: its served model name, and the class's rank as vLLM's
    ``priority`` when the pods schedule by it (``traffic.enginePriority``)."""
    payload = rewrite_model(
        raw, name, chosen.served_model_name, chosen.served_json,
        name_json=snapshot.names_json.get(name),
    )  # fmt: skip
    if gw.traffic.traffic.engine_priority:
        return with_priority(payload, cls.priority)
    return payload


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
    gw: Gateway, model: ModelPods, cls: PriorityClass, name: str, tenant: str
) -> tuple[Snapshot, ModelPods]:
    """Wait in the admission queue; the table and model in force once admitted."""
    traffic = gw.traffic.traffic
    begun = gw.clock()
    try:
        await gw.admission.wait(
            model.name, cls.priority, within=cls.max_queue_time, limit=traffic.queue_limit
        )
    except (TimeoutError, QueueFull) as exc:
        full = isinstance(exc, QueueFull)
        gw.metrics.admission(name, cls.name, tenant, "queue_full" if full else "timed_out")
        gw.metrics.waited(model.name, cls.name, gw.clock() - begun)
        why = "its admission queue is full" if full else "no pod had room in time"
        message = f"Model {model.name!r} is saturated and {why}."
        if cls.queue_timeout_status is QueueTimeoutStatus.TOO_MANY_REQUESTS:
            raise NoCapacity(message, retry_after=gw.settings.retry_after) from None
        raise NoHealthyPod(message) from None
    except asyncio.CancelledError:
        gw.metrics.admission(name, cls.name, tenant, "client_left")
        raise
    gw.metrics.waited(model.name, cls.name, gw.clock() - begun)
    snapshot = gw.store.current
    assert snapshot is not None  # a table once loaded is only ever replaced
    return snapshot, snapshot.models.get(model.name, model)
