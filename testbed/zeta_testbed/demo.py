"""``make demo``: what exists today, end to end on one machine.

Brings up the testbed (a real control plane, Prometheus and simulated 4B/7B/14B model
pods), sends a little OpenAI-style traffic straight to the pods, shows what
Prometheus saw, and prints where to look next. The operator and the sidecar join
the demo when their issues land; until then traffic goes to the pods directly.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zeta_testbed import processes
from zeta_testbed.testbed import PodInfo, Testbed

STATE_DIR = Path(".testbed/demo")
PODS = {"4b": 2, "7b": 2, "14b": 1}
REQUESTS_PER_POD = 8


def _chat(pod: PodInfo) -> float:
    body = {
        "model": f"sim-{pod.size}",
        "messages": [{"role": "user", "content": "Explain continuous batching briefly."}],
        "max_tokens": 32,
    }
    request = urllib.request.Request(
        f"{pod.url}/v1/chat/completions",
        json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as response:
        json.load(response)
    return time.monotonic() - started


def main() -> int:
    testbed = Testbed(STATE_DIR)
    running = testbed.exists() and all(
        processes.is_running(record) for record in testbed.state().processes.values()
    )
    if running:
        print(f"Reusing the demo testbed in {STATE_DIR}")
    else:
        print("Starting the testbed: etcd, kube-apiserver, kube-controller-manager, Prometheus,")
        print("and simulated model pods 4b x2, 7b x2, 14b x1 ...", flush=True)
        started = time.monotonic()
        testbed.up(PODS)
        print(f"Up in {time.monotonic() - started:.1f} s.")

    pods = testbed.pods(testbed.namespace)
    print(f"\nSending {REQUESTS_PER_POD} chat completions to each of {len(pods)} pods ...")
    with ThreadPoolExecutor(max_workers=16) as pool:
        latencies = list(pool.map(_chat, [pod for pod in pods for _ in range(REQUESTS_PER_POD)]))
    for index, pod in enumerate(pods):
        mine = sorted(latencies[index * REQUESTS_PER_POD : (index + 1) * REQUESTS_PER_POD])
        print(f"  {pod.name:20} {pod.address:16} median {mine[len(mine) // 2] * 1000:6.0f} ms")

    time.sleep(2)  # one scrape interval and a little more
    print("\nPrometheus sees (sum by model of vllm:generation_tokens_total):")
    for series in testbed.query("sum by (model) (vllm:generation_tokens_total)"):
        print(f"  {series['metric'].get('model', '?'):4} {float(series['value'][1]):8.0f} tokens")

    print(
        f"""
Where to look:
  source {testbed.env_file}
  kubectl get pods -n $ZETA_NAMESPACE -o wide
  curl -s "$PROMETHEUS_URL/api/v1/query?query=vllm:num_requests_running" | python3 -m json.tool
  curl -s http://{pods[0].address}/metrics | grep '^vllm:'
  curl -s -XPOST http://{pods[0].address}/admin/faults -d '{{"slowdown": 4}}'   # make a pod slow

The operator and the sidecar are not built yet: this demo shows the testbed they will
run on. Stop it with `make demo-down`."""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
