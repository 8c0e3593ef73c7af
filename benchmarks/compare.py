"""tael side by side with SQLite and DuckDB: the same generated records, the same
batches, the same durability, one markdown table of medians with ratios tael / peer.

The numbers in docs/benchmarks.md came from:

    python benchmarks/compare.py

(defaults: ``--scales 100000,1000000,10000000``; ``--quick`` is the few-seconds
smoke mode the test suite runs). Everything below runs on one machine, one
system at a time, with the OS page cache warm (files were just written).

Peers, set up as a competent user would:

- SQLite (Python's sqlite3): ``journal_mode=WAL``, ``synchronous=FULL``, a
  256 MiB page cache, one table per signal with indexes on time, trace id and
  (service, time) (metrics: (name, service, time)), an FTS5 index over log
  bodies kept by a trigger, attributes as JSON text, one transaction per batch;
- DuckDB: the same tables and columns, each batch converted to an Arrow table
  and inserted with ``INSERT ... SELECT`` in its own transaction (DuckDB
  fdatasyncs its WAL at every commit, checked with strace), an ART index on
  trace id (spans and logs), zone maps for everything else;
- tael: default Settings (``durability="fsync"``: each insert returns after
  its WAL fsync); ingest clocks stop when ``flush()`` returns, i.e. when every
  record is applied to the hot tier and searchable.

Measured (each row says its scale; the output's notes say how each was built):

1. ingest throughput per signal (spans: ``tael._workload`` traces with 8-12
   attributes and 1-3 events; logs: ~200-byte bodies of Zipf-distributed words
   from ``benchmarks/search.py``; metric points: ``tael._workload``), batches of
   1,000 and of 100, every batch durable (fsync) before the next, ``--ingest-n``
   records (200,000) per signal, a fresh store each run, median of
   ``--repeats`` (3). Records are generated before any clock starts and every
   system gets the same objects (peers convert them to rows / Arrow inside the
   clock, as tael encodes them inside its clock);
2. per scale (``--scales``): N lean spans (traces of 3-7 spans, 20 services,
   3 attributes, 3% errors) spread over the 24 hours before a fixed ``now``,
   built by each system in its own subprocess from 10,000-record batches in
   chunks of 100,000 (generated and converted to the system's native input
   before the clock; tael ``durability="os"`` + ``flush()`` per chunk, SQLite
   ``synchronous=NORMAL`` + a truncating checkpoint at the end, DuckDB a commit
   per batch + ``CHECKPOINT``): build throughput and the peak RSS of that
   process (VmHWM, and anonymous memory sampled every 0.2 s). Then tael runs
   ``compact(before=now - 1 h)`` (what the maintenance loop would leave: the
   last hour hot, the rest in Parquet) and is reopened (no cached footers);
   ``get_trace`` of ``--lookups`` random trace ids (p50, p99) and of ids from
   the last hour (hot), a filtered trace search (service + status=error +
   duration >= 20 ms over the last hour, limit 100), and bytes on disk per span
   (tael: ``stats().disk_bytes`` after compaction and ``checkpoint()``; peers:
   their files after a checkpoint, no VACUUM);
3. ``--aux-n`` log records and metric points (1,000,000 each), built like the
   scale stores, compacted at ``now - 1 h`` (tael): log text search (tael
   ``query_logs(text=...)``, SQLite FTS5 ``MATCH``, DuckDB ``ILIKE``) for a
   phrase, newest 20, and for a rare phrase, every hit; a dashboard query (one
   metric series, 24 h, 5-minute buckets: tael ``aggregate_metrics(step="5m")``,
   peers ``GROUP BY`` bucket); bytes on disk per log record and per point;
4. tael ``get_trace`` over 30 daily cold partitions (``benchmarks/cold.py``);
5. recovery: a subprocess writes the realistic spans in 1,000-record fsynced
   batches until its write-ahead log holds ``--recovery-mb`` MB (tael: WAL
   segments retained because the hot-tier applier had not caught up, with
   ``Settings(max_unapplied_records=10**9)``; SQLite: ``wal_autocheckpoint=0``;
   DuckDB: ``checkpoint_threshold`` 1 TB) and SIGKILLs itself right after its
   last insert returns; then the time to open the store and answer a count
   (tael: ``tael.Store(path)``, which replays the WAL past the hot tier's
   applied position; MB of WAL replayed per second).

Every answer is checked: each ``get_trace`` returns the trace's span count in
all three systems, trace searches and text searches return the same records in
all three (and as many as the generated data holds), the dashboard buckets
agree, and stores hold what was inserted (after a crash: every acknowledged
record). The script exits 1 if any answer is wrong. Latencies are per call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
import pyarrow as pa

import tael
from benchmarks._common import (
    _events,
    machine,
    median,
    sqlite_insert_logs,
    sqlite_insert_metrics,
    sqlite_insert_spans,
    table,
)
from benchmarks.analytics import CHILD_OFFSET_NS, DAY_NS, HOUR_NS, NOW_NS, OPERATIONS, SERVICES
from benchmarks.cold import bench_traces, pct
from benchmarks.ingest import batches, run_tael
from benchmarks.search import _PHRASES, Corpus
from tael._fsutil import dir_size
from tael._workload import Workload

SYSTEMS = ("tael", "sqlite", "duckdb")
NAMES = {"tael": "tael", "sqlite": "SQLite", "duckdb": "DuckDB"}
SIGNALS = ("spans", "logs", "metrics")
BUILD_BATCH = 10_000
CHUNK_BATCHES = 10  # build chunks of 100,000 records
SEARCH_LIMIT = 100
MIN_DURATION_MS = 20
STEP_NS = 300 * 1_000_000_000
SQLITE_CACHE_KIB = 256 * 1024
MARKERS = (
    "zephyr quokka marmalade",
    "xylophone walrus pepperoni",
    "jukebox narwhal quesadilla",
    "kazoo platypus vindaloo",
    "yodel wombat goulash",
)
METRIC_NAMES = ("cpu.utilization", "memory.rss", "queue.depth", "http.requests", "gc.pause", "disk.io")
INGEST_TARGET = {"sqlite": 4.0, "duckdb": 2.0}  # tael at least this many times the peer
HOT_TRACE_TARGET_MS = 1.0
COLD_TRACE_TARGET_MS = 10.0
DASHBOARD_TARGET_MS = 5.0
COLD_BYTES_TARGET = 0.25  # tael cold bytes per span / SQLite bytes per span, at most
REPLAY_TARGET_MBS = 200.0


def progress(message: str) -> None:
    print(f"[compare.py {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def check(ok: bool, problems: list[str], message: str) -> None:
    if not ok:
        problems.append(message)


def file_bytes(*paths: Path) -> int:
    """Bytes allocated (capped at the apparent size), as ``stats().disk_bytes`` counts them."""
    total = 0
    for p in paths:
        if p.exists():
            st = p.stat()
            total += min(st.st_size, st.st_blocks * 512)
    return total


# ---------------------------------------------------------------- SQLite


SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (trace_id TEXT, span_id TEXT, parent_span_id TEXT, name TEXT, service TEXT,
  start_ns INTEGER, end_ns INTEGER, kind TEXT, status TEXT, status_message TEXT, attributes TEXT,
  resource TEXT, scope_name TEXT, scope_version TEXT, events TEXT, links TEXT, trace_state TEXT, flags INTEGER);
CREATE INDEX IF NOT EXISTS spans_time ON spans(start_ns);
CREATE INDEX IF NOT EXISTS spans_trace ON spans(trace_id);
CREATE INDEX IF NOT EXISTS spans_service ON spans(service, start_ns);
CREATE TABLE IF NOT EXISTS logs (time_ns INTEGER, body TEXT, service TEXT, severity_number INTEGER,
  severity_text TEXT, trace_id TEXT, span_id TEXT, attributes TEXT, resource TEXT, observed_ns INTEGER,
  scope_name TEXT);
CREATE INDEX IF NOT EXISTS logs_time ON logs(time_ns);
CREATE INDEX IF NOT EXISTS logs_trace ON logs(trace_id);
CREATE INDEX IF NOT EXISTS logs_service ON logs(service, time_ns);
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(body, content='logs', content_rowid='rowid');
CREATE TRIGGER IF NOT EXISTS logs_fts_insert AFTER INSERT ON logs BEGIN
  INSERT INTO logs_fts(rowid, body) VALUES (new.rowid, new.body);
END;
CREATE TABLE IF NOT EXISTS metrics (time_ns INTEGER, name TEXT, service TEXT, value REAL, kind TEXT, unit TEXT,
  attributes TEXT, monotonic INTEGER, temporality TEXT);
CREATE INDEX IF NOT EXISTS metrics_time ON metrics(time_ns);
CREATE INDEX IF NOT EXISTS metrics_series ON metrics(name, service, time_ns);
"""
SQLITE_INSERT: dict[str, Callable[[sqlite3.Connection, Sequence[Any]], None]] = {
    "spans": sqlite_insert_spans,
    "logs": sqlite_insert_logs,
    "metrics": sqlite_insert_metrics,
}


def sqlite_connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    conn.executescript(SQLITE_SCHEMA)
    return conn


def sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


# ---------------------------------------------------------------- DuckDB

DUCK_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (trace_id VARCHAR, span_id VARCHAR, parent_span_id VARCHAR, name VARCHAR,
  service VARCHAR, start_ns BIGINT, end_ns BIGINT, kind VARCHAR, status VARCHAR, status_message VARCHAR,
  attributes VARCHAR, resource VARCHAR, scope_name VARCHAR, scope_version VARCHAR, events VARCHAR, links VARCHAR,
  trace_state VARCHAR, flags INTEGER);
CREATE INDEX IF NOT EXISTS spans_trace ON spans(trace_id);
CREATE TABLE IF NOT EXISTS logs (time_ns BIGINT, body VARCHAR, service VARCHAR, severity_number INTEGER,
  severity_text VARCHAR, trace_id VARCHAR, span_id VARCHAR, attributes VARCHAR, resource VARCHAR,
  observed_ns BIGINT, scope_name VARCHAR);
CREATE INDEX IF NOT EXISTS logs_trace ON logs(trace_id);
CREATE TABLE IF NOT EXISTS metrics (time_ns BIGINT, name VARCHAR, service VARCHAR, value DOUBLE, kind VARCHAR,
  unit VARCHAR, attributes VARCHAR, monotonic BOOLEAN, temporality VARCHAR);
"""
_S, _I64, _I32 = pa.string(), pa.int64(), pa.int32()
ARROW_SCHEMA = {
    "spans": pa.schema(
        [
            ("trace_id", _S), ("span_id", _S), ("parent_span_id", _S), ("name", _S), ("service", _S),
            ("start_ns", _I64), ("end_ns", _I64), ("kind", _S), ("status", _S), ("status_message", _S),
            ("attributes", _S), ("resource", _S), ("scope_name", _S), ("scope_version", _S), ("events", _S),
            ("links", _S), ("trace_state", _S), ("flags", _I32),
        ]
    ),
    "logs": pa.schema(
        [
            ("time_ns", _I64), ("body", _S), ("service", _S), ("severity_number", _I32), ("severity_text", _S),
            ("trace_id", _S), ("span_id", _S), ("attributes", _S), ("resource", _S), ("observed_ns", _I64),
            ("scope_name", _S),
        ]
    ),
    "metrics": pa.schema(
        [
            ("time_ns", _I64), ("name", _S), ("service", _S), ("value", pa.float64()), ("kind", _S),
            ("unit", _S), ("attributes", _S), ("monotonic", pa.bool_()), ("temporality", _S),
        ]
    ),
}  # fmt: skip


def duck_connect(path: Path, checkpoint_threshold: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    if checkpoint_threshold is not None:
        con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
    con.execute(DUCK_SCHEMA)
    return con


def duck_insert(con: duckdb.DuckDBPyConnection, signal_name: str, tbl: pa.Table) -> None:
    """One batch, one transaction (autocommit): the commit fdatasyncs DuckDB's WAL."""
    con.register("incoming", tbl)
    try:
        con.execute(f"INSERT INTO {signal_name} SELECT * FROM incoming")
    finally:
        con.unregister("incoming")


def arrow_spans(spans: Sequence[tael.Span]) -> pa.Table:
    dumps = json.dumps
    return pa.Table.from_pydict(
        {
            "trace_id": [s.trace_id for s in spans],
            "span_id": [s.span_id for s in spans],
            "parent_span_id": [s.parent_span_id for s in spans],
            "name": [s.name for s in spans],
            "service": [s.service for s in spans],
            "start_ns": [s.start_ns for s in spans],
            "end_ns": [s.end_ns for s in spans],
            "kind": [s.kind for s in spans],
            "status": [s.status for s in spans],
            "status_message": [s.status_message for s in spans],
            "attributes": [dumps(s.attributes) for s in spans],
            "resource": [dumps(s.resource) for s in spans],
            "scope_name": [s.scope_name for s in spans],
            "scope_version": [s.scope_version for s in spans],
            "events": [_events(s) for s in spans],
            "links": [dumps([[ln.trace_id, ln.span_id, ln.attributes] for ln in s.links]) for s in spans],
            "trace_state": [s.trace_state for s in spans],
            "flags": [s.flags for s in spans],
        },
        schema=ARROW_SCHEMA["spans"],
    )


def arrow_logs(logs: Sequence[tael.LogRecord]) -> pa.Table:
    dumps = json.dumps
    return pa.Table.from_pydict(
        {
            "time_ns": [r.time_ns for r in logs],
            "body": [r.body for r in logs],
            "service": [r.service for r in logs],
            "severity_number": [r.severity_number for r in logs],
            "severity_text": [r.severity_text for r in logs],
            "trace_id": [r.trace_id for r in logs],
            "span_id": [r.span_id for r in logs],
            "attributes": [dumps(r.attributes) for r in logs],
            "resource": [dumps(r.resource) for r in logs],
            "observed_ns": [r.observed_ns for r in logs],
            "scope_name": [r.scope_name for r in logs],
        },
        schema=ARROW_SCHEMA["logs"],
    )


def arrow_metrics(points: Sequence[tael.MetricPoint]) -> pa.Table:
    dumps = json.dumps
    return pa.Table.from_pydict(
        {
            "time_ns": [p.time_ns for p in points],
            "name": [p.name for p in points],
            "service": [p.service for p in points],
            "value": [p.value for p in points],
            "kind": [p.kind for p in points],
            "unit": [p.unit for p in points],
            "attributes": [dumps(p.attributes) for p in points],
            "monotonic": [p.monotonic for p in points],
            "temporality": [p.temporality for p in points],
        },
        schema=ARROW_SCHEMA["metrics"],
    )


ARROW_OF: dict[str, Callable[[Sequence[Any]], pa.Table]] = {
    "spans": arrow_spans,
    "logs": arrow_logs,
    "metrics": arrow_metrics,
}

# ---------------------------------------------------------------- 1: ingest throughput


def ingest_sqlite(root: Path, signal_name: str, data: list[Sequence[Any]]) -> float:
    path = Path(tempfile.mkdtemp(dir=root))
    conn = sqlite_connect(path / "db.sqlite")
    insert = SQLITE_INSERT[signal_name]
    t0 = time.perf_counter()
    for b in data:
        insert(conn, b)
    elapsed = time.perf_counter() - t0
    (count,) = conn.execute(f"SELECT count(*) FROM {signal_name}").fetchone()
    conn.close()
    shutil.rmtree(path)
    expected = sum(len(b) for b in data)
    if count != expected:
        raise SystemExit(f"SQLite stored {count} {signal_name}, expected {expected}")
    return elapsed


def ingest_duckdb(root: Path, signal_name: str, data: list[Sequence[Any]]) -> float:
    path = Path(tempfile.mkdtemp(dir=root))
    con = duck_connect(path / "db.duckdb")
    to_arrow = ARROW_OF[signal_name]
    t0 = time.perf_counter()
    for b in data:
        duck_insert(con, signal_name, to_arrow(b))
    elapsed = time.perf_counter() - t0
    (count,) = con.execute(f"SELECT count(*) FROM {signal_name}").fetchone()  # type: ignore[misc]
    con.close()
    shutil.rmtree(path)
    expected = sum(len(b) for b in data)
    if count != expected:
        raise SystemExit(f"DuckDB stored {count} {signal_name}, expected {expected}")
    return elapsed


def ingest_tael(root: Path, signal_name: str, data: list[Sequence[Any]]) -> float:
    return run_tael(root, signal_name, data, 1, "fsync")


INGEST: dict[str, Callable[[Path, str, list[Sequence[Any]]], float]] = {
    "tael": ingest_tael,
    "sqlite": ingest_sqlite,
    "duckdb": ingest_duckdb,
}


def bench_ingest(root: Path, n: int, sizes: Sequence[int], repeats: int) -> dict[tuple[str, int], dict[str, float]]:
    progress(f"ingest: generating {n:,} spans, logs and metric points")
    data: dict[str, list[Any]] = {
        "spans": Workload(seed=1).spans(n),
        "logs": Corpus(seed=1, start_ns=NOW_NS - DAY_NS, step_ns=max(2, DAY_NS // n)).logs(n),
        "metrics": Workload(seed=2).metrics(n),
    }
    runs: dict[tuple[str, int, str], list[float]] = {}
    for rep in range(repeats):
        for signal_name in SIGNALS:
            for size in sizes:
                bs = batches(data[signal_name], size)
                for system in SYSTEMS:
                    elapsed = INGEST[system](root, signal_name, bs)
                    runs.setdefault((signal_name, size, system), []).append(elapsed)
                    progress(
                        f"ingest run {rep + 1}/{repeats}: {signal_name}, batch {size:,}, {NAMES[system]}: "
                        f"{n / elapsed:,.0f} records/s"
                    )
    return {
        (sig, size): {system: n / median(runs[(sig, size, system)]) for system in SYSTEMS}
        for sig in SIGNALS
        for size in sizes
    }


# ---------------------------------------------------------------- 2: lean spans at scale


def _tables() -> tuple[list[int], list[int]]:
    rng = random.Random(12345)
    durations = [max(1, int(rng.lognormvariate(math.log(20.0), 0.8) * 1e6)) for _ in range(4096)]
    offsets = [rng.randrange(CHILD_OFFSET_NS) for _ in range(4096)]
    return durations, offsets


DURATIONS, OFFSETS = _tables()
_SPAN_ATTRS = [
    [{"http.route": op, "http.status_code": code, "net.peer.port": 443} for code in (200, 500)] for op in OPERATIONS
]
_SPAN_ATTRS_JSON = [[json.dumps(a) for a in pair] for pair in _SPAN_ATTRS]
_RESOURCES = [{"service.name": s, "deployment.environment": "prod"} for s in SERVICES]
_RESOURCES_JSON = [json.dumps(r) for r in _RESOURCES]


class Columns:
    """One generated batch: parallel lists, plus its traces (id, span count, root start)."""

    __slots__ = ("err", "end", "op", "parent", "span_id", "start", "svc", "trace_id", "traces")

    def __init__(self) -> None:
        self.trace_id: list[str] = []
        self.span_id: list[str] = []
        self.parent: list[str | None] = []
        self.start: list[int] = []
        self.end: list[int] = []
        self.svc: list[int] = []
        self.op: list[int] = []
        self.err: list[int] = []
        self.traces: list[tuple[str, int, int]] = []

    def __len__(self) -> int:
        return len(self.span_id)


class ScaleSpans:
    """``n`` lean spans over the 24 hours before NOW_NS, in batches of ``batch`` spans.

    Every batch is generated from its own seed, so any process regenerates any
    batch exactly; traces never cross batches (a batch's last trace may be cut)."""

    def __init__(self, n: int, seed: int, batch: int = BUILD_BATCH) -> None:
        self.n, self.seed, self.batch = n, seed, batch
        self.count = -(-n // batch)
        self.begin = NOW_NS - DAY_NS

    def bounds(self, j: int) -> tuple[int, int]:
        a = j * self.batch
        b = min(self.n, a + self.batch)
        return self.begin + a * DAY_NS // self.n, self.begin + b * DAY_NS // self.n

    def columns(self, j: int) -> Columns:
        a = j * self.batch
        k = min(self.n, a + self.batch) - a
        lo, hi = self.bounds(j)
        rng = random.Random(self.seed * 1_000_003 + j)
        sizes: list[int] = []
        total = 0
        while total < k:
            s = min(rng.randint(3, 7), k - total)
            sizes.append(s)
            total += s
        tids = rng.randbytes(16 * len(sizes)).hex()
        sids = rng.randbytes(8 * k).hex()
        c = Columns()
        c.svc = rng.choices(range(len(SERVICES)), k=k)
        c.op = rng.choices(range(len(OPERATIONS)), k=k)
        c.err = rng.choices((0, 1), cum_weights=(97, 100), k=k)
        dur = rng.choices(DURATIONS, k=k)
        off = rng.choices(OFFSETS, k=k)
        c.span_id = [sids[16 * i : 16 * i + 16] for i in range(k)]
        width = hi - lo
        i = 0
        for t, s in enumerate(sizes):
            tid = tids[32 * t : 32 * t + 32]
            root_start = lo + i * width // k
            root = c.span_id[i]
            c.traces.append((tid, s, root_start))
            for m in range(s):
                c.trace_id.append(tid)
                c.parent.append(None if m == 0 else root)
                c.start.append(root_start if m == 0 else root_start + off[i])
                i += 1
        c.end = [s + d for s, d in zip(c.start, dur, strict=True)]
        return c


def tael_spans(c: Columns) -> list[tael.Span]:
    Span = tael.Span
    return [
        Span(
            trace_id=c.trace_id[i],
            span_id=c.span_id[i],
            parent_span_id=c.parent[i],
            name=OPERATIONS[c.op[i]],
            service=SERVICES[c.svc[i]],
            start_ns=c.start[i],
            end_ns=c.end[i],
            kind="client" if c.parent[i] else "server",
            status="error" if c.err[i] else "ok",
            attributes=_SPAN_ATTRS[c.op[i]][c.err[i]],
            resource=_RESOURCES[c.svc[i]],
            scope_name="bench",
        )
        for i in range(len(c))
    ]


def sqlite_span_rows(c: Columns) -> list[tuple[Any, ...]]:
    return [
        (
            c.trace_id[i], c.span_id[i], c.parent[i], OPERATIONS[c.op[i]], SERVICES[c.svc[i]], c.start[i], c.end[i],
            "client" if c.parent[i] else "server", "error" if c.err[i] else "ok", "",
            _SPAN_ATTRS_JSON[c.op[i]][c.err[i]], _RESOURCES_JSON[c.svc[i]], "bench", "", "[]", "[]", "", 0,
        )
        for i in range(len(c))
    ]  # fmt: skip


def arrow_span_columns(c: Columns) -> pa.Table:
    k = len(c)
    return pa.Table.from_pydict(
        {
            "trace_id": c.trace_id,
            "span_id": c.span_id,
            "parent_span_id": c.parent,
            "name": [OPERATIONS[o] for o in c.op],
            "service": [SERVICES[s] for s in c.svc],
            "start_ns": c.start,
            "end_ns": c.end,
            "kind": ["client" if p else "server" for p in c.parent],
            "status": ["error" if e else "ok" for e in c.err],
            "status_message": [""] * k,
            "attributes": [_SPAN_ATTRS_JSON[o][e] for o, e in zip(c.op, c.err, strict=True)],
            "resource": [_RESOURCES_JSON[s] for s in c.svc],
            "scope_name": ["bench"] * k,
            "scope_version": [""] * k,
            "events": ["[]"] * k,
            "links": ["[]"] * k,
            "trace_state": [""] * k,
            "flags": [0] * k,
        },
        schema=ARROW_SCHEMA["spans"],
    )


# ---------------------------------------------------------------- subprocess workers


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakAnon(threading.Thread):
    """Samples the process's anonymous resident memory (not file-backed pages) every 0.2 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))
            if self.done.wait(0.2):
                return

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak_kb, _status_kb("RssAnon"))


def peak_rss_kb() -> int:
    import resource

    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker_build(system: str, path: Path, n: int, seed: int) -> dict[str, Any]:
    """Build a spans-only store of ``n`` lean spans; the clock covers inserts and the final sync."""
    gen = ScaleSpans(n, seed)
    sampler = PeakAnon()
    sampler.start()
    spent = 0.0
    native: Callable[[Columns], Any]
    if system == "tael":
        store = tael.Store(path, tael.Settings(durability="os"))
        native = tael_spans

        def insert(item: Any) -> None:
            store.insert_spans(item)

        def end_chunk() -> None:
            store.flush()  # fsync the WAL, everything applied: no work left in the background

        def finish() -> None:
            store.close()

    elif system == "sqlite":
        conn = sqlite_connect(path, synchronous="NORMAL")
        native = sqlite_span_rows

        def insert(item: Any) -> None:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", item)
            conn.execute("COMMIT")

        def end_chunk() -> None:
            pass

        def finish() -> None:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    else:
        con = duck_connect(path)
        native = arrow_span_columns

        def insert(item: Any) -> None:
            duck_insert(con, "spans", item)

        def end_chunk() -> None:
            pass

        def finish() -> None:
            con.execute("CHECKPOINT")
            con.close()

    gen_s = 0.0
    for c0 in range(0, gen.count, CHUNK_BATCHES):
        t0 = time.perf_counter()
        prepared = [native(gen.columns(j)) for j in range(c0, min(c0 + CHUNK_BATCHES, gen.count))]
        t1 = time.perf_counter()
        for item in prepared:
            insert(item)
        end_chunk()
        spent += time.perf_counter() - t1
        gen_s += t1 - t0
        del prepared
    t0 = time.perf_counter()
    finish()
    spent += time.perf_counter() - t0
    return {"seconds": spent, "gen_seconds": gen_s, "rss_kb": peak_rss_kb(), "anon_kb": sampler.stop()}


def _crash_spans(seed: int) -> tuple[list[tael.Span], list[list[tael.Span]]]:
    base = Workload(seed=seed).spans(20_000)
    return base, batches(base, 1000)  # type: ignore[return-value]


def _new_trace_ids(base: list[tael.Span], rng: random.Random) -> None:
    """Give every trace of ``base`` a fresh id (the objects are reused pass after pass)."""
    remap: dict[str, str] = {}
    for s in base:
        new = remap.get(s.trace_id)
        if new is None:
            new = remap[s.trace_id] = f"{rng.getrandbits(128) | 1:032x}"
        s.trace_id = new


def worker_crash(system: str, path: Path, mb: float, seed: int) -> None:
    """Insert realistic spans in fsynced 1,000-span batches until the WAL holds ``mb`` MB,
    report what was acknowledged, then SIGKILL this process."""
    base, data = _crash_spans(seed)
    rng = random.Random(seed + 7_919)  # not the Workload's seed: fresh trace ids
    target = mb * 1e6
    acked = 0
    if system == "tael":
        store = tael.Store(path, tael.Settings(max_unapplied_records=10**9))

        def insert(b: list[tael.Span]) -> None:
            store.insert_spans(b)

        def wal_bytes() -> int:
            return dir_size(path / "wal")

    elif system == "sqlite":
        conn = sqlite_connect(path, synchronous="FULL")
        conn.execute("PRAGMA wal_autocheckpoint=0")

        def insert(b: list[tael.Span]) -> None:
            sqlite_insert_spans(conn, b)

        def wal_bytes() -> int:
            return file_bytes(path.with_name(path.name + "-wal"))

    else:
        con = duck_connect(path, checkpoint_threshold="1TB")

        def insert(b: list[tael.Span]) -> None:
            duck_insert(con, "spans", arrow_spans(b))

        def wal_bytes() -> int:
            return file_bytes(path.with_name(path.name + ".wal"))

    while True:
        for b in data:
            insert(b)
            acked += len(b)
        if wal_bytes() >= target:
            break
        _new_trace_ids(base, rng)
    print(json.dumps({"acknowledged": acked, "wal_bytes": wal_bytes()}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def run_worker(args: list[str], timeout: float = 7_200) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("{")]
    crashed_on_purpose = "crash" in args and result.returncode == -signal.SIGKILL
    if not lines or (result.returncode != 0 and not crashed_on_purpose):
        raise SystemExit(f"worker {args} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    out: dict[str, Any] = json.loads(lines[-1])
    out["wall_seconds"] = wall
    return out


# ---------------------------------------------------------------- 2: measurements per scale


def timed_calls(fn: Callable[[Any], Any], args: Sequence[Any]) -> tuple[list[float], list[Any]]:
    fn(args[0])  # warm-up, untimed (first-call setup of each system)
    times, answers = [], []
    for a in args:
        t0 = time.perf_counter()
        out = fn(a)
        times.append(time.perf_counter() - t0)
        answers.append(out)
    return times, answers


def span_store_paths(root: Path, n: int) -> dict[str, Path]:
    return {
        "tael": root / f"tael-{n}",
        "sqlite": root / f"sqlite-{n}" / "db.sqlite",
        "duckdb": root / f"duckdb-{n}" / "db.duckdb",
    }


def bench_scale(root: Path, n: int, args: argparse.Namespace, problems: list[str]) -> dict[str, Any]:
    gen = ScaleSpans(n, args.seed)
    paths = span_store_paths(root, n)
    res: dict[str, Any] = {"n": n, "build": {}}
    for system in SYSTEMS:
        paths[system].parent.mkdir(parents=True, exist_ok=True)
        progress(f"scale {n:,}: {NAMES[system]} builds {n:,} spans in a subprocess")
        out = run_worker(["build", "--system", system, "--path", str(paths[system]), "--n", str(n)] + seed_arg(args))
        res["build"][system] = out
        progress(
            f"  {n / out['seconds']:,.0f} spans/s, peak RSS {out['rss_kb'] / 1024:,.0f} MiB "
            f"(anon {out['anon_kb'] / 1024:,.0f} MiB), wall {out['wall_seconds']:.0f} s"
        )

    # what the queries should find, from the generated batches
    cut = NOW_NS - HOUR_NS
    tail = [j for j in range(gen.count) if gen.bounds(j)[1] + CHILD_OFFSET_NS > cut]
    hot_count = 0  # spans compact(before=cut) leaves hot
    hot_traces: list[tuple[str, int]] = []
    match: dict[str, list[tuple[int, str, str]]] = {s: [] for s in SERVICES}
    min_ns = MIN_DURATION_MS * 1_000_000
    for j in tail:
        c = gen.columns(j)
        hot_traces += [(tid, size) for tid, size, t in c.traces if t >= cut]
        for i in range(len(c)):
            if c.start[i] >= cut:
                hot_count += 1
                if c.start[i] < NOW_NS and c.err[i] and c.end[i] - c.start[i] >= min_ns:
                    match[SERVICES[c.svc[i]]].append((c.start[i], c.trace_id[i], c.span_id[i]))
    expected = {
        svc: sorted((tid, sid) for _t, tid, sid in sorted(found, reverse=True)[:SEARCH_LIMIT])
        for svc, found in match.items()
    }
    rng = random.Random(args.seed + n)
    cache: dict[int, Columns] = {}
    mixed: list[tuple[str, int]] = []
    for _ in range(args.lookups):
        j = rng.randrange(gen.count)
        c = cache.get(j) or cache.setdefault(j, gen.columns(j))
        tid, size, _t = rng.choice(c.traces)
        mixed.append((tid, size))
    cache.clear()
    hot_ids = rng.sample(hot_traces, min(args.lookups, len(hot_traces)))
    services = [SERVICES[i % len(SERVICES)] for i in range(args.queries)]

    # tael: compaction as the maintenance loop would leave the store, then a fresh open
    progress(f"scale {n:,}: tael compacts everything before now - 1 h")
    store = tael.Store(paths["tael"])
    t0 = time.perf_counter()
    report = store.compact(before=cut)
    res["compact_s"] = time.perf_counter() - t0
    store.checkpoint()
    store.close()
    store = tael.Store(paths["tael"])
    try:
        st = store.stats()
        res["compact_files"] = st.cold_files
        check(
            st.signals["spans"].count == n and st.hot_records["spans"] == hot_count,
            problems,
            f"scale {n:,}: tael holds {st.signals['spans'].count} spans ({st.hot_records['spans']} hot), "
            f"expected {n} ({hot_count} at or after now - 1 h); compaction moved {report.records['spans']}",
        )
        disk = st.disk_bytes
        res["bytes"] = {"tael": sum(disk.values()) / n}
        res["cold_bytes"] = disk["cold"] / max(1, st.cold_records["spans"])
        res["tael_disk"] = dict(disk)
        res["cold_spans"] = st.cold_records["spans"]

        def tael_trace(tid: str) -> int:
            return len(store.get_trace(tid))

        def tael_search(svc: str) -> list[tuple[str, str]]:
            got = store.query_traces(
                service=svc, status="error", min_duration_ms=MIN_DURATION_MS, start=cut, end=NOW_NS, limit=SEARCH_LIMIT
            )
            return sorted((s.trace_id, s.span_id) for s in got)

        lat: dict[str, dict[str, list[float]]] = {}
        answers: dict[str, dict[str, list[Any]]] = {}
        progress(f"scale {n:,}: queries on tael")
        lat["tael"], answers["tael"] = run_span_queries(tael_trace, tael_search, mixed, hot_ids, services)
    finally:
        store.close()

    sq = sqlite3.connect(paths["sqlite"], isolation_level=None, check_same_thread=False)
    sq.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    search_sql = (
        "SELECT * FROM spans WHERE service = ? AND status = 'error' AND end_ns - start_ns >= ? "
        "AND start_ns >= ? AND start_ns < ? ORDER BY start_ns DESC LIMIT ?"
    )
    trace_sql = "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns"
    try:
        progress(f"scale {n:,}: queries on SQLite")
        lat["sqlite"], answers["sqlite"] = run_span_queries(
            lambda tid: len(sq.execute(trace_sql, (tid,)).fetchall()),
            lambda svc: sorted(
                (r[0], r[1]) for r in sq.execute(search_sql, (svc, min_ns, cut, NOW_NS, SEARCH_LIMIT)).fetchall()
            ),
            mixed,
            hot_ids,
            services,
        )
        (count,) = sq.execute("SELECT count(*) FROM spans").fetchone()
        check(count == n, problems, f"scale {n:,}: SQLite holds {count} spans, expected {n}")
    finally:
        sq.close()
    res["bytes"]["sqlite"] = file_bytes(*sqlite_files(paths["sqlite"])) / n

    dd = duckdb.connect(str(paths["duckdb"]))
    try:
        progress(f"scale {n:,}: queries on DuckDB")
        lat["duckdb"], answers["duckdb"] = run_span_queries(
            lambda tid: len(dd.execute(trace_sql, [tid]).fetchall()),
            lambda svc: sorted(
                (r[0], r[1]) for r in dd.execute(search_sql, [svc, min_ns, cut, NOW_NS, SEARCH_LIMIT]).fetchall()
            ),
            mixed,
            hot_ids,
            services,
        )
        (count,) = dd.execute("SELECT count(*) FROM spans").fetchone()  # type: ignore[misc]
        check(count == n, problems, f"scale {n:,}: DuckDB holds {count} spans, expected {n}")
    finally:
        dd.close()
    res["bytes"]["duckdb"] = file_bytes(paths["duckdb"], paths["duckdb"].with_name("db.duckdb.wal")) / n

    for system in SYSTEMS:
        a = answers[system]
        wrong = [tid for (tid, size), got in zip(mixed, a["mixed"], strict=True) if got != size]
        wrong += [tid for (tid, size), got in zip(hot_ids, a["hot"], strict=True) if got != size]
        check(not wrong, problems, f"scale {n:,}: {NAMES[system]} get_trace returned wrong span counts: {wrong[:3]}")
        bad = [svc for svc, got in zip(services, a["search"], strict=True) if got != expected[svc]]
        check(
            not bad,
            problems,
            f"scale {n:,}: {NAMES[system]} trace search answers differ from the generated data for {bad[:3]} "
            f"(e.g. {len(a['search'][services.index(bad[0])]) if bad else 0} spans, expected "
            f"{len(expected[bad[0]]) if bad else 0})",
        )
    res["lat"] = lat
    res["hot_ids"] = len(hot_ids)
    res["search_hits"] = sorted(len(expected[s]) for s in set(services))
    for system in SYSTEMS:
        shutil.rmtree(paths[system] if system == "tael" else paths[system].parent, ignore_errors=True)
    return res


def run_span_queries(
    trace: Callable[[str], int],
    search: Callable[[str], Any],
    mixed: list[tuple[str, int]],
    hot_ids: list[tuple[str, int]],
    services: list[str],
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    lat: dict[str, list[float]] = {}
    ans: dict[str, list[Any]] = {}
    lat["mixed"], ans["mixed"] = timed_calls(trace, [t for t, _ in mixed])
    lat["hot"], ans["hot"] = timed_calls(trace, [t for t, _ in hot_ids]) if hot_ids else ([], [])
    lat["search"], ans["search"] = timed_calls(search, services)
    return lat, ans


def seed_arg(args: argparse.Namespace) -> list[str]:
    return ["--seed", str(args.seed)]
