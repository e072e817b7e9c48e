"""Traffic classes on real simulated pods (issue 9): a saturated model sheds only the
sheddable class, the others wait their turn and are served; a tenant over its rate
limit gets OpenAI's 429 while the others go on."""

import asyncio
import hashlib
import json
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.testbed import PodInfo, Testbed

from .conftest import SidecarFactory

pytestmark = pytest.mark.timeout(120)

CAPACITY = 2
"""Tiny pods: 3 in flight each (2 x 1.25) saturates them, so a few clients suffice."""


@pytest.fixture
def three_pods(testbed: Testbed, namespace: str) -> list[PodInfo]:
    return [testbed.add_pod("7b", namespace=namespace) for _ in range(3)]


def table(pods: list[PodInfo], **kw: object) -> str:
    # Reported load present (idle): the saturation rule counts this replica's requests
    # on top of it, as it does between two operator reports.
    load = {"running": 0, "waiting": 0}
    eps = [endpoint(p.address, pod=p.name, capacity=CAPACITY, load=load) for p in pods]
    return table_json({"chat": eps}, served={"chat": "sim-7b"}, **kw)  # type: ignore[arg-type]


async def chat(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], tokens: int = 40
) -> int:
    body = {"model": "chat", "stream": True, "max_tokens": tokens,
            "messages": [{"role": "user", "content": "Tell me a story."}]}  # fmt: skip
    async with http.post(url, json=body, headers=headers) as resp:
        await resp.read()  # the whole stream: a queued request is served to its end
        return resp.status


async def test_only_the_sheddable_class_is_shed_and_the_rest_waits_its_turn(
    three_pods: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    path = tmp_path / "routing.json"
    path.write_text(table(three_pods))
    proc = sidecar("--table-file", str(path))
    url = f"{proc.url}/v1/chat/completions"
    mix = ["critical"] * 8 + ["standard"] * 16 + ["sheddable"] * 16  # 40 at once, 9 places
    async with aiohttp.ClientSession() as http:
        statuses = await asyncio.gather(*(chat(http, url, {"x-zeta-priority": cls}) for cls in mix))
    outcome = Counter(zip(mix, statuses, strict=True))
    assert outcome[("critical", 200)] == 8, outcome
    assert outcome[("standard", 200)] == 16, outcome
    assert outcome[("sheddable", 429)] > 0, outcome  # absorbed the overload
    assert outcome[("sheddable", 200)] + outcome[("sheddable", 429)] == 16, outcome
    queued = proc.metric(
        "zeta_admissions_total",
        model="chat",
        outcome="queued",
        tenant="other",
        **{"class": "standard"},
    )
    assert queued > 0  # some standard requests waited instead of being refused
    shed = proc.metric(
        "zeta_admissions_total",
        model="chat",
        outcome="shed",
        tenant="other",
        **{"class": "sheddable"},
    )
    assert shed == outcome[("sheddable", 429)]


async def test_a_tenant_over_its_limit_is_limited_and_the_others_are_not(
    three_pods: list[PodInfo], sidecar: SidecarFactory, tmp_path: Path
) -> None:
    key = "sk-greedy"
    traffic = {
        "tenants": [
            {"name": "greedy", "requestsPerSecond": 2, "burst": 2,
             "apiKeySha256": [hashlib.sha256(key.encode()).hexdigest()]},
            {"name": "polite", "requestsPerSecond": 100},
        ]
    }  # fmt: skip
    path = tmp_path / "routing.json"
    path.write_text(table(three_pods, traffic=traffic))
    proc = sidecar("--table-file", str(path))
    url = f"{proc.url}/v1/chat/completions"
    body = {"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    greedy = {"Authorization": f"Bearer {key}"}
    polite = {"x-zeta-tenant": "polite"}
    async with aiohttp.ClientSession() as http:
        answers = []
        for _ in range(6):  # back to back: far over 2 per second after a burst of 2
            for headers in (greedy, polite):
                async with http.post(url, json=body, headers=headers) as resp:
                    answers.append(
                        (headers is greedy, resp.status, dict(resp.headers), await resp.read())
                    )
    greedy_statuses = [status for is_greedy, status, _, _ in answers if is_greedy]
    polite_statuses = [status for is_greedy, status, _, _ in answers if not is_greedy]
    assert polite_statuses == [200] * 6
    assert greedy_statuses[:2] == [200, 200]
    assert 429 in greedy_statuses
    _, _, headers, raw = next(a for a in answers if a[0] and a[1] == 429)
    error = json.loads(raw)["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert int(headers["Retry-After"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "120"
    assert "x-ratelimit-reset-requests" in headers
    limited = proc.metric(
        "zeta_admissions_total",
        model="chat",
        outcome="limited",
        tenant="greedy",
        **{"class": "standard"},
    )
    assert limited == greedy_statuses.count(429)
