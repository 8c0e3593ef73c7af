"""Recovery at open: bring the hot tier and the full-text index up to the WAL's end.

Opening a store for writing replays every WAL record past the hot tier's applied
LSN into the hot tier, exactly once and in order, and indexes every record past
the index's committed LSN again (or rebuilds the index from both tiers when it is
missing). Files an interrupted apply left behind are swept first. The indexer
also reads batches back from the WAL here after its writer failed.

These functions take the parts they work on (WAL, hot and cold tiers, index,
blobs, payload settings), never the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from ._blobs import BlobStore, Payloads
from ._cold import ColdTier, log_records, span_records
from ._errors import CorruptionError, ReplicationError, StorageError
from ._hot import HotTier, UnappliableRecordError
from ._layout import (
    LOG_BODY,
    LOG_SERVICE,
    LOG_SEVERITY,
    LOG_TRACE,
    SPAN_ID,
    SPAN_SERVICE,
    SPAN_START,
    SPAN_STATUS,
    SPAN_TRACE,
    Group,
)
from ._record import SIGNAL_OF, frame_rows
from ._search import TextIndex, group_docs
from ._searchdocs import log_document, span_document, stored_block_documents
from ._settings import Settings
from ._wal import RecordType, Wal, read_frames, verify_frame

log = logging.getLogger(__name__)

_REPLAY_GROUP_RECORDS = 20_000
_REREAD_BYTES = 8 << 20  # WAL read at a time when the indexer indexes batches again


def sweep_blob_orphans(hot: HotTier, blobs: BlobStore) -> int:
    """Delete blob files the catalog does not name: written by an apply that crashed
    before its transaction committed."""
    removed = 0
    with hot.reader() as txn:
        for digest, p in blobs.files():
            if digest is None or not hot.has_blob(txn, digest):
                p.unlink()
                removed += 1
    if removed:
        log.warning("removed %d orphan blob files from %s (not in the blob catalog)", removed, blobs.root)
    return removed


def recover(
    path: Path, settings: Settings, wal: Wal, hot: HotTier, cold: ColdTier, blobs: BlobStore, payloads: Payloads
) -> tuple[TextIndex, int]:
    """Open the full-text index of the store at ``path`` and replay its WAL: returns
    the index and how many records were replayed into the hot tier. An index whose
    committed position the hot tier does not record, that is missing, or that an
    earlier tael wrote with another schema (docs/format/index.md) is removed and built
    again from both tiers. Closes the index if anything fails."""
    indexed = hot.indexed_lsn()
    current = TextIndex.current(path / "index")
    if current is False:
        log.info("the full-text index of %s has an earlier schema: rebuilding it from the tiers", path)
    if indexed is None or not current:
        TextIndex.remove(path / "index")  # built from scratch below
        indexed = None
    index = TextIndex(path / "index", read_only=False, heap_bytes=settings.index_writer_heap_bytes)
    try:
        replayed = replay(path, wal, hot, index, payloads, indexed)
        if indexed is None:
            build_index(path, hot, cold, index, blobs, payloads)
    except BaseException:
        index.close()
        raise
    return index, replayed


def replay(path: Path, wal: Wal, hot: HotTier, index: TextIndex, payloads: Payloads, indexed: int | None) -> int:
    """Apply every WAL record past the hot tier's applied LSN, in order, exactly once,
    and index every record past the index's committed LSN (``indexed``; None: the
    index is rebuilt from the tiers afterwards)."""
    applied = hot.applied_lsn()
    start = applied if indexed is None else min(applied, indexed)
    if indexed is not None:
        index.delete_from_lsn(indexed)  # committed after its LSN was recorded: indexed again
    groups: list[Group] = []
    pending = total = docs = 0
    for frame in wal.recover(start, applied):
        if frame.rtype == RecordType.PAD:
            continue
        try:
            rows = frame_rows(frame, payloads)
        except CorruptionError as exc:
            raise wal.unappliable(frame.lsn, exc) from exc
        batch = (frame.rtype, rows, frame.lsn, frame.end_lsn)
        if indexed is not None and frame.lsn >= indexed:
            new_docs = group_docs(batch, payloads)
            index.add(new_docs)
            docs += len(new_docs)
        if frame.lsn < applied:
            continue
        groups.append(batch)
        pending += len(rows)
        if pending >= _REPLAY_GROUP_RECORDS:
            _apply(wal, hot, groups)
            total += pending
            groups, pending = [], 0
    if groups:
        _apply(wal, hot, groups)
        total += pending
    if total:
        log.info("replayed %d records from the WAL of %s", total, path)
    if indexed is not None and wal.end_lsn > indexed:
        index.commit()
        hot.set_indexed_lsn(wal.end_lsn)
        log.info("indexed %d documents again from the WAL of %s", docs, path)
    return total


def _apply(wal: Wal, hot: HotTier, groups: list[Group]) -> None:
    try:
        hot.apply(groups)
    except UnappliableRecordError as exc:
        raise wal.unappliable(exc.lsn, exc.cause) from exc


def wal_reader(path: Path, wal: Wal, settings: Settings, payloads: Payloads) -> Callable[[int, int], Iterator[Group]]:
    """``reread(lo, hi)`` for the indexer: the span and log batches between WAL
    positions ``lo`` and ``hi`` (frame boundaries, durable), read back from the WAL,
    which it indexes again after its writer failed (the WAL keeps every segment past
    the indexed LSN)."""
    wal_dir, max_bytes = wal.dir, settings.wal_max_record_bytes

    def reread(lo: int, hi: int) -> Iterator[Group]:
        pos = lo
        while pos < hi:
            try:
                frames = read_frames(wal_dir, pos, hi, _REREAD_BYTES)
                if not frames:
                    raise StorageError(f"the WAL of {path} ends at position {pos}, before {hi}")
                for lsn, raw in frames:
                    frame = verify_frame(raw, lsn, max_bytes)
                    if SIGNAL_OF.get(frame.rtype) in ("spans", "logs"):
                        yield (frame.rtype, frame_rows(frame, payloads), frame.lsn, frame.end_lsn)
                    pos = frame.end_lsn
            except ReplicationError as exc:  # read_frames and verify_frame speak for shipping
                raise StorageError(f"cannot read the WAL of {path} back for indexing: {exc}") from exc

    return reread


def build_index(
    path: Path, hot: HotTier, cold: ColdTier, index: TextIndex, blobs: BlobStore, payloads: Payloads
) -> int:
    """Index every span payload and log body the tiers hold (the index is empty) and
    commit: at open, when the index is missing or of an earlier format."""
    count, end = index_tiers(hot, cold, index, blobs, payloads)
    index.commit()
    hot.set_indexed_lsn(end)
    if count:
        log.info("built the full-text index of %s: %d documents", path, count)
    return count


def index_tiers(
    hot: HotTier,
    cold: ColdTier,
    index: TextIndex,
    blobs: BlobStore,
    payloads: Payloads,
    stop: threading.Event | None = None,
) -> tuple[int, int]:
    """Add the documents of every span payload and log body of one snapshot of the tiers
    (the hot tier block by block, the cold tier row group by row group) without
    committing; returns how many and the WAL position the snapshot covers (the hot
    tier's applied LSN in the same LMDB transaction). Records must not move between the
    tiers meanwhile: at open nothing else runs, and a live rebuild holds the compactor's lock.
    Once ``stop`` is set (the store is closing) it raises StorageError between blocks and
    row groups: a live rebuild then keeps the old index."""

    def check() -> None:
        if stop is not None and stop.is_set():
            raise StorageError("rebuilding the full-text index was interrupted: the store is closing")

    count = 0
    with hot.reader() as txn:
        manifest = hot.manifest(txn)
        end = hot.applied_lsn(txn)
        for signal in ("spans", "logs"):
            for block in hot.batches(txn, signal):
                check()
                docs = stored_block_documents(block, payloads, blobs)
                index.add(docs)
                count += len(docs)
    for f in manifest:
        if f.dataset not in ("spans", "logs"):
            continue
        for rg in range(f.row_groups):
            check()
            table = cold.read_row_groups(f, [rg])
            docs = _cold_span_docs(table, blobs, payloads) if f.dataset == "spans" else _cold_log_docs(table, blobs)
            index.add(docs)
            count += len(docs)
    return count, end


def _cold_span_docs(table: pa.Table, blobs: BlobStore, payloads: Payloads) -> list[str]:
    docs = []
    for f in span_records(table):
        texts = payloads.span_texts(blobs.restore_span(f))
        if texts:
            docs.append(
                span_document(f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID], f[SPAN_SERVICE], f[SPAN_STATUS], 0, texts)
            )
    return docs


def _cold_log_docs(table: pa.Table, blobs: BlobStore) -> list[str]:
    docs = []
    for (t, lsn, idx), f in log_records(table):
        body = blobs.restore_log(f)[LOG_BODY]
        if body:
            docs.append(log_document(t, lsn, idx, f[LOG_SERVICE], f[LOG_SEVERITY], f[LOG_TRACE], body))
    return docs
