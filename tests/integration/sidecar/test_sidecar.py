"""The sidecar process against the testbed's simulated pods, through real clients."""

import asyncio
import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import openai
import pytest
from kubernetes import client as k8s

from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed import processes
from zeta_testbed.sim.presets import PRESETS
from zeta_testbed.sim.server import SimConfig, start
from zeta_testbed.testbed import PodInfo, Testbed

from .conftest import SidecarFactory, SidecarProcess, get, kubelet_dir, swap_kubelet_dir, wait_until

MESSAGES = [{"role": "user", "content": "Say hello."}]


def table(pods: list[PodInfo], *, revision: int = 1, **kw: object) -> str:
    eps = [endpoint(p.address, pod=p.name) for p in pods]
    return table_json(
        {"chat": eps},
        served={"chat": f"sim-{pods[0].size}"},
        virtual={"auto": {"strategy": "complexity", "candidates": ["chat"]}},
        revision=revision,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def two_pods(testbed: Testbed, namespace: str) -> list[PodInfo]:
    return [testbed.add_pod("7b", namespace=namespace) for _ in range(2)]


def test_openai_sdk_sync_async_streaming_and_not(
    two_pods: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    path = tmp_path / "routing.json"
    path.write_text(table(two_pods))
    proc = sidecar("--table-file", str(path))
    sync = openai.OpenAI(base_url=f"{proc.url}/v1", api_key="unused", max_retries=0)
    assert sorted(m.id for m in sync.models.list()) == ["auto", "chat"]
    reply = sync.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    assert reply.model == "sim-7b"  # rewritten to the served name
    chunks = list(
        sync.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=4, stream=True)  # type: ignore[arg-type]
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()
    text = sync.completions.create(model="chat", prompt="Once", max_tokens=3)
    assert text.choices[0].text

    async def async_calls() -> None:
        client = openai.AsyncOpenAI(base_url=f"{proc.url}/v1", api_key="unused", max_retries=0)
        try:
            plain = await client.chat.completions.create(
                model="chat", messages=MESSAGES, max_tokens=3
            )  # type: ignore[arg-type]
            assert plain.usage is not None
            assert plain.usage.completion_tokens == 3
            stream = await client.chat.completions.create(
                model="chat",
                messages=MESSAGES,
                max_tokens=3,
                stream=True,  # type: ignore[arg-type]
            )
            pieces = [c async for c in stream]
            assert pieces[-1].choices[0].finish_reason == "length"
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
        finally:
            await client.close()

    asyncio.run(async_calls())


def _first_chunk(url: str, model: str, max_tokens: int) -> tuple[float, float]:
    """Seconds to the first content chunk and to the end of a stream."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    start = time.monotonic()
    first = None
    for chunk in client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        max_tokens=max_tokens,
        stream=True,  # type: ignore[arg-type]
    ):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.monotonic() - start
    total = time.monotonic() - start
    assert first is not None
    return first, total


def test_first_chunk_arrives_when_the_pod_sends_it(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> None:
    pod = testbed.add_pod("14b", namespace=namespace)
    path = tmp_path / "routing.json"
    path.write_text(table([pod]))
    proc = sidecar("--table-file", str(path))
    _first_chunk(proc.url, "chat", 2)  # warm the connection pool
    direct = [_first_chunk(pod.url, "sim-14b", 30) for _ in range(3)]
    proxied = [_first_chunk(proc.url, "chat", 30) for _ in range(3)]
    direct_ttft = sorted(d[0] for d in direct)[1]
    proxied_ttft, proxied_total = sorted(proxied)[1]
    # 30 tokens of a 14B take ~1 s; a buffered stream would show its first chunk at the end.
    assert proxied_ttft < proxied_total / 4
    assert proxied_ttft < direct_ttft + 0.1, (direct, proxied)


def test_kubelet_symlink_swap_is_applied_within_a_second(
    two_pods: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    root = tmp_path / "volume"
    path = kubelet_dir(root, table(two_pods[:1], revision=1))
    proc = sidecar("--table-file", str(path))
    assert proc.revision() == 1
    swap_kubelet_dir(root, table(two_pods, revision=2))
    took = wait_until(lambda: proc.revision() == 2, within=1.0, what="the swap")
    assert took < 1.0
    _, body = get(f"{proc.admin}/table")
    assert len(json.loads(body)["table"]["models"]["chat"]["endpoints"]) == 2


def test_configmap_edit_through_the_api_is_applied_within_a_second(
    testbed: Testbed,
    two_pods: list[PodInfo],
    namespace: str,
    core: k8s.CoreV1Api,
    sidecar: SidecarFactory,
) -> None:
    body = {
        "metadata": {"name": "chat-routing"},
        "data": {"routing.json": table(two_pods, revision=1)},
    }
    core.create_namespaced_config_map(namespace, body)
    proc = sidecar(f"--configmap={namespace}/chat-routing", "--kubeconfig", str(testbed.kubeconfig))
    assert proc.revision() == 1
    for revision in (2, 3):
        patch = {"data": {"routing.json": table(two_pods, revision=revision)}}
        start = time.monotonic()
        core.patch_namespaced_config_map("chat-routing", namespace, patch)
        wait_until(lambda: proc.revision() == revision, within=1.0, what="the edit")  # noqa: B023
        assert time.monotonic() - start < 1.0
    # A bad edit is refused; the last good table keeps serving.
    core.patch_namespaced_config_map("chat-routing", namespace, {"data": {"routing.json": "{"}})
    wait_until(
        lambda: proc.metric("zeta_table_reloads_total", result="refused") == 1,
        within=2,
        what="refusal",
    )
    assert proc.revision() == 3


async def _load(
    url: str,
    stop: threading.Event | asyncio.Event,
    results: Counter[object],
    *,
    stream: bool = False,
    max_tokens: int = 2,
) -> None:
    """One client sending requests back to back until ``stop``; outcomes counted."""
    body = {"model": "chat", "messages": MESSAGES, "max_tokens": max_tokens, "stream": stream}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while not stop.is_set():
            async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
                data = await resp.read()
            if resp.status != 200:
                results[resp.status] += 1
            elif stream:
                events = data.strip().split(b"\n\n")
                if any(e.startswith(b'data: {"error"') for e in events):
                    results["error-event"] += 1  # the OpenAI SDK raises an APIError on it
                elif events[-1] == b"data: [DONE]":
                    results["done"] += 1
                else:
                    results["silently-cut"] += 1
            else:
                results[200] += 1


def test_a_hundred_reloads_under_steady_load_lose_nothing(
    two_pods: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    root = tmp_path / "volume"
    path = kubelet_dir(root, table(two_pods, revision=0))
    proc = sidecar("--table-file", str(path))
    results: Counter[object] = Counter()
    stop = threading.Event()

    async def run() -> None:
        clients = [
            asyncio.create_task(_load(proc.url, stop, results, stream=i % 2 == 1)) for i in range(6)
        ]
        for revision in range(1, 101):
            # Pods leave and come back: in-flight requests finish where they started.
            pods = [two_pods[revision % 2]] if revision % 3 else two_pods
            swap_kubelet_dir(root, table(pods, revision=revision))
            # The clients keep running on the loop while this waits for the reload.
            await asyncio.to_thread(
                wait_until,
                lambda: proc.revision() == revision,  # noqa: B023
                within=2,
                what="reload",
            )
        stop.set()
        await asyncio.gather(*clients)

    asyncio.run(run())
    assert proc.revision() == 100
    assert proc.metric("zeta_table_reloads_total", result="applied") == 101
    assert set(results) <= {200, "done"}, results
    assert results[200] > 50
    assert results["done"] > 50


def test_each_bad_table_is_refused_while_the_last_good_one_serves(
    two_pods: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    root = tmp_path / "volume"
    good = table(two_pods, revision=5)
    path = kubelet_dir(root, good)
    proc = sidecar("--table-file", str(path), extra=("--log-level", "WARNING"))
    doc = json.loads(good)

    def variant(change: str) -> str:
        d = json.loads(good)
        eps = d["models"]["chat"]["endpoints"]
        if change == "negative":
            eps[0]["weight"] = -0.5
        elif change == "zero":
            eps[0]["weight"] = eps[1]["weight"] = 0
        elif change == "duplicate":
            eps[1]["address"] = eps[0]["address"]
        elif change == "version":
            d["apiVersion"] = "zeta.dev/v2"
        d["revision"] = 6
        return json.dumps(d)

    bad = [
        "{not json",
        variant("version"),
        variant("negative"),
        good.replace('"weight": 1.0', '"weight": NaN', 1).replace('"revision": 5', '"revision": 6'),
        variant("zero"),
        variant("duplicate"),
        json.dumps({**doc, "revision": 6, "router": "x/y", "pad": "x" * 1_100_000}),
    ]
    client = openai.OpenAI(base_url=f"{proc.url}/v1", api_key="unused", max_retries=0)
    for i, text in enumerate(bad, start=1):
        swap_kubelet_dir(root, text)
        wait_until(
            lambda: proc.metric("zeta_table_reloads_total", result="refused") == i,  # noqa: B023
            within=2,
            what=f"refusal {i}",
        )
        reply = client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=2)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
        assert proc.revision() == 5
    assert "refused" in proc.log.read_text()


def test_killing_a_pod_under_load(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> None:
    pods = [testbed.add_pod("4b", namespace=namespace) for _ in range(3)]
    path = tmp_path / "routing.json"
    balancing = {"outlier": {"consecutiveFailures": 2, "baseEjection": "1s"}}
    path.write_text(table(pods, balancing=balancing))
    proc = sidecar("--table-file", str(path))
    victim = pods[0]
    plain: Counter[object] = Counter()
    streams: Counter[object] = Counter()
    stop = threading.Event()

    async def run() -> None:
        clients = [asyncio.create_task(_load(proc.url, stop, plain)) for _ in range(4)]
        clients += [
            asyncio.create_task(_load(proc.url, stop, streams, stream=True, max_tokens=150))
            for _ in range(6)
        ]
        await asyncio.sleep(1.0)
        # Kill it while it streams (seen once: no stream on it at the 1 s mark).
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(f"http://{victim.address}/admin/stats") as resp:
                    if (await resp.json())["running"] >= 2:
                        break
                await asyncio.sleep(0.1)
        await asyncio.to_thread(processes.stop, victim.process)  # the pod's server dies
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*clients)

    asyncio.run(run())
    assert set(plain) == {200}, plain  # every non-streaming request succeeded (retried)
    assert set(streams) <= {"done", "error-event"}, streams  # no stream ended silently cut
    assert streams["error-event"] >= 1, streams  # streams on the victim were cut mid-way
    assert proc.metric("zeta_retries_total", model="chat") >= 1
    assert proc.metric("zeta_pod_ejected", model="chat", pod=victim.name) == 1

    # The pod's server comes back on its address: probed, then back in traffic.
    async def revive() -> None:
        sim = await start(
            SimConfig(preset=PRESETS["4b"], time_scale=10.0), host=victim.ip, port=8000
        )
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while proc.metric("zeta_pod_ejected", model="chat", pod=victim.name) != 0:
                assert loop.time() < deadline, "never probed back"
                await asyncio.sleep(0.05)
            async with aiohttp.ClientSession() as session:
                for _ in range(30):
                    body = {"model": "chat", "messages": MESSAGES, "max_tokens": 1}
                    async with session.post(f"{proc.url}/v1/chat/completions", json=body) as resp:
                        assert resp.status == 200
            assert sim.state.metrics.requests.total >= 1
        finally:
            await sim.aclose()

    asyncio.run(revive())


def test_sigterm_drains_in_flight_requests(
    two_pods: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    path = tmp_path / "routing.json"
    path.write_text(table(two_pods))
    proc: SidecarProcess = sidecar("--table-file", str(path), extra=("--drain-delay", "0.5"))
    client = openai.OpenAI(base_url=f"{proc.url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="chat", messages=MESSAGES, max_tokens=40, stream=True
    )  # type: ignore[arg-type]
    first = next(iter(stream))
    proc.process.send_signal(signal.SIGTERM)
    wait_until(lambda: get(f"{proc.admin}/readyz")[0] == 503, within=0.5, what="readiness off")
    rest = list(stream)
    assert first.choices
    assert rest[-1].choices[0].finish_reason == "length"  # finished, not cut
    assert proc.process.wait(timeout=10) == 0
    assert "drained" in proc.log.read_text()
