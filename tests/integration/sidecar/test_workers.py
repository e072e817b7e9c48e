"""``zeta-sidecar --workers 2`` (issue 11's acceptance line): both workers serve one
port, the admin port counts their requests as one sidecar, a table reload reaches both,
and SIGTERM to the parent ends every process cleanly."""

import asyncio
import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from zeta_sidecar.merged_metrics import sample_sum
from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.testbed import PodInfo, Testbed

from .conftest import SidecarFactory, SidecarProcess, get, kubelet_dir, swap_kubelet_dir, wait_until

CONNECTIONS = 48
"""Concurrent client connections: the kernel hashes each to a worker, so all of them on
one worker has a chance of 2**-47."""

BATCH = 192


def _table(pod: PodInfo, revision: int) -> str:
    return table_json(
        {"chat": [endpoint(pod.address, pod=pod.name)]},
        served={"chat": "sim-7b"},
        revision=revision,
    )


async def _send(url: str, count: int) -> Counter[int]:
    """``count`` chat completions over ``CONNECTIONS`` connections at once; the statuses."""
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=30)
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
                await resp.read()
                statuses[resp.status] += 1

        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


def _workers(proc: SidecarProcess) -> list[dict[str, Any]]:
    status, body = get(f"{proc.admin}/workers")
    assert status == 200, body
    workers: list[dict[str, Any]] = json.loads(body)["workers"]
    return workers


def _requests(proc: SidecarProcess, pod: PodInfo) -> float:
    status, body = get(f"{proc.admin}/metrics")
    assert status == 200, body
    return sample_sum(body.decode(), "zeta_requests_total", pod=pod.name, code="200")


@pytest.mark.timeout(90)
def test_two_workers_serve_count_reload_and_drain_together(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> None:
    old, new = (testbed.add_pod("7b", namespace=namespace) for _ in range(2))
    root = tmp_path / "volume"
    path = kubelet_dir(root, _table(old, revision=1))
    proc = sidecar("--table-file", str(path), extra=("--workers", "2"))
    pids = [w["pid"] for w in _workers(proc)]
    assert len(set(pids)) == 2
    assert proc.process.pid not in pids  # the parent serves no traffic

    assert asyncio.run(_send(proc.url, BATCH)) == {200: BATCH}
    first = _workers(proc)
    assert all(w["requests"] > 0 for w in first), first  # both workers served
    assert sum(w["requests"] for w in first) == BATCH
    assert _requests(proc, old) == BATCH  # the merged counter: the group as one sidecar

    swap_kubelet_dir(root, _table(new, revision=2))
    wait_until(
        lambda: [w["revision"] for w in _workers(proc)] == [2, 2],
        within=5,
        what="both workers on revision 2",
    )
    assert asyncio.run(_send(proc.url, BATCH)) == {200: BATCH}
    # The old pod's series left with it (as in one process): what is counted now is
    # the second batch, on the new pod, through both workers.
    second = _workers(proc)
    assert all(w["requests"] > 0 for w in second), second
    assert sum(w["requests"] for w in second) == BATCH
    assert _requests(proc, new) == BATCH
    assert _requests(proc, old) == 0
    metrics = get(f"{proc.admin}/metrics")[1].decode()
    reloads = sample_sum(metrics, "zeta_table_reloads_total", result="applied")
    assert reloads == 4  # two tables, each applied by both workers

    proc.process.send_signal(signal.SIGTERM)
    wait_until(lambda: get(f"{proc.admin}/readyz")[0] != 200, within=1, what="readiness off")
    assert proc.process.wait(timeout=15) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped by the parent: gone
    assert proc.log.read_text().count("drained, exiting") == 2


@pytest.mark.timeout(60)
def test_a_worker_that_dies_takes_the_group_down(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> None:
    pod = testbed.add_pod("7b", namespace=namespace)
    path = tmp_path / "routing.json"
    path.write_text(_table(pod, revision=1))
    proc = sidecar("--table-file", str(path), extra=("--workers", "2", "--drain-delay", "0.5"))
    victim, survivor = (w["pid"] for w in _workers(proc))
    os.kill(victim, signal.SIGKILL)
    # Not ready at once (the survivor still drains behind it), then the parent exits 1.
    wait_until(lambda: get(f"{proc.admin}/readyz")[0] == 503, within=1, what="readiness off")
    assert b"exited with -9" in get(f"{proc.admin}/readyz")[1]
    assert proc.process.wait(timeout=15) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(survivor, 0)
    assert "drained, exiting" in proc.log.read_text()
