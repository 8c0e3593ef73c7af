"""Durable ingest throughput: tael against SQLite on the same data, batches and durability.

The numbers in docs/benchmarks.md came from:

    python benchmarks/ingest.py --n 200000 --repeats 3

Each system gets a fresh store per run; records are generated before the clock
starts; every batch is durable (fsync) before the next one is sent. tael runs
once from one thread and once from four threads (group commit); SQLite runs
with journal_mode=WAL, synchronous=FULL and indexes on time and trace id.
Prints a markdown table of median records/s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tael
from benchmarks._common import (
    machine,
    median,
    sqlite_insert_logs,
    sqlite_insert_metrics,
    sqlite_insert_spans,
    sqlite_open,
    table,
)
from tael._workload import Workload

SIGNALS = ("spans", "logs", "metrics")


def batches(records: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def run_tael(
    root: Path, signal: str, data: list[Sequence[Any]], threads: int, durability: str, hot_sync: bool = True
) -> float:
    path = Path(tempfile.mkdtemp(dir=root))
    store = tael.Store(path, tael.Settings(durability=durability, hot_sync=hot_sync))
    insert: Callable[[Sequence[Any]], int] = getattr(store, f"insert_{signal}")
    t0 = time.perf_counter()
    if threads == 1:
        for b in data:
            insert(b)
    else:
        workers = [
            threading.Thread(target=lambda part: [insert(b) for b in part], args=(data[k::threads],))
            for k in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    store.flush()  # everything applied and readable, not only durable
    elapsed = time.perf_counter() - t0
    count = store.stats().signals[signal].count
    store.close()
    shutil.rmtree(path)
    expected = sum(len(b) for b in data)
    if count != expected and signal != "spans":
        raise SystemExit(f"tael stored {count} {signal}, expected {expected}")
    return elapsed


def run_sqlite(root: Path, signal: str, data: list[Sequence[Any]]) -> float:
    path = Path(tempfile.mkdtemp(dir=root))
    conn = sqlite_open(path / "db.sqlite")
    insert = {"spans": sqlite_insert_spans, "logs": sqlite_insert_logs, "metrics": sqlite_insert_metrics}[signal]
    t0 = time.perf_counter()
    for b in data:
        insert(conn, b)
    elapsed = time.perf_counter() - t0
    conn.close()
    shutil.rmtree(path)
    return elapsed


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="records per signal (default 200,000)")
    ap.add_argument("--batch", type=int, default=1000, help="records per batch (default 1,000)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per system; the median is reported")
    ap.add_argument("--threads", type=int, default=4, help="writer threads for the group-commit run")
    ap.add_argument("--durability", default="fsync", choices=["fsync", "os"])
    ap.add_argument("--no-hot-sync", action="store_true", help="Settings(hot_sync=False): skip LMDB's data sync")
    ap.add_argument("--dir", default=".bench-data", help="scratch directory (on the disk being measured)")
    ap.add_argument("--quick", action="store_true", help="a few seconds: 3,000 records, 1 repeat (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 3_000, 1
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    wl = Workload(seed=1)
    data = {
        "spans": batches(wl.spans(args.n), args.batch),
        "logs": batches(wl.logs(args.n), args.batch),
        "metrics": batches(wl.metrics(args.n), args.batch),
    }
    rows = []
    try:
        for signal in SIGNALS:
            n = sum(len(b) for b in data[signal])
            hot_sync = not args.no_hot_sync
            one = [run_tael(root, signal, data[signal], 1, args.durability, hot_sync) for _ in range(args.repeats)]
            many = [
                run_tael(root, signal, data[signal], args.threads, args.durability, hot_sync)
                for _ in range(args.repeats)
            ]
            lite = [run_sqlite(root, signal, data[signal]) for _ in range(args.repeats)]
            t1, tm, ts = n / median(one), n / median(many), n / median(lite)
            rows.append(
                [signal, f"{t1:,.0f}", f"{tm:,.0f}", f"{ts:,.0f}", f"{t1 / ts:.2f}x", f"{max(t1, tm) / ts:.2f}x"]
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = "\n".join(
        [
            f"machine: {machine()}",
            f"records per signal: {args.n:,}, batch: {args.batch:,}, durability: {args.durability}, "
            f"hot_sync: {not args.no_hot_sync}, median of {args.repeats}",
            "",
            table(
                [
                    "signal",
                    "tael 1 thread (rec/s)",
                    f"tael {args.threads} threads (rec/s)",
                    "SQLite (rec/s)",
                    "tael 1 thread / SQLite",
                    "best tael / SQLite",
                ],
                rows,
            ),
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
