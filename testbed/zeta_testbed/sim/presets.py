"""Model-size presets: the numbers that make a simulated 4B model differ from a 14B one.

A preset is plain data read by the engine. The figures are round numbers in the range
reported for vLLM on a single data-centre GPU (A100/H100 class, bf16 weights); they are
not measurements, and they need not be: what the testbed needs is that bigger models
are *slower per token* and hold *fewer concurrent sequences*, so that a load-aware
router has something real to balance.

- Decode time per token is the duration of one engine step for a lone sequence.
  Decoding is memory-bandwidth bound (every step streams the weights once), so it
  scales roughly with parameter count: ~12 ms for 4B, ~20 ms for 7B, ~35 ms for 14B.
- Prefill time per prompt token: prefill is compute bound and batched over the prompt,
  so it is ~80x cheaper per token than decode (7B: ~4,000 prompt tokens/s).
- The batch penalty makes a step slower as the batch fills: with ``running`` sequences
  of ``capacity``, a step lasts ``decode * (1 + batch_penalty * running / capacity)``.
  At 0.5 a full batch costs 1.5x a lone sequence's step, the sub-linear growth of a
  bandwidth-bound decode; per-sequence speed drops, total throughput still rises.
- KV capacity in tokens: each preset's cache holds ``capacity`` sequences of 1,536
  tokens (a 1k-token prompt plus 512 generated), so with typical chat requests the
  cache and the slots fill together; long prompts saturate the cache first.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset"]

_TOKENS_PER_SLOT_IN_KV = 1536


@dataclass(frozen=True, slots=True, kw_only=True)
class Preset:
    """The performance figures of one simulated model size."""

    name: str
    """Short name used on the command line and in the default model id (``sim-<name>``)."""

    capacity: int
    """Concurrent sequences (vLLM's ``max_num_seqs``); the rest wait in FIFO order."""

    decode_seconds_per_token: float
    """Seconds of one decode step with a single running sequence."""

    prefill_seconds_per_token: float
    """Seconds added to a step per prompt token of the sequences admitted in it."""

    batch_penalty: float
    """Relative step slowdown when the batch is full (0.5: a full step lasts 1.5x)."""

    kv_capacity_tokens: int
    """Tokens (prompt plus generated) the KV cache holds; the usage gauge's denominator,
    and the room in which prefix-cached blocks outlive their sequences."""

    default_output_tokens_min: int = 16
    """Smallest output length drawn when a request gives no ``max_tokens``."""

    default_output_tokens_max: int = 128
    """Largest output length drawn when a request gives no ``max_tokens``."""

    @property
    def default_model_name(self) -> str:
        """The model id served when none is given: ``sim-4b``, ``sim-7b``, ..."""
        return f"sim-{self.name}"


PRESETS: Mapping[str, Preset] = MappingProxyType(
    {
        "4b": Preset(
            name="4b",
            capacity=48,
            decode_seconds_per_token=0.012,
            prefill_seconds_per_token=0.00015,
            batch_penalty=0.5,
            kv_capacity_tokens=48 * _TOKENS_PER_SLOT_IN_KV,
        ),
        "7b": Preset(
            name="7b",
            capacity=32,
            decode_seconds_per_token=0.020,
            prefill_seconds_per_token=0.00025,
            batch_penalty=0.5,
            kv_capacity_tokens=32 * _TOKENS_PER_SLOT_IN_KV,
        ),
        "14b": Preset(
            name="14b",
            capacity=16,
            decode_seconds_per_token=0.035,
            prefill_seconds_per_token=0.0005,
            batch_penalty=0.5,
            kv_capacity_tokens=16 * _TOKENS_PER_SLOT_IN_KV,
        ),
    }
)
"""Presets by name, smallest model first."""

DEFAULT_PRESET = "7b"
