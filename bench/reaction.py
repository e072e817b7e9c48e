"""Reaction times of the routing loop, on the testbed, each measured a few times:

- pod slowdown -> its weight falls: one 7b pod of two made 3x slower under steady load
  through the sidecar; wall seconds until the operator's table gives it less than 80 %
  of its weight before the fault (CRD default policy; the testbed scrapes every second);
- table change -> the sidecar uses it: a new table revision written (a) into a
  kubelet-style ConfigMap volume the sidecar polls (``--table-file``), (b) into a
  ConfigMap the sidecar watches through the API (``--configmap``); seconds until the
  sidecar's ``/table`` serves the new revision;
- pod killed -> no more traffic to it: a pod removed (Pod deleted, its simulator
  stopped) under steady load; seconds until the operator's table drops it, and the
  requests that failed meanwhile (the sidecar retries connect errors on another pod);
- pod added -> it gets traffic: seconds from the Pod becoming Ready until its simulator
  has received its first request through the sidecar.

Loopback only (the whole run is in a network namespace with only ``lo`` up), bounded
(each wait gives up after ``LIMIT`` seconds and says so). Writes a markdown table to
stdout and ``bench/results/routing/reaction.md``.

Usage: ``python bench/reaction.py [--repeats 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from routing import run as routing_run  # noqa: E402
from routing.scenarios import Scenario  # noqa: E402
from routing.trace import Mix  # noqa: E402

from zeta_api import TABLE_API_VERSION, TABLE_KEY, TABLE_KIND  # noqa: E402
from zeta_testbed.sidecar import SidecarProcess, kubelet_dir, start_sidecar, swap_kubelet_dir  # noqa: E402
from zeta_testbed.testbed import Testbed  # noqa: E402

RESULTS = BENCH / "results" / "routing" / "reaction.md"
LIMIT = 90.0
NS = routing_run.NAMESPACE
CM = routing_run.CONFIGMAP


def log(message: str) -> None:
    print(f"[reaction {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _until(check: Callable[[], bool], limit: float = LIMIT) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


class Load:
    """Steady closed-loop load (``workers`` clients) through one URL, in a thread."""

    def __init__(self, url: str, workers: int = 40) -> None:
        self.url = url + "/v1/chat/completions"
        self.workers = workers
        self.ok = 0
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        body = json.dumps(
            {"model": "sim-7b", "messages": [{"role": "user", "content": "hello " * 40}],
             "max_tokens": 32}
        )  # fmt: skip
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def worker() -> None:
                while not self._stop.is_set():
                    try:
                        async with session.post(
                            self.url, data=body, headers={"Content-Type": "application/json"}
                        ) as resp:
                            await resp.read()
                            if resp.status == 200:
                                self.ok += 1
                            else:
                                self.failed += 1
                    except (aiohttp.ClientError, OSError, TimeoutError):
                        self.failed += 1
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(worker() for _ in range(self.workers)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=40)


def _weights(testbed: Testbed) -> dict[str, float]:
    table = testbed.routing_table(NS, CM) or {"models": {}}
    return {
        ep["pod"]: ep["weight"] for entry in table["models"].values() for ep in entry["endpoints"]
    }


def _requests(url: str) -> int:
    return int(routing_run._http("GET", f"{url}/admin/stats")["requests_total"])


def slowdown(testbed: Testbed, sidecar_url: str) -> float | None:
    pods = testbed.pods(NS)
    victim = pods[0]
    with Load(sidecar_url):
        time.sleep(15)  # steady state: every pod scraped under load, weights settled
        before = _weights(testbed)[victim.name]
        routing_run._http("POST", f"{victim.url}/admin/faults", {"slowdown": 3.0})
        try:
            took = _until(lambda: _weights(testbed).get(victim.name, before) < 0.8 * before)
        finally:
            routing_run._http("DELETE", f"{victim.url}/admin/faults")
    return took


def _table(revision: int, address: str) -> str:
    return json.dumps(
        {"apiVersion": TABLE_API_VERSION, "kind": TABLE_KIND, "router": "b/r",
         "revision": revision, "generatedAt": "2026-01-01T00:00:00Z",
         "models": {"m": {"servedModelName": "sim-7b", "tier": 1, "weight": 1.0,
                          "endpoints": [{"address": address, "pod": "p", "weight": 1.0,
                                         "capacity": 32}]}}}
    )  # fmt: skip


def table_file(workdir: Path, address: str) -> float | None:
    def table(revision: int) -> str:
        return _table(revision, address)

    root = workdir / f"volume-{time.time_ns()}"
    path = kubelet_dir(root, table(1))
    # The sidecar's default poll interval, not the tests' 20 ms one.
    sidecar = start_sidecar(
        ("--table-file", str(path)), log=workdir / "file-sidecar.log",
        extra=("--file-poll-interval", "0.1"),
    )  # fmt: skip
    try:
        swap_kubelet_dir(root, table(2))
        return _until(lambda: sidecar.revision() == 2)
    finally:
        sidecar.stop()


def _apply_probe(testbed: Testbed, revision: int, address: str) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "reaction-probe", "namespace": NS},
        "data": {TABLE_KEY: _table(revision, address)},
    }
    testbed.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


def table_api(testbed: Testbed, workdir: Path, address: str, round_: int) -> float | None:
    """A ConfigMap of our own (the operator would overwrite its own): the time from
    ``kubectl apply`` returning to the sidecar serving the new revision."""
    base = 100 * (round_ + 1)
    _apply_probe(testbed, base, address)
    sidecar = start_sidecar(
        ("--configmap", f"{NS}/reaction-probe", "--kubeconfig", str(testbed.kubeconfig)),
        log=workdir / "api-sidecar.log",
    )
    try:
        start = time.monotonic()  # kubectl's own run (a process, a request) included
        _apply_probe(testbed, base + 1, address)
        got = _until(lambda: sidecar.revision() == base + 1)
        return None if got is None else time.monotonic() - start
    finally:
        sidecar.stop()


def pod_unready(testbed: Testbed, sidecar: SidecarProcess) -> float | None:
    """Pod unready -> the operator republishes at once (pods joining or leaving skip the
    interval) -> the sidecar, watching through the API, serves the new revision."""
    current = sidecar.revision() or 0
    pod = testbed.pods(NS)[-1]
    start = time.monotonic()
    testbed.set_pod_ready(pod, False)
    got = _until(lambda: (sidecar.revision() or 0) > current)
    took = None if got is None else time.monotonic() - start
    testbed.set_pod_ready(pod, True)
    _until(lambda: (sidecar.revision() or 0) > current + 1, 30)
    return took


def killed(testbed: Testbed, sidecar_url: str, admin: str) -> tuple[float | None, int]:
    victim = testbed.pods(NS)[0]
    with Load(sidecar_url) as load:
        time.sleep(5)
        failed_before = load.failed
        start = time.monotonic()  # remove_pod deletes the Pod, then stops its server
        testbed.remove_pod(victim.name, NS)

        def gone() -> bool:
            answer = routing_run._http("GET", f"{admin}/table")
            pods = [
                ep["pod"]
                for entry in answer["table"]["models"].values()
                for ep in entry["endpoints"]
            ]
            return victim.name not in pods

        got = _until(gone)
        took = None if got is None else time.monotonic() - start
        failed = load.failed - failed_before
        time.sleep(1)
    testbed.add_pod("7b", namespace=NS)
    return took, failed


def added(testbed: Testbed, sidecar_url: str) -> float | None:
    with Load(sidecar_url):
        time.sleep(2)
        pod = testbed.add_pod("7b", namespace=NS)  # returns once the Pod is Ready
        took = _until(lambda: _requests(pod.url) > 0)
    testbed.remove_pod(pod.name, NS)
    return took


def _cell(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    missed = len(values) - len(got)
    if not got:
        return f"not within {LIMIT:g} s"
    text = f"{statistics.median(got):.2f} s ({min(got):.2f}-{max(got):.2f})"
    return text + (f", {missed} not within {LIMIT:g} s" if missed else "")


def run(repeats: int) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="zeta-reaction-"))
    testbed = Testbed(workdir / "testbed")
    scenario = Scenario(
        name="reaction", group="reaction", pods={"7b": 2}, model="sim-7b", mix=Mix(),
        duration=0.0, base_load=0.0, time_scale=1.0,
    )  # fmt: skip
    testbed.up(scenario.pods, namespace=NS, time_scale=scenario.time_scale)
    rows: dict[str, list[float | None]] = {}
    failed: list[int] = []
    try:
        routing_run.start_zeta(testbed, scenario)
        sidecar = start_sidecar(
            ("--configmap", f"{NS}/{CM}", "--kubeconfig", str(testbed.kubeconfig)),
            log=workdir / "sidecar.log",
        )
        address = testbed.pods(NS)[0].address
        try:
            for i in range(repeats):
                log(f"round {i + 1}/{repeats}")
                rows.setdefault("table file -> sidecar serves it", []).append(
                    table_file(workdir, address)
                )
                rows.setdefault(
                    "kubectl apply of a ConfigMap -> sidecar (API watch) serves it", []
                ).append(table_api(testbed, workdir, address, i))
                rows.setdefault("pod unready -> operator -> sidecar serves the table", []).append(
                    pod_unready(testbed, sidecar)
                )
                rows.setdefault("pod added (Ready) -> first request", []).append(
                    added(testbed, sidecar.url)
                )
                took, lost = killed(testbed, sidecar.url, sidecar.admin)
                rows.setdefault(
                    "pod deleted (Pod object, then its server) -> gone from the sidecar's table", []
                ).append(took)
                failed.append(lost)
                rows.setdefault("pod slowed 3x -> weight < 80 %", []).append(
                    slowdown(testbed, sidecar.url)
                )
        finally:
            sidecar.stop()
    finally:
        testbed.down()
    lines = [
        "# Reaction times",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} "
        f"shared cores; {repeats} rounds, median (min-max), wall seconds, pods at time scale "
        "1 (real time), operator with the CRD's default policy (interval 10 s), Prometheus "
        "scraping every second, sidecar file poll 0.1 s (its default; a kubelet takes up to a "
        "minute more to update a mounted ConfigMap, not measured here). Command: "
        "`python bench/reaction.py`.",
        "",
        "| what | time |",
        "|---|---|",
        *(f"| {name} | {_cell(values)} |" for name, values in rows.items()),
        "",
        f"Requests failed while a pod was deleted under 40-client load: {failed} per round "
        "(the sidecar retries connect errors once on another pod, within its budget).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if os.environ.get(routing_run.NETNS_MARK) != "1":
        return routing_run._reexec_in_netns()
    text = run(max(1, min(5, args.repeats)))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
