"""The open-streams benchmark's short form runs end to end and writes its report.

200 streams through the sidecar and vllm-router on four simulated pods, a few seconds
each (``--quick``): the pods' set-up, the load generator, the /proc sampling and the
report cannot rot. Only what is not a matter of timing is asserted: every stream through
each path ends with ``[DONE]``. Stalls and memory are reported, not judged, on a shared
machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "open_streams.py"


def test_quick_form_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "open_streams.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--report", str(report)],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    text = report.read_text()
    for path in ("direct (no proxy)", "zeta-sidecar", "vllm-router (round_robin)"):
        assert f"| {path} | 200/200 |" in text, text
    assert "Ratios (zeta-sidecar / vllm-router" in text
    assert "MiB per 1,000 streams" in text
