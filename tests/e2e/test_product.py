"""The whole product on the testbed, as a user meets it: kubectl applies a ZetaRouter,
zeta-operator publishes its table, zeta-sidecar serves it, the openai SDK talks to it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from zeta_testbed import zetarouter
from zeta_testbed.sidecar import SidecarFactory
from zeta_testbed.testbed import Testbed


@pytest.fixture
def product(
    testbed: Testbed, namespace: str, sidecar: SidecarFactory, tmp_path: Path
) -> Iterator[OpenAI]:
    """Pods, the sample ZetaRouter, an operator and a sidecar in the test's namespace."""
    for size in ("4b", "7b", "7b", "14b"):
        testbed.add_pod(size, namespace=namespace)
    zetarouter.install_crd(testbed)
    zetarouter.apply(testbed, namespace, zetarouter.sample(testbed, {"interval": "1s"}))
    operator = zetarouter.start_operator(
        testbed, tmp_path / "operator.log", "--namespace", namespace, "--standalone"
    )
    try:
        try:
            zetarouter.first_table(testbed, namespace, "chat-routing", within=60)
        except TimeoutError as exc:
            pytest.fail(f"{exc}: {operator.tail()}")
        proc = sidecar("--configmap", f"{namespace}/chat-routing", "--kubeconfig",
                       str(testbed.kubeconfig))  # fmt: skip
        yield OpenAI(base_url=f"{proc.url}/v1", api_key="unused", max_retries=0)
    finally:
        # While the operator still runs, so it ends the router's loop itself (the routers
        # carry no finalizer: the namespace goes either way).
        testbed.kubectl("delete", "zr", "chat", "-n", namespace, "--timeout=30s")
        operator.stop(grace=30)


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
