"""The maintenance loop: runs compaction, small-file merges, retention, blob
collection and WAL checkpoints for an open store, on a schedule.

It sits above ``Store`` (it calls the store's public maintenance methods, each of
which hands the work to the Compactor in tael/_compactor.py, below the store) and
only decides when to run them and how to stop a pass early.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ._codec import to_ns
from ._models import MaintenanceReport

if TYPE_CHECKING:
    from ._store import Store

log = logging.getLogger(__name__)


class Maintenance:
    """Runs compaction, small-file merges, retention and WAL checkpoints for a store.

    ``run_once(now=None)`` does one pass; ``start()`` runs passes every
    ``interval_s`` seconds on a daemon thread until ``stop()`` (a pass that took
    longer than that is followed by the next at once, so a backlog is worked off
    as fast as compaction goes). An error in a pass is logged and counted
    (``errors``, ``last_error``) and the next pass retries: it never propagates
    into the host application.

    ``lag_s()`` says how far compaction is behind the hot window: how much older
    than ``now - Settings.hot_window_s`` the cutoff of the last whole pass is. It
    stays under ``interval_s`` plus a pass's duration while passes keep up; a
    server slows its writers down while it is far behind (docs/server.md).

    ``stop()`` (or ``request_stop()``, which does not wait) interrupts the pass in
    progress at its next safe point, a few seconds at most however large the
    backlog: each step (a chunk of records, a merge group, a retention partition)
    either commits or leaves nothing, and the next pass carries on.
    """

    def __init__(self, store: Store, interval_s: float = 60.0) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) or not interval_s > 0:
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s!r}")
        self.store = store
        self.interval_s = float(interval_s)
        self.runs = 0
        self.errors = 0
        self.interrupted = 0
        """Runs that ``stop()`` ended early (not errors)."""
        self.consecutive_errors = 0
        """Failed runs since the last successful one (health checks read it)."""
        self.seconds_total = 0.0
        """Time spent in runs, in seconds."""
        self.records_compacted = 0
        self.rows_dropped = 0
        """Cold rows and hot records retention dropped, summed over runs."""
        self.last_error: str | None = None
        self.last_report: MaintenanceReport | None = None
        self._stop = threading.Event()
        """Set by stop(): ends the loop and interrupts the pass in progress."""
        self._pass = threading.Lock()  # held by the pass in progress, in whatever thread
        self._thread: threading.Thread | None = None
        self._caught_up_ns = time.time_ns() - int(store.settings.hot_window_s * 1e9)
        """The cutoff of the last pass that compacted everything before it (at first: as
        if one had just run, so a fresh loop is not behind)."""

    def run_once(self, now: Any = None) -> MaintenanceReport:
        """One pass: compact what is older than ``Settings.hot_window_s``, merge small
        files, enforce retention, collect unreferenced payload blobs, checkpoint the WAL. Errors are caught, logged and
        reported in the result. A pass that ``stop()`` interrupts ends after the step
        it was in and reports ``interrupted``."""
        with self._pass:
            return self._run(now)

    def _run(self, now: Any) -> MaintenanceReport:
        compaction = retention = None
        merged = removed = blobs = 0
        stop = self._stop
        store = self.store

        def halted() -> bool:
            return stop.is_set() or store.closing  # Store.close interrupts a pass too

        began = time.monotonic()
        try:
            now_ns = to_ns(now, "now") if now is not None else time.time_ns()
            assert now_ns is not None
            hot_window = int(self.store.settings.hot_window_s * 1e9)
            cutoff = now_ns - hot_window
            compaction = self.store.compact(cutoff, stop=stop)
            if not compaction.interrupted:
                self._caught_up_ns = max(self._caught_up_ns, cutoff)
            merged = compaction.files_merged
            if not halted():
                merged += self.store.merge_small_files(stop=stop)
            if not halted():
                retention = self.store.enforce_retention(now_ns, stop=stop)
            if not halted():
                blobs = self.store.collect_blobs()
                removed = self.store.checkpoint()
            error = None
            self.consecutive_errors = 0
        except Exception as exc:
            self.errors += 1
            self.consecutive_errors += 1
            error = self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("maintenance run on %s failed (retried at the next run)", self.store.path)
        interrupted = error is None and (
            halted()
            or (compaction is not None and compaction.interrupted)
            or (retention is not None and retention.interrupted)
        )
        self.runs += 1
        self.interrupted += interrupted
        self.seconds_total += time.monotonic() - began
        if interrupted:
            log.info("maintenance run on %s stopped early at a safe point", self.store.path)
        if compaction is not None:
            self.records_compacted += sum(compaction.records.values())
        if retention is not None:
            self.rows_dropped += retention.cold_rows_dropped + sum(retention.hot_records_dropped.values())
        report = MaintenanceReport(
            compaction=compaction,
            files_merged=merged,
            retention=retention,
            wal_segments_removed=removed,
            blobs_removed=blobs,
            error=error,
            interrupted=interrupted,
        )
        self.last_report = report
        return report

    def start(self) -> Maintenance:
        """Run passes on a daemon thread every ``interval_s`` seconds (first one at once)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this Maintenance is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"tael-maintenance:{self.store.path}", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the loop to stop and the pass in progress (in any thread) to end at its
        next safe point; returns at once (safe from a signal handler or a log handler)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop: interrupt the pass in progress at its next safe point and wait
        for it (at most ``timeout`` seconds). Passes run after this are whole again."""
        self._stop.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # still in its pass past the timeout: it stops at its next safe point
            self._thread = None
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if self._pass.acquire(timeout=-1 if left is None else left):  # a run_once in another thread
            self._stop.clear()
            self._pass.release()

    def lag_s(self, now_ns: int | None = None) -> float:
        """Seconds by which compaction is behind the hot window (0 while it keeps up)."""
        now = time.time_ns() if now_ns is None else now_ns
        behind = now - int(self.store.settings.hot_window_s * 1e9) - self._caught_up_ns
        return max(behind, 0) / 1e9

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.store.closed:
                return
            began = time.monotonic()
            self.run_once()
            if self.store.closed:
                return
            self._stop.wait(max(self.interval_s - (time.monotonic() - began), 0.0))

    def __enter__(self) -> Maintenance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
