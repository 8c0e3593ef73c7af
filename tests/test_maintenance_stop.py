"""Stopping maintenance mid-pass (issue 14, item 8): SIGTERM under load took 65 s to over
120 s because shutdown waited for the whole maintenance pass. A pass now stops at its
next safe point: each step (a chunk of records, a merge group, a retention partition)
either commits or leaves nothing, and the next pass carries on."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import tael

from .conftest import make_log, make_point, make_span
from .readall import all_logs, all_points, all_spans
from .test_server import ROOT, free_port

S = 10**9
DAY = 86_400 * S
T0 = 1_767_225_600 * S  # 2026-01-01
NOW = T0 + 4 * DAY  # past the hot window of every record, before any retention
N = 6_000
SETTINGS = tael.Settings(compaction_batch_records=500, cold_merge_min_files=2)


def backlog(store: tael.Store, n: int = N) -> None:
    """``n`` spans, logs and points over three days, all past the hot window at NOW."""
    for lo in range(0, n, 2_000):
        idx = range(lo, min(lo + 2_000, n))
        t = [T0 + i * (3 * DAY // n) for i in idx]
        store.insert_spans(
            [
                make_span(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", start_ns=ti, end_ns=ti + 1)
                for i, ti in zip(idx, t, strict=True)
            ]
        )
        store.insert_logs([make_log(time_ns=ti, body=f"log {i}") for i, ti in zip(idx, t, strict=True)])
        store.insert_metrics([make_point(time_ns=ti, attributes={"id": str(i)}) for i, ti in zip(idx, t, strict=True)])


def check_store(store: tael.Store, data: Path, n: int = N) -> None:
    """Every record readable exactly once, no cold file the manifest does not name."""
    with store._hot.reader() as txn:
        live = {f.relpath for f in store._hot.manifest(txn)}
    cold = data / "cold"
    on_disk = {p.relative_to(cold).as_posix() for p in cold.rglob("*") if p.is_file()} if cold.exists() else set()
    assert on_disk == live, "orphan or missing cold files"
    spans = Counter(s.span_id for s in all_spans(store))
    assert len(spans) == n and set(spans.values()) == {1}
    logs = Counter(r.body for r in all_logs(store))
    assert len(logs) == n and set(logs.values()) == {1}
    points = Counter(p.attributes["id"] for p in all_points(store))
    assert len(points) == n and set(points.values()) == {1}
    assert store.stats().signals["spans"].count == n  # stored rows, no read-side dedup


class OnLog(logging.Handler):
    """Calls ``action`` (once) in the logging thread when a message starts with ``prefix``:
    a hook at an exact point of a pass, with no timing involved."""

    def __init__(self, prefix: str, action: Callable[[], None]) -> None:
        super().__init__(logging.DEBUG)
        self.prefix = prefix
        self.action: Callable[[], None] | None = action

    def emit(self, record: logging.LogRecord) -> None:
        if self.action is not None and record.getMessage().startswith(self.prefix):
            action, self.action = self.action, None
            action()


@contextmanager
def on_log(prefix: str, action: Callable[[], None]) -> Iterator[None]:
    logger = logging.getLogger("tael._compactor")
    handler, level = OnLog(prefix, action), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_stop_interrupts_a_pass_after_its_first_chunk_and_the_next_pass_finishes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data, SETTINGS) as store:
        backlog(store)
        m = tael.Maintenance(store)
        mid = threading.Event()

        def hold() -> None:  # in the pass's thread, right after its first chunk committed
            mid.set()
            m._stop.wait(30)  # until stop() is called: the pass is provably mid-way

        reports: list[tael.MaintenanceReport] = []
        with on_log("compacted 500 spans", hold):
            worker = threading.Thread(target=lambda: reports.append(m.run_once(now=NOW)))
            worker.start()
            assert mid.wait(60)
            m.stop()  # returns once the pass has stopped
            worker.join()
        (report,) = reports
        assert report.interrupted and report.error is None, report
        assert report.compaction is not None and report.compaction.interrupted
        assert report.compaction.records == {"spans": 500, "logs": 0, "metrics": 0}, "one chunk, then the stop"
        assert report.retention is None and report.wal_segments_removed == 0  # the later steps did not run
        assert (m.interrupted, m.errors, m.consecutive_errors) == (1, 0, 0)
        assert store.stats().hot_records["spans"] == N - 500
        check_store(store, data)

        again = m.run_once(now=NOW)  # passes after stop() are whole again
        assert not again.interrupted and again.error is None, again
        assert again.compaction is not None and again.compaction.records == {"spans": N - 500, "logs": N, "metrics": N}
        assert store.stats().hot_records == {"spans": 0, "logs": 0, "metrics": 0}
        check_store(store, data)


def test_a_merge_stops_between_groups_and_each_group_is_merged_whole(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data, tael.Settings(compaction_batch_records=500, cold_merge_min_files=1_000)) as store:
        backlog(store)
        store.compact(NOW)  # a small file per chunk and day, not merged yet
        with store._hot.reader() as txn:
            manifest = store._hot.manifest(txn)
        first = min((f.dataset, f.date) for f in manifest)
        in_first = sum(1 for f in manifest if (f.dataset, f.date) == first)
        assert in_first >= 2 and len(manifest) > in_first
        stop = threading.Event()
        with on_log("merged ", stop.set):
            merged = store._compactor.merge_small_files(min_files=2, stop=stop)
        assert merged == in_first, "the first partition's files, then the stop"
        assert store.stats().cold_files == len(manifest) - in_first + 1
        check_store(store, data)
        rest = store._compactor.merge_small_files(min_files=2)
        assert rest > 0 and store._compactor.merge_small_files(min_files=2) == 0
        check_store(store, data)


def test_retention_stops_between_partitions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data, SETTINGS) as store:
        backlog(store)
        store.compact(NOW)
        stop = threading.Event()
        later = NOW + 30 * DAY  # everything is past retention
        with on_log("retention dropped cold partition", stop.set):
            report = store.enforce_retention(later, stop=stop)
        assert report.interrupted and len(report.partitions_dropped) == 1, report
        with store._hot.reader() as txn:
            live = {f.relpath for f in store._hot.manifest(txn)}
        cold = data / "cold"
        assert {p.relative_to(cold).as_posix() for p in cold.rglob("*") if p.is_file()} == live
        left = len(all_spans(store)) + len(all_logs(store))
        assert 0 < left < 2 * N
        report = store.enforce_retention(later)
        assert not report.interrupted and all_spans(store) == [] and all_logs(store) == []


def test_close_interrupts_a_running_pass(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = tael.Store(data, SETTINGS)
    backlog(store)
    m = tael.Maintenance(store, interval_s=3600)
    mid = threading.Event()

    def hold() -> None:
        mid.set()
        store._compactor.closing.wait(30)  # until close() begins

    with on_log("compacted 500 spans", hold):
        m.start()  # its first pass runs at once, on the real clock: the backlog is years old
        assert mid.wait(60)
        store.close()
        m.stop()
    assert m.last_report is not None and m.last_report.interrupted and m.errors == 0, m.last_report
    with tael.Store(data, SETTINGS) as reopened:
        assert reopened.stats().hot_records["spans"] == N - 500
        check_store(reopened, data)


SERVE = """
import sys, time
import tael
import tael._compactor as compactor
from tael._server import run_server

commit = compactor.Compactor._commit

def slow_commit(self, *args, **kwargs):  # a slow disk: every committed step takes 0.3 s more
    commit(self, *args, **kwargs)
    print("step", flush=True)
    time.sleep(0.3)

compactor.Compactor._commit = slow_commit
settings = tael.Settings(compaction_batch_records=50)
run_server(sys.argv[1], port=int(sys.argv[2]), settings=settings, maintenance_interval_s=3600)
"""


def test_sigterm_during_a_long_maintenance_pass_exits_promptly_and_loses_nothing(tmp_path: Path) -> None:
    """The pass would take over a minute (360 steps of 0.3 s at least); SIGTERM after its
    first step ends the server cleanly long before the pass would end, with the rest left hot."""
    data = tmp_path / "data"
    with tael.Store(data, SETTINGS) as store:
        backlog(store)
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(data), str(free_port())], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "step\n"  # the first pass, at once, is under way
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0  # a hang guard: the pass itself would take over 108 s
        steps = 1 + sum(1 for line in proc.stdout if line == "step\n")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert steps < 3 * N // 50, f"the pass stopped early ({steps} steps)"
    with tael.Store(data, SETTINGS) as store:
        assert sum(store.stats().hot_records.values()) > 0
        check_store(store, data)


def test_lag_is_how_far_the_last_whole_pass_is_behind_the_hot_window(tmp_path: Path) -> None:
    """``Maintenance.lag_s``: 0 right after a whole pass at ``now``, growing with time
    since; an interrupted pass does not count as caught up (the server slows writers on
    it: tests/test_server_limits.py)."""
    with tael.Store(tmp_path / "data", SETTINGS) as store:
        backlog(store, 1_000)
        made = time.time_ns()
        m = tael.Maintenance(store)
        later = made + DAY  # a day after the loop was made: a day behind
        assert DAY / S - 60 < m.lag_s(now_ns=later) <= DAY / S
        m.request_stop()
        stopped = m.run_once(now=later)
        assert stopped.interrupted
        assert m.lag_s(now_ns=later) > DAY / S - 60  # not caught up
        m.stop()  # passes after stop() are whole again
        report = m.run_once(now=later)
        assert not report.interrupted and report.error is None
        assert m.lag_s(now_ns=later) == 0
        assert m.lag_s(now_ns=later + 30 * S) == 30
