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
import pyarrow as pa
import pyarrow.compute as pc

from ._block import RECORDS_OF, Block
from ._hotblocks import BK, SIGNAL_CODE, TIME, blocks, load, rows_of, width
from ._layout import SPAN_ID, SPAN_START, SPAN_TRACE
from ._query.filters import Scan
from ._query.tier import Hit, Stop

_MAX_KEY_TIME: Final = (1 << 64) - 1
_CHUNK: Final = 64  # rows built into records at a time while a limit is not reached

# The columns a filter's Arrow expression may read, per signal (tael/_query/filters.py).
_FILTER_COLUMNS: Final = {
    "spans": ("start_ns", "service", "name", "status", "kind"),
    "logs": ("time_ns", "service", "severity_number"),
    "metrics": ("time_ns", "name", "service"),
}


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
        if scan.service is not None and scan.service not in meta[3]:
            return True
        return scan.signal == "metrics" and scan.metric is not None and scan.metric not in meta[4]

    def _candidates(self, scan: Scan, block: Block) -> pa.Array:
        """Rows of ``block`` that pass the time range and the filter's Arrow expression."""
        cols = {name: block.column(name) for name in _FILTER_COLUMNS[scan.signal]}
        if scan.signal == "spans":
            cols["duration_ns"] = pc.subtract(block.column("end_ns"), cols["start_ns"])
        cols["_row"] = pa.array(range(block.n), pa.int32())
        table = pa.table(cols)
        expr = scan.expr
        if expr is not None:
            table = table.filter(expr)
        return table.column("_row").combine_chunks()

    def _order(self, signal: str, block: Block, rows: pa.Array, newest_first: bool) -> list[int]:
        """``rows`` of ``block`` in sort-key order (descending when ``newest_first``)."""
        keys = ["start_ns", "trace_id", "span_id"] if signal == "spans" else [TIME[signal], "wal_lsn", "batch_index"]
        table = pa.table({k: block.column(k).take(rows) for k in keys} | {"_row": rows})
        order = "descending" if newest_first else "ascending"
        idx = pc.sort_indices(table, sort_keys=[(k, order) for k in keys])
        return table.column("_row").take(idx).to_pylist()  # type: ignore[no-any-return]

    def _hits(self, signal: str, block: Block, rows: Sequence[int]) -> list[Hit]:
        records = RECORDS_OF[signal](block.batch(), rows)
        if signal == "spans":
            return [((f[SPAN_TRACE], f[SPAN_ID]), (f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f) for f in records]
        times = block.column(TIME[signal]).take(pa.array(rows, pa.int64())).to_pylist()
        lsns = block.column("wal_lsn").take(pa.array(rows, pa.int64())).to_pylist()
        idxs = block.column("batch_index").take(pa.array(rows, pa.int64())).to_pylist()
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
                rows = pc.indices_nonzero(pc.equal(block.column("trace_id"), pa.scalar(trace, pa.binary(16))))
                out += self._hits("spans", block, rows.to_pylist())
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
