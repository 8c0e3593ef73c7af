"""Reading the hot tier's blocks: the hot side of the read protocol, and window statistics.

A read visits blocks in key order (newest time in the block, then LSN), skips those whose
metadata rules them out (time range, services, metric names), decodes only the columns a
filter reads, filters them with Arrow compute, and builds records (tael/_layout.py) only
for the rows it returns, best first. Blocks overlap in time; the widest block ever stored
(``_hotblocks.width``) bounds how far a block's oldest row can be from its key, which is
what lets a scan start at a key and stop early.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._block import RECORDS_OF, Block
from ._hotblocks import (
    BK,
    META_ERRORS,
    META_LONGEST,
    META_ROWS,
    META_SERVICES,
    SIGNAL_CODE,
    TIME,
    blocks,
    load,
    rows_of,
    width,
)
from ._layout import SPAN_ID, SPAN_START, SPAN_TRACE
from ._query.filters import Scan
from ._query.tier import Hit, Stop

_MAX_KEY_TIME: Final = (1 << 64) - 1
_CHUNK: Final = 64  # rows built into records at a time while a limit is not reached

_FEW: Final = 256  # rows ordered by a Python sort of their keys; more: by Arrow
_ROW_WISE: Final = 8  # records of fewer than 1/8 of a block's rows are built row by row (Block.records)


class HotReader:
    """The hot tier as of one LMDB read transaction. Implements
    ``tael._query.tier.TierReader``; it also answers, from the same transaction, what
    the cold tier's reader needs from LMDB (``trace_refs``) and the metric series
    catalog (``series``), which describes hot and cold points alike."""

    def __init__(self, hot: Any, txn: lmdb.Transaction) -> None:
        self.hot = hot
        self.db: dict[str, Any] = hot.db
        self.txn = txn
        self._blocks: dict[tuple[str, bytes], Block | None] = {}

    def block(self, signal: str, bkey: bytes) -> Block | None:
        """A stored block (decoded once per reader)."""
        key = (signal, bkey)
        if key not in self._blocks:
            self._blocks[key] = load(self.txn, self.db, signal, bkey)
        return self._blocks[key]

    # ------------------------------------------------------------ the read protocol

    def scan(self, scan: Scan, *, newest_first: bool, limit: int, stop: Stop) -> Iterator[list[Hit]]:
        if scan.signal not in TIME:
            raise ValueError(f"unknown signal {scan.signal!r}")
        if scan.empty or limit <= 0:
            return
        if scan.signal == "logs" and scan.trace is not None:
            hits = self.logs_of_trace(scan, newest_first, limit)
            if hits:
                yield hits
            return
        if scan.signal == "metrics" and scan.series is not None:
            if newest_first:
                raise ValueError("metric points by series are read oldest first")
            hits = self.series_points(scan, limit)
            if hits:
                yield hits
            return
        yield from self._scan(scan, newest_first, limit, stop)

    def _scan(self, scan: Scan, newest_first: bool, limit: int, stop: Stop) -> Iterator[list[Hit]]:
        signal, lo, hi = scan.signal, scan.lo, scan.hi
        w = width(self.txn, self.db, signal)
        if newest_first:
            start = None if hi is None or hi + w >= _MAX_KEY_TIME else BK.pack(max(hi + w, 0), 0)
            for bkey, meta in blocks(self.txn, self.db, signal, reverse=True, start=start):
                newest = meta[1]
                if lo is not None and newest < lo:
                    break
                if hi is not None and meta[0] >= hi:
                    continue
                if stop(newest if hi is None else min(newest, hi - 1)):
                    break
                if self._pruned(scan, meta):
                    continue
                hits = self._block_hits(scan, bkey, newest_first, limit)
                if hits:
                    yield hits
        else:
            start = None if lo is None or lo <= 0 else BK.pack(lo, 0)
            for bkey, meta in blocks(self.txn, self.db, signal, start=start):
                newest = meta[1]
                if hi is not None and newest - w >= hi:
                    break
                if hi is not None and meta[0] >= hi:
                    continue
                if stop(max(lo or 0, newest - w)):
                    break
                if self._pruned(scan, meta):
                    continue
                hits = self._block_hits(scan, bkey, newest_first, limit)
                if hits:
                    yield hits

    @staticmethod
    def _pruned(scan: Scan, meta: list[Any]) -> bool:
        """Whether a block's metadata (``META_*``, docs/format/hot.md) rules out every row."""
        signal = scan.signal
        for column, value in scan.equal:
            if column == "service" and value not in meta[META_SERVICES]:
                return True
            if signal == "spans" and column == "status":  # META_ERRORS: the rows with status error
                errors = meta[META_ERRORS]
                if errors == (0 if value == "error" else meta[META_ROWS]):
                    return True
            if signal == "metrics" and column == "name" and value not in meta[META_ERRORS]:
                return True  # a metric block's META_ERRORS holds its sorted metric names
        if signal == "spans" and scan.min_duration_ns is not None and scan.min_duration_ns > meta[META_LONGEST]:
            return True
        if signal == "logs" and scan.min_severity is not None and scan.min_severity > meta[META_ERRORS]:
            return True  # a log block's META_ERRORS holds its highest severity number
        return signal == "metrics" and scan.metric is not None and scan.metric not in meta[META_ERRORS]

    def _candidates(self, scan: Scan, block: Block) -> np.ndarray:
        """Rows of ``block`` (ascending) that pass the time range and every condition of
        the filter but attributes: the cheapest first (string columns compared by code,
        never decoded), then time and duration for the rows left only."""
        mask: np.ndarray | None = None
        for column, value in scan.equal:
            rows_equal = block.equal_rows(column, value)
            mask = rows_equal if mask is None else mask & rows_equal
        rows = np.arange(block.n) if mask is None else np.flatnonzero(mask)
        if not len(rows):
            return rows
        signal, lo, hi = scan.signal, scan.lo, scan.hi
        keep: np.ndarray | None = None

        def both(cond: np.ndarray) -> None:
            nonlocal keep
            keep = cond if keep is None else keep & cond

        if lo is not None or hi is not None:
            t = block.numbers(TIME[signal])[rows]
            if lo is not None:
                both(t >= lo)
            if hi is not None:
                both(t < hi)
        if signal == "spans" and (scan.min_duration_ns is not None or scan.max_duration_ns is not None):
            # int64 arithmetic that wraps, as Arrow's subtract did: only rows ``keep`` rejects matter
            duration = block.numbers("end_ns")[rows] - block.numbers("start_ns")[rows]
            if scan.min_duration_ns is not None:
                both(duration >= scan.min_duration_ns)
            if scan.max_duration_ns is not None:
                both(duration <= scan.max_duration_ns)
        if signal == "logs" and scan.min_severity is not None:
            both(block.numbers("severity_number")[rows] >= scan.min_severity)
        return rows if keep is None else rows[keep]

    def _order(self, signal: str, block: Block, rows: np.ndarray, newest_first: bool) -> list[int]:
        """``rows`` of ``block`` in sort-key order (descending when ``newest_first``)."""
        keys = ["start_ns", "trace_id", "span_id"] if signal == "spans" else [TIME[signal], "wal_lsn", "batch_index"]
        listed = rows.tolist()
        if len(listed) <= _FEW:  # a Python sort of the few rows' keys, read from the block's bytes
            order = sorted(zip(*(block.pylist(k, listed) for k in keys), listed, strict=True), reverse=newest_first)
            return [key[-1] for key in order]
        take = pa.array(rows, pa.int64())
        table = pa.table({k: block.column(k).take(take) for k in keys} | {"_row": take})
        direction = "descending" if newest_first else "ascending"
        idx = pc.sort_indices(table, sort_keys=[(k, direction) for k in keys])
        return table.column("_row").take(idx).to_pylist()  # type: ignore[no-any-return]

    def _hits(self, signal: str, block: Block, rows: Sequence[int]) -> list[Hit]:
        records = block.records(rows) if len(rows) * _ROW_WISE < block.n else RECORDS_OF[signal](block.batch(), rows)
        if signal == "spans":
            return [((f[SPAN_TRACE], f[SPAN_ID]), (f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f) for f in records]
        times = block.pylist(TIME[signal], rows)
        lsns = block.pylist("wal_lsn", rows)
        idxs = block.pylist("batch_index", rows)
        return [((t, lsn, i), (t, lsn, i), f) for t, lsn, i, f in zip(times, lsns, idxs, records, strict=True)]

    def _take(self, scan: Scan, block: Block, rows: list[int], limit: int) -> list[Hit]:
        """The first ``limit`` of ``rows`` (in order) whose records pass ``scan.keep``."""
        keep = scan.keep
        out: list[Hit] = []
        for at in range(0, len(rows), max(_CHUNK, limit)):
            for hit in self._hits(scan.signal, block, rows[at : at + max(_CHUNK, limit)]):
                if keep(hit[2]):
                    out.append(hit)
                    if len(out) >= limit:
                        return out
        return out

    def _block_hits(self, scan: Scan, bkey: bytes, newest_first: bool, limit: int) -> list[Hit]:
        block = self.block(scan.signal, bkey)
        if block is None:
            return []
        rows = self._candidates(scan, block)
        if not len(rows):
            return []
        return self._take(scan, block, self._order(scan.signal, block, rows, newest_first), limit)

    def trace(self, trace: bytes) -> list[Hit]:
        out: list[Hit] = []
        for bkey in self._span_blocks_of(trace):
            block = self.block("spans", bkey)
            if block is not None:
                out += self._hits("spans", block, block.find("trace_id", trace))
        return out

    def _span_blocks_of(self, trace: bytes) -> list[bytes]:
        out = []
        cur = self.txn.cursor(db=self.db["span_traces"])
        if cur.set_range(trace):
            for key in cur.iternext(values=False):
                if key[:16] != trace:
                    break
                out.append(bytes(key[16:]))
        return out

    def lookup(self, signal: str, keys: Sequence[Any]) -> list[Hit]:
        if signal == "spans":
            wanted: dict[bytes, set[bytes]] = {}
            for trace, span in keys:
                wanted.setdefault(trace, set()).add(span)
            found = {}
            for trace, spans in wanted.items():
                for hit in self.trace(trace):
                    if hit[0][1] in spans:
                        found[hit[0]] = hit
            return [found[k] for k in keys if k in found]
        if signal == "logs":
            logs = self._logs_by_key(keys)
            return [logs[k] for k in keys if k in logs]
        raise ValueError(f"lookups are by span or log key, not {signal!r}")

    def _logs_by_key(self, keys: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int, int], Hit]:
        """Hits of the given (time, lsn, index) log keys: each in a block whose newest time
        is at or after its time, and at most the widest block's width after it."""
        w = width(self.txn, self.db, "logs")
        found: dict[tuple[int, int, int], Hit] = {}
        for key in sorted(set(keys)):
            if key in found:
                continue
            t = key[0]
            for bkey, meta in blocks(self.txn, self.db, "logs", start=BK.pack(t, 0)):
                if meta[1] - w > t:
                    break
                if meta[0] > t:
                    continue
                block = self.block("logs", bkey)
                if block is None:
                    continue
                mask = pc.and_(pc.equal(block.column("wal_lsn"), key[1]), pc.equal(block.column("batch_index"), key[2]))
                rows = pc.indices_nonzero(mask).to_pylist()
                if rows:
                    for hit in self._hits("logs", block, rows):
                        found[hit[0]] = hit
                    break
        return found

    def logs_of_trace(self, scan: Scan, newest_first: bool, limit: int) -> list[Hit]:
        """Logs of ``scan.trace`` in ``[scan.lo, scan.hi)`` that pass ``scan.keep``, best first."""
        trace = scan.trace
        assert trace is not None
        candidates: list[Hit] = []
        cur = self.txn.cursor(db=self.db["log_traces"])
        lo, hi = scan.lo, scan.hi
        if cur.set_range(trace):
            for key, value in cur:
                if key[:16] != trace:
                    break
                block = self.block("logs", bytes(key[16:]))
                if block is not None:
                    for hit in self._hits("logs", block, rows_of(value)):
                        t = hit[1][0]
                        if (lo is None or t >= lo) and (hi is None or t < hi):
                            candidates.append(hit)
        candidates.sort(key=lambda h: h[1], reverse=newest_first)
        keep = scan.keep
        out = []
        for hit in candidates:
            if keep(hit[2]):
                out.append(hit)
                if len(out) >= limit:
                    break
        return out

    def series_points(self, scan: Scan, limit: int) -> list[Hit]:
        """Points of ``scan.series`` in ``[scan.lo, scan.hi)``, oldest first, at most ``limit``."""
        assert scan.series is not None
        return self.points(scan.series, scan.lo, scan.hi, limit)

    def points(self, series: Sequence[bytes], lo: int | None, hi: int | None, limit: int) -> list[Hit]:
        """Points of ``series`` with ``lo <= time_ns < hi``, oldest first, at most ``limit``."""
        per_block: dict[bytes, list[int]] = {}
        cur = self.txn.cursor(db=self.db["series_blocks"])
        for sid in series:
            if cur.set_range(sid):
                for key, value in cur:
                    if key[:8] != sid:
                        break
                    per_block.setdefault(bytes(key[8:]), []).extend(rows_of(value))
        hits: list[Hit] = []
        for bkey, rows in per_block.items():
            block = self.block("metrics", bkey)
            if block is None:
                continue
            times = block.column("time_ns").take(pa.array(rows, pa.int64())).to_pylist()
            kept = [r for r, t in zip(rows, times, strict=True) if (lo is None or t >= lo) and (hi is None or t < hi)]
            if kept:
                hits += self._hits("metrics", block, kept)
        hits.sort(key=lambda h: h[1])
        return hits[:limit]

    def trace_refs(self, trace: bytes, signal: str) -> dict[int, list[int]]:
        """file id -> row groups of the cold files holding rows of ``trace`` ("spans" or
        "logs"), from the cold trace index in this transaction."""
        return self.hot.trace_refs(self.txn, trace, SIGNAL_CODE[signal])  # type: ignore[no-any-return]

    def series(self, name: str, keep: Callable[[list[Any]], bool]) -> list[bytes]:
        """Ids of the series named ``name`` whose descriptors (``SERIES_*``) pass ``keep``."""
        return [sid for sid, desc in self.hot.series_for(self.txn, name) if keep(desc)]


# ---------------------------------------------------------------- window statistics


def window_blocks(
    txn: lmdb.Transaction, db: dict[str, Any], signal: str, lo: int, hi: int, service: str | None
) -> Iterator[tuple[Block, pa.Array]]:
    """(block, rows with ``lo <= time < hi`` and of ``service``) of every block that has any."""
    if hi <= lo:
        return
    w = width(txn, db, signal)
    column = TIME[signal]
    for bkey, meta in blocks(txn, db, signal, start=BK.pack(max(lo, 0), 0)):
        if meta[1] - w >= hi:
            break
        if meta[0] >= hi or (service is not None and service not in meta[3]):
            continue
        raw = txn.get(bkey, db=db[{"spans": "span_blocks", "logs": "log_blocks", "metrics": "metric_blocks"}[signal]])
        if raw is None:
            continue
        block = Block(raw, signal)
        t = block.column(column)
        mask = pc.and_(pc.greater_equal(t, lo), pc.less(t, hi))
        if service is not None:
            mask = pc.and_(mask, pc.equal(block.column("service"), service))
        rows = pc.indices_nonzero(mask)
        if len(rows):
            yield block, rows


def span_window(
    txn: lmdb.Transaction, db: dict[str, Any], lo: int, hi: int, service: str | None
) -> tuple[list[str], list[str], list[str], list[int], list[bool]]:
    """Trace id (hex), service, name, duration_ns and error flag of every hot span with
    ``lo <= start_ns < hi`` (and of ``service``)."""
    traces: list[str] = []
    services: list[str] = []
    names: list[str] = []
    durations: list[int] = []
    errors: list[bool] = []
    for block, rows in window_blocks(txn, db, "spans", lo, hi, service):
        traces += [t.hex() for t in block.column("trace_id").take(rows).to_pylist()]
        services += block.column("service").take(rows).to_pylist()
        names += block.column("name").take(rows).to_pylist()
        durations += pc.subtract(block.column("end_ns"), block.column("start_ns")).take(rows).to_pylist()
        errors += pc.equal(block.column("status").take(rows), "error").to_pylist()
    return traces, services, names, durations, errors


def log_severities(txn: lmdb.Transaction, db: dict[str, Any], lo: int, hi: int, service: str | None) -> list[int]:
    """How many hot logs with ``lo <= time_ns < hi`` (and of ``service``) have each
    severity number 0..24."""
    counts = [0] * 25
    for block, rows in window_blocks(txn, db, "logs", lo, hi, service):
        for sev in block.column("severity_number").take(rows).to_pylist():
            counts[sev] += 1
    return counts


def metric_window(
    txn: lmdb.Transaction, db: dict[str, Any], lo: int, hi: int, service: str | None
) -> tuple[int, set[str]]:
    """How many hot metric points have ``lo <= time_ns < hi`` (and ``service``), and their names."""
    points = 0
    names: set[str] = set()
    for block, rows in window_blocks(txn, db, "metrics", lo, hi, service):
        points += len(rows)
        names.update(pc.unique(block.column("name").take(rows)).to_pylist())
    return points, names


def records(txn: lmdb.Transaction, db: dict[str, Any], signal: str) -> Iterator[tuple[Any, list[Any], int]]:
    """(key, record, lsn) of every hot record of ``signal``, block by block: the key is
    (start_ns, trace id, span id) for spans, (time_ns, lsn, index) otherwise; ``lsn``
    the WAL position of the frame that stored it."""
    for bkey, _meta in blocks(txn, db, signal):
        block = load(txn, db, signal, bkey)
        if block is None:
            continue
        recs = RECORDS_OF[signal](block.batch(), None)
        if signal == "spans":
            lsn = BK.unpack(bkey)[1]
            for f in recs:
                yield (f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f, lsn
        else:
            times = block.column(TIME[signal]).to_pylist()
            lsns = block.column("wal_lsn").to_pylist()
            idxs = block.column("batch_index").to_pylist()
            for t, lsn, i, f in zip(times, lsns, idxs, recs, strict=True):
                yield (t, lsn, i), f, lsn


def signal_counts(txn: lmdb.Transaction, db: dict[str, Any], signal: str) -> tuple[int, int | None, int | None]:
    """(records, oldest time, newest time) of ``signal`` in the hot tier, from block metadata."""
    count = 0
    oldest: int | None = None
    newest: int | None = None
    for _bkey, meta in blocks(txn, db, signal):
        count += meta[2]
        oldest = meta[0] if oldest is None else min(oldest, meta[0])
        newest = meta[1] if newest is None else max(newest, meta[1])
    return count, oldest, newest
