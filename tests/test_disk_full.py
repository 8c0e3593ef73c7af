"""A full disk during full-text index commits (issue 14, fault 2), on a real small
ext4 filesystem the test mounts (tests/_smallfs.py): no acknowledged record may go
missing from text search, before or after a reopen; ``tael check`` must see an index
that lags the tiers; ``tael serve`` must stop cleanly on SIGTERM after the episode.

Before the fix, Tantivy's writer was reused after its indexing worker died on
ENOSPC: the documents it held were gone, a later commit "succeeded" with nothing in
it, ``indexed_lsn`` moved past them (so a reopen did not index them again) and
``tael check`` said ok; SIGTERM then failed with "An index writer was killed".
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

import tael
from tael._blobs import BlobStore, Payloads
from tael._cli import main
from tael._hot import HotTier
from tael._search import TextIndex
from tael._wal import list_segments

from ._smallfs import fill
from .test_server import ROOT, free_port, wait_for

T0 = 1_700_000_000_000_000_000
BATCH = 200


def logs(b: int) -> list[tael.LogRecord]:
    """Batch ``b``: every body holds the word ``batch<b>`` and a word of its own."""
    return [
        tael.LogRecord(
            time_ns=T0 + b * 1000 + i,
            body=f"connection reset by upstream batch{b} rec{b}x{i} " + "while draining the pool " * 4,
            service="api",
            severity_number=17,
        )
        for i in range(BATCH)
    ]


def insert(store: tael.Store, b: int, acked: list[int]) -> bool:
    """Insert batch ``b``; only a batch whose insert returned is acknowledged."""
    try:
        store.insert_logs(logs(b))
    except tael.StorageError:
        return False  # refused (the WAL append hit the full disk): not acknowledged
    acked.append(b)
    return True


def unsearchable(store: tael.Store, acked: list[int]) -> list[int]:
    """Acknowledged batches whose records text search does not all find."""
    out = []
    for b in acked:
        got = store.query_logs(text=f"batch{b}", limit=BATCH + 1)
        if sorted(r.body for r in got) != sorted(r.body for r in logs(b)):
            out.append(b)
    return out


def index_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tael._search" and r.levelno >= logging.ERROR]


def check(data: Path) -> tuple[int, dict[str, Any]]:
    result: Result = CliRunner().invoke(main, ["check", "--data", str(data), "--output", "json"])
    return result.exit_code, json.loads(result.stdout)


def settings(interval_s: float) -> tael.Settings:
    # small WAL segments: the retry reads batches back across several of them
    return tael.Settings(hot_map_size_bytes=256 << 20, wal_segment_bytes=4096, index_commit_interval_s=interval_s)


def test_full_disk_during_the_index_commit_flush_asks_for_loses_no_acknowledged_log(
    small_fs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The whole data directory on the full filesystem: the commit flush() asks for
    fails (and inserts are refused, or acknowledged into the WAL's last block and
    then wait for the hot tier); space comes back while the store keeps running."""
    caplog.set_level(logging.WARNING, logger="tael")
    mnt = small_fs(64)
    data = mnt / "data"
    acked: list[int] = []
    b = 0
    store = tael.Store(data, settings(3600.0))
    try:
        for _ in range(10):
            assert insert(store, b, acked)
            b += 1
        store.query_logs(limit=1)  # a read waits until the hot tier holds them all
        filler = fill(mnt)
        with pytest.raises(tael.StorageError, match="full-text index"):
            store.flush()
        assert index_failures(caplog)
        for _ in range(20):
            insert(store, b, acked)
            b += 1
        filler.unlink()  # space comes back while the same store keeps running
        for _ in range(10):
            assert insert(store, b, acked)
            b += 1
        store.flush()
        assert any("indexed again" in r.getMessage() for r in caplog.records), "the index was not rebuilt"
        assert unsearchable(store, acked) == []
        assert store.stats().indexed_lsn == store.stats().applied_lsn
    finally:
        store.close()
    with tael.Store(data, settings(3600.0)) as store:
        assert unsearchable(store, acked) == []
    code, report = check(data)
    assert code == 0 and report["problems"] == [], report


def index_on_its_own_fs(data: Path, mnt: Path) -> None:
    """Move the index of the closed store at ``data`` onto the filesystem at ``mnt``
    (a symlink takes its place): filling that one makes every index commit fail at
    once while the WAL and the hot tier keep taking writes."""
    shutil.copytree(data / "index", mnt / "index")
    shutil.rmtree(data / "index")
    (data / "index").symlink_to(mnt / "index")


@pytest.mark.parametrize(
    "more",
    [0, pytest.param(150, marks=pytest.mark.soak, id="issue-scale")],  # ~31,000 logs, as in the issue
)
def test_full_disk_during_background_index_commits_loses_no_acknowledged_log(
    small_fs: Callable[[int], Path], caplog: pytest.LogCaptureFixture, more: int
) -> None:
    """The index's filesystem is full while inserts go on being acknowledged: every
    commit on the interval fails, for as long as it stays full; space comes back while
    the store keeps running. ``more``: batches inserted while full and after."""
    caplog.set_level(logging.WARNING, logger="tael")
    data = small_fs(64) / "data"
    tael.Store(data, settings(0.2)).close()
    index_fs = small_fs(16)
    index_on_its_own_fs(data, index_fs)
    acked: list[int] = []
    b = 0
    store = tael.Store(data, settings(0.2))
    try:
        for _ in range(5):
            assert insert(store, b, acked)
            b += 1
        filler = fill(index_fs)
        deadline = time.monotonic() + 30
        while len(index_failures(caplog)) < 2 and time.monotonic() < deadline:  # a commit and a retry
            assert insert(store, b, acked)  # the WAL and the hot tier have room
            b += 1
            time.sleep(0.05)
        assert len(index_failures(caplog)) >= 2, "the index commits did not fail on the full filesystem"
        assert "No space left on device" in caplog.text
        for _ in range(5 + more // 2):
            assert insert(store, b, acked)
            b += 1
        filler.unlink()  # space comes back while the same store keeps running
        for _ in range(5 + more // 2):
            assert insert(store, b, acked)
            b += 1
        store.flush()
        assert any("indexed again" in r.getMessage() for r in caplog.records), "the index was not rebuilt"
        assert unsearchable(store, acked) == []
        assert store.stats().indexed_lsn == store.stats().applied_lsn
    finally:
        store.close()
    with tael.Store(data, settings(0.2)) as store:
        assert unsearchable(store, acked) == []
    code, report = check(data)
    assert code == 0 and report["problems"] == [], report


def test_a_full_disk_that_stays_full_fails_flush_and_close_keeps_the_rest_for_the_next_open(
    small_fs: Callable[[int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    """flush() raises StorageError (naming the index) while the disk stays full, close()
    neither raises nor hangs, and the next open (with space) indexes what was left."""
    caplog.set_level(logging.WARNING, logger="tael")
    mnt = small_fs(64)
    data = mnt / "data"
    acked: list[int] = []
    store = tael.Store(data, settings(3600.0))
    try:
        for b in range(10):
            assert insert(store, b, acked)
        store.query_logs(limit=1)  # a read waits until the hot tier holds them all
        filler = fill(mnt)
        for _ in range(2):  # the first attempt and a retry both fail
            with pytest.raises(tael.StorageError, match=r"full-text index .*cannot commit.*No space left"):
                store.flush()
    finally:
        store.close()  # with the disk still full: neither raises nor hangs
    assert any("closes" in r.getMessage() and "next open" in r.getMessage() for r in caplog.records)
    with _hot(data) as hot:
        assert (hot.indexed_lsn() or 0) < hot.applied_lsn(), "indexed_lsn passed records that are not indexed"
    filler.unlink()
    with tael.Store(data, settings(3600.0)) as store:
        assert unsearchable(store, acked) == []


# ---------------------------------------------------------------- tael check


def _store_with_text(data: Path) -> list[int]:
    acked: list[int] = []
    with tael.Store(data, tael.Settings(wal_segment_bytes=1 << 20)) as store:
        for b in range(6):
            assert insert(store, b, acked)
        store.insert_spans(
            [
                tael.Span(
                    trace_id=f"{n:032x}",
                    span_id=f"{n:016x}",
                    name="chat",
                    service="llm",
                    start_ns=T0 + n,
                    end_ns=T0 + n + 10,
                    attributes={"gen_ai.prompt": f"refund question {n} " + "context " * (200 if n % 2 else 1)},
                )
                for n in range(1, 21)
            ]
        )
    return acked


def _hot(data: Path) -> contextlib.closing[HotTier]:
    """The hot tier of a closed store, opened directly (to set up a lagging index)."""
    blobs = BlobStore(data / "blobs", level=3)
    return contextlib.closing(
        HotTier(data / "hot", map_size=256 << 20, sync=True, read_only=False, blobs=blobs, payloads=Payloads((), 1024))
    )


def _drop_documents_from(data: Path, lsn: int) -> None:
    """What the bug left behind: documents gone from a committed index whose recorded
    indexed LSN says they are there."""
    index = TextIndex(data / "index", read_only=False, heap_bytes=16 << 20)
    index.delete_from_lsn(lsn)
    index.commit()
    index.close()


def _log_lsns(data: Path) -> list[int]:
    with tael.Store(data, read_only=True) as store:
        return sorted({k[1] for k in _hot_log_keys(store)})


def _hot_log_keys(store: tael.Store) -> list[tuple[int, int, int]]:
    with store._hot.reader() as txn:
        return [k for k, _f, _lsn in store._hot.records(txn, "logs")]


def test_check_reports_documents_missing_from_the_index_and_rebuild_index_fixes_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acked = _store_with_text(data)
    code, report = check(data)
    assert code == 0, report
    index = report["index"]
    assert index["checked"] == {"spans": 20, "logs": 6 * BATCH} and index["missing"] == {"spans": 0, "logs": 0}

    third = _log_lsns(data)[3]
    _drop_documents_from(data, third)  # batches 3, 4, 5 and the spans after them
    code, report = check(data)
    assert code == 1
    (problem,) = report["problems"]
    assert problem["part"] == "index"
    assert problem["missing"] == {"spans": 20, "logs": 3 * BATCH}
    assert "tael rebuild-index" in problem["message"] and "text search misses them" in problem["message"]
    text = CliRunner().invoke(main, ["check", "--data", str(data)])
    assert text.exit_code == 1 and "index" in text.stdout and "tael rebuild-index" in text.stdout

    # a reopen does not bring them back (the recorded position says they are indexed) ...
    with tael.Store(data) as store:
        assert unsearchable(store, acked) == [3, 4, 5]
    # ... rebuild-index does
    assert CliRunner().invoke(main, ["rebuild-index", "--data", str(data)]).exit_code == 0
    code, report = check(data)
    assert code == 0 and report["problems"] == [], report
    with tael.Store(data) as store:
        assert unsearchable(store, acked) == []


def test_check_lag_the_wal_still_holds_is_a_note_and_the_next_open_indexes_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acked = _store_with_text(data)
    third = _log_lsns(data)[3]
    _drop_documents_from(data, third)
    with _hot(data) as hot:
        hot.set_indexed_lsn(third)  # as after a crash before the index commit
    code, report = check(data)
    assert code == 0, report
    assert any("behind the hot tier" in n and "next open" in n for n in report["notes"])
    with tael.Store(data) as store:
        assert unsearchable(store, acked) == []


def test_check_lag_the_wal_no_longer_holds_is_damage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store_with_text(data)
    first = _log_lsns(data)[0]
    with tael.Store(data, tael.Settings(wal_segment_bytes=4096)) as store:
        for b in range(6, 20):  # each in a WAL segment of its own, checkpointed away
            store.insert_logs(logs(b))
        store.flush()
        store.checkpoint()
    assert list_segments(data / "wal")[0][0] > first
    _drop_documents_from(data, first)
    with _hot(data) as hot:
        hot.set_indexed_lsn(first)  # lagging, and the WAL starts after it
    code, report = check(data)
    assert code == 1
    (problem,) = report["problems"]
    assert problem["part"] == "index" and "tael rebuild-index" in problem["message"]
    assert problem["missing"] == {"spans": 20, "logs": 20 * BATCH}


# ---------------------------------------------------------------- tael serve


def _otlp_logs(b: int) -> bytes:
    records = [
        {
            "timeUnixNano": str(T0 + b * 1000 + i),
            "severityNumber": 17,
            "body": {"stringValue": f"connection reset by upstream batch{b} rec{b}x{i}"},
        }
        for i in range(BATCH)
    ]
    doc = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
                "scopeLogs": [{"logRecords": records}],
            }
        ]
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize("freed", [True, False], ids=["space-back", "still-full"])
def test_tael_serve_stops_cleanly_on_sigterm_after_a_full_disk(small_fs: Callable[[int], Path], freed: bool) -> None:
    """SIGTERM after index commits failed on a full filesystem (the index's own, so
    ingest goes on), with the space back or still full: exit 0 within a generous
    30 s, not 1 ("An index writer was killed") and no hang; every acknowledged log is
    searchable after a reopen."""
    data = small_fs(64) / "data"
    conf = data.parent / "tael.toml"
    conf.write_text("hot_map_size_bytes = 268435456\nwal_segment_bytes = 4096\nindex_commit_interval_s = 0.2\n")
    tael.Store(data, tael.Settings.from_file(conf)).close()
    index_fs = small_fs(16)
    index_on_its_own_fs(data, index_fs)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tael", "--config", str(conf), "serve", "--data", str(data), "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()

    def index_failures() -> int:
        return sum(line.startswith("ERROR tael._search") for line in list(lines))

    acked: list[int] = []
    filler: Path | None = None
    try:
        wait_for(lambda: httpx.get(url + "/health/live").status_code == 200, "tael serve")

        def post(b: int) -> None:
            r = httpx.post(
                url + "/v1/logs", content=_otlp_logs(b), headers={"Content-Type": "application/json"}, timeout=60
            )
            assert r.status_code == 200, r.text  # the WAL and the hot tier have room
            acked.append(b)

        for b in range(5):
            post(b)
        filler = fill(index_fs)
        deadline = time.monotonic() + 30
        b = 5
        while index_failures() < 2 and time.monotonic() < deadline:  # a commit and a retry
            post(b)
            b += 1
            time.sleep(0.05)
        assert index_failures() >= 2, "the index commits did not fail on the full filesystem"
        if freed:
            filler.unlink()
            for b in range(1000, 1005):
                post(b)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("tael serve did not stop within 30 s of SIGTERM")
        reader.join(10)
        proc.stderr.close()
        if filler is not None and filler.exists():
            filler.unlink()
    err = "".join(lines)
    assert code == 0, err
    assert "Traceback" not in err, err
    with tael.Store(data, tael.Settings.from_file(conf)) as store:
        missing = [b for b in acked if len(store.query_logs(text=f"batch{b}", limit=BATCH + 1)) != BATCH]
    assert missing == []
