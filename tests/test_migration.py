"""A data directory written by the previous formats opens and answers as it did.

tests/data/format1-store.tar.gz was written by tael before the columnar data path
(WAL segment version 1, hot tier format 2, cold Parquet format 1), in the state a
kill -9 leaves (WAL frames the hot tier has not applied), with cold files of every
dataset, payload blobs, comments and a full-text index; tests/data/format1-expected.json.gz
holds what that code answered for it (tests/data/make_format1_store.py made both, once).
Whatever the current formats are, opening a copy must lose nothing: every answer equal,
after the open, after a reopen, read-only, and after everything is compacted.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import tael

from .data.make_format1_store import EXPECTED, HOUR, SETTINGS, T0, TARBALL, answers


def _plain(value: Any) -> Any:
    """As JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(value))


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return json.loads(gzip.decompress(EXPECTED.read_bytes()))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    with tarfile.open(TARBALL) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "data"


def test_the_old_directory_opens_replays_and_answers_as_before(data: Path, expected: dict[str, Any]) -> None:
    with tael.Store(data, SETTINGS) as store:
        assert store.replayed_records == 72  # the WAL frames the hot tier had not applied
        got = _plain(answers(store))
    for key in expected:
        assert got[key] == expected[key], key
    assert got.keys() == expected.keys()


def test_the_old_directory_answers_as_before_after_reopening_and_read_only(
    data: Path, expected: dict[str, Any]
) -> None:
    with tael.Store(data, SETTINGS) as store:
        store.flush()
    with tael.Store(data, SETTINGS) as store:
        assert store.replayed_records == 0
        assert _plain(answers(store)) == expected
    with tael.Store(data, SETTINGS, read_only=True) as reader:
        assert _plain(answers(reader)) == expected


def test_the_old_directory_compacts_and_answers_as_before(data: Path, expected: dict[str, Any]) -> None:
    with tael.Store(data, SETTINGS) as store:
        store.compact(T0 + 10 * 24 * HOUR)
        assert store.stats().hot_records == {"spans": 0, "logs": 0, "metrics": 0}
        got = _plain(answers(store))
    assert got == expected


def test_the_hot_tier_is_migrated_once_and_a_read_only_open_before_it_changes_nothing(data: Path) -> None:
    """A read-only open cannot migrate: it is refused, naming what to do, and leaves the
    files as they were; the first writable open moves every record into blocks (format 3)
    and drops the format-2 tables."""
    before = (data / "hot" / "data.mdb").read_bytes()  # lock.mdb is LMDB's reader table, not data
    with pytest.raises(tael.StorageError, match=r"format 2.*open the store for writing once"):
        tael.Store(data, SETTINGS, read_only=True)
    assert (data / "hot" / "data.mdb").read_bytes() == before
    with tael.Store(data, SETTINGS) as store:
        with store._hot.reader() as txn:
            names = {bytes(k) for k, _v in txn.cursor()}  # the main database names every table
            assert txn.get(b"format_version", db=store._hot.db["meta"]) == (3).to_bytes(8, "big")
            blocks = txn.stat(store._hot.db["span_blocks"])["entries"]
        assert not names & {b"spans", b"span_ids", b"span_lean", b"logs", b"log_trace", b"metrics", b"metric_lean"}
        assert blocks > 0
