"""The per-pod signals, as data: one table from which every per-signal list derives.

Each row of :data:`SIGNALS` says, for one :class:`Signal` (its wire name), the Python
field that holds it (in :class:`QueryOverrides`, and in the operator's per-pod load),
what it measures, the highest value that makes sense, and its default PromQL per
:class:`Engine`, as the Gateway API Inference Extension keeps its metric names per
engine in one mapping. Adding a signal is one enum member and one row here, plus its
place in the weighting formula.

The default queries belong to the contract, not to the operator: the spec's
``prometheus.engine`` means "these queries", and an override replaces one of them.
Each must return one sample per pod, labelled ``pod``; the operator fills in
``{{namespace}}``, ``{{pods}}`` (an anchored alternation of the router's pod names)
and ``{{window}}`` (its ``rate()`` range) before it asks. A signal an engine does not
export has no query for it: it is not read, and the weighting treats it as unknown.

Most signals are load, which the weighting reads. The prefix cache's two counters are
*optional*: they are reported (each model's hit rate in the status), never weighed, and
pods may export no such counter by design (vLLM's V0 engine, SGLang, older
llm-d-inference-sim releases), so their queries may answer nothing and may fail
without failing the load's collection.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from zeta_api.schema import prop, record

__all__ = ["SIGNALS", "Engine", "QueryOverrides", "Signal", "SignalInfo"]

T = TypeVar("T")


class Engine(enum.StrEnum):
    """The serving engine, which decides the default metric names and queries."""

    VLLM = "vllm"
    SGLANG = "sglang"


class Signal(enum.StrEnum):
    """A per-pod signal read from Prometheus (the value is its wire name)."""

    RUNNING = "running"
    WAITING = "waiting"
    KV_CACHE = "kvCache"
    TTFT_P95 = "ttftP95"
    ERROR_RATE = "errorRate"
    PREFIX_CACHE_HITS = "prefixCacheHits"
    PREFIX_CACHE_QUERIES = "prefixCacheQueries"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalInfo:
    """One row of :data:`SIGNALS`."""

    field: str
    """The snake_case attribute that holds the signal."""
    meaning: str
    """What it measures, per pod (in the override's CRD description)."""
    ceiling: float | None = None
    """Values above it are read as it (a ratio an engine rounds above 1 is full)."""
    queries: Mapping[Engine, str]
    """Default PromQL per engine; an engine missing here exports no such metric."""
    optional: bool = False
    """Reported, not weighed: its query may answer nothing by design, and its failure
    leaves only this signal unknown (the load signals' collection stands)."""


_SEL = '{namespace="{{namespace}}",pod=~"{{pods}}"}'


def _gauge(*names: str) -> str:
    # `or` over alternative names: vLLM V1 renamed the KV gauge; a fleet mid-upgrade
    # exports both spellings from different pods, and each pod must still count once.
    series = " or ".join(f"{name}{_SEL}" for name in names)
    return f"max by (pod) ({series})"


def _rate(*names: str) -> str:
    # Per pod first, then `or`: vLLM 0.9.2 to 0.10 export the old and the new name with
    # the same value, and a pod must count once; older pods have only the old name.
    return " or ".join(f"sum by (pod) (rate({name}{_SEL}[{{{{window}}}}]))" for name in names)


def _p95(histogram: str) -> str:
    return (
        "histogram_quantile(0.95, sum by (pod, le) "
        f"(rate({histogram}_bucket{_SEL}[{{{{window}}}}])))"
    )


SIGNALS: Mapping[Signal, SignalInfo] = MappingProxyType(
    {
        Signal.RUNNING: SignalInfo(
            field="running",
            meaning="requests being processed per pod",
            queries={
                Engine.VLLM: _gauge("vllm:num_requests_running"),
                Engine.SGLANG: _gauge("sglang:num_running_reqs"),
            },
        ),
        Signal.WAITING: SignalInfo(
            field="waiting",
            meaning="requests queued per pod",
            queries={
                Engine.VLLM: _gauge("vllm:num_requests_waiting"),
                Engine.SGLANG: _gauge("sglang:num_queue_reqs"),
            },
        ),
        Signal.KV_CACHE: SignalInfo(
            field="kv_cache",
            meaning="KV-cache use per pod, 0 to 1",
            ceiling=1.0,
            queries={
                Engine.VLLM: _gauge("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
                Engine.SGLANG: _gauge("sglang:token_usage"),
            },
        ),
        Signal.TTFT_P95: SignalInfo(
            field="ttft_p95",
            meaning="95th percentile time to first token per pod, in seconds",
            queries={
                Engine.VLLM: _p95("vllm:time_to_first_token_seconds"),
                Engine.SGLANG: _p95("sglang:time_to_first_token_seconds"),
            },
        ),
        Signal.ERROR_RATE: SignalInfo(
            field="error_rate",
            meaning="failed requests per second per pod",
            # vLLM, SGLang (and llm-d-inference-sim) export no failure counter: errors
            # are only readable through an override, e.g. from a gateway's metrics.
            queries={},
        ),
        # vLLM V1's counters: `prefix_cache_*` from 0.9.2, `gpu_prefix_cache_*` before
        # (hidden from 0.11, gone in 0.12); in tokens (blocks in the first V1 releases:
        # the same unit for both, so their ratio stands). SGLang exports a hit-rate gauge
        # only, which cannot be summed over pods or a window: no query.
        Signal.PREFIX_CACHE_HITS: SignalInfo(
            field="prefix_cache_hits",
            meaning="prompt tokens found in the prefix cache per second, per pod",
            optional=True,
            queries={
                Engine.VLLM: _rate(
                    "vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"
                ),
            },
        ),
        Signal.PREFIX_CACHE_QUERIES: SignalInfo(
            field="prefix_cache_queries",
            meaning="prompt tokens looked up in the prefix cache per second, per pod",
            optional=True,
            queries={
                Engine.VLLM: _rate(
                    "vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"
                ),
            },
        ),
    }
)
"""Every signal, in the order the CRD lists its override."""

_QUERY_NOTE = (
    " It must return one sample per pod with a `pod` label; the operator replaces "
    "{{namespace}} and {{pods}} (a regex alternation of the router's pod names) first."
)


def _field_per_signal(cls: type[T]) -> type[T]:
    """Declare one optional PromQL field per row of :data:`SIGNALS` on ``cls``, before
    :func:`~zeta_api.schema.record` makes it a dataclass."""
    cls.__annotations__ = {info.field: str | None for info in SIGNALS.values()}
    for signal, info in SIGNALS.items():
        declaration = prop(
            f"PromQL for {info.meaning}, replacing the engine's default." + _QUERY_NOTE,
            default=None,
            wire=signal.value,
            min_length=1,
            max_length=4096,
        )
        setattr(cls, info.field, declaration)
    return cls


@record
@_field_per_signal
class QueryOverrides:
    """PromQL overrides, one optional field per :class:`Signal` (wire names match)."""

    def as_map(self) -> dict[Signal, str]:
        """The overrides that are set, by signal."""
        values = {signal: getattr(self, info.field) for signal, info in SIGNALS.items()}
        return {signal: query for signal, query in values.items() if query is not None}
