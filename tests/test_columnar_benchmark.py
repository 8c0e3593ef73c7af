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


def test_compaction_memory_script_moves_every_span_and_reports_each_step(tmp_path: Path) -> None:
    data = tmp_path / "day"
    base = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
    spans = [
        tael.Span(
            trace_id=f"{i // 3 + 1:032x}",
            span_id=f"{i + 1:016x}",
            name="op",
            service="svc",
            start_ns=base + i * 10**6,
            end_ns=base + i * 10**6 + 1,
        )
        for i in range(3_000)
    ]
    with tael.Store(data) as store:
        store.insert_spans(spans)
    result = subprocess.run(
        [sys.executable, "benchmarks/compaction_memory.py", str(data), "2024-01-02", "1000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [ln for ln in result.stdout.splitlines() if ln.startswith("before evict=")]
    assert len(steps) == 3, result.stdout  # 1,000 spans a step
    assert all(" after evict=" in s and " after publish=" in s and " after commit=" in s for s in steps)
    assert "moved 3,000 spans in " in result.stdout
    with tael.Store(data, read_only=True) as store:
        assert store.stats().signals["spans"].count == 3_000
        assert store.stats().hot_records["spans"] == 0
