"""Issue 16 (columnar data path): every row of the issue's "Targets" table, measured in
one script, tael against SQLite in the same run where the table asks for it.

The numbers in docs/benchmarks.md came from:

    python benchmarks/columnar.py

(every measure at its default size; ``--only a,b`` runs some of them, ``--quick``
is the smoke mode the test suite runs, tiny sizes, under a minute). One measure:

    python benchmarks/columnar.py --only spans_list,spans_table   # 1, 2
    python benchmarks/columnar.py --only logs,metrics             # 3
    python benchmarks/columnar.py --only spans_100                # 4
    python benchmarks/columnar.py --only log_search               # 5
    python benchmarks/columnar.py --only spans_list,compaction    # 6, next to the ingest rate
    python benchmarks/columnar.py --only compaction_rss --keep /big/disk/tael-day   # 7
    python benchmarks/columnar.py --only reopen                   # 8
    python benchmarks/columnar.py --only hot_search,get_trace,hot_bytes   # 9, 10, 12: one store
    python benchmarks/columnar.py --only dashboard                # 11
    python benchmarks/columnar.py --only serve                    # 13 (also: otlp_load.py --duration 600)

Inputs are generated before any clock starts and then ``gc.freeze()``-d, so the
cyclic collector does not rescan them during the timed calls. Peers and data
come from the other scripts (imported, not copied):

1. ``spans_list``: durable span ingest from ``list[tael.Span]`` (``tael._workload``
   spans, 8-12 attributes, 1-3 events), batches of 1,000, ``--ingest-n``
   (200,000) spans, each batch fsynced before the next; tael's clock stops when
   ``flush()`` returns (applied and searchable): ``benchmarks/ingest.py``'s
   ``run_tael``. SQLite: ``benchmarks/compare.py``'s peer (WAL,
   ``synchronous=FULL``, indexes on time, trace id and (service, time), one
   transaction per batch). Median of ``--repeats`` (3) runs, systems
   interleaved in each round, a fresh store each run;
2. ``spans_table``: the same spans, one ``tael.spans_table(batch)`` per batch
   built before the clock, inserted with ``insert_spans(table)``; against the
   same SQLite runs. ``n/a`` while tael has no ``spans_table``;
3. ``logs``, ``metrics``: as 1, ~200-byte log bodies (``benchmarks/search.py``'s
   corpus; SQLite also keeps its FTS5 index, as in compare.py) and
   ``tael._workload`` metric points;
4. ``spans_100``: as 1 with batches of 100;
5. ``log_search``: log ingest until searchable: ``--ingest-n`` logs of the same
   corpus, batches of 1,000, default Settings, clock until ``flush()`` returns
   (it commits the full-text index); every record must be an index document;
6. ``compaction``: ``--compaction-n`` (200,000) spans of one past UTC day,
   inserted in batches of 1,000, then ``compact(before=<end of that day>)``
   timed: spans moved per second, median of ``--repeats``, printed next to
   the ``spans_list`` rate when both run;
7. ``compaction_rss``: a store holding one UTC day of ``--compaction-spans``
   (10,000,000) spans, built in a child process with the fastest public insert
   there is (``spans_table`` if tael has it, else lists; 10,000-span batches,
   ``durability="os"``, flushed every 100,000); then another child process that
   only opens the store and compacts the day reports its peak RSS (VmHWM; it
   counts LMDB's memory-mapped pages too) and, sampled every 0.2 s, its
   anonymous RSS. ``--keep DIR`` keeps the built store in DIR and reuses it
   (each run compacts a copy) as long as tael/ is the code that built it
   (10M realistic spans take ~11 GB in today's hot tier, twice that with the copy);
8. ``reopen``: compare.py's recovery measure: a child writes spans in fsynced
   1,000-span batches until its WAL holds ``--reopen-mb`` (200) MB and SIGKILLs
   itself; tael's hot tier and text index are then put back as they were before
   the first write (``unapplied=True``: tael's applier keeps up with the writer,
   so otherwise little of the WAL is unapplied at the kill; the issue asks for
   200 MB unapplied); then the time to open the store and count: MB of WAL
   replayed per second (SQLite and DuckDB the same way, their WALs never
   checkpointed);
9. ``hot_search``: compare.py's lean spans (20 services, 3% errors) over the
   24 hours before a fixed ``now``, ``--search-spans`` (10,000,000) of them,
   built by compare.py's build worker (tael and SQLite), tael compacted at
   ``now - 1 h`` as the maintenance loop would leave it, reopened; then
   ``query_traces(service=..., status="error", min_duration_ms=20, start=now -
   1 h, end=now, limit=100)``, ``--queries`` (50) calls cycling through the
   services, p50 and p99; SQLite the same query (answers must agree);
10. ``get_trace``: on that store, ``--lookups`` (1,000) random trace ids from
    the last hour (hot in tael), p50 and p99; SQLite the same ids;
11. ``dashboard``: ``benchmarks/cold.py``'s dashboard: one metric series of 20,
    a point every 10 s over 25 hours, ``aggregate_metrics(name, service=...,
    attributes=..., start=day, end=day + 24 h, step="5m")`` (288 buckets), p50
    hot (before compaction) and cold (after, store reopened);
12. ``hot_bytes``: the ``hot_search`` store right after it is built (all
    ``--search-spans`` spans hot): LMDB pages in use (``last_pgno + 1`` times
    the page size, from the environment's info and stat) and the size of
    ``hot/data.mdb``, per span; SQLite's whole file per span beside it;
13. ``serve``: ``benchmarks/otlp_load.py``'s sustained mode: ``tael serve`` with
    ``hot_window_s=300`` and its maintenance loop on, ``--serve-clients`` (4)
    processes sending 500-span requests stamped with the send time for
    ``--serve-duration`` (600) s; samples every 10 s; the accepted rate against
    today's ``otlp_load.py`` figure and whether the hot tier, data.mdb and RSS
    stayed flat (mean of the last third within 20% of the middle third).

Answers are checked (stored counts, search hits equal SQLite's, trace sizes,
dashboard buckets); the script exits 1 if anything read back is wrong.
Ratios are tael / SQLite: above 1x tael is faster for rates, below 1x tael is
faster or smaller for milliseconds and bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tael
from benchmarks import otlp_load
from benchmarks._common import machine, median
from benchmarks.analytics import DAY_NS, HOUR_NS, NOW_NS, SERVICES
from benchmarks.cold import bench_dashboard, day_ns, pct
from benchmarks.compare import (
    SQLITE_CACHE_KIB,
    ScaleSpans,
    bench_recovery,
    file_bytes,
    ingest_sqlite,
    ingest_tael,
    run_worker,
    sig,
    span_store_paths,
    sqlite_files,
    timed_calls,
)
from benchmarks.ingest import batches
from benchmarks.search import Corpus, timed_ingest
from tael._workload import Workload

ROOT = Path(__file__).resolve().parent.parent
MEASURES = (
    "spans_list",
    "spans_table",
    "logs",
    "metrics",
    "spans_100",
    "log_search",
    "compaction",
    "compaction_rss",
    "reopen",
    "hot_search",
    "get_trace",
    "dashboard",
    "hot_bytes",
    "serve",
)
INGEST_MEASURES = ("spans_list", "spans_table", "logs", "metrics", "spans_100")
SCALE_MEASURES = ("hot_search", "get_trace", "hot_bytes")

# the targets
SPANS_LIST_X = 4.0  # x SQLite
SPANS_TABLE_X = 10.0
LOGS_METRICS_X = 4.0
SPANS_100_X = 3.0
LOG_SEARCH_RATE = 100_000  # logs/s
COMPACTION_RATE = 150_000  # spans/s, and faster than ingest
COMPACTION_RSS_MIB = 500
SERVE_RATE_X = 2.0  # x today's otlp_load.py figure
SERVE_FLAT = otlp_load.SUSTAINED_FLAT
REOPEN_MBS = 100.0
HOT_SEARCH_MS = 20.0  # p50
GET_TRACE_MS = 1.0  # p99
DASHBOARD_MS = 5.0  # p50, hot and cold
HOT_BYTES = 150.0  # per span

SEARCH_LIMIT = 100
MIN_DURATION_MS = 20
BUILD_BATCH = 10_000
BUILD_CHUNK = 100_000


def progress(message: str) -> None:
    print(f"[columnar.py {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def check(ok: bool, problems: list[str], message: str) -> None:
    if not ok:
        problems.append(message)


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """Inputs are generated: park them (and everything else alive) outside the cyclic
    collector's generations while the clocks run, as the issue asks."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def spans_table_fn() -> Callable[[Sequence[tael.Span]], Any] | None:
    """``tael.spans_table`` once the columnar API exists, else None."""
    fn: Callable[[Sequence[tael.Span]], Any] | None = getattr(tael, "spans_table", None)
    return fn


def fastest_inputs(spans: Sequence[tael.Span], size: int) -> list[Any]:
    """Batches of ``size`` spans in the fastest form ``insert_spans`` takes: Arrow tables if
    tael can build them, else the lists themselves."""
    make = spans_table_fn()
    parts = batches(spans, size)
    return [make(b) for b in parts] if make is not None else parts


# ---------------------------------------------------------------- the table


class Row:
    """One line of the table: measure | tael | SQLite | ratio | target | met."""

    def __init__(
        self,
        measure: str,
        tael_value: float | str | None,
        fmt: Callable[[float], str],
        sqlite_value: float | None = None,
        *,
        target: str = "-",
        met: bool | None = None,
        ratio: float | None = None,
    ) -> None:
        if ratio is None and isinstance(tael_value, float | int) and sqlite_value:
            ratio = tael_value / sqlite_value
        self.cells = [
            measure,
            tael_value if isinstance(tael_value, str) else "-" if tael_value is None else fmt(tael_value),
            "-" if sqlite_value is None else fmt(sqlite_value),
            "-" if ratio is None else f"{sig(ratio)}x",
            target,
            "-" if met is None else ("yes" if met else "no"),
        ]


HEADER = ["measure", "tael", "SQLite", "ratio", "target", "met"]


def rate(v: float) -> str:
    return f"{v:,.0f}"


def msec(v: float) -> str:
    return sig(v * 1e3)


def one(v: float) -> str:
    return f"{v:,.1f}"


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(r.cells) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- 1-4: ingest


def bench_ingest(root: Path, n: int, repeats: int, want: set[str], notes: list[str]) -> dict[str, dict[str, float]]:
    """Records/s per (case, system); cases: spans (1,000), logs, metrics, spans_100."""
    make_table = spans_table_fn()
    cases: dict[str, tuple[str, list[tuple[str, list[Any]]]]] = {}
    progress(f"ingest: generating {n:,} records per signal")
    spans = Workload(seed=1).spans(n) if want & {"spans_list", "spans_table", "spans_100"} else []
    if want & {"spans_list", "spans_table"}:
        lists = batches(spans, 1000)
        systems: list[tuple[str, list[Any]]] = []
        if "spans_list" in want:
            systems.append(("tael_list", lists))
        if "spans_table" in want and make_table is not None:
            systems.append(("tael_table", [make_table(b) for b in lists]))
        cases["spans"] = ("spans", [*systems, ("sqlite", lists)])
    if "logs" in want:
        logs = Corpus(seed=1, start_ns=NOW_NS - DAY_NS, step_ns=max(2, DAY_NS // n)).logs(n)
        cases["logs"] = ("logs", [("tael", batches(logs, 1000)), ("sqlite", batches(logs, 1000))])
    if "metrics" in want:
        points = Workload(seed=2).metrics(n)
        cases["metrics"] = ("metrics", [("tael", batches(points, 1000)), ("sqlite", batches(points, 1000))])
    if "spans_100" in want:
        small = batches(spans, 100)
        cases["spans_100"] = ("spans", [("tael_list", small), ("sqlite", small)])
    runs: dict[tuple[str, str], list[float]] = {}
    with frozen():
        for rep in range(repeats):
            for case, (signal_name, systems) in cases.items():
                for system, data in systems:
                    # tael: one thread, fsync, until flush(); insert_spans takes the lists or the tables
                    run = ingest_sqlite if system == "sqlite" else ingest_tael
                    elapsed = run(root, signal_name, data)
                    runs.setdefault((case, system), []).append(elapsed)
                    progress(f"ingest run {rep + 1}/{repeats}: {case}, {system}: {n / elapsed:,.0f} records/s")
    names = list(cases)
    del cases, spans
    notes.append(
        f"Ingest: {n:,} records per signal, every batch fsynced before the next, median of {repeats} runs "
        "interleaved (tael list, tael table, SQLite in each round), a fresh store per run; tael's clock stops "
        "when flush() returns (applied and searchable); SQLite (compare.py's) keeps an FTS5 index of log bodies, "
        "as tael's clock includes its full-text index."
    )
    return {case: {system: n / median(times) for (c, system), times in runs.items() if c == case} for case in names}


def ingest_rows(res: dict[str, dict[str, float]], want: set[str]) -> list[Row]:
    rows = []
    if "spans_list" in want:
        v = res["spans"]
        rows.append(
            Row(
                "spans_list: durable span ingest from list[Span], batch 1,000, fsync per batch (spans/s)",
                v["tael_list"],
                rate,
                v["sqlite"],
                target=f">= {SPANS_LIST_X:g}x SQLite",
                met=v["tael_list"] >= SPANS_LIST_X * v["sqlite"],
            )
        )
    if "spans_table" in want:
        v = res["spans"]
        table_rate = v.get("tael_table")
        rows.append(
            Row(
                "spans_table: the same from a pyarrow.Table per batch (spans/s)",
                table_rate if table_rate is not None else "n/a (no tael.spans_table)",
                rate,
                v["sqlite"],
                target=f">= {SPANS_TABLE_X:g}x SQLite",
                met=None if table_rate is None else table_rate >= SPANS_TABLE_X * v["sqlite"],
            )
        )
    for signal_name, unit in (("logs", "logs/s"), ("metrics", "points/s")):
        if signal_name in want:
            v = res[signal_name]
            rows.append(
                Row(
                    f"{signal_name}: durable ingest, batch 1,000, fsync per batch ({unit})",
                    v["tael"],
                    rate,
                    v["sqlite"],
                    target=f">= {LOGS_METRICS_X:g}x SQLite",
                    met=v["tael"] >= LOGS_METRICS_X * v["sqlite"],
                )
            )
    if "spans_100" in want:
        v = res["spans_100"]
        rows.append(
            Row(
                "spans_100: durable span ingest from list[Span], batch 100, fsync per batch (spans/s)",
                v["tael_list"],
                rate,
                v["sqlite"],
                target=f">= {SPANS_100_X:g}x SQLite",
                met=v["tael_list"] >= SPANS_100_X * v["sqlite"],
            )
        )
    return rows


# ---------------------------------------------------------------- 5: log ingest until searchable


def bench_log_search(root: Path, n: int, repeats: int, problems: list[str], notes: list[str]) -> Row:
    progress(f"log_search: generating {n:,} logs")
    corpus = Corpus(seed=1, start_ns=day_ns(2024, 1, 1) + HOUR_NS, step_ns=100_000_000)
    data = batches(corpus.logs(n), 1000)
    runs = []
    with frozen():
        for k in range(repeats):
            elapsed, path, store = timed_ingest(root, "insert_logs", data, keep=True)
            assert store is not None
            st = store.stats()
            store.close()
            shutil.rmtree(path)
            check(st.signals["logs"].count == n, problems, f"log_search stored {st.signals['logs'].count}, not {n}")
            check(st.index_documents == n, problems, f"log_search indexed {st.index_documents} documents, not {n}")
            runs.append(elapsed)
            progress(f"log_search run {k + 1}/{repeats}: {n / elapsed:,.0f} logs/s")
    notes.append(
        f"log_search: {n:,} logs (~{corpus.body_bytes / n:.0f}-byte bodies), batch 1,000, default Settings, "
        f"clock until flush() (full-text index committed), median of {repeats}."
    )
    r = n / median(runs)
    return Row(
        "log_search: log ingest until searchable, batch 1,000 (logs/s)",
        r,
        rate,
        target=f">= {LOG_SEARCH_RATE:,} logs/s",
        met=r >= LOG_SEARCH_RATE,
    )


# ---------------------------------------------------------------- 6: compaction throughput


def bench_compaction(
    root: Path, n: int, repeats: int, seed: int, ingest_rate: float | None, problems: list[str], notes: list[str]
) -> Row:
    base = day_ns(2024, 1, 1)
    progress(f"compaction: generating {n:,} spans of one past day")
    spans = Workload(seed=seed, start_ns=base + HOUR_NS).spans(n)
    if spans[-1].start_ns >= base + DAY_NS:
        raise SystemExit(f"--compaction-n {n} is too large: spans spill out of their day")
    data = batches(spans, 1000)
    runs, files = [], 0
    with frozen():
        for k in range(repeats):
            path = Path(tempfile.mkdtemp(dir=root))
            store = tael.Store(path, tael.Settings(durability="os"))
            try:
                for b in data:
                    store.insert_spans(b)
                store.flush()
                t0 = time.perf_counter()
                report = store.compact(before=base + DAY_NS)
                elapsed = time.perf_counter() - t0
                st = store.stats()
            finally:
                store.close()
                shutil.rmtree(path, ignore_errors=True)
            moved = report.records["spans"]
            files = len(report.files_written)
            check(
                moved == n and st.cold_records["spans"] == n and st.hot_records["spans"] == 0,
                problems,
                f"compaction moved {moved} spans (cold {st.cold_records['spans']}, hot {st.hot_records['spans']}), "
                f"expected all {n}",
            )
            runs.append(moved / elapsed)
            progress(f"compaction run {k + 1}/{repeats}: {moved / elapsed:,.0f} spans/s")
    del spans, data
    r = median(runs)
    notes.append(
        f"compaction: {n:,} spans of one UTC day (inserted in 1,000-span batches), compact(before=end of the day), "
        f"{files} cold file(s), median of {repeats}; the ratio is compaction / spans_list ingest (tael) "
        + (f"= {r:,.0f} / {ingest_rate:,.0f}." if ingest_rate else "(spans_list not run: ratio not shown).")
    )
    return Row(
        "compaction: spans moved to Parquet per second (ratio: / spans_list ingest)",
        r,
        rate,
        ratio=r / ingest_rate if ingest_rate else None,
        target=f">= {COMPACTION_RATE:,}/s and > ingest",
        met=r >= COMPACTION_RATE and (ingest_rate is None or r > ingest_rate),
    )


# ---------------------------------------------------------------- 7: peak RSS of a whole-day compaction


def worker_build_day(path: Path, n: int, seed: int) -> dict[str, Any]:
    """Child process: one UTC day of ``n`` spans, in chunks (never all of them in memory)."""
    base = day_ns(2024, 1, 1)
    wl = Workload(seed=seed, start_ns=base + HOUR_NS)
    store = tael.Store(path, tael.Settings(durability="os"))
    spent = 0.0
    done = 0
    try:
        while done < n:
            spans = wl.spans(min(BUILD_CHUNK, n - done))
            if spans[-1].start_ns >= base + DAY_NS:
                raise SystemExit(f"--compaction-spans {n} is too large: spans spill out of their day")
            items = fastest_inputs(spans, BUILD_BATCH)
            t0 = time.perf_counter()
            for item in items:
                store.insert_spans(item)
            store.flush()
            spent += time.perf_counter() - t0
            done += len(spans)
            del spans, items
            if done % 1_000_000 == 0:
                progress(f"  day store: {done:,} spans")
    finally:
        store.close()
    return {"spans": done, "seconds": spent, "tables": spans_table_fn() is not None, "before": base + DAY_NS}


# Runs in its own interpreter: imports tael and nothing else, opens the store, compacts.
COMPACT_CHILD = r"""
import json, sys, threading, time
import tael

def kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

peak = [0]
done = threading.Event()

def sample():
    while True:
        peak[0] = max(peak[0], kb("RssAnon"))
        if done.wait(0.2):
            return

threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
store = tael.Store(sys.argv[1])
opened = time.perf_counter() - t0
t0 = time.perf_counter()
report = store.compact(before=int(sys.argv[2]))
seconds = time.perf_counter() - t0
store.close()
done.set()
print(json.dumps({"moved": report.records["spans"], "seconds": seconds, "open_seconds": opened,
                  "files": len(report.files_written), "vmhwm_kb": kb("VmHWM"),
                  "anon_kb": max(peak[0], kb("RssAnon"))}), flush=True)
"""


def run_child(cmd: list[str], timeout: float = 86_400) -> dict[str, Any]:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"child {cmd[1:3]} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def tael_source_id() -> str:
    """The git tree of tael/ (plus a digest of uncommitted changes to it): a kept store is
    reused only by the code that wrote it, never migrated inside the measurement."""

    def git(*cmd: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    tree = git("rev-parse", "HEAD:tael") or f"version {tael.__version__}"
    diff = git("diff", "HEAD", "--", "tael") + git("ls-files", "--others", "--exclude-standard", "--", "tael")
    return tree + (f"+{hashlib.sha1(diff.encode()).hexdigest()[:12]}" if diff else "")


def bench_compaction_rss(
    root: Path, n: int, seed: int, keep: Path | None, problems: list[str], notes: list[str]
) -> Row:
    here = [sys.executable, str(Path(__file__).resolve())]
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        source = keep / f"day-{n}-seed{seed}"
        marker = keep / f"day-{n}-seed{seed}.json"
    else:
        source = root / "day"
        marker = root / "day.json"
    source_id = tael_source_id()
    built = json.loads(marker.read_text()) if marker.exists() else {}
    if built.get("source") == source_id and (source / "hot" / "data.mdb").exists():
        progress(f"compaction_rss: reusing the day store of {built['spans']:,} spans in {source}")
        how = f"reused from {source}"
    else:
        if built:
            progress(f"compaction_rss: {source} was written by other tael code ({built.get('source')}): rebuilding")
        marker.unlink(missing_ok=True)
        shutil.rmtree(source, ignore_errors=True)
        progress(f"compaction_rss: building one day of {n:,} spans in a child process")
        built = run_child([*here, "--worker", "build-day", "--path", str(source), "--n", str(n), "--seed", str(seed)])
        built["source"] = source_id
        marker.write_text(json.dumps(built))
        how = (
            f"built in {built['seconds']:,.0f} s from {'Arrow tables' if built['tables'] else 'lists of Span'} "
            f"({built['spans'] / built['seconds']:,.0f} spans/s)"
        )
    target = source
    if keep is not None:
        target = root / "day-copy"
        progress(f"compaction_rss: copying {source} to compact the copy")
        shutil.copytree(source, target)
    progress("compaction_rss: a child process opens the store and compacts the day")
    out = run_child([sys.executable, "-c", COMPACT_CHILD, str(target), str(built["before"])])
    shutil.rmtree(target, ignore_errors=True)
    check(out["moved"] == built["spans"], problems, f"compaction_rss moved {out['moved']}, not {built['spans']}")
    peak = out["vmhwm_kb"] / 1024
    notes.append(
        f"compaction_rss: one UTC day of {built['spans']:,} spans, {how}; the compacting process opened the store "
        f"in {out['open_seconds']:.1f} s and compacted in {out['seconds']:,.1f} s "
        f"({out['moved'] / out['seconds']:,.0f} spans/s, {out['files']} file(s)); peak RSS (VmHWM, counts LMDB's "
        f"mapped file pages) {peak:,.0f} MiB, peak anonymous RSS (sampled) {out['anon_kb'] / 1024:,.0f} MiB."
    )
    return Row(
        f"compaction_rss: peak RSS of compacting one day of {built['spans']:,} spans (MiB, VmHWM)",
        peak,
        rate,
        target=f"<= {COMPACTION_RSS_MIB} MiB",
        met=peak <= COMPACTION_RSS_MIB,
    )


# ---------------------------------------------------------------- 8: reopen after kill -9


def bench_reopen(root: Path, mb: float, seed: int, problems: list[str], notes: list[str]) -> Row:
    # compare.py's measure (tael, SQLite and DuckDB), with the whole of tael's WAL unapplied
    rec = bench_recovery(root, mb, seed, problems, unapplied=True)
    mbs = {s: r["replayed_mb"] / r["seconds"] for s, r in rec.items()}
    notes.append(
        "reopen: "
        + "; ".join(
            f"{s} {r['acked']:,} spans acknowledged, {r['wal_mb']:,.1f} MB of WAL on disk, {r['replayed_mb']:,.1f} "
            f"MB replayed in {r['seconds']:.2f} s ({mbs[s]:,.1f} MB/s)"
            for s, r in rec.items()
        )
        + "."
    )
    return Row(
        f"reopen: after kill -9 with ~{mb:g} MB of WAL, MB of WAL replayed per second",
        mbs["tael"],
        one,
        mbs["sqlite"],
        target=f">= {REOPEN_MBS:g} MB/s",
        met=mbs["tael"] >= REOPEN_MBS,
    )


# ---------------------------------------------------------------- 9, 10, 12: the scale store


def lmdb_usage(hot: Path) -> dict[str, int]:
    """Pages in use (high-water: last_pgno + 1), live B-tree pages of every database, page
    size, data.mdb file size. The store must not be open in this process."""
    import lmdb

    env = lmdb.open(str(hot), readonly=True, lock=False, max_dbs=256)
    try:
        info, stat = env.info(), env.stat()
        psize = stat["psize"]
        live = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        with env.begin() as txn:
            names = [bytes(k) for k, _v in txn.cursor()]
            for name in names:
                try:
                    db = env.open_db(name, txn=txn, create=False)
                except lmdb.Error:
                    continue  # a plain key of the main database, not a named one
                s = txn.stat(db)
                live += s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]
        return {
            "pages_bytes": (info["last_pgno"] + 1) * psize,
            "live_bytes": live * psize,
            "psize": psize,
            "file_bytes": (hot / "data.mdb").stat().st_size,
            "dbs": len(names),
        }
    finally:
        env.close()


def bench_scale(
    root: Path, args: argparse.Namespace, want: set[str], problems: list[str], notes: list[str]
) -> list[Row]:
    n = args.search_spans
    gen = ScaleSpans(n, args.seed)
    paths = span_store_paths(root, n)
    built = {}
    for system in ("tael", "sqlite"):
        paths[system].parent.mkdir(parents=True, exist_ok=True)
        progress(f"scale store: {system} builds {n:,} spans in a subprocess (compare.py's build worker)")
        built[system] = run_worker(
            ["build", "--system", system, "--path", str(paths[system]), "--n", str(n), "--seed", str(args.seed)]
        )
    notes.append(
        f"hot_search/get_trace/hot_bytes store: {n:,} lean spans over the 24 h before now (compare.py), built in "
        + ", ".join(f"{s} {b['seconds']:,.1f} s ({n / b['seconds']:,.0f} spans/s)" for s, b in built.items())
        + "."
    )
    rows: list[Row] = []
    if "hot_bytes" in want:
        use = lmdb_usage(paths["tael"] / "hot")
        lite = file_bytes(*sqlite_files(paths["sqlite"])) / n
        notes.append(
            f"hot_bytes: all {n:,} spans hot; LMDB page {use['psize']:,} B, {use['dbs']} databases; pages in use "
            f"(last_pgno + 1) {use['pages_bytes'] / 1e6:,.1f} MB, live B-tree pages {use['live_bytes'] / 1e6:,.1f} MB "
            f"({use['live_bytes'] / n:,.1f} B/span), data.mdb {use['file_bytes'] / 1e6:,.1f} MB; SQLite's file after "
            "a truncating checkpoint."
        )
        for label, key in (("LMDB pages in use", "pages_bytes"), ("hot/data.mdb file size", "file_bytes")):
            per = use[key] / n
            rows.append(
                Row(
                    f"hot_bytes: hot tier bytes per span, {label} ({n:,} spans)",
                    per,
                    one,
                    lite,
                    target=f"<= {HOT_BYTES:g}",
                    met=per <= HOT_BYTES,
                )
            )
    if not want & {"hot_search", "get_trace"}:
        return rows

    cut = NOW_NS - HOUR_NS
    hot_traces: list[tuple[str, int]] = []
    for j in range(gen.count):
        if gen.bounds(j)[1] >= cut:
            hot_traces += [(tid, size) for tid, size, t in gen.columns(j).traces if t >= cut]
    rng = random.Random(args.seed + n)
    ids = rng.sample(hot_traces, min(args.lookups, len(hot_traces)))
    services = [SERVICES[i % len(SERVICES)] for i in range(args.queries)]
    min_ns = MIN_DURATION_MS * 1_000_000

    progress(f"scale store: tael compacts everything before now - 1 h ({len(hot_traces):,} traces stay hot)")
    store = tael.Store(paths["tael"])
    t0 = time.perf_counter()
    report = store.compact(before=cut)
    compact_s = time.perf_counter() - t0
    store.checkpoint()
    store.close()
    store = tael.Store(paths["tael"])  # reopened: no cached footers
    try:
        hot = store.stats().hot_records["spans"]

        def tael_search(svc: str) -> list[tuple[str, str]]:
            got = store.query_traces(
                service=svc, status="error", min_duration_ms=MIN_DURATION_MS, start=cut, end=NOW_NS, limit=SEARCH_LIMIT
            )
            return sorted((s.trace_id, s.span_id) for s in got)

        with frozen():
            progress("scale store: queries on tael")
            t_search, a_search = timed_calls(tael_search, services) if "hot_search" in want else ([], [])
            t_trace, a_trace = timed_calls(lambda tid: len(store.get_trace(tid)), [t for t, _ in ids])
    finally:
        store.close()
    sq = sqlite3.connect(paths["sqlite"], isolation_level=None, check_same_thread=False)
    sq.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    search_sql = (
        "SELECT trace_id, span_id FROM spans WHERE service = ? AND status = 'error' AND end_ns - start_ns >= ? "
        "AND start_ns >= ? AND start_ns < ? ORDER BY start_ns DESC LIMIT ?"
    )
    try:
        with frozen():
            progress("scale store: queries on SQLite")
            s_search, b_search = (
                timed_calls(
                    lambda svc: sorted(sq.execute(search_sql, (svc, min_ns, cut, NOW_NS, SEARCH_LIMIT)).fetchall()),
                    services,
                )
                if "hot_search" in want
                else ([], [])
            )
            s_trace, b_trace = timed_calls(
                lambda tid: len(sq.execute("SELECT * FROM spans WHERE trace_id = ?", (tid,)).fetchall()),
                [t for t, _ in ids],
            )
    finally:
        sq.close()
    wrong = [tid for (tid, size), a, b in zip(ids, a_trace, b_trace, strict=True) if not a == b == size]
    check(not wrong, problems, f"get_trace span counts differ from the generated traces for {wrong[:3]}")
    searched = services if "hot_search" in want else []
    differ = [svc for svc, a, b in zip(searched, a_search, b_search, strict=True) if [tuple(x) for x in b] != a]
    check(not differ, problems, f"hot_search: tael and SQLite return different spans for {differ[:3]}")
    hits = sorted(len(a) for a in a_search)
    notes.append(
        f"hot_search/get_trace: tael compacted at now - 1 h in {compact_s:,.1f} s ({report.records['spans']:,} spans "
        f"moved, {hot:,} hot), reopened; "
        + (f"{len(searched)} searches (hits per search {hits[0]}-{hits[-1]}), " if hits else "")
        + f"{len(ids)} get_trace ids from the last hour; answers agree with SQLite."
    )
    if "hot_search" in want:
        p50 = pct(t_search, 50)
        rows.append(
            Row(
                f"hot_search: service + error + >= 20 ms, last hour, newest 100, p50 (ms, {n:,} spans)",
                p50,
                msec,
                pct(s_search, 50),
                target=f"<= {HOT_SEARCH_MS:g} ms",
                met=p50 * 1e3 <= HOT_SEARCH_MS,
            )
        )
        rows.append(
            Row(
                f"hot_search: the same, p99 (ms, {n:,} spans)",
                pct(t_search, 99),
                msec,
                pct(s_search, 99),
            )
        )
    if "get_trace" in want:
        rows.append(Row(f"get_trace: hot, p50 (ms, {n:,} spans)", pct(t_trace, 50), msec, pct(s_trace, 50)))
        p99 = pct(t_trace, 99)
        rows.append(
            Row(
                f"get_trace: hot, p99 (ms, {n:,} spans)",
                p99,
                msec,
                pct(s_trace, 99),
                target=f"<= {GET_TRACE_MS:g} ms",
                met=p99 * 1e3 <= GET_TRACE_MS,
            )
        )
    return rows


# ---------------------------------------------------------------- 11: dashboard


def bench_dash(root: Path, args: argparse.Namespace, problems: list[str], notes: list[str]) -> list[Row]:
    progress("dashboard: cold.py's 24 h / 5 min dashboard, hot then cold")
    # cold.py generates its points inside, where they cannot be frozen from here: the collector is
    # off for the whole call instead, so it never rescans them between the timed queries either
    gc.collect()
    gc.disable()
    try:
        d = bench_dashboard(root, args.interval, args.other_series, args.dashboard_queries, 1000, args.seed, problems)
    finally:
        gc.enable()
    notes.append(
        f"dashboard: 1 of {d['series']} series, {d['series_points']:,} points each ({args.interval} s apart, "
        f"{d['points']:,} in all), {d['buckets']} buckets; {len(d['hot'])} hot calls, then compacted "
        f"({d['compact_s']:.1f} s), reopened, {len(d['cold'])} cold calls; the cyclic collector off throughout."
    )
    rows = []
    for tier in ("hot", "cold"):
        p50 = pct(d[tier], 50)
        rows.append(
            Row(
                f"dashboard: 1 series, 24 h at 5 min, {tier}, p50 (ms)",
                p50,
                msec,
                target=f"<= {DASHBOARD_MS:g} ms",
                met=p50 * 1e3 <= DASHBOARD_MS,
            )
        )
    return rows


# ---------------------------------------------------------------- 13: tael serve, sustained


def bench_serve(args: argparse.Namespace, problems: list[str], notes: list[str]) -> tuple[list[Row], list[str]]:
    progress(f"serve: tael serve under load for {args.serve_duration:g} s")
    quick = args.quick
    r = otlp_load.sustained(
        args.serve_duration,
        clients=args.serve_clients,
        spans_per_request=100 if quick else 500,
        hot_window_s=3.0 if quick else 300.0,
        maintenance_interval_s=1.0 if quick else None,
        sample_s=1.0 if quick else 10.0,
    )
    check(r["stored"] >= r["accepted"], problems, f"serve: {r['accepted']:,} spans accepted, {r['stored']:,} stored")
    baseline = args.otlp_baseline
    rows = [
        Row(
            f"serve: tael serve sustained {r['duration']:g} s, maintenance on, hot window {r['hot_window_s']:g} s "
            "(spans/s accepted; ratio: / today's otlp_load.py)",
            r["rate"],
            rate,
            ratio=r["rate"] / baseline,
            target=f">= {SERVE_RATE_X:g}x {baseline:,.0f}",
            met=r["rate"] >= SERVE_RATE_X * baseline,
        )
    ]
    for key, label in (("hot", "hot tier spans"), ("mdb", "hot/data.mdb bytes"), ("rss", "server RSS")):
        v = r["ratios"][key]
        rows.append(
            Row(
                f"serve: {label}, mean of the last third / middle third",
                v,
                lambda x: f"{x:.2f}",
                target=f"flat (within {SERVE_FLAT:.0%})",
                met=None if v is None else r["flat"][key],
            )
        )
    notes.append(
        f"serve: today's otlp_load.py figure is {baseline:,.0f} spans/s (docs/benchmarks.md, issue 6; "
        "--otlp-baseline); samples below."
    )
    return rows, otlp_load.sustained_report(r)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help=f"comma-separated measures (default: all): {', '.join(MEASURES)}")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 run each: the whole script in under a minute")
    ap.add_argument("--ingest-n", type=int, default=200_000, help="records per signal for 1-5 (200,000)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of 1-6; the median is reported (3)")
    ap.add_argument("--compaction-n", type=int, default=200_000, help="spans for the compaction rate (200,000)")
    ap.add_argument("--compaction-spans", type=int, default=10_000_000, help="spans of the RSS day (10,000,000)")
    ap.add_argument("--keep", type=Path, help="keep the compaction_rss day store in KEEP and reuse it from there")
    ap.add_argument("--reopen-mb", type=float, default=200, help="WAL written before the kill -9 (200 MB)")
    ap.add_argument("--search-spans", type=int, default=10_000_000, help="spans of the hot_search store (10M)")
    ap.add_argument("--queries", type=int, default=50, help="hot_search calls (50)")
    ap.add_argument("--lookups", type=int, default=1000, help="get_trace ids (1,000)")
    ap.add_argument("--interval", type=int, default=10, help="dashboard: seconds between points (10)")
    ap.add_argument("--other-series", type=int, default=19, help="dashboard: series besides the one asked (19)")
    ap.add_argument("--dashboard-queries", type=int, default=200, help="dashboard: cold calls (200; hot: 1/20)")
    ap.add_argument("--serve-duration", type=float, default=600.0, help="serve: seconds of load (600)")
    ap.add_argument("--serve-clients", type=int, default=4, help="serve: client processes (4)")
    ap.add_argument(
        "--otlp-baseline",
        type=float,
        default=otlp_load.TODAY_SPANS_S,
        help=f"serve: today's otlp_load.py spans/s ({otlp_load.TODAY_SPANS_S:,})",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=".bench-data", help="scratch directory (on the disk being measured)")
    ap.add_argument("--worker", choices=["build-day"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "build-day":
        print(json.dumps(worker_build_day(Path(args.path), args.n, args.seed)), flush=True)
        return ""
    want = set(MEASURES) if not args.only else {m.strip() for m in args.only.split(",") if m.strip()}
    unknown = want - set(MEASURES)
    if unknown:
        ap.error(f"unknown measure(s) {', '.join(sorted(unknown))}; choose from {', '.join(MEASURES)}")
    if args.quick:
        args.ingest_n, args.repeats, args.compaction_n, args.compaction_spans = 3_000, 1, 3_000, 20_000
        args.reopen_mb, args.search_spans, args.queries, args.lookups = 2, 20_000, 10, 50
        args.interval, args.other_series, args.dashboard_queries = 60, 3, 20
        args.serve_duration, args.serve_clients = 10.0, 2
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root))
    problems: list[str] = []
    notes: list[str] = []
    rows: list[Row] = []
    serve_lines: list[str] = []
    wall0 = time.perf_counter()
    try:
        ingest: dict[str, dict[str, float]] = {}
        if want & set(INGEST_MEASURES):
            ingest = bench_ingest(scratch, args.ingest_n, args.repeats, want, notes)
            rows += ingest_rows(ingest, want)
        if "log_search" in want:
            rows.append(bench_log_search(scratch, args.ingest_n, args.repeats, problems, notes))
        if "compaction" in want:
            list_rate = ingest.get("spans", {}).get("tael_list")
            rows.append(
                bench_compaction(scratch, args.compaction_n, args.repeats, args.seed, list_rate, problems, notes)
            )
        if "compaction_rss" in want:
            rows.append(bench_compaction_rss(scratch, args.compaction_spans, args.seed, args.keep, problems, notes))
        if "reopen" in want:
            rows.append(bench_reopen(scratch, args.reopen_mb, args.seed, problems, notes))
        if want & set(SCALE_MEASURES):
            rows += bench_scale(scratch, args, want, problems, notes)
        if "dashboard" in want:
            rows += bench_dash(scratch, args, problems, notes)
        if "serve" in want:
            serve_rows, serve_lines = bench_serve(args, problems, notes)
            rows += serve_rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
    order = {m: i for i, m in enumerate(MEASURES)}
    rows.sort(key=lambda r: order[r.cells[0].split(":", 1)[0]])  # stable: a measure's rows keep their order
    command = "python benchmarks/columnar.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"machine: {machine()}",
        f"command: {command.strip()}",
        "",
        markdown(rows),
        "",
        *(f"- {note}" for note in notes),
        "- Ratios are tael / SQLite (above 1x tael is faster for rates, below 1x faster or smaller for ms and "
        "bytes) unless the measure says otherwise.",
    ]
    if serve_lines:
        lines += ["", *serve_lines]
    lines += ["", f"wall time: {time.perf_counter() - wall0:.0f} s"]
    if problems:
        lines += ["", "PROBLEMS (results read back were wrong):", *(f"- {p}" for p in problems[:30])]
    out = "\n".join(lines)
    print(out)
    if problems:
        raise SystemExit(1)
    return out


if __name__ == "__main__":
    main()
