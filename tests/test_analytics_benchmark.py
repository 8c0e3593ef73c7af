"""The analytics benchmark's quick mode runs (so it cannot rot) and prints sane numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = (
    "| summary(last_s=3600) (",
    "| summary(last_s=6*3600) (",
    '| summary(last_s=3600, service="checkout") (',
    "| anomalies() (",
    "| list_services() (",
)


def test_analytics_benchmark_quick_mode(tmp_path: Path) -> None:
    """The script checks every answer it times against statistics of the spans it generated
    and exits 1 on a mismatch."""
    result = subprocess.run(
        [sys.executable, "benchmarks/analytics.py", "--quick", "--dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "PROBLEMS" not in out
    for prefix in ROWS:
        (line,) = [ln for ln in out.splitlines() if ln.startswith(prefix)]
        cells = [c.strip() for c in line.strip("|").split("|")]
        numbers = re.findall(r"(\d[\d,]*(?:\.\d+)?) ms", cells[1])
        assert len(numbers) == 3, line  # p50, p99, first call
        assert all(float(n.replace(",", "")) > 0 for n in numbers), line
        assert cells[3] in ("PASS", "MISS", ""), line
    assert "payments: error rate" in out  # the incident the data holds is found
    assert not (tmp_path / "bench").exists()  # the scratch directory is cleaned up
