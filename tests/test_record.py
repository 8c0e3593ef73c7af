"""The record codec's dispatch (tael/_record.py): a batch becomes rows and one WAL
frame, and a verified frame becomes the same rows again; a batch too large for one
frame is refused before anything is written, after the store itself is checked."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import tael
from tael import _codec
from tael._blobs import Payloads
from tael._block import RECORDS_OF, Block
from tael._errors import CorruptionError, StorageError
from tael._record import BLOCK_TYPE, as_batch, encode_frame, encode_rows, frame_rows, known_type, rows_problem
from tael._wal import RecordType, encode_raw_frame, verify_frame
from tael._wal import encode_frame as encode_values_frame

from .conftest import make_log, make_point, make_span

SETTINGS = tael.Settings()
PAYLOADS = Payloads(SETTINGS.payload_attributes, SETTINGS.payload_blob_min_bytes)

BATCHES: dict[RecordType, Callable[[], Sequence[Any]]] = {
    RecordType.SPANS: lambda: [make_span(attributes={"n": i, "text": "y" * 50}) for i in range(40)],
    RecordType.LOGS: lambda: [make_log(body=f"log {i} " + "z" * 400, time_ns=i + 1) for i in range(40)],
    RecordType.METRICS: lambda: [make_point(value=float(i), time_ns=i + 1) for i in range(40)],
}


SIGNAL = {RecordType.SPANS: "spans", RecordType.LOGS: "logs", RecordType.METRICS: "metrics"}
ENCODE: dict[RecordType, Callable[[Sequence[Any]], list[Any]]] = {
    RecordType.SPANS: lambda xs: _codec.encode_spans(xs, PAYLOADS),
    RecordType.LOGS: lambda xs: _codec.encode_logs(xs, PAYLOADS),
    RecordType.METRICS: _codec.encode_metrics,
}


def _records(block: Block) -> list[list[Any]]:
    return RECORDS_OF[block.signal](block.batch(), None)


@pytest.mark.parametrize("rtype", list(BATCHES), ids=lambda t: t.name.lower())
def test_a_batch_becomes_one_block_frame_and_the_frame_the_same_records(rtype: RecordType) -> None:
    batch = BATCHES[rtype]()
    block = encode_rows(rtype, batch, PAYLOADS)
    assert isinstance(block, Block) and len(block) == len(batch)
    frame = verify_frame(encode_frame(rtype, block, SETTINGS), 4096, SETTINGS.wal_max_record_bytes)
    assert (frame.lsn, frame.rtype) == (4096, BLOCK_TYPE[SIGNAL[rtype]])
    back = frame_rows(frame, PAYLOADS)
    assert isinstance(back, Block) and back.signal == SIGNAL[rtype]
    want = [_codec.unpackb(r[-1]) for r in ENCODE[rtype](batch)]  # the records tael encoded before blocks
    assert _records(back) == _records(block) == want
    assert known_type(frame.rtype) and rows_problem(frame.rtype, back) is None


@pytest.mark.parametrize("compress_min", [0, 1 << 30], ids=["compressed", "plain"])
@pytest.mark.parametrize("rtype", list(BATCHES), ids=lambda t: t.name.lower())
def test_a_frame_written_before_blocks_reads_back_as_a_block(rtype: RecordType, compress_min: int) -> None:
    """WAL segments of a store written by an earlier tael (a msgpack list of packed records
    per frame) replay into the same records."""
    batch = BATCHES[rtype]()
    packed = [r[-1] for r in ENCODE[rtype](batch)]
    raw = encode_values_frame(rtype, packed, compress_min=compress_min, level=1, max_bytes=1 << 30)
    frame = verify_frame(raw, 16, 1 << 30)
    block = frame_rows(frame, PAYLOADS)
    assert isinstance(block, Block) and _records(block) == [_codec.unpackb(v) for v in packed]
    assert known_type(rtype)


def test_a_comment_frame_decodes_to_its_row() -> None:
    row = _codec.encode_comment("ab" * 16, "looks slow", "ana", None, 123)
    frame = verify_frame(encode_frame(RecordType.COMMENTS, [row], SETTINGS), 0, SETTINGS.wal_max_record_bytes)
    assert frame_rows(frame, PAYLOADS) == [row]


def test_an_unknown_type_and_an_undecodable_frame_are_named() -> None:
    unknown = verify_frame(encode_raw_frame(9, b"\x90", max_bytes=1 << 20), 77, SETTINGS.wal_max_record_bytes)
    assert not known_type(9)
    with pytest.raises(StorageError, match="LSN 77 has type 9, unknown"):
        frame_rows(unknown, PAYLOADS)
    for garbage in (b"\xc1not msgpack", _codec.packb({"v": 1, "n": 3, "c": {}})):
        frame = verify_frame(encode_raw_frame(RecordType.LOG_BLOCK, garbage, max_bytes=1 << 20), 88, 1 << 20)
        with pytest.raises(CorruptionError, match="LSN 88 verifies but does not decode") as info:
            frame_rows(frame, PAYLOADS)
        assert info.value.offset == 88


def test_a_block_the_hot_tier_could_not_key_is_named() -> None:
    block = encode_rows(RecordType.SPANS, [make_span()], PAYLOADS)
    batch = block.batch()
    bad = batch.set_column(batch.schema.get_field_index("service"), "service", pa.array([""], pa.string()))
    assert rows_problem(RecordType.SPAN_BLOCK, Block.of(bad, "spans")) == ("needs a 0-byte LMDB key (1 to 511 allowed)")


def test_an_insert_takes_a_list_of_records_only() -> None:
    assert as_batch((1, 2)) == (1, 2)
    assert as_batch(iter([1, 2])) == [1, 2]
    for bad in ("spans", b"spans", 3):
        with pytest.raises(TypeError, match="expected a list of records"):
            as_batch(bad)


def test_a_batch_too_large_for_one_frame_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    settings = tael.Settings(wal_max_record_bytes=4096, wal_compress_min_bytes=1 << 20)
    big = [make_log(body=os.urandom(500).hex(), time_ns=i + 1) for i in range(10)]  # bodies that do not compress
    with tael.Store(tmp_path / "data", settings) as store:
        with pytest.raises(tael.ValidationError, match=r"batch too large: .*split it"):
            store.insert_logs(big)
        assert store.insert_logs(big[:2]) == 2
        with store.writer() as writer:  # a background writer's merged batch is framed the same way
            writer.write_logs(big)
        assert writer.failed == 10 and writer.written == 0
        assert store.stats().signals["logs"].count == 2
    closed = tael.Store(tmp_path / "data", settings)
    closed.close()
    with pytest.raises(tael.StoreClosedError):  # the store is checked before the frame's size
        closed.insert_logs(big)
    with pytest.raises(tael.ValidationError, match="record 0: field 'severity_number'"):  # the records first
        closed.insert_logs([make_log(severity_number=99)])
