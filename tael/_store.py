"""``tael.Store``: opens a data directory, orchestrates the WAL, commit pipeline and hot tier.

The Store holds no storage logic of its own: it validates arguments, routes
writes through the commit pipeline and reads through the tiers.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow.compute as pc

from . import _analytics, _codec, _rollup
from ._blobs import BlobStore, Payloads
from ._codec import to_ns
from ._cold import ColdFile, _columns, log_records, metric_records, open_cold_tier, span_records
from ._coldfs import LOCATION_FILE
from ._commit import CommitPipeline
from ._errors import (
    CorruptionError,
    ReadOnlyError,
    ReplicationError,
    StandbyError,
    StorageError,
    StoreClosedError,
    ValidationError,
)
from ._fsutil import DirLock, dir_size
from ._hot import _QQI, HotTier, UnappliableRecordError
from ._keys import REPLICA_POSITION_PREFIX
from ._maintenance import Compactor
from ._models import (
    Anomaly,
    AnomalyReport,
    Comment,
    CompactionReport,
    CorrelateReport,
    DamagedRegion,
    LogRecord,
    MetricBucket,
    MetricPoint,
    RepairReport,
    ReplicationStatus,
    RetentionReport,
    ServiceInfo,
    SignalStats,
    Span,
    StoreStats,
    SummaryReport,
    TraceOverview,
)
from ._query import args, filters
from ._query import logs as log_reads
from ._query import metrics as metric_reads
from ._query import traces as trace_reads
from ._query.context import ReadContext
from ._query.filters import LogFilter, MetricFilter, SpanFilter, chosen
from ._repair import ROW_OF, frame_rows, quarantine_unappliable, rows_problem
from ._replication import LEADER, STANDBY, Conflict, Endpoint, Identity, Leader, check_shipment, client_options
from ._search import (
    DOC_LOG,
    DOC_SPAN,
    Group,
    Indexer,
    TextIndex,
    group_docs,
    log_doc,
    missing_documents,
    span_doc,
)
from ._settings import Settings
from ._wal import (
    RecordType,
    Wal,
    encode_frame,
    list_segments,
    read_frames,
    repair_wal,
    verify_frame,
)
from ._writer import BackgroundWriter

log = logging.getLogger(__name__)

ATTRIBUTE_SAMPLE = 10_000
"""Recent records ``list_attribute_keys`` and ``list_attribute_values`` look at."""
_REPLAY_GROUP_RECORDS = 20_000
_REREAD_BYTES = 8 << 20  # WAL read at a time when the indexer indexes batches again
_IDENTITY = b"replication_identity"
_REPLICA_POS = REPLICA_POSITION_PREFIX  # + a standby's URL (at most MAX_REPLICA_URL_BYTES: Settings checks)


class Store:
    """A telemetry store on a directory: spans, logs and metric points.

    ``Store(path, settings=None, read_only=False, standby=False)``. One process at a time may
    open a directory for writing (others get StoreLockedError); any number of
    other processes may open it with ``read_only=True`` alongside (LMDB allows one
    environment per directory per process: within one process, share the Store).
    Use as a context manager or call ``close()``. Thread-safe: concurrent inserts
    share fsyncs (group commit).

    With ``Settings.replicas`` the store is a leader that ships its WAL to those
    standbys (``Settings.required_acks`` says how many must hold a write before an
    insert returns). ``standby=True`` opens a standby: it takes writes only from its
    leader (over ``Settings.standby_listen`` or ``tael serve --standby-of``), serves
    reads, and becomes a writable leader with :meth:`promote`. See docs/scaling.md.
    """

    def __init__(
        self, path: str | Path, settings: Settings | None = None, read_only: bool = False, standby: bool = False
    ) -> None:
        self.path = Path(path)
        self.settings = settings if settings is not None else Settings()
        self.read_only = read_only
        self._closed = False
        self._close_lock = threading.Lock()
        self._lock: DirLock | None = None
        self._pipeline: CommitPipeline | None = None
        self._wal: Wal | None = None
        self._writers: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()
        self.replayed_records = 0
        """How many WAL records the open replayed into the hot tier."""
        self._index: TextIndex | None = None
        self._indexer: Indexer | None = None
        self._leader: Leader | None = None
        self._endpoint: Endpoint | None = None
        self._receive_lock = threading.Lock()
        self._leader_end: int | None = None
        self._leader_contact: float | None = None
        if read_only and standby:
            raise ValueError("a store opens either read_only=True or standby=True, not both")
        s = self.settings
        self._ship_options = client_options(s) if s.replicas and not read_only else {}
        self._cold = open_cold_tier(self.path, s)
        self._blobs = BlobStore(self.path / "blobs", level=s.blob_compression_level)
        self._payloads = Payloads(s.payload_attributes, s.payload_blob_min_bytes)
        if read_only:
            if not (self.path / "hot" / "data.mdb").exists():
                raise StorageError(f"{self.path} is not a tael data directory (no hot/data.mdb)")
            self._hot = self._open_hot(sync=False, read_only=True)
            self._compactor = Compactor(self._hot, self._cold, s)
            raw = self._hot.get_meta(_IDENTITY)
            self._identity = Identity.unpack(raw) if raw is not None else Identity.new_leader()
            self._reads = self._read_context()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = DirLock(self.path)
        self._lock.acquire()
        try:
            (self.path / "hot").mkdir(exist_ok=True)
            self._hot = self._open_hot(sync=s.hot_sync, read_only=False)
            self._compactor = Compactor(self._hot, self._cold, s)
            try:
                self._identity = self._open_identity(standby)
                self._compactor.sweep_orphans()
                self._sweep_blob_orphans()
                self._wal = Wal(
                    self.path / "wal",
                    segment_bytes=s.wal_segment_bytes,
                    max_record_bytes=s.wal_max_record_bytes,
                    fsync=s.durability == "fsync",
                )
                indexed = self._hot.indexed_lsn()
                if indexed is None or not (self.path / "index" / "meta.json").exists():
                    TextIndex.remove(self.path / "index")  # built from scratch below
                    indexed = None
                self._index = TextIndex(self.path / "index", read_only=False, heap_bytes=s.index_writer_heap_bytes)
                self.replayed_records = self._replay(indexed)
                if indexed is None:
                    self._build_index()
                self._pipeline = CommitPipeline(self._wal, self._hot, max_unapplied_records=s.max_unapplied_records)
                self._indexer = Indexer(
                    self._index,
                    self._payloads,
                    committed_lsn=self._pipeline.applied_lsn,
                    interval_s=s.index_commit_interval_s,
                    max_queued_records=s.max_unapplied_records,
                    record_lsn=self._hot.set_indexed_lsn,
                    reread=self._wal_groups,
                )
                self._pipeline.indexer = self._indexer
                if self._identity.role == LEADER and s.replicas:
                    self._start_leader(self._identity)
                elif s.replicas:  # a standby keeps WAL for its own standbys-to-be (see promote)
                    self._pipeline.standby_retain_bytes = s.replication_max_retained_bytes
                self._pipeline.checkpoint()
                if self._identity.role == STANDBY and s.standby_listen is not None:
                    self._endpoint = Endpoint(self, s.standby_listen)
                self._reads = self._read_context()
            except BaseException:
                if self._endpoint is not None:
                    self._endpoint.close()
                if self._leader is not None:
                    self._leader.close()
                if self._pipeline is not None:
                    self._pipeline.close()
                stopped = self._indexer.close() if self._indexer is not None else True
                if self._index is not None and stopped:
                    self._index.close()
                if self._wal is not None:
                    self._wal.close()
                self._hot.close()
                raise
        except BaseException:
            self._lock.release()
            raise

    def _read_context(self) -> ReadContext:
        return ReadContext(
            path=self.path,
            settings=self.settings,
            hot=self._hot,
            cold=self._cold,
            blobs=self._blobs,
            payloads=self._payloads,
            index=self._index,
            read_only=self.read_only,
            check_open=self._check_open,
        )

    def _open_identity(self, standby: bool) -> Identity:
        """The directory's replication identity, created on first open; a standby
        directory refuses a leader's open and a leader's directory becomes a standby
        when opened with ``standby=True`` (seeding a standby from a copy)."""
        raw = self._hot.get_meta(_IDENTITY)
        expected = self.settings.standby_leader_store_id
        if raw is None:
            ident = Identity.new_standby() if standby else Identity.new_leader()
            if standby and expected is not None:
                ident.store_id = bytes.fromhex(expected)  # shipments of any other store are refused
            self._hot.put_meta({_IDENTITY: ident.pack()})
            return ident
        ident = Identity.unpack(raw)
        if standby and expected is not None and ident.store_id != bytes.fromhex(expected):
            if ident.store_id is not None:
                raise StandbyError(
                    f"{self.path} holds store {ident.store_id.hex()}, not Settings.standby_leader_store_id "
                    f"{expected.lower()}: seed this standby again for that leader"
                )
            ident.store_id = bytes.fromhex(expected)
            self._hot.put_meta({_IDENTITY: ident.pack()})
        if ident.role == STANDBY and not standby:
            raise StandbyError(
                f"{self.path} is a standby: open it with standby=True, or make it a leader with "
                f"Store.promote() or `tael promote {self.path}`"
            )
        if ident.role == LEADER and standby:
            if self._cold.remote and (self.path / LOCATION_FILE).exists():
                raise StandbyError(
                    f"{self.path} was a leader whose cold files are at {self._cold.location}: as a standby it "
                    "would share them with its leader, and each store deletes what its own manifest does not "
                    "name. Set up the standby empty, with its own Settings.cold_uri (docs/scaling.md)"
                )
            log.warning("%s was a leader (epoch %d) and is opened as a standby", self.path, ident.epoch)
            ident.role = STANDBY
            self._hot.put_meta({_IDENTITY: ident.pack()})
        return ident

    def _start_leader(self, identity: Identity) -> None:
        assert self._pipeline is not None and self._wal is not None
        s = self.settings
        saved = {}
        for url in s.replicas:
            raw = self._hot.get_meta(_REPLICA_POS + url.rstrip("/").encode())
            if raw is not None:
                saved[url.rstrip("/")] = int.from_bytes(raw, "big")

        def save(positions: dict[str, int]) -> None:
            self._hot.put_meta({_REPLICA_POS + u.encode(): p.to_bytes(8, "big") for u, p in positions.items()})

        self._leader = Leader(
            identity=identity,
            wal_dir=self._wal.dir,
            replicas=s.replicas,
            required_acks=s.required_acks,
            timeout_s=s.replication_timeout_s,
            batch_bytes=s.replication_batch_bytes,
            max_retained_bytes=s.replication_max_retained_bytes,
            durable_lsn=self._pipeline.durable_lsn,
            saved_positions=saved,
            save_positions=save,
            client_options=self._ship_options,
        ).start()
        self._pipeline.leader = self._leader

    def _open_hot(self, *, sync: bool, read_only: bool) -> HotTier:
        return HotTier(
            self.path / "hot",
            map_size=self.settings.hot_map_size_bytes,
            sync=sync,
            read_only=read_only,
            blobs=self._blobs,
            payloads=self._payloads,
        )

    def _sweep_blob_orphans(self) -> int:
        """Delete blob files the catalog does not name: written by an apply that crashed
        before its transaction committed."""
        removed = 0
        with self._hot.reader() as txn:
            for digest, p in self._blobs.files():
                if digest is None or not self._hot.has_blob(txn, digest):
                    p.unlink()
                    removed += 1
        if removed:
            log.warning("removed %d orphan blob files from %s (not in the blob catalog)", removed, self._blobs.root)
        return removed

    def _replay(self, indexed: int | None) -> int:
        """Apply every WAL record past the hot tier's applied LSN, in order, exactly once,
        and index every record past the index's committed LSN (``indexed``; None: the
        index is rebuilt from the tiers afterwards)."""
        assert self._wal is not None and self._index is not None
        applied = self._hot.applied_lsn()
        start = applied if indexed is None else min(applied, indexed)
        if indexed is not None:
            self._index.delete_from_lsn(indexed)  # committed after its LSN was recorded: indexed again
        groups: list[Any] = []
        pending = total = docs = 0
        for frame in self._wal.recover(start, applied):
            if frame.rtype == RecordType.PAD:
                continue
            try:
                rows = self._frame_rows(frame)
            except CorruptionError as exc:
                raise self._wal.unappliable(frame.lsn, exc) from exc
            batch = (frame.rtype, rows, frame.lsn, frame.end_lsn)
            if indexed is not None and frame.lsn >= indexed:
                new_docs = group_docs(batch, self._payloads)
                self._index.add(new_docs)
                docs += len(new_docs)
            if frame.lsn < applied:
                continue
            groups.append(batch)
            pending += len(rows)
            if pending >= _REPLAY_GROUP_RECORDS:
                self._replay_apply(groups)
                total += pending
                groups, pending = [], 0
        if groups:
            self._replay_apply(groups)
            total += pending
        if total:
            log.info("replayed %d records from the WAL of %s", total, self.path)
        if indexed is not None and self._wal.end_lsn > indexed:
            self._index.commit()
            self._hot.set_indexed_lsn(self._wal.end_lsn)
            log.info("indexed %d documents again from the WAL of %s", docs, self.path)
        return total

    def _replay_apply(self, groups: list[Any]) -> None:
        assert self._wal is not None
        try:
            self._hot.apply(groups)
        except UnappliableRecordError as exc:
            raise self._wal.unappliable(exc.lsn, exc.cause) from exc

    def _wal_groups(self, lo: int, hi: int) -> Iterator[Group]:
        """The span and log batches between WAL positions ``lo`` and ``hi`` (frame
        boundaries, durable), read back from the WAL: what the indexer indexes again
        after its writer failed (the WAL keeps every segment past the indexed LSN)."""
        assert self._wal is not None
        pos = lo
        while pos < hi:
            try:
                frames = read_frames(self._wal.dir, pos, hi, _REREAD_BYTES)
                if not frames:
                    raise StorageError(f"the WAL of {self.path} ends at position {pos}, before {hi}")
                for lsn, raw in frames:
                    frame = verify_frame(raw, lsn, self.settings.wal_max_record_bytes)
                    if frame.rtype in (RecordType.SPANS, RecordType.LOGS):
                        yield (frame.rtype, self._frame_rows(frame), frame.lsn, frame.end_lsn)
                    pos = frame.end_lsn
            except ReplicationError as exc:  # read_frames and verify_frame speak for shipping
                raise StorageError(f"cannot read the WAL of {self.path} back for indexing: {exc}") from exc

    def _build_index(self) -> int:
        """Index every span payload and log body the tiers hold (the index is empty)."""
        assert self._index is not None
        index = self._index
        count = 0
        with self._hot.reader() as txn:
            manifest = self._hot.manifest(txn)
            for _key, value in self._hot.records(txn, "spans"):
                count += self._index_span(_codec.unpackb(value), 0)
            for key, value in self._hot.records(txn, "logs"):
                _t, lsn, idx = _QQI.unpack(key)
                count += self._index_log(_codec.unpackb(value), lsn, idx)
            end = self._hot.applied_lsn()
        for f in manifest:
            if f.dataset == "spans":
                for rg in range(f.row_groups):
                    for rec in span_records(self._cold.read_row_groups(f, [rg])):
                        count += self._index_span(rec, 0)
            elif f.dataset == "logs":
                for rg in range(f.row_groups):
                    for (_t, lsn, idx), rec in log_records(self._cold.read_row_groups(f, [rg])):
                        count += self._index_log(rec, lsn, idx)
        index.commit()
        self._hot.set_indexed_lsn(end)
        if count:
            log.info("built the full-text index of %s: %d documents", self.path, count)
        return count

    def _index_span(self, f: list[Any], lsn: int) -> int:
        assert self._index is not None
        texts = self._payloads.span_texts(self._blobs.restore_span(f))
        if not texts:
            return 0
        self._index.add([span_doc((f[5], f[0], f[1], f[4], f[8]), lsn, texts)])
        return 1

    def _index_log(self, f: list[Any], lsn: int, idx: int) -> int:
        assert self._index is not None
        body = self._blobs.restore_log(f)[1]
        if not body:
            return 0
        self._index.add([log_doc(f, lsn, idx, body)])
        return 1

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close this store's background writers (flushing them), finish in-flight
        writes, sync and release the directory. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            for writer in list(self._writers):
                writer.close()  # flush what callers handed to background writers
            # stop a compaction, merge or retention pass in another thread (a Maintenance
            # loop) at its next safe point and wait for it: the LMDB environment closes below
            self._compactor.closing.set()
            self._compactor.lock.acquire()
            self._compactor.closed = True
            self._closed = True
            try:
                if self._endpoint is not None:
                    self._endpoint.close()  # takes no more shipments
                if self._pipeline is not None:
                    self._pipeline.close()
                    if self._leader is not None:
                        self._leader.save_positions()
                        self._leader.close()
                    assert self._indexer is not None and self._index is not None
                    if self._indexer.close():  # commits what the applier handed it
                        self._index.close()
                    with self._pipeline.io:
                        assert self._wal is not None
                        self._wal.close()
                    self._hot.sync()
                    self._cold.close()  # deletes replaced files a read had kept
            finally:
                self._hot.close()
                self._compactor.lock.release()
                if self._lock is not None:
                    self._lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def fault(self) -> str | None:
        """Why this store refuses every write and read until it is closed and repaired
        (its applier met a durable WAL record it can never apply; the message names the
        segment and offset), or None. ``/health/ready`` reports it."""
        failed = self._pipeline.failed if self._pipeline is not None else None
        return None if failed is None else str(failed)

    def _check_open(self) -> None:
        """Refuse use after close; for a writer, wait until every acknowledged write is readable."""
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        if self._pipeline is not None:
            self._pipeline.wait_applied()

    def _local(self) -> CommitPipeline:
        """The commit pipeline of a writer or standby: for flushing and maintenance
        (compaction, merges, retention, blob collection, checkpoints), which change
        only this store's own tiers, never its WAL; not for client writes."""
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        if self._pipeline is None:
            raise ReadOnlyError(f"the store at {self.path} was opened read_only=True")
        return self._pipeline

    def _writable(self) -> CommitPipeline:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        if self._pipeline is None:
            raise ReadOnlyError(f"the store at {self.path} was opened read_only=True")
        if self._identity.role == STANDBY:
            leader = f" (its leader: {self._identity.leader_url})" if self._identity.leader_url else ""
            raise StandbyError(
                f"the store at {self.path} is a standby{leader}: it takes writes only from its leader until promoted"
            )
        return self._pipeline

    def flush(self) -> None:
        """Make every acknowledged write durable on disk (fsyncs the WAL under
        durability="os"), visible to every reader of this store, and searchable
        (commits the full-text index)."""
        pipeline = self._local()
        pipeline.sync()
        pipeline.wait_applied()
        assert self._indexer is not None
        self._indexer.flush(pipeline.applied_lsn)

    def checkpoint(self) -> int:
        """Commit the full-text index, sync the hot tier and delete the WAL segments both
        have fully taken in; returns how many."""
        pipeline = self._local()
        pipeline.wait_applied()
        assert self._indexer is not None
        self._indexer.flush(pipeline.applied_lsn)
        return pipeline.checkpoint()

    # ------------------------------------------------------------ replication

    @property
    def standby(self) -> bool:
        """Whether this store is a standby (takes writes only from its leader)."""
        return self._identity.role == STANDBY

    def promote(self) -> None:
        """Make this standby a writable leader, durably: it refuses further shipments
        from its old leader (fenced by a new epoch) and starts shipping to its own
        ``Settings.replicas``. Raises ReplicationError if it is not a standby."""
        pipeline = self._local()
        with self._receive_lock:
            ident = self._identity
            if ident.role != STANDBY:
                raise ReplicationError(f"the store at {self.path} is not a standby (it is a {ident.role})")
            pipeline.wait_applied()
            end = pipeline.durable_lsn
            epoch = max([ident.epoch, *(e for e, _ in ident.history)]) + 1
            promoted = Identity(
                ident.store_id if ident.store_id is not None else Identity.new_leader().store_id,
                LEADER,
                epoch,
                [*ident.history, (epoch, end)],
                None,
            )
            self._hot.put_meta({_IDENTITY: promoted.pack()})
            if self.settings.replicas:
                self._start_leader(promoted)  # before client writes are let in: each waits for its acks
            pipeline.standby_retain_bytes = 0  # the leader's standby positions hold the WAL from now on
            self._identity = promoted
            log.warning("%s promoted to leader: epoch %d from LSN %d", self.path, epoch, end)

    def set_leader_url(self, url: str | None) -> None:
        """Record where this standby's leader is (shown in errors, status and metrics)."""
        if self._identity.role != STANDBY:
            raise ReplicationError(f"the store at {self.path} is not a standby")
        with self._receive_lock:
            self._identity.leader_url = url
            self._hot.put_meta({_IDENTITY: self._identity.pack()})

    def replication_status(self) -> ReplicationStatus:
        """This store's role and epoch; for a leader its standbys' positions and lag,
        for a standby its lag behind the leader (see :class:`ReplicationStatus`)."""
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        ident = self._identity
        end = self._pipeline.durable_lsn if self._pipeline is not None else self._hot.applied_lsn()
        if ident.role == LEADER:
            return ReplicationStatus(
                role=LEADER,
                epoch=ident.epoch,
                store_id=ident.store_id.hex() if ident.store_id else None,
                end_lsn=end,
                replicas=self._leader.status() if self._leader is not None else (),
            )
        contact = self._leader_contact
        return ReplicationStatus(
            role=STANDBY,
            epoch=ident.epoch,
            store_id=ident.store_id.hex() if ident.store_id else None,
            end_lsn=end,
            leader_url=ident.leader_url,
            leader_end_lsn=self._leader_end,
            lag_bytes=None if self._leader_end is None else max(self._leader_end - end, 0),
            last_contact_s=None if contact is None else time.monotonic() - contact,
        )

    def _identity_store_id(self) -> bytes | None:
        return self._identity.store_id

    def _receive_shipment(self, msg: dict[str, Any]) -> int:
        """Standby: take one shipment of WAL frames from the leader (see
        _replication.routes); returns the end of this store's durable WAL."""
        pipeline = self._local()
        with self._receive_lock:
            end = pipeline.durable_lsn
            adopt = check_shipment(self._identity, end, msg)
            items: list[tuple[int, int, Sequence[Any], bytes]] = []
            for lsn, raw in msg["frames"]:
                if lsn < end:
                    continue
                try:
                    frame = verify_frame(raw, lsn, self.settings.wal_max_record_bytes)
                except ReplicationError as exc:  # damaged on the way: the leader sends it again
                    raise Conflict(str(exc), end_lsn=end, fatal=False) from exc
                if frame.rtype == RecordType.PAD:
                    items.append((lsn, frame.rtype, (), raw))
                    continue
                if frame.rtype not in ROW_OF:
                    raise Conflict(
                        f"cannot apply shipped WAL: the record at LSN {lsn} has type {frame.rtype}, unknown to "
                        "this version of tael (is the leader newer?)",
                        end_lsn=end,
                        fatal=True,
                    )
                # Decoded and checked before it is acknowledged: a record the hot tier could
                # never apply (a bug, an older version, a forged shipment) would otherwise
                # stop this standby's applier, and every read, until `tael repair`.
                try:
                    rows = self._frame_rows(frame)
                except CorruptionError as exc:
                    raise Conflict(
                        f"cannot apply shipped WAL at LSN {lsn}: it does not decode ({exc.__cause__!r})",
                        end_lsn=end,
                        fatal=True,
                    ) from exc
                problem = rows_problem(frame.rtype, rows)
                if problem is not None:
                    raise Conflict(f"cannot apply shipped WAL at LSN {lsn}: {problem}", end_lsn=end, fatal=True)
                items.append((lsn, frame.rtype, rows, raw))
            if adopt is not None:  # only once the shipment proved sound
                self._hot.put_meta({_IDENTITY: adopt.pack()})
                self._identity = adopt
            if items:
                try:
                    end = pipeline.commit_shipped(items)
                except ReplicationError as exc:
                    raise Conflict(str(exc), end_lsn=pipeline.durable_lsn, fatal=False) from exc
            self._leader_end = int(msg["leader_end"])
            self._leader_contact = time.monotonic()
            return end

    def _frame_rows(self, frame: Any) -> list[Any]:
        """The hot-tier rows of one verified WAL frame (replay and shipping)."""
        return frame_rows(frame, self._payloads)

    # ------------------------------------------------------------ writes

    def insert_spans(self, spans: Sequence[Span]) -> int:
        """Durably store a batch of spans, all or nothing; returns the batch size.

        A span already stored under the same (trace_id, span_id) is left as it
        was, so retried exports do not duplicate."""
        return self._insert(RecordType.SPANS, _codec.encode_spans(_batch(spans), self._payloads))

    def insert_logs(self, logs: Sequence[LogRecord]) -> int:
        """Durably store a batch of log records, all or nothing; returns the batch size."""
        return self._insert(RecordType.LOGS, _codec.encode_logs(_batch(logs), self._payloads))

    def insert_metrics(self, points: Sequence[MetricPoint]) -> int:
        """Durably store a batch of metric points, all or nothing; returns the batch size."""
        return self._insert(RecordType.METRICS, _codec.encode_metrics(_batch(points)))

    def _insert(self, rtype: RecordType, rows: Sequence[Any]) -> int:
        pipeline = self._writable()
        if not rows:
            return 0
        s = self.settings
        try:
            frame = encode_frame(
                rtype,
                [r[-1] for r in rows],
                compress_min=s.wal_compress_min_bytes,
                level=s.wal_compress_level,
                max_bytes=s.wal_max_record_bytes,
            )
        except ValueError as exc:
            raise ValidationError(f"batch too large: {exc}; split it") from None
        pipeline.commit(rtype, rows, frame)
        return len(rows)

    def writer(
        self,
        *,
        max_queue: int | None = None,
        flush_interval_s: float | None = None,
        on_full: str = "block",
    ) -> BackgroundWriter:
        """A background batching writer for many small writes; see :class:`BackgroundWriter`."""
        self._writable()
        writer = BackgroundWriter(
            self,
            max_queue=max_queue if max_queue is not None else self.settings.writer_max_queue,
            flush_interval_s=flush_interval_s
            if flush_interval_s is not None
            else self.settings.writer_flush_interval_s,
            on_full=on_full,
        )
        self._writers.add(writer)
        return writer

    # ------------------------------------------------------------ reads
    #
    # Each read is planned, run over one snapshot of both tiers and merged by the
    # query package (tael/_query); the full docstrings are on its functions and on
    # the filter classes.

    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of a trace, hot and cold, ascending start_ns; [] for an unknown id."""
        return trace_reads.get_trace(self._reads, trace_id)

    def query_traces(
        self,
        where: SpanFilter | None = None,
        /,
        *,
        service: str | None = None,
        name: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        min_duration_ms: float | None = None,
        max_duration_ms: float | None = None,
        attributes: dict[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        limit: int = 100,
        text: str | None = None,
        order: str = "desc",
    ) -> list[Span]:
        """Spans matching a :class:`tael.SpanFilter` or the same keyword filters (not both),
        hot and cold, newest start_ns first, at most ``limit``: see ``tael._query.traces.query``."""
        where = chosen(
            SpanFilter,
            where,
            limit,
            order,
            service=service,
            name=name,
            status=status,
            kind=kind,
            min_duration_ms=min_duration_ms,
            max_duration_ms=max_duration_ms,
            attributes=attributes,
            start=start,
            end=end,
            text=text,
        )
        return trace_reads.query(self._reads, where, limit, order)

    def query_logs(
        self,
        where: LogFilter | None = None,
        /,
        *,
        service: str | None = None,
        min_severity: int | None = None,
        trace_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        limit: int = 100,
        text: str | None = None,
        order: str = "desc",
    ) -> list[LogRecord]:
        """Log records matching a :class:`tael.LogFilter` or the same keyword filters (not both),
        hot and cold, newest first, at most ``limit``: see ``tael._query.logs.query``."""
        where = chosen(
            LogFilter,
            where,
            limit,
            order,
            service=service,
            min_severity=min_severity,
            trace_id=trace_id,
            attributes=attributes,
            start=start,
            end=end,
            text=text,
        )
        return log_reads.query(self._reads, where, limit, order)

    def query_metrics(
        self,
        where: MetricFilter | None = None,
        /,
        *,
        name: str | None = None,
        service: str | None = None,
        attributes: dict[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        limit: int = 10_000,
    ) -> list[MetricPoint]:
        """Metric points matching a :class:`tael.MetricFilter` or the same keyword filters (not
        both), hot and cold, oldest first, at most ``limit``: see ``tael._query.metrics.query``."""
        where = chosen(
            MetricFilter, where, limit, None, name=name, service=service, attributes=attributes, start=start, end=end
        )
        return metric_reads.query(self._reads, where, limit)

    def _cold_points(
        self, manifest: list[ColdFile], name: str, sids: list[str], lo: int, hi: int
    ) -> list[tuple[tuple[int, int, int], str, list[Any]]]:
        """(ingest key, series id hex, record) of cold raw points of the given series in [lo, hi)."""
        files = [f for f in manifest if f.dataset == "metrics" and f.overlaps(lo, hi) and name in f.names]
        if not files:
            return []
        bounds = {"series_id": (min(sids), max(sids)), "time_ns": (lo, hi - 1)}
        expr = filters.and_all([pc.field("series_id").isin(sids), *filters.time_exprs("time_ns", lo, hi)])
        table = self._cold.read_pruned(files, bounds, expr)
        sid_col = table.column("series_id").to_pylist()
        return [(key, sid, rec) for sid, (key, rec) in zip(sid_col, metric_records(table), strict=True)]

    def _exact_where_interleaved(
        self,
        parts: list[_rollup.Partial],
        manifest: list[ColdFile],
        name: str,
        hot: list[tuple[tuple[int, int, int], str, list[Any]]],
        step_ns: int,
        lo: int,
        hi: int,
    ) -> list[_rollup.Partial]:
        """Late points whose times interleave with already-compacted points of the same
        series make chained rollups inexact for ``increase``. Recompute such (series,
        bucket)s from the raw points, hot and cold, while all of them are retained."""
        groups: dict[tuple[str, int], list[_rollup.Partial]] = {}
        for p in parts:
            groups.setdefault((p["series_id"], p["window_start_ns"] - p["window_start_ns"] % step_ns), []).append(p)
        for (sid, bucket), group in groups.items():
            if len(group) < 2:
                continue
            ordered = sorted(group, key=lambda p: (p["first_ns"], p["last_ns"]))
            if all(b["first_ns"] > a["last_ns"] for a, b in itertools.pairwise(ordered)):
                continue  # disjoint in time: chaining is exact
            b_lo, b_hi = max(lo, bucket), min(hi, bucket + step_ns)
            points = [(k, rec) for k, _sid, rec in self._cold_points(manifest, name, [sid], b_lo, b_hi)]
            points += [(k, rec) for k, s, rec in hot if s == sid and b_lo <= k[0] < b_hi]
            if len(points) != sum(p["count"] for p in group):
                continue  # raw points partly past retention: the chained rollups are the best left
            points.sort(key=lambda kr: kr[0])
            groups[(sid, bucket)] = _rollup.partials_from_points(((sid, rec) for _k, rec in points), step_ns)
        return [p for group in groups.values() for p in group]

    def _matching_series(
        self, txn: Any, name: str, service: str | None, want: list[tuple[str, Any]] | None
    ) -> list[bytes]:
        return [
            sid
            for sid, (svc, _kind, attrs) in self._hot.series_for(txn, name)
            if (service is None or svc == service) and (want is None or args.attrs_match(want, attrs, {}))
        ]

    def aggregate_metrics(
        self,
        name: str,
        *,
        service: str | None = None,
        attributes: dict[str, Any] | None = None,
        start: Any,
        end: Any,
        step: str | int = "5m",
    ) -> list[MetricBucket]:
        """Every series of ``name`` matching the filters, merged into one bucket per
        step-aligned window in ``[start, end)`` that has data, oldest first.

        ``step``: "1m", "5m", "1h", "1d" or nanoseconds. Compacted data is read from
        the 1-hour rollups when the step is a multiple of an hour, from the 5-minute
        rollups when it is a multiple of 5 minutes, and as raw points otherwise
        (so after raw retention only rollup-aligned steps still see old data);
        hot data and windows cut by ``start``/``end`` are read as raw points."""
        if type(name) is not str or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        step_ns = args.step_ns(step)
        lo, hi = to_ns(start, "start"), to_ns(end, "end")
        if lo is None or hi is None:
            raise ValueError("aggregate_metrics needs both start and end")
        want = args.attr_filter(attributes) if attributes else None
        if hi <= lo:
            return []
        windows = (("metrics_1h", args.HOUR_NS), ("metrics_5m", args.FIVE_MIN_NS))
        rollup = next((ds for ds, w in windows if step_ns % w == 0), None)

        def sid_of(f: list[Any]) -> str:
            return _codec.series_key(f[1], f[2], f[4], f[6])[0].hex()

        def run(txn: Any, manifest: list[ColdFile]) -> list[MetricBucket]:
            series = self._matching_series(txn, name, service, want)
            if not series:
                return []
            sids = [sid.hex() for sid in series]
            by_series = pc.field("series_id").isin(sids)
            parts: list[_rollup.Partial] = []
            hot = self._hot.series_points(txn, series, lo, hi, sys.maxsize)
            parts += _rollup.partials_from_points(((sid_of(f), f) for _k, f in hot), step_ns)
            raw_ranges: list[tuple[int, int]] = [(lo, hi)]
            if rollup is not None:
                window = args.HOUR_NS if rollup == "metrics_1h" else args.FIVE_MIN_NS
                inner_lo, inner_hi = -(-lo // window) * window, hi // window * window
                if inner_lo < inner_hi:
                    raw_ranges = [(lo, inner_lo), (inner_hi, hi)]
                    files = [
                        f
                        for f in manifest
                        if f.dataset == rollup and f.overlaps(inner_lo, inner_hi) and name in f.names
                    ]
                    if files:
                        expr = filters.and_all([by_series, *filters.time_exprs("window_start_ns", inner_lo, inner_hi)])
                        bounds = {"series_id": (min(sids), max(sids)), "window_start_ns": (inner_lo, inner_hi - 1)}
                        table = self._cold.read_pruned(files, bounds, expr, _rollup.PARTIAL_COLUMNS)
                        parts += _rollup.partials_from_table(_columns(table), table.num_rows)
            for r_lo, r_hi in raw_ranges:
                if r_lo < r_hi:
                    parts += _rollup.partials_from_points(
                        ((sid, rec) for _k, sid, rec in self._cold_points(manifest, name, sids, r_lo, r_hi)), step_ns
                    )
            if rollup is not None:
                hot_keyed = [(_QQI.unpack(k), sid_of(f), f) for k, f in hot]
                parts = self._exact_where_interleaved(parts, manifest, name, hot_keyed, step_ns, lo, hi)
            return _rollup.buckets(parts, step_ns)

        return self._reads.read(run)

    def list_services(self) -> list[ServiceInfo]:
        """Every service with spans in the store (hot or cold), by name, from counters kept
        on write and on retention (no span scan)."""

        def run(txn: Any, manifest: list[ColdFile]) -> list[ServiceInfo]:
            totals: dict[str, tuple[int, int, int, int]] = dict(self._hot.services(txn))
            out = []
            for name in sorted(totals):
                spans, errors, total_ns, traces = totals[name]
                out.append(
                    ServiceInfo(
                        name=name,
                        span_count=spans,
                        trace_count=traces,
                        error_count=errors,
                        error_rate=errors / spans if spans else 0.0,
                        avg_duration_ms=total_ns / spans / 1e6 if spans else 0.0,
                    )
                )
            return out

        return self._reads.read(run)

    def _index_coverage(self) -> dict[str, Any]:
        """Whether the full-text index holds a document for every hot-tier record it must
        (``tael check``): records with text stored before the position the next open
        would index again from. That position is the recorded indexed LSN when the
        WAL still holds everything from it on, else the applied LSN (the WAL cannot
        bring those records back: only ``rebuild_index`` can). Returns the positions,
        records checked and missing per signal, and a few missing ones."""
        self._check_open()
        keys = self._payloads.keys

        def texty(attrs: dict[str, Any] | None) -> bool:  # str, or the digest of a long one in the blob store
            return attrs is not None and any(k in keys and type(v) in (str, bytes) for k, v in attrs.items())

        with self._hot.reader() as txn:
            applied = self._hot.applied_lsn()
            indexed = self._hot.indexed_lsn()
            segments = list_segments(self.path / "wal") if (self.path / "wal").is_dir() else []
            wal_from = segments[0][0] if segments else None
            report: dict[str, Any] = {"applied_lsn": applied, "indexed_lsn": indexed, "wal_from": wal_from}
            if indexed is None or not (self.path / "index" / "meta.json").exists():
                return report | {"built": False}  # the next open builds it from the tiers
            covered = wal_from is not None and wal_from <= indexed
            bound = indexed if covered else applied
            index = self._reads.text_index()
            index.index.reload()  # at least as new as the indexed LSN just read

            def logs() -> Iterator[tuple[int, int, int, int]]:
                for key, value in self._hot.records(txn, "logs"):
                    t, lsn, idx = _QQI.unpack(key)
                    if lsn < bound and _codec.unpackb(value)[1]:
                        yield t, lsn, idx, 0

            def spans() -> Iterator[tuple[int, int, int, int]]:
                for key, value in self._hot.records(txn, "spans"):
                    f = _codec.unpackb(value)
                    if texty(f[10]) or any(texty(ev[2]) for ev in f[14]):
                        lsn = self._hot.span_lsn(txn, key)
                        if lsn is not None and lsn < bound:
                            trace, span = f[0], f[1]
                            yield f[5], int.from_bytes(trace[:8]), int.from_bytes(trace[8:]), int.from_bytes(span)

            out: dict[str, Any] = {
                "built": True,
                "replayable_from": bound,
                "checked": {},
                "missing": {},
                "examples": [],
            }
            for name, signal, expected in (("spans", DOC_SPAN, spans()), ("logs", DOC_LOG, logs())):
                checked, missing, examples = missing_documents(index, signal, expected)
                out["checked"][name] = checked
                out["missing"][name] = missing
                out["examples"] += [{"signal": name, "time_ns": e[0], "keys": list(e[1:])} for e in examples]
        return report | out

    def stats(self) -> StoreStats:
        """Record counts and time range per signal (hot and cold), and bytes on disk per component."""

        def run(txn: Any, manifest: list[ColdFile]) -> StoreStats:
            hot = self._hot.signal_stats(txn)
            signals = {}
            cold_counts = {}
            for signal, h in hot.items():
                files = [f for f in manifest if f.dataset == signal]
                cold_counts[signal] = sum(f.rows for f in files)
                times = [t for t in (h.oldest_ns, h.newest_ns) if t is not None]
                times += [f.min_ns for f in files] + [f.max_ns for f in files]
                signals[signal] = SignalStats(
                    count=h.count + cold_counts[signal],
                    oldest_ns=min(times) if times else None,
                    newest_ns=max(times) if times else None,
                )
            blobs, blob_raw, _stored = self._hot.blob_stats(txn)
            index_docs = 0
            if (self.path / "index" / "meta.json").exists():
                index_docs = self._reads.text_index().documents()
            indexed = self._indexer.committed_lsn if self._indexer is not None else self._hot.indexed_lsn()
            return StoreStats(
                signals=signals,
                disk_bytes={
                    "wal": dir_size(self.path / "wal"),
                    "hot": dir_size(self.path / "hot"),
                    # a cold tier elsewhere counts what the manifest names (bytes in the bucket)
                    "cold": sum(f.size for f in manifest) if self._cold.remote else dir_size(self._cold.root),
                    **({"cache": dir_size(self.path / "cache")} if self._cold.remote else {}),
                    "blobs": dir_size(self.path / "blobs"),
                    "index": dir_size(self.path / "index"),
                },
                wal_segments=self._wal.segment_count
                if self._wal is not None
                else len(list((self.path / "wal").glob("*.wal"))),
                applied_lsn=self._pipeline.applied_lsn if self._pipeline is not None else self._hot.applied_lsn(),
                hot_records={k: v.count for k, v in hot.items()},
                cold_records=cold_counts,
                cold_files=len(manifest),
                blobs=blobs,
                blob_raw_bytes=blob_raw,
                index_documents=index_docs,
                indexed_lsn=indexed or 0,
                replication=self.replication_status(),
            )

        return self._reads.read(run)

    # ------------------------------------------------------------ analytics

    def summary(self, *, last_s: float = 3600, service: str | None = None, now: Any = None) -> SummaryReport:
        """The window ``[now - last_s, now)`` at a glance: span statistics with exact
        percentiles, the 10 busiest services, the 10 operations with most errors, log
        counts by severity and metric points, over both tiers (a span counts by its
        start_ns). Reads lean side tables and a few Parquet columns, not full records."""
        lo, hi = args.window(last_s, now, "last_s")
        svc = args.opt_service(service)

        def run(txn: Any, manifest: list[ColdFile]) -> SummaryReport:
            spans = _analytics.span_window(self._hot, self._cold, txn, manifest, lo, hi, svc)
            return SummaryReport(
                start_ns=lo,
                end_ns=hi,
                traces=_analytics.trace_summary(spans),
                top_services=_analytics.top_services(_analytics.per_service(spans)),
                top_error_operations=_analytics.top_error_operations(spans),
                logs=_analytics.log_summary(self._hot, self._cold, txn, manifest, lo, hi, svc),
                metrics=_analytics.metric_summary(self._hot, self._cold, txn, manifest, lo, hi, svc),
            )

        return self._reads.read(run)

    def anomalies(
        self, *, current_s: float = 300, baseline_s: float = 3600, service: str | None = None, now: Any = None
    ) -> AnomalyReport:
        """Services whose error rate or p95 latency rose in the current window
        ``[now - current_s, now)`` against the baseline window just before it,
        ``[now - current_s - baseline_s, now - current_s)`` (not overlapping, so a
        regression does not dilute its own baseline). Only services with spans in both
        windows are compared. Error rate: a rise of more than 5 percentage points is
        medium, more than 20 high. p95: more than 1.5x and more than 25 ms higher is
        medium, more than 2x (and 25 ms) high."""
        cur_lo, hi = args.window(current_s, now, "current_s")
        base_lo, _ = args.window(baseline_s, cur_lo, "baseline_s")
        svc = args.opt_service(service)

        def run(txn: Any, manifest: list[ColdFile]) -> AnomalyReport:
            current = _analytics.per_service(
                _analytics.span_window(self._hot, self._cold, txn, manifest, cur_lo, hi, svc)
            )
            baseline = _analytics.per_service(
                _analytics.span_window(self._hot, self._cold, txn, manifest, base_lo, cur_lo, svc)
            )
            found = []
            for name in sorted(current.keys() & baseline.keys()):
                n_c, e_c, p95_c = current[name]
                n_b, e_b, p95_b = baseline[name]
                rate_c, rate_b = 100.0 * e_c / n_c, 100.0 * e_b / n_b
                rise = rate_c - rate_b
                if rise > 5:
                    found.append(
                        Anomaly(
                            service=name,
                            kind="error_rate",
                            severity="high" if rise > 20 else "medium",
                            current=rate_c,
                            baseline=rate_b,
                            delta=rise,
                            description=f"{name}: error rate {rate_c:.1f}% against {rate_b:.1f}% before "
                            f"(+{rise:.1f} points)",
                        )
                    )
                grow = p95_c - p95_b
                if p95_c > 1.5 * p95_b and grow > 25:
                    found.append(
                        Anomaly(
                            service=name,
                            kind="p95_latency",
                            severity="high" if p95_c > 2 * p95_b else "medium",
                            current=p95_c,
                            baseline=p95_b,
                            delta=grow,
                            description=f"{name}: p95 latency {p95_c:.1f} ms against {p95_b:.1f} ms before "
                            f"(+{grow:.1f} ms)",
                        )
                    )
            return AnomalyReport(baseline_start_ns=base_lo, current_start_ns=cur_lo, end_ns=hi, anomalies=found)

        return self._reads.read(run)

    def correlate(self, trace_id: str) -> CorrelateReport | None:
        """A trace with every log carrying its id (whatever their time, oldest first) and
        the metric points of its services from ``Settings.correlate_margin_s`` before it
        starts to as long after it ends; None for an unknown trace."""
        spans = self.get_trace(trace_id)
        if not spans:
            return None
        start = min(s.start_ns for s in spans)
        end = max(s.end_ns for s in spans)
        services = sorted({s.service for s in spans})
        margin = int(self.settings.correlate_margin_s * 1e9)
        logs = self.query_logs(trace_id=trace_id, limit=args.MAX_LIMIT, order="asc")
        points: list[MetricPoint] = []
        for svc in services:
            points += self.query_metrics(
                service=svc, start=max(0, start - margin), end=end + margin, limit=args.MAX_LIMIT
            )
        points.sort(key=lambda p: (p.time_ns, p.name, p.service))
        return CorrelateReport(
            trace_id=trace_id,
            spans=spans,
            services=services,
            start_ns=start,
            end_ns=end,
            duration_ms=(end - start) / 1e6,
            error_count=sum(s.status == "error" for s in spans),
            logs=logs,
            metrics=points,
        )

    def add_comment(self, trace_id: str, body: str, *, author: str, span_id: str | None = None) -> Comment:
        """Attach a note to a trace (or one of its spans): durable through the WAL like
        any write, kept until ``Settings.retention_comments_days``, whatever happens to
        the trace's spans. The trace need not be stored (yet)."""
        row = _codec.encode_comment(trace_id, body, author, span_id, time.time_ns())
        self._insert(RecordType.COMMENTS, [row])
        return _codec.decode_comment(_codec.unpackb(row[3]))

    def comments(self, trace_id: str) -> list[Comment]:
        """The comments on a trace, oldest first."""
        trace = args.query_id(trace_id, 16, "trace_id")
        return self._reads.read(lambda txn, _m: [_codec.decode_comment(f) for f in self._hot.comments(txn, trace)])

    def list_operations(self, service: str) -> list[str]:
        """Span names of a service, sorted (kept on write, dropped by retention)."""
        if type(service) is not str or not service:
            raise ValueError(f"service must be a non-empty str, got {service!r}")
        return self._reads.read(lambda txn, _m: self._hot.operations(txn, service))

    def list_attribute_keys(self, signal: str, *, service: str | None = None) -> list[str]:
        """Attribute keys (record and resource) of recent records of a signal ("spans",
        "logs" or "metrics"), sorted: the newest ``ATTRIBUTE_SAMPLE`` records of the hot
        tier, and the newest cold file when the hot tier has fewer."""
        counts = self._attribute_sample(signal, service, None)
        return sorted(counts)

    def list_attribute_values(
        self, signal: str, key: str, *, service: str | None = None, limit: int = 100
    ) -> list[Any]:
        """Distinct values of one attribute key among recent records of a signal (the same
        sample as ``list_attribute_keys``), most frequent first, at most ``limit``."""
        if type(key) is not str or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        if type(limit) is not int or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        counts = self._attribute_sample(signal, service, key)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0]))
        return [value for _k, (value, _n) in ranked[:limit]]

    def _attribute_sample(self, signal: str, service: str | None, key: str | None) -> dict[Any, Any]:
        """Without ``key``: attribute key -> count. With it: canonical value -> (value, count)."""
        if signal not in ("spans", "logs", "metrics"):
            raise ValueError(f'signal must be "spans", "logs" or "metrics", got {signal!r}')
        svc = args.opt_service(service)
        attrs_at = {"spans": (4, 10, 11), "logs": (2, 7, 8), "metrics": (2, 6, None)}[signal]

        def run(txn: Any, manifest: list[ColdFile]) -> dict[Any, Any]:
            out: dict[Any, Any] = {}
            seen = 0

            def take(f: list[Any]) -> None:
                s_at, a_at, r_at = attrs_at
                if svc is not None and f[s_at] != svc:
                    return
                for attrs in (f[a_at], f[r_at] if r_at is not None else {}):
                    if key is None:
                        for k in attrs:
                            out[k] = out.get(k, 0) + 1
                    elif key in attrs:
                        v = attrs[key]
                        canon = repr((type(v).__name__, v))
                        held = out.get(canon)
                        out[canon] = (v, held[1] + 1 if held else 1)

            def take_span(f: list[Any]) -> None:
                take(self._blobs.restore_span(f) if key in self._payloads.keys else f)

            for _k, f in self._hot.scan(
                txn, signal, None, None, reverse=True, keep=lambda f: True, limit=ATTRIBUTE_SAMPLE
            ):
                (take_span if signal == "spans" else take)(f)
                seen += 1
            if seen < ATTRIBUTE_SAMPLE:
                files = sorted((f for f in manifest if f.dataset == signal), key=lambda f: f.max_ns, reverse=True)
                if files:
                    table = self._cold.read_all(files[0])
                    convert: Callable[[Any], Any] = {
                        "spans": span_records,
                        "logs": log_records,
                        "metrics": metric_records,
                    }[signal]
                    recs = convert(table.slice(max(0, table.num_rows - (ATTRIBUTE_SAMPLE - seen))))
                    for rec in recs:
                        if signal == "spans":
                            take_span(rec)
                        else:
                            take(rec[1])
            return out

        return self._reads.read(run)

    def trace_summaries(
        self,
        *,
        service: str | None = None,
        name: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        min_duration_ms: float | None = None,
        max_duration_ms: float | None = None,
        attributes: dict[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        limit: int = 20,
        text: str | None = None,
        order: str = "desc",
    ) -> list[TraceOverview]:
        """One row per trace with a span matching every filter (``query_traces``'
        filters), in the order of its best matching span, at most ``limit`` traces; each
        row describes the whole trace."""
        args.check_range(start, end, limit)
        traces: list[str] = []
        fetch = limit
        while True:
            spans = self.query_traces(
                service=service,
                name=name,
                status=status,
                kind=kind,
                min_duration_ms=min_duration_ms,
                max_duration_ms=max_duration_ms,
                attributes=attributes,
                start=start,
                end=end,
                limit=min(fetch, args.MAX_LIMIT),
                text=text,
                order=order,
            )
            traces = list(dict.fromkeys(s.trace_id for s in spans))
            if len(traces) >= limit or len(spans) < fetch or fetch >= args.MAX_LIMIT:
                break
            fetch *= 4
        out = []
        for trace_id in traces[:limit]:
            whole = self.get_trace(trace_id)
            if not whole:
                continue  # removed since the search
            ids = {s.span_id for s in whole}
            roots = [s for s in whole if s.parent_span_id is None or s.parent_span_id not in ids]
            root = min(roots or whole, key=lambda s: (s.parent_span_id is not None, s.start_ns))
            first = min(s.start_ns for s in whole)
            out.append(
                TraceOverview(
                    trace_id=trace_id,
                    root_service=root.service,
                    root_name=root.name,
                    start_ns=first,
                    duration_ms=(max(s.end_ns for s in whole) - first) / 1e6,
                    span_count=len(whole),
                    error_count=sum(s.status == "error" for s in whole),
                )
            )
        return out

    # ------------------------------------------------------------ SQL

    def sql(self, query: str) -> Any:
        """Run a DuckDB SQL query over views ``spans``, ``logs``, ``metrics``,
        ``metrics_5m`` and ``metrics_1h`` that union the hot and cold tiers (the
        columns of docs/cold-format.md); returns a ``pyarrow.Table``. Needs the
        ``sql`` extra (DuckDB). Hot records are converted on every call, so the
        cost grows with the hot tier."""
        from ._sql import run_sql

        return run_sql(self, query)

    # ------------------------------------------------------------ tiers

    def compact(self, before: Any, *, stop: threading.Event | None = None) -> CompactionReport:
        """Move every hot record with time < ``before`` (int ns or aware datetime) to the
        cold tier, writing metric rollups on the way; merges partitions it leaves with
        many small files. Crash-safe and exactly-once (docs/architecture.md). A standby
        compacts its own copy (maintenance is local; only client writes are refused).

        Once ``stop`` is set (or the store is closing), it stops at the next safe point,
        between chunks of ``compaction_batch_records`` or before publishing the files
        of one, and returns a report with ``interrupted=True`` counting what moved."""
        pipeline = self._local()
        before_ns = to_ns(before, "before")
        if before_ns is None:
            raise ValueError("compact needs a time: before=<int ns or aware datetime>")
        pipeline.wait_applied()
        return self._compactor.compact(before_ns, _event(stop))

    def merge_small_files(self, *, stop: threading.Event | None = None) -> int:
        """Merge every cold partition's small files (below ``cold_target_file_bytes``) once it
        has ``cold_merge_min_files`` of them; returns how many files were merged away.
        Once ``stop`` is set it returns, each group merged whole or not at all."""
        self._local()
        return self._compactor.merge_small_files(stop=_event(stop))

    def enforce_retention(self, now: Any = None, *, stop: threading.Event | None = None) -> RetentionReport:
        """Drop cold partitions whose every record is past its dataset's retention, and hot
        spans and logs past retention; hot metric points past retention are compacted
        (rolled up) first, never dropped unrolled. ``now`` defaults to the current time.
        Once ``stop`` is set it stops between steps (a hot chunk, a cold partition) and
        the report says ``interrupted``; the next call drops the rest."""
        pipeline = self._local()
        now_ns = to_ns(now, "now") if now is not None else time.time_ns()
        assert now_ns is not None
        pipeline.wait_applied()
        with self._compactor.lock:  # close() waits for this lock before shutting LMDB
            report = self._compactor.enforce_retention(now_ns, _event(stop))
            if report.interrupted:
                return report  # the index and comments are trimmed by the next, whole, call
            oldest = self._forget_indexed(report.cutoffs)
            self._hot.forget_operations(oldest["spans"])
            self._hot.drop_comments(now_ns - int(self.settings.retention_comments_days * 86_400e9))
        return report

    def _forget_indexed(self, cutoffs: dict[str, int]) -> dict[str, int]:
        """Delete index entries of records retention removed: every document of a signal
        older than both its cutoff and the oldest record of it still stored (partitions
        are dropped whole, so records past the cutoff may remain; they stay searchable).
        Returns that bound per signal: every record before it is gone."""
        assert self._index is not None
        bounds: dict[str, int] = {}
        with self._hot.reader() as txn:
            manifest = self._hot.manifest(txn)
            hot = self._hot.signal_stats(txn)
        for signal, doc in (("spans", DOC_SPAN), ("logs", DOC_LOG)):
            oldest = [f.min_ns for f in manifest if f.dataset == signal]
            hot_oldest = hot[signal].oldest_ns
            if hot_oldest is not None:
                oldest.append(hot_oldest)
            bounds[signal] = min([cutoffs[signal], *oldest])
            self._index.delete_before(doc, bounds[signal])
        self._index.commit()
        return bounds

    def collect_blobs(self) -> int:
        """Delete payload blobs no live span or log refers to, hot or cold (maintenance
        runs this); returns how many were removed."""
        self._local()
        with self._compactor.lock:
            self._compactor._check()
            removed, freed = self._hot.collect_blobs()
        if removed:
            log.info("blob collection removed %d blobs (%d bytes) from %s", removed, freed, self.path)
        return removed


# ---------------------------------------------------------------- argument helpers


def _event(stop: Any) -> threading.Event | None:
    if stop is not None and not isinstance(stop, threading.Event):
        raise TypeError(f"stop must be a threading.Event or None, got {type(stop).__name__}")
    return stop


def _batch(records: Any) -> Sequence[Any]:
    if isinstance(records, (str, bytes)) or not hasattr(records, "__iter__"):
        raise TypeError(f"expected a list of records, got {type(records).__name__}")
    return records if isinstance(records, (list, tuple)) else list(records)


def rebuild_index(path: str | Path, settings: Settings | None = None) -> int:
    """Rebuild a store's full-text index from its hot and cold tiers; returns the number
    of documents indexed. Takes the writer lock (the store must not be open elsewhere)."""
    root = Path(path)
    if not (root / "hot" / "data.mdb").exists():
        raise StorageError(f"{root} is not a tael data directory (no hot/data.mdb)")
    lock = DirLock(root)
    lock.acquire()
    try:
        TextIndex.remove(root / "index")
    finally:
        lock.release()
    with Store(root, settings) as store:  # opening with no index builds it from the tiers
        return store._index.documents() if store._index is not None else 0


def repair(path: str | Path, settings: Settings | None = None) -> RepairReport:
    """Move damaged parts of a store's WAL into ``<data>/quarantine/<time>/`` so it opens again.

    Takes the writer lock (the store must not be open elsewhere). Everything
    that verifies is kept, at its original position; the report lists each
    damaged region, whose records could not be recovered. A second pass applies
    the WAL to the hot tier as opening does and moves aside each record that
    verifies but cannot be applied (written by an older version, or a bug:
    opening names it with a CorruptionError); its region's ``reason`` says why.
    """
    root = Path(path)
    if not root.is_dir():
        raise StorageError(f"{root} is not a directory")
    s = settings if settings is not None else Settings()
    lock = DirLock(root)
    lock.acquire()
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        quarantine = root / "quarantine" / stamp
        checked, good, damaged = repair_wal(root / "wal", quarantine, max_record_bytes=s.wal_max_record_bytes)
        unappliable = quarantine_unappliable(root, s, quarantine)
    finally:
        lock.release()
    regions = [DamagedRegion(segment=seg, offset=off, length=n, quarantined_to=to) for seg, off, n, to in damaged]
    regions += [
        DamagedRegion(segment=seg, offset=off, length=n, quarantined_to=to, reason=why)
        for seg, off, n, to, why in unappliable
    ]
    return RepairReport(
        segments_checked=checked,
        frames_ok=good - len(unappliable),
        damaged=regions,
        quarantine_dir=str(quarantine) if regions else None,
    )
