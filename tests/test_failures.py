"""I/O failures on append: an error is raised, no partial frame is left, the store keeps working."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import pytest

import tael
from tael._wal import list_segments

from .conftest import make_log


def wal_size(data: Path) -> int:
    return sum(p.stat().st_size for _b, p in list_segments(data / "wal"))


def logs(tag: str, n: int = 50) -> list[tael.LogRecord]:
    return [make_log(time_ns=i, body=f"{tag}-{i}") for i in range(n)]


class FaultyWrites:
    """Makes writes to one fd write part of the data, then fail like a full disk."""

    def __init__(self, fd: int, error: int = errno.ENOSPC) -> None:
        self.fd = fd
        self.error = error
        self.real_write = os.write
        self.failures = 0

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if fd != self.fd:
            return self.real_write(fd, data)
        self.failures += 1
        if self.failures == 1 and len(data) > 1:
            return self.real_write(fd, bytes(data)[: len(data) // 2])  # a short write first...
        raise OSError(self.error, os.strerror(self.error))  # ...then the disk is full


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
def test_failed_append_leaves_no_partial_frame(data_dir: Path, monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    with tael.Store(data_dir) as store:
        store.insert_logs(logs("a"))
        good = wal_size(data_dir)
        assert store._ingest is not None and store._ingest.wal._fd is not None
        faulty = FaultyWrites(store._ingest.wal._fd, error)
        monkeypatch.setattr(os, "write", faulty)
        with pytest.raises(tael.StorageError, match=os.strerror(error)):
            store.insert_logs(logs("b"))
        assert faulty.failures == 2
        assert wal_size(data_dir) == good, "the half-written frame was cut back"
        with pytest.raises(tael.StorageError):
            store.insert_logs(logs("c"))  # still failing: still nothing partial
        assert wal_size(data_dir) == good
        monkeypatch.setattr(os, "write", faulty.real_write)  # space is back
        store.insert_logs(logs("d"))
        bodies = {r.body.split("-")[0] for r in store.query_logs(limit=1000)}
        assert bodies == {"a", "d"}
    shutil.rmtree(data_dir / "hot")  # force a full replay of the WAL: it must verify end to end
    with tael.Store(data_dir) as store:
        got = sorted(r.body for r in store.query_logs(limit=1000))
    assert got == sorted(r.body for r in logs("a") + logs("d"))


def test_failed_fsync_is_reported_and_cut_back(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tael.Store(data_dir) as store:
        store.insert_logs(logs("a"))
        good = wal_size(data_dir)
        real = os.fdatasync
        calls = {"n": 0}

        def failing_fdatasync(fd: int) -> None:
            calls["n"] += 1
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        with pytest.raises(tael.StorageError, match="Input/output error"):
            store.insert_logs(logs("b"))
        assert calls["n"] == 1
        monkeypatch.setattr(os, "fdatasync", real)
        assert wal_size(data_dir) == good
        store.insert_logs(logs("c"))
    with tael.Store(data_dir) as store:
        assert {r.body[0] for r in store.query_logs(limit=1000)} == {"a", "c"}


def test_every_writer_in_a_failed_group_gets_the_error(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with tael.Store(data_dir) as store:
        store.insert_logs(logs("warm"))
        assert store._ingest is not None and store._ingest.wal._fd is not None
        monkeypatch.setattr(os, "write", FaultyWrites(store._ingest.wal._fd))
        errors: list[BaseException] = []
        barrier = threading.Barrier(6)

        def work(n: int) -> None:
            barrier.wait()
            try:
                store.insert_logs(logs(f"t{n}"))
            except tael.StorageError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 6
        monkeypatch.undo()
        assert {r.body.split("-")[0] for r in store.query_logs(limit=1000)} == {"warm"}


def test_hot_tier_map_grows_when_full(data_dir: Path) -> None:
    settings = tael.Settings(hot_map_size_bytes=1 << 20, payload_blob_min_bytes=1 << 20)  # bodies stay inline
    with tael.Store(data_dir, settings) as store:
        for b in range(8):  # random bodies: blocks compress their bodies, and these must fill the map
            store.insert_logs([make_log(time_ns=b * 1000 + i, body=os.urandom(1000).hex()) for i in range(200)])
        assert store.stats().signals["logs"].count == 1600
        assert store._hot.env.info()["map_size"] > 1 << 20
    with tael.Store(data_dir, settings) as store:
        assert store.stats().signals["logs"].count == 1600
