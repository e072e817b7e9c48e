"""Figures of one run (scenario, system, seed) from its per-request records.

Times are reported in *model seconds*: wall seconds times the scenario's time scale,
so an SLO reads as it would against real pods. Every request of the trace counts:
a 429 (shed) and a failure (5xx, reset, timeout) are not successes and do not meet the
SLO, so shedding cannot buy a good goodput; latency percentiles are over the
successful requests, reported next to how many there were.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from routing.loadgen import Record
from routing.scenarios import Scenario
from routing.systems import Pod, System


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def within_slo(r: Record, scenario: Scenario) -> bool:
    if r.status != 200 or r.error or r.e2e is None:
        return False
    scale = scenario.time_scale
    if r.stream:
        return r.ttft is not None and r.ttft * scale <= scenario.ttft_slo
    return r.e2e * scale <= scenario.ttft_slo + r.max_tokens * scenario.tpot_slo


def recovery(records: Sequence[Record], scenario: Scenario, before: float | None) -> float | None:
    """Model seconds from the incident's end until SLO attainment of the requests sent
    in 1-s (wall) bins is back within 5 points of its pre-incident level for 3 bins in a
    row; None if it never is within the run (or there is no incident)."""
    if scenario.incident is None or before is None:
        return None
    end = scenario.incident[1]
    target = before - 0.05
    bins: dict[int, list[bool]] = {}
    for r in records:
        if r.at >= end:
            bins.setdefault(int(r.at - end), []).append(within_slo(r, scenario))
    last = int(scenario.duration - end)
    streak = 0
    for i in range(last):
        got = bins.get(i, [])
        ok = bool(got) and sum(got) / len(got) >= target
        streak = streak + 1 if ok else 0
        if streak == 3:
            return (i - 2) * scenario.time_scale
    return None


def per_pod_share(samples: Sequence[dict[str, Any]], pods: Sequence[Pod]) -> dict[str, float]:
    """Share of the requests each pod received during the run (from its counters)."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for s in samples:
        first.setdefault(s["pod"], s["requests_total"])
        last[s["pod"]] = s["requests_total"]
    got = {p.name: last.get(p.name, 0.0) - first.get(p.name, 0.0) for p in pods}
    total = sum(got.values()) or 1.0
    return {name: round(n / total, 3) for name, n in got.items()}


def hit_rate(cache: dict[str, list[int]]) -> float | None:
    """Prompt tokens found in the pods' prefix caches over those looked up, from each
    pod's [queries, hits] counted over the run; None when nothing was looked up (caching
    off)."""
    queries = sum(q for q, _ in cache.values())
    return sum(h for _, h in cache.values()) / queries if queries else None


def herding(samples: Sequence[dict[str, Any]], pods: Sequence[Pod]) -> float | None:
    """Mean, over the sampling windows (0.5 s) in which at least 4 requests arrived, of
    the busiest pod's share of that window's requests, times the number of pods: 1.0
    is an even spread, the number of pods means every request of a window went to one
    pod (herding)."""
    by_t: dict[float, dict[str, float]] = {}
    for s in samples:
        by_t.setdefault(s["t"], {})[s["pod"]] = s["requests_total"]
    times = sorted(by_t)
    shares: list[float] = []
    for a, b in itertools.pairwise(times):
        got = [by_t[b].get(p.name, 0.0) - by_t[a].get(p.name, 0.0) for p in pods]
        total = sum(got)
        if total >= 4:
            shares.append(max(got) / total * len(pods))
    return sum(shares) / len(shares) if shares else None


def summarise(
    scenario: Scenario,
    system: System,
    *,
    seed: int,
    records: Sequence[Record],
    info: dict[str, Any],
    pods: Sequence[Pod],
) -> dict[str, Any]:
    scale = scenario.time_scale
    ok = [r for r in records if r.status == 200 and not r.error and r.e2e is not None]
    shed = sum(1 for r in records if r.status == 429)
    failed = len(records) - len(ok) - shed
    ttft = [r.ttft * scale for r in ok if r.ttft is not None]
    e2e = [r.e2e * scale for r in ok if r.e2e is not None]
    met = [within_slo(r, scenario) for r in records]
    before_idx = [
        i for i, r in enumerate(records)
        if scenario.incident is None or r.at < scenario.incident[0]
    ]  # fmt: skip
    before = sum(met[i] for i in before_idx) / len(before_idx) if before_idx else None
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "system": system.name,
        "seed": seed,
        "requests": len(records),
        "ok": len(ok),
        "shed": shed,
        "failed": failed,
        "timeouts": sum(1 for r in records if r.error == "timeout"),
        "ttft_mean": sum(ttft) / len(ttft) if ttft else None,
        "ttft_p50": pct(ttft, 0.50),
        "ttft_p95": pct(ttft, 0.95),
        "ttft_p99": pct(ttft, 0.99),
        "e2e_p50": pct(e2e, 0.50),
        "e2e_p95": pct(e2e, 0.95),
        "e2e_p99": pct(e2e, 0.99),
        "slo": sum(met) / len(met) if met else None,
        "slo_before": before,
        "goodput": sum(met) / scenario.duration,
        "recovery": recovery(records, scenario, before),
        "late_p99": pct([r.late for r in records], 0.99),
        "pod_share": per_pod_share(info.get("samples", []), pods),
        "herding": herding(info.get("samples", []), pods),
        "hit_rate": hit_rate(info.get("cache", {})),
        "wall": info.get("wall"),
        "router_cpu_ms": (
            1000 * info["router_cpu"] / len(records) if "router_cpu" in info and records else None
        ),
    }
    if scenario.model == "auto":
        by_tier: dict[str, dict[str, int]] = {}
        for r in ok:
            per = by_tier.setdefault(r.klass, {})
            per[r.served_model] = per.get(r.served_model, 0) + 1
        row["served_by_class"] = by_tier
        hard = by_tier.get("hard", {})
        smallest = min((p.model for p in pods), key=lambda m: int(m.removeprefix("sim-")[:-1]))
        row["hard_on_smallest"] = hard.get(smallest, 0) / max(1, sum(hard.values()))
    return row


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def one_line(row: dict[str, Any]) -> str:
    return (
        f"n={row['requests']} ok={row['ok']} shed={row['shed']} failed={row['failed']} "
        f"ttft p50/p99={_fmt(row['ttft_p50'])}/{_fmt(row['ttft_p99'])} s "
        f"e2e p99={_fmt(row['e2e_p99'])} slo={_fmt(row['slo'])} "
        f"before={_fmt(row['slo_before'])} rec={_fmt(row['recovery'])} "
        f"goodput={_fmt(row['goodput'], 1)}/s late p99={_fmt(row['late_p99'], 3)} "
        f"wall={row['wall']}"
    )
