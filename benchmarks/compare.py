"""tael side by side with SQLite and DuckDB: the same generated records, the same
batches, the same durability, one markdown table of medians with ratios tael / peer.

The numbers in docs/benchmarks.md came from:

    python benchmarks/compare.py

(defaults: ``--scales 100000,1000000,10000000``; wall time 2,497 s on the 2-core
machine of docs/benchmarks.md, 941 s of it compacting the 10M-span store;
``--quick`` is the few-seconds smoke mode the test suite runs). Everything below
runs on one machine, one system at a time, with the OS page cache warm (files
were just written).

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
   applied position; MB of WAL replayed per second). The issue asks for 1 GB
   of unapplied WAL; the default is 256 MB because tael replays at a few MB/s
   on this machine (a 1 GB run would add ~15 minutes) and the rate does not
   depend on the size; ``--recovery-mb 1024`` runs the full size.

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
from collections.abc import Callable, Mapping, Sequence
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

    __slots__ = ("end", "err", "op", "parent", "span_id", "start", "svc", "trace_id", "traces")

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


def worker_crash(system: str, path: Path, mb: float, seed: int, one_segment: bool = False) -> None:
    """Insert realistic spans in fsynced 1,000-span batches until the WAL holds ``mb`` MB,
    report what was acknowledged, then SIGKILL this process. ``one_segment``: tael's WAL
    is one segment larger than ``mb``, so that no checkpoint removes any of it (what
    ``bench_recovery(unapplied=True)`` needs)."""
    base, data = _crash_spans(seed)
    rng = random.Random(seed + 7_919)  # not the Workload's seed: fresh trace ids
    target = mb * 1e6
    acked = 0
    if system == "tael":
        segment = {"wal_segment_bytes": int(mb * 1e6) + (64 << 20)} if one_segment else {}
        store = tael.Store(path, tael.Settings(max_unapplied_records=10**9, **segment))

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

    while acked == 0 or wal_bytes() < target:
        for b in data:
            insert(b)
            acked += len(b)
            if wal_bytes() >= target:
                break
        else:
            _new_trace_ids(base, rng)
            continue
        break
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
        out = run_worker(["build", "--system", system, "--path", str(paths[system]), "--n", str(n), *seed_arg(args)])
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


# ---------------------------------------------------------------- 3: logs and metrics (fixed scale)


def make_logs(n: int, seed: int) -> tuple[list[tael.LogRecord], int]:
    """``n`` log records over the 24 hours before NOW_NS; each marker phrase in ``per`` of them."""
    corpus = Corpus(seed=seed, start_ns=NOW_NS - DAY_NS, step_ns=max(2, DAY_NS * 99 // 100 // n))
    logs = corpus.logs(n)
    per = min(20, max(1, n // 100))
    rng = random.Random(seed + 17)
    for k, i in enumerate(rng.sample(range(n), per * len(MARKERS))):
        logs[i].body = f"{MARKERS[k % len(MARKERS)]}: {logs[i].body}"
    return logs, per


def build_store(system: str, path: Path, signal_name: str, records: Sequence[Any]) -> float:
    """Load ``records`` like the scale stores (10,000-record batches); seconds."""
    t0 = time.perf_counter()
    if system == "tael":
        store = tael.Store(path, tael.Settings(durability="os"))
        insert = getattr(store, f"insert_{signal_name}")
        for b in batches(records, BUILD_BATCH):
            insert(b)
        store.flush()
        store.close()
    elif system == "sqlite":
        conn = sqlite_connect(path, synchronous="NORMAL")
        for b in batches(records, BUILD_BATCH):
            SQLITE_INSERT[signal_name](conn, b)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        con = duck_connect(path)
        for b in batches(records, BUILD_BATCH):
            duck_insert(con, signal_name, ARROW_OF[signal_name](b))
        con.execute("CHECKPOINT")
        con.close()
    return time.perf_counter() - t0


def aux_paths(root: Path, signal_name: str) -> dict[str, Path]:
    return {
        "tael": root / f"tael-{signal_name}",
        "sqlite": root / f"sqlite-{signal_name}" / "db.sqlite",
        "duckdb": root / f"duckdb-{signal_name}" / "db.duckdb",
    }


def build_aux(
    root: Path, signal_name: str, records: Sequence[Any], problems: list[str]
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Build one store per system, compact tael at now - 1 h; bytes per record and build times."""
    paths = aux_paths(root, signal_name)
    n = len(records)
    info: dict[str, Any] = {"build_s": {}, "bytes": {}}
    for system in SYSTEMS:
        paths[system].parent.mkdir(parents=True, exist_ok=True)
        progress(f"{signal_name}: {NAMES[system]} loads {n:,} records")
        info["build_s"][system] = build_store(system, paths[system], signal_name, records)
    store = tael.Store(paths["tael"])
    try:
        t0 = time.perf_counter()
        report = store.compact(before=NOW_NS - HOUR_NS)
        info["compact_s"] = time.perf_counter() - t0
        info["moved"] = report.records[signal_name]
        store.checkpoint()
        st = store.stats()
        check(
            st.signals[signal_name].count == n,
            problems,
            f"tael holds {st.signals[signal_name].count} {signal_name} after compaction, expected {n}",
        )
        info["bytes"]["tael"] = st.total_disk_bytes / n
        info["tael_disk"] = dict(st.disk_bytes)
    finally:
        store.close()
    info["bytes"]["sqlite"] = file_bytes(*sqlite_files(paths["sqlite"])) / n
    info["bytes"]["duckdb"] = file_bytes(paths["duckdb"], paths["duckdb"].with_name("db.duckdb.wal")) / n
    return paths, info


def bench_logs(root: Path, n: int, queries: int, seed: int, problems: list[str]) -> dict[str, Any]:
    progress(f"logs: generating {n:,} records")
    logs, per = make_logs(n, seed)
    for m in MARKERS:
        found = sum(1 for r in logs if m in r.body)
        check(found == per, problems, f"generated logs hold {m!r} {found} times, expected {per}")
    paths, info = build_aux(root, "logs", logs, problems)
    del logs
    phrases = [_PHRASES[i % len(_PHRASES)] for i in range(queries)]
    rare = [MARKERS[i % len(MARKERS)] for i in range(max(len(MARKERS), queries // 2))]
    lat: dict[str, dict[str, list[float]]] = {}
    ans: dict[str, dict[str, list[Any]]] = {}

    store = tael.Store(paths["tael"])  # reopened: no cached Parquet footers
    try:
        progress("logs: text search on tael")
        lat["tael"], ans["tael"] = run_log_queries(
            lambda p: [r.time_ns for r in store.query_logs(text=f'"{p}"', limit=20)],
            lambda m: sorted(r.time_ns for r in store.query_logs(text=f'"{m}"', limit=1000)),
            phrases,
            rare,
        )
    finally:
        store.close()
    sq = sqlite3.connect(paths["sqlite"], isolation_level=None, check_same_thread=False)
    sq.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    fts = "SELECT l.* FROM logs_fts JOIN logs l ON l.rowid = logs_fts.rowid WHERE logs_fts MATCH ?"
    try:
        progress("logs: text search on SQLite (FTS5)")
        lat["sqlite"], ans["sqlite"] = run_log_queries(
            lambda p: [r[0] for r in sq.execute(fts + " ORDER BY l.time_ns DESC LIMIT 20", (f'"{p}"',)).fetchall()],
            lambda m: sorted(r[0] for r in sq.execute(fts, (f'"{m}"',)).fetchall()),
            phrases,
            rare,
        )
    finally:
        sq.close()
    dd = duckdb.connect(str(paths["duckdb"]))
    ilike = "SELECT * FROM logs WHERE body ILIKE ?"
    try:
        progress("logs: text search on DuckDB (ILIKE)")
        lat["duckdb"], ans["duckdb"] = run_log_queries(
            lambda p: [r[0] for r in dd.execute(ilike + " ORDER BY time_ns DESC LIMIT 20", [f"%{p}%"]).fetchall()],
            lambda m: sorted(r[0] for r in dd.execute(ilike, [f"%{m}%"]).fetchall()),
            phrases,
            rare,
        )
    finally:
        dd.close()
    for system in SYSTEMS:
        a = ans[system]
        short = [p for p, got in zip(phrases, a["phrase"], strict=True) if len(got) != min(20, n)]
        check(not short, problems, f"logs: {NAMES[system]} phrase search returned fewer than 20 hits for {short[:3]}")
        bad = [m for m, got in zip(rare, a["rare"], strict=True) if len(got) != per]
        check(not bad, problems, f"logs: {NAMES[system]} rare phrase search did not return {per} hits for {bad[:3]}")
        if system != "tael":
            differ = [p for p, x, y in zip(phrases, a["phrase"], ans["tael"]["phrase"], strict=True) if x != y]
            differ += [m for m, x, y in zip(rare, a["rare"], ans["tael"]["rare"], strict=True) if x != y]
            check(not differ, problems, f"logs: {NAMES[system]} and tael return different records for {differ[:3]}")
    info.update(n=n, per=per, lat=lat, phrases=len(phrases), rare=len(rare))
    for p in paths.values():
        shutil.rmtree(p if p.is_dir() else p.parent, ignore_errors=True)
    return info


def run_log_queries(
    phrase: Callable[[str], Any], rare: Callable[[str], Any], phrases: list[str], markers: list[str]
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    lat: dict[str, list[float]] = {}
    ans: dict[str, list[Any]] = {}
    lat["phrase"], ans["phrase"] = timed_calls(phrase, phrases)
    lat["rare"], ans["rare"] = timed_calls(rare, markers)
    return lat, ans


def make_metrics(n: int, interval_s: int, seed: int) -> tuple[list[tael.MetricPoint], int]:
    """Series with a point every ``interval_s`` over the 25 hours before NOW_NS; the number of
    series the dashboard query (first name, first service) merges."""
    per_series = 25 * 3600 // interval_s
    count = max(1, n // per_series)
    series = [
        (METRIC_NAMES[k % len(METRIC_NAMES)], SERVICES[(k // len(METRIC_NAMES)) % len(SERVICES)], {"host": f"h{k}"})
        for k in range(count)
    ]
    step = interval_s * 1_000_000_000
    begin = NOW_NS - 25 * HOUR_NS
    rng = random.Random(seed)
    MetricPoint = tael.MetricPoint
    points = [
        MetricPoint(
            time_ns=begin + i * step + k * step // count,
            name=name,
            service=svc,
            value=round(rng.random() * 100, 3),
            unit="%",
            attributes=attrs,
        )
        for i in range(per_series)
        for k, (name, svc, attrs) in enumerate(series)
    ]
    merged = sum(1 for name, svc, _a in series if (name, svc) == (METRIC_NAMES[0], SERVICES[0]))
    return points, merged


def bench_metrics(root: Path, n: int, interval_s: int, queries: int, seed: int, problems: list[str]) -> dict[str, Any]:
    progress(f"metrics: generating ~{n:,} points")
    points, merged = make_metrics(n, interval_s, seed)
    total = len(points)
    paths, info = build_aux(root, "metrics", points, problems)
    del points
    lo, hi = NOW_NS - DAY_NS - HOUR_NS // 2, NOW_NS - HOUR_NS // 2
    name, svc = METRIC_NAMES[0], SERVICES[0]
    per_bucket = merged * 300 // interval_s
    reps = list(range(queries))
    lat: dict[str, list[float]] = {}
    ans: dict[str, list[Any]] = {}
    store = tael.Store(paths["tael"])
    try:
        progress("metrics: dashboard on tael")
        lat["tael"], ans["tael"] = timed_calls(
            lambda _i: [
                (b.start_ns, b.count, b.min, b.max, b.sum)
                for b in store.aggregate_metrics(name, service=svc, start=lo, end=hi, step="5m")
            ],
            reps,
        )
    finally:
        store.close()
    sql = (
        "SELECT {b} AS b, count(*), min(value), max(value), sum(value) FROM metrics "
        "WHERE name = ? AND service = ? AND time_ns >= ? AND time_ns < ? GROUP BY b ORDER BY b"
    )
    sq = sqlite3.connect(paths["sqlite"], isolation_level=None, check_same_thread=False)
    sq.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    try:
        progress("metrics: dashboard on SQLite")
        q = sql.format(b=f"(time_ns - ?) / {STEP_NS}")
        lat["sqlite"], ans["sqlite"] = timed_calls(
            lambda _i: [(lo + b * STEP_NS, *rest) for b, *rest in sq.execute(q, (lo, name, svc, lo, hi)).fetchall()],
            reps,
        )
    finally:
        sq.close()
    dd = duckdb.connect(str(paths["duckdb"]))
    try:
        progress("metrics: dashboard on DuckDB")
        q = sql.format(b=f"(time_ns - ?) // {STEP_NS}")
        lat["duckdb"], ans["duckdb"] = timed_calls(
            lambda _i: [(lo + b * STEP_NS, *rest) for b, *rest in dd.execute(q, [lo, name, svc, lo, hi]).fetchall()],
            reps,
        )
    finally:
        dd.close()
    want = [lo + i * STEP_NS for i in range(DAY_NS // STEP_NS)]
    for system in SYSTEMS:
        got = ans[system][-1]
        check(
            [b[0] for b in got] == want and all(b[1] == per_bucket for b in got),
            problems,
            f"dashboard: {NAMES[system]} returned {len(got)} buckets (expected {len(want)} of {per_bucket} points): "
            f"{got[:2]}",
        )
        if system != "tael":
            same = len(got) == len(ans["tael"][-1]) and all(
                x[:4] == y[:4] and math.isclose(x[4], y[4], rel_tol=1e-9)
                for x, y in zip(got, ans["tael"][-1], strict=False)
            )
            check(same, problems, f"dashboard: {NAMES[system]} buckets differ from tael's")
    info.update(n=total, series=max(1, n // (25 * 3600 // interval_s)), merged=merged, lat=lat, buckets=len(want))
    for p in paths.values():
        shutil.rmtree(p if p.is_dir() else p.parent, ignore_errors=True)
    return info


# ---------------------------------------------------------------- 5: recovery after kill -9


def bench_recovery(
    root: Path, mb: float, seed: int, problems: list[str], *, unapplied: bool = False
) -> dict[str, dict[str, Any]]:
    """Each system writes until its WAL holds ``mb`` MB, is killed, and is reopened.

    tael's applier keeps its hot tier close behind the WAL, so only what it had not
    applied at the kill is replayed. ``unapplied``: tael's hot tier and text index are
    put back as they were before the first write (a copy of the new store's), so the
    whole WAL is unapplied at the reopen, as if the applier and the indexer had stalled
    (a state a crash can leave: each commits its own position)."""
    out: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        base = root / f"crash-{system}"
        base.mkdir(parents=True, exist_ok=True)
        path = base if system == "tael" else base / ("db.sqlite" if system == "sqlite" else "db.duckdb")
        empty = root / "crash-tael-empty"
        if system == "tael" and unapplied:
            tael.Store(path, tael.Settings(wal_segment_bytes=int(mb * 1e6) + (64 << 20))).close()
            shutil.rmtree(empty, ignore_errors=True)
            for part in ("hot", "index"):
                shutil.copytree(path / part, empty / part)
        progress(f"recovery: {NAMES[system]} writes until its WAL holds {mb:g} MB, then kill -9")
        crash = ["crash", "--system", system, "--path", str(path), "--mb", str(mb), "--seed", str(seed)]
        w = run_worker(crash + (["--one-segment"] if system == "tael" and unapplied else []))
        acked = w["acknowledged"]
        if system == "tael" and unapplied:
            for part in ("hot", "index"):
                shutil.rmtree(path / part)
                shutil.copytree(empty / part, path / part)
            shutil.rmtree(empty)
        if system == "tael":
            ro = tael.Store(path, read_only=True)
            applied_before = ro.stats().applied_lsn
            ro.close()
            wal_on_disk = dir_size(path / "wal")
            t0 = time.perf_counter()
            store = tael.Store(path)
            count = store.stats().signals["spans"].count
            elapsed = time.perf_counter() - t0
            replayed = store.stats().applied_lsn - applied_before
            records = store.replayed_records
            store.close()
        elif system == "sqlite":
            wal_on_disk = replayed = file_bytes(path.with_name(path.name + "-wal"))
            t0 = time.perf_counter()
            conn = sqlite3.connect(path)
            (count,) = conn.execute("SELECT count(*) FROM spans").fetchone()
            elapsed = time.perf_counter() - t0
            conn.close()
            records = None
        else:
            wal_on_disk = replayed = file_bytes(path.with_name(path.name + ".wal"))
            t0 = time.perf_counter()
            con = duckdb.connect(str(path))
            (count,) = con.execute("SELECT count(*) FROM spans").fetchone()  # type: ignore[misc]
            elapsed = time.perf_counter() - t0
            con.close()
            records = None
        check(
            count == acked,
            problems,
            f"recovery: {NAMES[system]} holds {count} spans after kill -9, {acked} were acknowledged",
        )
        out[system] = {
            "acked": acked,
            "wal_mb": wal_on_disk / 1e6,
            "replayed_mb": replayed / 1e6,
            "records": records,
            "seconds": elapsed,
            "write_s": w["wall_seconds"],
        }
        progress(
            f"  reopened in {elapsed:.2f} s: {replayed / 1e6:,.1f} MB of WAL ({replayed / 1e6 / elapsed:,.1f} MB/s)"
        )
        shutil.rmtree(base, ignore_errors=True)
    return out


# ---------------------------------------------------------------- the table


class Row:
    def __init__(
        self,
        measurement: str,
        scale: str,
        values: Mapping[str, float | None],
        fmt: Callable[[float], str],
        target: str = "",
        verdict: str = "",
    ) -> None:
        self.cells = [measurement, scale]
        self.cells += [fmt(v) if v is not None else "-" for v in (values.get(s) for s in SYSTEMS)]
        t = values.get("tael")
        for peer in ("sqlite", "duckdb"):
            p = values.get(peer)
            self.cells.append(f"{sig(t / p)}x" if t is not None and p else "-")
        self.cells += [target or "-", verdict]


def sig(v: float) -> str:
    """At least three significant digits, never in exponent notation."""
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1 or v <= 0:
        return f"{v:.2f}"
    return f"{v:.{2 - math.floor(math.log10(v))}f}"


def rate(v: float) -> str:
    return f"{v:,.0f}"


def msec(v: float) -> str:
    return sig(v * 1e3)


def one(v: float) -> str:
    return f"{v:,.1f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def p50(values: Sequence[float]) -> float:
    return pct(values, 50)


def p99(values: Sequence[float]) -> float:
    return pct(values, 99)


def build_rows(
    ingest: dict[tuple[str, int], dict[str, float]],
    ingest_n: int,
    scales: list[dict[str, Any]],
    logs: dict[str, Any],
    metrics: dict[str, Any],
    cold30: dict[str, Any],
    recovery: dict[str, dict[str, Any]],
) -> list[Row]:
    rows: list[Row] = []
    for (signal_name, size), v in ingest.items():
        ok = v["tael"] >= INGEST_TARGET["sqlite"] * v["sqlite"] and v["tael"] >= INGEST_TARGET["duckdb"] * v["duckdb"]
        rows.append(
            Row(
                f"ingest {signal_name}, batch {size:,}, fsync per batch (records/s)",
                f"{ingest_n:,} {signal_name}",
                dict(v),
                rate,
                ">= 4x SQLite, >= 2x DuckDB",
                verdict(ok),
            )
        )
    for sc in scales:
        n = f"{sc['n']:,} spans"
        rows.append(
            Row(
                "build spans, 10,000-span batches, sync per 100,000 (spans/s)",
                n,
                {s: sc["n"] / b["seconds"] for s, b in sc["build"].items()},
                rate,
            )
        )
        rows.append(
            Row(
                "peak RSS of the building process (MiB)",
                n,
                {s: b["rss_kb"] / 1024 for s, b in sc["build"].items()},
                rate,
            )
        )
        rows.append(
            Row(
                "peak anonymous RSS of the building process, sampled (MiB)",
                n,
                {s: b["anon_kb"] / 1024 for s, b in sc["build"].items()},
                rate,
            )
        )
    for sc in scales:
        n = f"{sc['n']:,} spans"
        lat = sc["lat"]
        rows.append(Row("get_trace p50, random ids (ms)", n, {s: p50(lat[s]["mixed"]) for s in SYSTEMS}, msec))
        rows.append(Row("get_trace p99, random ids (ms)", n, {s: p99(lat[s]["mixed"]) for s in SYSTEMS}, msec))
        if sc["hot_ids"]:
            hot = {s: p50(lat[s]["hot"]) for s in SYSTEMS}
            rows.append(
                Row(
                    "get_trace p50, ids from the last hour (hot in tael) (ms)",
                    n,
                    hot,
                    msec,
                    f"tael < {HOT_TRACE_TARGET_MS:g} ms",
                    verdict(hot["tael"] * 1e3 < HOT_TRACE_TARGET_MS),
                )
            )
        rows.append(
            Row(
                "trace search p50: service + error + >= 20 ms, last hour (ms)",
                n,
                {s: p50(lat[s]["search"]) for s in SYSTEMS},
                msec,
            )
        )
    c50 = p50(cold30["cold"])
    rows.append(
        Row(
            f"get_trace p50 over {cold30['partitions']} daily cold partitions (ms)",
            f"{cold30['spans']:,} spans",
            {"tael": c50},
            msec,
            f"< {COLD_TRACE_TARGET_MS:g} ms",
            verdict(c50 * 1e3 < COLD_TRACE_TARGET_MS),
        )
    )
    ln = f"{logs['n']:,} logs"
    rows.append(
        Row(
            "log text search p50: phrase, newest 20 (ms)",
            ln,
            {s: p50(logs["lat"][s]["phrase"]) for s in SYSTEMS},
            msec,
        )
    )
    rows.append(
        Row(
            f"log text search p50: rare phrase, all {logs['per']} hits (ms)",
            ln,
            {s: p50(logs["lat"][s]["rare"]) for s in SYSTEMS},
            msec,
        )
    )
    dash = {s: p50(metrics["lat"][s]) for s in SYSTEMS}
    rows.append(
        Row(
            "dashboard p50: 1 series, 24 h, 5-minute buckets (ms)",
            f"{metrics['n']:,} points",
            dash,
            msec,
            f"tael < {DASHBOARD_TARGET_MS:g} ms",
            verdict(dash["tael"] * 1e3 < DASHBOARD_TARGET_MS),
        )
    )
    for sc in scales:
        rows.append(
            Row(
                "bytes on disk per span, all files, after compaction",
                f"{sc['n']:,} spans",
                sc["bytes"],
                one,
            )
        )
    big = scales[-1]
    cold_vs = {"tael": big["cold_bytes"], "sqlite": big["bytes"]["sqlite"], "duckdb": big["bytes"]["duckdb"]}
    rows.append(
        Row(
            "bytes per span, tael cold tier (Parquet) vs peers' whole file",
            f"{big['n']:,} spans",
            cold_vs,
            one,
            "<= 1/4 of SQLite",
            verdict(cold_vs["tael"] <= COLD_BYTES_TARGET * cold_vs["sqlite"]),
        )
    )
    rows.append(Row("bytes on disk per log record, all files, after compaction", ln, logs["bytes"], one))
    rows.append(
        Row(
            "bytes on disk per metric point, all files, after compaction",
            f"{metrics['n']:,} points",
            metrics["bytes"],
            one,
        )
    )
    mbs = {s: r["replayed_mb"] / r["seconds"] for s, r in recovery.items()}
    rows.append(
        Row(
            "reopen after kill -9: MB of WAL recovered per second",
            ", ".join(f"{NAMES[s]} {r['replayed_mb']:,.0f} MB" for s, r in recovery.items()),
            mbs,
            one,
            f">= {REPLAY_TARGET_MBS:g} MB/s",
            verdict(mbs["tael"] >= REPLAY_TARGET_MBS),
        )
    )
    rows.append(
        Row(
            "reopen after kill -9: seconds to open + first count",
            "as above",
            {s: r["seconds"] for s, r in recovery.items()},
            sig,
        )
    )
    return rows


def notes(
    args: argparse.Namespace,
    scales: list[dict[str, Any]],
    logs: dict[str, Any],
    metrics: dict[str, Any],
    cold30: dict[str, Any],
    recovery: dict[str, dict[str, Any]],
) -> list[str]:
    out = [
        "Ratios are tael / peer: above 1x tael is faster for records/s and MB/s rows, below 1x tael is "
        "faster (or smaller) for ms, bytes and MiB rows. Latencies are medians (p50) or p99 of single calls.",
        "Durability: tael Settings(durability='fsync') (an insert returns after its WAL fsync; the clock stops "
        "when flush() returns: applied and searchable); SQLite journal_mode=WAL, synchronous=FULL, one "
        "transaction per batch (fsync at commit); DuckDB one transaction per batch (COMMIT fdatasyncs its WAL). "
        "Ingest rows: every batch durable before the next, median of "
        f"{args.repeats} runs on fresh stores.",
        "Query stores (build rows) are loaded faster and made durable at the end of each 100,000-span chunk: "
        "tael durability='os' + flush(), SQLite synchronous=NORMAL + a truncating checkpoint at the end, DuckDB "
        "a commit (fdatasync) per 10,000-span batch + CHECKPOINT; inputs are generated and converted to each "
        "system's native form (tael Span objects, SQLite row tuples, DuckDB Arrow tables) before the clock. "
        "Peak RSS is VmHWM of that process, which counts file pages mapped into it: tael's includes LMDB's "
        "memory-mapped data file (page cache the kernel can reclaim); the anonymous row (heap, sampled every "
        "0.2 s) leaves those out. Both include the chunk of 100,000 prepared records.",
        "Scales: ingest rows "
        f"{args.ingest_n:,} records per signal; span build, get_trace, trace search and bytes-per-span rows at "
        + ", ".join(f"{sc['n']:,}" for sc in scales)
        + f" spans; log rows at {logs['n']:,} records; dashboard and bytes-per-point at {metrics['n']:,} points "
        f"({metrics['series']} series, one every {args.interval} s over 25 h; the query merges {metrics['merged']}); "
        f"30-day get_trace at {cold30['spans']:,} spans; recovery at ~{args.recovery_mb:g} MB of WAL.",
        "tael's data as the maintenance loop leaves it: compact(before=now - 1 h), then reopened (no cached "
        "Parquet footers); compaction took "
        + ", ".join(
            f"{sc['compact_s']:.0f} s for {sc['n']:,} spans ({sc['cold_spans']:,} moved, {sc['compact_files']} files)"
            for sc in scales
        )
        + f", {logs['compact_s']:.0f} s for {logs['moved']:,} logs, {metrics['compact_s']:.0f} s for "
        f"{metrics['moved']:,} points. Random get_trace ids are uniform over the 24 h, so about 23 in 24 are cold.",
        f"get_trace: {args.lookups} ids per scale ({scales[-1]['hot_ids']} from the last hour); trace search: "
        f"{args.queries} queries (one service each, limit {SEARCH_LIMIT}, hits per query "
        f"{scales[-1]['search_hits'][0]}-{scales[-1]['search_hits'][-1]} at the largest scale); log phrase "
        f"search: {logs['phrases']} queries (tael full-text, SQLite FTS5 MATCH, DuckDB ILIKE '%...%'); rare "
        f"phrases: {logs['rare']} queries, each phrase in exactly {logs['per']} records; dashboard: "
        f"{args.queries} calls, {metrics['buckets']} buckets each. Answers agree across the three systems.",
        f"tael disk at {scales[-1]['n']:,} spans after compaction (MB): "
        + ", ".join(f"{k} {v / 1e6:,.1f}" for k, v in scales[-1]["tael_disk"].items())
        + "; the hot LMDB file keeps its high-water size after records move to Parquet.",
        "Recovery: "
        + "; ".join(
            f"{NAMES[s]} {r['acked']:,} spans acknowledged, {r['wal_mb']:,.1f} MB of WAL on disk, "
            f"{r['replayed_mb']:,.1f} MB recovered"
            + (f" ({r['records']:,} records replayed into LMDB)" if r["records"] is not None else "")
            + f" in {r['seconds']:.2f} s"
            for s, r in recovery.items()
        )
        + ". SQLite's open only indexes its WAL (pages are copied into the database file at the next "
        "checkpoint); DuckDB replays its WAL into its tables; tael decodes every unapplied WAL record and "
        "applies it to LMDB.",
    ]
    return out


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="100000,1000000,10000000", help="span counts for the scale rows")
    ap.add_argument("--ingest-n", type=int, default=200_000, help="records per signal for ingest rows (200,000)")
    ap.add_argument("--repeats", type=int, default=3, help="ingest runs per system; the median is reported (3)")
    ap.add_argument("--lookups", type=int, default=200, help="get_trace ids per scale (200)")
    ap.add_argument("--queries", type=int, default=20, help="search and dashboard calls timed (20)")
    ap.add_argument("--aux-n", type=int, default=1_000_000, help="log records and metric points (1,000,000)")
    ap.add_argument("--interval", type=int, default=10, help="seconds between points of a metric series (10)")
    ap.add_argument("--spans-per-day", type=int, default=10_000, help="30-day get_trace: spans per day (10,000)")
    ap.add_argument("--recovery-mb", type=float, default=256, help="WAL written before the kill -9 (256 MB)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=".bench-data", help="scratch directory (on the disk being measured)")
    ap.add_argument("--quick", action="store_true", help="seconds: tiny sizes, 1 run (smoke test)")
    ap.add_argument("--worker", choices=["build", "crash"], help=argparse.SUPPRESS)
    ap.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mb", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--one-segment", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "build":
        print(json.dumps(worker_build(args.system, Path(args.path), args.n, args.seed)), flush=True)
        return ""
    if args.worker == "crash":
        worker_crash(args.system, Path(args.path), args.mb, args.seed, args.one_segment)
        return ""
    if args.quick:
        args.scales, args.ingest_n, args.repeats, args.lookups, args.queries = "2000", 2_000, 1, 20, 5
        args.aux_n, args.interval, args.spans_per_day, args.recovery_mb = 3_000, 300, 100, 2
    if 300 % args.interval:
        raise SystemExit("--interval must divide 300 seconds")
    scale_ns = sorted(int(s) for s in args.scales.split(","))
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root))
    problems: list[str] = []
    wall0 = time.perf_counter()
    try:
        ingest = bench_ingest(scratch, args.ingest_n, (1000, 100), args.repeats)
        scales = [bench_scale(scratch, n, args, problems) for n in scale_ns]
        logs = bench_logs(scratch, args.aux_n, args.queries, args.seed, problems)
        metrics = bench_metrics(scratch, args.aux_n, args.interval, args.queries, args.seed, problems)
        progress(f"get_trace over 30 daily cold partitions ({args.spans_per_day:,} spans a day)")
        cold30 = bench_traces(scratch, 30, args.spans_per_day, args.lookups, 1000, args.seed, problems)
        recovery = bench_recovery(scratch, args.recovery_mb, args.seed, problems)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if root.exists() and not any(root.iterdir()):
            root.rmdir()
    wall = time.perf_counter() - wall0
    rows = build_rows(ingest, args.ingest_n, scales, logs, metrics, cold30, recovery)
    command = "python benchmarks/compare.py" + ("" if argv is None else " " + " ".join(argv))
    if argv is None and len(sys.argv) > 1:
        command = "python benchmarks/compare.py " + " ".join(sys.argv[1:])
    lines = [
        f"machine: {machine()}",
        f"command: {command}",
        "",
        table(
            ["measurement", "scale", "tael", "SQLite", "DuckDB", "tael / SQLite", "tael / DuckDB", "target", "verdict"],
            [r.cells for r in rows],
        ),
        "",
        *(f"- {note}" for note in notes(args, scales, logs, metrics, cold30, recovery)),
        "",
        f"wall time: {wall:.0f} s",
    ]
    if problems:
        lines += ["", "PROBLEMS (results read back were wrong):", *(f"- {p}" for p in problems[:30])]
        if len(problems) > 30:
            lines.append(f"- ... and {len(problems) - 30} more")
    out = "\n".join(lines)
    print(out)
    if problems:
        raise SystemExit(1)
    return out


if __name__ == "__main__":
    main()
