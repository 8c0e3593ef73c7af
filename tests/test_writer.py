"""The background writer and group commit."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

import tael

from .conftest import make_log, make_span
from .test_failures import FaultyWrites


def wait_for(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_many_small_writes_from_threads_all_arrive(store: tael.Store) -> None:
    with store.writer(flush_interval_s=0.01) as writer:

        def work(t: int) -> None:
            for i in range(200):
                writer.write_logs([make_log(time_ns=i, body=f"{t}/{i}")])
                if i % 50 == 0:
                    writer.write_spans([make_span()])

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert writer.flush(timeout=30)
        assert writer.written == 4 * 200 + 4 * 4
        assert (writer.dropped, writer.failed) == (0, 0)
    assert sorted(r.body for r in store.query_logs(limit=10_000)) == sorted(
        f"{t}/{i}" for t in range(4) for i in range(200)
    )
    assert store.stats().signals["spans"].count == 16


def test_bad_input_raises_in_the_caller_and_enqueues_nothing(store: tael.Store) -> None:
    with store.writer() as writer:
        with pytest.raises(tael.ValidationError) as info:
            writer.write_logs([make_log(), make_log(severity_number=99)])
        assert info.value.index == 1
        assert writer.queued == 0
        writer.write_logs([make_log(body="fine")])
    assert [r.body for r in store.query_logs()] == ["fine"]


def test_drop_when_full_counts_what_it_dropped(store: tael.Store) -> None:
    writer = store.writer(max_queue=100, flush_interval_s=0.001, on_full="drop")
    assert store._ingest is not None
    with store._ingest.pipeline.io:  # the WAL is busy: nothing can commit
        for i in range(50):
            writer.write_logs([make_log(time_ns=i, body=str(i)) for _ in range(10)])
        assert writer.dropped > 0
        assert writer.queued <= 100
    writer.close()
    assert writer.written + writer.dropped == 500
    assert store.stats().signals["logs"].count == writer.written


def test_block_when_full_waits_for_room(store: tael.Store) -> None:
    writer = store.writer(max_queue=20, flush_interval_s=0.001, on_full="block")
    assert store._ingest is not None
    done = threading.Event()

    def produce() -> None:
        for i in range(10):
            writer.write_logs([make_log(time_ns=i) for _ in range(10)])
        done.set()

    with store._ingest.pipeline.io:
        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: writer.queued == 20)  # full: nothing commits while the WAL is busy
        time.sleep(0.1)  # not synchronisation: a chance for a queue that failed to block to overfill
        assert writer.queued == 20 and not done.is_set(), "the producer should be blocked on a full queue"
    producer.join(timeout=30)
    assert done.is_set()
    writer.close()
    assert (writer.written, writer.dropped) == (100, 0)
    assert store.stats().signals["logs"].count == 100


def test_failures_are_counted_and_logged_not_raised(
    store: tael.Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert store._ingest is not None and store._ingest.wal._fd is not None
    writer = store.writer(flush_interval_s=0.001)
    faulty = FaultyWrites(store._ingest.wal._fd)
    monkeypatch.setattr(os, "write", faulty)
    with caplog.at_level(logging.ERROR, logger="tael"):
        writer.write_logs([make_log() for _ in range(7)])
        assert writer.flush(timeout=10)
    assert writer.failed == 7 and writer.written == 0
    assert any("background writer" in r.message for r in caplog.records)
    monkeypatch.undo()
    writer.write_logs([make_log(body="after")])
    writer.close()
    assert writer.written == 1
    assert [r.body for r in store.query_logs()] == ["after"]
    with pytest.raises(tael.StoreClosedError):
        writer.write_logs([make_log()])


def test_close_flushes(data_dir: Path) -> None:
    with tael.Store(data_dir) as store:
        writer = store.writer(flush_interval_s=60)  # would hold records for a minute
        writer.write_logs([make_log(body="pending")])
        writer.close()
        writer.close()
        assert [r.body for r in store.query_logs()] == ["pending"]


def test_writer_arguments_are_checked(store: tael.Store) -> None:
    with pytest.raises(ValueError, match="on_full"):
        store.writer(on_full="explode")
    with pytest.raises(ValueError, match="max_queue"):
        store.writer(max_queue=0)


def test_concurrent_inserts_share_one_fsync(store: tael.Store) -> None:
    assert store._ingest is not None
    pipeline = store._ingest.pipeline
    before = pipeline.fsync_groups
    n = 8
    with pipeline.io:  # the first leader blocks here while the others queue behind it
        threads = [threading.Thread(target=store.insert_logs, args=([make_log(body=f"t{i}")],)) for i in range(n)]
        for t in threads:
            t.start()
        wait_for(lambda: len(pipeline._wal_queue) == n - 1)
    for t in threads:
        t.join()
    assert pipeline.fsync_groups - before == 2  # 8 inserts, 2 group commits
    assert sorted(r.body for r in store.query_logs()) == sorted(f"t{i}" for i in range(n))


def test_store_close_flushes_and_closes_its_writers(data_dir: Path) -> None:
    store = tael.Store(data_dir)
    writer = store.writer(flush_interval_s=60)
    writer.write_logs([make_log(body="queued")])
    store.close()
    with pytest.raises(tael.StoreClosedError):
        writer.write_logs([make_log()])
    with tael.Store(data_dir) as again:
        assert [r.body for r in again.query_logs()] == ["queued"]


def test_background_writers_lists_the_open_writers_with_their_counters(data_dir: Path) -> None:
    with tael.Store(data_dir) as store:
        assert store.background_writers == []
        first, second = store.writer(), store.writer(max_queue=1, on_full="drop")
        assert set(store.background_writers) == {first, second}
        assert store._ingest is not None
        with store._ingest.pipeline.io:  # the WAL is busy: nothing can commit, so the queue of 1 fills
            for i in range(20):
                second.write_logs([make_log(time_ns=i, body=str(i))])
            assert second.dropped > 0
        assert sum(w.dropped for w in store.background_writers) == second.dropped
