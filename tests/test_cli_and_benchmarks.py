"""The demo, the CLI commands and the benchmark scripts run (so none of them can rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import tael
from tael._cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_demo_writes_and_reads_back(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = CliRunner().invoke(
        main, ["demo", "--data", str(data), "--spans", "300", "--logs", "200", "--metrics", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "spans" in result.output and "checkout" in result.output and "latest failing spans" in result.output
    with tael.Store(data, read_only=True) as store:
        st = store.stats().signals
        assert (st["spans"].count, st["logs"].count, st["metrics"].count) == (300, 200, 100)
        assert {s.name for s in store.list_services()} == {"checkout", "inventory", "llm-gateway"}


def test_repair_command_reports_clean_and_damaged(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with tael.Store(data) as store:
        store.insert_logs([tael.LogRecord(time_ns=i, body="x", service="s") for i in range(3)])
    ok = CliRunner().invoke(main, ["repair", str(data)])
    assert ok.exit_code == 0 and '"damaged": []' in ok.output
    (segment,) = (data / "wal").glob("*.wal")
    with segment.open("r+b") as f:
        f.seek(16 + 20)
        f.write(b"\x00\x00")
    bad = CliRunner().invoke(main, ["repair", str(data)])
    assert bad.exit_code == 1 and segment.name in bad.output


def test_every_command_has_help() -> None:
    for command in [[], *([name] for name in main.commands)]:
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_ingest_benchmark_quick_mode(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/ingest.py", "--quick", "--dir", str(tmp_path / "bench")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    lines = [
        ln
        for ln in out.splitlines()
        if ln.startswith("| spans") or ln.startswith("| logs") or ln.startswith("| metrics")
    ]
    assert len(lines) == 3
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(float(c.replace(",", "").rstrip("x")) > 0 for c in cells[1:])


def test_cold_benchmark_quick_mode(tmp_path: Path) -> None:
    """The script checks every answer it times against what it inserted and exits 1 on a mismatch."""
    result = subprocess.run(
        [sys.executable, "benchmarks/cold.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PROBLEMS" not in result.stdout
    for needle in ("get_trace", "aggregate_metrics", "Bytes per record"):
        assert needle in result.stdout, needle
