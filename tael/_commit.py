"""Group commit: writer threads share WAL fsyncs; one applier thread feeds LMDB.

Stage 1 runs in the writers' threads: whichever waiting thread becomes the
leader appends every queued frame to the WAL with one write and one fsync, and
the insert calls return (acknowledged) once that fsync is done. Stage 2 is a
single background thread that applies durable batches to the hot tier in LSN
order, many batches per LMDB transaction, so LMDB's own sync is amortised over
large groups. When fewer than ``GATHER_ROWS`` records wait and nothing waits
for them, the applier waits up to ``Settings.apply_gather_ms`` for more first:
sequential small inserts then share blocks (``tael._hot.COALESCE_ROWS``) and
transactions, instead of paying a block's and a commit's fixed costs each.
Reads call ``wait_applied()`` first, which waits until every batch
acknowledged before the read began is applied (and cuts a gathering wait
short): a caller always reads its own writes. The number of acknowledged-but-unapplied records is bounded
(``Settings.max_unapplied_records``); past it, inserts wait for the applier.

What else consumes the WAL hangs off the pipeline as a :class:`Follower`, given
complete at construction (Prometheus' WAL watchers, ``WriteTo``): the full-text
indexer (:class:`IndexFollower`) takes applied batches, the shippers of a leader
(``tael._replication.leader.Shippers``) take durable ones and make inserts wait
for standbys. Each says how far back it still needs the WAL; segments before the
lowest of those positions (and the applied LSN) are deleted at checkpoints.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from ._errors import CorruptionError, StorageError, StoreClosedError
from ._hot import HotTier, UnappliableRecordError
from ._layout import Group
from ._search import Indexer
from ._wal import Wal

log = logging.getLogger(__name__)

_RETRY_S = 1.0  # pause between attempts while the hot tier refuses writes
_APPLY_GROUP_RECORDS = 50_000  # most records the applier puts in one LMDB transaction
GATHER_ROWS = 4096  # the applier waits for more only while fewer records than this wait


class Follower:
    """A consumer of the WAL behind the commit pipeline. It is told of durable and of
    applied batches, may make an insert wait before it returns, and says how far back
    it still needs the WAL. Every hook does nothing by default; a follower overrides
    what it needs. Hooks run in the pipeline's threads: they must be quick."""

    def durable(self, end_lsn: int) -> None:
        """Every batch before ``end_lsn`` is durable in the WAL (called by the thread
        that wrote it, before the inserts it holds return)."""

    def wait(self, end_lsn: int) -> None:
        """Called by an insert whose batch ends at ``end_lsn`` once it is durable,
        before the insert returns: a follower that must hold it first waits here."""

    def applied(self, batches: Sequence[Group]) -> None:
        """Batches (record type, rows, lsn, end_lsn) the applier has applied to the hot
        tier, in LSN order, before they count as applied (a read or flush that waits
        for them waits for this call too)."""

    def retain_from(self, durable_lsn: int) -> int:
        """The oldest WAL position this follower still needs (``durable_lsn``: none)."""
        return durable_lsn

    def checkpoint(self) -> None:
        """Called before a checkpoint deletes WAL segments: persist whatever keeps this
        follower's place across a restart."""


class IndexFollower(Follower):
    """The full-text indexer as a follower: it indexes applied batches on its own
    thread and needs the WAL from its last commit on (after a failed index writer it
    reads the batches since then back from the WAL)."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    def applied(self, batches: Sequence[Group]) -> None:
        self.indexer.submit(batches)

    def retain_from(self, durable_lsn: int) -> int:
        return self.indexer.committed_lsn


def _overrides(follower: Follower, hook: str) -> bool:
    """Whether ``follower``'s ``hook`` does something (Follower's own does nothing)."""
    return getattr(type(follower), hook) is not getattr(Follower, hook)


class _Ticket:
    __slots__ = ("end", "error", "frame", "lsn", "n", "rows", "rtype")

    def __init__(self, rtype: int, rows: Sequence[Any], frame: bytes) -> None:
        self.rtype = rtype
        self.rows = rows
        self.n = len(rows)
        self.frame = frame
        self.lsn = self.end = -1
        self.error: BaseException | None = None


class CommitPipeline:
    """The WAL writers (group commit), the hot-tier applier, and the followers."""

    def __init__(
        self,
        wal: Wal,
        hot: HotTier,
        followers: Sequence[Follower],
        *,
        max_unapplied_records: int,
        gather_s: float = 0.0,
    ) -> None:
        self.wal = wal
        self.hot = hot
        self.max_unapplied = max_unapplied_records
        self.gather_s = gather_s
        self._waiting = 0  # readers and flushes waiting for the applier
        self.io = threading.Lock()  # serialises every use of the Wal object
        self._wal_cv = threading.Condition()
        self._wal_queue: list[_Ticket] = []
        self._wal_busy = False
        self._inflight = 0
        self._closed = False
        self._apply_cv = threading.Condition()
        self._apply_queue: deque[_Ticket] = deque()
        self._unapplied = 0
        self._stopping = False
        self.apply_error: BaseException | None = None
        self.failed: CorruptionError | None = None
        """Set when a durable record turned out to be unappliable: the applier has
        stopped before it and every commit and read is refused (see _stop_at)."""
        self._apply_attempts = 0  # applier transactions begun
        self._apply_failed = 0  # the number of the last one that failed
        self._apply_retry_for = 0  # a waiter wants an attempt numbered at least this, without the pause
        self.applied_lsn = self.durable_lsn = hot.applied_lsn()
        self.fsync_groups = 0
        self.apply_groups = 0
        self.followers = tuple(followers)
        # the hooks that do something, bound once: a commit calls no no-op hook
        self._on_wait = [f.wait for f in self.followers if _overrides(f, "wait")]
        self._on_durable = [f.durable for f in self.followers if _overrides(f, "durable")]
        self._on_applied = [f.applied for f in self.followers if _overrides(f, "applied")]
        self._applier = threading.Thread(target=self._apply_loop, name=f"tael-apply:{hot.path}", daemon=True)
        self._applier.start()

    # ------------------------------------------------------------ writers

    def commit(self, rtype: int, rows: Sequence[Any], frame: bytes) -> tuple[int, int]:
        """Make one encoded batch durable in the WAL and queue it for the hot tier.

        Returns its (lsn, end_lsn) once fsynced (under durability="fsync")."""
        self._check_failed()
        with self._apply_cv:
            while self._unapplied >= self.max_unapplied and not self._stopping:
                if self.apply_error is not None:
                    raise StorageError(f"the hot tier is refusing writes: {self.apply_error}")
                self._apply_cv.wait(_RETRY_S)
        ticket = _Ticket(rtype, rows, frame)
        with self._wal_cv:
            if self._closed:
                raise StoreClosedError("the store is closed")
            self._inflight += 1
            self._wal_queue.append(ticket)
            try:
                while ticket.lsn < 0 and ticket.error is None:
                    if self._wal_busy:
                        self._wal_cv.wait()
                        continue
                    self._lead()
            finally:
                self._inflight -= 1
                if not self._inflight:
                    self._wal_cv.notify_all()
        if ticket.error is not None:
            raise ticket.error
        for wait in self._on_wait:
            wait(ticket.end)
        return ticket.lsn, ticket.end

    def commit_shipped(self, items: list[tuple[int, int, Sequence[Any], bytes]]) -> int:
        """Standby: make frames shipped by the leader durable in the WAL at the leader's
        LSNs and queue them for the hot tier, as ``commit`` does for local writes.
        ``items`` are (lsn, record type, rows, frame): the standby decoded and checked
        the rows before (tael._replication.node.Node.receive). Returns the WAL's end LSN."""
        self._check_failed()
        with self._apply_cv:
            while self._unapplied >= self.max_unapplied and not self._stopping:
                if self.apply_error is not None:
                    raise StorageError(f"the hot tier is refusing writes: {self.apply_error}")
                self._apply_cv.wait(_RETRY_S)
        with self._wal_cv:
            if self._closed:
                raise StoreClosedError("the store is closed")
            while self._wal_busy:
                self._wal_cv.wait()
            self._wal_busy = True
            self._inflight += 1
        try:
            start = self.durable_lsn  # everything before it is queued for the hot tier already
            with self.io:
                end = self.wal.append_at([(lsn, frame) for lsn, _t, _rows, frame in items])
            tickets = []
            for lsn, rtype, rows, frame in items:
                if lsn < start:
                    continue  # received before (a retried shipment)
                t = _Ticket(rtype, rows, b"")
                t.lsn, t.end = lsn, lsn + len(frame)
                tickets.append(t)
            if tickets:
                self.fsync_groups += 1
                with self._apply_cv:
                    for t in tickets:
                        self._unapplied += t.n
                    self._apply_queue.extend(tickets)
                    self.durable_lsn = end
                    self._apply_cv.notify_all()
            return end
        finally:
            with self._wal_cv:
                self._wal_busy = False
                self._inflight -= 1
                self._wal_cv.notify_all()

    def _check_failed(self) -> None:
        failed = self.failed
        if failed is not None:
            raise StorageError(f"the store refuses writes and reads: {failed}") from failed

    def _lead(self) -> None:
        """Called holding _wal_cv: write the whole queue as one group."""
        self._wal_busy = True
        group, self._wal_queue = self._wal_queue, []
        self._wal_cv.release()
        try:
            self._write(group)
        finally:
            self._wal_cv.acquire()
            self._wal_busy = False
            self._wal_cv.notify_all()

    def _write(self, group: list[_Ticket]) -> None:
        try:
            with self.io:
                positions = self.wal.append([t.frame for t in group])
        except Exception as exc:
            err = exc if isinstance(exc, StorageError) else StorageError(f"WAL append failed: {exc!r}")
            for t in group:
                t.error = err
            return
        self.fsync_groups += 1
        with self._apply_cv:
            for t, (lsn, end) in zip(group, positions, strict=True):
                t.frame = b""  # the WAL has it now
                t.lsn, t.end = lsn, end
                self._unapplied += t.n
            self._apply_queue.extend(group)
            end = self.durable_lsn = group[-1].end
            self._apply_cv.notify_all()
        for durable in self._on_durable:
            durable(end)

    # ------------------------------------------------------------ readers

    def wait_applied(self) -> None:
        """Wait until every batch acknowledged so far is visible in the hot tier.

        While the hot tier refuses writes (a full disk), the applier retries at once
        for a waiter, and this raises StorageError only if an attempt begun after the
        call fails: an error from before the space came back is not reported again."""
        with self._apply_cv:
            target = self.durable_lsn
            began = self._apply_attempts
            if self.applied_lsn < target:
                self._apply_retry_for = max(self._apply_retry_for, began + 1)
                self._apply_cv.notify_all()
            self._waiting += 1
            try:
                while self.applied_lsn < target:
                    self._check_failed()
                    if self.apply_error is not None and self._apply_failed > began:
                        raise StorageError(f"the hot tier is behind the WAL and refusing writes: {self.apply_error}")
                    if not self._applier.is_alive():
                        raise StorageError("the hot-tier applier has stopped")
                    self._apply_cv.wait(_RETRY_S)
            finally:
                self._waiting -= 1

    # ------------------------------------------------------------ applier

    def _apply_loop(self) -> None:
        while True:
            with self._apply_cv:
                while not self._apply_queue and not self._stopping:
                    self._apply_cv.wait()
                if not self._apply_queue:
                    return
                self._gather()
                group: list[_Ticket] = []
                count = 0
                while self._apply_queue and count < _APPLY_GROUP_RECORDS:
                    t = self._apply_queue.popleft()
                    group.append(t)
                    count += t.n
                self._apply_attempts += 1
                attempt = self._apply_attempts
            try:
                batches = [(t.rtype, t.rows, t.lsn, t.end) for t in group]
                self.hot.apply(batches)
            except UnappliableRecordError as exc:
                self._stop_at(group, exc)
                return
            except Exception as exc:
                log.error("hot tier apply failed (%d batches wait in the WAL; retrying): %s", len(group), exc)
                with self._apply_cv:
                    self._apply_queue.extendleft(reversed(group))
                    self.apply_error = exc
                    self._apply_failed = attempt
                    self._apply_cv.notify_all()
                    if self._stopping:
                        return  # unapplied batches are replayed from the WAL at the next open
                    if self._apply_retry_for <= attempt:  # no waiter asked for a retry since
                        self._apply_cv.wait(_RETRY_S)
                continue
            self._applied(group, batches, count)
            if self.wal.removable(self.retained_from()):
                try:
                    self.checkpoint()
                except OSError as exc:
                    log.error("WAL checkpoint failed (retried at the next one): %s", exc)

    def _gather(self) -> None:
        """Wait (``_apply_cv`` held between waits) up to ``gather_s`` for more batches while
        fewer than ``GATHER_ROWS`` records wait and no reader, flush or throttled insert
        waits for them."""
        if self.gather_s <= 0:
            return
        deadline = time.monotonic() + self.gather_s
        while (
            self._unapplied < GATHER_ROWS
            and self._unapplied < self.max_unapplied
            and not self._waiting
            and not self._stopping
            and self._apply_retry_for <= self._apply_attempts
        ):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._apply_cv.wait(left)

    def _applied(self, group: list[_Ticket], batches: list[Any], count: int) -> None:
        for applied in self._on_applied:
            applied(batches)  # before the batches count as applied: see Store.flush
        with self._apply_cv:
            self.applied_lsn = group[-1].end
            self._unapplied -= count
            self.apply_error = None
            self.apply_groups += 1
            self._apply_cv.notify_all()

    def _stop_at(self, group: list[_Ticket], exc: UnappliableRecordError) -> None:
        """A durable batch can never be applied (a bug, or a record an older version
        wrote: validation rules out both for new writes). Retrying would only let the
        store keep acknowledging writes it can never make readable, so: apply the
        batches before it, then stop the applier there and refuse every commit and
        read from now on, loudly. Everything acknowledged stays in the WAL; reopening
        names the record's segment and offset and ``tael repair`` moves it aside."""
        k = next((i for i, t in enumerate(group) if t.lsn == exc.lsn), 0)
        if k:
            before = [(t.rtype, t.rows, t.lsn, t.end) for t in group[:k]]
            try:
                self.hot.apply(before)
            except Exception as again:
                log.error("hot tier: applying the %d batches before an unappliable one failed: %s", k, again)
            else:
                self._applied(group[:k], before, sum(t.n for t in group[:k]))
        with self.io:
            error = self.wal.unappliable(exc.lsn, exc.cause)
        log.error("%s The store now refuses writes and reads: close it, then run `tael repair`.", error)
        with self._apply_cv:
            self.failed = error
            self.apply_error = error
            self._apply_cv.notify_all()

    # ------------------------------------------------------------ maintenance

    def sync(self) -> None:
        """fsync the WAL (for durability="os", where appends skip it)."""
        with self.io:
            self.wal.sync()

    def retained_from(self) -> int:
        """The WAL position before which nothing is needed any more: applied to the hot
        tier, and behind what every follower still needs (committed to the full-text
        index, acknowledged by the standbys)."""
        lsn = self.applied_lsn
        durable = self.durable_lsn
        for follower in self.followers:
            lsn = min(lsn, follower.retain_from(durable))
        return lsn

    def checkpoint(self) -> int:
        """Sync LMDB, then delete WAL segments that are fully applied and indexed;
        returns segments removed."""
        with self.io:
            done = self.retained_from()
            if not self.wal.removable(done):
                return 0
            for follower in self.followers:
                follower.checkpoint()
            self.hot.sync()
            return self.wal.remove_applied(done)

    def close(self) -> None:
        """Refuse new commits, let those in flight finish, drain the applier and stop it."""
        with self._wal_cv:
            self._closed = True
            while self._inflight:
                self._wal_cv.wait()
        with self._apply_cv:
            self._stopping = True
            self._apply_cv.notify_all()
        self._applier.join()
