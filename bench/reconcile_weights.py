"""The operator's per-interval work for one big router, without the network.

One reconcile, as the router loop does it after Prometheus has answered: render the
queries (one per signal for all pods), pick the router's pods from the pod index,
extract per-pod loads from Prometheus-shaped instant vectors (as the client returns
them, parsed JSON), weigh (targets, EWMA, step limit, floor, per-model shares), build
the routing table, and encode it: check it for everything the sidecar would refuse,
dump it to canonical JSON and hash that JSON's content. Network time (Prometheus,
apiserver) is not here: it is a wait, not work, and it runs off the event loop. From
extract on, the stages run in a worker thread in the operator; the table shows that share.

Figures that matter are ratios against baselines measured in the same run: the same
reconcile for a 100-pod router (does the cost grow linearly?), and a plain
``json.dumps`` of the same table (what checking and canonical form cost). The table's
size is set against the 1 MiB a ConfigMap may hold (over it, the operator refuses to
publish: the bench encodes without that limit, to measure the work all the same).

Bounded in count and time (each size stops after ``--repeats`` reconciles or
``--budget`` seconds, whichever comes first):

    .venv/bin/python bench/reconcile_weights.py                 # 1,000 and 10,000 pods
    .venv/bin/python bench/reconcile_weights.py --pods 5000 --repeats 20
"""

import argparse
import gzip
import itertools
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeta_api import Signal, ZetaRouterSpec, encode_routing_table, parse_spec
from zeta_operator import deciding, discovery, weighting
from zeta_operator.metrics import queries
from zeta_operator.metrics.extraction import extract
from zeta_operator.snapshots import PodRecord
from zeta_operator.tables import build_table
from zeta_operator.weighting import WeightState

RESULTS = Path(__file__).parent / "results" / "reconcile_weights.md"
CONFIGMAP_LIMIT = 1024 * 1024
"""Bytes a ConfigMap's data may hold (etcd's object limit leaves a little more)."""
SIZES = (("4b", 48), ("7b", 32), ("14b", 16))
NAMESPACE = "llm"
STAGES = ("queries", "select", "extract", "weigh", "build", "encode (check, dump, hash)")
OFF_LOOP = STAGES[2:]
"""The stages the operator runs in a worker thread (extract, weigh, build, encode)."""


def spec() -> ZetaRouterSpec:
    return parse_spec(
        {
            "models": [
                {
                    "name": f"qwen-{size}",
                    "tier": tier,
                    "capacity": capacity,
                    "selector": {"matchLabels": {"app": "vllm", "model": size}},
                }
                for tier, (size, capacity) in enumerate(SIZES, start=1)
            ],
            "virtualModels": [
                {
                    "name": "auto",
                    "strategy": "complexity",
                    "candidates": [f"qwen-{size}" for size, _ in SIZES],
                }
            ],
            "prometheus": {"url": "http://prometheus.monitoring:9090", "engine": "vllm"},
            "routingTable": {"configMapName": "chat-routing"},
        }
    )


def pod_index(count: int) -> list[PodRecord]:
    """``count`` ready pods spread over the three models, plus a few that are not
    theirs or not ready (the index holds every pod of the namespace)."""
    records = [
        PodRecord(
            namespace=NAMESPACE,
            name=f"vllm-{size}-{i:05d}",
            uid=f"uid-{i}",
            labels={"app": "vllm", "model": size},
            ip=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            ready=True,
            draining=i % 97 == 0,
        )
        for i in range(count)
        for size in (SIZES[i % len(SIZES)][0],)
    ]
    others = [
        PodRecord(namespace=NAMESPACE, name=f"web-{i}", labels={"app": "web"}, ready=True)
        for i in range(count // 10)
    ]
    return records + others


def prometheus_answers(names: list[str], now: float, rng: random.Random) -> dict[Signal, Any]:
    """Instant vectors as prometheus-api-client returns them, one per signal; a few
    pods missing or NaN, as real answers have."""

    def vector(value: Callable[[], float]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            if rng.random() < 0.01:
                continue  # not scraped yet
            text = "NaN" if rng.random() < 0.005 else repr(value())
            out.append(
                {
                    "metric": {"namespace": NAMESPACE, "pod": name, "model_name": "qwen"},
                    "value": [now - rng.random() * 15, text],
                }
            )
        return out

    return {
        Signal.RUNNING: vector(lambda: float(rng.randint(0, 32))),
        Signal.WAITING: vector(lambda: float(rng.randint(0, 8))),
        Signal.KV_CACHE: vector(rng.random),
        Signal.TTFT_P95: vector(lambda: 0.05 + rng.random()),
        Signal.ERROR_RATE: vector(lambda: rng.random() * 0.1),
    }


@dataclass(slots=True)
class Run:
    pods: int
    reconciles: int
    stage_ms: dict[str, float]
    """Median per stage."""
    total_ms: float
    """Median of whole reconciles."""
    table_bytes: int
    gzip_bytes: int
    json_dumps_ms: float
    """Median ``json.dumps`` of the same table document."""


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}
CLOCK_NOTES = {
    "cpu": "the thread's CPU time: what a reconcile costs, whatever else the machine runs",
    "wall": "elapsed time: on a busy machine it counts other processes' turns too",
}


def measure(
    pod_count: int, *, repeats: int, budget: float, seed: int, clock: Callable[[], float]
) -> Run:
    rng = random.Random(seed)
    router = spec()
    index = pod_index(pod_count)
    names = [p.name for p in index if p.labels.get("app") == "vllm"]
    now = time.time()
    answers = prometheus_answers(names, now, rng)
    state: WeightState | None = None
    stage_runs: dict[str, list[float]] = {stage: [] for stage in STAGES}
    totals: list[float] = []
    text = ""
    deadline = time.monotonic() + budget
    for attempt in range(repeats + 1):
        marks = [clock()]
        queries.plan(
            router.prometheus.engine,
            router.prometheus.queries,
            namespace=NAMESPACE,
            pod_names=names,
            window="1m",
        )
        marks.append(clock())
        selection = discovery.select(router, index)
        marks.append(clock())
        selected = [p.name for pods in selection.values() for p in pods]
        loads = extract(answers, selected, now=now, max_age=120.0)
        marks.append(clock())
        inputs = deciding.model_inputs(router, selection, loads)
        weights = weighting.update(state, inputs, router.policy)
        state = weights.state
        marks.append(clock())
        table = build_table(
            router=f"{NAMESPACE}/chat",
            spec=router,
            selection=selection,
            weights=weights,
            loads=loads,
            revision=118,
            generated_at="2026-01-01T00:00:00Z",
            precision=4,
        )
        marks.append(clock())
        # No size limit here: a table over a ConfigMap's 1 MiB is measured all the same.
        text = encode_routing_table(table, max_bytes=sys.maxsize).text
        marks.append(clock())
        if attempt == 0:
            continue  # a warm-up, not counted: caches, and the weights' first state
        for stage, (start, end) in zip(STAGES, itertools.pairwise(marks), strict=True):
            stage_runs[stage].append((end - start) * 1e3)
        totals.append((marks[-1] - marks[0]) * 1e3)
        if time.monotonic() > deadline:
            break
    document = json.loads(text)
    dumps: list[float] = []
    for _ in range(len(totals)):
        start = clock()
        json.dumps(document)
        dumps.append((clock() - start) * 1e3)
    encoded = text.encode()
    return Run(
        pods=pod_count,
        reconciles=len(totals),
        stage_ms={stage: statistics.median(runs) for stage, runs in stage_runs.items()},
        total_ms=statistics.median(totals),
        table_bytes=len(encoded),
        gzip_bytes=len(gzip.compress(encoded)),
        json_dumps_ms=statistics.median(dumps),
    )


def report(runs: list[Run], small: Run, clock: str) -> str:
    sizes = " and ".join(f"{run.pods:,}" for run in runs)
    head = " | ".join(f"{run.pods:,} pods | ratio" for run in runs)

    def row(label: str, values: list[float], base: float, unit: str, digits: int = 2) -> str:
        cells = " | ".join(f"{v:,.{digits}f} {unit} | {v / base:.1f}x" for v in values)
        return f"| {label} | {base:,.{digits}f} {unit} | {cells} |"

    def off_loop(run: Run) -> float:
        return sum(run.stage_ms[stage] for stage in OFF_LOOP)

    encode = STAGES[-1]
    lines = [
        f"# One reconcile: {sizes} pods over 3 models",
        "",
        f"Medians of {', '.join(str(run.reconciles) for run in runs)} reconciles "
        f"({small.reconciles} for the baseline); ratios against the {small.pods:,}-pod "
        f"router measured in the same run. Clock: {clock} ({CLOCK_NOTES[clock]}).",
        "",
        f"| stage | {small.pods:,} pods (baseline) | {head} |",
        "|---|---:|" + "---:|---:|" * len(runs),
        *(
            row(stage, [run.stage_ms[stage] for run in runs], small.stage_ms[stage], "ms")
            for stage in STAGES
        ),
        row("**whole reconcile**", [run.total_ms for run in runs], small.total_ms, "ms"),
        row(
            "of which in a worker thread (extract to encode)",
            [off_loop(run) for run in runs],
            off_loop(small),
            "ms",
        ),
        row(
            "of which on the event loop",
            [run.total_ms - off_loop(run) for run in runs],
            small.total_ms - off_loop(small),
            "ms",
        ),
        row(
            "table bytes (routing.json)",
            [run.table_bytes for run in runs],
            small.table_bytes,
            "B",
            0,
        ),
        row("table bytes, gzip", [run.gzip_bytes for run in runs], small.gzip_bytes, "B", 0),
        "",
        "| against other baselines | pods | value | baseline | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines += [
            f"| encode vs plain `json.dumps` of the same table | {run.pods:,} | "
            f"{run.stage_ms[encode]:.2f} ms | {run.json_dumps_ms:.2f} ms | "
            f"{run.stage_ms[encode] / run.json_dumps_ms:.1f}x |",
            f"| table bytes vs a ConfigMap's 1 MiB | {run.pods:,} | {run.table_bytes:,} B | "
            f"{CONFIGMAP_LIMIT:,} B | {run.table_bytes / CONFIGMAP_LIMIT:.2f}x |",
            f"| table bytes per pod | {run.pods:,} | {run.table_bytes / run.pods:.0f} B | "
            f"{small.table_bytes / small.pods:.0f} B | "
            f"{(run.table_bytes / run.pods) / (small.table_bytes / small.pods):.2f}x |",
        ]
    over = [run for run in runs if run.table_bytes > CONFIGMAP_LIMIT]
    if over:
        fits = int(CONFIGMAP_LIMIT / (over[0].table_bytes / over[0].pods))
        lines += [
            "",
            f"Over a ConfigMap's 1 MiB at {', '.join(f'{run.pods:,}' for run in over)} pods: "
            "the operator refuses to publish such a table (condition Ready False, "
            f"TableInvalid); at this size per pod one table holds about {fits:,} pods. "
            "See bench/README.md for what a split or a compressed table would need.",
        ]
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pods",
        type=int,
        nargs="+",
        default=[1000, 10000],
        help="pods of the big routers",
    )
    parser.add_argument("--baseline-pods", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=50, help="reconciles per size, at most")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per size, at most")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    small, *runs = (
        measure(pods, repeats=args.repeats, budget=args.budget, seed=args.seed, clock=clock)
        for pods in [args.baseline_pods, *args.pods]
    )
    text = report(runs, small, args.clock)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
