"""``tael.Store``: opens a data directory, orchestrates the WAL, commit pipeline and hot tier.

The Store holds no storage logic of its own: it validates arguments, routes
writes through the commit pipeline and reads through the tiers.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _codec
from ._codec import decode_log, decode_metric, decode_span, to_ns
from ._commit import CommitPipeline
from ._errors import CorruptionError, ReadOnlyError, StorageError, StoreClosedError, ValidationError
from ._fsutil import DirLock, dir_size
from ._hot import HotTier
from ._models import (
    SPAN_KINDS,
    SPAN_STATUSES,
    DamagedRegion,
    LogRecord,
    MetricPoint,
    RepairReport,
    ServiceInfo,
    Span,
    StoreStats,
)
from ._settings import Settings
from ._wal import RecordType, Wal, decode_values, encode_frame, repair_wal
from ._writer import BackgroundWriter

log = logging.getLogger(__name__)

MAX_LIMIT = 100_000
_REPLAY_GROUP_RECORDS = 20_000
_ROW_OF = {RecordType.SPANS: _codec.span_row, RecordType.LOGS: _codec.log_row, RecordType.METRICS: _codec.metric_row}


class Store:
    """A telemetry store on a directory: spans, logs and metric points.

    ``Store(path, settings=None, read_only=False)``. One process at a time may
    open a directory for writing (others get StoreLockedError); any number may
    open it with ``read_only=True`` alongside. Use as a context manager or call
    ``close()``. Thread-safe: concurrent inserts share fsyncs (group commit).
    """

    def __init__(self, path: str | Path, settings: Settings | None = None, read_only: bool = False) -> None:
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
        s = self.settings
        if read_only:
            if not (self.path / "hot" / "data.mdb").exists():
                raise StorageError(f"{self.path} is not a tael data directory (no hot/data.mdb)")
            self._hot = HotTier(self.path / "hot", map_size=s.hot_map_size_bytes, sync=False, read_only=True)
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = DirLock(self.path)
        self._lock.acquire()
        try:
            (self.path / "hot").mkdir(exist_ok=True)
            self._hot = HotTier(self.path / "hot", map_size=s.hot_map_size_bytes, sync=s.hot_sync, read_only=False)
            try:
                self._wal = Wal(
                    self.path / "wal",
                    segment_bytes=s.wal_segment_bytes,
                    max_record_bytes=s.wal_max_record_bytes,
                    fsync=s.durability == "fsync",
                )
                self.replayed_records = self._replay()
                self._pipeline = CommitPipeline(self._wal, self._hot, max_unapplied_records=s.max_unapplied_records)
                self._pipeline.checkpoint()
            except BaseException:
                if self._wal is not None:
                    self._wal.close()
                self._hot.close()
                raise
        except BaseException:
            self._lock.release()
            raise

    def _replay(self) -> int:
        """Apply every WAL record past the hot tier's applied LSN, in order, exactly once."""
        assert self._wal is not None
        applied = self._hot.applied_lsn()
        groups: list[Any] = []
        pending = total = 0
        for frame in self._wal.recover(applied):
            if frame.rtype == RecordType.PAD:
                continue
            to_row = _ROW_OF.get(frame.rtype)  # type: ignore[call-overload]
            if to_row is None:
                raise StorageError(
                    f"WAL record at LSN {frame.lsn} has type {frame.rtype}, unknown to this version of tael "
                    "(written by a newer version?); nothing was changed"
                )
            try:
                rows = [to_row(v) for v in decode_values(frame)]
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                raise CorruptionError(
                    f"WAL record at LSN {frame.lsn} verifies but does not decode: {exc!r}", offset=frame.lsn
                ) from exc
            groups.append((frame.rtype, rows, frame.lsn, frame.end_lsn))
            pending += len(rows)
            if pending >= _REPLAY_GROUP_RECORDS:
                self._hot.apply(groups)
                total += pending
                groups, pending = [], 0
        if groups:
            self._hot.apply(groups)
            total += pending
        if total:
            log.info("replayed %d records from the WAL of %s", total, self.path)
        return total

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
            self._closed = True
            try:
                if self._pipeline is not None:
                    self._pipeline.close()
                    with self._pipeline.io:
                        assert self._wal is not None
                        self._wal.close()
                    self._hot.sync()
            finally:
                self._hot.close()
                if self._lock is not None:
                    self._lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        """Refuse use after close; for a writer, wait until every acknowledged write is readable."""
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        if self._pipeline is not None:
            self._pipeline.wait_applied()

    def _writable(self) -> CommitPipeline:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        if self._pipeline is None:
            raise ReadOnlyError(f"the store at {self.path} was opened read_only=True")
        return self._pipeline

    def flush(self) -> None:
        """Make every acknowledged write durable on disk (fsyncs the WAL under
        durability="os") and visible to every reader of this store."""
        pipeline = self._writable()
        pipeline.sync()
        pipeline.wait_applied()

    def checkpoint(self) -> int:
        """Sync the hot tier and delete WAL segments it has fully applied; returns how many."""
        pipeline = self._writable()
        pipeline.wait_applied()
        return pipeline.checkpoint()

    # ------------------------------------------------------------ writes

    def insert_spans(self, spans: Sequence[Span]) -> int:
        """Durably store a batch of spans, all or nothing; returns the batch size.

        A span already stored under the same (trace_id, span_id) is left as it
        was, so retried exports do not duplicate."""
        return self._insert(RecordType.SPANS, _codec.encode_spans(_batch(spans)))

    def insert_logs(self, logs: Sequence[LogRecord]) -> int:
        """Durably store a batch of log records, all or nothing; returns the batch size."""
        return self._insert(RecordType.LOGS, _codec.encode_logs(_batch(logs)))

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

    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of a trace, ascending start_ns; [] for an unknown id."""
        self._check_open()
        trace = _query_id(trace_id, 16, "trace_id")
        return [decode_span(f) for f in self._hot.trace_spans(trace)]

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
    ) -> list[Span]:
        """Spans matching every given filter, newest start_ns first, at most ``limit``.

        ``attributes`` matches spans whose attributes or resource attributes hold
        every given key with an equal value of the same type. ``start <= start_ns < end``.
        """
        self._check_open()
        lo, hi, limit = _range(start, end, limit)
        checks: list[Callable[[list[Any]], bool]] = []
        if service is not None:
            checks.append(lambda f: f[4] == service)
        if name is not None:
            checks.append(lambda f: f[3] == name)
        if status is not None:
            code = _enum_code(status, SPAN_STATUSES, "status")
            checks.append(lambda f: f[8] == code)
        if kind is not None:
            kcode = _enum_code(kind, SPAN_KINDS, "kind")
            checks.append(lambda f: f[7] == kcode)
        if min_duration_ms is not None:
            lo_ns = _duration_ns(min_duration_ms, "min_duration_ms")
            checks.append(lambda f: f[6] - f[5] >= lo_ns)
        if max_duration_ms is not None:
            hi_ns = _duration_ns(max_duration_ms, "max_duration_ms")
            checks.append(lambda f: f[6] - f[5] <= hi_ns)
        if attributes:
            want = _attr_filter(attributes)
            checks.append(lambda f: _attrs_match(want, f[10], f[11]))
        if hi is not None and hi <= 0:
            return []
        rows = self._hot.scan("spans", lo, hi, reverse=True, keep=_all(checks), limit=limit)
        return [decode_span(f) for f in rows]

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
    ) -> list[LogRecord]:
        """Log records matching every given filter, newest first, at most ``limit``."""
        self._check_open()
        lo, hi, limit = _range(start, end, limit)
        checks: list[Callable[[list[Any]], bool]] = []
        if service is not None:
            checks.append(lambda f: f[2] == service)
        if min_severity is not None:
            if type(min_severity) is not int or not 0 <= min_severity <= 24:
                raise ValueError(f"min_severity must be an int in 0..24, got {min_severity!r}")
            checks.append(lambda f: f[3] >= min_severity)
        if attributes:
            want = _attr_filter(attributes)
            checks.append(lambda f: _attrs_match(want, f[7], f[8]))
        if hi is not None and hi <= 0:
            return []
        keep = _all(checks)
        if trace_id is not None:
            rows = self._hot.logs_by_trace(_query_id(trace_id, 16, "trace_id"), lo, hi, keep, limit)
        else:
            rows = self._hot.scan("logs", lo, hi, reverse=True, keep=keep, limit=limit)
        return [decode_log(f) for f in rows]

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
        """Metric points matching every given filter, oldest first, at most ``limit``.

        With ``name`` only that name's series are read (via the series index)."""
        self._check_open()
        lo, hi, limit = _range(start, end, limit)
        want = _attr_filter(attributes) if attributes else None
        if hi is not None and hi <= 0:
            return []
        if name is not None:
            series = [
                sid
                for sid, (svc, _kind, attrs) in self._hot.series_for(name)
                if (service is None or svc == service) and (want is None or _attrs_match(want, attrs, {}))
            ]
            rows = self._hot.series_points(series, lo, hi, limit) if series else []
        else:
            checks: list[Callable[[list[Any]], bool]] = []
            if service is not None:
                checks.append(lambda f: f[2] == service)
            if want is not None:
                checks.append(lambda f: _attrs_match(want, f[6], {}))
            rows = self._hot.scan("metrics", lo, hi, reverse=False, keep=_all(checks), limit=limit)
        return [decode_metric(f) for f in rows]

    def list_services(self) -> list[ServiceInfo]:
        """Every service that has sent spans, by name, from counters kept on write."""
        self._check_open()
        out = []
        for name, (spans, errors, total_ns, traces) in self._hot.services():
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

    def stats(self) -> StoreStats:
        """Record counts and time range per signal, and bytes on disk per component."""
        self._check_open()
        return StoreStats(
            signals=self._hot.signal_stats(),
            disk_bytes={"wal": dir_size(self.path / "wal"), "hot": dir_size(self.path / "hot")},
            wal_segments=self._wal.segment_count
            if self._wal is not None
            else len(list((self.path / "wal").glob("*.wal"))),
            applied_lsn=self._pipeline.applied_lsn if self._pipeline is not None else self._hot.applied_lsn(),
        )


# ---------------------------------------------------------------- argument helpers


def _batch(records: Any) -> Sequence[Any]:
    if isinstance(records, (str, bytes)) or not hasattr(records, "__iter__"):
        raise TypeError(f"expected a list of records, got {type(records).__name__}")
    return records if isinstance(records, (list, tuple)) else list(records)


def _range(start: Any, end: Any, limit: Any) -> tuple[int | None, int | None, int]:
    if type(limit) is not int or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    if limit > MAX_LIMIT:
        raise ValueError(f"limit must be at most {MAX_LIMIT:,}, got {limit:,}")
    return to_ns(start, "start"), to_ns(end, "end"), limit


def _query_id(value: Any, nbytes: int, name: str) -> bytes:
    if type(value) is not str or len(value) != nbytes * 2:
        raise ValueError(f"{name} must be a {nbytes * 2}-character hex string, got {value!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name} is not hex: {value!r}") from None
    if len(raw) != nbytes:
        raise ValueError(f"{name} is not hex: {value!r}")
    return raw


def _enum_code(value: Any, choices: tuple[str, ...], name: str) -> int:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return choices.index(value)


def _duration_ns(ms: Any, name: str) -> float:
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        raise ValueError(f"{name} must be a number of milliseconds, got {ms!r}")
    return ms * 1e6


def _attr_filter(attributes: Any) -> list[tuple[str, Any]]:
    if not isinstance(attributes, dict):
        raise ValueError(f"attributes must be a dict, got {type(attributes).__name__}")
    return list(attributes.items())


def _same(a: Any, b: Any) -> bool:
    """Equality that also requires equal types (1, 1.0 and True are three values here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


_MISSING = object()


def _attrs_match(want: list[tuple[str, Any]], attrs: dict[str, Any], resource: dict[str, Any]) -> bool:
    for key, value in want:
        got = attrs.get(key, _MISSING)
        if got is _MISSING or not _same(got, value):
            got = resource.get(key, _MISSING)
            if got is _MISSING or not _same(got, value):
                return False
    return True


def _all(checks: list[Callable[[list[Any]], bool]]) -> Callable[[list[Any]], bool]:
    if not checks:
        return lambda f: True
    if len(checks) == 1:
        return checks[0]
    return lambda f: all(c(f) for c in checks)


def repair(path: str | Path, settings: Settings | None = None) -> RepairReport:
    """Move damaged parts of a store's WAL into ``<data>/quarantine/<time>/`` so it opens again.

    Takes the writer lock (the store must not be open elsewhere). Everything
    that verifies is kept, at its original position; the report lists each
    damaged region, whose records could not be recovered.
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
    finally:
        lock.release()
    return RepairReport(
        segments_checked=checked,
        frames_ok=good,
        damaged=[DamagedRegion(segment=seg, offset=off, length=n, quarantined_to=to) for seg, off, n, to in damaged],
        quarantine_dir=str(quarantine) if damaged else None,
    )
