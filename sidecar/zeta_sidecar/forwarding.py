"""A request's tries: pick a pod, send, and retry on another pod while that is safe.

A failure before any answer byte reached the client (connect error, reset, 502/503) is
retried on another pod, up to the table's ``retry.attempts`` and while the retry budget
allows; a pod that took the request and fell silent (timeout) is not, since it may be
generating. Every try counts the pod in flight, feeds outlier ejection and wakes the
admission queue when it ends. The first answer that stands is handed to a
:class:`~zeta_sidecar.relay.Relay`.
"""

from zeta_api import Timeouts
from zeta_sidecar.affinity_keys import Keys
from zeta_sidecar.errors import ApiError, NoHealthyPod, UpstreamFailed, UpstreamTimeout
from zeta_sidecar.gateway import Gateway
from zeta_sidecar.headers import request_head, upstream_headers
from zeta_sidecar.http_server import Answer, Request
from zeta_sidecar.limits import Usage
from zeta_sidecar.pods import ModelPods, Pod
from zeta_sidecar.relay import Relay
from zeta_sidecar.table_store import Snapshot

__all__ = ["forward"]

_RETRY_STATUSES = frozenset({502, 503})


async def forward(
    request: Request,
    gw: Gateway,
    *,
    snapshot: Snapshot,
    model: ModelPods,
    name: str,
    payload: bytes,
    start: float,
    queued: bool,
    usage: Usage | None,
    explained: tuple[str, str] | None,
    keys: Keys | None = None,
) -> Answer | None:
    """Send ``payload`` to a pod of ``model`` (``name``: what the client asked for) and
    relay its answer; ``queued``: admitted from the queue, so its room is passed on;
    ``keys``: the request's affinity keys, if the model has affinity. ``None``: the
    answer went out as a stream."""
    balancing = snapshot.balancing
    headers = upstream_headers(request.headers)
    path = request.target
    gw.budget.request(start)
    tries = 1 + balancing.retry.attempts
    failed: Pod | None = None
    error: ApiError | None = None  # built only when needed: an exception per request costs
    for attempt in range(tries):
        if attempt:
            if not gw.budget.try_retry(gw.clock()):
                gw.metrics.retries_denied.labels(model.name).inc()
                break
            gw.metrics.retries.labels(model.name).inc()
        pod = gw.router.pick(model, balancing, start, gw.store.epoch, failed, keys=keys)
        if pod is None:
            break
        pod.inflight += 1
        if queued:
            queued = False
            gw.admission.started(model.name)  # counted in flight: room may be left for more
        try:
            answer = await _try_pod(
                request, gw, model, pod, name=name, payload=payload, path=path,
                headers=headers, timeouts=balancing.timeouts, start=start, usage=usage,
                explained=explained, may_retry=attempt + 1 < tries,
            )  # fmt: skip
        finally:
            pod.inflight -= 1
            gw.admission.wake(model.name)  # a request ended: room for a waiter, maybe
        if not isinstance(answer, tuple):
            return answer
        failed, (error, retry) = pod, answer
        if not retry:
            break
    if queued:
        gw.admission.started(model.name)  # admitted but no pod taken: pass the room on
    if error is None:
        error = NoHealthyPod(f"Model {model.name!r} has no healthy pod.")
    gw.metrics.request(name, model.name, failed.name if failed else "", error.status)
    return Answer.of(error)


async def _try_pod(
    request: Request,
    gw: Gateway,
    model: ModelPods,
    pod: Pod,
    *,
    name: str,
    payload: bytes,
    path: str,
    headers: list[tuple[str, str]],
    timeouts: Timeouts,
    start: float,
    usage: Usage | None,
    explained: tuple[str, str] | None,
    may_retry: bool,
) -> Answer | tuple[ApiError, bool] | None:
    """One try on ``pod``: its answer relayed, or why it failed and whether another pod
    may be tried. A function of its own because mypyc compiles no ``continue`` or
    ``break`` inside ``try``/``finally``, which the retry loop would need."""
    head = request_head(path, pod.address, len(payload), headers)
    try:
        exchange = await gw.upstream.request(
            pod.address,
            (head, payload),
            connect_timeout=timeouts.connect,
            first_byte_timeout=timeouts.first_byte,
        )
    except TimeoutError:
        # The pod took the request and may be generating: not retried.
        gw.failed(pod)
        return UpstreamTimeout(f"Pod of {model.name!r} did not answer in time."), False
    except ConnectionError as exc:  # connect failed, reset, or not HTTP
        gw.failed(pod)
        return UpstreamFailed(f"Pod of {model.name!r} failed: {exc}"), True
    try:
        if exchange.status in _RETRY_STATUSES and may_retry:
            gw.failed(pod)
            return UpstreamFailed(f"Pod of {model.name!r} answered {exchange.status}."), True
        relay = Relay(
            request, gw, name=name, model=model, pod=pod, exchange=exchange, start=start,
            timeouts=timeouts, usage=usage, explained=explained,
        )  # fmt: skip
        return await relay.answer()
    finally:
        exchange.release()  # closes it unless its answer was read to the end
