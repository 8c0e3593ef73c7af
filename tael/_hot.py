"""The LMDB hot tier: recent records in blocks keyed by time, with the small indexes reads need.

Every write transaction also records the WAL LSN it has applied up to, so
replay after a crash applies each WAL record exactly once. Key layouts are in
docs/format/hot.md.

This module owns the environment: opening it (and migrating an older format), write
transactions and map growth, the meta entries, the cold tier's manifest and trace
index, the blob catalog and comments. The block tables are written by
tael/_hotblocks.py and read by tael/_hotread.py (``HotReader``).
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import lmdb
import pyarrow as pa
import pyarrow.compute as pc

from . import _hotblocks, _hotread
from ._blobs import BlobStore, Payloads
from ._block import RECORDS_OF, Block
from ._codec import CommentRow, packb, unpackb
from ._cold import ColdFile
from ._errors import CorruptionError, StorageError
from ._fsutil import sync_filesystem
from ._hotblocks import SIGNAL_LOGS, SIGNAL_SPANS, STATS, TIME, blocks, load, width
from ._hotmigrate import OLD_TABLES, migrate
from ._hotread import HotReader
from ._keys import MAX_KEY_BYTES
from ._layout import (
    COMMENT_ROW_CREATED,
    COMMENT_ROW_ID,
    COMMENT_ROW_PACKED,
    COMMENT_ROW_TRACE,
    GROUP_END,
    GROUP_LSN,
    GROUP_ROWS,
    GROUP_TYPE,
    SERIES_SERVICE,
    Group,
)
from ._models import SignalStats
from ._wal import RecordType

__all__ = ["RECORD_KEY", "SIGNAL_LOGS", "SIGNAL_SPANS", "HotReader", "HotTier", "UnappliableRecordError"]

log = logging.getLogger(__name__)

_Q = struct.Struct(">Q")
RECORD_KEY = struct.Struct(">QQI")  # a log or metric point key: time_ns, WAL lsn, index in the batch
_STATS = STATS
_APPLIED = b"applied_lsn"
_FORMAT = b"format_version"
FORMAT_VERSION = 3  # 2: blob, full-text and analytics tables; 3: records in blocks

DBS = (
    b"meta",
    b"span_blocks",  # block key -> a block of spans (docs/format/blocks.md)
    b"span_meta",  # block key -> msgpack [oldest, newest, rows, services, errors, longest]
    b"span_traces",  # trace(16) block key(16) -> msgpack [span ids (8 each), services]
    b"log_blocks",  # block key -> a block of log records
    b"log_meta",  # block key -> msgpack [oldest, newest, rows, services, highest severity, 0]
    b"log_traces",  # trace(16) block key(16) -> rows (u32 LE each)
    b"metric_blocks",  # block key -> a block of metric points
    b"metric_meta",  # block key -> msgpack [oldest, newest, rows, services, metric names, 0]
    b"series_blocks",  # series(8) block key(16) -> rows (u32 LE each)
    b"series_rollups",  # series(8) window start(8) -> the 5-minute rollup of its hot points (_hotrollups.py)
    b"series",  # name NUL series(8) -> [service, kind, attributes]
    b"services",  # service -> _STATS over both tiers (moved by compaction, dropped by retention)
    b"operations",  # service NUL name -> newest start_ns(8) of a span with that name (both tiers)
    b"comments",  # trace(16) created_ns(8) id(16) -> packed comment
    b"cold_files",  # file id(4) -> packed ColdFile: the manifest of live cold files
    b"cold_traces",  # trace(16) signal(1) file id(4) row group(2) -> packed [services] (spans) or ""
    b"blobs",  # digest(32) -> raw length(8) stored length(8): the blob catalog
    b"blob_refs",  # digest(32) signal(1) block key(16) -> "": hot blocks referring to a blob
    b"cold_blobs",  # digest(32) file id(4) -> "": cold files referring to a blob
    b"cold_file_blobs",  # file id(4) -> packed [digest, ...]: the same, by file (for removing a file)
    b"blob_gc",  # digest(32) -> "": blobs that lost a reference since the last collection
)
_NEXT_FILE = b"next_file_id"
_INDEXED = b"indexed_lsn"
_BLOB = struct.Struct(">QQ")
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
                max_dbs=len(DBS) + len(OLD_TABLES),  # format 2's, while a migration moves them
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
        self.migrate_from: int | None = None
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
            if self.migrate_from is not None:
                migrate(self)
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
            if version == 2 and not read_only:
                self.migrate_from = 2  # tael/_hotmigrate.py converts it once the tables are open
                return
            if version == 2:
                raise StorageError(
                    f"{path}: the hot tier is in format 2, written by an earlier tael; open the store for "
                    "writing once to migrate it to format 3 (read-only opens change nothing)"
                )
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

    def applied_lsn(self, txn: lmdb.Transaction | None = None) -> int:
        """WAL position up to which the hot tier holds every record (as of ``txn``, when given)."""
        if txn is None:
            with self.reader() as fresh:
                return self.applied_lsn(fresh)
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

        merged = _coalesced(groups)

        def run(txn: lmdb.Transaction, merged: Sequence[Group] = merged) -> None:
            for rtype, rows, lsn, end in merged:
                try:
                    if isinstance(rows, Block):
                        _BLOCK_APPLIERS[rows.signal](self, txn, rows, lsn)
                    elif rtype == RecordType.COMMENTS:
                        self._apply_comments(txn, rows, lsn)
                    elif rtype != RecordType.PAD:
                        raise ValueError(f"a batch of record type {rtype} holds no block")
                except _UNAPPLIABLE as exc:
                    raise UnappliableRecordError(lsn, end, exc) from exc
            txn.put(_APPLIED, _Q.pack(groups[-1][GROUP_END]), db=self.db["meta"])

        try:
            self.write(run)
        except UnappliableRecordError:
            if len(merged) == len(groups):
                raise
            self.write(lambda txn: run(txn, groups))  # frame by frame: the error names the frame

    def _grow(self) -> None:
        new_size = self.env.info()["map_size"] * 2
        log.info("hot tier %s: map full, growing it to %d bytes", self.path, new_size)
        with self._gate.exclusive():
            self.env.set_mapsize(new_size)

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

    # ------------------------------------------------------------ reads
    #
    # Every read takes the caller's read transaction, so one query sees the hot
    # tier and the cold manifest as of the same instant (a record moving to the
    # cold tier is seen in exactly one of them).

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

    def services(self, txn: lmdb.Transaction) -> list[tuple[str, tuple[int, int, int, int]]]:
        return [(bytes(k).decode(), _STATS.unpack(v)) for k, v in txn.cursor(db=self.db["services"])]

    def signal_stats(self, txn: lmdb.Transaction) -> dict[str, SignalStats]:
        out = {}
        for signal in ("spans", "logs", "metrics"):
            count, oldest, newest = _hotread.signal_counts(txn, self.db, signal)
            out[signal] = SignalStats(count=count, oldest_ns=oldest, newest_ns=newest)
        return out

    def span_window(
        self, txn: lmdb.Transaction, lo: int, hi: int, service: str | None
    ) -> tuple[list[str], list[str], list[str], list[int], list[bool]]:
        """Trace id (hex), service, name, duration_ns and error flag of every hot span with
        ``lo <= start_ns < hi`` (and of ``service``)."""
        return _hotread.span_window(txn, self.db, lo, hi, service)

    def log_severities(self, txn: lmdb.Transaction, lo: int, hi: int, service: str | None) -> list[int]:
        """How many hot logs with ``lo <= time_ns < hi`` (and of ``service``) have each
        severity number 0..24."""
        return _hotread.log_severities(txn, self.db, lo, hi, service)

    def metric_window(self, txn: lmdb.Transaction, lo: int, hi: int, service: str | None) -> tuple[int, set[str]]:
        """How many hot metric points have ``lo <= time_ns < hi`` (and ``service``), and their names."""
        return _hotread.metric_window(txn, self.db, lo, hi, service)

    def records(self, txn: lmdb.Transaction, signal: str) -> Iterator[tuple[Any, list[Any], int]]:
        """(key, record, lsn) of every hot record of ``signal`` (``tael check``, index
        builds, SQL over the hot tier): see ``_hotread.records``."""
        return _hotread.records(txn, self.db, signal)

    def batches(self, txn: lmdb.Transaction, signal: str) -> Iterator[Block]:
        """Every hot block of ``signal``, in key order."""
        for bkey, _meta in blocks(txn, self.db, signal):
            block = load(txn, self.db, signal, bkey)
            if block is not None:
                yield block

    def newest(self, txn: lmdb.Transaction, signal: str, limit: int) -> list[list[Any]]:
        """Up to ``limit`` records of ``signal`` from the newest blocks (a sample)."""
        out: list[list[Any]] = []
        for bkey, _meta in blocks(txn, self.db, signal, reverse=True):
            block = load(txn, self.db, signal, bkey)
            if block is not None:
                out += RECORDS_OF[signal](block.batch(), None)[: limit - len(out)]
            if len(out) >= limit:
                break
        return out

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
        services of the trace's spans there, their 8-byte span ids concatenated (b"" for
        logs)): a spans entry's value is msgpack ``[services, span ids]``, which the
        applier reads to leave out a span re-sent after it was compacted. ``blobs_added``: (file id, digests its
        rows refer to) of added files; removed files' blob references go with them."""
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
        for trace, signal, file_id, rg, _services, _ids in refs_removed:
            txn.delete(trace + _TREF.pack(signal, file_id, rg), db=traces)
        if refs_added:
            # a few distinct (signal, file, row group) suffixes; services come sorted (trace_refs)
            tails = {(r[1], r[2], r[3]): _TREF.pack(r[1], r[2], r[3]) for r in refs_added}
            txn.cursor(db=traces).putmulti(
                sorted(
                    (trace + tails[signal, file_id, rg], packb([services, ids]) if services else b"")
                    for trace, signal, file_id, rg, services, ids in refs_added
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
                if _hotblocks.has_prefix(ref_cur, digest) or _hotblocks.has_prefix(cold_cur, digest):
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
        return _hotblocks.has_prefix(txn.cursor(db=self.db["blob_refs"]), digest) or _hotblocks.has_prefix(
            txn.cursor(db=self.db["cold_blobs"]), digest
        )

    # ------------------------------------------------------------ eviction (compaction, retention)

    def old_blocks(
        self, txn: lmdb.Transaction, signal: str, before: int, max_rows: int
    ) -> list[tuple[bytes, Block, pa.Array | None]]:
        """Blocks holding records of ``signal`` with time < ``before``, oldest first, until
        about ``max_rows`` such records: (block key, block, the rows that are older, or
        None when all are)."""
        out: list[tuple[bytes, Block, pa.Array | None]] = []
        total = 0
        for bkey, meta in self._blocks_before(txn, signal, before):
            block = load(txn, self.db, signal, bkey)
            if block is None:
                continue
            rows = None if meta[1] < before else pc.indices_nonzero(pc.less(block.column(TIME[signal]), before))
            n = block.n if rows is None else len(rows)
            if total + n > max_rows:  # the oldest of them only: a step moves at most max_rows
                times = block.column(TIME[signal])
                if rows is None:
                    rows = pa.array(range(block.n), pa.uint64())
                order = pc.sort_indices(times.take(rows))
                rows = rows.take(order.slice(0, max_rows - total))
                n = len(rows)
            out.append((bkey, block, rows))
            total += n
            if total >= max_rows:
                break
        return out

    def _blocks_before(self, txn: lmdb.Transaction, signal: str, before: int) -> Iterator[tuple[bytes, list[Any]]]:
        """(key, metadata) of the blocks of ``signal`` holding records with time < ``before``,
        oldest first: blocks are keyed by their newest time, so the scan stops at the first
        one whose oldest possible time (its newest minus the widest block) is not older."""
        w = width(txn, self.db, signal)
        for bkey, meta in blocks(txn, self.db, signal):
            if meta[1] - w >= before:
                return
            if meta[0] < before:
                yield bkey, meta

    def count_before(self, txn: lmdb.Transaction, signal: str, before: int) -> int:
        """How many records of ``signal`` have time < ``before`` (what ``old_blocks`` would
        name): counted from the blocks' metadata, loading only blocks that straddle ``before``."""
        total = 0
        for bkey, meta in self._blocks_before(txn, signal, before):
            if meta[1] < before:
                total += meta[2]
                continue
            block = load(txn, self.db, signal, bkey)
            if block is not None:
                total += int(pc.sum(pc.less(block.column(TIME[signal]), before)).as_py() or 0)
        return total

    def evict(
        self, txn: lmdb.Transaction, items: Sequence[tuple[bytes, Block, pa.Array | None]], *, forget: bool
    ) -> None:
        """Remove rows from their blocks (those ``old_blocks`` named): moved to the cold
        tier, or, with ``forget``, dropped by retention (spans then leave the per-service
        counters too). What is left of a block stays under its key."""
        gone: list[Block] = []
        for bkey, block, rows in items:
            if txn.get(bkey, db=self.db[_hotblocks.BLOCKS[block.signal]]) is None:
                continue
            _hotblocks.unindex(txn, self.db, bkey, block)
            if rows is not None and len(rows) < block.n:
                batch = block.batch()
                mask = pc.invert(pc.is_in(pa.array(range(block.n), pa.int64()), value_set=rows.cast(pa.int64())))
                _hotblocks.restore(txn, self.db, bkey, Block.of(batch.filter(mask), block.signal))
                gone.append(Block.of(batch.take(rows), block.signal))
            else:
                gone.append(block)
        if forget and gone and gone[0].signal == "spans":
            _hotblocks.forget_spans(txn, self.db, gone)

    def forget_spans(self, txn: lmdb.Transaction, stats: dict[str, list[int]], by_trace: dict[bytes, set[str]]) -> None:
        """Take spans that left the store out of the per-service counters: ``stats`` is
        service -> [spans, errors, duration ns, 0]; a (service, trace) in ``by_trace``
        stops counting once no span of it is left in either tier."""
        _hotblocks.forget_counts(txn, self.db, stats, by_trace)


COALESCE_ROWS = 512
"""A block of fewer rows is stored together with the blocks of the same signal applied with
it (up to ``COALESCED_ROWS`` rows): per-block costs (its metadata, index entries, the
last page of its value) are paid once per few thousand rows, not per small batch."""
COALESCED_ROWS = 4096


def _coalesced(groups: Sequence[Group]) -> list[Group]:
    """``groups`` with the small blocks of each signal merged, in order, into blocks of up
    to ``COALESCED_ROWS`` rows. A merged block carries the LSN of its first frame (its logs
    and metric points keep their own frames' positions in ``wal_lsn`` and
    ``batch_index``). Order holds within a signal (the first write of a span wins);
    signals are independent of each other. The applied LSN is the group's end whatever
    the order, as the whole group commits in one transaction."""
    out: list[Group] = []
    runs: dict[str, list[Group]] = {}
    rows: dict[str, int] = {}

    def flush(signal: str) -> None:
        run = runs.pop(signal, [])
        rows.pop(signal, None)
        if len(run) == 1:
            out.append(run[0])
        elif run:
            first, last = run[0], run[-1]
            blocks = [cast(Block, g[GROUP_ROWS]) for g in run]
            if signal != "spans":  # a span's identity is its ids; a log's or point's its position
                blocks = [_hotblocks.with_position(b, g[GROUP_LSN]) for b, g in zip(blocks, run, strict=True)]
            table = pa.Table.from_batches([b.batch() for b in blocks]).combine_chunks()
            merged = Block.of(table.to_batches(max_chunksize=table.num_rows)[0], signal)
            out.append((first[GROUP_TYPE], cast(Any, merged), first[GROUP_LSN], last[GROUP_END]))

    for group in groups:
        block: Any = group[GROUP_ROWS]
        if not isinstance(block, Block):
            out.append(group)
            continue
        signal = block.signal
        if not 0 < block.n < COALESCE_ROWS:
            flush(signal)
            out.append(group)
            continue
        if rows.get(signal, 0) + block.n > COALESCED_ROWS:
            flush(signal)
        runs.setdefault(signal, []).append(group)
        rows[signal] = rows.get(signal, 0) + block.n
    for signal in list(runs):
        flush(signal)
    return out


_BLOCK_APPLIERS: dict[str, Callable[[HotTier, lmdb.Transaction, Block, int], None]] = {
    "spans": _hotblocks.apply_spans,
    "logs": _hotblocks.apply_logs,
    "metrics": _hotblocks.apply_metrics,
}
