"""``tael.Store``: opens a data directory, routes each call to the part that owns it, closes them.

The Store holds no storage logic of its own. It opens the tiers and, for a writer
or standby, the write side (tael/_ingest.py: WAL, recovery, commit pipeline and its
followers); writes go through the record codec (tael/_record.py) to the pipeline,
maintenance to the Compactor (tael/_compactor.py), replication to the store's Node
(tael/_replication/node.py) and reads to the query package (tael/_query/).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Unpack

import pyarrow as pa

from . import _codec
from ._blobs import BlobStore, Payloads
from ._check import check_tiers
from ._codec import to_ns
from ._cold import open_cold_tier
from ._compactor import Compactor
from ._datasettings import resolve as resolve_settings
from ._errors import ReadOnlyError, StorageError, StoreClosedError
from ._fsutil import DirLock
from ._hot import HotTier
from ._ingest import Ingest
from ._models import (
    AnomalyReport,
    Comment,
    CompactionReport,
    CorrelateReport,
    DependencyLink,
    LogRecord,
    MetricBucket,
    MetricPoint,
    ReplicationStatus,
    RetentionReport,
    ServiceInfo,
    Span,
    StoreStats,
    SummaryReport,
    TraceOverview,
)
from ._query import aggregate, analytics, catalog, sql
from ._query import logs as log_reads
from ._query import metrics as metric_reads
from ._query import traces as trace_reads
from ._query.context import ReadContext
from ._query.filters import LogArgs, LogFilter, MetricArgs, MetricFilter, SpanArgs, SpanFilter, chosen
from ._record import as_batch, checked_block, encode_rows
from ._replication.identity import open_identity, read_identity
from ._replication.leader import client_options
from ._replication.node import Node
from ._settings import Settings
from ._wal import RecordType
from ._writer import BackgroundWriter

log = logging.getLogger(__name__)


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
        self.settings = s = settings if settings is not None else Settings()
        self.read_only = read_only
        self._closed = False
        self._close_lock = threading.Lock()
        self._lock: DirLock | None = None
        self._ingest: Ingest | None = None
        """The write side (WAL, commit pipeline, indexer, shippers); None when read-only."""
        self._writers: weakref.WeakSet[BackgroundWriter] = weakref.WeakSet()
        if read_only and standby:
            raise ValueError("a store opens either read_only=True or standby=True, not both")
        if read_only and not (self.path / "hot" / "data.mdb").exists():
            raise StorageError(f"{self.path} is not a tael data directory (no hot/data.mdb)")
        if not read_only:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = DirLock(self.path)
            self._lock.acquire()
        hot: HotTier | None = None
        try:
            self.settings = s = resolve_settings(self.path, s, writable=not read_only)
            ship_options = client_options(s) if s.replicas and not read_only else {}
            self._cold = open_cold_tier(self.path, s)
            self._blobs = BlobStore(self.path / "blobs", level=s.blob_compression_level)
            self._payloads = Payloads(s.payload_attributes, s.payload_blob_min_bytes)
            if not read_only:
                (self.path / "hot").mkdir(exist_ok=True)
            hot = self._hot = HotTier(
                self.path / "hot",
                map_size=s.hot_map_size_bytes,
                sync=s.hot_sync and not read_only,
                read_only=read_only,
                blobs=self._blobs,
                payloads=self._payloads,
            )
            self._compactor = Compactor(hot, self._cold, s)
            if read_only:
                identity = read_identity(hot)
            else:
                identity = open_identity(hot, self._cold, self.path, s, standby)
                self._compactor.sweep_orphans()
                self._compactor.migrate_files()  # cold files of an older format, rewritten
                self._ingest = Ingest(
                    path=self.path,
                    settings=s,
                    hot=hot,
                    cold=self._cold,
                    blobs=self._blobs,
                    payloads=self._payloads,
                    identity=identity,
                    ship_options=ship_options,
                    check_closed=self._check_closed,
                )
        except BaseException:
            if hot is not None:
                hot.close()
            if self._lock is not None:
                self._lock.release()
            raise
        ingest = self._ingest
        self.replayed_records = ingest.replayed if ingest is not None else 0
        """How many WAL records the open replayed into the hot tier."""
        self._replication = (
            ingest.node if ingest is not None else Node(self.path, s, hot, self._payloads, identity, self._check_closed)
        )
        self._reads = ReadContext(
            path=self.path,
            settings=s,
            hot=hot,
            cold=self._cold,
            blobs=self._blobs,
            payloads=self._payloads,
            index=ingest.index if ingest is not None else None,
            read_only=read_only,
            check_open=self._check_open,
        )

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close background writers, finish in-flight writes, sync, release the directory. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            for writer in list(self._writers):
                writer.close()  # flush what callers handed to background writers
            # stop a compaction, merge or retention pass in another thread (a Maintenance
            # loop) at its next safe point and wait for it: the LMDB environment closes below
            self._compactor.closing.set()
            self._compactor.lock.acquire()
            self._compactor.closed = self._closed = True
            try:
                if self._ingest is not None:
                    self._ingest.close()
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
    def closing(self) -> bool:
        """Whether ``close()`` has begun: a maintenance pass in progress stops at its next safe point."""
        return self._compactor.closing.is_set()

    @property
    def fault(self) -> str | None:
        """Why this store refuses every write and read until it is closed and repaired (its applier met a
        durable WAL record it can never apply; the message names segment and offset), or None (``/health/ready``)."""
        failed = self._ingest.pipeline.failed if self._ingest is not None else None
        return None if failed is None else str(failed)

    def _check_closed(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")

    def _check_open(self) -> None:
        """Refuse use after close; for a writer, wait until every acknowledged write is readable."""
        self._check_closed()
        if self._ingest is not None:
            self._ingest.pipeline.wait_applied()

    def _local(self) -> Ingest:
        """The write side of a writer or standby, for flushing and maintenance (never client writes)."""
        self._check_closed()
        if self._ingest is None:
            raise ReadOnlyError(f"the store at {self.path} was opened read_only=True")
        return self._ingest

    def _writable(self) -> Ingest:
        ingest = self._local()
        self._replication.check_writable()
        return ingest

    def flush(self) -> None:
        """Make every acknowledged write durable on disk (fsyncs the WAL under durability="os"), visible
        to every reader of this store, and searchable (commits the full-text index)."""
        self._local().flush()

    def checkpoint(self) -> int:
        """Commit the full-text index, sync the hot tier, delete WAL segments both have taken in; returns how many."""
        return self._local().checkpoint()

    @property
    def cold_location(self) -> str:
        """Where the cold files are: a local directory, or a URI (``s3://bucket/prefix``)."""
        return self._cold.location

    @property
    def records_past_retention(self) -> dict[str, int]:
        """Per signal, records accepted already past retention (the next pass drops them); {} when read-only."""
        return dict(self._ingest.late.counts) if self._ingest is not None else {}

    @property
    def background_writers(self) -> list[BackgroundWriter]:
        """The open background writers of this store (``writer()``), for their counters."""
        return list(self._writers)

    def check(self) -> dict[str, Any]:
        """Verify the tiers without changing anything (``tael check``; tael/_check.py says what and how)."""
        self._check_open()
        return check_tiers(self._reads, self.stats)

    # ------------------------------------------------------------ replication

    @property
    def replication(self) -> Node:
        """This store as a member of a replicated set (what ``/replication/*`` serves)."""
        return self._replication

    @property
    def standby(self) -> bool:
        """Whether this store is a standby (takes writes only from its leader)."""
        return self._replication.standby

    def promote(self) -> None:
        """Make this standby a writable leader; see :meth:`Node.promote` (tael/_replication/node.py)."""
        self._replication.promote()

    def set_leader_url(self, url: str | None) -> None:
        """Record where this standby's leader is (shown in errors, status and metrics)."""
        self._replication.set_leader_url(url)

    def replication_status(self) -> ReplicationStatus:
        """Role, epoch, and lag; see :meth:`Node.replication_status` (tael/_replication/node.py)."""
        return self._replication.replication_status()

    # ------------------------------------------------------------ writes

    def insert_spans(self, spans: Sequence[Span] | pa.Table | pa.RecordBatch) -> int:
        """Durably store a batch of spans, or a table of them (``tael.SPAN_SCHEMA``), all or nothing; returns its
        size. A span already stored under the same (trace_id, span_id) is left as it was (retries do not duplicate)."""
        return self._insert(RecordType.SPANS, encode_rows(RecordType.SPANS, as_batch(spans), self._payloads))

    def insert_logs(self, logs: Sequence[LogRecord] | pa.Table | pa.RecordBatch) -> int:
        """Durably store a batch of log records, or a table (``tael.LOG_SCHEMA``), all or nothing; returns its size."""
        return self._insert(RecordType.LOGS, encode_rows(RecordType.LOGS, as_batch(logs), self._payloads))

    def insert_metrics(self, points: Sequence[MetricPoint] | pa.Table | pa.RecordBatch) -> int:
        """Durably store a batch of points, or a table (``tael.METRIC_SCHEMA``), all or nothing; returns its size."""
        return self._insert(RecordType.METRICS, encode_rows(RecordType.METRICS, as_batch(points), self._payloads))

    def insert_checked(self, signal: str, batch: pa.RecordBatch) -> int:
        """Internal: store a column batch of records tael's OTLP decoder checked one by one (not checked again)."""
        return self._insert(*checked_block(signal, batch))

    def _insert(self, rtype: RecordType, rows: Any) -> int:
        """Commit encoded rows (inserts and background writers): the store is checked
        first (closed, read-only, standby), then the frame's size."""
        return self._writable().commit(rtype, rows)

    def writer(
        self, *, max_queue: int | None = None, flush_interval_s: float | None = None, on_full: str = "block"
    ) -> BackgroundWriter:
        """A background batching writer for many small writes; see :class:`BackgroundWriter`."""
        self._writable()
        writer = BackgroundWriter(
            self._insert,
            self._payloads,
            self.settings,
            name=str(self.path),
            max_queue=max_queue,
            flush_interval_s=flush_interval_s,
            on_full=on_full,
        )
        self._writers.add(writer)
        return writer

    # ------------------------------------------------------------ reads
    #
    # Each read is planned, run over one snapshot of both tiers and merged by the query package
    # (tael/_query); the full docstrings are on its functions and on the filter classes.

    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of a trace, hot and cold, ascending start_ns; [] for an unknown id."""
        return trace_reads.get_trace(self._reads, trace_id)

    def query_traces(
        self, where: SpanFilter | None = None, /, *, limit: int = 100, order: str = "desc", **filters: Unpack[SpanArgs]
    ) -> list[Span]:
        """Spans matching a SpanFilter or its keyword filters (not both); see ``tael._query.traces.query``."""
        return trace_reads.query(self._reads, chosen(SpanFilter, where, limit, order, **filters), limit, order)

    def query_logs(
        self, where: LogFilter | None = None, /, *, limit: int = 100, order: str = "desc", **filters: Unpack[LogArgs]
    ) -> list[LogRecord]:
        """Logs matching a LogFilter or its keyword filters (not both); see ``tael._query.logs.query``."""
        return log_reads.query(self._reads, chosen(LogFilter, where, limit, order, **filters), limit, order)

    def query_metrics(
        self, where: MetricFilter | None = None, /, *, limit: int = 10_000, **filters: Unpack[MetricArgs]
    ) -> list[MetricPoint]:
        """Points matching a MetricFilter or its keyword filters (not both); see ``tael._query.metrics.query``."""
        return metric_reads.query(self._reads, chosen(MetricFilter, where, limit, None, **filters), limit)

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
        ingest = self._ingest
        return catalog.StoreFacts(
            wal_segments=ingest.wal.segment_count
            if ingest is not None
            else len(list((self.path / "wal").glob("*.wal"))),
            applied_lsn=ingest.pipeline.applied_lsn if ingest is not None else self._hot.applied_lsn(),
            indexed_lsn=ingest.indexer.committed_lsn if ingest is not None else self._hot.indexed_lsn(),
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
        _trace, _created, _id, packed = row
        return _codec.decode_comment(_codec.unpackb(packed))

    def comments(self, trace_id: str) -> list[Comment]:
        """The comments on a trace, oldest first; see :func:`tael._query.catalog.comments`."""
        return catalog.comments(self._reads, trace_id)

    def list_operations(self, service: str) -> list[str]:
        """Span names of a service, sorted; see :func:`tael._query.catalog.list_operations`."""
        return catalog.list_operations(self._reads, service)

    def list_operation_kinds(self, service: str, *, span_kind: str | None = None) -> list[tuple[str, str]]:
        """(span name, span kind) pairs of a service; see :func:`tael._query.catalog.operation_kinds`."""
        return catalog.operation_kinds(self._reads, service, span_kind)

    def dependencies(self, start: Any, end: Any) -> list[DependencyLink]:
        """The service graph of ``[start, end)``; see :func:`tael._query.analytics.dependencies`."""
        return analytics.dependencies(self._reads, start, end)

    def list_attribute_keys(self, signal: str, *, service: str | None = None) -> list[str]:
        """Attribute keys of recent records of a signal; see :func:`tael._query.catalog.list_attribute_keys`."""
        return catalog.list_attribute_keys(self._reads, signal, service=service)

    def list_attribute_values(
        self, signal: str, key: str, *, service: str | None = None, limit: int = 100
    ) -> list[Any]:
        """Values of one attribute key, most frequent first; see :func:`tael._query.catalog.list_attribute_values`."""
        return catalog.list_attribute_values(self._reads, signal, key, service=service, limit=limit)

    def trace_summaries(
        self, where: SpanFilter | None = None, /, *, limit: int = 20, order: str = "desc", **filters: Unpack[SpanArgs]
    ) -> list[TraceOverview]:
        """One row per trace with a matching span; see :func:`tael._query.analytics.trace_summaries`."""
        where = chosen(SpanFilter, where, limit, order, **filters)
        return analytics.trace_summaries(partial(self.query_traces, where, order=order), self.get_trace, limit=limit)

    # ------------------------------------------------------------ SQL

    def sql(self, query: str) -> Any:
        """Run a DuckDB SQL query over the hot and cold tiers; see :func:`tael._query.sql.run_sql`."""
        return sql.run_sql(self._reads, query)

    # ------------------------------------------------------------ tiers

    def compact(self, before: Any, *, stop: threading.Event | None = None) -> CompactionReport:
        """Move hot records with time < ``before`` (int ns, aware datetime) to the cold tier (Compactor.compact)."""
        ingest = self._local()
        before_ns = to_ns(before, "before")
        if before_ns is None:
            raise ValueError("compact needs a time: before=<int ns or aware datetime>")
        ingest.pipeline.wait_applied()
        return self._compactor.compact(before_ns, stop)

    def merge_small_files(self, *, stop: threading.Event | None = None) -> int:
        """Merge every cold partition's small files; see :meth:`Compactor.merge_small_files`."""
        self._local()
        return self._compactor.merge_small_files(stop=stop)

    def enforce_retention(
        self, now: Any = None, *, stop: threading.Event | None = None, dry_run: bool = False
    ) -> RetentionReport:
        """Drop what is past retention at ``now`` (default: now; :meth:`Compactor.enforce_retention`);
        ``dry_run``: drop nothing, report what would go (also read-only: :meth:`Compactor.retention_plan`)."""
        now_ns = to_ns(now, "now") if now is not None else time.time_ns()
        assert now_ns is not None
        if dry_run:
            self._check_open()
            return self._compactor.retention_plan(now_ns)
        ingest = self._local()
        ingest.pipeline.wait_applied()
        return self._compactor.enforce_retention(now_ns, stop, ingest.index)

    def rebuild_index(self) -> int:
        """Rebuild the full-text index from the tiers, taking writes meanwhile (Indexer.rebuild); maintenance waits."""
        ingest = self._local()
        with self._compactor.lock:
            self._compactor.check_open()
            return ingest.rebuild_index(self._compactor.closing)

    def collect_blobs(self) -> int:
        """Delete payload blobs no live record refers to; see :meth:`Compactor.collect_blobs`."""
        self._local()
        return self._compactor.collect_blobs()
