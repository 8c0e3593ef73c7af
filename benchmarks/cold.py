"""Cold tier: compaction throughput, bytes per record against SQLite, trace lookups
across 30 daily partitions, and a 24-hour dashboard query served from rollups.

The numbers in docs/benchmarks.md came from:

    python benchmarks/cold.py

Four measurements, each on a fresh store with default Settings, records
generated before any clock starts and inserted in 1,000-record batches:

1. compaction: N spans, N logs and N metric points, each signal on its own UTC
   day, so ``compact(before=<end of that day>)`` moves exactly one signal and
   is timed on its own (cold files written and fsynced, manifest committed,
   hot records evicted, metric rollups written);
2. bytes per record: the Parquet files under ``<data>/cold/<signal>`` divided
   by the records they hold, against a SQLite file holding the same records
   (WAL journal, indexes on time and trace id, attributes as JSON text; size
   after VACUUM and a truncating WAL checkpoint);
3. get_trace: spans over 30 consecutive UTC days, compacted, the store
   reopened (empty footer cache), then random existing trace ids looked up
   once each; the same ids looked up while still hot for reference;
4. dashboard: one metric series with a point every 10 s for 25 hours among
   other series, compacted, then ``aggregate_metrics(name, service=...,
   attributes=..., start=day, end=day + 24h, step="5m")``, which must return
   288 buckets; the same query before compaction for reference.

The OS page cache is warm (the files were just written). Results read back
are checked against what was inserted and against the hot tier's answers.
Prints markdown tables; latencies are per call, in milliseconds.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tael
from benchmarks._common import (
    machine,
    sqlite_insert_logs,
    sqlite_insert_metrics,
    sqlite_insert_spans,
    sqlite_open,
    table,
)
from benchmarks.ingest import batches
from tael._workload import Workload

SIGNALS = ("spans", "logs", "metrics")
DAY_NS = 86_400 * 1_000_000_000
HOUR_NS = 3_600 * 1_000_000_000
STEP_NS = 300 * 1_000_000_000
TRACE_TARGET_MS = 10.0
DASHBOARD_TARGET_MS = 5.0
SQLITE_INSERT: dict[str, Callable[..., None]] = {
    "spans": sqlite_insert_spans,
    "logs": sqlite_insert_logs,
    "metrics": sqlite_insert_metrics,
}


def day_ns(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1_000_000_000


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def verdict(measured_s: float, target_ms: float) -> str:
    return "PASS" if measured_s * 1e3 < target_ms else "MISS"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def new_store(root: Path) -> tuple[Path, tael.Store]:
    path = Path(tempfile.mkdtemp(dir=root))
    return path, tael.Store(path, tael.Settings())


def insert_all(store: tael.Store, signal: str, records: Sequence[Any], size: int) -> None:
    insert = getattr(store, f"insert_{signal}")
    for b in batches(records, size):
        insert(b)
    store.flush()


def check(ok: bool, problems: list[str], message: str) -> None:
    if not ok:
        problems.append(message)


# ---------------------------------------------------------------- 1 + 2: compaction and bytes per record


def time_span(records: Sequence[Any], signal: str) -> tuple[int, int]:
    if signal == "spans":
        return min(r.start_ns for r in records), max(r.start_ns for r in records)
    return min(r.time_ns for r in records), max(r.time_ns for r in records)


def sqlite_bytes(root: Path, signal: str, records: Sequence[Any], size: int) -> int:
    path = Path(tempfile.mkdtemp(dir=root))
    conn = sqlite_open(path / "db.sqlite")
    insert = SQLITE_INSERT[signal]
    for b in batches(records, size):
        insert(conn, b)
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (count,) = conn.execute(f"SELECT count(*) FROM {signal}").fetchone()
    conn.close()
    total = bytes_under(path)
    shutil.rmtree(path)
    if count != len(records):
        raise SystemExit(f"SQLite stored {count} {signal}, expected {len(records)}")
    return total


def bench_compaction(root: Path, n: int, size: int, problems: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    base = day_ns(2024, 1, 1)
    data: dict[str, Sequence[Any]] = {
        "spans": Workload(seed=1, start_ns=base + HOUR_NS).spans(n),
        "logs": Workload(seed=2, start_ns=base + DAY_NS + HOUR_NS).logs(n),
        "metrics": Workload(seed=3, start_ns=base + 2 * DAY_NS + HOUR_NS).metrics(n),
    }
    for k, signal in enumerate(SIGNALS):
        lo, hi = time_span(data[signal], signal)
        if not base + k * DAY_NS <= lo <= hi < base + (k + 1) * DAY_NS:
            raise SystemExit(f"--n {n} is too large: {signal} spill out of their day")
    path, store = new_store(root)
    comp_rows, byte_rows = [], []
    try:
        for signal in SIGNALS:
            insert_all(store, signal, data[signal], size)
        stored = store.stats()
        total_s = 0.0
        total_n = 0
        for k, signal in enumerate(SIGNALS):
            before = base + (k + 1) * DAY_NS
            elapsed, report = timed(lambda before=before: store.compact(before=before))  # type: ignore[misc]
            moved = report.records[signal]
            total_s += elapsed
            total_n += report.total_records
            check(
                report.total_records == moved == stored.signals[signal].count,
                problems,
                f"compaction of the {signal} day moved {report.records}, expected "
                f"{stored.signals[signal].count} {signal} only",
            )
            rollups = ", ".join(f"{v:,} {k}" for k, v in report.rollup_rows.items() if v) or "-"
            comp_rows.append(
                [
                    signal,
                    f"{moved:,}",
                    f"{elapsed:.2f}",
                    f"{moved / elapsed:,.0f}",
                    str(len(report.files_written)),
                    rollups,
                ]
            )
        comp_rows.append(["all", f"{total_n:,}", f"{total_s:.2f}", f"{total_n / total_s:,.0f}", "", ""])
        after = store.stats()
        for signal in SIGNALS:
            check(
                after.cold_records.get(signal) == len(data[signal]) and after.hot_records.get(signal) == 0,
                problems,
                f"after compaction stats() says cold={after.cold_records.get(signal)} "
                f"hot={after.hot_records.get(signal)} {signal}, expected {len(data[signal])} cold, 0 hot",
            )
        for signal in SIGNALS:
            count = after.cold_records[signal]
            cold = bytes_under(path / "cold" / signal)
            lite = sqlite_bytes(root, signal, data[signal], size)
            per_cold, per_lite = cold / count, lite / len(data[signal])
            byte_rows.append(
                [
                    signal,
                    f"{count:,}",
                    f"{cold / 1e6:,.1f}",
                    f"{per_cold:,.1f}",
                    f"{lite / 1e6:,.1f}",
                    f"{per_lite:,.1f}",
                    f"{per_lite / per_cold:.1f}x",
                ]
            )
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    return comp_rows, byte_rows


# ---------------------------------------------------------------- 3: get_trace over 30 daily partitions


def bench_traces(
    root: Path, days: int, per_day: int, lookups: int, size: int, seed: int, problems: list[str]
) -> dict[str, Any]:
    base = day_ns(2024, 2, 1)
    spans: list[tael.Span] = []
    for d in range(days):
        day = Workload(seed=100 + d, start_ns=base + d * DAY_NS + HOUR_NS).spans(per_day)
        if day[-1].start_ns >= base + (d + 1) * DAY_NS:
            raise SystemExit(f"--spans-per-day {per_day} is too large: spans spill into the next day")
        spans.extend(day)
    per_trace = Counter(s.trace_id for s in spans)
    rng = random.Random(seed)
    ids = rng.sample(sorted(per_trace), min(lookups, len(per_trace)))
    path, store = new_store(root)
    try:
        insert_all(store, "spans", spans, size)

        def lookup_all(s: tael.Store) -> tuple[list[float], dict[str, list[tuple[str, int]]]]:
            times, seen = [], {}
            for tid in ids:
                elapsed, got = timed(lambda tid=tid: s.get_trace(tid))  # type: ignore[misc]
                times.append(elapsed)
                seen[tid] = [(sp.span_id, sp.start_ns) for sp in got]
            return times, seen

        hot_times, hot_seen = lookup_all(store)
        compact_s, _report = timed(lambda: store.compact(before=base + days * DAY_NS))
        store.close()
        store = tael.Store(path, tael.Settings())  # a fresh process: no cached Parquet footers
        stats = store.stats()
        partitions = sorted({p.parent.name for p in (path / "cold" / "spans").rglob("*.parquet")})
        cold_times, cold_seen = lookup_all(store)
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    check(
        stats.cold_records.get("spans") == len(spans) and stats.hot_records.get("spans") == 0,
        problems,
        f"30-day store after compaction: cold={stats.cold_records.get('spans')} hot={stats.hot_records.get('spans')}"
        f" spans, expected {len(spans)} cold",
    )
    check(len(partitions) == days, problems, f"spans landed in {len(partitions)} partitions, expected {days}")
    wrong = [t for t in ids if len(cold_seen[t]) != per_trace[t] or cold_seen[t] != hot_seen[t]]
    check(
        not wrong, problems, f"get_trace returned wrong spans after compaction for {len(wrong)} ids, e.g. {wrong[:1]}"
    )
    wrong_hot = [t for t in ids if len(hot_seen[t]) != per_trace[t]]
    check(not wrong_hot, problems, f"hot get_trace returned wrong span counts for {len(wrong_hot)} ids")
    return {
        "spans": len(spans),
        "traces": len(per_trace),
        "partitions": len(partitions),
        "cold_files": stats.cold_files,
        "compact_s": compact_s,
        "hot": hot_times,
        "cold": cold_times,
        "lookups": len(ids),
    }


# ---------------------------------------------------------------- 4: 24-hour dashboard from rollups


def bench_dashboard(
    root: Path, interval_s: int, others: int, queries: int, size: int, seed: int, problems: list[str]
) -> dict[str, Any]:
    day = day_ns(2024, 3, 1)
    name, service = "cpu.utilization", "checkout"
    target_attrs = {"host": "host-0", "region": "eu-west-1"}
    series = [(name, service, target_attrs)]
    for k in range(1, others + 1):
        if k % 2:
            series.append((name, service, {"host": f"host-{k}", "region": "eu-west-1"}))
        else:
            series.append(("memory.rss", ("checkout", "inventory")[k % 4 // 2], {"host": f"host-{k}"}))
    rng = random.Random(seed)
    step = interval_s * 1_000_000_000
    points = [
        tael.MetricPoint(time_ns=t, name=nm, service=svc, value=rng.random() * 100, unit="%", attributes=attrs)
        for t in range(day - HOUR_NS // 2, day + DAY_NS + HOUR_NS // 2, step)
        for nm, svc, attrs in series
    ]
    path, store = new_store(root)

    def query(s: tael.Store) -> list[tael.MetricBucket]:
        return s.aggregate_metrics(
            name, service=service, attributes=target_attrs, start=day, end=day + DAY_NS, step="5m"
        )

    def repeat(s: tael.Store, n: int) -> tuple[list[float], list[tael.MetricBucket]]:
        times: list[float] = []
        out: list[tael.MetricBucket] = []
        for _ in range(n):
            elapsed, out = timed(lambda: query(s))
            times.append(elapsed)
        return times, out

    try:
        insert_all(store, "metrics", points, size)
        hot_times, hot_buckets = repeat(store, max(3, queries // 20))
        compact_s, report = timed(lambda: store.compact(before=day + 2 * DAY_NS))
        store.close()
        store = tael.Store(path, tael.Settings())
        stats = store.stats()
        rollup_bytes = sum(bytes_under(path / "cold" / ds) for ds in ("metrics_5m", "metrics_1h"))
        cold_times, cold_buckets = repeat(store, queries)
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)
    check(
        stats.hot_records.get("metrics") == 0 and stats.cold_records.get("metrics") == len(points),
        problems,
        f"dashboard store after compaction: hot={stats.hot_records.get('metrics')} "
        f"cold={stats.cold_records.get('metrics')} points, expected {len(points)} cold",
    )
    per_bucket = STEP_NS // step
    expected_starts = [day + i * STEP_NS for i in range(DAY_NS // STEP_NS)]
    for label, got in (("hot", hot_buckets), ("cold", cold_buckets)):
        check(len(got) == 288, problems, f"{label} aggregate_metrics returned {len(got)} buckets, expected 288")
        check(
            [b.start_ns for b in got] == expected_starts[: len(got)] and all(b.count == per_bucket for b in got),
            problems,
            f"{label} aggregate_metrics buckets are misaligned or hold the wrong counts "
            f"(expected {per_bucket} points each): {[(b.start_ns, b.count) for b in got[:3]]}",
        )
    same = len(hot_buckets) == len(cold_buckets) and all(
        (h.count, h.min, h.max, h.first, h.last) == (c.count, c.min, c.max, c.first, c.last)
        and math.isclose(h.sum, c.sum, rel_tol=1e-9)
        for h, c in zip(hot_buckets, cold_buckets, strict=False)
    )
    check(same, problems, "aggregate_metrics from rollups differs from the same query on hot raw points")
    return {
        "points": len(points),
        "series": len(series),
        "series_points": len(points) // len(series),
        "buckets": len(cold_buckets),
        "compact_s": compact_s,
        "rollup_rows": sum(report.rollup_rows.values()),
        "rollup_bytes": rollup_bytes,
        "hot": hot_times,
        "cold": cold_times,
    }


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="records per signal for compaction and bytes (200,000)")
    ap.add_argument("--batch", type=int, default=1000, help="records per insert batch (default 1,000)")
    ap.add_argument("--days", type=int, default=30, help="daily partitions for the trace lookups (default 30)")
    ap.add_argument("--spans-per-day", type=int, default=10_000, help="spans per day for the lookups (10,000)")
    ap.add_argument("--lookups", type=int, default=200, help="random trace ids looked up (default 200)")
    ap.add_argument("--interval", type=int, default=10, help="seconds between metric points of a series (10)")
    ap.add_argument("--other-series", type=int, default=19, help="series besides the dashboard's own (19)")
    ap.add_argument("--queries", type=int, default=200, help="dashboard queries timed (default 200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=".bench-data", help="scratch directory (on the disk being measured)")
    ap.add_argument("--quick", action="store_true", help="a few seconds: tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.spans_per_day, args.lookups = 3_000, 100, 30
        args.interval, args.other_series, args.queries = 60, 3, 20
    if STEP_NS % (args.interval * 1_000_000_000):
        raise SystemExit("--interval must divide 300 seconds")
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root))
    problems: list[str] = []
    try:
        comp_rows, byte_rows = bench_compaction(scratch, args.n, args.batch, problems)
        tr = bench_traces(scratch, args.days, args.spans_per_day, args.lookups, args.batch, args.seed, problems)
        db = bench_dashboard(scratch, args.interval, args.other_series, args.queries, args.batch, args.seed, problems)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
    byte_rows.append(
        [
            f"metric rollups (5m + 1h) of the {db['series']}-series dashboard store",
            f"{db['rollup_rows']:,} rows",
            f"{db['rollup_bytes'] / 1e6:,.2f}",
            f"{db['rollup_bytes'] / db['rollup_rows']:,.1f} per row",
            "",
            "",
            "",
        ]
    )
    tc50, tc99 = pct(tr["cold"], 50), pct(tr["cold"], 99)
    dc50, dc99 = pct(db["cold"], 50), pct(db["cold"], 99)
    lines = [
        f"machine: {machine()}",
        f"records per signal: {args.n:,}, batch: {args.batch:,}, default Settings "
        f"(row groups of {tael.Settings().cold_row_group_rows:,} rows, zstd level "
        f"{tael.Settings().cold_compression_level})",
        "",
        "Compaction (one signal per UTC day, timed per `compact()` call):",
        "",
        table(["signal", "records", "seconds", "records/s", "cold files written", "rollup rows"], comp_rows),
        "",
        "Bytes per record, cold tier against SQLite (same records):",
        "",
        table(
            [
                "signal",
                "records",
                "tael cold (MB)",
                "tael cold (B/record)",
                "SQLite (MB)",
                "SQLite (B/record)",
                "SQLite / tael",
            ],
            byte_rows,
        ),
        "",
        f"Reads: get_trace over {tr['partitions']} daily partitions ({tr['spans']:,} spans, {tr['traces']:,} "
        f"traces, {tr['cold_files']} cold files, compacted in {tr['compact_s']:.1f} s, "
        f"{tr['spans'] / tr['compact_s']:,.0f} spans/s), {tr['lookups']} random ids; dashboard: "
        f"1 of {db['series']} series, {db['series_points']:,} points each ({args.interval} s apart, "
        f"{db['points']:,} in all, compacted in {db['compact_s']:.1f} s), 24 h at 5 m step = {db['buckets']} "
        f"buckets, {args.queries} queries:",
        "",
        table(
            ["query", "hot p50 (ms)", "hot p99 (ms)", "cold p50 (ms)", "cold p99 (ms)", "target (cold p50)", "result"],
            [
                [
                    f"get_trace, {tr['partitions']} daily partitions",
                    ms(pct(tr["hot"], 50)),
                    ms(pct(tr["hot"], 99)),
                    ms(tc50),
                    ms(tc99),
                    f"< {TRACE_TARGET_MS:g} ms",
                    verdict(tc50, TRACE_TARGET_MS),
                ],
                [
                    "aggregate_metrics 24 h / 5 m (288 buckets)",
                    ms(pct(db["hot"], 50)),
                    ms(pct(db["hot"], 99)),
                    ms(dc50),
                    ms(dc99),
                    f"< {DASHBOARD_TARGET_MS:g} ms",
                    verdict(dc50, DASHBOARD_TARGET_MS),
                ],
            ],
        ),
    ]
    if problems:
        lines += ["", "PROBLEMS (results read back were wrong):", *(f"- {p}" for p in problems)]
    out = "\n".join(lines)
    print(out)
    if problems:
        raise SystemExit(1)
    return out


if __name__ == "__main__":
    main()
