"""Both entry points run from the image as podman would run them in a restricted pod:
a numeric non-root user, a read-only root filesystem, the routing table mounted read-only."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from zeta_sidecar.testing import endpoint, table_json
from zeta_testbed.testbed import Testbed

from .conftest import Podman

pytestmark = pytest.mark.image


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
    # Host networking: the testbed's pods listen on the host's loopback.
    container = podman.start(
        "--network=host",
        f"--volume={tables}:/etc/zeta:ro",
        "--",
        "zeta-sidecar",
        "--table-file=/etc/zeta/routing.json",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--admin-port={admin}",
        "--drain-delay=0",
        "--drain-grace=5",
    )
    try:
        deadline = time.monotonic() + 60
        while status(f"http://127.0.0.1:{admin}/readyz") != 200:
            assert time.monotonic() < deadline, podman.logs(container)
            time.sleep(0.5)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0
        )
        assert [m.id for m in client.models.list()] == ["chat"]
        reply = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=3,
        )
        assert reply.choices[0].message.content
        assert reply.model == "sim-7b"
    finally:
        code, logs = podman.stop(container)
    # SIGTERM drains and exits cleanly; 137 would mean podman had to kill it.
    assert code == 0, logs
