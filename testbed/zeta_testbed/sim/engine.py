"""The continuous-batching engine: who runs, who waits, and how long a step takes.

The model is vLLM's scheduler reduced to what a load balancer can observe:

- At most ``capacity`` sequences run at once; further arrivals wait in FIFO order.
- One loop advances time in *steps*. At the start of a step, waiting sequences are
  admitted into free slots; at its end, every running sequence has emitted one token.
  A sequence's first token therefore arrives at the end of the step that admitted it,
  so its time to first token is its queue wait plus that step, which carries the
  prefill of everything admitted with it.
- A step lasts::

      (decode * (1 + batch_penalty * running / capacity) + prefill * admitted_prompt_tokens)
      * slowdown / time_scale

  where ``running`` counts the batch after admission (see ``presets`` for the figures)
  and ``admitted_prompt_tokens`` leaves out the prefixes found in the prefix cache.
- KV-cache usage is the tokens held by running sequences (prompt plus generated so
  far) over the preset's KV capacity, capped at 1. The cache never blocks admission
  or preempts: the slot limit is the only back-pressure, which keeps the arithmetic
  predictable for tests while still giving the gauge a realistic shape.
- With prefix caching on (see ``caching``), a sequence submitted with its prompt's block
  hashes skips the prefill of its cached prefix, and a prompt block held by several
  running sequences is counted once in the usage; blocks no sequence holds stay cached
  in the room the running ones leave, uncounted, as vLLM's gauge leaves them. Without
  block hashes (or with caching off) a sequence costs what it always did.

No sequence owns a timer: the step loop sets one future per waiting consumer, so the
cost of a step is linear in the batch and independent of how many tokens a consumer
reads at once. When nothing runs or waits, the loop awaits a future that ``submit``
resolves, so an idle engine costs nothing.

This module does no I/O. Time comes from an injected clock and sleep, which tests
replace with virtual time.
"""

import asyncio
import enum
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Sequence as CollectionSequence
from dataclasses import dataclass
from types import MappingProxyType

from zeta_testbed.sim.caching import DEFAULT_BLOCK_SIZE, PrefixCache
from zeta_testbed.sim.presets import Preset

__all__ = [
    "Clock",
    "Engine",
    "EngineStats",
    "FinishReason",
    "Sequence",
    "SequenceState",
    "Sleep",
]

Clock = Callable[[], float]
"""Returns the current time in seconds; only differences are used."""

Sleep = Callable[[float], Awaitable[None]]
"""Waits the given number of seconds on the clock above."""


class SequenceState(enum.Enum):
    """Where a sequence is in its life; the last three are final."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    """Its consumer went away (client disconnect)."""
    ABORTED = "aborted"
    """The engine stopped under it (server shutdown)."""


class FinishReason(enum.StrEnum):
    """OpenAI's ``finish_reason`` for a sequence that ran to its end."""

    LENGTH = "length"
    """It reached the ``max_tokens`` the client asked for."""
    STOP = "stop"
    """The simulated model chose to stop (no ``max_tokens`` was given)."""


_FINAL_STATES = frozenset({SequenceState.FINISHED, SequenceState.CANCELLED, SequenceState.ABORTED})

SPANS_KEPT = 100_000
"""How many ended sequences' spans the engine remembers (16 bytes of floats each, about
7 MB with the tuples): a benchmark run's worth, read back after it."""


class Sequence:
    """One request inside the engine; read by exactly one consumer.

    The consumer awaits ``wait_progress`` (streaming) or ``wait_done`` (whole
    response); timestamps are on the engine's clock and set by the engine only.
    """

    __slots__ = (
        "_done_waiter",
        "_progress_waiter",
        "admitted_at",
        "answer_blocks",
        "arrived_at",
        "blocks",
        "cached_tokens",
        "finish_reason",
        "finished_at",
        "first_token_at",
        "generated",
        "id",
        "output_tokens",
        "priority",
        "prompt_tokens",
        "state",
    )

    def __init__(
        self,
        *,
        seq_id: int,
        prompt_tokens: int,
        output_tokens: int,
        finish_reason: FinishReason,
        arrived_at: float,
        blocks: tuple[int, ...] = (),
        answer_blocks: tuple[int, ...] = (),
        priority: int = 0,
    ) -> None:
        self.id = seq_id
        self.prompt_tokens = prompt_tokens
        self.blocks = blocks
        self.answer_blocks = answer_blocks
        """Hashes of the blocks after the prompt's, through the whole answer: cached when
        the sequence finishes (empty when prefix caching is off)."""
        self.priority = priority
        """vLLM's request priority: lower is served first (priority scheduling only)."""
        """Hashes of the prompt's full blocks; empty when prefix caching is off."""
        self.cached_tokens = 0
        """Prompt tokens found in the prefix cache at admission; their prefill is skipped."""
        self.output_tokens = output_tokens
        """Tokens the sequence will emit if it runs to its end."""
        self.finish_reason = finish_reason
        self.arrived_at = arrived_at
        self.admitted_at: float | None = None
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.generated = 0
        self.state = SequenceState.WAITING
        self._progress_waiter: asyncio.Future[None] | None = None
        self._done_waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return (
            f"Sequence(id={self.id}, state={self.state.value}, "
            f"generated={self.generated}/{self.output_tokens})"
        )

    @property
    def done(self) -> bool:
        """Whether the sequence is in a final state and will emit nothing more."""
        return self.state in _FINAL_STATES

    async def wait_progress(self, seen: int) -> int:
        """Wait until more than ``seen`` tokens exist or the sequence is done.

        Returns the number of tokens generated so far; a consumer slower than the
        steps gets several tokens per wake-up instead of falling behind.
        """
        if self.generated <= seen and not self.done:
            waiter = asyncio.get_running_loop().create_future()
            self._progress_waiter = waiter
            await waiter
        return self.generated

    async def wait_done(self) -> None:
        """Wait until the sequence reaches a final state."""
        if not self.done:
            waiter = asyncio.get_running_loop().create_future()
            self._done_waiter = waiter
            await waiter

    def _wake_progress(self) -> None:
        waiter = self._progress_waiter
        if waiter is not None:
            self._progress_waiter = None
            # A consumer cancelled while waiting leaves a cancelled future behind.
            if not waiter.done():
                waiter.set_result(None)

    def _end(self, state: SequenceState, now: float) -> None:
        self.state = state
        self.finished_at = now
        self._wake_progress()
        waiter = self._done_waiter
        if waiter is not None:
            self._done_waiter = None
            if not waiter.done():
                waiter.set_result(None)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStats:
    """A consistent snapshot of the engine's gauges and counters."""

    running: int
    waiting: int
    kv_cache_usage: float
    """Fraction in [0, 1]."""
    submitted_total: int
    finished_total: Mapping[FinishReason, int]
    cancelled_total: int
    aborted_total: int
    prompt_tokens_total: int
    """Prompt tokens of admitted sequences, cached ones included (as vLLM counts them)."""
    generation_tokens_total: int
    """Tokens emitted, including those of sequences later cancelled."""
    steps_total: int
    prefix_cache_queries_total: int
    """Prompt tokens looked up in the prefix cache; 0 with caching off, as in vLLM."""
    prefix_cache_hits_total: int
    """Prompt tokens found there, whose prefill was skipped."""
    prefix_cached_blocks: int
    """Blocks in the prefix cache now, held by running sequences or free."""


class Engine:
    """Continuous batching over ``capacity`` slots, driven by ``run``."""

    def __init__(
        self,
        preset: Preset,
        *,
        capacity: int | None = None,
        time_scale: float = 1.0,
        prefix_caching: bool = False,
        block_size: int = DEFAULT_BLOCK_SIZE,
        priority_scheduling: bool = False,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """Build an idle engine; nothing happens until ``run`` is awaited.

        ``capacity`` overrides the preset's slot count. ``time_scale`` divides every
        step's duration: 10 runs the model ten times faster than real time.
        ``prefix_caching`` keeps prompt blocks of ``block_size`` tokens in the KV cache.
        """
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.preset = preset
        self.capacity = capacity if capacity is not None else preset.capacity
        self.time_scale = time_scale
        self._clock = clock
        self._sleep = sleep
        self._slowdown = 1.0
        self._cache = (
            PrefixCache(block_size=block_size, capacity_tokens=preset.kv_capacity_tokens)
            if prefix_caching
            else None
        )
        self.priority_scheduling = priority_scheduling
        """vLLM's ``--scheduling-policy priority``: the waiting are admitted by (priority,
        arrival), and a waiting sequence of a better priority than a running one
        preempts it when the batch is full (the preempted one waits again and, once
        readmitted, prefills its prompt and what it generated: vLLM's recompute)."""
        self._preemptions = 0
        # Insertion-ordered maps: FIFO admission, and O(1) removal on cancellation.
        self._waiting: OrderedDict[int, Sequence] = OrderedDict()
        self._running: dict[int, Sequence] = {}
        self._kv_tokens = 0
        self._next_id = 0
        self._idle_waiter: asyncio.Future[None] | None = None
        self._is_running = False
        self._submitted = 0
        self._finished = dict.fromkeys(FinishReason, 0)
        self._cancelled = 0
        self._aborted = 0
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self._steps = 0
        self._spans: deque[tuple[float, float]] = deque(maxlen=SPANS_KEPT)

    @property
    def slowdown(self) -> float:
        """Factor (>= 1) multiplying every step's duration; the ``slowdown`` fault."""
        return self._slowdown

    @slowdown.setter
    def slowdown(self, value: float) -> None:
        if not value >= 1.0:
            raise ValueError(f"slowdown must be at least 1, got {value}")
        self._slowdown = value

    def step_duration(self, running: int, prefill_tokens: int) -> float:
        """Seconds of one step with ``running`` sequences after admitting ``prefill_tokens``."""
        preset = self.preset
        decode = preset.decode_seconds_per_token * (
            1.0 + preset.batch_penalty * running / self.capacity
        )
        prefill = preset.prefill_seconds_per_token * prefill_tokens
        return (decode + prefill) * self._slowdown / self.time_scale

    @property
    def kv_cache_usage(self) -> float:
        """Tokens held by running sequences over the KV capacity, capped at 1."""
        return min(1.0, self._kv_tokens / self.preset.kv_capacity_tokens)

    @property
    def block_size(self) -> int | None:
        """Tokens per prefix-cache block, or None with prefix caching off."""
        return None if self._cache is None else self._cache.block_size

    def reset_prefix_cache(self) -> bool:
        """Empty the prefix cache; False while sequences run (nothing is dropped then),
        True with caching off (there is nothing to empty)."""
        return self._cache is None or self._cache.reset()

    def stats(self) -> EngineStats:
        """Snapshot the gauges and counters."""
        cache = self._cache
        return EngineStats(
            running=len(self._running),
            waiting=len(self._waiting),
            kv_cache_usage=self.kv_cache_usage,
            submitted_total=self._submitted,
            finished_total=MappingProxyType(dict(self._finished)),
            cancelled_total=self._cancelled,
            aborted_total=self._aborted,
            prompt_tokens_total=self._prompt_tokens_total,
            generation_tokens_total=self._generation_tokens_total,
            steps_total=self._steps,
            prefix_cache_queries_total=0 if cache is None else cache.queries,
            prefix_cache_hits_total=0 if cache is None else cache.hits,
            prefix_cached_blocks=0 if cache is None else cache.cached_blocks,
        )

    def submit(
        self,
        *,
        prompt_tokens: int,
        output_tokens: int,
        finish_reason: FinishReason = FinishReason.LENGTH,
        blocks: CollectionSequence[int] = (),
        answer_blocks: CollectionSequence[int] = (),
        priority: int = 0,
    ) -> Sequence:
        """Queue a sequence that will emit ``output_tokens`` tokens, then end.

        ``blocks`` are the chained hashes of its prompt's blocks (``caching.block_hashes``),
        of which only full blocks within ``prompt_tokens`` count; ``answer_blocks`` the
        chain's next blocks, through the text it will generate, cached once it finishes.
        Both ignored with prefix caching off.
        """
        if prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must not be negative, got {prompt_tokens}")
        if output_tokens < 1:
            raise ValueError(f"output_tokens must be at least 1, got {output_tokens}")
        seq = Sequence(
            seq_id=self._next_id,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            finish_reason=finish_reason,
            arrived_at=self._clock(),
            blocks=()
            if self._cache is None
            else tuple(blocks[: prompt_tokens // self._cache.block_size]),
            answer_blocks=() if self._cache is None else tuple(answer_blocks),
            priority=priority,
        )
        self._next_id += 1
        self._submitted += 1
        self._waiting[seq.id] = seq
        idle = self._idle_waiter
        if idle is not None and not idle.done():
            idle.set_result(None)
        return seq

    def now(self) -> float:
        """The engine's clock, which its sequences' timestamps are on."""
        return self._clock()

    def spans(self, since: float = float("-inf")) -> list[tuple[float, float | None]]:
        """``(arrived, left)`` of each sequence that arrived at ``since`` or later, in
        order of leaving, those still waiting or running last with ``left`` None: the
        engine's load (running plus waiting) at any moment is the spans open then. Only
        the last :data:`SPANS_KEPT` ended ones are remembered."""
        ended: list[tuple[float, float | None]] = [s for s in self._spans if s[0] >= since]
        held = (*self._waiting.values(), *self._running.values())
        open_ = sorted(q.arrived_at for q in held if q.arrived_at >= since)
        return ended + [(arrived, None) for arrived in open_]

    def _end(self, seq: Sequence, state: SequenceState, now: float) -> None:
        self._spans.append((seq.arrived_at, now))
        seq._end(state, now)

    def cancel(self, seq: Sequence) -> bool:
        """Remove a sequence whose consumer went away; frees its slot at once.

        Returns whether it was cancelled (False if it had already ended), so callers
        can count cancellations without double counting.
        """
        if seq.state is SequenceState.WAITING:
            del self._waiting[seq.id]
        elif seq.state is SequenceState.RUNNING:
            del self._running[seq.id]
            self._release(seq)
        else:
            return False
        self._cancelled += 1
        self._end(seq, SequenceState.CANCELLED, self._clock())
        return True

    def abort_all(self) -> None:
        """End every waiting and running sequence, waking their consumers (shutdown)."""
        now = self._clock()
        for seq in self._running.values():
            self._release(seq)
        for seq in (*self._waiting.values(), *self._running.values()):
            self._end(seq, SequenceState.ABORTED, now)
            self._aborted += 1
        self._waiting.clear()
        self._running.clear()
        self._kv_tokens = 0

    async def run(self) -> None:
        """Step until cancelled; sequences still in flight are then aborted."""
        if self._is_running:
            raise RuntimeError("the engine's step loop is already running")
        self._is_running = True
        try:
            while True:
                if not self._running and not self._waiting:
                    self._idle_waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._idle_waiter
                    finally:
                        self._idle_waiter = None
                    continue
                await self.step()
        finally:
            self._is_running = False
            self.abort_all()

    async def step(self) -> None:
        """Admit, wait out one step, emit a token per running sequence.

        ``run`` calls this in a loop; tests call it directly to move one step at a time.
        """
        started = self._clock()
        prefill_tokens = self._admit(started)
        duration = self.step_duration(len(self._running), prefill_tokens)
        # Sleep to a deadline rather than for a duration, so the loop's own work counts
        # as part of the step instead of drifting the simulated clock behind real time.
        # Always yield, even when late, or a fast time scale would starve the server.
        await self._sleep(max(0.0, started + duration - self._clock()))
        self._emit(self._clock())

    def _admit(self, now: float) -> int:
        """Move waiting sequences into free slots; returns the prompt tokens to prefill."""
        cache = self._cache
        if self.priority_scheduling:
            self._preempt()
        prompt_tokens = cached_tokens = shared_tokens = recomputed = 0
        while self._waiting and len(self._running) < self.capacity:
            seq = self._next_waiting()
            seq.state = SequenceState.RUNNING
            seq.admitted_at = now
            self._running[seq.id] = seq
            recomputed += seq.generated  # a preempted sequence's tokens, computed again
            prompt_tokens += seq.prompt_tokens
            if cache is not None:
                cached, shared = cache.acquire(seq.blocks, seq.prompt_tokens)
                seq.cached_tokens = cached
                cached_tokens += cached
                shared_tokens += shared
        self._kv_tokens += prompt_tokens - shared_tokens + recomputed
        self._prompt_tokens_total += prompt_tokens
        if cache is not None:
            cache.trim(self._kv_tokens)
        return prompt_tokens - cached_tokens + recomputed

    def _next_waiting(self) -> Sequence:
        if not self.priority_scheduling:
            return self._waiting.popitem(last=False)[1]
        seq = min(self._waiting.values(), key=_rank)
        del self._waiting[seq.id]
        return seq

    def _preempt(self) -> None:
        """Make room in a full batch for waiting sequences of a better priority."""
        while self._waiting and len(self._running) >= self.capacity:
            best = min(self._waiting.values(), key=_rank)
            worst = max(self._running.values(), key=_rank)
            if best.priority >= worst.priority:
                return
            del self._running[worst.id]
            self._release(worst)
            worst.state = SequenceState.WAITING
            self._waiting[worst.id] = worst
            self._preemptions += 1

    def _release(self, seq: Sequence) -> None:
        """Give back the KV room of a sequence leaving the batch."""
        held = seq.prompt_tokens + seq.generated
        if self._cache is not None:
            held -= self._cache.release(seq.blocks)
        self._kv_tokens -= held

    def _emit(self, now: float) -> None:
        self._steps += 1
        running = self._running
        emitted = len(running)
        finished: list[Sequence] = []
        for seq in running.values():
            seq.generated += 1
            if seq.first_token_at is None:
                seq.first_token_at = now
            if seq.generated >= seq.output_tokens:
                finished.append(seq)
            else:
                seq._wake_progress()
        self._generation_tokens_total += emitted
        self._kv_tokens += emitted
        cache = self._cache
        for seq in finished:
            del running[seq.id]
            if cache is not None:
                cache.keep(seq.answer_blocks)  # before the prompt's: evicted before them
            self._release(seq)
            self._finished[seq.finish_reason] += 1
            self._end(seq, SequenceState.FINISHED, now)
        if cache is not None:
            # The batch grew by a token each: free cached blocks may have lost their room.
            cache.trim(self._kv_tokens)


def _rank(seq: Sequence) -> tuple[int, int]:
    """Priority scheduling's order: priority, then arrival (ids grow with arrival)."""
    return seq.priority, seq.id
