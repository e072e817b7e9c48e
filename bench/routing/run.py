"""Run the routing benchmark: every scenario, every system, every seed; write the
per-request records, the summaries, the report and the plots.

The whole run happens in a network namespace with only loopback up (``unshare -n``):
the testbed, the pods, every router and the load generator, so no peer can reach the
internet (tokenizer or price-map downloads) and nothing leaves the machine.

Usage::

    python bench/routing/run.py                 # the full form (make bench-routing)
    python bench/routing/run.py --short         # one scenario, one seed (the smoke test)
    python bench/routing/run.py --only tier-2 --seeds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
import yaml  # noqa: E402

from routing import affinity, chats, classes, report, summary, systems, trace  # noqa: E402
from routing import scenarios as catalogue  # noqa: E402
from routing.loadgen import Record, replay, sample_pods, sample_table  # noqa: E402
from routing.scenarios import MIXED_SPILLOVER, Scenario, capacity_rps  # noqa: E402
from zeta_api import API_VERSION, KIND  # noqa: E402
from zeta_testbed import zetarouter  # noqa: E402
from zeta_testbed.sim.presets import PRESETS  # noqa: E402
from zeta_testbed.testbed import Testbed  # noqa: E402

RESULTS = BENCH / "results"
NAMESPACE = "bench"
CONFIGMAP = "bench-routing"
NETNS_MARK = "ZETA_ROUTING_NETNS"
TIERS = {"4b": 1, "7b": 2, "14b": 3}
DEFAULT_INTERVAL = 10.0
DEFAULT_STALE_AFTER = 60.0
DEFAULT_RATE_WINDOW = 60.0
DEFAULT_MAX_QUEUE_TIME = 60.0
"""The CRD's policy and traffic-class defaults and zeta-operator's --rate-window
default, in seconds."""


def log(message: str) -> None:
    print(f"[routing {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # loopback only
        return json.loads(response.read() or b"null")


# --- the testbed and Zeta ------------------------------------------------------------------


def _router_manifest(
    scenario: Scenario, prometheus: str, system: systems.System | None = None
) -> dict[str, Any]:
    """A ZetaRouter with the CRD's default policy: only what the pods need is given,
    and the ``system``'s affinity."""
    models = [
        {"name": f"sim-{size}", "tier": TIERS[size], "port": 8000,
         "selector": {"matchLabels": {"app": "vllm", "model": size}},
         "capacity": PRESETS[size].capacity}
        for size in sorted(scenario.pods, key=TIERS.__getitem__)
    ]  # fmt: skip
    # The CRD's default policy durations are in real seconds; the pods run time_scale
    # times faster, so the same defaults in *model* time are these wall durations
    # (never below the CRD's 1 s minimum). Everything else stays the default.
    scale = scenario.time_scale
    spec: dict[str, Any] = {
        "models": models,
        "prometheus": {"url": prometheus, "engine": "vllm"},
        "policy": {"interval": _duration(DEFAULT_INTERVAL / scale),
                   "staleAfter": _duration(DEFAULT_STALE_AFTER / scale)},
        "routingTable": {"configMapName": CONFIGMAP},
    }  # fmt: skip
    if scenario.classes:
        spec["traffic"] = _traffic(scenario)
    elif scenario.replicas > 1 and scenario.chat is not None:
        # As the classes suite declares it (the routing suite's 3-replica case was
        # recorded without it, and is left so).
        spec["traffic"] = {"gatewayReplicas": scenario.replicas}
    if system is not None and system.affinity:
        spec["balancing"] = {"affinity": dict(system.affinity)}
    if len(models) > 1:
        spec["virtualModels"] = [
            {"name": "auto", "strategy": "complexity", "spillover": MIXED_SPILLOVER,
             "candidates": [m["name"] for m in models]}
        ]  # fmt: skip
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "bench", "namespace": NAMESPACE},
        "spec": spec,
    }


def _traffic(scenario: Scenario) -> dict[str, Any]:
    """The CRD's default classes with their longest queue time in model time, and each
    tenant's requests/s limit from its share of the trace's mean offered rate."""
    shares = dict(scenario.mix.tenants)
    offered = estimate_capacity(scenario) * scenario.mean_load
    classes = [
        {"name": name, "priority": priority, "sheddable": name == "sheddable",
         "maxQueueTime": _duration(DEFAULT_MAX_QUEUE_TIME / scenario.time_scale)}
        for name, priority in (("critical", 300), ("standard", 200), ("sheddable", 100))
    ]  # fmt: skip
    tenants = [
        {"name": name, "requestsPerSecond": round(multiple * shares[name] * offered, 2)}
        for name, multiple in scenario.tenant_limits
    ]
    return {
        "classes": classes, "tenants": tenants, "gatewayReplicas": scenario.replicas,
        "enginePriority": scenario.engine_priority,
    }  # fmt: skip


def _duration(seconds: float) -> str:
    return f"{max(1000, round(seconds * 1000))}ms"


def start_zeta(testbed: Testbed, scenario: Scenario) -> None:
    zetarouter.install_crd(testbed)
    apply_router(testbed, scenario)
    bin_dir = Path(sys.executable).parent
    window = _duration(DEFAULT_RATE_WINDOW / scenario.time_scale)
    testbed.run(
        "zeta-operator",
        [str(bin_dir / "zeta-operator"), "--namespace", NAMESPACE, "--rate-window", window],
    )
    _until(lambda: testbed.routing_table(NAMESPACE, CONFIGMAP) is not None, 90, "the table")


def apply_router(
    testbed: Testbed, scenario: Scenario, system: systems.System | None = None
) -> None:
    """Declare the scenario's ZetaRouter (again: scenarios of a group share the testbed,
    and Zeta's systems differ in affinity) and, once the operator runs, wait until its
    table carries the scenario's traffic and the system's affinity."""
    manifest = _router_manifest(scenario, testbed.prometheus_url, system)
    testbed.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    if testbed.routing_table(NAMESPACE, CONFIGMAP) is None:
        return
    want = manifest["spec"].get("traffic") or {"gatewayReplicas": 1}
    want_affinity = dict(system.affinity) if system is not None else {}

    def published() -> bool:
        table = testbed.routing_table(NAMESPACE, CONFIGMAP) or {}
        got = table.get("traffic") or {"gatewayReplicas": 1}
        tenants = {t["name"]: t.get("requestsPerSecond") for t in got.get("tenants", [])}
        affinity = (table.get("balancing") or {}).get("affinity") or {}
        return (
            got.get("gatewayReplicas", 1) == want["gatewayReplicas"]
            and tenants == {t["name"]: t["requestsPerSecond"] for t in want.get("tenants", [])}
            and all(affinity.get(k) == v for k, v in want_affinity.items())
            and (bool(want_affinity) or not (affinity.get("prefix") or affinity.get("session")))
        )

    _until(published, 60, "the table to carry the scenario's traffic and affinity")


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def drain(pods: Sequence[systems.Pod], timeout: float = 120.0) -> float:
    """Until no pod runs or queues anything, so no system inherits another's queue;
    then the pods' prefix caches are emptied, so none inherits another's cache either."""
    for pod in pods:
        _http("DELETE", f"{pod.url}/admin/faults")

    def idle() -> bool:
        for pod in pods:
            stats = _http("GET", f"{pod.url}/admin/stats")
            if stats["running"] or stats["waiting"]:
                return False
        return True

    waited = _until(idle, timeout, "the pods to drain")
    for pod in pods:
        _http("POST", f"{pod.url}/reset_prefix_cache")
    return waited


def affinity_decisions(admins: Sequence[str]) -> dict[str, float]:
    """The sidecars' ``zeta_affinity_decisions_total`` by ``kind/outcome``, summed over
    the replicas (empty for systems without affinity)."""
    counts: dict[str, float] = {}
    for admin in admins:
        with urllib.request.urlopen(f"{admin}/metrics", timeout=5) as response:  # loopback
            text = response.read().decode()
        for line in text.splitlines():
            if not line.startswith("zeta_affinity_decisions_total{"):
                continue
            labels, value = line.rsplit(" ", 1)
            pairs = dict(p.split("=", 1) for p in labels[labels.index("{") + 1 : -1].split(","))
            key = f"{pairs['kind'].strip(chr(34))}/{pairs['outcome'].strip(chr(34))}"
            counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def pod_spans(pods: Sequence[systems.Pod], since: float) -> dict[str, list[Any]]:
    """Each pod's requests that arrived since ``since`` (this machine's monotonic clock,
    which the sims' engines keep): ``[arrived, left]``, ``left`` null while still held."""
    return {p.name: _http("GET", f"{p.url}/admin/spans?since={since!r}")["spans"] for p in pods}


def cache_counters(pods: Sequence[systems.Pod]) -> dict[str, list[int]]:
    """Each pod's prefix-cache [queries, hits] so far, in tokens."""
    out: dict[str, list[int]] = {}
    for pod in pods:
        stats = _http("GET", f"{pod.url}/admin/stats")
        out[pod.name] = [int(stats["prefix_cache_queries"]), int(stats["prefix_cache_hits"])]
    return out


def settle_zeta(testbed: Testbed, timeout: float = 45.0) -> float:
    """Until the operator's table shows idle pods and weights within 1.3x of each other
    per model (the operator forgets the previous system's load), or ``timeout``."""

    def settled() -> bool:
        table = testbed.routing_table(NAMESPACE, CONFIGMAP) or {"models": {}}
        for entry in table["models"].values():
            weights = [e["weight"] for e in entry["endpoints"]]
            loads = [e.get("load") or {} for e in entry["endpoints"]]
            if any((load.get("running") or 0) + (load.get("waiting") or 0) for load in loads):
                return False
            if weights and max(weights) > 1.3 * max(1e-9, min(weights)):
                return False
        return True

    try:
        return _until(settled, timeout, "the operator's weights to settle")
    except TimeoutError:
        log(f"zeta weights did not settle within {timeout:.0f} s; running anyway")
        return timeout


# --- one run -------------------------------------------------------------------------------


def estimate_capacity(scenario: Scenario, seed: int = 1) -> float:
    """The pods' estimated requests/s (wall) for the scenario's mix (mean lengths from a
    sample drawn with ``seed``); also kept, with those lengths, in ``scenario.extra``."""
    if scenario.chat is not None:
        return catalogue.chat_capacity(scenario, scenario.chat, seed)
    sample = trace.generate(
        seed + 10_000, duration=400.0, rate=lambda t: 1.0, model=scenario.model,
        mix=scenario.mix, peak_rate=1.0,
    )  # fmt: skip
    prompt = sum(r.prompt_tokens for r in sample) / len(sample)
    output = sum(r.max_tokens for r in sample) / len(sample)
    capacity = sum(
        count * capacity_rps(size, prompt, output, scenario.time_scale)
        for size, count in scenario.pods.items()
    )
    scenario.extra["capacity_rps"] = f"{capacity:.1f}"
    scenario.extra["mean_prompt"] = f"{prompt:.0f}"
    scenario.extra["mean_output"] = f"{output:.0f}"
    return capacity


def make_trace(scenario: Scenario, seed: int) -> list[Any]:
    capacity = estimate_capacity(scenario, seed)
    if scenario.chat is not None:
        turns = chats.generate(
            seed, duration=scenario.duration, rate=lambda t: scenario.load_at(t) * capacity,
            model=scenario.model, chat=scenario.chat, peak_rate=scenario.peak_load * capacity,
            time_scale=scenario.time_scale,
        )  # fmt: skip
        scenario.extra["hit_ceiling"] = f"{chats.ceiling(turns):.3f}"
        return turns
    requests = trace.generate(
        seed,
        duration=scenario.duration,
        rate=lambda t: scenario.load_at(t) * capacity,
        model=scenario.model,
        mix=scenario.mix,
        peak_rate=scenario.peak_load * capacity,
    )
    return [r for r in requests if r.priority not in scenario.drop_priorities]


def run_one(
    scenario: Scenario,
    *,
    system: systems.System,
    seed: int,
    requests: list[Any],
    pods: Sequence[systems.Pod],
    testbed: Testbed,
    procs: peers.Processes,
    workdir: Path,
) -> tuple[list[Record], dict[str, Any]]:
    if system.kind == "zeta":
        apply_router(testbed, scenario, system)
    drained = drain(pods)
    settled = settle_zeta(testbed) if system.kind == "zeta" else 0.0
    cache_before = cache_counters(pods)
    running = systems.start(
        system, pods, replicas=scenario.replicas, workdir=workdir, procs=procs,
        configmap=(f"{NAMESPACE}/{CONFIGMAP}", testbed.kubeconfig),
    )  # fmt: skip

    def action(event: Any) -> Callable[[], None]:
        pod = pods[event.pod]
        if event.kind == "slowdown":
            return lambda: _http("POST", f"{pod.url}/admin/faults", {"slowdown": event.factor})
        if event.kind == "clear":
            return lambda: _http("DELETE", f"{pod.url}/admin/faults")
        raise ValueError(event.kind)

    events = [(e.at, action(e)) for e in scenario.events]

    async def go() -> tuple[list[Record], list[Any], list[Any]]:
        stop = asyncio.Event()
        pod_list = [(p.name, p.url) for p in pods]
        pods_task = asyncio.create_task(sample_pods(lambda: pod_list, stop))
        table_task = (
            asyncio.create_task(sample_table(running.admin[0], stop))
            if system.kind == "zeta"
            else None
        )
        try:
            records = await replay(
                requests, running.urls, system=system.name, scenario=scenario.name,
                seed=seed, limit=scenario.request_timeout, events=events,
            )  # fmt: skip
        finally:
            stop.set()
        samples = await pods_task
        table = await table_task if table_task is not None else []
        return records, samples, table

    started = time.monotonic()
    cpu_before = systems.cpu_seconds(running)
    try:
        records, samples, table = asyncio.run(go())
        router_cpu = systems.cpu_seconds(running) - cpu_before
        cache_after = cache_counters(pods)
        spans = pod_spans(pods, started) if scenario.chat is not None else {}
        decisions = affinity_decisions(running.admin)
    finally:
        systems.stop(running, procs)
        for pod in pods:
            _http("DELETE", f"{pod.url}/admin/faults")
    info = {
        "wall": round(time.monotonic() - started, 1),
        "drain_before": round(drained, 1),
        "settle_before": round(settled, 1),
        "router_cpu": round(router_cpu, 2),
        "samples": [asdict(s) for s in samples],
        "spans": spans,
        "table": table,
        "decisions": decisions,
        "cache": {
            name: [after - before for after, before in zip(cache_after[name], counts, strict=True)]
            for name, counts in cache_before.items()
        },
    }
    return records, info


# --- the whole benchmark -------------------------------------------------------------------


def pods_of(testbed: Testbed) -> list[systems.Pod]:
    order = {size: i for i, size in enumerate(("4b", "7b", "14b"))}
    found = sorted(testbed.pods(NAMESPACE), key=lambda p: (order[p.size], p.name))
    return [
        systems.Pod(p.name, f"sim-{p.size}", TIERS[p.size], PRESETS[p.size].capacity, p.ip, 8000)
        for p in found
    ]


@dataclass
class Outcome:
    """What a whole benchmark run collected."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    runs_info: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def summarise(
    scenario: Scenario,
    system: systems.System,
    *,
    seed: int,
    records: Sequence[Record],
    info: dict[str, Any],
    pods: Sequence[systems.Pod],
) -> dict[str, Any]:
    """One run's figures; per class and tenant too when the scenario declares classes."""
    row = summary.summarise(scenario, system, seed=seed, records=records, info=info, pods=pods)
    if scenario.classes:
        row.update(classes.breakdown(records, scenario))
    if scenario.chat is not None:
        # Every system is judged by the bound zeta-affinity declares.
        bound = affinity.declared_bound(systems.SYSTEMS["zeta-affinity"].affinity)
        spans = info.get("spans", {})
        row["load_bound"] = bound
        row.update(affinity.bound_figures(spans, pods, scenario.time_scale, bound))
    return row


def run_scenario(
    scenario: Scenario,
    seeds: Sequence[int],
    *,
    pods: Sequence[systems.Pod],
    testbed: Testbed,
    procs: peers.Processes,
    workdir: Path,
    records_dir: Path,
    outcome: Outcome,
) -> None:
    for seed in seeds:
        requests = make_trace(scenario, seed)
        log(f"{scenario.name} seed {seed}: {len(requests)} requests, "
            f"capacity {scenario.extra['capacity_rps']} req/s")  # fmt: skip
        for name in scenario.systems:
            system = systems.SYSTEMS[name]
            key = f"{scenario.name}.{name}.{seed}"
            try:
                records, info = run_one(
                    scenario, system=system, seed=seed, requests=requests, pods=pods,
                    testbed=testbed, procs=procs, workdir=workdir,
                )  # fmt: skip
            except Exception as exc:
                # Said in the report; the other systems still run.
                log(f"  {name:18} FAILED: {str(exc)[:500]}")
                outcome.failures[key] = f"{type(exc).__name__}: {str(exc)[:300]}"
                continue
            (records_dir / f"{key}.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
            (records_dir / f"{key}.info.json").write_text(json.dumps(info))
            row = summarise(scenario, system, seed=seed, records=records, info=info, pods=pods)
            outcome.summaries.append(row)
            outcome.runs_info[key] = info
            log(f"  {name:18} {summary.one_line(row)}")


def run(scenarios: Sequence[Scenario], seeds: Sequence[int], out: Path, records_dir: Path) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="zeta-routing-"))
    procs = peers.Processes(workdir)
    out.mkdir(parents=True, exist_ok=True)
    records_dir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    started = time.monotonic()
    groups: dict[str, list[Scenario]] = {}
    for scenario in scenarios:
        groups.setdefault(scenario.group, []).append(scenario)
    try:
        for group, members in groups.items():
            first = members[0]
            testbed = Testbed(workdir / f"testbed-{group}")
            log(f"testbed {group}: pods {first.pods}, time scale {first.time_scale:g}")
            try:
                testbed.up(
                    first.pods, namespace=NAMESPACE, time_scale=first.time_scale,
                    priority_scheduling=first.engine_priority,
                    prefix_caching=first.prefix_caching,
                )  # fmt: skip
                pods = pods_of(testbed)
                if any(systems.SYSTEMS[n].kind == "zeta" for s in members for n in s.systems):
                    start_zeta(testbed, first)
                for scenario in members:
                    run_scenario(
                        scenario, seeds, pods=pods, testbed=testbed, procs=procs,
                        workdir=workdir, records_dir=records_dir, outcome=outcome,
                    )  # fmt: skip
            except Exception as exc:
                log(f"testbed {group} FAILED: {exc}")
                outcome.failures[f"testbed {group}"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            finally:
                testbed.down(keep_state=True)  # its logs stay in the work folder
    finally:
        procs.stop_all()
    elapsed = time.monotonic() - started
    (out / "summary.json").write_text(json.dumps(outcome.summaries, indent=1))
    (out / "elapsed.json").write_text(json.dumps(round(elapsed)))
    (out / "provenance.json").write_text(
        json.dumps(
            [
                time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                " ".join(["python", *sys.argv]),
                report.code_line(),
            ]
        )
    )
    (out / "failures.json").write_text(json.dumps(outcome.failures, indent=1))
    text = report.write(
        scenarios, seeds, outcome.summaries, runs_info=outcome.runs_info, out=out,
        records=records_dir, elapsed=elapsed, failures=outcome.failures,
    )  # fmt: skip
    log(f"done in {elapsed:.0f} s; work folder (logs) {workdir}; report {report.REPORT_PATH}")
    print(text[:3000])
    return 0


def rebuild(
    scenarios: Sequence[Scenario], seeds: Sequence[int], out: Path, records_dir: Path
) -> int:
    """The summaries and the report again from the records and time series of an earlier
    run, with the current summary and report code (no load is sent)."""
    runs_info: dict[str, Any] = {}
    summaries: list[dict[str, Any]] = []
    for scenario in scenarios:
        for seed in seeds:
            make_trace(scenario, seed)  # fills scenario.extra (capacity, mean lengths)
            for name in scenario.systems:
                key = f"{scenario.name}.{name}.{seed}"
                path = records_dir / f"{key}.jsonl"
                info_path = records_dir / f"{key}.info.json"
                if not path.exists() or not info_path.exists():
                    continue
                info = json.loads(info_path.read_text())
                runs_info[key] = info
                records = [Record(**json.loads(line)) for line in path.read_text().splitlines()]
                names = sorted({s["pod"] for s in info["samples"]},
                               key=lambda n: (TIERS[n.split("-")[1]], n))  # fmt: skip
                pods = [
                    systems.Pod(n, f"sim-{n.split('-')[1]}", TIERS[n.split("-")[1]],
                                PRESETS[n.split("-")[1]].capacity, "", 8000)
                    for n in names
                ]  # fmt: skip
                system = systems.SYSTEMS[name]
                row = summarise(scenario, system, seed=seed, records=records, info=info, pods=pods)
                summaries.append(row)
    (out / "summary.json").write_text(json.dumps(summaries, indent=1))
    elapsed = float(json.loads((out / "elapsed.json").read_text())) if (
        out / "elapsed.json").exists() else 0.0  # fmt: skip
    failures_path = out / "failures.json"
    failures = json.loads(failures_path.read_text()) if failures_path.exists() else {}
    where = out / "provenance.json"
    stored = json.loads(where.read_text()) if where.exists() else None
    provenance = (str(stored[0]), str(stored[1]), str(stored[2])) if stored else None
    report.write(
        scenarios, seeds, summaries, runs_info=runs_info, out=out, records=records_dir,
        elapsed=elapsed, failures=failures, provenance=provenance,
    )  # fmt: skip
    return 0


SUITES: dict[str, tuple[Callable[[], list[Scenario]], Callable[[], list[Scenario]]]] = {
    "routing": (catalogue.full, catalogue.short),
    "classes": (catalogue.classes, catalogue.classes_short),
    "affinity": (catalogue.affinity, catalogue.affinity_short),
}
"""Each suite's full and short (``make test``) scenarios; each writes its own report."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", choices=sorted(SUITES), default="routing",
        help="routing: load balancing (issue 8); classes: traffic classes (issue 9); "
        "affinity: cache-aware routing (issue 12)",
    )  # fmt: skip
    parser.add_argument("--short", action="store_true", help="one scenario, one seed")
    parser.add_argument("--only", action="append", default=[], help="scenario name(s)")
    parser.add_argument("--systems", default="", help="comma-separated subset of systems")
    parser.add_argument("--seeds", type=int, default=2, help="number of seeds (1..5)")
    parser.add_argument("--out", type=Path, help="default: results/<suite>")
    parser.add_argument("--records", type=Path, help="default: results/<suite>/records")
    parser.add_argument("--report", type=Path, help="default: results/<suite>.md")
    parser.add_argument(
        "--rebuild", action="store_true", help="summaries and report from earlier records"
    )
    parser.add_argument(
        "--affinity", action="append", default=[], metavar="FIELD=VALUE",
        help="zeta-affinity's spec.balancing.affinity field (JSON value), e.g. loadBound=0.5",
    )  # fmt: skip
    args = parser.parse_args()
    if args.affinity:
        fields = dict(systems.AFFINITY)
        for item in args.affinity:
            key, _, value = item.partition("=")
            fields[key] = json.loads(value)
        system = systems.SYSTEMS["zeta-affinity"]
        systems.SYSTEMS["zeta-affinity"] = replace(
            system,
            affinity=tuple(fields.items()),
            description=f"{system.description}; here " + ", ".join(args.affinity),
        )
    if os.environ.get(NETNS_MARK) != "1" and not args.rebuild:
        peers.ensure_tools()  # apt-get and pip need the network: before the namespace
        return _reexec_in_netns()
    suite_full, suite_short = SUITES[args.suite]
    out = args.out or RESULTS / args.suite
    records = args.records or out / "records"
    scenarios = suite_short() if args.short else suite_full()
    if args.only:
        scenarios = [s for s in scenarios if s.name in args.only]
    if args.systems:
        wanted = args.systems.split(",")
        scenarios = [
            Scenario(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                        "systems": [x for x in s.systems if x in wanted]})
            for s in scenarios
        ]  # fmt: skip
    seeds = [1] if args.short else list(range(1, max(1, min(5, args.seeds)) + 1))
    report.REPORT_PATH = args.report or RESULTS / f"{args.suite}.md"
    report.SUITE = args.suite
    if args.rebuild:
        return rebuild(scenarios, seeds, out, records)
    return run(scenarios, seeds, out, records)


def _reexec_in_netns() -> int:
    """Re-run this command in a new network namespace with only loopback up."""
    if shutil.which("unshare") is None:
        raise SystemExit("unshare (util-linux) is needed: the benchmark runs loopback-only")
    script = 'ip link set lo up && exec "$@"'
    argv = ["unshare", "-n", "sh", "-c", script, "sh", sys.executable, *sys.argv]
    env = {**os.environ, NETNS_MARK: "1"}
    return subprocess.run(argv, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
