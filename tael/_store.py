"""``tael.Store``: opens a data directory, orchestrates the WAL, commit pipeline and hot tier.

The Store holds no storage logic of its own: it validates arguments, routes
writes through the commit pipeline and reads through the tiers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow.compute as pc

from . import _codec
from ._blobs import BlobStore, Payloads
from ._check import check_tiers
from ._codec import decode_log, decode_metric, decode_span, to_ns
from ._cold import ColdFile, log_records, metric_records, open_cold_tier, span_records
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
from ._fsutil import DirLock
from ._hot import _QQI, SIGNAL_LOGS, SIGNAL_SPANS, HotTier, UnappliableRecordError
from ._keys import REPLICA_POSITION_PREFIX
from ._maintenance import Compactor
from ._models import (
    SPAN_KINDS,
    SPAN_STATUSES,
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
    Span,
    StoreStats,
    SummaryReport,
    TraceOverview,
)
from ._query import aggregate, analytics, args, catalog, filters, sql
from ._query.context import ReadContext
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
    matches,
    parse_text,
    span_doc,
    span_key,
)
from ._settings import Settings
from ._wal import (
    RecordType,
    Wal,
    encode_frame,
    read_frames,
    repair_wal,
    verify_frame,
)
from ._writer import BackgroundWriter

log = logging.getLogger(__name__)

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

    @property
    def cold_location(self) -> str:
        """Where the cold files are: a local directory, or a URI (``s3://bucket/prefix``)."""
        return self._cold.location

    @property
    def background_writers(self) -> list[BackgroundWriter]:
        """The open background writers of this store (``writer()``), for their counters."""
        return list(self._writers)

    def check(self) -> dict[str, Any]:
        """Verify the tiers without changing anything (``tael check``; tael/_check.py says what and how)."""
        self._check_open()
        return check_tiers(
            hot=self._hot,
            cold=self._cold,
            blobs=self._blobs,
            text_index=self._reads.text_index,
            root=self.path,
            payload_keys=self._payloads.keys,
            stats=self.stats,
        )

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
    # Each read takes one LMDB snapshot of the hot tier and the cold manifest
    # together, so a record moving between tiers is seen exactly once. A cold file
    # may be unlinked (retention, merge) after the snapshot listed it; the read is
    # then retried on a fresh snapshot.

    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of a trace, hot and cold, ascending start_ns; [] for an unknown id."""
        trace = args.query_id(trace_id, 16, "trace_id")

        def run(txn: Any, manifest: list[ColdFile]) -> list[Span]:
            spans: dict[bytes, list[Any]] = {}
            byid = {f.file_id: f for f in manifest}
            for file_id, rgs in sorted(self._hot.trace_refs(txn, trace, SIGNAL_SPANS).items()):
                f = byid.get(file_id)
                if f is None:
                    continue
                table = self._cold.read_row_groups(f, rgs)
                for rec in span_records(table.filter(pc.field("trace_id") == trace.hex())):
                    spans.setdefault(rec[1], rec)  # the cold copy was written first
            for rec in self._hot.trace_spans(txn, trace):
                spans.setdefault(rec[1], rec)
            return [self._span(f) for f in sorted(spans.values(), key=lambda f: (f[5], f[1]))]

        return self._reads.read(run)

    def query_traces(
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
        limit: int = 100,
        text: str | None = None,
        order: str = "desc",
    ) -> list[Span]:
        """Spans matching every given filter, hot and cold, newest start_ns first, at most ``limit``.

        ``attributes`` matches spans whose attributes or resource attributes hold
        every given key with an equal value of the same type. ``start <= start_ns < end``.
        ``text`` matches spans whose payload text (``Settings.payload_attributes`` on
        the span or its events) holds every word, and every "quoted phrase" as a
        phrase, case-insensitively, through the full-text index.
        ``order="asc"`` returns the oldest first instead.
        """
        lo, hi, limit = args.check_range(start, end, limit)
        desc = args.newest_first(order)
        terms = parse_text(text) if text is not None else None
        checks: list[Callable[[list[Any]], bool]] = []
        exprs: list[pc.Expression] = []
        if service is not None:
            checks.append(lambda f: f[4] == service)
            exprs.append(pc.field("service") == service)
        if name is not None:
            checks.append(lambda f: f[3] == name)
            exprs.append(pc.field("name") == name)
        if status is not None:
            code = args.enum_code(status, SPAN_STATUSES, "status")
            checks.append(lambda f: f[8] == code)
            exprs.append(pc.field("status") == status)
        if kind is not None:
            kcode = args.enum_code(kind, SPAN_KINDS, "kind")
            checks.append(lambda f: f[7] == kcode)
            exprs.append(pc.field("kind") == kind)
        if min_duration_ms is not None:
            lo_ns = args.duration_ns(min_duration_ms, "min_duration_ms")
            checks.append(lambda f: f[6] - f[5] >= lo_ns)
            exprs.append(pc.field("duration_ns") >= math.ceil(lo_ns))
        if max_duration_ms is not None:
            hi_ns = args.duration_ns(max_duration_ms, "max_duration_ms")
            checks.append(lambda f: f[6] - f[5] <= hi_ns)
            exprs.append(pc.field("duration_ns") <= math.floor(hi_ns))
        if attributes:
            want = args.attr_filter(attributes)
            checks.append(lambda f: args.attrs_match(want, f[10], f[11]))
        if hi is not None and hi <= 0:
            return []
        keep = args.all_of(checks)
        exprs += filters.time_exprs("start_ns", lo, hi)

        def run(txn: Any, manifest: list[ColdFile]) -> list[Span]:
            found: dict[tuple[bytes, bytes], tuple[tuple[int, bytes, bytes], list[Any]]] = {}
            files = [
                f
                for f in manifest
                if f.dataset == "spans" and f.overlaps(lo, hi) and (service is None or service in f.services)
            ]
            merge = _TopK(limit, newest_first=desc)
            expr = filters.and_all(exprs)
            way = "descending" if desc else "ascending"
            for f, rg, t_min, t_max in self._units(files, "start_ns", lo, hi, newest_first=desc):
                if merge.full_before(t_max if desc else t_min):
                    break
                table = self._cold.read_row_groups(f, [rg])
                if expr is not None:
                    table = table.filter(expr)
                table = table.sort_by([("start_ns", way), ("trace_id", way), ("span_id", way)])
                for rec in _converted(table, span_records, keep, limit):
                    k = (rec[0], rec[1])
                    if k not in found:
                        found[k] = ((rec[5], rec[0], rec[1]), rec)
                        merge.add(rec[5])
            for _key, rec in self._hot.scan(txn, "spans", lo, hi, reverse=desc, keep=keep, limit=limit):
                found.setdefault((rec[0], rec[1]), ((rec[5], rec[0], rec[1]), rec))
            ordered = sorted(found.values(), key=lambda kr: kr[0], reverse=desc)[:limit]
            return [self._span(rec) for _k, rec in ordered]

        if terms is not None:
            return self._text_spans(terms, service, status, lo, hi, keep, limit, desc)
        return self._reads.read(run)

    def query_logs(
        self,
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
        """Log records matching every given filter, hot and cold, newest first, at most ``limit``.

        ``text`` matches bodies holding every word and "quoted phrase" (as in
        ``query_traces``), through the full-text index. ``order="asc"``: oldest first."""
        lo, hi, limit = args.check_range(start, end, limit)
        desc = args.newest_first(order)
        terms = parse_text(text) if text is not None else None
        checks: list[Callable[[list[Any]], bool]] = []
        exprs: list[pc.Expression] = []
        if service is not None:
            checks.append(lambda f: f[2] == service)
            exprs.append(pc.field("service") == service)
        if min_severity is not None:
            if type(min_severity) is not int or not 0 <= min_severity <= 24:
                raise ValueError(f"min_severity must be an int in 0..24, got {min_severity!r}")
            checks.append(lambda f: f[3] >= min_severity)
            exprs.append(pc.field("severity_number") >= min_severity)
        if attributes:
            want = args.attr_filter(attributes)
            checks.append(lambda f: args.attrs_match(want, f[7], f[8]))
        trace = args.query_id(trace_id, 16, "trace_id") if trace_id is not None else None
        if trace is not None:
            exprs.append(pc.field("trace_id") == trace.hex())
        if hi is not None and hi <= 0:
            return []
        keep = args.all_of(checks)
        exprs += filters.time_exprs("time_ns", lo, hi)

        def run(txn: Any, manifest: list[ColdFile]) -> list[LogRecord]:
            found: dict[tuple[int, int, int], list[Any]] = {}
            merge = _TopK(limit, newest_first=desc)
            if trace is not None:
                byid = {f.file_id: f for f in manifest}
                refs = self._hot.trace_refs(txn, trace, SIGNAL_LOGS)
                tables = [
                    self._cold.read_row_groups(byid[fid], rgs).filter(filters.and_all(exprs))
                    for fid, rgs in sorted(refs.items())
                    if fid in byid
                ]
                sources: list[tuple[tuple[ColdFile, int, int] | None, Any]] = [(None, t) for t in tables]
            else:
                files = [
                    f
                    for f in manifest
                    if f.dataset == "logs" and f.overlaps(lo, hi) and (service is None or service in f.services)
                ]
                sources = [
                    ((f, rg, t_max if desc else t_min), None)
                    for f, rg, t_min, t_max in self._units(files, "time_ns", lo, hi, newest_first=desc)
                ]
            expr = filters.and_all(exprs)
            for unit, table in sources:
                if unit is not None:
                    f, rg, bound = unit
                    if merge.full_before(bound):
                        break
                    table = self._cold.read_row_groups(f, [rg])
                    if expr is not None:
                        table = table.filter(expr)
                assert table is not None
                way = "descending" if desc else "ascending"
                table = table.sort_by([("time_ns", way), ("wal_lsn", way), ("batch_index", way)])
                for key, rec in _converted(table, log_records, lambda kr: keep(kr[1]), limit):
                    found[key] = rec
                    merge.add(key[0])
            if trace is not None:
                hot = self._hot.logs_by_trace(txn, trace, lo, hi, keep, limit, newest_first=desc)
            else:
                hot = self._hot.scan(txn, "logs", lo, hi, reverse=desc, keep=keep, limit=limit)
            for raw_key, rec in hot:
                found.setdefault(_QQI.unpack(raw_key), rec)
            return [self._log(found[k]) for k in sorted(found, reverse=desc)[:limit]]

        if terms is not None:
            return self._text_logs(terms, service, min_severity, trace, lo, hi, keep, limit, desc)
        return self._reads.read(run)

    # ------------------------------------------------------------ full-text search
    #
    # The index yields pointers newest first; each page is resolved against one
    # snapshot of the store (a pointer to a record the store no longer holds is
    # skipped) and the call's other filters, until ``limit`` records are found.

    def _span(self, f: list[Any]) -> Span:
        return decode_span(self._blobs.restore_span(f))

    def _log(self, f: list[Any]) -> LogRecord:
        return decode_log(self._blobs.restore_log(f))

    def _text_spans(
        self,
        terms: list[list[str]],
        service: str | None,
        status: str | None,
        lo: int | None,
        hi: int | None,
        keep: Callable[[list[Any]], bool],
        limit: int,
        desc: bool,
    ) -> list[Span]:
        level = SPAN_STATUSES.index(status) if status is not None else None
        index = self._reads.text_index()

        def run(txn: Any, manifest: list[ColdFile]) -> list[Span]:
            byid = {f.file_id: f for f in manifest}
            found: dict[tuple[bytes, bytes], list[Any]] = {}
            tables: dict[tuple[int, int], Any] = {}
            pages = index.search(
                DOC_SPAN,
                terms,
                desc=desc,
                service=service,
                trace=None,
                min_level=None,
                level=level,
                lo=lo,
                hi=hi,
                page=limit + 16,  # a little slack for pointers the filters or the store reject
            )
            for page in pages:
                keys = [span_key(k1, k2, k3) for _t, k1, k2, k3 in page]
                recs = self._fetch_spans(txn, byid, keys, tables)
                for key in keys:
                    rec = recs.get(key)
                    if rec is not None and key not in found and keep(rec) and self._span_matches(rec, terms):
                        found[key] = rec
                if _enough([f[5] for f in found.values()], page[-1][0], limit, desc):
                    break
            ordered = sorted(found.values(), key=lambda f: (f[5], f[0], f[1]), reverse=desc)[:limit]
            return [self._span(f) for f in ordered]

        return self._reads.read(run)

    def _span_matches(self, f: list[Any], terms: list[list[str]]) -> bool:
        """The stored span's own payload text matches: the index may point at it for the
        text of a re-sent copy that was not stored (the first write wins)."""
        texts = self._payloads.span_texts(self._blobs.restore_span(f))
        return matches(texts, terms)

    def _fetch_spans(
        self,
        txn: Any,
        byid: dict[int, ColdFile],
        keys: list[tuple[bytes, bytes]],
        tables: dict[tuple[int, int], Any],
    ) -> dict[tuple[bytes, bytes], list[Any]]:
        """Records of the given (trace, span) ids, cold copy first as in ``get_trace``."""
        out: dict[tuple[bytes, bytes], list[Any]] = {}
        wanted = set(keys)
        for trace in {t for t, _s in keys}:
            for file_id, rgs in self._hot.trace_refs(txn, trace, SIGNAL_SPANS).items():
                f = byid.get(file_id)
                if f is None:
                    continue
                for rg in rgs:
                    table = tables.get((file_id, rg))
                    if table is None:
                        table = tables[(file_id, rg)] = self._cold.read_row_groups(f, [rg])
                    rows = table.filter(pc.field("trace_id") == trace.hex())
                    for rec in span_records(rows):
                        key = (rec[0], rec[1])
                        if key in wanted:
                            out.setdefault(key, rec)
        for key, rec in self._hot.get_spans(txn, [k for k in keys if k not in out]).items():
            out[key] = rec
        return out

    def _text_logs(
        self,
        terms: list[list[str]],
        service: str | None,
        min_severity: int | None,
        trace: bytes | None,
        lo: int | None,
        hi: int | None,
        keep: Callable[[list[Any]], bool],
        limit: int,
        desc: bool,
    ) -> list[LogRecord]:
        index = self._reads.text_index()

        def run(txn: Any, manifest: list[ColdFile]) -> list[LogRecord]:
            files = [f for f in manifest if f.dataset == "logs"]
            found: dict[tuple[int, int, int], list[Any]] = {}
            pages = index.search(
                DOC_LOG,
                terms,
                desc=desc,
                service=service,
                trace=trace.hex() if trace is not None else None,
                min_level=min_severity,
                level=None,
                lo=lo,
                hi=hi,
                page=limit + 16,  # a little slack for pointers the filters or the store reject
            )
            for page in pages:
                keys = [(t, k1, k2) for t, k1, k2, _k3 in page]
                recs = self._fetch_logs(txn, files, keys)
                for key in keys:
                    rec = recs.get(key)
                    if rec is not None and key not in found and keep(rec):
                        found[key] = rec
                if _enough([k[0] for k in found], page[-1][0], limit, desc):
                    break
            return [self._log(found[k]) for k in sorted(found, reverse=desc)[:limit]]

        return self._reads.read(run)

    def _fetch_logs(
        self,
        txn: Any,
        files: list[ColdFile],
        keys: list[tuple[int, int, int]],
    ) -> dict[tuple[int, int, int], list[Any]]:
        """Records of the given (time, lsn, index) log keys, hot or cold. Each cold row
        group holding a wanted time is read once, and only its wanted rows are
        converted to Python."""
        out = self._hot.get_logs(txn, keys)
        wanted: dict[tuple[int, int], set[tuple[int, int, int]]] = {}
        byid = {f.file_id: f for f in files}
        for key in keys:
            if key in out:
                continue
            t = key[0]
            for f in files:
                if f.min_ns <= t <= f.max_ns:
                    for rg, t_min, t_max in self._cold.row_group_times(f, "time_ns"):
                        if t_min <= t <= t_max:
                            wanted.setdefault((f.file_id, rg), set()).add(key)
        for (file_id, rg), group in wanted.items():
            table = self._cold.read_row_groups(byid[file_id], [rg])
            table = table.filter(pc.field("time_ns").isin(sorted({k[0] for k in group})))
            for key, rec in log_records(table):
                if key in group:
                    out[key] = rec
        return out

    def query_metrics(
        self,
        *,
        name: str | None = None,
        service: str | None = None,
        attributes: dict[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        limit: int = 10_000,
    ) -> list[MetricPoint]:
        """Metric points matching every given filter, hot and cold, oldest first, at most ``limit``.

        With ``name`` only that name's series are read (via the series index)."""
        lo, hi, limit = args.check_range(start, end, limit)
        want = args.attr_filter(attributes) if attributes else None
        if hi is not None and hi <= 0:
            return []
        checks: list[Callable[[list[Any]], bool]] = []
        exprs: list[pc.Expression] = filters.time_exprs("time_ns", lo, hi)
        if name is not None:
            exprs.append(pc.field("name") == name)
        if service is not None:
            checks.append(lambda f: f[2] == service)
            exprs.append(pc.field("service") == service)
        if want is not None:
            checks.append(lambda f: args.attrs_match(want, f[6], {}))
        keep = args.all_of(checks)

        def run(txn: Any, manifest: list[ColdFile]) -> list[MetricPoint]:
            found: dict[tuple[int, int, int], list[Any]] = {}
            file_exprs = list(exprs)
            if name is not None:
                series = self._matching_series(txn, name, service, want)
                if not series:
                    return []
                file_exprs.append(pc.field("series_id").isin([sid.hex() for sid in series]))
                hot = self._hot.series_points(txn, series, lo, hi, limit)
            else:
                hot = self._hot.scan(txn, "metrics", lo, hi, reverse=False, keep=keep, limit=limit)
            files = [
                f
                for f in manifest
                if f.dataset == "metrics"
                and f.overlaps(lo, hi)
                and (name is None or name in f.names)
                and (service is None or service in f.services)
            ]
            merge = _TopK(limit, newest_first=False)
            for f in sorted(files, key=lambda f: f.min_ns):
                if merge.full_before(f.min_ns):
                    break
                table = self._cold.read([f], filter=filters.and_all(file_exprs))
                table = table.sort_by(
                    [("time_ns", "ascending"), ("wal_lsn", "ascending"), ("batch_index", "ascending")]
                )
                for key, rec in _converted(table, metric_records, lambda kr: keep(kr[1]), limit):
                    found[key] = rec
                    merge.add(key[0])
            for raw_key, rec in hot:
                found.setdefault(_QQI.unpack(raw_key), rec)
            return [decode_metric(found[k]) for k in sorted(found)[:limit]]

        return self._reads.read(run)

    def _units(
        self, files: list[ColdFile], column: str, lo: int | None, hi: int | None, *, newest_first: bool
    ) -> list[tuple[ColdFile, int, int, int]]:
        """(file, row group, min time, max time) of every row group that may hold times in
        ``[lo, hi)``, best first, so a limited query can stop early."""
        units = [
            (f, rg, t_min, t_max)
            for f in files
            for rg, t_min, t_max in self._cold.row_group_times(f, column)
            if (lo is None or t_max >= lo) and (hi is None or t_min < hi)
        ]
        if newest_first:
            units.sort(key=lambda u: u[3], reverse=True)
        else:
            units.sort(key=lambda u: u[2])
        return units

    def _matching_series(
        self, txn: Any, name: str, service: str | None, want: list[tuple[str, Any]] | None
    ) -> list[bytes]:
        """Series ids of ``name`` matching the filters; see :func:`tael._query.aggregate.matching_series`."""
        return aggregate.matching_series(self._hot, txn, name, service, want)

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
        """Matching series merged into one bucket per step; see :func:`tael._query.aggregate.aggregate_metrics`."""
        return aggregate.aggregate_metrics(
            self._reads, name, service=service, attributes=attributes, start=start, end=end, step=step
        )

    def list_services(self) -> list[ServiceInfo]:
        """Every service with spans in the store; see :func:`tael._query.catalog.list_services`."""
        return catalog.list_services(self._reads)

    def stats(self) -> StoreStats:
        """Record counts per signal and bytes on disk; see :func:`tael._query.catalog.stats`."""
        return catalog.stats(self._reads, self._facts)

    def _facts(self) -> catalog.StoreFacts:
        """What ``stats`` reports from this Store's own parts (WAL, pipeline, indexer, replication)."""
        return catalog.StoreFacts(
            wal_segments=self._wal.segment_count
            if self._wal is not None
            else len(list((self.path / "wal").glob("*.wal"))),
            applied_lsn=self._pipeline.applied_lsn if self._pipeline is not None else self._hot.applied_lsn(),
            indexed_lsn=self._indexer.committed_lsn if self._indexer is not None else self._hot.indexed_lsn(),
            replication=self.replication_status(),
        )

    # ------------------------------------------------------------ analytics

    def summary(self, *, last_s: float = 3600, service: str | None = None, now: Any = None) -> SummaryReport:
        """The window ``[now - last_s, now)`` at a glance; see :func:`tael._query.analytics.summary`."""
        return analytics.summary(self._reads, last_s=last_s, service=service, now=now)

    def anomalies(
        self, *, current_s: float = 300, baseline_s: float = 3600, service: str | None = None, now: Any = None
    ) -> AnomalyReport:
        """Services whose error rate or p95 latency rose; see :func:`tael._query.analytics.anomalies`."""
        return analytics.anomalies(self._reads, current_s=current_s, baseline_s=baseline_s, service=service, now=now)

    def correlate(self, trace_id: str) -> CorrelateReport | None:
        """A trace with its logs and its services' metric points; see :func:`tael._query.analytics.correlate`."""
        return analytics.correlate(
            trace_id,
            margin_s=self.settings.correlate_margin_s,
            get_trace=self.get_trace,
            query_logs=self.query_logs,
            query_metrics=self.query_metrics,
        )

    def add_comment(self, trace_id: str, body: str, *, author: str, span_id: str | None = None) -> Comment:
        """Attach a note to a trace (or one of its spans): durable through the WAL like
        any write, kept until ``Settings.retention_comments_days``, whatever happens to
        the trace's spans. The trace need not be stored (yet)."""
        row = _codec.encode_comment(trace_id, body, author, span_id, time.time_ns())
        self._insert(RecordType.COMMENTS, [row])
        return _codec.decode_comment(_codec.unpackb(row[3]))

    def comments(self, trace_id: str) -> list[Comment]:
        """The comments on a trace, oldest first; see :func:`tael._query.catalog.comments`."""
        return catalog.comments(self._reads, trace_id)

    def list_operations(self, service: str) -> list[str]:
        """Span names of a service, sorted; see :func:`tael._query.catalog.list_operations`."""
        return catalog.list_operations(self._reads, service)

    def list_attribute_keys(self, signal: str, *, service: str | None = None) -> list[str]:
        """Attribute keys of recent records of a signal; see :func:`tael._query.catalog.list_attribute_keys`."""
        return catalog.list_attribute_keys(self._reads, signal, service=service)

    def list_attribute_values(
        self, signal: str, key: str, *, service: str | None = None, limit: int = 100
    ) -> list[Any]:
        """Values of one attribute key, most frequent first; see :func:`tael._query.catalog.list_attribute_values`."""
        return catalog.list_attribute_values(self._reads, signal, key, service=service, limit=limit)

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
        """One row per trace with a matching span; see :func:`tael._query.analytics.trace_summaries`."""
        return analytics.trace_summaries(
            self.query_traces,
            self.get_trace,
            service=service,
            name=name,
            status=status,
            kind=kind,
            min_duration_ms=min_duration_ms,
            max_duration_ms=max_duration_ms,
            attributes=attributes,
            start=start,
            end=end,
            limit=limit,
            text=text,
            order=order,
        )

    # ------------------------------------------------------------ SQL

    def sql(self, query: str) -> Any:
        """Run a DuckDB SQL query over the hot and cold tiers; see :func:`tael._query.sql.run_sql`."""
        return sql.run_sql(self._reads, query)

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


def _converted(table: Any, convert: Callable[[Any], list[Any]], keep: Callable[[Any], bool], limit: int) -> list[Any]:
    """The first ``limit`` rows of a sorted table that pass ``keep``, converting to
    Python in slices so a broad query does not materialise a whole partition."""
    out: list[Any] = []
    offset, size = 0, max(64, limit)
    while offset < table.num_rows and len(out) < limit:
        for item in convert(table.slice(offset, size)):
            if keep(item):
                out.append(item)
                if len(out) >= limit:
                    break
        offset += size
        size *= 4
    return out


def _enough(times: list[int], page_last: int, limit: int, desc: bool) -> bool:
    """Whether ``limit`` results are held and no later index hit can displace them: the
    page's last time comes after the ``limit``-th best held (older when newest first)."""
    if len(times) < limit:
        return False
    times.sort(reverse=desc)
    return page_last < times[limit - 1] if desc else page_last > times[limit - 1]


class _TopK:
    """Tracks the ``limit``-th best time seen so far, to stop reading cold files
    that cannot contribute (files are visited best-first)."""

    def __init__(self, limit: int, *, newest_first: bool) -> None:
        self.limit = limit
        self.newest_first = newest_first
        self.times: list[int] = []

    def add(self, t: int) -> None:
        self.times.append(t)

    def full_before(self, bound: int) -> bool:
        """Whether a file whose best time is ``bound`` cannot beat what is already held."""
        if len(self.times) < self.limit:
            return False
        self.times.sort(reverse=self.newest_first)
        del self.times[self.limit :]
        kth = self.times[-1]
        return bound < kth if self.newest_first else bound > kth


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
