"""The whole product on the testbed, as a user meets it: kubectl applies a ZetaRouter,
zeta-operator publishes its table, zeta-sidecar serves it, the openai SDK talks to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from zeta_testbed import processes
from zeta_testbed.testbed import Testbed, free_ports

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "manifests/samples/zetarouter-testbed.yaml"


@pytest.fixture
def product(testbed: Testbed, namespace: str, tmp_path: Path) -> Iterator[OpenAI]:
    """Pods, the sample ZetaRouter, an operator and a sidecar in the test's namespace."""
    for size in ("4b", "7b", "7b", "14b"):
        testbed.add_pod(size, namespace=namespace)
    testbed.kubectl("apply", "-f", str(ROOT / "manifests/crds/zetarouters.zeta.dev.yaml"))
    testbed.kubectl("wait", "--for=condition=Established", "crd/zetarouters.zeta.dev")
    router = yaml.safe_load(SAMPLE.read_text())
    router["spec"]["prometheus"]["url"] = testbed.prometheus_url
    router["spec"]["policy"]["interval"] = "1s"
    testbed.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(router))

    env = {**os.environ, **testbed.env()}
    port, admin = free_ports(2)
    started: list[subprocess.Popen[bytes]] = []
    with (
        (tmp_path / "operator.log").open("wb") as op_log,
        (tmp_path / "sidecar.log").open("wb") as sc_log,
    ):
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "zeta_operator", "--namespace", namespace, "--standalone"],
                env=env,
                stdout=op_log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 60
        while testbed.routing_table(namespace, "chat-routing") is None:
            assert time.monotonic() < deadline, (tmp_path / "operator.log").read_text()
            time.sleep(0.2)
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zeta_sidecar",
                    "--configmap",
                    f"{namespace}/chat-routing",
                    "--kubeconfig",
                    str(testbed.kubeconfig),
                    "--host",
                    "127.0.0.1",
                    f"--port={port}",
                    f"--admin-port={admin}",
                ],
                env=env,
                stdout=sc_log,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        deadline = time.monotonic() + 30
        while not processes.http_ok(f"http://127.0.0.1:{admin}/readyz"):
            assert time.monotonic() < deadline, (tmp_path / "sidecar.log").read_text()
            time.sleep(0.2)
        yield OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    finally:
        # While the operator still runs, so it releases its finalizer and the namespace
        # can go.
        testbed.kubectl("delete", "zr", "chat", "-n", namespace, "--timeout=30s")
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_a_user_routes_openai_traffic_through_the_product(
    testbed: Testbed, namespace: str, product: OpenAI
) -> None:
    models = {model.id for model in product.models.list()}
    assert {"sim-4b", "sim-7b", "sim-14b", "auto", "balanced"} <= models

    served = Counter(
        product.chat.completions.create(
            model="sim-7b", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        ).model
        for _ in range(20)
    )
    assert served == {"sim-7b": 20}

    easy = product.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    # A long conversation whose last turn has code, maths and reasoning cues: hard,
    # without asking for a long (slow) answer.
    history: list[ChatCompletionMessageParam] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "context " * 100}
        for i in range(12)
    ]
    history.append(
        {
            "role": "user",
            "content": "Prove the theorem, then write ```python\ndef f(): ...``` and "
            "analyse it step by step.",
        }
    )
    hard = product.chat.completions.create(model="auto", messages=history, max_tokens=8)
    assert (easy.model, hard.model) == ("sim-4b", "sim-14b")

    stream = product.chat.completions.create(
        model="balanced",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert {chunk.model for chunk in chunks} <= {"sim-4b", "sim-7b"}

    status = json.loads(testbed.kubectl("get", "zr", "chat", "-n", namespace, "-o", "json"))
    ready = {c["type"]: c["status"] for c in status["status"]["conditions"]}["Ready"]
    assert ready == "True"
