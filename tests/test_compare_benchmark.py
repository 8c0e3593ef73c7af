"""The side-by-side benchmark's quick mode runs (so it cannot rot) and prints its whole table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "| measurement | scale | tael | SQLite | DuckDB | tael / SQLite | tael / DuckDB | target | verdict |"
ROWS = (
    ("| ingest spans, batch 1,000, fsync per batch (records/s) |", 3, True),
    ("| ingest spans, batch 100, fsync per batch (records/s) |", 3, True),
    ("| ingest logs, batch 1,000, fsync per batch (records/s) |", 3, True),
    ("| ingest logs, batch 100, fsync per batch (records/s) |", 3, True),
    ("| ingest metrics, batch 1,000, fsync per batch (records/s) |", 3, True),
    ("| ingest metrics, batch 100, fsync per batch (records/s) |", 3, True),
    ("| build spans, 10,000-span batches, sync per 100,000 (spans/s) |", 3, False),
    ("| peak RSS of the building process (MiB) |", 3, False),
    ("| peak anonymous RSS of the building process, sampled (MiB) |", 3, False),
    ("| get_trace p50, random ids (ms) |", 3, False),
    ("| get_trace p99, random ids (ms) |", 3, False),
    ("| get_trace p50, ids from the last hour (hot in tael) (ms) |", 3, True),
    ("| trace search p50: service + error + >= 20 ms, last hour (ms) |", 3, False),
    ("| get_trace p50 over 30 daily cold partitions (ms) |", 1, True),
    ("| log text search p50: phrase, newest 20 (ms) |", 3, False),
    ("| log text search p50: rare phrase, all ", 3, False),
    ("| dashboard p50: 1 series, 24 h, 5-minute buckets (ms) |", 3, True),
    ("| bytes on disk per span, all files, after compaction |", 3, False),
    ("| bytes per span, tael cold tier (Parquet) vs peers' whole file |", 3, True),
    ("| bytes on disk per log record, all files, after compaction |", 3, False),
    ("| bytes on disk per metric point, all files, after compaction |", 3, False),
    ("| reopen after kill -9: MB of WAL recovered per second |", 3, True),
    ("| reopen after kill -9: seconds to open + first count |", 3, False),
)
NUMBER = re.compile(r"^\d[\d,]*(?:\.\d+)?x?$")


def number(cell: str) -> float:
    assert NUMBER.match(cell), cell
    return float(cell.rstrip("x").replace(",", ""))


def test_compare_benchmark_quick_mode(tmp_path: Path) -> None:
    """The script checks every answer against the generated data and across the three
    systems, and exits 1 on a mismatch; every row of its one table is printed."""
    result = subprocess.run(
        [sys.executable, "benchmarks/compare.py", "--quick", "--dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "PROBLEMS" not in out
    assert out.startswith("machine: ")
    assert out.count(HEADER) == 1  # one table
    table = [ln for ln in out.splitlines() if ln.startswith("| ") and ln != HEADER]
    assert len(table) == len(ROWS), table
    for (prefix, systems, has_target), line in zip(ROWS, table, strict=True):
        assert line.startswith(prefix), (prefix, line)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 9, line
        values = [number(c) for c in cells[2 : 2 + systems]]
        assert all(v > 0 for v in values), line
        assert all(c == "-" for c in cells[2 + systems : 5]), line
        if systems == 3:
            for value, ratio in zip(values[1:], cells[5:7], strict=True):
                assert abs(number(ratio) - values[0] / value) <= 0.1 * values[0] / value + 0.01, line
        assert cells[8] in (("PASS", "MISS") if has_target else ("",)), line
    assert "Durability: " in out and "wall time: " in out
    assert not (tmp_path / "bench").exists()  # the scratch directory is cleaned up
