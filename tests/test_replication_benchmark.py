"""The replication benchmark's quick mode runs (so it cannot rot) and prints sane numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = (
    "no replicas",
    "1 standby, sync (required_acks=None)",
    "2 standbys, sync (required_acks=None)",
    "2 standbys, required_acks=1",
    "2 standbys, async (required_acks=0)",
)


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def number(text: str) -> float:
    (found,) = re.findall(r"\d[\d,]*(?:\.\d+)?", text)[:1]
    return float(found.replace(",", ""))


def test_replication_benchmark_quick_mode(tmp_path: Path) -> None:
    """The script checks that every standby holds exactly the leader's spans and exits 1 otherwise."""
    result = subprocess.run(
        [sys.executable, "benchmarks/replication.py", "--quick", "--dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "PROBLEMS" not in out and "MISMATCH" not in out
    lines = out.splitlines()
    for name in CONFIGS:
        rows = [cells(ln) for ln in lines if ln.startswith(f"| {name} | ")]
        runs = [r for r in rows if len(r) == 7]
        assert sorted(r[1] for r in runs) == ["1", "4"], rows  # one row per writer-thread count
        for r in runs:
            spans_s, ratio, p50, p99, cores = (number(c) for c in r[2:])
            assert spans_s > 0 and ratio > 0 and 0 < p50 <= p99 and cores > 0, r
        (check,) = [r for r in rows if len(r) == 5]
        assert number(check[1]) >= 0, check  # idle cores busy
        leader = number(check[2])
        assert leader == (15_000 if "async" in name else 10_000), check  # 2 runs of 5,000 (+ 5,000 catch-up)
        standbys = [number(c) for c in check[3].split(", ")] if check[3] != "-" else []
        assert standbys == [leader] * (0 if name == "no replicas" else int(name[0])), check
        assert check[4] == "ok", check
    for measurement in ("restart -> lag_bytes == 0", "restart -> every span applied on the standby"):
        (line,) = [ln for ln in lines if ln.startswith(f"| {measurement} |")]
        assert number(cells(line)[1]) > 0, line
    (shipped,) = [ln for ln in lines if ln.startswith("| WAL to ship |")]
    assert number(cells(shipped)[1]) > 0
    assert not (tmp_path / "bench").exists()  # the scratch directory is cleaned up
