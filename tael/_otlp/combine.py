"""Concurrent requests' column batches of one signal, committed together as one block.

The commit pipeline already shares WAL writes and fsyncs between concurrent inserts
(group commit), but each insert stays a frame and a block of its own, encoded on its
own, and the hot tier merges blocks of fewer than 512 rows again as it applies them
(decoding and encoding them once more). An OTLP request is usually a few hundred
records (the SDKs export at most 512 spans at a time), so under load the server
hands the store, instead, one block made of the batches that queued while the
previous commit was in flight: encoded once, framed once, not merged again.

Each request still returns only once its own records are durable, and gets the error
of the commit that held them; a combined batch that cannot be one WAL frame
(ValidationError: over ``Settings.wal_max_record_bytes``) is committed batch by batch.
A batch holds records checked one by one, so no other error can come from one
request's records rather than another's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .._errors import ValidationError


class _Waiter:
    __slots__ = ("batch", "done", "error")

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch
        self.done = False
        self.error: BaseException | None = None


class Combiner:
    """``insert(batch)`` commits ``batch`` through ``commit``, together with the batches
    other threads hand over meanwhile (in arrival order, at most ``max_rows`` rows and
    ``max_bytes`` of Arrow data per commit); returns once it is committed, or raises
    the error of the commit that held it. The first waiting thread commits a group
    while the others wait for theirs, as the WAL's group commit does."""

    def __init__(self, commit: Callable[[pa.RecordBatch], Any], *, max_rows: int, max_bytes: int) -> None:
        self._commit = commit
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._cv = threading.Condition()
        self._queue: list[_Waiter] = []
        self._busy = False
        self.commits = 0
        """Commits made (a combined group counts once): for tests and metrics."""

    def insert(self, batch: pa.RecordBatch) -> None:
        waiter = _Waiter(batch)
        with self._cv:
            self._queue.append(waiter)
            while not waiter.done:
                if self._busy:
                    self._cv.wait()
                    continue
                self._busy = True
                group = self._take()
                self._cv.release()
                try:
                    self._run(group)
                finally:
                    self._cv.acquire()
                    self._busy = False
                    self._cv.notify_all()
        if waiter.error is not None:
            raise waiter.error

    def _take(self) -> list[_Waiter]:
        """The longest run of queued batches, first come first, within the limits (at least one)."""
        rows = size = 0
        n = 0
        for waiter in self._queue:
            rows += waiter.batch.num_rows
            size += waiter.batch.nbytes
            if n and (rows > self.max_rows or size > self.max_bytes):
                break
            n += 1
        group, self._queue = self._queue[:n], self._queue[n:]
        return group

    def _run(self, group: list[_Waiter]) -> None:
        try:
            if len(group) == 1:
                self._one(group[0])
            else:
                combined = pa.Table.from_batches([w.batch for w in group]).combine_chunks()
                try:
                    self.commits += 1
                    self._commit(combined.to_batches(max_chunksize=combined.num_rows)[0])
                except ValidationError:  # too large for one WAL frame after all: one at a time
                    for waiter in group:
                        self._one(waiter)
                except Exception as exc:
                    for waiter in group:
                        waiter.error = exc
        except BaseException as exc:  # an interrupt mid-commit: no waiter may take it for success
            for waiter in group:
                if waiter.error is None:
                    waiter.error = exc
            raise
        finally:
            for waiter in group:
                waiter.done = True

    def _one(self, waiter: _Waiter) -> None:
        try:
            self.commits += 1
            self._commit(waiter.batch)
        except Exception as exc:
            waiter.error = exc
