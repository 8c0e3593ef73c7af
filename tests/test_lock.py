"""One writer process per directory; read-only opens work beside it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tael

from .conftest import make_log, make_span

HOLDER = textwrap.dedent(
    """
    import sys, tael
    store = tael.Store(sys.argv[1])
    n = 0
    for line in sys.stdin:
        n += 1
        store.insert_logs([tael.LogRecord(time_ns=n, body=f"from child {n}", service="child")])
        store.flush()  # applied, so readers in other processes see it
        print("ok", flush=True)
    store.close()
    """
)


def test_second_writer_is_refused_and_readers_see_the_writer(data_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write("write\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"

        with pytest.raises(tael.StoreLockedError, match=rf"pid {child.pid}") as info:
            tael.Store(data_dir)
        assert "read_only=True" in str(info.value)
        assert isinstance(info.value, RuntimeError)

        with tael.Store(data_dir, read_only=True) as reader:
            assert [r.body for r in reader.query_logs()] == ["from child 1"]
            child.stdin.write("write\n")
            child.stdin.flush()
            assert child.stdout.readline() == "ok\n"
            # The same read-only handle sees the writer's later commits.
            assert [r.body for r in reader.query_logs()] == ["from child 2", "from child 1"]
            with pytest.raises(tael.ReadOnlyError):
                reader.insert_logs([make_log()])
            with pytest.raises(tael.ReadOnlyError):
                reader.writer()
            assert reader.stats().signals["logs"].count == 2
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        child.stdout.close()
    # The writer is gone (cleanly); the directory can be opened for writing again.
    with tael.Store(data_dir) as store:
        assert store.stats().signals["logs"].count == 2


def test_lock_is_released_when_the_writer_is_killed(data_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("write\n")
    child.stdin.flush()
    assert child.stdout.readline() == "ok\n"
    with pytest.raises(tael.StoreLockedError):
        tael.Store(data_dir)
    child.kill()
    child.wait()
    child.stdin.close()
    child.stdout.close()
    with tael.Store(data_dir) as store:
        assert [r.body for r in store.query_logs()] == ["from child 1"]


def test_lock_within_one_process_and_idempotent_close(data_dir: Path) -> None:
    store = tael.Store(data_dir)
    with pytest.raises(tael.StoreLockedError):
        tael.Store(data_dir)
    store.insert_spans([make_span()])
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(tael.StoreClosedError):
        store.insert_spans([make_span()])
    with pytest.raises(tael.StoreClosedError):
        store.query_traces()
    with tael.Store(data_dir) as again:
        assert len(again.query_traces()) == 1


def test_read_only_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(tael.StorageError, match="not a tael data directory"):
        tael.Store(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()
