"""`zeta-testbed up`/`status`/`down` as a user runs them, in a testbed of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zeta_testbed import processes
from zeta_testbed.testbed import Testbed


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zeta_testbed.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_up_writes_an_env_file_and_down_ends_every_process(tmp_path: Path) -> None:
    state_dir = tmp_path / "tb"
    up = _cli("up", "--pods", "7b=1,14b=1", "--state-dir", str(state_dir), "--time-scale", "10")
    assert up.returncode == 0, up.stderr
    env_lines = (state_dir / "env").read_text()
    for key in ("KUBECONFIG", "PROMETHEUS_URL", "ZETA_NAMESPACE", "ZETA_KUBECTL", "ZETA_HELM"):
        assert f"export {key}=" in env_lines
    assert "export KUBECONFIG=" in up.stdout

    bed = Testbed(state_dir)
    bed.run("extra", ["sleep", "300"])  # e.g. an operator the user started with the testbed
    state = bed.state()
    records = [*state.processes.values(), *(pod.process for pod in state.pods)]
    assert {r.name for r in state.processes.values()} == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "prometheus",
        "extra",
    }
    assert len(state.pods) == 2
    status = _cli("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("running") == len(records)

    down = _cli("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not any(processes.is_running(r) for r in records)
    assert not state_dir.exists()


def test_bad_pod_counts_are_refused_with_a_message(tmp_path: Path) -> None:
    result = _cli("up", "--pods", "9b=1", "--state-dir", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "SIZE=N with SIZE one of 4b, 7b, 14b" in result.stderr
    assert not (tmp_path / "x").exists()


def test_an_up_that_fails_half_way_leaves_no_process_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated failure after the control plane started")

    monkeypatch.setattr(Testbed, "_register_pod", fail)
    state_dir = tmp_path / "tb"
    with pytest.raises(RuntimeError, match="simulated failure"):
        Testbed(state_dir).up({"7b": 1}, time_scale=10)
    # Whatever was started, recorded or not, names the state folder in its command line.
    assert _processes_mentioning(str(state_dir)) == []


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found
