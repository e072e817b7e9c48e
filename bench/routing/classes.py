"""Traffic classes (issue 9): figures per class and per tenant, the report's tables,
and the issue's acceptance points checked against a run.

A 429 is a failure to whoever sent the request, so the breakdown keeps the two kinds
apart by the OpenAI error code the sidecar sends: ``no_capacity`` (a sheddable request
to a saturated model: shed) and ``rate_limit_exceeded`` (the tenant over its limit:
limited). Any other non-200 answer, reset or timeout is a failure.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from routing.loadgen import Record
from routing.scenarios import SLOW, Scenario
from routing.summary import pct

SHED = "http 429 no_capacity"
LIMITED = "http 429 rate_limit_exceeded"
NO_TENANT = "(none)"


def over_limit(scenario: Scenario) -> set[str]:
    """The tenants the scenario sends more than their limit."""
    return {name for name, multiple in scenario.tenant_limits if multiple < 1}


def _figures(records: Sequence[Record], scenario: Scenario) -> dict[str, Any]:
    scale = scenario.time_scale
    ok = [r for r in records if r.status == 200 and not r.error and r.e2e is not None]
    ttft = [r.ttft * scale for r in ok if r.ttft is not None]
    shed = sum(1 for r in records if r.error == SHED)
    limited = sum(1 for r in records if r.error == LIMITED)
    return {
        "requests": len(records),
        "ok": len(ok),
        "shed": shed,
        "limited": limited,
        "failed": len(records) - len(ok) - shed - limited,
        "ttft_p50": pct(ttft, 0.50),
        "ttft_p99": pct(ttft, 0.99),
        "slo": (sum(1 for t in ttft if t <= scenario.ttft_slo) / len(records) if records else None),
    }


def _grouped(
    records: Sequence[Record], scenario: Scenario, key: Callable[[Record], str]
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return {name: _figures(rs, scenario) for name, rs in sorted(groups.items())}


def breakdown(records: Sequence[Record], scenario: Scenario) -> dict[str, Any]:
    """Per class, per tenant, and per class of the requests of no tenant over its limit
    (the ones that must never see a 429 unless their class is sheddable)."""
    over = over_limit(scenario)
    return {
        "by_class": _grouped(records, scenario, lambda r: r.priority),
        "by_tenant": _grouped(records, scenario, lambda r: r.tenant or NO_TENANT),
        "by_class_within_limits": _grouped(
            [r for r in records if r.tenant not in over], scenario, lambda r: r.priority
        ),
    }


# --- the report --------------------------------------------------------------------------


def _values(rows: Sequence[dict[str, Any]], path: Sequence[str]) -> list[float]:
    """The value at ``path`` (keys into nested dicts) of each row that has one."""
    got: list[float] = []
    for row in rows:
        value: Any = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            got.append(float(value))
    return got


def _med(rows: Sequence[dict[str, Any]], *path: str) -> float | None:
    got = _values(rows, path)
    return statistics.median(got) if got else None


def _span(rows: Sequence[dict[str, Any]], *path: str) -> tuple[float, float] | None:
    got = _values(rows, path)
    return (min(got), max(got)) if got else None


def _cell(rows: Sequence[dict[str, Any]], *path: str, digits: int = 2) -> str:
    med, span = _med(rows, *path), _span(rows, *path)
    if med is None or span is None:
        return "-"
    if span[0] == span[1]:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({span[0]:.{digits}f}-{span[1]:.{digits}f})"


def tables(scenario: Scenario, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per class and per tenant: requests, served, shed, limited, failed, TTFT, and the
    class's p99 TTFT as a ratio to round robin's for the same requests."""
    mix = scenario.mix
    lines = [
        "Traffic: classes named in `x-zeta-priority` "
        + ", ".join(f"{name} {share:.0%}" for name, share in mix.priorities)
        + (
            f" (none sent: {', '.join(scenario.drop_priorities)})"
            if scenario.drop_priorities
            else ""
        )
        + "; tenants in `x-zeta-tenant` "
        + ", ".join(f"{name or NO_TENANT} {share:.0%}" for name, share in mix.tenants)
        + "; limits "
        + ", ".join(f"{name} {m:g}x its mean offered rate" for name, m in scenario.tenant_limits)
        + (
            ". The pods schedule by priority (vLLM's `--scheduling-policy priority`) and Zeta "
            "sends each class as the request's `priority` (`traffic.enginePriority`); other "
            "systems' requests all have the default priority, served first come, first served"
            if scenario.engine_priority
            else ""
        )
        + ". Shed: 429 `no_capacity`; limited: 429 `rate_limit_exceeded`.",
        "",
    ]
    for part, title in (("by_class", "class"), ("by_tenant", "tenant")):
        head = ["system", title, "requests", "served", "shed 429", "limited 429", "failed",
                "TTFT p50 s", "TTFT p99 s", "SLO", "p99 TTFT / round-robin"]  # fmt: skip
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        names = sorted({n for r in rows for n in r.get(part, {})})
        for system in scenario.systems:
            mine = [r for r in rows if r["system"] == system]
            base = [r for r in rows if r["system"] == "round-robin"]
            for name in names:
                if not any(name in r.get(part, {}) for r in mine):
                    continue
                ratio = "-"
                ours = _med(mine, part, name, "ttft_p99")
                theirs = _med(base, part, name, "ttft_p99")
                if ours is not None and theirs:
                    ratio = f"{ours / theirs:.2f}x"
                counts = [
                    _cell(mine, part, name, key, digits=0)
                    for key in ("requests", "ok", "shed", "limited", "failed")
                ]
                times = [_cell(mine, part, name, key) for key in ("ttft_p50", "ttft_p99", "slo")]
                cells = [system, name, *counts, *times, ratio]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _verdict(ok: bool | None) -> str:
    return "**met**" if ok else ("**not met**" if ok is not None else "not measured")


FAST = ("classes", "classes-no-sheddable")
"""The same pair at the suite's time scale 8."""


def verdicts(scenarios: Sequence[Scenario], summaries: Sequence[dict[str, Any]]) -> list[str]:
    """Issue 9's acceptance points, each checked against this run."""

    def rows(scenario: str, system: str = "zeta") -> list[dict[str, Any]]:
        return [r for r in summaries if r["scenario"] == scenario and r["system"] == system]

    zeta, x3 = rows("classes"), rows("classes-x3")
    out = ["## Targets (issue 9), checked against this run", ""]
    main = next((s for s in scenarios if s.name == "classes"), None)
    if not zeta or main is None:
        return [*out, "Zeta did not run in the `classes` scenario: nothing to check.", ""]
    over = over_limit(main)
    tenant = ", ".join(f"`{t}`" for t in sorted(over))
    wrong = sum(
        (c.get("shed", 0) + c.get("limited", 0) + c.get("failed", 0))
        for r in zeta
        for name, c in r["by_class_within_limits"].items()
        if name in ("critical", "standard")
    )
    out.append(
        f"- no critical or standard request of a tenant within its limits refused or "
        f"failed (429, 5xx, timeout), over all seeds: {wrong:.0f} -> {_verdict(wrong == 0)}."
    )
    shed_other = sum(
        c.get("shed", 0) for r in zeta for n, c in r["by_class"].items() if n != "sheddable"
    )
    shed = _med(zeta, "by_class", "sheddable", "shed")
    out.append(
        f"- the sheddable class absorbs the overload: {shed or 0:.0f} sheddable requests "
        f"shed (median), {shed_other:.0f} of any other class -> "
        f"{_verdict(shed_other == 0 and bool(shed))}."
    )
    # Judged at time scale 2 (``scenarios.SLOW``: at 8 the comparison measures the
    # harness); the pair at 8 is shown beside it.
    for (busy, quiet), where in ((SLOW, "at time scale 2"), (FAST, "at time scale 8")):
        ours = _span(rows(busy), "by_class", "critical", "ttft_p99")
        alone = _span(rows(quiet), "by_class", "critical", "ttft_p99")
        if ours and alone:
            judged = where.endswith("2")
            out.append(
                f"- critical p99 TTFT no worse than with no sheddable traffic (within the "
                f"spread), {where}: {ours[0]:.2f}-{ours[1]:.2f} s against "
                f"{alone[0]:.2f}-{alone[1]:.2f} s -> "
                + (_verdict(ours[0] <= alone[1]) if judged else "shown, not judged")
                + "."
            )
    rr = rows("classes", "round-robin")
    crit, crit_rr = (
        _med(zeta, "by_class", "critical", "ttft_p99"),
        _med(rr, "by_class", "critical", "ttft_p99"),
    )
    if crit is not None and crit_rr:
        out.append(f"- critical p99 TTFT against round robin: {crit / crit_rr:.2f}x.")
    limited = sum(_med(zeta, "by_tenant", t, "limited") or 0 for t in over)
    others = sum(
        t.get("limited", 0) for r in zeta for n, t in r["by_tenant"].items() if n not in over
    )
    out.append(
        f"- a tenant over its limit ({tenant}) is limited, the others are not: "
        f"{limited:.0f} limited (median), the others {others:.0f} over all seeds -> "
        f"{_verdict(limited > 0 and others == 0)}."
    )
    if x3:
        for what, path in (
            *(
                (f"requests of `{t}` served (its rate limit)", ("by_tenant", t, "ok"))
                for t in sorted(over)
            ),
            *(
                (f"requests of `{t}` served (within its limit)", ("by_tenant", t, "ok"))
                for t in sorted({t for t, _ in main.tenant_limits} - over)
            ),
            ("sheddable requests shed (the saturation rule)", ("by_class", "sheddable", "shed")),
            ("critical p99 TTFT", ("by_class", "critical", "ttft_p99")),
        ):
            one, three = _med(zeta, *path), _med(x3, *path)
            if one is None or three is None:
                continue
            off = abs(three - one) / max(1e-9, one)
            out.append(
                f"- 3 replicas within 20 % of 1 on {what}: {three:.2f} against {one:.2f} "
                f"({off:.0%} apart) -> {_verdict(off <= 0.2)}."
            )
    return [*out, ""]


ANALYSIS = (
    "## What the run shows, and why",
    "",
    "Written by hand from the runs of 2026-11-30: the time-scale-8 scenarios at "
    "15:43-15:48 UTC (2 seeds, load average 1.2-1.8, sender lag p99 under 0.02 s), the "
    "time-scale-2 pair at 16:15-16:31 UTC (4 seeds, load average 1.2-1.6). A rerun "
    "regenerates the tables and checks above, not this text.",
    "",
    "- **Nobody who must be served is refused.** Round robin serves every request and "
    "its p99 TTFT is 131 model seconds (the slowed pod takes a third of the traffic at a "
    "third of the speed); vllm-router's power_of_two 20 s. Zeta's is 1.28 s (0.01x round "
    "robin) with zero 429s for critical and standard requests of tenants within their "
    "limits: only sheddable requests are shed (86 of 427, the median), and only `batch` "
    "(twice its limit) is limited, to its rate (100 limited). Goodput 1.46x round robin.",
    "- **Critical p99 TTFT with sheddable traffic against without: met at time scale 2, "
    "0.77-1.21 s against 0.75-1.19 s (medians 1.05 and 0.91 s, 4 seeds).** At time "
    "scale 8 the same comparison gives 1.13-1.23 s against 0.74-0.79 s, and it measures "
    "the harness: the load generator, the gateway and the pods are Python processes on "
    "2 shared cores, a request's trip through them costs tens of wall milliseconds "
    "(critical requests' wall TTFT: p50 0.024 s, tail about 0.12 s), which at 8 are "
    "tenths of model seconds, about ten model steps, and the sheddable third of the "
    "traffic adds 43 % more requests per wall second for them to carry. At time scale 2 "
    "the same wall time is a quarter as long in model time, and the pods keep their "
    "nominal speed, so the burst there goes to 160 % of the estimate to overload them "
    "(at 110 % nothing was shed). What makes critical traffic safe is measured here too: "
    "sheddable requests keep out of the last 15 % of each batch (`sheddableReserve`; "
    "critical p99 11.7 s before it), the pods schedule by priority and Zeta passes each "
    "class as vLLM's `priority` (a critical request preempts a sheddable one in a full "
    "batch), and the highest class is not held in the gateway's admission queue for load "
    "it outranks.",
    "- **Three replicas: within 20 % of one replica on every figure checked** (the "
    "limits, the saturation rule, critical p99 TTFT 1.10 s against 1.18 s). An `app` "
    "request can be limited with 3 replicas: each enforces a third of the rate and of "
    "the burst, and clients are spread unevenly.",
)
