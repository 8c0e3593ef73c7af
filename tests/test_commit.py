"""The commit pipeline's followers (tael/_commit.py): what they are told, when an
insert may return, and the WAL retention floor, on a real WAL and hot tier."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import tael
from tael._blobs import BlobStore, Payloads
from tael._commit import GATHER_ROWS, CommitPipeline, Follower
from tael._hot import Group, HotTier
from tael._record import encode_frame, encode_rows
from tael._wal import RecordType, Wal

from .conftest import make_log

SETTINGS = tael.Settings()


class Recorder(Follower):
    """Records every hook; keeps the WAL from ``keep_from`` on."""

    def __init__(self) -> None:
        self.durable_ends: list[int] = []
        self.waited: list[int] = []
        self.applied_lsns: list[int] = []
        self.checkpoints = 0
        self.keep_from = 0

    def durable(self, end_lsn: int) -> None:
        self.durable_ends.append(end_lsn)

    def wait(self, end_lsn: int) -> None:
        self.waited.append(end_lsn)

    def applied(self, batches: Sequence[Group]) -> None:
        self.applied_lsns += [lsn for _t, _rows, lsn, _end in batches]

    def retain_from(self, durable_lsn: int) -> int:
        return self.keep_from

    def checkpoint(self) -> None:
        self.checkpoints += 1


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Wal, HotTier]]:
    payloads = Payloads(SETTINGS.payload_attributes, SETTINGS.payload_blob_min_bytes)
    blobs = BlobStore(tmp_path / "blobs", level=1)
    (tmp_path / "hot").mkdir()
    hot = HotTier(tmp_path / "hot", map_size=64 << 20, sync=False, read_only=False, blobs=blobs, payloads=payloads)
    wal = Wal(tmp_path / "wal", segment_bytes=2048, max_record_bytes=1 << 20, fsync=False)
    for _ in wal.recover(0):
        pass  # an empty WAL: opens its first segment
    yield wal, hot
    wal.close()
    hot.close()


def commit_logs(pipeline: CommitPipeline, n: int) -> list[tuple[int, int]]:
    payloads = Payloads(SETTINGS.payload_attributes, SETTINGS.payload_blob_min_bytes)
    out = []
    for i in range(n):
        rows = encode_rows(RecordType.LOGS, [make_log(time_ns=i + 1, body=f"log {i} " + "x" * 300)], payloads)
        out.append(pipeline.commit(RecordType.LOGS, rows, encode_frame(RecordType.LOGS, rows, SETTINGS)))
    return out


def test_followers_hear_of_every_batch_in_order_and_a_commit_waits_for_them(parts: tuple[Wal, HotTier]) -> None:
    wal, hot = parts
    recorder = Recorder()
    pipeline = CommitPipeline(wal, hot, [recorder, Follower()], max_unapplied_records=1000)
    try:
        positions = commit_logs(pipeline, 5)
        pipeline.wait_applied()
    finally:
        pipeline.close()
    ends = [end for _lsn, end in positions]
    assert recorder.waited == ends  # each insert waited for its own batch
    assert recorder.durable_ends == ends  # one commit at a time: one group each
    assert recorder.applied_lsns == [lsn for lsn, _end in positions]


def test_a_commit_returns_only_once_every_follower_let_it(parts: tuple[Wal, HotTier]) -> None:
    wal, hot = parts
    gate = threading.Event()

    class Gate(Follower):
        def wait(self, end_lsn: int) -> None:
            assert gate.wait(30)

    pipeline = CommitPipeline(wal, hot, [Gate()], max_unapplied_records=1000)
    done = threading.Event()

    def insert() -> None:
        commit_logs(pipeline, 1)
        done.set()

    worker = threading.Thread(target=insert)
    try:
        worker.start()
        assert not done.wait(0.3), "the commit returned before its follower let it"
        gate.set()
        worker.join(30)
        assert done.is_set()
    finally:
        gate.set()
        pipeline.close()


def test_the_wal_is_kept_from_the_lowest_position_any_follower_needs(parts: tuple[Wal, HotTier]) -> None:
    wal, hot = parts
    needy, idle = Recorder(), Follower()
    pipeline = CommitPipeline(wal, hot, [needy, idle], max_unapplied_records=1000)
    try:
        commit_logs(pipeline, 20)  # well past several 2 KiB segments
        pipeline.wait_applied()
        segments = wal.segment_count
        assert segments > 3
        assert pipeline.retained_from() == 0  # the applied LSN is far on; the follower holds it back
        assert pipeline.checkpoint() == 0 and wal.segment_count == segments
        assert needy.checkpoints == 0  # nothing to delete: nothing to save first
        needy.keep_from = pipeline.durable_lsn
        assert pipeline.retained_from() == pipeline.applied_lsn == pipeline.durable_lsn
        assert pipeline.checkpoint() == segments - 1 and wal.segment_count == 1
        assert needy.checkpoints == 1  # told before the segments went
    finally:
        pipeline.close()


def _log_blocks(hot: HotTier) -> int:
    with hot.reader() as txn:
        return int(txn.stat(hot.db["log_blocks"])["entries"])


def test_the_applier_gathers_small_batches_until_someone_waits_for_them(parts: tuple[Wal, HotTier]) -> None:
    """With a gathering window (Settings.apply_gather_ms), sequential small batches wait
    for each other and are applied as one block in one transaction; a reader waiting for
    them ends the wait at once (here the window is an hour: only the reader can end it)."""
    wal, hot = parts
    recorder = Recorder()
    pipeline = CommitPipeline(wal, hot, [recorder], max_unapplied_records=1000, gather_s=3600.0)
    try:
        start = pipeline.applied_lsn
        positions = commit_logs(pipeline, 5)
        assert pipeline.applied_lsn == start and recorder.applied_lsns == []  # gathering
        reader = threading.Thread(target=pipeline.wait_applied)
        reader.start()
        reader.join(timeout=60)
        assert not reader.is_alive(), "a waiting reader did not end the applier's gathering"
        assert pipeline.applied_lsn == positions[-1][1]
        assert pipeline.apply_groups == 1
        assert recorder.applied_lsns == [lsn for lsn, _end in positions]
        assert _log_blocks(hot) == 1  # the five small batches share one block
    finally:
        pipeline.close()


def test_the_applier_stops_gathering_once_enough_records_wait(parts: tuple[Wal, HotTier]) -> None:
    """Past GATHER_ROWS waiting records the applier applies without anyone waiting."""
    wal, hot = parts
    pipeline = CommitPipeline(wal, hot, [], max_unapplied_records=100_000, gather_s=3600.0)
    payloads = Payloads(SETTINGS.payload_attributes, SETTINGS.payload_blob_min_bytes)
    try:
        rows = encode_rows(
            RecordType.LOGS, [make_log(time_ns=i + 1, body=f"log {i}") for i in range(GATHER_ROWS)], payloads
        )
        _lsn, end = pipeline.commit(RecordType.LOGS, rows, encode_frame(RecordType.LOGS, rows, SETTINGS))
        assert _applied_by(pipeline, end, 60), "the applier kept gathering with GATHER_ROWS records waiting"
    finally:
        pipeline.close()


def _applied_by(pipeline: CommitPipeline, end: int, within_s: float) -> bool:
    """Whether the applier reaches ``end`` within ``within_s`` without anyone waiting on it."""
    pause = threading.Event()
    for _ in range(int(within_s * 20)):
        if pipeline.applied_lsn >= end:
            return True
        pause.wait(0.05)
    return pipeline.applied_lsn >= end
