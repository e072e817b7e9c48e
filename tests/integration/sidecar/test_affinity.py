"""Affinity through real sidecar processes: two gateway replicas that never talk to each
other send every turn of a conversation, and every request of a session, to one pod."""

import json
import urllib.request
from pathlib import Path

from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.testbed import PodInfo, Testbed

from .conftest import SidecarFactory, SidecarProcess

SYSTEM = "You are a patient tutor. Answer step by step, and check your arithmetic. " * 6


def _post(url: str, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 200
        resp.read()


def _served(replicas: list[SidecarProcess], pods: list[PodInfo]) -> list[float]:
    return [
        sum(
            r.metric(
                "zeta_requests_total", model="chat", chosen_model="chat", pod=p.name, code="200"
            )
            for r in replicas
        )
        for p in pods
    ]


def test_two_replicas_keep_each_conversation_and_session_on_one_pod(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> None:
    four_pods = [testbed.add_pod("7b", namespace=namespace) for _ in range(4)]
    path = tmp_path / "routing.json"
    path.write_text(
        table_json(
            {"chat": [endpoint(p.address, pod=p.name) for p in four_pods]},
            served={"chat": f"sim-{four_pods[0].size}"},
            balancing={"warmup": "0s", "affinity": {"prefix": True, "session": True}},
            traffic={"gatewayReplicas": 2},
        )
    )
    replicas = [sidecar("--table-file", str(path)) for _ in range(2)]
    homes = set()
    for c in range(8):
        messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
        before = _served(replicas, four_pods)
        for turn in range(4):
            messages.append({"role": "user", "content": f"Conversation {c}, question {turn}?"})
            # Turns alternate between the replicas: neither has seen the whole conversation.
            _post(replicas[turn % 2].url, {"model": "chat", "messages": messages, "max_tokens": 2})
            messages.append({"role": "assistant", "content": f"Answer {turn}."})
        after = _served(replicas, four_pods)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if b > a]
        assert len(moved) == 1, (c, before, after)
        homes.add(moved[0])
    assert len(homes) > 1  # conversations are spread, not piled on one pod

    before = _served(replicas, four_pods)
    for n in range(6):
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"q{n}"}],
            "max_tokens": 2,
        }
        _post(replicas[n % 2].url, body, {"x-session-id": "session-42"})
    after = _served(replicas, four_pods)
    assert sum(b > a for a, b in zip(before, after, strict=True)) == 1

    decisions = sum(
        r.metric("zeta_affinity_decisions_total", model="chat", kind=kind, outcome=outcome)
        for r in replicas
        for kind in ("prefix", "session")
        for outcome in ("hit", "placed")
    )
    assert decisions == 8 * 4 + 6
    assert all(r.metric("zeta_affinity_index_entries", kind="prefix") > 0 for r in replicas)
    assert all(r.metric("zeta_affinity_index_entries", kind="session") == 1 for r in replicas)
