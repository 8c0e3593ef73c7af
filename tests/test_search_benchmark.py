"""The search benchmark's quick mode runs (so it cannot rot) and prints sane numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = (
    "| log ingest + indexing",
    "| span ingest with payloads",
    "| search, hot",
    "| search, cold",
    "| search spans, hot",
    "| blob store: raw payload bytes",
)


def test_search_benchmark_quick_mode(tmp_path: Path) -> None:
    """The script checks every answer it times against what it inserted and exits 1 on a mismatch."""
    result = subprocess.run(
        [sys.executable, "benchmarks/search.py", "--quick", "--dir", str(tmp_path / "bench")],
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
        result_cell = [c.strip() for c in line.strip("|").split("|")][1]
        numbers = re.findall(r"\d[\d,]*(?:\.\d+)?", result_cell)
        assert numbers, line
        assert all(float(n.replace(",", "")) > 0 for n in numbers), line
    for kind in ("common word", "two words", "phrase", "rare word", "word + service"):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"| {kind} |")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(float(c) > 0 for c in cells[1:]), line
    assert not (tmp_path / "bench").exists()  # the scratch directory is cleaned up
