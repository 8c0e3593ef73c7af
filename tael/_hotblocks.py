"""The hot tier's block tables: applying a block, its small indexes, and moving blocks out.

A hot-tier **block** is one column batch (tael/_block.py) stored as one LMDB value,
keyed by (newest time in it, WAL LSN of the frame that brought it): a time range is a
key range, and a block's key never collides with another's. Beside it are small tables
that let reads skip blocks without decoding them (per-block metadata: time range,
services, counts), find a trace's or a series' rows (``span_traces``, ``log_traces``,
``series_blocks``), and keep the per-service counters and the span-name catalog.
docs/format/hot.md gives every key and value byte by byte.

This module writes those tables (apply, and eviction by compaction and retention);
tael/_hotread.py reads them. Both take the tier's tables through :class:`Tables`,
so neither imports tael/_hot.py, which owns the environment and calls them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any, Final, Protocol

import lmdb
import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _hotrollups
from ._blobs import Payloads
from ._block import (
    BLOCK_SCHEMAS,
    EXTRA_FIELDS,
    METRIC_KIND_CODE,
    Block,
    dumps,
    events_json,
    events_of,
    loads,
    span_refs,
    strip_refs,
)
from ._layout import EVENT_ATTRS, SPAN_ATTRS, SPAN_EVENTS

BK: Final = struct.Struct(">QQ")  # a block key: newest time in the block, LSN of its (first) WAL frame
Q: Final = struct.Struct(">Q")
STATS: Final = struct.Struct("<QQQQ")  # span count, error count, total duration ns, trace count
SIGNAL_SPANS: Final = 1
SIGNAL_LOGS: Final = 2
SIGNAL_CODE: Final = {"spans": SIGNAL_SPANS, "logs": SIGNAL_LOGS}

BLOCKS: Final = {"spans": "span_blocks", "logs": "log_blocks", "metrics": "metric_blocks"}
METAS: Final = {"spans": "span_meta", "logs": "log_meta", "metrics": "metric_meta"}
TIME: Final = {"spans": "start_ns", "logs": "time_ns", "metrics": "time_ns"}
WIDTH: Final = {s: f"block_width:{s}".encode() for s in BLOCKS}  # meta: the widest block's max - min time

# A block's metadata (value of span_meta, log_meta, metric_meta): a msgpack array.
META_MIN: Final = 0  # oldest time in the block
META_MAX: Final = 1  # newest time (also in the key)
META_ROWS: Final = 2  # rows
META_SERVICES: Final = 3  # sorted distinct services
META_ERRORS: Final = 4  # spans: rows with status error; logs: highest severity; metrics: sorted metric names
META_LONGEST: Final = 5  # spans: longest duration ns; logs, metrics: 0

_ROLLUP_INPUT_SCHEMA: Final = pa.schema(
    [EXTRA_FIELDS[n] if n in EXTRA_FIELDS else BLOCK_SCHEMAS["metrics"].field(n) for n in _hotrollups.INPUT]
)

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def unpackb(data: Any) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)


class Tables(Protocol):
    """What the block functions need of the hot tier."""

    db: dict[str, Any]
    payloads: Payloads

    def put_blobs(self, txn: lmdb.Transaction, blobs: Sequence[tuple[bytes, str]]) -> None: ...


def rows_bytes(rows: Sequence[int]) -> bytes:
    """Row indexes as u32 little-endian (the values of log_traces and series_blocks)."""
    return struct.pack(f"<{len(rows)}I", *rows)


def rows_of(raw: bytes | memoryview) -> list[int]:
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))


def _grouped(values: list[Any]) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        rows = out.get(v)
        if rows is None:
            out[v] = [i]
        else:
            rows.append(i)
    return out


def _replace(block: Block, columns: dict[str, pa.Array]) -> Block:
    batch = block.batch()
    arrays = [columns.get(name, col) for name, col in zip(batch.schema.names, batch.columns, strict=True)]
    names = batch.schema.names + [n for n in columns if n not in batch.schema.names]
    arrays += [columns[n] for n in columns if n not in batch.schema.names]
    return Block.of(pa.RecordBatch.from_arrays(arrays, names=names), block.signal)


def with_position(block: Block, lsn: int) -> Block:
    """A log or metric block with its rows' WAL positions (``wal_lsn``, ``batch_index``)."""
    if block.has("wal_lsn"):
        return block
    n = block.n
    return _replace(
        block,
        {"wal_lsn": pa.array([lsn] * n, pa.int64()), "batch_index": pa.array(range(n), pa.int32())},
    )


def _widen(txn: lmdb.Transaction, db: dict[str, Any], signal: str, width: int) -> None:
    key = WIDTH[signal]
    old = txn.get(key, db=db["meta"])
    if old is None or Q.unpack(old)[0] < width:
        txn.put(key, Q.pack(width), db=db["meta"])


def width(txn: lmdb.Transaction, db: dict[str, Any], signal: str) -> int:
    """The largest (newest - oldest) time of any block of ``signal`` stored so far."""
    raw = txn.get(WIDTH[signal], db=db["meta"])
    return Q.unpack(raw)[0] if raw else 0


# ---------------------------------------------------------------- spans


def _known_spans(cur: lmdb.Cursor, trace: bytes, ids: set[bytes], services: set[str]) -> None:
    """Add the span ids and services the hot tier holds for ``trace`` (span_traces)."""
    if cur.set_range(trace):
        for key, value in cur:
            if key[:16] != trace:
                break
            raw, svcs = unpackb(value)
            ids.update(raw[i : i + 8] for i in range(0, len(raw), 8))
            services.update(svcs)


def cold_trace_entry(value: bytes | memoryview) -> tuple[list[str], bytes]:
    """(services, concatenated 8-byte span ids) of a ``cold_traces`` value for spans.
    Entries written before format 3 hold the services only (no ids: empty bytes)."""
    if not value:
        return [], b""
    x = unpackb(value)
    if len(x) == 2 and type(x[1]) is bytes:
        return x[0], x[1]
    return x, b""


def _known_cold_spans(cur: lmdb.Cursor, trace: bytes, ids: set[bytes], services: set[str]) -> None:
    prefix = trace + bytes((SIGNAL_SPANS,))
    if cur.set_range(prefix):
        for key, value in cur:
            if key[:17] != prefix:
                break
            svcs, raw = cold_trace_entry(value)
            services.update(svcs)
            ids.update(raw[i : i + 8] for i in range(0, len(raw), 8))


def _externalize_spans(t: Tables, txn: lmdb.Transaction, block: Block, bkey: bytes) -> Block:
    """Move the long payload texts of rows flagged 2 to the blob store: their JSON loses the
    texts (the keys stay, with ""), ``payload_refs`` names the blobs."""
    flagged = pc.indices_nonzero(pc.equal(block.column("payload"), 2)).to_pylist()
    if not flagged:
        return block
    attrs = block.column("attributes").to_pylist()
    events = block.column("events").to_pylist()
    refs: list[Any] = block.column("payload_refs").to_pylist()
    split, put = t.payloads.externalize_span, t.put_blobs
    blob_refs = []
    record: list[Any] = [None] * 18
    for i in flagged:
        record[SPAN_ATTRS] = loads(attrs[i])
        record[SPAN_EVENTS] = events_of(events[i])
        blobs = split(record)
        if not blobs:
            continue
        put(txn, blobs)
        blob_refs += [(digest + bytes((SIGNAL_SPANS,)) + bkey, b"") for digest, _text in blobs]
        refs[i] = (span_refs(record) or b"").decode()
        attrs[i] = dumps(strip_refs(record[SPAN_ATTRS])).decode()
        if record[SPAN_EVENTS]:
            events[i] = events_json([[e[0], e[1], strip_refs(e[EVENT_ATTRS])] for e in record[SPAN_EVENTS]]).decode()
    if blob_refs:
        txn.cursor(db=t.db["blob_refs"]).putmulti(sorted(blob_refs), overwrite=False)
    return _replace(
        block,
        {
            "attributes": pa.array(attrs, pa.string()),
            "events": pa.array(events, pa.string()),
            "payload_refs": pa.array(refs, pa.string()),
        },
    )


def span_digests(block: Block) -> list[bytes]:
    """Digests of the blobs a span block refers to (``payload_refs``)."""
    out = []
    for ref in block.column("payload_refs").to_pylist():
        if ref is not None:
            out += [bytes.fromhex(d) for _e, _k, d in loads(ref)]
    return out


def _codes(arr: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """(a code per row, the distinct values in first-appearance order) of a column."""
    encoded = pc.dictionary_encode(arr)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def _sorted_codes(arr: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """As :func:`_codes`, the distinct values sorted (codes in their order)."""
    codes, values = _codes(arr)
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(values), np.int64)
    rank[order] = np.arange(len(values))
    return rank[codes], [values[i] for i in order]


def _group_sums(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """Exact int64 sums of ``values`` per code (0..groups-1; a float bincount would round)."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=groups)
    out = np.zeros(groups, np.int64)
    present = counts > 0
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[present]
    out[present] = np.add.reduceat(values[order], starts)
    return out


_SPANS_CODE: Final = bytes((SIGNAL_SPANS,))


def has_prefix(cur: lmdb.Cursor, prefix: bytes) -> bool:
    """Whether the cursor's table holds a key starting with ``prefix`` (the cursor moves)."""
    return bool(cur.set_range(prefix)) and bytes(cur.key()[: len(prefix)]) == prefix


def _fresh_rows(
    hot_cur: lmdb.Cursor, cold_cur: lmdb.Cursor | None, block: Block, traces: list[bytes], codes: np.ndarray
) -> tuple[np.ndarray | None, dict[int, set[str]]]:
    """(a keep mask, or None to keep every row; trace code -> services either tier already
    holds for it) for a block of spans: a row is left out when either tier holds its
    (trace id, span id), or an earlier row of the block has it."""
    known: dict[int, set[bytes]] = {}
    earlier: dict[int, set[str]] = {}
    # Most traces are new: one cursor seek per tier tells (the next key has another prefix).
    seek, key = hot_cur.set_range, hot_cur.key
    seen = [k for k, trace in enumerate(traces) if seek(trace) and key()[:16] == trace]
    if cold_cur is not None:
        seek, key = cold_cur.set_range, cold_cur.key
        seen += [k for k, t in enumerate(traces) if seek(t + _SPANS_CODE) and key()[:17] == t + _SPANS_CODE]
    for k in sorted(set(seen)):
        ids: set[bytes] = set()
        services: set[str] = set()
        _known_spans(hot_cur, traces[k], ids, services)
        if cold_cur is not None:
            _known_cold_spans(cold_cur, traces[k], ids, services)
        earlier[k] = services
        if ids:
            known[k] = ids
    span_id = block.column("span_id")
    sids = np.frombuffer(span_id.buffers()[1], np.uint64, count=block.n, offset=span_id.offset * 8)
    order = np.lexsort((sids, codes))  # stable: equal (trace, span) pairs keep row order
    keep = np.ones(block.n, np.bool_)
    same = (codes[order][1:] == codes[order][:-1]) & (sids[order][1:] == sids[order][:-1])
    keep[order[1:][same]] = False  # a later copy within the block
    if known:
        ids_list = span_id.to_pylist()
        for i in np.flatnonzero(np.isin(codes, list(known))).tolist():
            if ids_list[i] in known[int(codes[i])]:
                keep[i] = False
    return (None if keep.all() else keep), earlier


def _held_span_digests(block: Block) -> list[bytes]:
    """:func:`span_digests` of a stored block without keeping its heavy columns decoded:
    only rows flagged 2 (``payload``) can have references, and the decoding is done on a
    copy of the block, so evicting a chunk's blocks holds none of their attributes."""
    if not pc.any(pc.equal(block.column("payload"), 2)).as_py():
        return []
    return span_digests(Block(block.data, block.signal) if block.data else block)


def apply_spans(t: Tables, txn: lmdb.Transaction, block: Block, lsn: int) -> None:
    """Store a block of spans: those whose (trace id, span id) either tier holds already,
    or an earlier row of the block has, are left out (a re-sent span changes nothing)."""
    db = t.db
    if block.n == 0:
        return
    codes, traces = _codes(block.column("trace_id"))
    hot_cur = txn.cursor(db=db["span_traces"])
    cold_cur = txn.cursor(db=db["cold_traces"]) if txn.stat(db["cold_traces"])["entries"] else None
    keep, earlier = _fresh_rows(hot_cur, cold_cur, block, traces, codes)
    if keep is not None:
        if not keep.any():
            return
        block = Block.of(block.batch().filter(pa.array(keep)), "spans")
        codes = codes[keep]
    start, end = block.column("start_ns"), block.column("end_ns")
    lo, hi = pc.min_max(start).values()
    bkey = BK.pack(hi.as_py(), lsn)
    if pc.any(pc.equal(block.column("payload"), 2)).as_py():
        block = _externalize_spans(t, txn, block, bkey)
    starts = start.to_numpy()
    durations = end.to_numpy() - starts
    svc_codes, services = _sorted_codes(block.column("service"))
    m = len(services)
    errors = pc.equal(block.column("status"), "error").to_numpy(zero_copy_only=False)
    spans_per = np.bincount(svc_codes, minlength=m)
    errors_per = np.bincount(svc_codes[errors], minlength=m)
    duration_per = _group_sums(svc_codes, durations, m)
    longest = max(0, int(durations.max()))
    txn.put(bkey, block.data, db=db["span_blocks"])
    txn.put(
        bkey,
        _packb([lo.as_py(), hi.as_py(), block.n, services, int(errors_per.sum()), longest]),
        db=db["span_meta"],
    )
    _widen(txn, db, "spans", hi.as_py() - lo.as_py())
    pair_traces, pair_services = index_spans(txn, db, bkey, block, codes, traces, svc_codes, services)
    if earlier:
        new_traces = np.zeros(m, np.int64)
        for k, s in zip(pair_traces, pair_services, strict=True):
            if services[s] not in earlier.get(k, ()):
                new_traces[s] += 1
    else:
        new_traces = np.bincount(np.asarray(pair_services, np.int64), minlength=m)
    # the span-name catalog: the newest start per (service, name)
    name_codes, names = _codes(block.column("name"))
    op_keys, op_rows = np.unique(svc_codes * len(names) + name_codes, return_inverse=True)
    newest = np.full(len(op_keys), -1, np.int64)
    np.maximum.at(newest, op_rows, starts)
    ops = db["operations"]
    for key, newest_start in zip(op_keys.tolist(), newest.tolist(), strict=True):
        op = services[key // len(names)].encode() + b"\x00" + names[key % len(names)].encode()
        old = txn.get(op, db=ops)
        if old is None or Q.unpack(old)[0] < newest_start:
            txn.put(op, Q.pack(newest_start), db=ops)
    stats = db["services"]
    for s, service in enumerate(services):
        acc = [int(spans_per[s]), int(errors_per[s]), int(duration_per[s]), int(new_traces[s])]
        key = service.encode()
        old = txn.get(key, db=stats)
        if old is not None:
            acc = [a + b for a, b in zip(acc, STATS.unpack(old), strict=True)]
        txn.put(key, STATS.pack(*acc), db=stats)


def index_spans(
    txn: lmdb.Transaction,
    db: dict[str, Any],
    bkey: bytes,
    block: Block,
    codes: np.ndarray,
    traces: list[bytes],
    svc_codes: np.ndarray,
    services: list[str],
) -> tuple[list[int], list[int]]:
    """Put the span_traces entries of a stored block: per trace, its span ids (in row
    order) and its sorted services. ``codes``/``traces``: each row's trace code and the
    distinct trace ids (``_codes``); ``svc_codes``/``services``: the same for services,
    sorted (``_sorted_codes``). Returns the distinct (trace code, service code) pairs,
    by trace then by service name."""
    m = len(services)
    order = np.argsort(codes, kind="stable")
    span_id = block.column("span_id")
    sids = np.frombuffer(span_id.buffers()[1], np.uint64, count=block.n, offset=span_id.offset * 8)
    raw = sids[order].tobytes()
    per_trace = np.bincount(codes, minlength=len(traces))
    bounds = np.concatenate(([0], np.cumsum(per_trace))).tolist()
    pairs = np.unique(codes * m + svc_codes)
    pair_traces, pair_services = (pairs // m).tolist(), (pairs % m).tolist()
    named: list[list[str]] = [[] for _ in traces]
    for k, s in zip(pair_traces, pair_services, strict=True):
        named[k].append(services[s])
    items = sorted(
        (trace + bkey, _packb([raw[a * 8 : b * 8], names]))
        for trace, a, b, names in zip(traces, bounds[:-1], bounds[1:], named, strict=True)
        if b > a
    )
    txn.cursor(db=db["span_traces"]).putmulti(items)
    return pair_traces, pair_services


# ---------------------------------------------------------------- logs


def log_digests(block: Block) -> list[bytes]:
    return [d for d in block.column("body_blob").to_pylist() if d is not None]


def _externalize_logs(t: Tables, txn: lmdb.Transaction, block: Block, bkey: bytes) -> Block:
    flagged = pc.indices_nonzero(pc.equal(block.column("payload"), 2)).to_pylist()
    if not flagged:
        return block
    bodies = block.column("body").to_pylist()
    digests: list[Any] = block.column("body_blob").to_pylist()
    record: list[Any] = [None, None]
    blob_refs = []
    for i in flagged:
        record[1] = bodies[i]
        blobs = t.payloads.externalize_log(record)
        if blobs:
            t.put_blobs(txn, blobs)
            digests[i] = blobs[0][0]
            bodies[i] = ""
            blob_refs.append((blobs[0][0] + bytes((SIGNAL_LOGS,)) + bkey, b""))
    if blob_refs:
        txn.cursor(db=t.db["blob_refs"]).putmulti(sorted(blob_refs), overwrite=False)
    return _replace(block, {"body": pa.array(bodies, pa.string()), "body_blob": pa.array(digests, pa.binary(32))})


def apply_logs(t: Tables, txn: lmdb.Transaction, block: Block, lsn: int) -> None:
    """Store a block of log records (each keeps its WAL position as its identity)."""
    if block.n == 0:
        return
    block = with_position(block, lsn)
    db = t.db
    bkey = BK.pack(pc.max(block.column("time_ns")).as_py(), lsn)
    if pc.any(pc.equal(block.column("payload"), 2)).as_py():
        block = _externalize_logs(t, txn, block, bkey)
    store_logs(txn, db, bkey, block)


def store_logs(txn: lmdb.Transaction, db: dict[str, Any], bkey: bytes, block: Block) -> None:
    """Put a log block (with positions, payloads already moved) and its indexes."""
    time = block.column("time_ns")
    lo, hi = pc.min_max(time).values()
    txn.put(bkey, block.data, db=db["log_blocks"])
    services = sorted(pc.unique(block.column("service")).to_pylist())
    txn.put(
        bkey,
        _packb([lo.as_py(), hi.as_py(), block.n, services, pc.max(block.column("severity_number")).as_py(), 0]),
        db=db["log_meta"],
    )
    _widen(txn, db, "logs", hi.as_py() - lo.as_py())
    index_logs(txn, db, bkey, block)


def index_logs(txn: lmdb.Transaction, db: dict[str, Any], bkey: bytes, block: Block) -> None:
    traces = block.column("trace_id")
    if traces.null_count == block.n:
        return
    by_trace = _grouped(traces.to_pylist())
    by_trace.pop(None, None)
    items = sorted((trace + bkey, rows_bytes(rows)) for trace, rows in by_trace.items())
    txn.cursor(db=db["log_traces"]).putmulti(items)


# ---------------------------------------------------------------- metric points


def apply_metrics(t: Tables, txn: lmdb.Transaction, block: Block, lsn: int) -> None:
    """Store a block of metric points, add them to their series' 5-minute rollups
    (``series_rollups``), and name any new series in the catalog."""
    if block.n == 0:
        return
    block = with_position(block, lsn)
    db = t.db
    hi = pc.max(block.column("time_ns")).as_py()
    bkey = BK.pack(hi, lsn)
    stored = load(txn, db, "metrics", bkey)
    if stored is not None:  # the same frame again: its block replaces itself, its points count once
        unindex(txn, db, bkey, stored)
        restore(txn, db, bkey, block)
    else:
        store_metrics(txn, db, bkey, block)
        _hotrollups.apply(txn, db["series_rollups"], _hotrollups.Points(block.batch(_hotrollups.INPUT)))
    series = block.column("series_id").to_pylist()
    names = block.column("name").to_pylist()
    catalog = db["series"]
    first: dict[bytes, int] = {}
    for i, sid in enumerate(series):
        if sid not in first:
            first[sid] = i
    services = block.column("service").to_pylist()
    kinds = block.column("kind").to_pylist()
    attrs = block.column("attributes").to_pylist()
    for sid, i in first.items():
        key = names[i].encode() + b"\x00" + sid
        if txn.get(key, db=catalog) is None:
            txn.put(key, _packb([services[i], METRIC_KIND_CODE[kinds[i]], loads(attrs[i])]), db=catalog)


def store_metrics(txn: lmdb.Transaction, db: dict[str, Any], bkey: bytes, block: Block) -> None:
    """Put a metric block (with positions) and its indexes."""
    lo, hi = pc.min_max(block.column("time_ns")).values()
    txn.put(bkey, block.data, db=db["metric_blocks"])
    txn.put(
        bkey,
        _packb(
            [
                lo.as_py(),
                hi.as_py(),
                block.n,
                sorted(pc.unique(block.column("service")).to_pylist()),
                sorted(pc.unique(block.column("name")).to_pylist()),
                0,
            ]
        ),
        db=db["metric_meta"],
    )
    _widen(txn, db, "metrics", hi.as_py() - lo.as_py())
    index_metrics(txn, db, bkey, block)


def index_metrics(txn: lmdb.Transaction, db: dict[str, Any], bkey: bytes, block: Block) -> None:
    by_series = _grouped(block.column("series_id").to_pylist())
    items = sorted((sid + bkey, rows_bytes(rows)) for sid, rows in by_series.items())
    txn.cursor(db=db["series_blocks"]).putmulti(items)


def series_rows(
    txn: lmdb.Transaction,
    db: dict[str, Any],
    series: Sequence[bytes],
    lo: int,
    hi: int,
    cache: dict[bytes, Block | None] | None = None,
) -> list[tuple[Block, pa.Array]]:
    """(block, rows) of the hot points of ``series`` with ``lo <= time_ns < hi``. A
    series' ``series_blocks`` entries are in block-key order, so this reads one key
    range per series: the blocks whose newest point is at or after ``lo`` and whose
    oldest possible point (newest - the widest block) is before ``hi``. ``cache``:
    blocks already loaded, by key (filled as it goes)."""
    out: list[tuple[Block, pa.Array]] = []
    if hi <= lo or hi <= 0:
        return out
    w = width(txn, db, "metrics")
    cache = {} if cache is None else cache
    cur = txn.cursor(db=db["series_blocks"])
    for sid in series:
        if not cur.set_range(sid + BK.pack(max(lo, 0), 0)):
            continue
        for key, value in cur:
            if key[:8] != sid:
                break
            bkey = bytes(key[8:])
            if BK.unpack(bkey)[0] - w >= hi:
                break
            block = cache[bkey] if bkey in cache else cache.setdefault(bkey, load(txn, db, "metrics", bkey))
            if block is None:
                continue
            rows = np.frombuffer(value, dtype="<u4").astype(np.int64)
            times = block.column("time_ns").to_numpy()[rows]
            rows = rows[(times >= lo) & (times < hi)]
            if len(rows):
                out.append((block, pa.array(rows)))
    return out


def _rebuild_rollups(txn: lmdb.Transaction, db: dict[str, Any], windows: Sequence[tuple[bytes, int]]) -> None:
    """Recompute (series, window) rollups from every hot point in them (or delete them)."""
    cache: dict[bytes, Block | None] = {}
    batches = []
    for sid, start in windows:
        for block, rows in series_rows(txn, db, [sid], start, start + _hotrollups.WINDOW_NS, cache):
            batches.append(block.batch(_hotrollups.INPUT).take(rows))
    table = pa.Table.from_batches(batches) if batches else _ROLLUP_INPUT_SCHEMA.empty_table()
    _hotrollups.rebuild(txn, db["series_rollups"], windows, _hotrollups.Points(table))


# ---------------------------------------------------------------- reading blocks back


def blocks(
    txn: lmdb.Transaction, db: dict[str, Any], signal: str, *, reverse: bool = False, start: bytes | None = None
) -> Iterator[tuple[bytes, list[Any]]]:
    """(block key, metadata) of ``signal``'s blocks in key order (newest time, then LSN),
    from ``start`` (a key; with ``reverse``, the last key before it)."""
    cur = txn.cursor(db=db[METAS[signal]])
    if reverse:
        ok = cur.set_range(start) if start is not None else cur.last()
        if start is not None:
            ok = cur.prev() if ok else cur.last()
        it = cur.iterprev() if ok else iter(())
    else:
        ok = cur.set_range(start) if start is not None else cur.first()
        it = cur.iternext() if ok else iter(())
    for key, value in it:
        yield bytes(key), unpackb(value)


def load(txn: lmdb.Transaction, db: dict[str, Any], signal: str, bkey: bytes) -> Block | None:
    raw = txn.get(bkey, db=db[BLOCKS[signal]])
    return None if raw is None else Block(raw, signal)


# ---------------------------------------------------------------- moving blocks out


def unindex(txn: lmdb.Transaction, db: dict[str, Any], bkey: bytes, block: Block) -> list[bytes]:
    """Delete a stored block's entries in its side tables (not the counters); returns the
    digests of the blobs it referred to, whose references are gone too."""
    signal = block.signal
    txn.delete(bkey, db=db[BLOCKS[signal]])
    txn.delete(bkey, db=db[METAS[signal]])
    digests: list[bytes] = []
    if signal == "spans":
        for trace in set(block.column("trace_id").to_pylist()):
            txn.delete(trace + bkey, db=db["span_traces"])
        digests = _held_span_digests(block)
    elif signal == "logs":
        for trace in set(block.column("trace_id").to_pylist()):
            if trace is not None:
                txn.delete(trace + bkey, db=db["log_traces"])
        digests = log_digests(block)
    else:
        for sid in set(block.column("series_id").to_pylist()):
            txn.delete(sid + bkey, db=db["series_blocks"])
        points = _hotrollups.Points(block.batch(_hotrollups.INPUT))
        again = _hotrollups.remove(txn, db["series_rollups"], points)
        if again:
            _rebuild_rollups(txn, db, again)
    code = bytes((SIGNAL_CODE.get(signal, 0),))
    for digest in digests:
        txn.delete(digest + code + bkey, db=db["blob_refs"])
        txn.put(digest, b"", db=db["blob_gc"])
    return digests


def restore(txn: lmdb.Transaction, db: dict[str, Any], bkey: bytes, block: Block) -> None:
    """Store what is left of a block after some of its rows moved out, under its key (its
    newest row stays, so the key is unchanged)."""
    signal = block.signal
    if signal == "spans":
        start, end = block.column("start_ns"), block.column("end_ns")
        lo, hi = pc.min_max(start).values()
        txn.put(bkey, block.data, db=db["span_blocks"])
        svc_codes, services = _sorted_codes(block.column("service"))
        txn.put(
            bkey,
            _packb(
                [
                    lo.as_py(),
                    hi.as_py(),
                    block.n,
                    services,
                    pc.sum(pc.equal(block.column("status"), "error").cast(pa.int64())).as_py(),
                    pc.max(pc.subtract(end, start)).as_py(),
                ]
            ),
            db=db["span_meta"],
        )
        _widen(txn, db, "spans", hi.as_py() - lo.as_py())
        codes, traces = _codes(block.column("trace_id"))
        index_spans(txn, db, bkey, block, codes, traces, svc_codes, services)
        digests = span_digests(block)
    elif signal == "logs":
        store_logs(txn, db, bkey, block)
        digests = log_digests(block)
    else:
        store_metrics(txn, db, bkey, block)
        again = _hotrollups.restore(txn, db["series_rollups"], _hotrollups.Points(block.batch(_hotrollups.INPUT)))
        if again:
            _rebuild_rollups(txn, db, again)
        digests = []
    code = bytes((SIGNAL_CODE.get(signal, 0),))
    if digests:
        txn.cursor(db=db["blob_refs"]).putmulti(sorted({(d + code + bkey, b"") for d in digests}), overwrite=False)


def forget_spans(txn: lmdb.Transaction, db: dict[str, Any], gone: Sequence[Block]) -> None:
    """Take spans that left the store (retention) out of the per-service counters; a
    (service, trace) stops counting once no span of it is left in either tier."""
    stats: dict[str, list[int]] = {}
    by_trace: dict[bytes, set[str]] = {}
    for block in gone:
        start, end = block.column("start_ns").to_pylist(), block.column("end_ns").to_pylist()
        for trace, service, status, s, e in zip(
            block.column("trace_id").to_pylist(),
            block.column("service").to_pylist(),
            block.column("status").to_pylist(),
            start,
            end,
            strict=True,
        ):
            acc = stats.setdefault(service, [0, 0, 0, 0])
            acc[0] += 1
            acc[1] += status == "error"
            acc[2] += e - s
            by_trace.setdefault(trace, set()).add(service)
    forget_counts(txn, db, stats, by_trace)


def forget_counts(
    txn: lmdb.Transaction, db: dict[str, Any], stats: dict[str, list[int]], by_trace: dict[bytes, set[str]]
) -> None:
    """``stats``: service -> [spans, errors, duration ns, 0] that left the store; a
    (service, trace) in ``by_trace`` stops counting once no span of it is left."""
    hot_cur = txn.cursor(db=db["span_traces"])
    cold_cur = txn.cursor(db=db["cold_traces"])
    for trace, services in by_trace.items():
        remaining: set[str] = set()
        _known_spans(hot_cur, trace, set(), remaining)
        _known_cold_spans(cold_cur, trace, set(), remaining)
        for service in services - remaining:
            stats.setdefault(service, [0, 0, 0, 0])[3] += 1
    table = db["services"]
    for service, acc in stats.items():
        key = service.encode()
        old = txn.get(key, db=table)
        if old is None:
            continue
        left = [max(0, a - b) for a, b in zip(STATS.unpack(old), acc, strict=True)]
        if left[0] == 0:
            txn.delete(key, db=table)
        else:
            txn.put(key, STATS.pack(*left), db=table)
