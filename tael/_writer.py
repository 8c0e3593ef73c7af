"""A background batching writer for callers that make many small writes.

Records are validated and encoded in the caller's thread (so bad input fails
there, at once), queued, and committed by one background thread in merged
batches that share the WAL's group commit.

The writer takes what it needs, not the store: the payload settings to encode
with and a ``commit(record type, rows)`` function (``Store`` hands it the one its
own inserts use, which refuses writes once the store is closed, read-only or a
standby). The store keeps track of its writers and closes them when it closes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ._blobs import Payloads
from ._errors import StoreClosedError
from ._models import LogRecord, MetricPoint, Span
from ._record import encode_rows, merge
from ._settings import Settings
from ._wal import RecordType

log = logging.getLogger(__name__)


class BackgroundWriter:
    """Queue writes and commit them in the background.

    ``write_spans``/``write_logs``/``write_metrics`` validate (raising
    ValidationError in the caller for bad input), enqueue and return at once.
    When the queue holds ``max_queue`` records, ``on_full="block"`` makes the
    call wait for room and ``"drop"`` discards the call's records, counted in
    ``dropped``. A failed commit is logged and counted in ``failed`` (records),
    never raised into a caller. ``flush()`` waits until everything enqueued so
    far is durable (or failed); ``close()`` flushes and stops the thread.
    """

    def __init__(
        self,
        commit: Callable[[RecordType, Sequence[Any]], int],
        payloads: Payloads,
        settings: Settings,
        *,
        name: str,
        max_queue: int | None = None,
        flush_interval_s: float | None = None,
        on_full: str = "block",
    ) -> None:
        """``max_queue`` and ``flush_interval_s`` default to ``settings.writer_max_queue``
        and ``settings.writer_flush_interval_s``."""
        max_queue = settings.writer_max_queue if max_queue is None else max_queue
        flush_interval_s = settings.writer_flush_interval_s if flush_interval_s is None else flush_interval_s
        batch_records = settings.writer_batch_records
        if on_full not in ("block", "drop"):
            raise ValueError(f"on_full must be 'block' or 'drop', got {on_full!r}")
        if type(max_queue) is not int or max_queue < 1:
            raise ValueError(f"max_queue must be a positive int, got {max_queue!r}")
        if not isinstance(flush_interval_s, (int, float)) or not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        self._commit = commit
        self._payloads = payloads
        self.max_queue = max_queue
        self.flush_interval_s = float(flush_interval_s)
        self.on_full = on_full
        self._batch_records = batch_records
        self._cv = threading.Condition()
        self._queue: deque[tuple[RecordType, Any]] = deque()
        self._queued = 0
        self._enqueued = 0  # records accepted so far (a sequence number for flush)
        self._finished = 0  # records committed or failed so far
        self._urgent = False
        self._closed = False
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=f"tael-writer:{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ callers

    def write_spans(self, spans: Sequence[Span]) -> None:
        self._put(RecordType.SPANS, encode_rows(RecordType.SPANS, spans, self._payloads))

    def write_logs(self, logs: Sequence[LogRecord]) -> None:
        self._put(RecordType.LOGS, encode_rows(RecordType.LOGS, logs, self._payloads))

    def write_metrics(self, points: Sequence[MetricPoint]) -> None:
        self._put(RecordType.METRICS, encode_rows(RecordType.METRICS, points, self._payloads))

    @property
    def queued(self) -> int:
        return self._queued

    def _put(self, rtype: RecordType, rows: Any) -> None:
        n = len(rows)
        if not n:
            return
        with self._cv:
            if self._closed:
                raise StoreClosedError("the background writer is closed")
            # A call larger than the whole queue still goes in once the queue is empty.
            while self._queued and self._queued + n > self.max_queue:
                if self.on_full == "drop":
                    self.dropped += n
                    return
                self._cv.wait()
                if self._closed:
                    raise StoreClosedError("the background writer is closed")
            self._queue.append((rtype, rows))
            self._queued += n
            self._enqueued += n
            self._cv.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record enqueued before the call is durable or failed.

        Returns False if ``timeout`` (seconds) ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            target = self._enqueued
            self._urgent = True
            self._cv.notify_all()
            while self._finished < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._cv.wait(remaining if remaining is not None else 0.5)
        return True

    def close(self) -> None:
        """Flush, then stop the background thread. Idempotent."""
        with self._cv:
            if self._closed and not self._thread.is_alive():
                return
        self.flush()
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ thread

    def _take(self) -> list[tuple[RecordType, Any]] | None:
        """Wait for a batch worth committing; None once closed and drained."""
        with self._cv:
            while not self._queue:
                if self._closed:
                    return None
                self._cv.wait()
            deadline = time.monotonic() + self.flush_interval_s
            while self._queued < self._batch_records and not self._urgent and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            taken: list[tuple[RecordType, Any]] = []
            count = 0
            while self._queue and count < self._batch_records:
                item = self._queue.popleft()
                taken.append(item)
                count += len(item[1])
            if not self._queue:
                self._urgent = False
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            grouped: dict[RecordType, list[Any]] = {}
            for rtype, rows in taken:
                grouped.setdefault(rtype, []).append(rows)
            for rtype, parts in grouped.items():
                rows = merge(parts)
                try:
                    self._commit(rtype, rows)
                    ok = True
                except Exception:
                    log.exception("background writer: committing %d %s records failed", len(rows), rtype.name.lower())
                    ok = False
                with self._cv:
                    if ok:
                        self.written += len(rows)
                    else:
                        self.failed += len(rows)
                    self._finished += len(rows)
                    self._queued -= len(rows)
                    self._cv.notify_all()
