"""Memory of the sidecar's affinity index over a long run: does it stay within its bound?

In process, no network: the routing benchmark's conversations (``routing/chats.py``, the
``affinity`` scenario's shape and rate in model time) are turned into affinity keys by
the sidecar's own code (``affinity_keys.request_keys``) and fed to one
``AffinityIndex`` over 4 pods, as the sidecar does per request (choose, then record),
with each request's trace time as the clock, so entries expire as they would. Every
``--every`` requests it records the index's entries per kind and the memory held by
what the affinity modules allocated and still hold (``tracemalloc``, filtered to
``affinity.py`` and ``affinity_keys.py``: the index's dict slots, keys and entries),
and the process's RSS. At the scenario's own rate ``indexTTL`` keeps the index far below
its bound, so by default the requests come ``--rate-multiple`` (20) times as fast, as
through a gateway in front of 80 such pods: then the bound in entries is what holds.

The bound is declared in entries (``indexEntries`` per kind); the API documents about
150 bytes an entry, so the byte figure is set against ``2 x indexEntries x 150 B``.

Usage::

    python bench/affinity_index.py                        # 100,000 requests (make bench)
    python bench/affinity_index.py --requests 5000 --index-entries 2000   # the smoke form
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from routing import chats  # noqa: E402
from routing.scenarios import affinity, chat_capacity  # noqa: E402

from zeta_api import Affinity  # noqa: E402
from zeta_sidecar import affinity as index_module  # noqa: E402
from zeta_sidecar import affinity_keys  # noqa: E402
from zeta_sidecar.affinity import AffinityIndex  # noqa: E402
from zeta_sidecar.affinity_keys import AffinityPlan, request_keys  # noqa: E402

RESULTS = BENCH / "results"
BYTES_PER_ENTRY = 150
"""What the API's ``indexEntries`` field documents an entry to cost."""
PODS = tuple(f"10.0.0.{i}:8000" for i in range(1, 5))


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _held(snapshot: tracemalloc.Snapshot) -> int:
    files = {index_module.__file__, affinity_keys.__file__}
    stats = snapshot.filter_traces([tracemalloc.Filter(True, f) for f in files if f])
    return sum(stat.size for stat in stats.statistics("filename"))


def run(requests: int, entries: int, ttl: float, every: int, multiple: float) -> list[str]:
    scenario = affinity()[0]
    chat = scenario.chat
    assert chat is not None
    # The scenario's load in requests per model second.
    rate = multiple * scenario.base_load * chat_capacity(scenario, chat, 1) / scenario.time_scale
    trace = chats.generate(
        1, duration=requests / rate * 1.3, rate=lambda t: rate, model="sim-7b", chat=chat,
        peak_rate=rate, time_scale=1.0,
    )[:requests]  # fmt: skip
    settings = Affinity(prefix=True, session=True, index_entries=entries, index_ttl=ttl)
    plan = AffinityPlan.of(None, settings, PODS)
    assert plan is not None
    index = AffinityIndex(settings)
    eligible = [True] * len(PODS)
    rows: list[tuple[int, float, int, int, int, int]] = []
    outcomes: dict[str, int] = {}
    rss_start = _rss()
    tracemalloc.start()
    started = time.perf_counter()
    for n, request in enumerate(trace, 1):
        keys = request_keys(request.body(), request.headers(), plan)
        if keys is not None:
            i, kind, outcome = index.choose(keys, plan, eligible, request.at)
            outcomes[f"{kind}/{outcome}"] = outcomes.get(f"{kind}/{outcome}", 0) + 1
            index.record(keys, PODS[max(0, i)], request.at)
        if n % every == 0 or n == len(trace):
            held = _held(tracemalloc.take_snapshot())
            rows.append((n, request.at, len(index.prefixes), len(index.sessions), held, _rss()))
    elapsed = time.perf_counter() - started
    tracemalloc.stop()
    bound = 2 * entries * BYTES_PER_ENTRY
    peak_prefix = max(r[2] for r in rows)
    peak_session = max(r[3] for r in rows)
    peak_held = max(r[4] for r in rows)
    per_entry = peak_held / max(1, *(r[2] + r[3] for r in rows))
    ok = peak_prefix <= entries and peak_session <= entries and peak_held <= bound
    return [
        "# Affinity index memory",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python "
        f"bench/affinity_index.py --requests {requests} --index-entries {entries} "
        f"--rate-multiple {multiple:g}` in "
        f"{elapsed:.0f} s (tracemalloc on). {len(trace):,} requests of the `affinity` "
        f"scenario's conversations over {trace[-1].at / 3600:.1f} h of trace time "
        f"({rate:.1f} requests/s, {multiple:g}x the scenario's), 4 pods; `indexEntries` "
        f"{entries:,} per kind, "
        f"`indexTTL` {ttl:g} s. Decisions: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))
        + ".",
        "",
        "| requests | trace time h | prefix entries | session entries | held by the index "
        "MB | process RSS MB |",
        "|---|---|---|---|---|---|",
        *(
            f"| {n:,} | {at / 3600:.2f} | {p:,} | {s:,} | {held / 1e6:.2f} | {rss / 1e6:.0f} |"
            for n, at, p, s, held, rss in rows
        ),
        "",
        f"- Entries: at most {peak_prefix:,} prefix blocks and {peak_session:,} sessions, "
        f"bound {entries:,} each.",
        f"- Memory held by the index: at most {peak_held / 1e6:.2f} MB "
        f"({per_entry:.0f} bytes an entry), bound 2 x {entries:,} x {BYTES_PER_ENTRY} B = "
        f"{bound / 1e6:.2f} MB.",
        f"- Process RSS: {rss_start / 1e6:.0f} MB before, {rows[-1][5] / 1e6:.0f} MB after "
        "(the trace's text and tracemalloc's own records included).",
        f"- Within the bound: **{'yes' if ok else 'no'}**.",
        "",
    ]


def main() -> int:
    defaults = Affinity()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--index-entries", type=int, default=defaults.index_entries)
    parser.add_argument("--index-ttl", type=float, default=defaults.index_ttl)
    parser.add_argument("--every", type=int, default=0, help="default: requests / 10")
    parser.add_argument(
        "--rate-multiple", type=float, default=20.0, help="times the scenario's request rate"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "affinity_index.md")
    args = parser.parse_args()
    every = args.every or max(1, args.requests // 10)
    lines = run(args.requests, args.index_entries, args.index_ttl, every, args.rate_multiple)
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0 if "**yes**" in text else 1


if __name__ == "__main__":
    sys.exit(main())
