"""The fault suite's sidecar rows (issue 7, point 3): a real ``zeta-sidecar`` on a table
file, in front of the testbed's simulated pods, under load from
:mod:`zeta_testbed.loadgen`, while pods fail, tables churn and the gateway restarts.

Each test is one row of the fault table, with its figure asserted. ``full_chaos``
(``make chaos``) scales counts and durations; the figures are the same in both forms.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes import client as k8s

from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.loadgen import (
    CHAT,
    BackgroundLoad,
    Kind,
    LoadGenerator,
    Mix,
    Outcome,
    Request,
    send,
)
from zeta_testbed.sidecar import (
    SidecarFactory,
    SidecarProcess,
    get,
    kubelet_dir,
    swap_kubelet_dir,
    wait_until,
)
from zeta_testbed.testbed import PodInfo, Testbed
from zeta_testbed.zetarouter import install_crd

MODEL = "chat"
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "manifests/samples/zetarouter-testbed.yaml"


def table(
    pods: list[PodInfo],
    *,
    revision: int = 1,
    balancing: dict[str, Any] | None = None,
    draining: bool = False,
) -> str:
    """One model, ``chat``, over ``pods`` (all of one size), plus an ``auto`` virtual model."""
    size = pods[0].size if pods else "4b"
    eps = [
        endpoint(p.address, pod=p.name, weight=0.0 if draining else 1.0, draining=draining)
        for p in pods
    ]
    return table_json(
        {MODEL: eps, "other": [endpoint("127.0.0.1:9", pod="elsewhere")]},
        served={MODEL: f"sim-{size}", "other": "sim-other"},
        # A model with nothing to serve weighs 0 (the table's rule, as the operator writes it).
        model_weights={MODEL: 0.0 if draining or not pods else 1.0},
        virtual={"auto": {"strategy": "complexity", "candidates": [MODEL]}},
        revision=revision,
        balancing=balancing,
    )


def add_pods(testbed: Testbed, namespace: str, count: int, size: str = "4b") -> list[PodInfo]:
    return [testbed.add_pod(size, namespace=namespace) for _ in range(count)]


def chat(max_tokens: tuple[int, int], stream_share: float) -> Mix:
    """``chat`` requests only, ``stream_share`` of them streamed."""

    def draw(rng: random.Random, n: int) -> Request:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": rng.randint(*max_tokens),
            "stream": rng.random() < stream_share,
        }
        return Request(CHAT, body)

    return draw


def set_faults(pod: PodInfo, **faults: object) -> None:
    """Put faults in force on a simulated pod (``/admin/faults``)."""
    request = urllib.request.Request(
        f"{pod.url}/admin/faults",
        data=json.dumps(faults).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # loopback only
        assert resp.status == 200


def clear_faults(pod: PodInfo) -> None:
    request = urllib.request.Request(f"{pod.url}/admin/faults", method="DELETE")
    with urllib.request.urlopen(request, timeout=5) as resp:  # loopback only
        assert resp.status == 200


def stats(pod: PodInfo) -> dict[str, Any]:
    """The pod's own counters (``/admin/stats``): what reached it, whatever the sidecar says."""
    status, body = get(f"{pod.url}/admin/stats")
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def kill(pod: PodInfo) -> None:
    """SIGKILL the pod's simulator: no goodbye, connections reset mid-request."""
    os.kill(pod.process.pid, signal.SIGKILL)


def samples(proc: SidecarProcess, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name`` in one scrape: (labels, value)."""
    _, body = get(f"{proc.admin}/metrics")
    found = []
    for line in body.decode().splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        pairs = (p.partition("=") for p in rest.rstrip("}").split(","))
        labels = {k: v.strip('"') for k, _, v in pairs}
        found.append((labels, float(value)))
    return found


def ejected(proc: SidecarProcess) -> set[str]:
    """Pods of ``chat`` the sidecar holds out of traffic (ejected or probing) right now."""
    return {
        labels["pod"]
        for labels, value in samples(proc, "zeta_pod_ejected")
        if labels.get("model") == MODEL and value == 1
    }


def reference_text(pod: PodInfo, tokens: int) -> str:
    """The text of one generation of ``tokens`` tokens straight from a pod (the simulator's
    output is the same for every request), to recognise a restart spliced into a stream."""

    async def one() -> Outcome:
        body = {
            "model": f"sim-{pod.size}",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": tokens,
            "stream": True,
        }
        async with aiohttp.ClientSession() as session:
            return await send(session, pod.url, Request(CHAT, body), within=30)

    outcome = asyncio.run(one())
    assert outcome.kind is Kind.DONE, outcome
    assert outcome.tokens == tokens, outcome
    return outcome.content


class Sampler:
    """Calls ``probe`` every ``interval`` seconds on a thread, keeping the results."""

    def __init__(self, probe: Callable[[], Any], interval: float = 0.05) -> None:
        self.values: list[Any] = []
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.values.append(self._probe())
            self._stop.wait(self._interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def pool(testbed: Testbed) -> Iterator[list[PodInfo]]:
    """Four pods for the rows that leave them as they found them: starting pods is most
    of this file's time. Rows that kill pods start their own."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    with testbed.api_client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        try:
            yield add_pods(testbed, name, 4)
        finally:
            for pod in testbed.pods(name):
                testbed.remove_pod(pod.name, name)
            core.delete_namespace(name)


@pytest.fixture
def shared(pool: list[PodInfo]) -> Iterator[list[PodInfo]]:
    """The module's pods, their faults cleared after the test."""
    yield pool
    for pod in pool:
        clear_faults(pod)


# --------------------------------------------------------------------------- rows


def test_table_reloads_with_bad_tables_under_load_lose_nothing(
    shared: list[PodInfo],
    sidecar: SidecarFactory,
    tmp_path: Path,
    full_chaos: bool,
) -> None:
    """1,000 reloads (200 short) through the kubelet's ``..data`` swap, every fifth one a
    bad table: zero failed requests, every open stream runs to its end, each bad table
    counted as refused."""
    reloads = 1000 if full_chaos else 200
    pods = shared[:2]
    root = tmp_path / "volume"
    path = kubelet_dir(root, table(pods, revision=0))
    proc = sidecar("--table-file", str(path), extra=("--log-level", "WARNING"))
    good = json.loads(table(pods))

    def bad(i: int) -> str:
        doc = json.loads(json.dumps(good))
        doc["revision"] = 10_000 + i
        kind = (i // 5) % 3
        if kind == 0:
            return '{"apiVersion": "zeta.dev/v1alpha1", "models": {'  # cut short
        if kind == 1:
            doc["apiVersion"] = "zeta.dev/v9"
        else:
            doc["models"][MODEL]["endpoints"][0]["weight"] = -1.0
        return json.dumps(doc)

    load = LoadGenerator(proc.url, chat((20, 200), stream_share=0.5), clients=6, timeout=30)
    swapped_at: list[float] = []
    start = time.monotonic()
    refused = applied = 0
    with BackgroundLoad(load) as running:
        for i in range(1, reloads + 1):
            swapped_at.append(time.monotonic())
            if i % 5 == 0:
                swap_kubelet_dir(root, bad(i))
                refused += 1
                wait_until(
                    lambda: proc.metric("zeta_table_reloads_total", result="refused") == refused,  # noqa: B023
                    within=5,
                    what=f"refusal of bad table {i}",
                )
            else:
                # Pods leave and come back: requests in flight finish where they started.
                serving = [pods[i % 2]] if i % 3 else pods
                swap_kubelet_dir(root, table(serving, revision=i))
                applied += 1
                wait_until(lambda: proc.revision() == i, within=5, what=f"reload {i}")  # noqa: B023
        report = running.stop()

    assert proc.metric("zeta_table_reloads_total", result="refused") == refused
    assert proc.metric("zeta_table_reloads_total", result="applied") == applied + 1
    assert report.failures() == [], report.summary()
    streams = report.streams()
    assert streams
    assert all(o.kind is Kind.DONE for o in streams)
    # Streams that were open across at least one swap: the ones this row is about.
    spanning = [
        o for o in streams if any(o.started < t < o.started + o.seconds for t in swapped_at)
    ]
    assert len(streams) >= 20, report.summary()
    assert len(spanning) >= len(streams) // 2, (len(spanning), report.summary())
    print(
        f"\n{reloads} reloads ({refused} bad, refused) in {time.monotonic() - start:.1f} s: "
        f"{report.summary()}; "
        f"{len(spanning)} streams open across a swap"
    )


def test_a_pod_that_always_fails_is_ejected_never_more_than_half_then_probed_back(
    shared: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path, full_chaos: bool
) -> None:
    """Three of four pods answer 500 to everything: each is ejected (metric), never more
    than two at once (half of the model); cleared, all come back through the prober."""
    pods = shared[:4]
    outlier = {
        "consecutiveFailures": 3,
        "baseEjection": "0.5s",
        "maxEjection": "1.5s",
        "maxEjectedFraction": 0.5,
    }
    path = tmp_path / "routing.json"
    path.write_text(table(pods, balancing={"outlier": outlier, "warmup": "0s"}))
    proc = sidecar("--table-file", str(path), extra=("--log-level", "WARNING"))
    failing, healthy = pods[:3], pods[3]
    seconds = 8.0 if full_chaos else 3.0

    load = LoadGenerator(proc.url, chat((1, 8), stream_share=0.2), clients=6, timeout=30)
    with BackgroundLoad(load) as running, Sampler(lambda: ejected(proc)) as seen:
        time.sleep(0.5)
        for pod in failing:
            set_faults(pod, error_rate=1.0)
        time.sleep(seconds)
        for pod in failing:
            clear_faults(pod)
        cleared = time.monotonic()
        # The prober lets each one back once its (growing, capped) ejection is over.
        wait_until(lambda: not ejected(proc), within=5, what="every pod probed back")
        back = time.monotonic() - cleared
        before = {p.name: stats(p)["completed"] for p in failing}
        time.sleep(1.0)
        report = running.stop()

    most = max(len(s) for s in seen.values)
    ever = set().union(*seen.values)
    ejections = {
        labels["pod"]: value
        for labels, value in samples(proc, "zeta_ejections_total")
        if labels.get("model") == MODEL
    }
    assert most == 2, [sorted(s) for s in seen.values if s]  # half of four, and reached
    assert healthy.name not in ever
    assert {p.name for p in failing} == set(ejections), ejections
    assert all(stats(p)["completed"] > before[p.name] for p in failing)  # back in traffic
    assert report.badly_formed() == [], report.summary()  # the 500s reach clients readable
    print(
        f"\nat most {most} of 4 ejected at once; ejections {ejections}; "
        f"all back {back:.2f} s after the fault cleared; {report.summary()}"
    )


def test_a_pod_dying_before_its_answer_costs_the_client_nothing(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path, full_chaos: bool
) -> None:
    """One pod resets every connection, then another is killed with requests in flight:
    the failures come before any byte of an answer, so the retry on another pod hides
    them. Every client request succeeds."""
    pods = add_pods(testbed, namespace, 4)
    path = tmp_path / "routing.json"
    outlier = {"baseEjection": "0.5s", "maxEjection": "1s"}
    path.write_text(table(pods, balancing={"warmup": "0s", "outlier": outlier}))
    proc = sidecar("--table-file", str(path), extra=("--log-level", "WARNING"))
    resetting, victim = pods[0], pods[1]
    phase = 3.0 if full_chaos else 1.5

    load = LoadGenerator(proc.url, chat((50, 200), stream_share=0.0), clients=8, timeout=30)
    with BackgroundLoad(load) as running:
        time.sleep(0.5)
        set_faults(resetting, reset_connections=True)
        time.sleep(phase)
        clear_faults(resetting)
        wait_until(lambda: resetting.name not in ejected(proc), within=5, what="the pod back")
        # Killed while it generates answers that have not begun: they die before headers.
        wait_until(lambda: stats(victim)["running"] >= 2, within=5, what="requests on the pod")
        kill(victim)
        time.sleep(phase)
        report = running.stop()

    resets = stats(resetting)["failed"]
    retries = proc.metric("zeta_retries_total", model=MODEL)
    assert resets > 0
    assert report.failures() == [], report.summary()
    assert retries >= resets, (retries, resets)
    print(
        f"\n{resets} connections reset, a pod killed with requests running, "
        f"{retries:.0f} retries: {report.summary()}"
    )


def test_a_pod_dying_mid_stream_ends_its_streams_with_an_error_never_a_restart(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path, full_chaos: bool
) -> None:
    """A pod is killed while streams from it are half-way: each of those ends with an
    OpenAI error event and a clean end of the response; every stream's text is one
    generation (one id, the start of one run), never a retry spliced in."""
    pods = add_pods(testbed, namespace, 3)
    longest = 300
    reference = reference_text(pods[0], longest)
    path = tmp_path / "routing.json"
    path.write_text(table(pods, balancing={"warmup": "0s"}))
    proc = sidecar("--table-file", str(path), extra=("--log-level", "WARNING"))
    victims = pods[:2] if full_chaos else pods[:1]

    load = LoadGenerator(proc.url, chat((100, longest), stream_share=1.0), clients=8, timeout=30)
    with BackgroundLoad(load) as running:
        time.sleep(1.0)
        for victim in victims:
            kill(victim)
            time.sleep(1.0)
        time.sleep(0.5)
        report = running.stop()

    cut = [o for o in report.outcomes if o.kind is Kind.ERROR_EVENT]
    assert set(report.counts()) <= {"done", "error-event"}, report.summary()
    assert cut, report.summary()
    assert all(o.detail == "upstream_failed" and o.tokens > 0 for o in cut), cut[:3]
    for o in report.outcomes:
        assert len(o.ids) == 1, o  # one generation per stream
        assert reference.startswith(o.content), o  # its text from the start, once
    print(f"\n{len(victims)} pod(s) killed mid-stream: {report.summary()}")


def test_every_pod_failing_costs_at_most_the_retry_budget(
    shared: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path, full_chaos: bool
) -> None:
    """Every pod of the model resets every connection: up to three retries per request
    are allowed, but the budget (20% of requests, no floor here) holds the pods' load to
    1.2x the clients' requests. Counted at the pods."""
    pods = shared[:3]
    balancing = {
        "retry": {"attempts": 3, "budget": 0.2, "minPerSecond": 0},
        # No ejection: it would hide the budget (ejected pods get no tries at all).
        "outlier": {"maxEjectedFraction": 0},
    }
    path = tmp_path / "routing.json"
    path.write_text(table(pods, balancing=balancing))
    proc = sidecar("--table-file", str(path), extra=("--log-level", "WARNING"))
    for pod in pods:
        set_faults(pod, reset_connections=True)
    before = sum(stats(p)["requests_total"] for p in pods)
    requests = 2000 if full_chaos else 400

    load = LoadGenerator(proc.url, chat((1, 4), stream_share=0.3), clients=4, timeout=30)
    report = asyncio.run(load.run(threading.Event(), requests=requests))

    upstream = sum(stats(p)["requests_total"] for p in pods) - before
    ratio = upstream / len(report)
    denied = proc.metric("zeta_retries_denied_total", model=MODEL)
    assert len(report) == requests
    assert set(report.counts()) <= {"error-502", "error-503"}, report.summary()
    assert ratio <= 1.2, (upstream, len(report))
    assert denied > 0  # the budget, not the attempts, is what stopped the retries
    print(
        f"\nevery pod failing: {len(report)} client requests, {upstream} upstream tries "
        f"({ratio:.3f}x), {denied:.0f} retries denied; {report.summary()}"
    )


def test_zero_ready_pods_answer_503_at_once(
    shared: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    """A model with no endpoint, and a model whose every endpoint is draining: an
    OpenAI-style 503 in well under a second, through the virtual model too."""

    pods = shared[:2]
    path = tmp_path / "routing.json"
    path.write_text(table([], revision=1))
    proc = sidecar("--table-file", str(path), extra=("--log-level", "WARNING"))

    async def ask(model: str, stream: bool) -> Outcome:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
            "stream": stream,
        }
        async with aiohttp.ClientSession() as session:
            return await send(session, proc.url, Request(CHAT, body), within=5)

    def check() -> list[Outcome]:
        outcomes = [asyncio.run(ask(m, s)) for m in (MODEL, "auto") for s in (False, True)] * 5
        for o in outcomes:
            assert (o.kind, o.status) == (Kind.ERROR, 503), o
            assert o.seconds < 1.0, o
        return outcomes

    empty = check()
    path.write_text(table(pods, revision=2, draining=True))
    wait_until(lambda: proc.revision() == 2, within=5, what="the draining table")
    draining = check()
    slowest = max(o.seconds for o in empty + draining)
    print(f"\nzero ready pods: {len(empty + draining)} requests, all 503, slowest {slowest:.3f} s")


async def ask_once(url: str, model: str) -> Outcome:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    async with aiohttp.ClientSession() as session:
        return await send(session, url, Request(CHAT, body), within=5)


def test_zero_ready_pods_through_the_operator_answer_503(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> None:
    """The whole chain: the only pod turns not Ready, the operator publishes, the sidecar
    answers an OpenAI-style 503 in under a second."""
    pod = add_pods(testbed, namespace, 1)[0]
    install_crd(testbed)
    router = yaml.safe_load(SAMPLE.read_text())
    router["spec"]["prometheus"]["url"] = testbed.prometheus_url
    router["spec"]["policy"]["interval"] = "1s"
    testbed.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(router))
    argv = [sys.executable, "-m", "zeta_operator", "--standalone", "--namespace", namespace]
    with (tmp_path / "operator.log").open("wb") as log:
        operator = subprocess.Popen(
            argv, env={**os.environ, **testbed.env()}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: testbed.routing_table(namespace, "chat-routing") is not None,
            within=60,
            what="the operator's table",
        )
        proc = sidecar(
            f"--configmap={namespace}/chat-routing", "--kubeconfig", str(testbed.kubeconfig)
        )
        assert asyncio.run(ask_once(proc.url, "sim-4b")).kind is Kind.OK
        testbed.set_pod_ready(pod, False)

        def refused() -> bool:
            return asyncio.run(ask_once(proc.url, "sim-4b")).status == 503

        wait_until(refused, within=5, what="a 503 once no pod is ready")
        answer = asyncio.run(ask_once(proc.url, "sim-4b"))
        assert (answer.kind, answer.status) == (Kind.ERROR, 503), answer
        assert answer.seconds < 1.0, answer
    finally:
        # While the operator runs, so it ends the router's loop itself (no finalizer to wait on).
        testbed.kubectl("delete", "zr", "chat", "-n", namespace, "--timeout=30s")
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()


class Balancer:
    """What an endpoints controller and a Service do for the gateway's replicas: poll
    every replica's ``/readyz`` every 100 ms, send traffic round-robin to the ready ones."""

    def __init__(self) -> None:
        self.replicas: list[SidecarProcess] = []
        self.ready: tuple[str, ...] = ()
        self._turn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready = []
            for replica in list(self.replicas):
                try:
                    if get(f"{replica.admin}/readyz", timeout=0.5)[0] == 200:
                        ready.append(replica.url)
                except OSError:
                    pass
            self.ready = tuple(ready)
            self._stop.wait(0.1)

    def target(self) -> str:
        ready = self.ready
        if not ready:
            return "http://127.0.0.1:9"  # no ready replica: the request fails, and counts
        self._turn += 1
        return ready[self._turn % len(ready)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def balancer() -> Iterator[Balancer]:
    b = Balancer()
    yield b
    b.close()


def test_rolling_restart_of_the_gateway_under_load_loses_nothing(
    shared: list[PodInfo],
    sidecar: SidecarFactory,
    balancer: Balancer,
    tmp_path: Path,
    full_chaos: bool,
) -> None:
    """Two replicas behind a readiness-following balancer; one at a time, a new replica
    starts, becomes ready, and the oldest gets SIGTERM (``--drain-delay``): no request
    fails, streams included."""
    path = tmp_path / "routing.json"
    path.write_text(table(shared[:2]))
    drain = ("--drain-delay", "1", "--log-level", "WARNING")
    balancer.replicas.extend(sidecar("--table-file", str(path), extra=drain) for _ in range(2))
    wait_until(lambda: len(balancer.ready) == 2, within=5, what="two ready replicas")
    restarts = 12 if full_chaos else 4

    load = LoadGenerator(balancer.target, chat((5, 150), stream_share=0.5), clients=6, timeout=30)
    exits = []
    drains: list[float] = []
    with BackgroundLoad(load) as running:
        time.sleep(0.5)
        for _ in range(restarts):
            new = sidecar("--table-file", str(path), extra=drain)
            balancer.replicas.append(new)
            wait_until(lambda: new.url in balancer.ready, within=5, what="the new replica")  # noqa: B023
            old = balancer.replicas.pop(0)
            signalled = time.monotonic()
            old.process.send_signal(signal.SIGTERM)
            exits.append(old.process.wait(timeout=15))
            drains.append(time.monotonic() - signalled)
            time.sleep(0.3)
        report = running.stop()

    served_by = {o.target for o in report.outcomes}
    assert exits == [0] * restarts
    assert report.failures() == [], report.summary()
    assert len(served_by) == restarts + 2  # every replica took traffic
    print(
        f"\n{restarts} rolling restarts: {report.summary()}; "
        f"SIGTERM to exit {', '.join(f'{d:.2f}' for d in drains)} s"
    )
