"""The parts' own check methods behind ``tael check`` (tael/_check.py): each must find
the damage it is there for. Real files throughout: an LMDB hot tier, Parquet cold
files, zstd blob files and a Tantivy index written by a real store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import tael
from tael._blobs import BlobStore, Payloads, digest_of
from tael._check import check_wal, index_coverage
from tael._cold import ColdFile, ColdTier, open_cold_tier
from tael._hot import HotTier
from tael._payloadkeys import PayloadKeys
from tael._search import DOC_LOG, DOC_SPAN, TextIndex
from tael._wal import FRAME_SIZE, SEGMENT_HEADER_SIZE, list_segments

SEC = 10**9
HOUR = 3600 * SEC
T0 = 1_700_000_000_000_000_000
SETTINGS = tael.Settings()
LONG = "the long prompt " * 100  # over payload_blob_min_bytes: kept in the blob store
N_SPANS, N_LOGS = 8, 30


def _spans() -> list[tael.Span]:
    return [
        tael.Span(
            trace_id=f"{n + 1:032x}",
            span_id=f"{n + 1:016x}",
            name="chat",
            service="llm",
            start_ns=T0 + 2 * HOUR + n * SEC,  # hot: after the compaction bound
            end_ns=T0 + 2 * HOUR + n * SEC + 1000,
            attributes={"gen_ai.prompt": f"{LONG} {n}" if n % 2 else f"short prompt {n}"},
        )
        for n in range(N_SPANS)
    ]


def _logs() -> list[tael.LogRecord]:
    # the first half goes cold (compacted), the rest stays hot
    return [
        tael.LogRecord(time_ns=T0 + (0 if i < N_LOGS // 2 else 2 * HOUR) + i, body=f"log {i}", service="api")
        for i in range(N_LOGS)
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("check") / "data"
    with tael.Store(data, SETTINGS) as store:
        store.insert_spans(_spans())
        store.insert_logs(_logs())
        store.compact(T0 + HOUR)
        store.flush()
    return data


@pytest.fixture
def data(built: Path, tmp_path: Path) -> Path:
    """A private copy of the store, to damage."""
    return Path(shutil.copytree(built, tmp_path / "data"))


def _blobs(data: Path) -> BlobStore:
    return BlobStore(data / "blobs", level=SETTINGS.blob_compression_level)


@contextmanager
def _hot(data: Path) -> Iterator[HotTier]:
    hot = HotTier(
        data / "hot",
        map_size=SETTINGS.hot_map_size_bytes,
        sync=False,
        read_only=True,
        blobs=_blobs(data),
        payloads=Payloads(SETTINGS.payload_attributes, SETTINGS.payload_blob_min_bytes),
    )
    try:
        yield hot
    finally:
        hot.close()


def _cold(data: Path) -> tuple[ColdTier, list[ColdFile]]:
    with _hot(data) as hot, hot.reader() as txn:
        manifest = hot.manifest(txn)
    return open_cold_tier(data, SETTINGS), manifest


# ---------------------------------------------------------------- blobs


def test_the_blob_catalog_names_every_blob_and_missing_finds_a_removed_file(data: Path) -> None:
    long_prompts = {f"{LONG} {n}" for n in range(N_SPANS) if n % 2}
    with _hot(data) as hot, hot.reader() as txn:
        digests = hot.blob_digests(txn)
    assert sorted(digests) == sorted(digest_of(text) for text in long_prompts)
    blobs = _blobs(data)
    assert blobs.missing(digests) == []
    victim = blobs.path(digests[1])
    victim.unlink()
    assert blobs.missing(digests) == [victim]
    absent = digest_of("never stored")
    assert blobs.missing([absent, *digests]) == [blobs.path(absent), victim]


# ---------------------------------------------------------------- cold files


def test_check_files_passes_every_file_of_a_sound_cold_tier(data: Path) -> None:
    cold, manifest = _cold(data)
    assert len(manifest) >= 1
    totals = {"files": 0, "rows": 0, "bytes": 0}
    assert cold.check_files(manifest, totals) == ([], [])
    assert totals == {
        "files": len(manifest),
        "rows": N_LOGS // 2,
        "bytes": sum(cold.path(f).stat().st_size for f in manifest),
    }


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("deleted", f"cold file is missing (the manifest lists {N_LOGS // 2} rows)"),
        ("truncated", "Parquet footer does not read: "),
        ("garbage", "Parquet footer does not read: "),
        ("fewer rows", f"holds 7 rows, the manifest says {N_LOGS // 2}"),
        ("more row groups", "row groups, the manifest says 1"),
    ],
)
def test_check_files_finds_a_damaged_cold_file(data: Path, damage: str, message: str) -> None:
    cold, manifest = _cold(data)
    (f,) = [f for f in manifest if f.dataset == "logs"]
    assert f.row_groups == 1
    victim = cold.path(f)
    if damage == "deleted":
        victim.unlink()
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "garbage":
        victim.write_bytes(b"not parquet at all" * 10)
    elif damage == "fewer rows":
        pq.write_table(pq.read_table(victim).slice(0, 7), victim)
    else:
        pq.write_table(pq.read_table(victim), victim, row_group_size=4)
    totals = {"files": 0, "rows": 0, "bytes": 0}
    damaged, stray = cold.check_files(manifest, totals)
    assert stray == []
    ((where, what),) = damaged
    assert where == str(victim) and message in what
    assert totals["files"] == len(manifest) and totals["rows"] == N_LOGS // 2


def test_check_files_lists_files_the_manifest_does_not_name(data: Path) -> None:
    cold, manifest = _cold(data)
    (f,) = [f for f in manifest if f.dataset == "logs"]
    stray = cold.path(f).with_name("left-by-a-crash.parquet")
    shutil.copyfile(cold.path(f), stray)
    damaged, strays = cold.check_files(manifest, {"files": 0, "rows": 0, "bytes": 0})
    assert damaged == [] and strays == [stray.relative_to(cold.root).as_posix()]


# ---------------------------------------------------------------- the full-text index


def _coverage(data: Path) -> dict[str, object]:
    index: list[TextIndex] = []

    def text_index() -> TextIndex:
        index.append(TextIndex(data / "index", read_only=True, heap_bytes=SETTINGS.index_writer_heap_bytes))
        return index[-1]

    with _hot(data) as hot:
        return index_coverage(hot, text_index, data / "wal", data / "index", PayloadKeys(SETTINGS.payload_attributes))


def _drop_documents(data: Path, signal: int) -> None:
    index = TextIndex(data / "index", read_only=False, heap_bytes=SETTINGS.index_writer_heap_bytes)
    index.delete_before(signal, T0 + 10 * HOUR)
    index.commit()
    index.close()


def test_index_coverage_of_a_sound_index(data: Path) -> None:
    cov = _coverage(data)
    assert cov["built"] is True
    assert cov["checked"] == {"spans": N_SPANS, "logs": N_LOGS // 2}  # the hot ones
    assert cov["missing"] == {"spans": 0, "logs": 0} and cov["examples"] == []


@pytest.mark.parametrize(("signal", "name", "n"), [(DOC_LOG, "logs", N_LOGS // 2), (DOC_SPAN, "spans", N_SPANS)])
def test_index_coverage_finds_records_without_a_document(data: Path, signal: int, name: str, n: int) -> None:
    _drop_documents(data, signal)
    cov = _coverage(data)
    assert cov["missing"] == {"spans": 0, "logs": 0} | {name: n}
    assert isinstance(cov["examples"], list) and len(cov["examples"]) == 5
    assert {e["signal"] for e in cov["examples"]} == {name}


def test_index_coverage_of_an_index_never_built(data: Path) -> None:
    (data / "index" / "meta.json").unlink()
    cov = _coverage(data)
    assert cov["built"] is False


# ---------------------------------------------------------------- the WAL, and all of it through Store.check


def test_check_wal_finds_a_damaged_frame(data: Path) -> None:
    counts, problems, notes = check_wal(data / "wal", None)
    assert counts["frames"] >= 2 and problems == [] and notes == []
    (_base, segment), *_ = list_segments(data / "wal")
    buf = bytearray(segment.read_bytes())
    buf[SEGMENT_HEADER_SIZE + FRAME_SIZE + 3] ^= 0xFF  # inside the first frame's payload
    segment.write_bytes(bytes(buf))
    _counts, problems, _notes = check_wal(data / "wal", None)
    assert [(p["part"], p["path"], p["offset"]) for p in problems] == [("wal", str(segment), SEGMENT_HEADER_SIZE)]


def test_store_check_reports_each_part(data: Path) -> None:
    with tael.Store(data, SETTINGS, read_only=True) as store:
        got = store.check()
    assert got["problems"] == [] and got["index"]["built"] is True
    assert got["hot"]["records"]["logs"] == N_LOGS // 2 and got["cold"]["rows"] == N_LOGS // 2
    assert got["blobs"] == {"catalog": N_SPANS // 2, "missing": 0}

    with _hot(data) as hot, hot.reader() as txn:
        digest = hot.blob_digests(txn)[0]
    _blobs(data).path(digest).unlink()
    cold, manifest = _cold(data)
    cold.path(manifest[0]).unlink()
    _drop_documents(data, DOC_LOG)
    with tael.Store(data, SETTINGS, read_only=True) as store:
        got = store.check()
    assert [p["part"] for p in got["problems"]] == ["cold", "blobs", "index"]
    assert got["blobs"] == {"catalog": N_SPANS // 2, "missing": 1}
    assert got["problems"][1]["path"] == str(_blobs(data).path(digest))


def test_cold_damage_found_before_an_io_error_is_still_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first cold file is missing; reading the second one's size fails with EIO: the
    check reports both, the missing file first, not only the failure."""
    data = tmp_path / "data"
    day = 86_400 * SEC
    with tael.Store(data, SETTINGS) as store:
        store.insert_logs(
            [tael.LogRecord(time_ns=T0 + d * day + i, body="b", service="api") for d in (0, 1) for i in (0, 1)]
        )
        store.compact(T0 + 2 * day)
    cold, manifest = _cold(data)
    assert len(manifest) == 2
    first, second = sorted(manifest, key=lambda f: f.file_id)
    cold.path(first).unlink()
    stored_size = ColdTier.stored_size

    def failing(self: ColdTier, f: ColdFile) -> int | None:
        if f.file_id == second.file_id:
            raise OSError(5, "injected I/O error")
        return stored_size(self, f)

    monkeypatch.setattr(ColdTier, "stored_size", failing)
    with tael.Store(data, SETTINGS, read_only=True) as store:
        got = store.check()
    assert [(p["part"], p["message"].split(" (")[0]) for p in got["problems"]] == [
        ("cold", "cold file is missing"),
        ("hot", "reading the hot tier failed: [Errno 5] injected I/O error"),
    ]
    assert got["problems"][0]["path"] == str(cold.path(first))
