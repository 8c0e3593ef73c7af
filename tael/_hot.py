"""The LMDB hot tier: recent records keyed by time, with the secondary indexes reads need.

Every write transaction also records the WAL LSN it has applied up to, so
replay after a crash applies each WAL record exactly once. Key layouts are in
docs/format/hot.md.

Over the ~800 lines a module should stay under: the tier's writes (appliers,
eviction, blob collection), its reads (``HotReader``) and the cold-file catalog share
one LMDB environment and its table layout; the columnar hot tier of the next
format version replaces this module, and splits it into a package then.
"""

from __future__ import annotations

import heapq
import logging
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import lmdb

from ._blobs import BlobStore, Payloads
from ._codec import CommentRow, LogRow, MetricRow, SpanRow, packb, unpackb
from ._cold import ColdFile
from ._errors import CorruptionError, StorageError
from ._fsutil import sync_filesystem
from ._keys import MAX_KEY_BYTES
from ._layout import (
    COMMENT_ROW_CREATED,
    COMMENT_ROW_ID,
    COMMENT_ROW_PACKED,
    COMMENT_ROW_TRACE,
    GROUP_END,
    LOG_ROW_FLAG,
    LOG_ROW_PACKED,
    LOG_ROW_SERVICE,
    LOG_ROW_SEVERITY,
    LOG_ROW_TIME,
    LOG_ROW_TRACE,
    METRIC_ROW_DESC,
    METRIC_ROW_NAME,
    METRIC_ROW_PACKED,
    METRIC_ROW_SERIES,
    METRIC_ROW_TIME,
    SERIES_SERVICE,
    SPAN_ID,
    SPAN_ROW_DURATION,
    SPAN_ROW_ERROR,
    SPAN_ROW_FLAG,
    SPAN_ROW_ID,
    SPAN_ROW_NAME,
    SPAN_ROW_PACKED,
    SPAN_ROW_SERVICE,
    SPAN_ROW_START,
    SPAN_ROW_TRACE,
    SPAN_START,
    SPAN_TRACE,
    Group,
)
from ._models import SignalStats
from ._query.filters import Scan
from ._query.tier import Hit, Stop
from ._wal import RecordType

log = logging.getLogger(__name__)

_Q = struct.Struct(">Q")
RECORD_KEY = struct.Struct(">QQI")  # a log or metric point key: time_ns, WAL lsn, index in the batch
_STATS = struct.Struct("<QQQQ")  # span_count, error_count, total duration ns, trace_count
_APPLIED = b"applied_lsn"
_FORMAT = b"format_version"
FORMAT_VERSION = 2  # 2: blob, full-text and analytics tables

DBS = (
    b"meta",
    b"spans",  # start_ns(8) trace(16) span(8) -> record
    b"span_ids",  # trace(16) span(8) -> start_ns(8) lsn(8) service
    b"logs",  # time_ns(8) lsn(8) idx(4) -> record
    b"log_trace",  # trace(16) time_ns(8) lsn(8) idx(4) -> ""
    b"metrics",  # time_ns(8) lsn(8) idx(4) -> record
    b"metric_series",  # series(8) time_ns(8) lsn(8) idx(4) -> ""
    b"series",  # name NUL series(8) -> [service, kind, attributes]
    b"services",  # service -> _STATS over both tiers (moved by compaction, dropped by retention)
    b"cold_files",  # file id(4) -> packed ColdFile: the manifest of live cold files
    b"cold_traces",  # trace(16) signal(1) file id(4) row group(2) -> packed [services] (spans) or ""
    b"blobs",  # digest(32) -> raw length(8) stored length(8): the blob catalog
    b"blob_refs",  # digest(32) signal(1) hot primary key -> "": hot records referring to a blob
    b"cold_blobs",  # digest(32) file id(4) -> "": cold files referring to a blob
    b"cold_file_blobs",  # file id(4) -> packed [digest, ...]: the same, by file (for removing a file)
    b"blob_gc",  # digest(32) -> "": blobs that lost a reference since the last collection
    b"span_lean",  # spans key -> duration_ns(8) is_error(1) service NUL name: what summaries read
    b"log_lean",  # logs key -> severity_number(1) service
    b"metric_lean",  # metrics key -> series(8)
    b"operations",  # service NUL name -> newest start_ns(8) of a span with that name (both tiers)
    b"comments",  # trace(16) created_ns(8) id(16) -> packed comment
)
_NEXT_FILE = b"next_file_id"
_INDEXED = b"indexed_lsn"
_BLOB = struct.Struct(">QQ")
SIGNAL_SPANS, SIGNAL_LOGS = 1, 2
_I = struct.Struct(">I")
_TREF = struct.Struct(">BIH")

T = TypeVar("T")

# What an applier raises for a record it can never apply, however often it is
# retried: a key LMDB refuses (too long, empty), or rows that do not have the
# shape the appliers read. Environment failures (disk full, I/O errors, a full
# map) are not among them: those are retried.
_UNAPPLIABLE = (lmdb.BadValsizeError, ValueError, TypeError, KeyError, IndexError, AttributeError)


class UnappliableRecordError(CorruptionError):
    """A WAL record (the batch at ``lsn``..``end``) that the hot tier cannot apply.

    Validation makes this impossible for records tael wrote itself; it means a
    record written by an older version or a bug. The transaction that tried it
    was rolled back whole. Callers turn it into a CorruptionError naming the WAL
    segment and offset (``Wal.locate``), which ``tael.repair`` quarantines."""

    def __init__(self, lsn: int, end: int, cause: BaseException) -> None:
        super().__init__(f"the WAL record at LSN {lsn} cannot be applied to the hot tier: {cause!r}")
        self.lsn = lsn
        self.end = end
        self.cause = cause


class _Gate:
    """Lets many readers in, or one resizer alone (LMDB forbids resizing under open txns)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class HotTier:
    """Owns the LMDB environment. Writes come only from the commit pipeline (one at a time)."""

    def __init__(
        self,
        path: Path,
        *,
        map_size: int,
        sync: bool,
        read_only: bool,
        blobs: BlobStore,
        payloads: Payloads,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self.blobs = blobs
        self.payloads = payloads
        self._blobs_written = False  # set inside a write txn that placed new blob files
        try:
            self.env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(DBS),
                readonly=read_only,
                create=not read_only,
                sync=sync,
                metasync=False,
                readahead=False,
                max_readers=256,
                lock=True,
            )
        except lmdb.Error as exc:
            raise StorageError(f"cannot open the hot tier at {path}: {exc}") from exc
        self._gate = _Gate()
        self._write_lock = threading.Lock()  # one write txn at a time, and resizes only between them
        try:
            if self.env.max_key_size() < MAX_KEY_BYTES:
                raise StorageError(
                    f"{path}: this lmdb build limits keys to {self.env.max_key_size()} bytes; tael's key "
                    f"layouts need {MAX_KEY_BYTES} (tael/_keys.py)"
                )
            self._check_format(path, read_only)
            self.db = {name.decode(): self.env.open_db(name, create=not read_only) for name in DBS}
        except lmdb.Error as exc:
            self.env.close()
            raise StorageError(f"cannot open the hot tier at {path}: {exc}") from exc
        except BaseException:
            self.env.close()
            raise

    def _check_format(self, path: Path, read_only: bool) -> None:
        """Refuse a hot tier written by another format version before creating anything."""
        meta = self.env.open_db(b"meta", create=not read_only)
        with self.env.begin(write=not read_only) as txn:
            raw = txn.get(_FORMAT, db=meta)
            if raw is None:
                if not read_only and txn.stat(meta)["entries"] == 0:
                    txn.put(_FORMAT, _Q.pack(FORMAT_VERSION), db=meta)
                    return
                raise StorageError(f"{path}: the hot tier has no format version (not written by tael?)")
            version = _Q.unpack(raw)[0]
            if version != FORMAT_VERSION:
                raise StorageError(
                    f"{path}: hot tier format {version} is not supported by this version of tael "
                    f"(it reads format {FORMAT_VERSION}); nothing was changed"
                )

    # ------------------------------------------------------------ transactions

    @contextmanager
    def reader(self) -> Iterator[lmdb.Transaction]:
        with self._gate.read():
            try:
                txn = self.env.begin(buffers=False)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)  # another process grew the map; adopt its size
                txn = self.env.begin(buffers=False)
            try:
                yield txn
            finally:
                txn.abort()

    def applied_lsn(self) -> int:
        with self.reader() as txn:
            raw = txn.get(_APPLIED, db=self.db["meta"])
        return _Q.unpack(raw)[0] if raw else 0

    def indexed_lsn(self) -> int | None:
        """WAL position up to which the full-text index has committed every record
        (None: the index was never built for this hot tier)."""
        with self.reader() as txn:
            raw = txn.get(_INDEXED, db=self.db["meta"])
        return _Q.unpack(raw)[0] if raw else None

    def set_indexed_lsn(self, lsn: int) -> None:
        self.write(lambda txn: txn.put(_INDEXED, _Q.pack(lsn), db=self.db["meta"]))

    def get_meta(self, key: bytes) -> bytes | None:
        with self.reader() as txn:
            raw = txn.get(key, db=self.db["meta"])
        return None if raw is None else bytes(raw)

    def put_meta(self, items: dict[bytes, bytes]) -> None:
        """Write meta entries in one transaction and sync it (they must survive a crash)."""

        def run(txn: lmdb.Transaction) -> None:
            for key, value in items.items():
                txn.put(key, value, db=self.db["meta"])

        self.write(run)
        self.env.sync(True)

    def sync(self) -> None:
        self.env.sync(True)

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------ writes

    def write(self, fn: Callable[[lmdb.Transaction], T], after: Callable[[T], None] | None = None) -> T:
        """Run ``fn`` in one write transaction (retried whole after growing a full map).

        Blob files ``fn`` placed are made durable before the transaction commits.
        ``after(result)`` runs once it has committed, still holding the write lock."""
        with self._write_lock:
            while True:
                self._blobs_written = False
                try:
                    with self.env.begin(write=True) as txn:
                        result = fn(txn)
                        if self._blobs_written:
                            sync_filesystem(self.blobs.root)
                    break
                except lmdb.MapFullError:
                    self._grow()
                except lmdb.Error as exc:
                    raise StorageError(f"hot tier write to {self.path} failed: {exc}") from exc
                except OSError as exc:
                    raise StorageError(f"writing payload blobs under {self.blobs.root} failed: {exc}") from exc
            if after is not None:
                after(result)
            return result

    def apply(self, groups: Sequence[Group]) -> None:
        """Apply WAL records to LMDB in one transaction, advancing the applied LSN.

        Raises UnappliableRecordError naming the first batch that can never be
        applied (nothing of the group is then applied)."""

        def run(txn: lmdb.Transaction) -> None:
            for rtype, rows, lsn, end in groups:
                try:
                    self._APPLIERS[rtype](self, txn, rows, lsn)
                except _UNAPPLIABLE as exc:
                    raise UnappliableRecordError(lsn, end, exc) from exc
            txn.put(_APPLIED, _Q.pack(groups[-1][GROUP_END]), db=self.db["meta"])

        self.write(run)

    def _grow(self) -> None:
        new_size = self.env.info()["map_size"] * 2
        log.info("hot tier %s: map full, growing it to %d bytes", self.path, new_size)
        with self._gate.exclusive():
            self.env.set_mapsize(new_size)

    def _apply_spans(self, txn: lmdb.Transaction, rows: Sequence[SpanRow], lsn: int) -> None:
        ids = self.db["span_ids"]
        pack = _Q.pack
        tag = pack(lsn)
        # span_ids values are start_ns + the batch LSN + the service, so after an
        # insert-if-absent we can tell our entries from ones already stored. The
        # common case (no duplicates at all) costs one putmulti.
        id_items = [
            (r[SPAN_ROW_TRACE] + r[SPAN_ROW_ID], pack(r[SPAN_ROW_START]) + tag + r[SPAN_ROW_SERVICE].encode())
            for r in rows
        ]
        consumed, added = txn.cursor(db=ids).putmulti(id_items, overwrite=False)
        if added != consumed:
            fresh = []
            seen: set[bytes] = set()
            for row, (key, value) in zip(rows, id_items, strict=True):
                if key not in seen and txn.get(key, db=ids) == value:
                    fresh.append(row)
                seen.add(key)
            rows = fresh  # the rest are already stored: idempotent retries
            if not rows:
                return
        items = [(pack(r[SPAN_ROW_START]) + r[SPAN_ROW_TRACE] + r[SPAN_ROW_ID], r[SPAN_ROW_PACKED]) for r in rows]
        if any(r[SPAN_ROW_FLAG] == 2 for r in rows):
            items = self._externalize(txn, items, [r[SPAN_ROW_FLAG] for r in rows], SIGNAL_SPANS)
        txn.cursor(db=self.db["spans"]).putmulti(items)
        txn.cursor(db=self.db["span_lean"]).putmulti(
            [
                (
                    key,
                    pack(r[SPAN_ROW_DURATION])
                    + (b"\x01" if r[SPAN_ROW_ERROR] else b"\x00")
                    + r[SPAN_ROW_SERVICE].encode()
                    + b"\x00"
                    + r[SPAN_ROW_NAME].encode(),
                )
                for (key, _v), r in zip(items, rows, strict=True)
            ]
        )
        newest: dict[bytes, int] = {}
        for r in rows:
            op = r[SPAN_ROW_SERVICE].encode() + b"\x00" + r[SPAN_ROW_NAME].encode()
            if newest.get(op, -1) < r[SPAN_ROW_START]:
                newest[op] = r[SPAN_ROW_START]
        ops = self.db["operations"]
        for op, start in newest.items():
            old = txn.get(op, db=ops)
            if old is None or _Q.unpack(old)[0] < start:
                txn.put(op, pack(start), db=ops)
        per_service: dict[str, list[int]] = {}
        by_trace: dict[bytes, set[str]] = {}
        for _start, trace, _span, service, duration, is_error, _name, _flag, _value in rows:
            acc = per_service.get(service)
            if acc is None:
                acc = per_service[service] = [0, 0, 0, 0]
            acc[0] += 1
            acc[1] += is_error
            acc[2] += duration
            services_of_trace = by_trace.get(trace)
            if services_of_trace is None:
                by_trace[trace] = {service}
            else:
                services_of_trace.add(service)
        # A (service, trace) pair is new unless a span stored earlier has it: in the
        # hot tier (a read of the trace's few span_ids entries, not a random write)
        # or in the cold tier (the trace's cold index entries list their services).
        cur = txn.cursor(db=ids)
        cold = txn.cursor(db=self.db["cold_traces"]) if txn.stat(self.db["cold_traces"])["entries"] else None
        for trace, batch_services in by_trace.items():
            earlier = _hot_services(cur, trace, skip_lsn=tag)
            if cold is not None:
                earlier |= _cold_services(cold, trace)
            for service in batch_services - earlier if earlier else batch_services:
                per_service[service][3] += 1
        services = self.db["services"]
        for service, acc in per_service.items():
            key = service.encode()
            old = txn.get(key, db=services)
            if old is not None:
                acc = [a + b for a, b in zip(acc, _STATS.unpack(old), strict=True)]
            txn.put(key, _STATS.pack(*acc), db=services)

    def _apply_logs(self, txn: lmdb.Transaction, rows: Sequence[LogRow], lsn: int) -> None:
        pack = RECORD_KEY.pack
        items = [(pack(r[LOG_ROW_TIME], lsn, i), r[LOG_ROW_PACKED]) for i, r in enumerate(rows)]
        if any(r[LOG_ROW_FLAG] == 2 for r in rows):
            items = self._externalize(txn, items, [r[LOG_ROW_FLAG] for r in rows], SIGNAL_LOGS)
        txn.cursor(db=self.db["logs"]).putmulti(items)
        txn.cursor(db=self.db["log_lean"]).putmulti(
            [
                (k, bytes((r[LOG_ROW_SEVERITY],)) + r[LOG_ROW_SERVICE].encode())
                for (k, _v), r in zip(items, rows, strict=True)
            ]
        )
        traced = [
            (r[LOG_ROW_TRACE] + key, b"")
            for r, (key, _v) in zip(rows, items, strict=True)
            if r[LOG_ROW_TRACE] is not None
        ]
        if traced:
            txn.cursor(db=self.db["log_trace"]).putmulti(traced)

    def _externalize(
        self, txn: lmdb.Transaction, items: list[tuple[bytes, bytes]], flags: list[int], signal: int
    ) -> list[tuple[bytes, bytes]]:
        """Move the long payloads of the flagged records to the blob store: (key, packed
        record) pairs come back with digests in place of those texts."""
        split = self.payloads.externalize_span if signal == SIGNAL_SPANS else self.payloads.externalize_log
        refs = []
        out = []
        for (key, value), flag in zip(items, flags, strict=True):
            if flag != 2:
                out.append((key, value))
                continue
            f = unpackb(value)
            blobs = split(f)
            self.put_blobs(txn, blobs)
            refs += [(digest + bytes((signal,)) + key, b"") for digest, _text in blobs]
            out.append((key, packb(f)))
        if refs:
            txn.cursor(db=self.db["blob_refs"]).putmulti(refs, overwrite=False)
        return out

    def put_blobs(self, txn: lmdb.Transaction, blobs: Sequence[tuple[bytes, str]]) -> None:
        """Place the blobs the catalog does not hold yet (identical text is stored once)."""
        db = self.db["blobs"]
        for digest, text in blobs:
            if txn.get(digest, db=db) is None:
                stored = self.blobs.write(digest, text)
                txn.put(digest, _BLOB.pack(len(text.encode()), stored), db=db)
                self._blobs_written = True

    def _apply_comments(self, txn: lmdb.Transaction, rows: Sequence[CommentRow], lsn: int) -> None:
        txn.cursor(db=self.db["comments"]).putmulti(
            [
                (r[COMMENT_ROW_TRACE] + _Q.pack(r[COMMENT_ROW_CREATED]) + r[COMMENT_ROW_ID], r[COMMENT_ROW_PACKED])
                for r in rows
            ]
        )

    def comments(self, txn: lmdb.Transaction, trace: bytes) -> list[list[Any]]:
        """Comment records of one trace, oldest first."""
        out = []
        cur = txn.cursor(db=self.db["comments"])
        if cur.set_range(trace):
            for key, value in cur:
                if key[:16] != trace:
                    break
                out.append(unpackb(value))
        return out

    def drop_comments(self, before: int) -> int:
        """Delete comments created before ``before``; returns how many."""

        def run(txn: lmdb.Transaction) -> int:
            db = self.db["comments"]
            doomed = [bytes(k) for k in txn.cursor(db=db).iternext(values=False) if _Q.unpack_from(k, 16)[0] < before]
            for k in doomed:
                txn.delete(k, db=db)
            return len(doomed)

        return self.write(run)

    def _apply_metrics(self, txn: lmdb.Transaction, rows: Sequence[MetricRow], lsn: int) -> None:
        pack = RECORD_KEY.pack
        keys = [pack(r[METRIC_ROW_TIME], lsn, i) for i, r in enumerate(rows)]
        txn.cursor(db=self.db["metrics"]).putmulti([(k, r[METRIC_ROW_PACKED]) for k, r in zip(keys, rows, strict=True)])
        txn.cursor(db=self.db["metric_series"]).putmulti(
            [(r[METRIC_ROW_SERIES] + k, b"") for k, r in zip(keys, rows, strict=True)]
        )
        txn.cursor(db=self.db["metric_lean"]).putmulti(
            [(k, r[METRIC_ROW_SERIES]) for k, r in zip(keys, rows, strict=True)]
        )
        catalog = {r[METRIC_ROW_NAME].encode() + b"\x00" + r[METRIC_ROW_SERIES]: r[METRIC_ROW_DESC] for r in rows}
        db = self.db["series"]
        for key, desc in catalog.items():
            txn.put(key, desc, db=db, overwrite=False)

    # ------------------------------------------------------------ reads
    #
    # Every read takes the caller's read transaction, so one query sees the hot
    # tier and the cold manifest as of the same instant (a record moving to the
    # cold tier is seen in exactly one of them).

    def trace_spans(self, txn: lmdb.Transaction, trace: bytes) -> list[list[Any]]:
        """Raw records of one trace, via the (trace, span) index: no scan."""
        out = []
        spans = self.db["spans"]
        cur = txn.cursor(db=self.db["span_ids"])
        if cur.set_range(trace):
            for key, start in cur:
                if key[:16] != trace:
                    break
                value = txn.get(bytes(start[:8]) + key, db=spans)
                if value is not None:
                    out.append(unpackb(value))
        return out

    def get_spans(
        self, txn: lmdb.Transaction, keys: Sequence[tuple[bytes, bytes]]
    ) -> dict[tuple[bytes, bytes], list[Any]]:
        """Records of the given (trace, span) ids that the hot tier holds."""
        out = {}
        ids, spans = self.db["span_ids"], self.db["spans"]
        for trace, span in keys:
            start = txn.get(trace + span, db=ids)
            if start is not None:
                value = txn.get(bytes(start[:8]) + trace + span, db=spans)
                if value is not None:
                    out[(trace, span)] = unpackb(value)
        return out

    def get_logs(
        self, txn: lmdb.Transaction, keys: Sequence[tuple[int, int, int]]
    ) -> dict[tuple[int, int, int], list[Any]]:
        """Records of the given (time, lsn, index) log keys that the hot tier holds."""
        out = {}
        logs = self.db["logs"]
        for key in keys:
            value = txn.get(RECORD_KEY.pack(*key), db=logs)
            if value is not None:
                out[key] = unpackb(value)
        return out

    def scan(
        self,
        txn: lmdb.Transaction,
        dbname: str,
        start: int | None,
        end: int | None,
        *,
        reverse: bool,
        keep: Callable[[list[Any]], bool],
        limit: int,
    ) -> list[tuple[bytes, list[Any]]]:
        """(key, record) of a time-keyed primary table in ``[start, end)``, filtered, up to ``limit``."""
        out: list[tuple[bytes, list[Any]]] = []
        lo = _Q.pack(start) if start is not None and start > 0 else None
        hi = _Q.pack(end) if end is not None else None
        cur = txn.cursor(db=self.db[dbname])
        if reverse:
            ok = cur.set_range(hi) if hi is not None else cur.last()
            if hi is not None:
                ok = cur.prev() if ok else cur.last()
            it = cur.iterprev() if ok else iter(())
        else:
            ok = cur.set_range(lo) if lo is not None else cur.first()
            it = cur.iternext() if ok else iter(())
        for raw_key, value in it:
            key = bytes(raw_key)
            if reverse:
                if lo is not None and key < lo:
                    break
            elif hi is not None and key >= hi:
                break
            f = unpackb(value)
            if keep(f):
                out.append((key, f))
                if len(out) >= limit:
                    break
        return out

    def logs_by_trace(
        self,
        txn: lmdb.Transaction,
        trace: bytes,
        start: int | None,
        end: int | None,
        keep: Callable[[list[Any]], bool],
        limit: int,
        *,
        newest_first: bool = True,
    ) -> list[tuple[bytes, list[Any]]]:
        """(key, record) of logs carrying ``trace``, newest (or oldest) first, via the
        log_trace index."""
        keys = []
        cur = txn.cursor(db=self.db["log_trace"])
        if cur.set_range(trace):
            for key in cur.iternext(values=False):
                if key[:16] != trace:
                    break
                keys.append(bytes(key[16:]))
        if newest_first:
            keys.reverse()
        out = []
        logs = self.db["logs"]
        for key in keys:
            t = _Q.unpack_from(key)[0]
            if (start is not None and t < start) or (end is not None and t >= end):
                continue
            value = txn.get(key, db=logs)
            if value is None:
                continue
            f = unpackb(value)
            if keep(f):
                out.append((key, f))
                if len(out) >= limit:
                    break
        return out

    def series_for(self, txn: lmdb.Transaction, name: str) -> list[tuple[bytes, list[Any]]]:
        """(series id, [service, kind, attributes]) of every series named ``name``.

        The catalog keeps a series after its points move to the cold tier, so it
        also serves cold reads."""
        prefix = name.encode() + b"\x00"
        out = []
        cur = txn.cursor(db=self.db["series"])
        if cur.set_range(prefix):
            for key, desc in cur:
                if not bytes(key).startswith(prefix):
                    break
                out.append((bytes(key[len(prefix) :]), unpackb(desc)))
        return out

    def series_catalog(self, txn: lmdb.Transaction) -> dict[bytes, tuple[str, str]]:
        """series id -> (metric name, service) of every series."""
        out = {}
        for key, desc in txn.cursor(db=self.db["series"]):
            raw = bytes(key)  # name NUL series id (8 bytes, which may hold NULs)
            out[raw[-8:]] = (raw[:-9].decode(), unpackb(desc)[SERIES_SERVICE])
        return out

    def operations(self, txn: lmdb.Transaction, service: str) -> list[str]:
        """Span names seen for ``service``, sorted."""
        prefix = service.encode() + b"\x00"
        out = []
        cur = txn.cursor(db=self.db["operations"])
        if cur.set_range(prefix):
            for key in cur.iternext(values=False):
                if not bytes(key).startswith(prefix):
                    break
                out.append(bytes(key[len(prefix) :]).decode())
        return out

    def forget_operations(self, before: int) -> None:
        """Drop span names not seen at or after ``before`` (retention)."""

        def run(txn: lmdb.Transaction) -> None:
            db = self.db["operations"]
            doomed = [bytes(k) for k, v in txn.cursor(db=db) if _Q.unpack(v)[0] < before]
            for k in doomed:
                txn.delete(k, db=db)

        self.write(run)

    def series_points(
        self, txn: lmdb.Transaction, series: Sequence[bytes], start: int | None, end: int | None, limit: int
    ) -> list[tuple[bytes, list[Any]]]:
        """(key, record) of the given series' points in ``[start, end)``, oldest first."""
        lo = _Q.pack(start) if start is not None and start > 0 else b""
        per_series: list[list[bytes]] = []
        cur = txn.cursor(db=self.db["metric_series"])
        for sid in series:
            keys: list[bytes] = []
            if cur.set_range(sid + lo):
                for key in cur.iternext(values=False):
                    if key[:8] != sid:
                        break
                    if end is not None and _Q.unpack_from(key, 8)[0] >= end:
                        break
                    keys.append(bytes(key[8:]))
                    if len(keys) >= limit:
                        break
            per_series.append(keys)
        out = []
        metrics = self.db["metrics"]
        for key in heapq.merge(*per_series):
            value = txn.get(key, db=metrics)
            if value is not None:
                out.append((key, unpackb(value)))
                if len(out) >= limit:
                    break
        return out

    def services(self, txn: lmdb.Transaction) -> list[tuple[str, tuple[int, int, int, int]]]:
        return [(bytes(k).decode(), _STATS.unpack(v)) for k, v in txn.cursor(db=self.db["services"])]

    def signal_stats(self, txn: lmdb.Transaction) -> dict[str, SignalStats]:
        out = {}
        for signal in ("spans", "logs", "metrics"):
            db = self.db[signal]
            count = txn.stat(db)["entries"]
            cur = txn.cursor(db=db)
            oldest = _Q.unpack_from(cur.key())[0] if cur.first() else None
            newest = _Q.unpack_from(cur.key())[0] if cur.last() else None
            out[signal] = SignalStats(count=count, oldest_ns=oldest, newest_ns=newest)
        return out

    # The lean side tables (span_lean, log_lean, metric_lean: docs/format/hot.md) answer
    # window statistics without unpacking a record: one cursor range per window.

    def _lean(self, txn: lmdb.Transaction, table: str, lo: int, hi: int) -> Iterator[tuple[Any, Any]]:
        """(key, value) of a lean side table with ``lo <= time < hi``, as memoryviews valid in ``txn``."""
        if hi <= lo:
            return
        hi_key = _Q.pack(hi)
        cur: Any = txn.cursor(db=self.db[table])  # keys are bytes (the environment returns no buffers)
        if cur.set_range(_Q.pack(max(lo, 0))):
            for key, value in cur:
                if key[:8] >= hi_key:
                    break
                yield key, value

    def span_window(
        self, txn: lmdb.Transaction, lo: int, hi: int, service: str | None
    ) -> tuple[list[str], list[str], list[str], list[int], list[bool]]:
        """Trace id (hex), service, name, duration_ns and error flag of every hot span with
        ``lo <= start_ns < hi`` (and of ``service``), from ``span_lean``."""
        traces: list[str] = []
        services: list[str] = []
        names: list[str] = []
        durations: list[int] = []
        errors: list[bool] = []
        want = service.encode() if service is not None else None
        unpack = _Q.unpack_from
        for key, value in self._lean(txn, "span_lean", lo, hi):
            svc, _sep, name = bytes(value[9:]).partition(b"\x00")
            if want is not None and svc != want:
                continue
            traces.append(bytes(key[8:24]).hex())
            services.append(svc.decode())
            names.append(name.decode())
            durations.append(unpack(value)[0])
            errors.append(value[8] == 1)
        return traces, services, names, durations, errors

    def log_severities(self, txn: lmdb.Transaction, lo: int, hi: int, service: str | None) -> list[int]:
        """How many hot logs with ``lo <= time_ns < hi`` (and of ``service``) have each
        severity number 0..24, from ``log_lean``."""
        counts = [0] * 25
        want = service.encode() if service is not None else None
        for _key, value in self._lean(txn, "log_lean", lo, hi):
            if want is None or value[1:] == want:
                counts[value[0]] += 1
        return counts

    def metric_window(self, txn: lmdb.Transaction, lo: int, hi: int, service: str | None) -> tuple[int, set[str]]:
        """How many hot metric points have ``lo <= time_ns < hi`` (and ``service``), and
        their metric names, from ``metric_lean`` and the series catalog."""
        catalog = self.series_catalog(txn)  # series id -> (name, service)
        points = 0
        names: set[str] = set()
        seen: set[bytes] = set()
        for _key, raw in self._lean(txn, "metric_lean", lo, hi):
            sid = bytes(raw)
            name, svc = catalog.get(sid, ("", ""))
            if service is not None and svc != service:
                continue
            points += 1
            if sid not in seen:
                seen.add(sid)
                names.add(name)
        return points, names

    def span_lsn(self, txn: lmdb.Transaction, key: bytes) -> int | None:
        """The WAL position of the batch that stored the span under primary ``key``."""
        raw = txn.get(key[8:], db=self.db["span_ids"])
        return None if raw is None else _Q.unpack_from(raw, 8)[0]

    # ------------------------------------------------------------ cold-tier bookkeeping

    def manifest(self, txn: lmdb.Transaction) -> list[ColdFile]:
        """Every live cold file, in file-id order."""
        return [ColdFile.unpack(_I.unpack(k)[0], bytes(v)) for k, v in txn.cursor(db=self.db["cold_files"])]

    def trace_refs(self, txn: lmdb.Transaction, trace: bytes, signal: int) -> dict[int, list[int]]:
        """file id -> row groups holding rows of ``trace`` for one signal, from the cold trace index."""
        out: dict[int, list[int]] = {}
        prefix = trace + bytes((signal,))
        cur = txn.cursor(db=self.db["cold_traces"])
        if cur.set_range(prefix):
            for key in cur.iternext(values=False):
                if key[:17] != prefix:
                    break
                _sig, file_id, rg = _TREF.unpack_from(key, 16)
                out.setdefault(file_id, []).append(rg)
        return out

    def alloc_file_ids(self, n: int) -> list[int]:
        """Reserve ``n`` fresh cold file ids (never reused, even after a crash)."""

        def run(txn: lmdb.Transaction) -> list[int]:
            raw = txn.get(_NEXT_FILE, db=self.db["meta"])
            first = _Q.unpack(raw)[0] if raw else 1
            txn.put(_NEXT_FILE, _Q.pack(first + n), db=self.db["meta"])
            return list(range(first, first + n))

        return self.write(run)

    def publish_files(
        self,
        txn: lmdb.Transaction,
        added: Sequence[ColdFile],
        removed: Sequence[ColdFile],
        refs_added: Sequence[tuple[bytes, int, int, int, tuple[str, ...], bytes]],
        refs_removed: Sequence[tuple[bytes, int, int, int, tuple[str, ...], bytes]],
        blobs_added: Sequence[tuple[int, list[bytes]]] = (),
    ) -> None:
        """Manifest and trace-index changes; refs are (trace, signal, file id, row group,
        services of the trace's spans there, the 8-byte ids of those spans concatenated
        (b"" for logs); not stored yet). ``blobs_added``: (file id, digests its rows refer
        to) of added files; removed files' blob references go with them."""
        files, traces = self.db["cold_files"], self.db["cold_traces"]
        by_file, by_blob, gc = self.db["cold_file_blobs"], self.db["cold_blobs"], self.db["blob_gc"]
        for file_id, digests in blobs_added:
            if digests:
                txn.put(_I.pack(file_id), packb(sorted(digests)), db=by_file)
                for digest in digests:
                    txn.put(digest + _I.pack(file_id), b"", db=by_blob)
        for f in removed:
            txn.delete(_I.pack(f.file_id), db=files)
            raw = txn.pop(_I.pack(f.file_id), db=by_file)
            for digest in unpackb(raw) if raw is not None else ():
                txn.delete(digest + _I.pack(f.file_id), db=by_blob)
                txn.put(digest, b"", db=gc)
        for f in added:
            txn.put(_I.pack(f.file_id), f.pack(), db=files)
        for trace, signal, file_id, rg, _services, _spans in refs_removed:
            txn.delete(trace + _TREF.pack(signal, file_id, rg), db=traces)
        if refs_added:
            txn.cursor(db=traces).putmulti(
                sorted(
                    (trace + _TREF.pack(signal, file_id, rg), packb(sorted(services)) if services else b"")
                    for trace, signal, file_id, rg, services, _spans in refs_added
                )
            )

    # ------------------------------------------------------------ blobs

    def collect_blobs(self) -> tuple[int, int]:
        """Delete every blob that lost a reference since the last collection and has none
        left, hot or cold; returns (blobs removed, bytes freed). Runs under the write
        lock, so no apply can add a reference between the check and the unlink."""

        def run(txn: lmdb.Transaction) -> list[tuple[bytes, int]]:
            catalog, refs, cold = self.db["blobs"], self.db["blob_refs"], self.db["cold_blobs"]
            gc = self.db["blob_gc"]
            ref_cur, cold_cur = txn.cursor(db=refs), txn.cursor(db=cold)
            doomed = []
            for digest in [bytes(k) for k in txn.cursor(db=gc).iternext(values=False)]:
                txn.delete(digest, db=gc)
                if _has_prefix(ref_cur, digest) or _has_prefix(cold_cur, digest):
                    continue
                meta = txn.pop(digest, db=catalog)
                if meta is not None:
                    doomed.append((digest, _BLOB.unpack(meta)[1]))
            return doomed

        def unlink(doomed: list[tuple[bytes, int]]) -> None:
            if doomed:
                self.sync()  # the catalog no longer naming them is durable before they go
            for digest, _size in doomed:
                self.blobs.remove(digest)

        doomed = self.write(run, unlink)
        return len(doomed), sum(size for _d, size in doomed)

    def blob_stats(self, txn: lmdb.Transaction) -> tuple[int, int, int]:
        """(blobs, raw text bytes, stored bytes) from the catalog."""
        count = raw = stored = 0
        for value in txn.cursor(db=self.db["blobs"]).iternext(keys=False):
            r, s = _BLOB.unpack(value)
            count += 1
            raw += r
            stored += s
        return count, raw, stored

    def blob_digests(self, txn: lmdb.Transaction) -> list[bytes]:
        """Every digest in the blob catalog: the blob files that must exist (``tael check``
        asks the blob store which are missing)."""
        return [bytes(d) for d in txn.cursor(db=self.db["blobs"]).iternext(values=False)]

    def has_blob(self, txn: lmdb.Transaction, digest: bytes) -> bool:
        return txn.get(digest, db=self.db["blobs"]) is not None

    def blob_referenced(self, txn: lmdb.Transaction, digest: bytes) -> bool:
        return _has_prefix(txn.cursor(db=self.db["blob_refs"]), digest) or _has_prefix(
            txn.cursor(db=self.db["cold_blobs"]), digest
        )

    # ------------------------------------------------------------ eviction (compaction, retention)

    def records(self, txn: lmdb.Transaction, dbname: str) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, packed record) of a primary table, in key order."""
        for key, value in txn.cursor(db=self.db[dbname]):
            yield bytes(key), bytes(value)

    def chunk(self, txn: lmdb.Transaction, dbname: str, before: int, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` oldest (key, packed record) of a primary table with time < ``before``."""
        out = []
        hi = _Q.pack(before)
        cur = txn.cursor(db=self.db[dbname])
        if cur.first():
            for key, value in cur:
                if bytes(key[:8]) >= hi:
                    break
                out.append((bytes(key), bytes(value)))
                if len(out) >= limit:
                    break
        return out

    def evict_spans(self, txn: lmdb.Transaction, items: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[bytes]:
        """Delete spans (by primary key, with the blob digests each refers to) and their
        index entries; returns the keys deleted. The per-service counters stay (the spans
        moved to the cold tier); retention takes spans that leave the store out of them
        with ``forget_spans``."""
        spans, ids, lean = self.db["spans"], self.db["span_ids"], self.db["span_lean"]
        gone: list[bytes] = []
        for key, digests in items:
            if txn.delete(key, db=spans):
                txn.delete(key[8:], db=ids)
                txn.delete(key, db=lean)
                gone.append(key)
                for digest in digests:
                    self._drop_ref(txn, digest + bytes((SIGNAL_SPANS,)) + key, digest)
        return gone

    def forget_spans(self, txn: lmdb.Transaction, stats: dict[str, list[int]], by_trace: dict[bytes, set[str]]) -> None:
        """Take spans that left the store out of the per-service counters: ``stats`` is
        service -> [spans, errors, duration ns, 0]; a (service, trace) in ``by_trace``
        stops counting once no span of it is left in either tier."""
        ids = txn.cursor(db=self.db["span_ids"])
        cold = txn.cursor(db=self.db["cold_traces"])
        for trace, services in by_trace.items():
            remaining = _cold_services(cold, trace) | _hot_services(ids, trace)
            for service in services - remaining:
                stats.setdefault(service, [0, 0, 0, 0])[3] += 1
        db = self.db["services"]
        for service, acc in stats.items():
            key = service.encode()
            old = txn.get(key, db=db)
            if old is None:
                continue
            left = [max(0, a - b) for a, b in zip(_STATS.unpack(old), acc, strict=True)]
            if left[0] == 0:
                txn.delete(key, db=db)
            else:
                txn.put(key, _STATS.pack(*left), db=db)

    def evict_logs(self, txn: lmdb.Transaction, items: Sequence[tuple[bytes, bytes | None, Sequence[bytes]]]) -> None:
        """Delete log records by (primary key, trace id or None, blob digests it refers to)."""
        logs, by_trace = self.db["logs"], self.db["log_trace"]
        for key, trace, digests in items:
            if txn.delete(key, db=logs):
                txn.delete(key, db=self.db["log_lean"])
                if trace is not None:
                    txn.delete(trace + key, db=by_trace)
                for digest in digests:
                    self._drop_ref(txn, digest + bytes((SIGNAL_LOGS,)) + key, digest)

    def _drop_ref(self, txn: lmdb.Transaction, ref: bytes, digest: bytes) -> None:
        txn.delete(ref, db=self.db["blob_refs"])
        txn.put(digest, b"", db=self.db["blob_gc"])

    def evict_metrics(self, txn: lmdb.Transaction, items: Sequence[tuple[bytes, bytes]]) -> None:
        """``items``: (primary key, series id)."""
        metrics, by_series = self.db["metrics"], self.db["metric_series"]
        for key, sid in items:
            if txn.delete(key, db=metrics):
                txn.delete(sid + key, db=by_series)
                txn.delete(key, db=self.db["metric_lean"])

    # What ``apply`` runs for each record type (a plain dict of the functions above: one
    # lookup per batch). PAD frames, written by repair over damage, carry no records.
    _APPLIERS: ClassVar[dict[int, Callable[[HotTier, lmdb.Transaction, Any, int], None]]] = {
        RecordType.SPANS: _apply_spans,
        RecordType.LOGS: _apply_logs,
        RecordType.METRICS: _apply_metrics,
        RecordType.COMMENTS: _apply_comments,
        RecordType.PAD: lambda hot, txn, rows, lsn: None,
    }


def _has_prefix(cur: lmdb.Cursor, prefix: bytes) -> bool:
    return bool(cur.set_range(prefix)) and bytes(cur.key()[: len(prefix)]) == prefix


def _hot_services(cur: lmdb.Cursor, trace: bytes, skip_lsn: bytes | None = None) -> set[str]:
    """Services with spans of ``trace`` in the hot tier (span_ids values end with the
    service), leaving out spans written by the batch at ``skip_lsn``."""
    out: set[str] = set()
    if cur.set_range(trace):
        for key, value in cur:
            if key[:16] != trace:
                break
            if value[8:16] != skip_lsn:
                out.add(bytes(value[16:]).decode())
    return out


def _cold_services(cur: lmdb.Cursor, trace: bytes) -> set[str]:
    """Services with spans of ``trace`` in the cold tier, from its trace index."""
    out: set[str] = set()
    prefix = trace + bytes((SIGNAL_SPANS,))
    if cur.set_range(prefix):
        for key, value in cur:
            if key[:17] != prefix:
                break
            if value:
                out.update(unpackb(value))
    return out


def text_keys(rtype: int, row: Any) -> list[bytes]:
    """The keys holding record text that applying ``row`` (of a batch of type
    ``rtype``) writes; every other key it writes is fixed-width. Mirrors the
    appliers, for checking a record without applying it (``tael check``).
    Raises UnicodeEncodeError for text that cannot be encoded."""
    if rtype == RecordType.SPANS:  # services, operations
        service = row[SPAN_ROW_SERVICE].encode()
        return [service, service + b"\x00" + row[SPAN_ROW_NAME].encode()]
    if rtype == RecordType.METRICS:  # series
        return [row[METRIC_ROW_NAME].encode() + b"\x00" + row[METRIC_ROW_SERIES]]
    return []


# ---------------------------------------------------------------- the read protocol

_TRACE_SIGNALS = {"spans": SIGNAL_SPANS, "logs": SIGNAL_LOGS}


def _span_hits(rows: list[list[Any]]) -> list[Hit]:
    return [((f[SPAN_TRACE], f[SPAN_ID]), (f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f) for f in rows]


def _keyed_hits(rows: list[tuple[bytes, list[Any]]]) -> list[Hit]:
    unpack = RECORD_KEY.unpack
    return [((key := unpack(raw)), key, f) for raw, f in rows]


class HotReader:
    """The hot tier as of one LMDB read transaction. Implements
    ``tael._query.tier.TierReader``; it also answers, from the same transaction, what
    the cold tier's reader needs from LMDB (``trace_refs``) and the metric series
    catalog (``series``), which describes hot and cold points alike."""

    def __init__(self, hot: HotTier, txn: lmdb.Transaction) -> None:
        self.hot = hot
        self.txn = txn

    def scan(self, scan: Scan, *, newest_first: bool, limit: int, stop: Stop) -> Iterator[list[Hit]]:
        hot, txn, keep = self.hot, self.txn, scan.keep
        lo, hi = scan.lo, scan.hi
        if scan.signal == "spans":
            rows = hot.scan(txn, "spans", lo, hi, reverse=newest_first, keep=keep, limit=limit)
            yield [((f[SPAN_TRACE], f[SPAN_ID]), (f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f) for _k, f in rows]
        elif scan.signal == "logs":
            if scan.trace is not None:
                rows = hot.logs_by_trace(txn, scan.trace, lo, hi, keep, limit, newest_first=newest_first)
            else:
                rows = hot.scan(txn, "logs", lo, hi, reverse=newest_first, keep=keep, limit=limit)
            yield _keyed_hits(rows)
        elif scan.signal == "metrics":
            if scan.series is not None:  # the series were chosen by the filter: no predicate per point
                if newest_first:
                    raise ValueError("metric points by series are read oldest first")
                rows = hot.series_points(txn, scan.series, lo, hi, limit)
            else:
                rows = hot.scan(txn, "metrics", lo, hi, reverse=newest_first, keep=keep, limit=limit)
            yield _keyed_hits(rows)
        else:
            raise ValueError(f"unknown signal {scan.signal!r}")

    def trace(self, trace: bytes) -> list[Hit]:
        return _span_hits(self.hot.trace_spans(self.txn, trace))

    def lookup(self, signal: str, keys: Sequence[Any]) -> list[Hit]:
        if signal == "spans":
            found = self.hot.get_spans(self.txn, keys)
            return _span_hits([found[k] for k in keys if k in found])
        if signal == "logs":
            logs = self.hot.get_logs(self.txn, keys)
            return [(k, k, logs[k]) for k in keys if k in logs]
        raise ValueError(f"lookups are by span or log key, not {signal!r}")

    def trace_refs(self, trace: bytes, signal: str) -> dict[int, list[int]]:
        """file id -> row groups of the cold files holding rows of ``trace`` ("spans" or
        "logs"), from the cold trace index in this transaction."""
        return self.hot.trace_refs(self.txn, trace, _TRACE_SIGNALS[signal])

    def series(self, name: str, keep: Callable[[list[Any]], bool]) -> list[bytes]:
        """Ids of the series named ``name`` whose descriptors (``SERIES_*``) pass ``keep``."""
        return [sid for sid, desc in self.hot.series_for(self.txn, name) if keep(desc)]
