"""WAL rotation, checkpoints, replay and frame encoding."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest

import tael
from tael._wal import FRAME_MAGIC, SEGMENT_HEADER_SIZE, RecordType, list_segments

from .conftest import make_log


def test_segments_rotate_and_checkpoints_delete_applied_ones(data_dir: Path) -> None:
    settings = tael.Settings(wal_segment_bytes=8192, wal_compress_min_bytes=1 << 30)
    with tael.Store(data_dir, settings) as store:
        for b in range(40):
            store.insert_logs([make_log(time_ns=b * 10 + i, body=f"{b}/{i} " + "z" * 100) for i in range(10)])
        store.checkpoint()
        assert len(list_segments(data_dir / "wal")) <= 2
        assert store.stats().wal_segments == len(list_segments(data_dir / "wal"))
    bases = [b for b, _ in list_segments(data_dir / "wal")]
    assert bases[0] > 0, "the first segments were checkpointed away"
    with tael.Store(data_dir, settings) as store:
        assert store.replayed_records == 0
        assert len(store.query_logs(limit=1000)) == 400


def test_replay_applies_unapplied_frames_once(data_dir: Path) -> None:
    with tael.Store(data_dir) as store:
        for b in range(5):
            store.insert_logs([make_log(time_ns=b, body=str(b))])
    shutil.rmtree(data_dir / "hot")
    with tael.Store(data_dir) as store:
        assert store.replayed_records == 5
        assert sorted(r.body for r in store.query_logs()) == ["0", "1", "2", "3", "4"]
    with tael.Store(data_dir) as store:
        assert store.replayed_records == 0


def test_large_batches_are_compressed_small_ones_not(data_dir: Path) -> None:
    """A block frame is not compressed as a whole: its heavy column (bodies, attributes)
    is, so a batch of repetitive bodies still takes a fraction of their size."""
    with tael.Store(data_dir, tael.Settings(wal_compress_min_bytes=4096)) as store:
        store.insert_logs([make_log(body="small")])
        store.insert_logs([make_log(time_ns=i, body="repetitive " * 50) for i in range(100)])
    ((_b, segment),) = list_segments(data_dir / "wal")
    buf = segment.read_bytes()
    first_flags = buf[SEGMENT_HEADER_SIZE + 3]
    (first_len,) = struct.unpack_from("<I", buf, SEGMENT_HEADER_SIZE + 4)
    second = SEGMENT_HEADER_SIZE + 12 + first_len
    assert (first_flags, buf[second + 3]) == (0, 0)
    assert (buf[SEGMENT_HEADER_SIZE + 2], buf[second + 2]) == (RecordType.LOG_BLOCK, RecordType.LOG_BLOCK)
    (second_len,) = struct.unpack_from("<I", buf, second + 4)
    assert second_len < 100 * 500 // 4  # compressed well below the raw bodies
    shutil.rmtree(data_dir / "hot")
    with tael.Store(data_dir) as store:
        assert len(store.query_logs(limit=1000)) == 101


def test_frame_of_unknown_type_refuses_to_open(data_dir: Path) -> None:
    with tael.Store(data_dir) as store:
        store.insert_logs([make_log()])
    shutil.rmtree(data_dir / "hot")
    ((_b, segment),) = list_segments(data_dir / "wal")
    payload = b"\x90"  # an empty msgpack array
    head = struct.pack("<2sBBI", FRAME_MAGIC, 42, 0, len(payload))
    with segment.open("ab") as f:
        f.write(head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload)
    with pytest.raises(tael.StorageError, match="type 42"):
        tael.Store(data_dir)


def test_durability_os_survives_reopen_and_flush(data_dir: Path) -> None:
    with tael.Store(data_dir, tael.Settings(durability="os")) as store:
        store.insert_logs([make_log(body="a")])
        store.flush()
        store.insert_logs([make_log(body="b")])
    with tael.Store(data_dir) as store:
        assert sorted(r.body for r in store.query_logs()) == ["a", "b"]
