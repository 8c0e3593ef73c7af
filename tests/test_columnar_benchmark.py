"""Issue 16's benchmark script runs in its quick mode (so it cannot rot) and prints its table
with numbers in it. Only the cheap measures run here; no timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tael

ROOT = Path(__file__).resolve().parent.parent
HEADER = "| measure | tael | SQLite | ratio | target | met |"
ONLY = "spans_list,spans_table,metrics,compaction,dashboard"
# measure, whether it has a SQLite value, whether it has a ratio
ROWS = (
    ("spans_list", True, True),
    ("spans_table", True, True),
    ("metrics", True, True),
    ("compaction", False, True),  # ratio: compaction / spans_list ingest, from the same run
    ("dashboard", False, False),  # hot
    ("dashboard", False, False),  # cold
)
NUMBER = re.compile(r"^\d[\d,]*(?:\.\d+)?x?$")


def number(cell: str) -> float:
    assert NUMBER.match(cell), cell
    return float(cell.rstrip("x").replace(",", ""))


def test_columnar_benchmark_quick_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/columnar.py", "--quick", "--only", ONLY, "--dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "PROBLEMS" not in out
    assert out.startswith("machine: ")
    assert out.count(HEADER) == 1
    table = [ln for ln in out.splitlines() if ln.startswith("| ") and ln != HEADER]
    assert len(table) == len(ROWS), table
    columnar_api = hasattr(tael, "spans_table")
    for (measure, has_sqlite, has_ratio), line in zip(ROWS, table, strict=True):
        assert line.startswith(f"| {measure}: "), (measure, line)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 6, line
        _name, value, sqlite, ratio, target, met = cells
        assert target != "-", line  # every row here is one of the targets
        if measure == "spans_table" and not columnar_api:
            assert value == "n/a (no tael.spans_table)", line
            assert ratio == "-" and met == "-", line
            assert number(sqlite) > 0, line
            continue
        assert number(value) > 0, line
        assert met in ("yes", "no"), line
        if has_sqlite:
            assert number(sqlite) > 0, line
            assert abs(number(ratio) - number(value) / number(sqlite)) <= 0.01 * number(ratio) + 0.01, line
        else:
            assert sqlite == "-", line
        if has_ratio:
            assert number(ratio) > 0, line
        else:
            assert ratio == "-", line
    assert "- Ingest: " in out and "wall time: " in out
    assert not (tmp_path / "bench").exists()  # the scratch directory is cleaned up
