"""The aiohttp application: the engine behind OpenAI routes (wire format in ``wire``).

Routes:

- ``POST /v1/chat/completions``, ``POST /v1/completions``: generation, streaming (SSE,
  one event per token) or not. Errors are OpenAI-shaped:
  ``{"error": {"message", "type", "param", "code"}}``.
- ``GET /v1/models``, ``GET /health``, ``GET /metrics``.
- ``GET|POST|DELETE /admin/faults`` (see ``faults``) and ``GET /admin/stats`` (request
  outcomes, the engine's gauges, and the prefix cache's queries and hits in tokens).
- ``GET /admin/spans?since=T``: when each request arrived in the engine and left it, on
  the engine's clock (``time.monotonic``, shared by the processes of one machine), with
  that clock's ``now``: a benchmark rebuilds each pod's exact load over time from them.
- ``POST /reset_prefix_cache``: vLLM's (dev-mode) route, so a benchmark can start each
  system on cold caches; 409 while sequences run.

A generation request goes: parse (400/404) -> fault decision (reset, 500, hang) ->
engine -> response. A client that disconnects cancels its handler (the runner is built
with ``handler_cancellation=True``; a failed SSE write has the same effect), which
removes its sequence from the engine and counts it as cancelled.

At shutdown, everything in flight is aborted (503, or an error event on a stream)
instead of drained: a simulated pod has no work worth finishing, and tests should not
wait out a grace period.
"""

import asyncio
import contextlib
import logging
import random
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from zeta_testbed.sim.caching import DEFAULT_BLOCK_SIZE, block_hashes
from zeta_testbed.sim.engine import Clock, Engine, FinishReason, Sequence, SequenceState, Sleep
from zeta_testbed.sim.faults import Action, Faults, FaultsError
from zeta_testbed.sim.metrics import LEGACY_METRIC_NAMES, METRIC_NAMES, SimMetrics, render
from zeta_testbed.sim.presets import DEFAULT_PRESET, PRESETS, Preset
from zeta_testbed.sim.wire import (
    ApiError,
    ChunkWriter,
    Generation,
    Kind,
    bad_request,
    completion_body,
    error_response,
    generated_text,
    json_response,
    parse_generation,
    read_json_object,
)

__all__ = ["STATE", "RunningSim", "SimConfig", "SimState", "create_app", "create_runner", "start"]

logger = logging.getLogger(__name__)

_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
"""Long prompts (a 100k-token context is ~400 KB) must fit; aiohttp's default is 1 MiB."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """What one sim serves and how fast; built once by the CLI or a test."""

    preset: Preset = PRESETS[DEFAULT_PRESET]
    """Model size: capacity, step times and KV capacity."""

    model: str | None = None
    """Model id in ``/v1/models`` and the metrics' ``model_name``; ``sim-<preset>`` if unset."""

    served_model_name: str | None = None
    """Another name requests may use for the model, as vLLM's ``--served-model-name``."""

    capacity: int | None = None
    """Concurrent sequences, overriding the preset's."""

    time_scale: float = 1.0
    """Speed-up over real time: 10 makes every step ten times shorter."""

    legacy_kv_metric: bool = False
    """Export ``vllm:gpu_cache_usage_perc`` (vLLM V0) instead of ``kv_cache_usage_perc``."""

    prefix_caching: bool = True
    """Cache prompt blocks and skip the prefill of a cached prefix (see ``caching``).

    On by default, as in vLLM V1; off gives the sim's behaviour from before it had a
    prefix cache, and prefix-cache counters that stay at 0, as vLLM's do when it is off.
    """

    block_size: int = DEFAULT_BLOCK_SIZE
    """Tokens per KV-cache block, the prefix cache's unit (vLLM's ``--block-size``)."""

    priority_scheduling: bool = False
    """vLLM's ``--scheduling-policy priority`` (see ``engine.Engine.priority_scheduling``)."""

    seed: int = 0
    """Seeds the default output lengths and the error-rate draws."""

    @property
    def model_name(self) -> str:
        """The model id actually served."""
        return self.model or self.preset.default_model_name

    @property
    def accepted_models(self) -> tuple[str, ...]:
        """Names a request's ``model`` may carry, the model id first."""
        names = [self.model_name]
        if self.served_model_name and self.served_model_name != self.model_name:
            names.append(self.served_model_name)
        return tuple(names)


@dataclass(slots=True, kw_only=True)
class SimState:
    """The live state of one sim application."""

    config: SimConfig
    engine: Engine
    metrics: SimMetrics
    faults: Faults = field(default_factory=Faults)
    closing: bool = False
    """Set at shutdown: new generation requests get a 503."""
    hang_released: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever the ``hang`` fault is off; hung requests wait on it."""
    length_rng: random.Random = field(default_factory=random.Random)
    fault_rng: random.Random = field(default_factory=random.Random)

    def set_faults(self, faults: Faults) -> None:
        """Put ``faults`` in force at once, for requests in flight too."""
        self.faults = faults
        self.engine.slowdown = faults.slowdown
        if faults.hang:
            self.hang_released.clear()
        else:
            self.hang_released.set()
        logger.info("faults now %s", faults.to_json())

    def stats_json(self) -> dict[str, object]:
        """The counters ``GET /admin/stats`` returns."""
        stats = self.engine.stats()
        requests = self.metrics.requests
        return {
            "requests_total": requests.total,
            "completed": sum(stats.finished_total.values()),
            "cancelled": requests.cancelled,
            "failed": requests.failed,
            "running": stats.running,
            "waiting": stats.waiting,
            "hung": requests.hung,
            "kv_cache_usage": stats.kv_cache_usage,
            "prefix_caching": self.config.prefix_caching,
            "prefix_cache_queries": stats.prefix_cache_queries_total,
            "prefix_cache_hits": stats.prefix_cache_hits_total,
            "prefix_cached_blocks": stats.prefix_cached_blocks,
        }


STATE: Final = web.AppKey("zeta_sim_state", SimState)
_REGISTRY: Final = web.AppKey("zeta_sim_registry", CollectorRegistry)


def _observe_finished(state: SimState, seq: Sequence) -> None:
    # Only completed requests feed the latency histograms, as in vLLM.
    if seq.first_token_at is not None and seq.finished_at is not None:
        state.metrics.ttft.observe(seq.first_token_at - seq.arrived_at)
        state.metrics.e2e_latency.observe(seq.finished_at - seq.arrived_at)


def _reset_connection(request: web.Request) -> None:
    """Close the request's connection with a TCP RST and no response, like a crash."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger on, timeout 0: close() discards unsent data and sends RST, not FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _shutting_down() -> web.Response:
    return error_response(503, "The server is shutting down.", kind="server_error", code="shutdown")


async def _generate(request: web.Request, kind: Kind) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        gen = parse_generation(kind, await read_json_object(request), state.config.accepted_models)
        if gen.priority and not state.engine.priority_scheduling:
            # vLLM's answer to a priority without `--scheduling-policy priority`.
            raise bad_request(
                f"Got priority {gen.priority} but Priority scheduling is not enabled.",
                param="priority",
            )
    except ApiError as exc:
        return exc.response()
    state.metrics.requests.total += 1

    action = state.faults.decide(state.fault_rng.random())
    failure = _inject_failure(request, state, action)
    if failure is not None:
        return failure
    if action is Action.HANG:
        try:
            await _wait_while_hung(state)
        except asyncio.CancelledError:
            state.metrics.requests.cancelled += 1
            raise
    if state.closing:
        return _shutting_down()

    seq = _submit(state, gen)
    if gen.stream:
        return await _stream(request, state, gen, seq)
    try:
        await seq.wait_done()
    except asyncio.CancelledError:
        # The client went away (or the server gave up on this handler at shutdown).
        _cancel(state, seq)
        raise
    if seq.state is not SequenceState.FINISHED:
        return _shutting_down()
    _observe_finished(state, seq)
    return json_response(completion_body(gen, seq, int(time.time())))


def _inject_failure(
    request: web.Request, state: SimState, action: Action
) -> web.StreamResponse | None:
    """The response for a request failed by a fault, or None to let it proceed."""
    if action is Action.RESET:
        state.metrics.requests.failed += 1
        _reset_connection(request)
        # Never sent: writing to the aborted transport fails, and aiohttp drops it
        # quietly as a premature client disconnection.
        return web.Response()
    if action is Action.ERROR:
        state.metrics.requests.failed += 1
        return error_response(
            500,
            "Injected fault: the simulated engine failed this request.",
            kind="server_error",
            code="injected_error",
        )
    return None


async def _wait_while_hung(state: SimState) -> None:
    state.metrics.requests.hung += 1
    try:
        # Re-check after each wake-up: the fault may have been set again meanwhile.
        while state.faults.hang and not state.closing:
            await state.hang_released.wait()
    finally:
        state.metrics.requests.hung -= 1


def _submit(state: SimState, gen: Generation) -> Sequence:
    if gen.max_tokens is not None:
        output_tokens, reason = gen.max_tokens, FinishReason.LENGTH
    else:
        preset = state.config.preset
        output_tokens = state.length_rng.randint(
            preset.default_output_tokens_min, preset.default_output_tokens_max
        )
        reason = FinishReason.STOP
    block_size = state.engine.block_size
    blocks: list[int] = []
    answer: list[int] = []
    if block_size is not None:
        counted = gen.prompt_tokens // block_size
        if isinstance(gen.prompt, str):
            # One chain over the prompt and the answer it will get: its first blocks are
            # the prompt's, the rest are cached once the answer is complete, and a next
            # turn that sends the answer back finds them (see caching's docstring).
            chain = block_hashes(gen.prompt + generated_text(output_tokens), block_size)
            blocks, answer = chain[:counted], chain[counted:]
        else:
            blocks = block_hashes(gen.prompt, block_size, limit=counted)
    return state.engine.submit(
        prompt_tokens=gen.prompt_tokens,
        output_tokens=output_tokens,
        finish_reason=reason,
        blocks=blocks,
        answer_blocks=answer,
        priority=gen.priority,
    )


def _cancel(state: SimState, seq: Sequence) -> None:
    # Counted only if the engine still held it: a request whose last token was already
    # generated completed, whatever happened to its final write.
    if state.engine.cancel(seq):
        state.metrics.requests.cancelled += 1


async def _stream(
    request: web.Request, state: SimState, gen: Generation, seq: Sequence
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    writer = ChunkWriter(gen, int(time.time()))
    try:
        await response.prepare(request)
        opening = writer.opening()
        if opening:
            await response.write(opening)
        sent = 0
        while True:
            generated = await seq.wait_progress(sent)
            if generated > sent:
                await response.write(writer.tokens(sent, generated))
                sent = generated
            if seq.done:
                break
        if seq.state is SequenceState.FINISHED:
            await response.write(writer.closing(seq))
            _observe_finished(state, seq)
        else:
            await response.write(writer.aborted())
        await response.write_eof()
    except ConnectionResetError:
        # A failed write: the client is gone even if the handler was not cancelled.
        _cancel(state, seq)
    except asyncio.CancelledError:
        _cancel(state, seq)
        raise
    return response


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "chat")


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "completion")


async def _models(request: web.Request) -> web.Response:
    config = request.app[STATE].config
    created = int(time.time())
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "zeta-sim",
            "root": config.model_name,
            "parent": None,
        }
        for name in config.accepted_models
    ]
    return json_response({"object": "list", "data": data})


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = render(request.app[_REGISTRY], request.headers.get("Accept"))
    # aiohttp's content_type argument refuses parameters, so set the raw header.
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _get_faults(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].faults.to_json())


async def _post_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        patch = await read_json_object(request)
        faults = state.faults.patched(patch)
    except ApiError as exc:
        return exc.response()
    except FaultsError as exc:
        return error_response(
            400, str(exc), kind="invalid_request_error", code="invalid_fault", param=exc.field
        )
    state.set_faults(faults)
    return json_response(faults.to_json())


async def _delete_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.set_faults(Faults())
    return json_response(state.faults.to_json())


async def _stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats_json())


async def _spans(request: web.Request) -> web.Response:
    try:
        since = float(request.query.get("since", "-inf"))
    except ValueError:
        return bad_request(
            "since must be a number (seconds on the engine's clock)", param="since"
        ).response()
    engine = request.app[STATE].engine
    return json_response({"now": engine.now(), "spans": engine.spans(since)})


async def _reset_prefix_cache(request: web.Request) -> web.Response:
    if request.app[STATE].engine.reset_prefix_cache():
        return web.Response(status=200)
    return error_response(
        409,
        "Sequences are running: the prefix cache was not reset.",
        kind="invalid_request_error",
        code="cache_in_use",
    )


def create_app(
    config: SimConfig, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
) -> web.Application:
    """Build the application; its engine runs while the application is set up.

    Serve it with a runner from ``create_runner`` so that disconnects cancel handlers.
    """
    engine = Engine(
        config.preset,
        capacity=config.capacity,
        time_scale=config.time_scale,
        prefix_caching=config.prefix_caching,
        block_size=config.block_size,
        priority_scheduling=config.priority_scheduling,
        clock=clock,
        sleep=sleep,
    )
    names = LEGACY_METRIC_NAMES if config.legacy_kv_metric else METRIC_NAMES
    metrics = SimMetrics(model_name=config.model_name, names=names, engine=engine)
    state = SimState(
        config=config,
        engine=engine,
        metrics=metrics,
        # Separate streams, so that turning on errors does not change output lengths.
        length_rng=random.Random(f"lengths:{config.seed}"),
        fault_rng=random.Random(f"faults:{config.seed}"),
    )
    state.hang_released.set()

    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app[STATE] = state
    app[_REGISTRY] = metrics.registry()
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/admin/faults", _get_faults)
    app.router.add_post("/admin/faults", _post_faults)
    app.router.add_delete("/admin/faults", _delete_faults)
    app.router.add_get("/admin/stats", _stats)
    app.router.add_get("/admin/spans", _spans)
    app.router.add_post("/reset_prefix_cache", _reset_prefix_cache)
    app.cleanup_ctx.append(_engine_lifetime)
    app.on_shutdown.append(_abort_in_flight)
    return app


async def _engine_lifetime(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[STATE].engine.run(), name="zeta-sim-engine")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _abort_in_flight(app: web.Application) -> None:
    state = app[STATE]
    state.closing = True
    state.engine.abort_all()
    state.hang_released.set()


def create_runner(app: web.Application, *, access_log: bool = False) -> web.AppRunner:
    """A runner that cancels a handler when its client disconnects.

    Without ``handler_cancellation``, a non-streaming request whose client left would
    keep its engine slot until its last token. The access log is off by default: at
    hundreds of requests per second it would cost more than the simulation.
    """
    return web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        # In-flight work is aborted at shutdown, so handlers end within a step.
        shutdown_timeout=5.0,
    )


@dataclass(slots=True)
class RunningSim:
    """A sim listening on a socket; stop it with ``aclose``."""

    runner: web.AppRunner
    host: str
    port: int
    _closed: bool = False

    @property
    def state(self) -> SimState:
        """The application's live state (engine, faults, counters)."""
        app = self.runner.app
        assert app is not None  # an AppRunner always has its application
        return app[STATE]

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8000``; OpenAI clients add ``/v1``."""
        return f"http://{self.host}:{self.port}"

    async def aclose(self) -> None:
        """Stop listening, abort what is in flight, and stop the engine; idempotent."""
        if not self._closed:
            self._closed = True
            await self.runner.cleanup()


async def start(
    config: SimConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: bool = False,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> RunningSim:
    """Serve a sim on ``host:port`` (port 0: an ephemeral port) until ``aclose``."""
    runner = create_runner(create_app(config, clock=clock, sleep=sleep), access_log=access_log)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = port
    for address in runner.addresses:
        # IPv4 and IPv6 socket names both start with (host, port, ...).
        if isinstance(address, tuple):
            bound_port = int(address[1])
            break
    return RunningSim(runner=runner, host=host, port=bound_port)
