"""Moving data between tiers: compaction, small-file merges, migration and retention.

The Compactor sits below ``Store`` (it takes the tiers, never the store); the
loop that schedules it is ``Maintenance`` in tael/_maintenance.py, above it.

Every change to the set of live cold files follows one protocol, which makes
it crash-safe and exactly-once:

1. write each new Parquet file durably (temp, fsync, rename, fsync dir);
2. in ONE LMDB write transaction, add the new files to the manifest, remove
   replaced ones, and delete the records they now hold from the hot tier;
3. sync LMDB, then unlink replaced files.

A crash before (2) commits leaves files the manifest does not name: orphans,
deleted when the store next opens, while the records are still hot. A crash
after (2) leaves the records cold and gone from the hot tier. Either way each
record is in exactly one tier. Readers take the manifest and the hot tier from
one LMDB snapshot, so they never see a record twice either.

Every operation can be interrupted (a ``stop`` event, or the store closing) at
a safe point: between steps, each a chunk of records, a merge group or a
retention partition, and within a step before anything of it is published.
An interrupted operation returns what it committed so far, marked
``interrupted``; the step it was in leaves nothing behind, and the next pass
carries on from there.

**Column-wise.** A compaction step takes its hot records as the hot tier's blocks
hold them (column batches: ``HotTier.old_blocks``, no record is decoded) and does
everything else with Arrow and numpy: the cold columns
(``tael._coldformat``), duplicate spans, the per-day split, the file order, the
rollups (``tael._rollup.rollup_tables``), the manifest entry's statistics, the
cold trace index and the blob references. Memory is bounded by a step
(``Settings.compaction_batch_records``) and a row group, never a day: files are
written row group by row group (``tael._cold.ColdWriter``), and a merge streams
its inputs a row group at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa

from . import _rollup
from ._block import BLOCK_SCHEMAS, EXTRA_FIELDS, Block
from ._cold import ColdFile, ColdTier, day_of, day_start_ns
from ._coldformat import (
    DAY_NS,
    FORMAT_VERSION,
    TIME_COLUMN,
    day_parts,
    file_order,
    first_copies,
    logs_table,
    metrics_table,
    span_keys,
    spans_table,
    upgrade,
)
from ._coldwrite import FileBuilder, NewFile, Ref, trace_refs
from ._errors import StorageError, StoreClosedError
from ._hot import SIGNAL_LOGS, SIGNAL_SPANS, HotTier
from ._models import CompactionReport, RetentionReport
from ._search import DOC_LOG, DOC_SPAN, TextIndex
from ._settings import Settings

log = logging.getLogger(__name__)

REF_FILE: Final = 2
_TRACE_SIGNAL = {"spans": SIGNAL_SPANS, "logs": SIGNAL_LOGS}
_KEYS: Final = {  # the columns a streamed chunk's file order needs (see _build_streamed)
    "spans": ("trace_id", "span_id", "start_ns"),
    "logs": ("time_ns", "wal_lsn", "batch_index"),
}


@dataclass(slots=True)
class _HotChunk:
    """One compaction step's hot records, column-wise: the rows of the blocks
    ``HotTier.old_blocks`` named, as one table in the block schema (logs and metric
    points with their ``wal_lsn`` and ``batch_index``), and those blocks for the eviction."""

    table: pa.Table | None
    """None for spans and logs, which are streamed from the blocks."""
    parts: list[tuple[bytes, Block, pa.Array | None]]
    count: int


def stop_event(stop: Any) -> threading.Event | None:
    """A caller's ``stop`` argument, checked: a threading.Event or None."""
    if stop is not None and not isinstance(stop, threading.Event):
        raise TypeError(f"stop must be a threading.Event or None, got {type(stop).__name__}")
    return stop


class _Interrupted(Exception):
    """Raised at a safe point of an operation asked to stop; caught by the operation."""


def _moved(parts: Sequence[tuple[bytes, Block, pa.Array | None]]) -> pa.Table:
    """The rows ``HotTier.old_blocks`` named, as one table (block schema)."""
    batches = [block.batch() if rows is None else block.batch().take(rows) for _bkey, block, rows in parts]
    return pa.Table.from_batches(batches)


class Compactor:
    """Owns every change to the cold tier's manifest. One operation at a time."""

    def __init__(self, hot: HotTier, cold: ColdTier, settings: Settings) -> None:
        self.hot = hot
        self.cold = cold
        self.settings = settings
        self.lock = threading.RLock()
        self.closed = False  # set by Store.close while holding ``lock``
        self.closing = threading.Event()
        """Set by Store.close before it waits for ``lock``: the running operation stops at its next safe point."""
        self._stop: threading.Event | None = None  # the running operation's caller's stop event

    def check_open(self) -> None:
        """Called holding ``lock``: refuse to touch a closed environment."""
        if self.closed:
            raise StoreClosedError("the store is closed")

    @contextmanager
    def _stoppable(self, stop: threading.Event | None) -> Iterator[None]:
        """Called holding ``lock``: make ``stop`` the event the operation's safe points check
        (an operation nested in another, as compaction's merges, keeps the outer one)."""
        outer = self._stop
        self._stop = stop if stop is not None else outer
        try:
            yield
        finally:
            self._stop = outer

    def stopping(self) -> bool:
        """Whether the running operation was asked to stop (by its caller or by close)."""
        return self.closing.is_set() or (self._stop is not None and self._stop.is_set())

    def _safe_point(self, staged: Sequence[NewFile] = ()) -> None:
        """Stop here if asked: called only where everything before is committed and
        nothing of the current step is published (``staged``: its files written so far,
        deleted on the way out)."""
        if self.stopping():
            self._discard(staged)
            raise _Interrupted

    # ------------------------------------------------------------ compaction

    def compact(self, before: int, stop: threading.Event | None = None) -> CompactionReport:
        """Move every hot record with time < ``before`` (int ns) to the cold tier, writing
        metric rollups on the way; merges partitions it leaves with many small files.
        Crash-safe and exactly-once (the protocol above). ``Store.compact``: a standby
        compacts its own copy (maintenance is local; only client writes are refused).

        Once ``stop`` is set (or the store is closing), it stops at the next safe point,
        between chunks of ``compaction_batch_records`` or before publishing the files
        of one, and returns a report with ``interrupted=True`` counting what moved."""
        with self.lock, self._stoppable(stop_event(stop)):
            self.check_open()
            records = {"spans": 0, "logs": 0, "metrics": 0}
            rollups = {"metrics_5m": 0, "metrics_1h": 0}
            written: list[str] = []
            touched: set[tuple[str, str]] = set()
            interrupted = False
            try:
                for signal in ("spans", "logs", "metrics"):
                    self._compact_signal(signal, before, records, rollups, written, touched)
            except _Interrupted:
                interrupted = True
            merged = self.merge_small_files(touched)  # stops at once if interrupted
            return CompactionReport(
                before_ns=before,
                records=records,
                rollup_rows=rollups,
                files_written=written,
                files_merged=merged,
                interrupted=interrupted or self.stopping(),
            )

    def _compact_signal(
        self,
        signal: str,
        before: int,
        records: dict[str, int],
        rollups: dict[str, int],
        written: list[str],
        touched: set[tuple[str, str]],
    ) -> None:
        batch = self.settings.compaction_batch_records
        while True:
            self._safe_point()
            chunk = self._hot_chunk(signal, before, batch)
            if chunk is None:
                return
            built: dict[str, int] = {"metrics_5m": 0, "metrics_1h": 0}
            files, evict = self._build(signal, chunk, built)
            self._safe_point(files)  # written and staged only: dropping them leaves nothing
            self._commit(files, [], evict)
            records[signal] += chunk.count
            for dataset, n in built.items():
                rollups[dataset] += n  # counted once committed
            for new in files:
                written.append(new.file.relpath)
                touched.add((new.file.dataset, new.file.date))
            log.debug("compacted %d %s into %s", chunk.count, signal, ", ".join(f.file.relpath for f in files))
            if chunk.count < batch:
                return
            del chunk, files, evict  # not held while the next chunk is read: a step's memory, not two

    def _hot_chunk(self, signal: str, before: int, limit: int) -> _HotChunk | None:
        """Up to ``limit`` of the oldest hot records of ``signal`` with time < ``before``, as
        the column batches of their blocks."""
        with self.hot.reader() as txn:
            parts = self.hot.old_blocks(txn, signal, before, limit)
        if not parts:
            return None
        count = sum(block.n if rows is None else len(rows) for _bkey, block, rows in parts)
        if signal in _KEYS:  # streamed from the blocks (_build_streamed): no table of the chunk
            return _HotChunk(None, parts, count)
        # one chunk per column: taking rows of a table of many chunks is several times slower
        return _HotChunk(_moved(parts).combine_chunks(), parts, count)

    def _build(
        self, signal: str, chunk: _HotChunk, rollups: dict[str, int]
    ) -> tuple[list[NewFile], Callable[[Any], None]]:
        """Write one chunk of hot records as cold files (one per day and dataset) and
        return them with the eviction of exactly those records."""
        moved = chunk.parts

        def evict(txn: Any) -> None:
            self.hot.evict(txn, moved, forget=False)

        if signal in _KEYS:
            return self._build_streamed(signal, chunk), evict
        table = chunk.table
        assert table is not None, "metric points come as a table"
        points = metrics_table(table, table.column("wal_lsn"), table.column("batch_index"))
        five, hour = _rollup.rollup_tables(points)
        rollups["metrics_5m"] += five.num_rows
        rollups["metrics_1h"] += hour.num_rows
        # (dataset, version-2 rows, in file order already)
        parts = [("metrics", points, False), ("metrics_5m", five, True), ("metrics_1h", hour, True)]

        by_day: list[tuple[str, str, pa.Table, bool]] = []
        for dataset, rows, ordered in parts:
            for day, taken in day_parts(rows.column(TIME_COLUMN[dataset])):
                part = rows if len(taken) == rows.num_rows else rows.take(pa.array(taken))
                by_day.append((dataset, day_of(day * DAY_NS), part, ordered))
        ids = self.hot.alloc_file_ids(len(by_day))
        files: list[NewFile] = []
        for fid, (dataset, date, part, ordered) in zip(ids, by_day, strict=True):
            self._safe_point(files)  # between files: nothing published yet
            files.append(self._write(fid, dataset, date, part, None if ordered else file_order(dataset, part), files))
        return files, evict

    def _build_streamed(self, signal: str, chunk: _HotChunk) -> list[NewFile]:
        """Write one chunk of hot spans or logs as cold files (one per day), streaming: the
        file order (spans: the first copy of each span; the day split; the sort) is computed
        from the few columns it needs (``_KEYS``), then each
        row group gathers its rows from the blocks holding them, each block's columns decoded
        once and dropped once its last row is written. Memory is the blocks in use at once,
        not the chunk's decoded columns (and its copies: combined, sorted, converted)."""
        moved = chunk.parts
        names = _KEYS[signal]
        light = [block.batch(names) if rows is None else block.batch(names).take(rows) for _bkey, block, rows in moved]
        keys = pa.Table.from_batches(light).combine_chunks()
        sizes = [b.num_rows for b in light]
        part_of = np.repeat(np.arange(len(moved), dtype=np.int64), sizes)
        row_of = np.concatenate(
            [
                np.arange(block.n, dtype=np.int64) if rows is None else np.asarray(rows.to_numpy(), dtype=np.int64)
                for _bkey, block, rows in moved
            ]
        )
        keep = first_copies(span_keys(keys)) if signal == "spans" else None
        kept = np.arange(keys.num_rows, dtype=np.int64) if keep is None else np.flatnonzero(keep)
        times = keys.column(TIME_COLUMN[signal])
        days = day_parts(times if keep is None else times.take(pa.array(kept)))
        remaining = np.bincount(part_of[kept], minlength=len(moved))
        decoded: dict[int, pa.RecordBatch] = {}

        def gather(sel: np.ndarray) -> pa.Table:
            """The rows ``sel`` (chunk row numbers) in that order, from their blocks."""
            parts, rows = part_of[sel], row_of[sel]
            by_part = np.argsort(parts, kind="stable")
            pieces = []
            for run in np.split(by_part, np.flatnonzero(np.diff(parts[by_part])) + 1):
                p = int(parts[run[0]])
                batch = decoded.get(p)
                if batch is None:  # a fresh Block: the chunk's own keeps no decoded columns
                    batch = decoded[p] = Block(moved[p][1].data, signal).batch()
                pieces.append(batch.take(pa.array(rows[run])))
                remaining[p] -= len(run)
                if remaining[p] == 0:
                    del decoded[p]
            table = pa.Table.from_batches(pieces)
            if len(pieces) > 1 or not np.array_equal(by_part, np.arange(len(sel))):
                back = np.empty(len(sel), dtype=np.int64)
                back[by_part] = np.arange(len(sel), dtype=np.int64)
                table = table.take(pa.array(back))
            return table

        ids = self.hot.alloc_file_ids(len(days))
        files: list[NewFile] = []
        for fid, (day, taken) in zip(ids, days, strict=True):
            self._safe_point(files)  # between files: nothing published yet
            sel = kept[taken]
            sel = sel[np.asarray(file_order(signal, keys.take(pa.array(sel))).to_numpy(), dtype=np.int64)]
            files.append(self._write_stream(fid, signal, day_of(day * DAY_NS), sel, gather, files))
        return files

    def _write_stream(
        self,
        file_id: int,
        dataset: str,
        date: str,
        sel: np.ndarray,
        gather: Callable[[np.ndarray], pa.Table],
        staged: Sequence[NewFile],
    ) -> NewFile:
        """One new file of the rows ``sel`` (in file order), a row group at a time, each
        built by ``gather`` (block-schema rows) and made version 2 (spans and logs)."""

        def fill(builder: FileBuilder) -> None:
            size = self.cold.row_group_rows
            for at in range(0, len(sel), size):
                rows = gather(sel[at : at + size])
                if dataset == "spans":
                    builder.add_group(spans_table(rows))
                else:
                    builder.add_group(logs_table(rows, rows.column("wal_lsn"), rows.column("batch_index")))

        return self._new_file(file_id, dataset, date, len(sel), fill, staged)

    def _write(
        self,
        file_id: int,
        dataset: str,
        date: str,
        rows: pa.Table,
        order: pa.Array | None,
        staged: Sequence[NewFile],
    ) -> NewFile:
        """One new file of ``rows`` (version 2: metric points and rollups) taken in ``order``
        (None: they are in file order)."""

        def fill(builder: FileBuilder) -> None:
            builder.add_sorted(rows if order is None else rows.take(order))

        return self._new_file(file_id, dataset, date, rows.num_rows, fill, staged)

    def _new_file(
        self,
        file_id: int,
        dataset: str,
        date: str,
        rows_hint: int,
        fill: Callable[[FileBuilder], None],
        staged: Sequence[NewFile],
    ) -> NewFile:
        """A new file that ``fill`` writes rows into; on failure nothing of it, nor of
        ``staged`` (the step's files so far), is left behind."""
        try:
            writer = self.cold.writer(file_id, dataset, date, rows_hint=rows_hint)
        except OSError as exc:
            self._discard(staged)
            raise StorageError(f"writing cold files failed (nothing was moved): {exc}") from exc
        builder = FileBuilder(writer, self.cold.row_group_rows, _TRACE_SIGNAL.get(dataset), dataset == "spans")
        try:
            fill(builder)
            return builder.finish()
        except BaseException as exc:
            writer.abort()
            self._discard(staged)
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                raise StorageError(f"writing cold files failed (nothing was moved): {exc}") from exc
            raise

    def _commit(
        self,
        added: Sequence[NewFile],
        removed: Sequence[tuple[ColdFile, list[Ref]]],
        evict: Callable[[Any], None] | None,
        after: Callable[[Any], None] | None = None,
    ) -> None:
        """Steps 1-3 of the protocol in the module docstring."""
        try:
            for new in added:
                self.cold.publish(new.file, new.staged)
        except OSError as exc:
            self._discard(added)
            raise StorageError(f"writing cold files failed (nothing was moved): {exc}") from exc
        refs_added = [r for new in added for r in new.refs]
        refs_removed = [r for _f, refs in removed for r in refs]

        def run(txn: Any) -> None:
            if evict is not None:
                evict(txn)
            self.hot.publish_files(
                txn,
                [new.file for new in added],
                [f for f, _r in removed],
                refs_added,
                refs_removed,
                [(new.file.file_id, new.digests) for new in added],
            )
            if after is not None:
                after(txn)

        try:
            self.hot.write(run)
        except BaseException:
            self._discard(added)
            raise
        if removed:
            self.hot.sync()  # the manifest no longer naming them is durable before they go
            self.cold.remove(f for f, _r in removed)

    def _discard(self, added: Sequence[NewFile]) -> None:
        """Remove files written or published for a change that did not commit (else: orphans at next open)."""
        for new in added:
            self.cold.discard(new.file, new.staged)

    # ------------------------------------------------------------ small-file merges

    def merge_small_files(
        self,
        partitions: set[tuple[str, str]] | None = None,
        *,
        min_files: int | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Merge each partition's files smaller than the target size
        (``cold_target_file_bytes``), in groups up to about that size, once it has
        ``min_files`` of them (default ``cold_merge_min_files``); returns how many files
        were merged away. Once ``stop`` is set it returns, each group merged whole or
        not at all. ``Store.merge_small_files`` merges every partition."""
        threshold = min_files if min_files is not None else self.settings.cold_merge_min_files
        target = self.settings.cold_target_file_bytes
        merged = 0
        with self.lock, self._stoppable(stop_event(stop)):
            self.check_open()
            with self.hot.reader() as txn:
                manifest = self.hot.manifest(txn)
            by_part: dict[tuple[str, str], list[ColdFile]] = {}
            for f in manifest:
                if f.size < target and (partitions is None or (f.dataset, f.date) in partitions):
                    by_part.setdefault((f.dataset, f.date), []).append(f)
            for (dataset, date), small in sorted(by_part.items()):
                if len(small) < threshold:
                    continue
                group: list[ColdFile] = []
                size = 0
                groups = []
                for f in sorted(small, key=lambda f: f.file_id):
                    if group and size + f.size > target:
                        groups.append(group)
                        group, size = [], 0
                    group.append(f)
                    size += f.size
                groups.append(group)
                for g in groups:
                    if len(g) >= 2:
                        try:
                            self._merge(dataset, date, g)
                        except _Interrupted:
                            return merged
                        merged += len(g)
        return merged

    def _merge(self, dataset: str, date: str, files: list[ColdFile]) -> None:
        """Replace ``files`` (one partition) by one version-2 file holding their rows, the
        first copy of a span seen twice only, streamed a row group at a time (each output
        row group sorted into file order)."""
        keep = self._first_copies(files) if dataset == "spans" else None
        (fid,) = self.hot.alloc_file_ids(1)
        try:
            writer = self.cold.writer(fid, dataset, date, rows_hint=sum(f.rows for f in files))
        except OSError as exc:
            raise StorageError(f"writing a merged cold file failed (nothing changed): {exc}") from exc
        builder = FileBuilder(writer, self.cold.row_group_rows, _TRACE_SIGNAL.get(dataset), dataset == "spans")
        removed: list[tuple[ColdFile, list[Ref]]] = []
        try:
            at = 0
            signal = _TRACE_SIGNAL.get(dataset)
            for f in files:
                old: list[Ref] = []
                for rg, n in enumerate(self.cold.row_group_sizes(f)):
                    self._safe_point()  # reading: nothing published yet
                    table = self.cold.read_row_groups(f, [rg])
                    if signal is not None:
                        old += trace_refs(table, signal, f.file_id, rg, n, spans=dataset == "spans", full=False)
                    table = upgrade(dataset, table)
                    if keep is not None:
                        table = table.filter(pa.array(keep[at : at + n]))
                    at += n
                    builder.add(table, in_order=True)  # every row group of a cold file is in file order
                removed.append((f, old))
            new = builder.finish()
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                raise StorageError(f"writing a merged cold file failed (nothing changed): {exc}") from exc
            raise
        self._safe_point([new])
        self._commit([new], removed, None)
        if len(files) == 1:
            log.info("rewrote cold file %s (format %d) as %s", files[0].relpath, files[0].version, new.file.relpath)
        else:
            log.info("merged %d cold files of %s/date=%s into %s", len(files), dataset, date, new.file.relpath)

    def _first_copies(self, files: Sequence[ColdFile]) -> np.ndarray | None:
        """For the rows of span files in file and row order: which are the first copy of
        their (trace_id, span_id); None when every row is. Holds 24 bytes per row."""
        keys = []
        for f in files:
            self._safe_point()
            keys.append(span_keys(self.cold.read_all(f, columns=["trace_id", "span_id"])))
        return first_copies(np.concatenate(keys)) if keys else None

    # ------------------------------------------------------------ migration

    def migrate_files(self, stop: threading.Event | None = None) -> int:
        """Rewrite every cold file of an older format version (docs/format/cold.md,
        "Version") in the current one, one file per step through the merge path: each
        step publishes the new file and drops the old one in one manifest commit, so a
        crash midway loses nothing and the next call carries on. Returns how many files
        were rewritten; once ``stop`` is set it returns between files. ``Store`` calls it
        when a writer opens the store: a file that cannot be rewritten now (its object
        store unreachable, the disk full) is logged and left, with the rest, for the next
        open (every read takes either version), never a reason not to open."""
        with self.lock, self._stoppable(stop_event(stop)):
            self.check_open()
            with self.hot.reader() as txn:
                old = [f for f in self.hot.manifest(txn) if f.version != FORMAT_VERSION]
            done = 0
            for f in old:
                try:
                    self._merge(f.dataset, f.date, [f])
                except _Interrupted:
                    break
                except (StorageError, FileNotFoundError) as exc:
                    log.warning(
                        "cannot rewrite cold file %s in the current format now (left for later): %s", f.relpath, exc
                    )
                    break
                done += 1
            if old:
                log.info("rewrote %d of %d cold files of an older format in %s", done, len(old), self.cold.location)
            return done

    # ------------------------------------------------------------ retention

    def enforce_retention(
        self, now: int, stop: threading.Event | None = None, index: TextIndex | None = None
    ) -> RetentionReport:
        """Drop cold partitions whose every record is past its dataset's retention at
        ``now`` (int ns), and hot spans and logs past retention; hot metric points past
        retention are compacted (rolled up) first, never dropped unrolled. Once ``stop``
        is set it stops between steps (a hot chunk, a cold partition) and the report
        says ``interrupted``; the next call drops the rest. A whole pass then deletes
        the ``index`` documents, operations and comments retention removed
        (``Settings.retention_comments_days``); an interrupted one leaves them to the
        next whole pass. ``Store.enforce_retention`` runs it."""
        s = self.settings
        cutoff = self.cutoffs(now)
        with self.lock, self._stoppable(stop_event(stop)):
            self.check_open()
            hot_dropped = {"spans": 0, "logs": 0, "metrics": 0}
            parts: list[str] = []
            dropped: list[ColdFile] = []
            interrupted = False
            try:
                # Hot raw metrics past retention are not rolled up yet: compact them (which
                # writes their rollups) rather than drop them; the partition drop below
                # then takes the raw points once their whole day is past retention.
                moved = {"metrics": 0}
                self._compact_signal("metrics", cutoff["metrics"], moved, {"metrics_5m": 0, "metrics_1h": 0}, [], set())
                for signal in ("spans", "logs"):
                    self._drop_hot(signal, cutoff[signal], hot_dropped)
                with self.hot.reader() as txn:
                    manifest = self.hot.manifest(txn)
                for part, files in sorted(_doomed(manifest, cutoff).items()):  # one partition per step
                    self._drop_partition(files)
                    parts.append(part)
                    dropped += files
                    log.info("retention dropped cold partition %s", part)
            except _Interrupted:
                interrupted = True
            if not interrupted and index is not None:
                oldest = self._forget_indexed(index, cutoff)
                self.hot.forget_operations(oldest["spans"])
                self.hot.drop_comments(now - int(s.retention_comments_days * 86_400e9))
            return RetentionReport(
                now_ns=now,
                partitions_dropped=parts,
                cold_files_dropped=len(dropped),
                cold_rows_dropped=sum(f.rows for f in dropped),
                hot_records_dropped=hot_dropped,
                cutoffs=cutoff,
                interrupted=interrupted,
            )

    def cutoffs(self, now: int) -> dict[str, int]:
        """Per dataset, the time (ns) before which its records are past retention at ``now``."""
        s = self.settings
        return {
            "spans": now - int(s.retention_spans_days * DAY_NS),
            "logs": now - int(s.retention_logs_days * DAY_NS),
            "metrics": now - int(s.retention_metrics_days * DAY_NS),
            "metrics_5m": now - int(s.retention_metrics_5m_days * DAY_NS),
            "metrics_1h": now - int(s.retention_metrics_1h_days * DAY_NS),
        }

    def retention_plan(self, now: int) -> RetentionReport:
        """What ``enforce_retention(now)`` would drop, changing nothing (``dry_run`` set):
        the cold partitions whose every record is past retention, their files and rows,
        and the hot spans and logs past it (hot metric points past it are rolled up, not
        dropped). Reads one snapshot; counts hot records from block metadata, loading only
        blocks that straddle a cutoff."""
        cutoff = self.cutoffs(now)
        self.check_open()
        with self.hot.reader() as txn:
            manifest = self.hot.manifest(txn)
            hot = {signal: self.hot.count_before(txn, signal, cutoff[signal]) for signal in ("spans", "logs")}
        doomed = _doomed(manifest, cutoff)
        files = [f for part in doomed.values() for f in part]
        return RetentionReport(
            now_ns=now,
            partitions_dropped=sorted(doomed),
            cold_files_dropped=len(files),
            cold_rows_dropped=sum(f.rows for f in files),
            hot_records_dropped={**hot, "metrics": 0},
            cutoffs=cutoff,
            dry_run=True,
        )

    def _forget_indexed(self, index: TextIndex, cutoffs: dict[str, int]) -> dict[str, int]:
        """Delete index entries of records retention removed: every document of a signal
        older than both its cutoff and the oldest record of it still stored (partitions
        are dropped whole, so records past the cutoff may remain; they stay searchable).
        Returns that bound per signal: every record before it is gone."""
        bounds: dict[str, int] = {}
        with self.hot.reader() as txn:
            manifest = self.hot.manifest(txn)
            hot = self.hot.signal_stats(txn)
        for signal, doc in (("spans", DOC_SPAN), ("logs", DOC_LOG)):
            oldest = [f.min_ns for f in manifest if f.dataset == signal]
            hot_oldest = hot[signal].oldest_ns
            if hot_oldest is not None:
                oldest.append(hot_oldest)
            bounds[signal] = min([cutoffs[signal], *oldest])
            index.delete_before(doc, bounds[signal])
        index.commit()
        return bounds

    def _drop_partition(self, files: list[ColdFile]) -> None:
        """Remove one cold partition's files from the manifest (one commit), and their
        spans from the per-service counters."""
        removed = []
        for f in files:
            self._safe_point()  # reading the trace index entries: nothing changed yet
            removed.append((f, self._refs_of_file(f)))
        stats: dict[str, list[int]] = {}
        by_trace: dict[bytes, set[str]] = {}
        for f, refs in removed:
            if f.dataset != "spans":
                continue
            for svc, acc in f.services.items():
                cur = stats.setdefault(svc, [0, 0, 0, 0])
                for i in range(3):
                    cur[i] += acc[i]
            for trace, _sig, _fid, _rg, services, _spans in refs:
                by_trace.setdefault(trace, set()).update(services)

        def forget(txn: Any) -> None:
            self.hot.forget_spans(txn, stats, by_trace)

        self._safe_point()
        self._commit([], removed, None, forget)

    def _drop_hot(self, signal: str, before: int, dropped: dict[str, int]) -> None:
        """Delete hot records older than ``before`` without writing them anywhere, one
        chunk per step, counting them in ``dropped[signal]``; dropped spans leave the
        per-service counters."""
        batch = self.settings.compaction_batch_records
        while True:
            self._safe_point()
            with self.hot.reader() as txn:
                parts = self.hot.old_blocks(txn, signal, before, batch)
            if not parts:
                return
            count = sum(b.n if rows is None else len(rows) for _k, b, rows in parts)

            def run(txn: Any, parts: Any = parts) -> None:
                self.hot.evict(txn, parts, forget=True)

            self.hot.write(run)
            dropped[signal] += count
            if count < batch:
                return

    def _refs_of_file(self, f: ColdFile) -> list[Ref]:
        """The trace-index entries of a whole file (with the services of each trace's spans)."""
        signal = _TRACE_SIGNAL.get(f.dataset)
        if signal is None:
            return []
        columns = ["trace_id", "service", "span_id"] if signal == SIGNAL_SPANS else ["trace_id"]
        table = self.cold.read_all(f, columns=columns)
        out: list[Ref] = []
        at = 0
        for rg, n in enumerate(self.cold.row_group_sizes(f)):
            out += trace_refs(table.slice(at, n), signal, f.file_id, rg, n, spans=signal == SIGNAL_SPANS)
            at += n
        return out

    # ------------------------------------------------------------ blobs

    def collect_blobs(self) -> int:
        """Delete payload blobs no live span or log refers to, hot or cold (maintenance
        runs this); returns how many were removed."""
        with self.lock:
            self.check_open()
            removed, freed = self.hot.collect_blobs()
        if removed:
            log.info("blob collection removed %d blobs (%d bytes) from %s", removed, freed, self.hot.path.parent)
        return removed

    # ------------------------------------------------------------ open

    def sweep_orphans(self) -> int:
        with self.hot.reader() as txn:
            live = {f.relpath for f in self.hot.manifest(txn)}
        return self.cold.sweep_orphans(live)


def _doomed(manifest: Sequence[ColdFile], cutoffs: dict[str, int]) -> dict[str, list[ColdFile]]:
    """The cold partitions (``"spans/date=2026-01-01"``) whose whole day is past its
    dataset's cutoff, with their files: what retention drops."""
    doomed: dict[str, list[ColdFile]] = {}
    for f in manifest:
        if day_start_ns(f.date) + DAY_NS <= cutoffs[f.dataset]:
            doomed.setdefault(f"{f.dataset}/date={f.date}", []).append(f)
    return doomed


def hot_cold_tables(hot: HotTier, txn: Any) -> dict[str, pa.Table]:
    """Every record of the hot tier, as of ``txn``, as the version-2 cold tables compaction
    would write (rollups included, computed as compaction computes them; rows in no
    particular order): what ``Store.sql`` unions with the cold files."""
    out: dict[str, pa.Table] = {}
    for signal in ("spans", "logs", "metrics"):
        blocks = list(hot.batches(txn, signal))
        table = pa.Table.from_batches([b.batch() for b in blocks]) if blocks else _block_table(signal)
        if signal == "spans":
            out["spans"] = spans_table(table)
        elif signal == "logs":
            out["logs"] = logs_table(table, table.column("wal_lsn"), table.column("batch_index"))
        else:
            out["metrics"] = metrics_table(table, table.column("wal_lsn"), table.column("batch_index"))
            out["metrics_5m"], out["metrics_1h"] = _rollup.rollup_tables(out["metrics"])
    return out


def _block_table(signal: str) -> pa.Table:
    """An empty table of a signal's hot blocks (logs and metric points with their positions)."""
    schema = BLOCK_SCHEMAS[signal]
    if signal != "spans":
        schema = pa.schema([*schema, *EXTRA_FIELDS.values()])
    return schema.empty_table()
