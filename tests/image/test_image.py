"""Both entry points run from the image as a restricted pod would run them: a numeric
non-root user, a read-only root filesystem, configuration mounted read-only; against the
testbed's pods and apiserver (host networking: they listen on the host's loopback)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from zeta_api import GROUP, PLURAL, VERSION
from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.testbed import Testbed

from .conftest import Podman

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "Say hello."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            code: int = reply.status
            return code
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def sidecar_flags(port: int, admin: int) -> list[str]:
    """Loopback only; a short drain, so that a stop takes seconds."""
    return [
        "--host=127.0.0.1",
        f"--port={port}",
        f"--admin-port={admin}",
        "--drain-delay=0",
        "--drain-grace=5",
    ]


def wait(what: str, probe: Callable[[], bool], timeout: float, logs: Callable[[], str]) -> None:
    """Poll ``probe`` until it is true; fail with the containers' logs."""
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{logs()}"
        time.sleep(0.5)


def helm_test_command(testbed: Testbed) -> list[str]:
    """The command and args of the chart's `helm test` pod."""
    helm, chart = testbed.env()["ZETA_HELM"], str(ROOT / "charts/zeta-router")
    rendered = subprocess.run(
        [helm, "template", "zr", chart, "--show-only", "templates/tests/test-models.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    (container,) = yaml.safe_load(rendered)["spec"]["containers"]
    return [*container["command"], *container["args"]]


def test_both_entry_points_answer_help(podman: Podman) -> None:
    sidecar = podman.run("--", "zeta-sidecar", "--help")
    assert sidecar.returncode == 0, sidecar.stderr
    assert "--table-file" in sidecar.stdout
    operator = podman.run("--", "zeta-operator", "--help")
    assert operator.returncode == 0, operator.stderr
    assert "--peering" in operator.stdout


def test_runs_as_a_numeric_non_root_user_on_a_read_only_root(podman: Podman) -> None:
    who = podman.run("--", "id", "-u")
    assert who.stdout.strip() == "65532"
    write = podman.run("--", "sh", "-c", "touch /opt/zeta/x")
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    # The runtime stage is the base plus the venv: no compiler, no pip in the venv.
    tools = podman.run("--", "sh", "-c", "command -v gcc cc pip; ls /opt/zeta/bin")
    assert "gcc" not in tools.stdout
    assert "pip" not in tools.stdout


def test_sidecar_serves_a_read_only_table_from_the_testbed(
    podman: Podman, testbed: Testbed, namespace: str, tmp_path: Path
) -> None:
    pod = testbed.add_pod("7b", namespace=namespace)
    tables = tmp_path / "table"
    tables.mkdir()
    tables.chmod(0o755)  # the container's user is not root
    (tables / "routing.json").write_text(
        table_json({"chat": [endpoint(pod.address, pod=pod.name)]}, served={"chat": "sim-7b"})
    )
    port, admin = free_port(), free_port()
    # Host networking: the testbed's pods listen on the host's loopback. No tmpfs on /tmp
    # either: the chart gives the gateway no writable path at all.
    container = podman.start(
        "--network=host",
        "--read-only-tmpfs=false",
        f"--volume={tables}:/etc/zeta:ro",
        "--",
        "zeta-sidecar",
        "--table-file=/etc/zeta/routing.json",
        *sidecar_flags(port, admin),
    )
    try:
        wait(
            "ready",
            lambda: status(f"http://127.0.0.1:{admin}/readyz") == 200,
            60,
            lambda: podman.logs(container),
        )
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0
        )
        assert [m.id for m in client.models.list()] == ["chat"]
        reply = client.chat.completions.create(
            model="chat",
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=3,
        )
        assert reply.choices[0].message.content
        assert reply.model == "sim-7b"
        # The chart's `helm test` pod runs this image too: its command, given this URL.
        check = helm_test_command(testbed)
        check[-1] = f"http://127.0.0.1:{port}/v1/models"
        done = podman.run("--network=host", "--", *check)
        assert done.returncode == 0, done.stderr
        assert "['chat']" in done.stdout
    finally:
        code, logs = podman.stop(container)
    # SIGTERM drains and exits cleanly; 137 would mean podman had to kill it.
    assert code == 0, logs


def container_kubeconfig(testbed: Testbed, folder: Path) -> Path:
    """The testbed's kubeconfig with its CA inline: the original names a file only root
    may read, and the container runs as 65532."""
    config = yaml.safe_load(testbed.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = Path(cluster.pop("certificate-authority")).read_bytes()
    cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)
    return path


def test_operator_and_gateway_from_the_image_serve_the_operators_table(
    podman: Podman, testbed: Testbed, core: k8s.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    for crd in sorted((ROOT / "manifests/crds").glob("*.yaml")):
        testbed.kubectl("apply", "--server-side", "-f", str(crd))
    pod = testbed.add_pod("7b", namespace=namespace)
    config = tmp_path / "config"
    config.mkdir()
    config.chmod(0o755)
    container_kubeconfig(testbed, config)
    kube = [
        "--network=host",
        f"--volume={config}:/etc/zeta:ro",
        "--env=KUBECONFIG=/etc/zeta/kubeconfig",
    ]
    liveness = free_port()
    operator = podman.start(
        *kube,
        "--",
        "zeta-operator",
        f"--namespace={namespace}",
        "--standalone",
        f"--liveness=http://127.0.0.1:{liveness}/healthz",
    )
    port, admin = free_port(), free_port()
    gateway = podman.start(
        # A tmpfs on /tmp (podman's default with --read-only) as for the operator: the
        # client writes an inline CA to a temporary file (in a pod it reads the mounted
        # ServiceAccount's files instead).
        *kube,
        "--",
        "zeta-sidecar",
        f"--configmap={namespace}/chat-routing",
        "--kubeconfig=/etc/zeta/kubeconfig",
        *sidecar_flags(port, admin),
    )
    custom = k8s.CustomObjectsApi(core.api_client)

    def logs() -> str:
        return podman.logs(operator) + podman.logs(gateway)

    try:
        wait(
            "operator liveness",
            lambda: status(f"http://127.0.0.1:{liveness}/healthz") == 200,
            60,
            logs,
        )
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ZetaRouter",
                "metadata": {"name": "chat"},
                "spec": {
                    "models": [
                        {
                            "name": "sim-7b",
                            "tier": 1,
                            "capacity": 32,
                            "selector": {"matchLabels": {"app": "vllm", "model": "7b"}},
                        }
                    ],
                    "prometheus": {"url": testbed.prometheus_url, "timeout": "1s"},
                    "policy": {"interval": "2s"},
                    "routingTable": {"configMapName": "chat-routing"},
                },
            },
        )

        def published() -> bool:
            try:
                cm = core.read_namespaced_config_map("chat-routing", namespace)
            except ApiException:
                return False
            table = json.loads((cm.data or {}).get("routing.json", "{}"))
            endpoints = table.get("models", {}).get("sim-7b", {}).get("endpoints", [])
            return [e["address"] for e in endpoints] == [pod.address]

        wait("the operator's table", published, 60, logs)
        wait("gateway ready", lambda: status(f"http://127.0.0.1:{admin}/readyz") == 200, 60, logs)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0
        )
        reply = client.chat.completions.create(model="sim-7b", messages=MESSAGES, max_tokens=3)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
        # Deleted while the operator runs: it ends the router's loop (the router carries no
        # finalizer, so the deletion never waits on it).
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")

        def gone() -> bool:
            try:
                custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
            except ApiException as exc:
                return bool(exc.status == 404)
            return False

        wait("the router deleted", gone, 30, logs)
    finally:
        codes = {name: podman.stop(c) for name, c in (("gateway", gateway), ("operator", operator))}
    for name, (code, output) in codes.items():
        assert code == 0, f"{name} exited {code}\n{output}"
