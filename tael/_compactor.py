"""Moving data between tiers: compaction, small-file merges and retention.

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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from . import _codec, _rollup
from ._block import RECORDS_OF, Block
from ._cold import (
    DAY_NS,
    TIME_COLUMN,
    WINDOW_NS,
    ColdFile,
    ColdTier,
    day_of,
    day_start_ns,
    file_digests,
    logs_table,
    metrics_table,
    rollup_table,
    sort_table,
    spans_table,
)
from ._errors import StorageError, StoreClosedError
from ._hot import RECORD_KEY, SIGNAL_LOGS, SIGNAL_SPANS, HotTier
from ._layout import (
    LOG_TIME,
    METRIC_ATTRS,
    METRIC_KIND,
    METRIC_NAME,
    METRIC_SERVICE,
    METRIC_TIME,
    SPAN_ID,
    SPAN_START,
    SPAN_TRACE,
)
from ._models import CompactionReport, RetentionReport
from ._search import DOC_LOG, DOC_SPAN, TextIndex
from ._settings import Settings

log = logging.getLogger(__name__)

Ref = tuple[bytes, int, int, int, tuple[str, ...]]
"""A cold trace-index entry: (trace id, signal, file id, row group, services of its spans there)."""
REF_FILE: Final = 2

MetricRow = tuple[int, int, bytes, list[Any], bytes]
"""A hot metric point as compaction handles it (``metric_rows``): the positions below."""
MR_LSN: Final = 0  # WAL LSN of its batch
MR_INDEX: Final = 1  # index in its batch
MR_SERIES: Final = 2  # 8-byte series id
MR_RECORD: Final = 3  # the decoded record (METRIC_*)
MR_KEY: Final = 4  # its hot-tier key
_TRACE_SIGNAL = {"spans": SIGNAL_SPANS, "logs": SIGNAL_LOGS}


@dataclass(frozen=True, slots=True)
class _NewFile:
    """A cold file encoded and about to be published, with what the LMDB indexes need."""

    file: ColdFile
    data: bytes
    refs: list[Ref]
    digests: list[bytes]
    """Blob digests its rows refer to."""


def stop_event(stop: Any) -> threading.Event | None:
    """A caller's ``stop`` argument, checked: a threading.Event or None."""
    if stop is not None and not isinstance(stop, threading.Event):
        raise TypeError(f"stop must be a threading.Event or None, got {type(stop).__name__}")
    return stop


class _Interrupted(Exception):
    """Raised at a safe point of an operation asked to stop; caught by the operation."""


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

    def _safe_point(self) -> None:
        """Stop here if asked: called only where everything before is committed and
        nothing of the current step is published."""
        if self.stopping():
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
            with self.hot.reader() as txn:
                parts = self.hot.old_blocks(txn, signal, before, batch)
            if not parts:
                return
            chunk = _moved_records(signal, parts)
            built: dict[str, int] = {"metrics_5m": 0, "metrics_1h": 0}
            files, evict = self._build(signal, parts, chunk, built)
            self._safe_point()  # built in memory only: dropping them leaves nothing
            self._commit(files, [], evict)
            records[signal] += len(chunk)
            for dataset, n in built.items():
                rollups[dataset] += n  # counted once committed
            for new in files:
                written.append(new.file.relpath)
                touched.add((new.file.dataset, new.file.date))
            log.debug("compacted %d %s into %s", len(chunk), signal, ", ".join(f.file.relpath for f in files))
            if len(chunk) < batch:
                return

    def _build(
        self, signal: str, moved: Any, chunk: list[Any], rollups: dict[str, int]
    ) -> tuple[list[_NewFile], Callable[[Any], None]]:
        """Encode one chunk of hot records as cold files (one per day and dataset) and
        the eviction of exactly those records (``moved``: what ``HotTier.old_blocks`` named)."""
        tables: list[tuple[str, str, pa.Table]] = []

        def evict(txn: Any) -> None:
            self.hot.evict(txn, moved, forget=False)

        if signal == "spans":
            for date, group in _by_day(chunk, lambda kf: kf[1][SPAN_START]).items():
                tables.append(("spans", date, spans_table([f for _k, f in group])))
        elif signal == "logs":
            keyed = [(k[1], k[2], f) for k, f in chunk]
            for date, lgroup in _by_day(keyed, lambda r: r[2][LOG_TIME]).items():
                tables.append(("logs", date, logs_table(lgroup)))
        else:
            rows = metric_rows([(RECORD_KEY.pack(*k), _codec.packb(f)) for k, f in chunk])
            for date, mgroup in _by_day(rows, lambda r: r[MR_RECORD][METRIC_TIME]).items():
                tables.append(("metrics", date, metrics_table([r[:MR_KEY] for r in mgroup])))
            five, hour = rollup_rows(rows)
            for dataset, parts in (("metrics_5m", five), ("metrics_1h", hour)):
                rollups[dataset] += len(parts)
                for date, pgroup in _by_day(parts, lambda p: p["window_start_ns"]).items():
                    tables.append((dataset, date, rollup_table(dataset, pgroup)))

        ids = self.hot.alloc_file_ids(len(tables))
        files = []
        for fid, (dataset, date, table) in zip(ids, tables, strict=True):
            self._safe_point()  # between encodings: nothing published yet
            files.append(self._encode(fid, dataset, date, table))
        return files, evict

    def _encode(self, file_id: int, dataset: str, date: str, table: pa.Table) -> _NewFile:
        data = self.cold.encode(dataset, table)
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
        times = table.column(TIME_COLUMN[dataset])
        services: dict[str, list[int]] = {}
        if dataset == "spans":
            traces: dict[str, set[str]] = {}
            for svc, status, dur, trace in zip(
                table.column("service").to_pylist(),
                table.column("status").to_pylist(),
                table.column("duration_ns").to_pylist(),
                table.column("trace_id").to_pylist(),
                strict=True,
            ):
                acc = services.setdefault(svc, [0, 0, 0, 0])
                acc[0] += 1
                acc[1] += status == "error"
                acc[2] += dur
                traces.setdefault(svc, set()).add(trace)
            for svc, ts in traces.items():
                services[svc][3] = len(ts)
        else:
            for svc in table.column("service").to_pylist():
                services.setdefault(svc, [0])[0] += 1
        names = tuple(sorted(set(table.column("name").to_pylist()))) if dataset.startswith("metrics") else ()
        f = ColdFile(
            file_id=file_id,
            dataset=dataset,
            date=date,
            rows=table.num_rows,
            size=len(data),
            min_ns=int(pa.compute.min(times).as_py()),
            max_ns=int(pa.compute.max(times).as_py()),
            row_groups=meta.num_row_groups,
            services=services,
            names=names,
        )
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        return _NewFile(f, data, _refs_of(f, table, sizes), file_digests(table))

    def _commit(
        self,
        added: Sequence[_NewFile],
        removed: Sequence[tuple[ColdFile, list[Ref]]],
        evict: Callable[[Any], None] | None,
        after: Callable[[Any], None] | None = None,
    ) -> None:
        """Steps 1-3 of the protocol in the module docstring."""
        try:
            for new in added:
                self.cold.publish(new.file, new.data)
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

    def _discard(self, added: Sequence[_NewFile]) -> None:
        """Remove files published for a change that did not commit (else: orphans at next open)."""
        for new in added:
            self.cold.discard(new.file)

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
        tables = []
        for f in files:
            self._safe_point()  # reading: nothing published yet
            tables.append(self.cold.read_all(f))
        table = pa.concat_tables(tables)
        old_refs = [r for f, t in zip(files, tables, strict=True) for r in _refs_of(f, t, self.cold.row_group_sizes(f))]
        if dataset == "spans":
            table = _first_of_each_span(table)
        table = sort_table(dataset, table)
        (fid,) = self.hot.alloc_file_ids(1)
        new = self._encode(fid, dataset, date, table)
        self._safe_point()
        self._commit([new], [(f, [r for r in old_refs if r[REF_FILE] == f.file_id]) for f in files], None)
        log.info("merged %d cold files of %s/date=%s into %s", len(files), dataset, date, new.file.relpath)

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
        cutoff = {
            "spans": now - int(s.retention_spans_days * DAY_NS),
            "logs": now - int(s.retention_logs_days * DAY_NS),
            "metrics": now - int(s.retention_metrics_days * DAY_NS),
            "metrics_5m": now - int(s.retention_metrics_5m_days * DAY_NS),
            "metrics_1h": now - int(s.retention_metrics_1h_days * DAY_NS),
        }
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
                doomed: dict[str, list[ColdFile]] = {}
                for f in manifest:
                    if day_start_ns(f.date) + DAY_NS <= cutoff[f.dataset]:
                        doomed.setdefault(f"{f.dataset}/date={f.date}", []).append(f)
                for part, files in sorted(doomed.items()):  # one partition per step
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
            for trace, _sig, _fid, _rg, services in refs:
                by_trace.setdefault(trace, set()).update(services)

        def forget(txn: Any) -> None:
            self.hot.forget_spans(txn, stats, by_trace)

        self._safe_point()
        self._commit([], removed, None, forget)

    def _drop_hot(self, signal: str, before: int, dropped: dict[str, int]) -> None:
        """Delete hot records older than ``before`` without writing them anywhere, one
        chunk per step, counting them in ``dropped[signal]``."""
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
        if f.dataset not in _TRACE_SIGNAL:
            return []
        columns = ["trace_id", "service"] if f.dataset == "spans" else ["trace_id"]
        return _refs_of(f, self.cold.read_all(f, columns=columns), self.cold.row_group_sizes(f))

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


def _moved_records(signal: str, parts: Sequence[tuple[bytes, Block, pa.Array | None]]) -> list[tuple[Any, list[Any]]]:
    """(key, record) of the rows ``HotTier.old_blocks`` named: key (start_ns, trace, span)
    for spans, (time_ns, lsn, index) otherwise."""
    out: list[tuple[Any, list[Any]]] = []
    for _bkey, block, rows in parts:
        batch = block.batch()
        if rows is not None:
            batch = batch.take(rows)
        recs = RECORDS_OF[signal](batch, None)
        if signal == "spans":
            out += [((f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f) for f in recs]
        else:
            times = batch.column("time_ns").to_pylist()
            lsns = batch.column("wal_lsn").to_pylist()
            idxs = batch.column("batch_index").to_pylist()
            out += [((t, lsn, i), f) for t, lsn, i, f in zip(times, lsns, idxs, recs, strict=True)]
    return out


def metric_rows(chunk: Sequence[tuple[bytes, bytes]]) -> list[MetricRow]:
    """(wal lsn, index in batch, series id, record, hot key) of hot metric (key, value) pairs."""
    rows = []
    for k, v in chunk:
        f = _codec.unpackb(v)
        sid, _desc = _codec.series_key(f[METRIC_NAME], f[METRIC_SERVICE], f[METRIC_KIND], f[METRIC_ATTRS])
        _t, lsn, idx = RECORD_KEY.unpack(k)
        rows.append((lsn, idx, sid, f, k))
    return rows


def rollup_rows(rows: Sequence[MetricRow]) -> tuple[list[Any], list[Any]]:
    """The 5-minute and 1-hour rollup rows of metric points, as compaction writes them."""
    five = _rollup.partials_from_points(((r[MR_SERIES].hex(), r[MR_RECORD]) for r in rows), WINDOW_NS["metrics_5m"])
    return five, _rollup.rewindow(five, WINDOW_NS["metrics_1h"])


def _by_day(items: Sequence[Any], time_of: Callable[[Any], int]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in items:
        out.setdefault(day_of(time_of(item)), []).append(item)
    return out


def _refs_of(f: ColdFile, table: pa.Table, sizes: Sequence[int]) -> list[Ref]:
    """Cold trace-index entries for a file's rows (``table`` in file row order,
    ``sizes`` the rows of each row group)."""
    signal = _TRACE_SIGNAL.get(f.dataset)
    if signal is None:
        return []
    found: dict[tuple[str, int], set[str]] = {}
    traces = table.column("trace_id").to_pylist()
    services = table.column("service").to_pylist() if signal == SIGNAL_SPANS else [None] * len(traces)
    row = 0
    for rg, n in enumerate(sizes):
        for t, svc in zip(traces[row : row + n], services[row : row + n], strict=True):
            if t is not None:
                held = found.setdefault((t, rg), set())
                if svc is not None:
                    held.add(svc)
        row += n
    return [(bytes.fromhex(t), signal, f.file_id, rg, tuple(sorted(svcs))) for (t, rg), svcs in sorted(found.items())]


def _first_of_each_span(table: pa.Table) -> pa.Table:
    """Drop later copies of a (trace_id, span_id): the first write wins, as in the hot tier."""
    keys = zip(table.column("trace_id").to_pylist(), table.column("span_id").to_pylist(), strict=True)
    seen: set[tuple[str, str]] = set()
    keep = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return table if len(keep) == table.num_rows else table.take(keep)
