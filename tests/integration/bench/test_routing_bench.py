"""The routing benchmark's short forms run end to end and write their reports.

The routing suite: one scenario (tier, 2 pods), three systems (round robin through nginx,
the sidecar with static weights, Zeta with the operator), one seed, a 10-second trace: the
runner, the systems, the load generator and the report cannot rot; likewise the classes
and affinity suites, and the affinity index's memory benchmark. No latency is asserted:
the benchmark reports, it does not judge.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RUNNER = ROOT / "bench" / "routing" / "run.py"


def test_short_form_writes_the_report(tmp_path: Path) -> None:
    out, records, report = tmp_path / "out", tmp_path / "records", tmp_path / "routing.md"
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--short", "--out", str(out), "--records",
         str(records), "--report", str(report)],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    assert "## tier-2" in text
    for system in ("round-robin", "least-request", "zeta"):
        assert f"| {system} |" in text
        lines = (records / f"tier-2.{system}.1.jsonl").read_text().splitlines()
        # Every request of the trace is accounted for, whatever its outcome.
        assert lines
        assert all("status" in json.loads(line) for line in lines)
    summary = json.loads((out / "summary.json").read_text())
    assert {row["system"] for row in summary} == {"round-robin", "least-request", "zeta"}
    assert len({row["requests"] for row in summary}) == 1  # the same trace for each


def test_classes_short_form_writes_its_report(tmp_path: Path) -> None:
    # The traffic-classes suite (issue 9): per-class and per-tenant tables, the checks.
    out, records, report = tmp_path / "out", tmp_path / "records", tmp_path / "classes.md"
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--suite", "classes", "--short", "--out", str(out),
         "--records", str(records), "--report", str(report)],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    assert "## Targets (issue 9)" in text
    for system in ("round-robin", "zeta"):
        for name in ("critical", "standard", "sheddable"):
            assert f"| {system} | {name} |" in text
    lines = (records / "classes.zeta.1.jsonl").read_text().splitlines()
    sent = [json.loads(line) for line in lines]
    # The trace names classes and tenants, and each request's answer is recorded.
    assert {r["priority"] for r in sent} == {"critical", "standard", "sheddable"}
    assert {r["tenant"] for r in sent} == {"", "batch", "app"}
    summary = json.loads((out / "summary.json").read_text())
    assert all("by_class" in row and "by_tenant" in row for row in summary)


def test_affinity_short_form_writes_its_report(tmp_path: Path) -> None:
    # Cache-aware routing (issue 12): conversations over pods with prefix caching on.
    out, records, report = tmp_path / "out", tmp_path / "records", tmp_path / "affinity.md"
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--suite", "affinity", "--short", "--out", str(out),
         "--records", str(records), "--report", str(report)],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    assert "## Targets (issue 12)" in text
    summary = json.loads((out / "summary.json").read_text())
    assert {row["system"] for row in summary} == {"round-robin", "zeta-affinity"}
    for row in summary:
        # The pods' caches were on and emptied before each run: a hit rate, below 1.
        assert 0 < row["hit_rate"] < 1
        assert row["failed"] == 0
    sent = [json.loads(line) for line in (records / "affinity.zeta-affinity.1.jsonl").open()]
    assert all(r["ttft"] is not None for r in sent)  # every turn streams
    info = json.loads((records / "affinity.zeta-affinity.1.info.json").read_text())
    assert any(key.endswith("/hit") for key in info["decisions"])  # affinity decided
    # The load bound is judged on the pods' own spans: every request reached a pod once.
    [row] = [r for r in summary if r["system"] == "zeta-affinity"]
    assert row["sent"] == len(sent)
    assert row["bound_sent_above"] is not None


def test_affinity_index_short_form_stays_within_its_bound(tmp_path: Path) -> None:
    report = tmp_path / "affinity_index.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "affinity_index.py"), "--requests", "3000",
         "--index-entries", "1000", "--out", str(report)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Within the bound: **yes**" in report.read_text()
