"""The write side of an open store: the WAL, the commit pipeline and its followers.

``Ingest`` is what a writable (or standby) ``Store`` has and a read-only one does
not: the WAL, the commit pipeline, the followers hanging off it (the full-text
indexer and the shippers, built before the pipeline and handed to it), the
store's replication :class:`~tael._replication.node.Node` and, on a standby with
``Settings.standby_listen``, its replication endpoint. Opening it recovers
(tael/_recovery.py: replays the WAL, rebuilds a missing index); closing it stops
the parts in the order that loses nothing. It never sees the Store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from . import _recovery
from ._blobs import BlobStore, Payloads
from ._block import Block
from ._cold import ColdTier
from ._commit import CommitPipeline, IndexFollower
from ._hot import HotTier
from ._hotblocks import TIME
from ._record import encode_frame
from ._replication.http import Endpoint
from ._replication.identity import STANDBY, Identity
from ._replication.leader import Shippers
from ._replication.node import Node
from ._search import Indexer, TextIndex
from ._settings import Settings
from ._wal import RecordType, Wal
from ._words import plural

log = logging.getLogger(__name__)
DAY_NS = 86_400 * 10**9


NOUNS = {"spans": "span", "logs": "log record", "metrics": "metric point"}


class PastRetention:
    """Counts acknowledged records that were already past their signal's retention when
    written (a replay of old data, a wrong clock, the README's 2023 example): they are
    stored, and the next retention pass drops them. Counted per signal (``counts``, served
    as ``tael_records_past_retention_total``) and logged at WARNING, at most once a minute
    per signal, so a write that will vanish is never silent."""

    LOG_EVERY_S = 60.0

    def __init__(self, settings: Settings) -> None:
        self.days = {
            "spans": settings.retention_spans_days,
            "logs": settings.retention_logs_days,
            "metrics": settings.retention_metrics_days,
        }
        self.counts = dict.fromkeys(self.days, 0)
        self._unlogged = dict.fromkeys(self.days, 0)
        self._logged_at = dict.fromkeys(self.days, -self.LOG_EVERY_S)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Log what was counted since the last line (a burst's tail is not left to /metrics alone)."""
        with self._lock:
            pending = {k: n for k, n in self._unlogged.items() if n}
            self._unlogged = dict.fromkeys(self.days, 0)
        for signal, n in pending.items():
            self._warn(signal, n)

    def count(self, block: Block) -> None:
        signal = block.signal
        cutoff = time.time_ns() - int(self.days[signal] * DAY_NS)
        times = block.column(TIME[signal])
        low = pc.min(times).as_py()
        if low is None or low >= cutoff:
            return
        n = int(pc.sum(pc.less(times, cutoff)).as_py() or 0)
        now = time.monotonic()
        with self._lock:
            self.counts[signal] += n
            self._unlogged[signal] += n
            if now - self._logged_at[signal] < self.LOG_EVERY_S:
                return
            n, self._unlogged[signal], self._logged_at[signal] = self._unlogged[signal], 0, now
        self._warn(signal, n)

    def _warn(self, signal: str, n: int) -> None:
        log.warning(
            "accepted %s already past retention (%g days, Settings.retention_%s_days): the next retention "
            "pass drops them (tael_records_past_retention_total counts them)",
            plural(n, NOUNS[signal]),
            self.days[signal],
            signal,
        )


class Ingest:
    """Opens the write side of the store at ``path`` (its hot tier, cold tier and
    identity already open), recovering first; closes what it opened if that fails.
    ``check_closed`` raises StoreClosedError once the store is closed."""

    def __init__(
        self,
        *,
        path: Path,
        settings: Settings,
        hot: HotTier,
        cold: ColdTier,
        blobs: BlobStore,
        payloads: Payloads,
        identity: Identity,
        ship_options: dict[str, Any],
        check_closed: Callable[[], None],
    ) -> None:
        s = self.settings = settings
        _recovery.sweep_blob_orphans(hot, blobs)
        wal = Wal(
            path / "wal",
            segment_bytes=s.wal_segment_bytes,
            max_record_bytes=s.wal_max_record_bytes,
            fsync=s.durability == "fsync",
        )
        index: TextIndex | None = None
        indexer: Indexer | None = None
        shippers: Shippers | None = None
        pipeline: CommitPipeline | None = None
        endpoint: Endpoint | None = None
        try:
            index, self.replayed = _recovery.recover(path, s, wal, hot, cold, blobs, payloads)
            # the followers, complete before the first commit: nothing past the hot tier's
            # applied LSN is applied or durable yet
            start = hot.applied_lsn()
            indexer = Indexer(
                index,
                payloads,
                committed_lsn=start,
                interval_s=s.index_commit_interval_s,
                max_queued_records=s.max_unapplied_records,
                record_lsn=hot.set_indexed_lsn,
                reread=_recovery.wal_reader(path, wal, s, payloads),
            )
            shippers = Shippers(s, ship_options, wal_dir=wal.dir, hot=hot, identity=identity, durable_lsn=start)
            pipeline = CommitPipeline(
                wal,
                hot,
                [IndexFollower(indexer), shippers],
                max_unapplied_records=s.max_unapplied_records,
                gather_s=s.apply_gather_ms / 1000,
            )
            node = Node(path, s, hot, payloads, identity, check_closed, pipeline=pipeline, shippers=shippers)
            pipeline.checkpoint()
            if identity.role == STANDBY and s.standby_listen is not None:
                endpoint = Endpoint(node, s.standby_listen)
        except BaseException:
            if endpoint is not None:
                endpoint.close()
            if shippers is not None:
                shippers.close(save=False)
            if pipeline is not None:
                pipeline.close()
            stopped = indexer.close() if indexer is not None else True
            if index is not None and stopped:
                index.close()
            wal.close()
            raise
        self.wal, self.index, self.indexer, self.shippers = wal, index, indexer, shippers
        self.pipeline, self.node, self.endpoint = pipeline, node, endpoint
        self.late = PastRetention(s)
        self._tiers = (hot, cold, blobs, payloads)

    def commit(self, rtype: RecordType, rows: Any) -> int:
        """Make a batch of encoded rows durable (framed here: ValidationError when the
        frame is too large) and queue it for the hot tier; returns its size."""
        if not rows:
            return 0
        self.pipeline.commit(rtype, rows, encode_frame(rtype, rows, self.settings))
        if isinstance(rows, Block):
            self.late.count(rows)
        return len(rows)

    def flush(self) -> None:
        """fsync the WAL, wait until every acknowledged write is applied, commit the index."""
        self.pipeline.sync()
        self.pipeline.wait_applied()
        self.indexer.flush(self.pipeline.applied_lsn)

    def rebuild_index(self, stop: threading.Event) -> int:
        """Rebuild the full-text index from both tiers while writes go on (see
        :meth:`Indexer.rebuild`); the caller keeps records from moving between the tiers.
        Setting ``stop`` (the store closing) ends it early, keeping the old index."""
        hot, cold, blobs, payloads = self._tiers
        return self.indexer.rebuild(lambda index: _recovery.index_tiers(hot, cold, index, blobs, payloads, stop))

    def checkpoint(self) -> int:
        """Commit the index, then delete the WAL segments every follower has taken in."""
        self.pipeline.wait_applied()
        self.indexer.flush(self.pipeline.applied_lsn)
        return self.pipeline.checkpoint()

    def close(self) -> None:
        """Take no more shipments, finish in-flight commits and drain the applier, save
        the standbys' positions and stop shipping, commit the index, close the WAL."""
        if self.endpoint is not None:
            self.endpoint.close()
        self.pipeline.close()
        self.late.close()
        self.shippers.close()
        if self.indexer.close():  # commits what the applier handed it
            self.index.close()
        with self.pipeline.io:
            self.wal.close()
