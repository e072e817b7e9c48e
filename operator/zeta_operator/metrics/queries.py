"""What to ask Prometheus: one query per signal, for all pods of a router at once. Pure.

The default PromQL per engine is data in :data:`zeta_api.SIGNALS` (the contract says
what ``prometheus.engine`` means); here it is merged with the spec's overrides and
rendered. Every query must return one sample per pod, labelled ``pod`` (Prometheus' pod
discovery relabels ``__meta_kubernetes_pod_name`` to it, as the common scrape
configurations do). Two placeholders are filled in before a query is sent:
``{{namespace}}`` (the router's namespace) and ``{{pods}}`` (an anchored regex
alternation of the router's pod names), so one query covers every pod of a router
and no query is ever sent per pod. Default queries also use ``{{window}}``, the
``rate()`` range from the operator's settings; user overrides may use it too.

A signal with no query (an engine exporting no such metric, e.g. vLLM has no failure
counter) is simply not read: the weighting treats it as unknown, i.e. neutral. The
optional signals (the prefix cache's counters) are asked apart, after the load
(:func:`split`): they may answer nothing by design.
"""

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from zeta_api import SIGNALS, Engine, QueryOverrides, Signal

__all__ = ["DEFAULT_QUERIES", "QueryPlan", "plan", "pods_regex", "render", "split"]

DEFAULT_QUERIES: Mapping[Engine, Mapping[Signal, str]] = MappingProxyType(
    {
        engine: MappingProxyType(
            {s: info.queries[engine] for s, info in SIGNALS.items() if engine in info.queries}
        )
        for engine in Engine
    }
)
"""Per engine, the default query of every signal it exports (from :data:`zeta_api.SIGNALS`)."""


QueryPlan = Mapping[Signal, str]
"""What will be asked: one rendered query per signal that has one."""


def pods_regex(pod_names: Iterable[str]) -> str:
    """An alternation matching exactly these pods (Prometheus anchors ``=~`` itself).

    Sorted, so the same pods always give the same query text (cache-friendly, and
    tests can compare it). Escaped for RE2 *inside a PromQL string*: a literal ``.``
    becomes ``\\\\.`` in the query text (the string literal eats one backslash);
    ``-`` needs no escape, and RE2 refuses ``re.escape``'s ``\\-`` anyway."""
    names = sorted(set(pod_names))
    if _PLAIN.fullmatch("".join(names)):  # most pods, thousands at once: none to escape
        return "|".join(names)
    return "|".join(_escape(name) for name in names)


# `\w` is what str.isalnum() takes, and `_`: most pod names need no escape at all.
_PLAIN = re.compile(r"[\w-]*")


def _escape(name: str) -> str:
    if _PLAIN.fullmatch(name):
        return name
    return "".join(c if c.isalnum() or c in "-_" else "\\\\" + c for c in name)


def render(template: str, *, namespace: str, pods: str, window: str) -> str:
    """Fill in the placeholders. Not ``str.format``: PromQL is full of braces."""
    return (
        template.replace("{{namespace}}", namespace)
        .replace("{{pods}}", pods)
        .replace("{{window}}", window)
    )


def plan(
    engine: Engine,
    overrides: QueryOverrides,
    *,
    namespace: str,
    pod_names: Iterable[str],
    window: str,
) -> dict[Signal, str]:
    """The queries for one router: the engine's defaults with the spec's overrides."""
    templates = {**DEFAULT_QUERIES[engine], **overrides.as_map()}
    pods = pods_regex(pod_names)
    return {
        signal: render(template, namespace=namespace, pods=pods, window=window)
        for signal, template in templates.items()
    }


def split(queries: QueryPlan) -> tuple[dict[Signal, str], dict[Signal, str]]:
    """``queries`` as the load signals' and the optional signals' (see
    :attr:`zeta_api.SignalInfo.optional`)."""
    load = {s: q for s, q in queries.items() if not SIGNALS[s].optional}
    return load, {s: q for s, q in queries.items() if SIGNALS[s].optional}
