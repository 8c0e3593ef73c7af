"""Compaction throughput and peak memory, on the synthetic workload (issue 16).

    python benchmarks/compaction.py --spans 1000000            # throughput, whole pipeline
    python benchmarks/compaction.py --spans 1000000 --rss      # peak RSS (VmHWM) of compact() alone
    python benchmarks/compaction.py --quick                    # a smoke test (the test suite runs it)

Measures of moving N spans (one UTC day) from the hot tier to the cold tier:

- ``compact()``: ``Store.compact`` end to end but for merges: reading the hot tier's
  blocks (``HotTier.old_blocks``: column batches, no record decoded), the column-wise
  rest (cold columns, dedup, day split, file order, Parquet written row group by row
  group, manifest statistics, trace index entries, blob references), and the LMDB
  commit that evicts the blocks.
- ``from batches``: the same steps but reading and evicting: ``Compactor._build`` on the
  hot blocks' rows, read before the clock.
- ``merge``: merging the day's files (one per compaction step of
  ``compaction_batch_records``) into files of ``cold_target_file_bytes``, streamed.

``--rss`` runs only the compaction (merges included) in a fresh store and prints the
process's resident memory before and its peak during ``compact()``: ``VmHWM`` (all of
it, the hot tier's memory-mapped pages it reads included) and ``RssAnon`` (heap:
Python objects, Arrow buffers, LMDB's dirty pages), one table row per run: run it with
several ``--spans`` to see whether it grows with the number of spans
(``| spans | moved | files merged | seconds | VmHWM before | VmHWM peak | RssAnon before
| RssAnon peak |``, MiB). Inputs are generated
before any clock starts and frozen (``gc.freeze``). Linux only (VmHWM).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

import tael  # noqa: E402
from tael import _compactor  # noqa: E402
from tael._workload import Workload  # noqa: E402

DAY_NS = 86_400 * 10**9
BASE = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z


def status_mib(field: str) -> float:
    """A field of /proc/self/status (VmHWM, RssAnon, ...) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class AnonPeak:
    """The peak of RssAnon (heap: Python objects, Arrow buffers, LMDB's dirty pages), sampled
    every 10 ms in a thread; VmHWM also counts the hot tier's memory-mapped pages read."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, status_mib("RssAnon"))
            time.sleep(0.01)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def filled_store(path: Path, n: int, settings: tael.Settings) -> tael.Store:
    spans = Workload(seed=1, start_ns=BASE + 3600 * 10**9).spans(n)
    if spans[-1].start_ns >= BASE + DAY_NS:
        raise SystemExit(f"--spans {n} is too many for one day of the workload")
    gc.freeze()
    store = tael.Store(path, settings)
    for i in range(0, n, 1000):
        store.insert_spans(spans[i : i + 1000])
    store.flush()
    del spans
    gc.collect()
    return store


def measure_rss(n: int, settings: tael.Settings) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = filled_store(Path(d) / "data", n, settings)
        store.close()
        gc.collect()
        # a fresh store object: what the insert path allocated is not counted
        with tael.Store(Path(d) / "data", settings) as store:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            start, anon_start = status_mib("VmHWM"), status_mib("RssAnon")
            t = time.perf_counter()
            with AnonPeak() as anon:
                report = store.compact(BASE + DAY_NS)
            elapsed = time.perf_counter() - t
            peak = status_mib("VmHWM")
            print(
                f"| {n:,} | {report.records['spans']:,} | {report.files_merged} | {elapsed:.1f} | "
                f"{start:,.0f} | {peak:,.0f} | {anon_start:,.0f} | {anon.peak:,.0f} |"
            )


def measure_throughput(n: int, rounds: int, settings: tael.Settings) -> None:
    settings = dataclasses.replace(settings, cold_merge_min_files=10**6)  # merges measured on their own
    times: dict[str, list[float]] = {"compact()": [], "from batches": [], "merge": []}
    merged = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            store = filled_store(Path(d) / "data", n, settings)
            try:
                comp = store._compactor
                hot = store._hot
                size = settings.compaction_batch_records
                chunks = []
                with hot.reader() as txn:
                    parts = hot.old_blocks(txn, "spans", BASE + DAY_NS, n)
                table = pa.Table.from_batches(
                    [b.batch() if rows is None else b.batch().take(rows) for _k, b, rows in parts]
                )
                chunks = [
                    _compactor._HotChunk(table.slice(i, size).combine_chunks(), parts, min(size, n - i))
                    for i in range(0, n, size)
                ]
                del table, parts
                gc.collect()
                t = time.perf_counter()
                for chunk in chunks:
                    files, _evict = comp._build("spans", chunk, {})
                    comp._discard(files)
                times["from batches"].append(time.perf_counter() - t)
                del chunks
                gc.collect()
                t = time.perf_counter()
                report = store.compact(BASE + DAY_NS)
                times["compact()"].append(time.perf_counter() - t)
                assert report.records["spans"] == n, report.records
                t = time.perf_counter()
                merged = comp.merge_small_files(min_files=2)
                times["merge"].append(time.perf_counter() - t)
            finally:
                store.close()
    print(f"| measure | spans | seconds (median of {rounds}) | spans/s (median) | spans/s (min..max) |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        label = f"{name} ({merged} files into 1-2)" if name == "merge" else name
        print(f"| {label} | {n:,} | {med:.2f} | {n / med:,.0f} | {n / max(values):,.0f}..{n / min(values):,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss", action="store_true", help="peak RSS of compact() alone, in a fresh process")
    parser.add_argument("--quick", action="store_true", help="a few seconds: both measures, tiny sizes (smoke test)")
    args = parser.parse_args()
    settings = tael.Settings()
    if args.quick:
        settings = dataclasses.replace(settings, compaction_batch_records=1000, cold_row_group_rows=256)
        measure_throughput(3000, 1, settings)
        measure_rss(3000, dataclasses.replace(settings, cold_merge_min_files=2))
    elif args.rss:
        measure_rss(args.spans, settings)
    else:
        measure_throughput(args.spans, args.rounds, settings)


if __name__ == "__main__":
    main()
