"""The benchmarks' pure parts, imported as their runners import them: from ``bench/``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
