"""``zeta-sim``: a simulated vLLM-style model server for the testbed.

Contract: an OpenAI-compatible HTTP server (chat and text completions, streaming
and not, ``/v1/models``, ``/health``) whose latency comes from a model of continuous
batching rather than from a GPU, that exports vLLM's Prometheus metric names, and
whose faults (slowdown, errors, hangs, connection resets) are set at run time through
``/admin/faults``. It never calls out to anything; it only answers.

Layers, top to bottom (a module imports only those below it):

- ``cli``: argument parsing, logging, signal-driven process lifetime.
- ``server``: the aiohttp application: routes, request lifetime, faults, SSE writes.
- ``wire``: the OpenAI wire format: request parsing, completion bodies, stream events.
- ``metrics``: the Prometheus exposition of the engine's and server's counters.
- ``engine``, ``caching``, ``faults``, ``presets``: pure logic and data; no network or
  file I/O. The engine is driven by asyncio, with its clock and sleep injected so that
  tests run in virtual time; ``caching`` is its prefix cache (vLLM's automatic prefix
  caching: chained block hashes, LRU eviction within the KV capacity).
"""

from zeta_testbed.sim.engine import Engine, EngineStats, FinishReason, Sequence, SequenceState
from zeta_testbed.sim.faults import Faults, FaultsError
from zeta_testbed.sim.presets import PRESETS, Preset

__all__ = [
    "PRESETS",
    "Engine",
    "EngineStats",
    "Faults",
    "FaultsError",
    "FinishReason",
    "Preset",
    "Sequence",
    "SequenceState",
]
