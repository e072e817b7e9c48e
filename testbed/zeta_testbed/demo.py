"""``make demo``: the whole product on one machine, driven by real clients.

1. The testbed: a real control plane, Prometheus and simulated model pods
   (4B x2, 7B x2, 14B x1).
2. ``kubectl apply`` of the CRD and a ``ZetaRouter`` (``manifests/samples``).
3. ``zeta-operator`` watches it, reads the pods' load from Prometheus and publishes
   the routing table; ``zeta-sidecar`` watches that ConfigMap and serves the
   OpenAI API on 127.0.0.1.
4. The ``openai`` SDK sends traffic through the sidecar: the ``auto`` virtual model
   sends easy prompts to the small model and hard ones to the big one; then one 7B
   pod is slowed down under load, and its weight in the table falls while the
   sidecar's own in-flight counts already steer new requests away from it.

Everything keeps running afterwards so you can look around; ``make demo-down`` stops it.
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from openai import OpenAI

from zeta_api import TABLE_KEY
from zeta_testbed import processes, zetarouter
from zeta_testbed.harness import free_ports
from zeta_testbed.sidecar import sidecar_argv
from zeta_testbed.testbed import Testbed, TestbedError

STATE_DIR = Path(".testbed/demo")
PODS = {"4b": 2, "7b": 2, "14b": 1}
INTERVAL = "2s"
"""Short, so the demo shows weights move within seconds (the sample says 5s)."""

TIME_SCALE = 20.0
"""The simulated models run 20x faster than real time, so a 2,048-token answer of the
14B model takes seconds, not a minute."""

JSONPATH_KEY = TABLE_KEY.replace(".", "\\.")
"""The ConfigMap's key as a kubectl jsonpath spells it (dots escaped)."""

EASY = "Say hello."
EXAMPLES = (
    ("easy", EASY, 16),
    ("medium", "Write a Python function that solves a quadratic equation.", 512),
    (
        "hard",
        "Prove that there are infinitely many primes, then write a sieve in Python and "
        "analyse its complexity step by step.\n```python\ndef primes(n): ...\n```",
        2048,
    ),
)
"""(label, prompt, max_tokens): code/math/reasoning cues and a long answer make it harder
(see zeta_sidecar.complexity)."""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise TestbedError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start(testbed: Testbed) -> tuple[int, int]:
    """CRD, ZetaRouter, operator and sidecar; returns the sidecar's (port, admin port)."""
    namespace = testbed.namespace
    zetarouter.install_crd(testbed)
    zetarouter.apply(testbed, namespace, zetarouter.sample(testbed, {"interval": INTERVAL}))
    _say(f"  kubectl apply: CRD {zetarouter.CRD_NAME} and ZetaRouter {namespace}/chat")

    testbed.run("zeta-operator", [_bin("zeta-operator"), "--namespace", namespace, "--standalone"])
    table = _wait(
        "the routing table", lambda: testbed.routing_table(namespace, "chat-routing"), timeout=90
    )
    pods = sum(len(m["endpoints"]) for m in table["models"].values())
    revision = table["revision"]
    _say(f"  zeta-operator published ConfigMap chat-routing: {pods} pods, revision {revision}")

    port, admin = free_ports(2)
    source = ("--configmap", f"{namespace}/chat-routing", "--kubeconfig", str(testbed.kubeconfig))
    testbed.run("zeta-sidecar", sidecar_argv(source, port=port, admin_port=admin))
    _wait(
        "the sidecar to be ready",
        lambda: processes.http_ok(f"http://127.0.0.1:{admin}/readyz"),
        timeout=60,
    )
    _say(f"  zeta-sidecar serves the OpenAI API on http://127.0.0.1:{port}/v1")
    return port, admin


def _tiers(client: OpenAI) -> None:
    _say('\nThe "auto" virtual model picks the tier by how hard the request looks:')
    for label, prompt, max_tokens in EXAMPLES:
        with ThreadPoolExecutor(max_workers=4) as pool:
            served = collections.Counter(
                pool.map(_ask, [client] * 4, [prompt] * 4, [max_tokens] * 4)
            )
        _say(f"  {label:6} -> " + ", ".join(f"{m} x{n}" for m, n in served.items()))


def _ask(client: OpenAI, prompt: str, max_tokens: int) -> str:
    reply = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens
    )
    return reply.model


def _slow_pod_under_load(testbed: Testbed, client: OpenAI, admin: int) -> None:
    seven_b = [p for p in testbed.pods(testbed.namespace) if p.size == "7b"]
    slow = seven_b[0]
    _say(f"\nSteady load on sim-7b; after 4 s, pod {slow.name} becomes 4x slower:")
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            client.chat.completions.create(
                model="sim-7b", messages=[{"role": "user", "content": EASY}], max_tokens=16
            )

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    faulted = False
    try:
        while time.monotonic() - started < 24:
            if not faulted and time.monotonic() - started > 4:
                _post(f"{slow.url}/admin/faults", {"slowdown": 4})
                faulted = True
            table = testbed.routing_table(testbed.namespace, "chat-routing") or {"models": {}}
            endpoints = table["models"].get("sim-7b", {}).get("endpoints", [])
            weights = {e["pod"]: e["weight"] for e in endpoints}
            shown = "  ".join(
                f"{p.name}{'*' if p is slow and faulted else ' '} {weights.get(p.name, 0):.2f}"
                for p in seven_b
            )
            elapsed = time.monotonic() - started
            _say(f"  t={elapsed:4.0f}s  rev {table.get('revision', '?'):>3}  {shown}")
            time.sleep(2)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        request = urllib.request.Request(f"{slow.url}/admin/faults", method="DELETE")
        urllib.request.urlopen(request, timeout=5).close()
    _say("  (* = slowed) The weight is the operator's slow signal; the sidecar's per-pod")
    _say("  request counts below show its fast one, in-flight requests per capacity:")
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    counts: collections.Counter[str] = collections.Counter()
    for line in metrics.splitlines():
        if line.startswith("zeta_requests_total{") and 'chosen_model="sim-7b"' in line:
            pod = line.split('pod="', 1)[1].split('"', 1)[0]
            counts[pod] += int(float(line.rsplit(" ", 1)[1]))
    for pod in seven_b:
        _say(f"    {pod.name}{'*' if pod is slow else ' '} {counts.get(pod.name, 0):5} requests")


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=5).close()


def main() -> int:
    testbed = Testbed(STATE_DIR)
    if testbed.exists():
        _say(f"Stopping the previous demo in {STATE_DIR} ...")
        testbed.down()
    _say("Starting the testbed: etcd, kube-apiserver, kube-controller-manager, Prometheus,")
    _say("and simulated model pods 4b x2, 7b x2, 14b x1 ...")
    started = time.monotonic()
    testbed.up(PODS, time_scale=TIME_SCALE)
    _say(f"  up in {time.monotonic() - started:.1f} s")
    port, admin = _start(testbed)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed")
    _tiers(client)
    _slow_pod_under_load(testbed, client, admin)
    _say(
        f"""
Everything still runs. Where to look:
  source {testbed.env_file}
  kubectl get zr -n $ZETA_NAMESPACE                 # ready, models, pods, revision, fallback
  kubectl get cm chat-routing -n $ZETA_NAMESPACE -o jsonpath='{{.data.{JSONPATH_KEY}}}'
  curl -s http://127.0.0.1:{admin}/table            # the table the sidecar uses
  curl -s http://127.0.0.1:{admin}/metrics | grep ^zeta_
  curl -s http://127.0.0.1:{port}/v1/models
Stop it all with `make demo-down`."""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
