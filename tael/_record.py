"""Record types: what each WAL record type holds, and how a batch becomes a frame and back.

The WAL (tael/_wal.py) moves frames: a type byte, a length, a checksum and a
payload, which it never interprets (its own ``PAD`` filler aside). This module
owns what the payload of each type is, as Prometheus keeps ``tsdb/record``
beside ``tsdb/wlog``. Spans, logs and metric points travel as **blocks**: one
frame per batch whose payload is the batch column-wise (tael/_block.py), and
what the commit pipeline, the hot tier, the indexer and a standby take is that
:class:`~tael._block.Block`. A comment is a msgpack list of one packed record,
becoming one *row* (the fields the hot tier keys on, then the packed record).
Frames of the record types before blocks (``SPANS``, ``LOGS``, ``METRICS``: a
msgpack list of packed records, written by tael before format 3) are read back
as blocks, so replay and shipping see one kind of batch.

- :func:`encode_rows` validates and encodes a batch of records into rows (the
  caller's thread: bad input fails there, at once);
- :func:`encode_frame` frames a batch of rows for the WAL with the compression
  settings, refusing a batch above ``Settings.wal_max_record_bytes``;
- :func:`frame_rows` turns a verified frame back into rows (replay, shipping,
  the indexer reading the WAL again, repair);
- :func:`rows_problem` says why the hot tier could not apply rows (a standby
  checks shipped frames with it before acknowledging them).

Encoding is two calls, not one, because the background writer validates in its
callers' threads and frames merged batches later in its own, and because a
write checks its input, then the store (closed, read-only, standby), then the
frame's size, in that order.

A module of its own rather than part of tael/_codec.py: the dispatch needs the
WAL's framing and the hot tier's key layout (``text_keys``), and the hot tier
imports the codec, so the codec must not import them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import pyarrow as pa

from . import _block, _codec, _columns
from ._blobs import Payloads
from ._block import Block
from ._errors import CorruptionError, StorageError, ValidationError
from ._keys import MAX_KEY_BYTES
from ._layout import (
    LOG_BODY,
    METRIC_ATTRS,
    METRIC_KIND,
    METRIC_NAME,
    METRIC_SERVICE,
    ROW_PACKED,
    SPAN_ATTRS,
    SPAN_EVENTS,
)
from ._settings import Settings
from ._wal import Frame, RecordType, decode_values, encode_raw_frame
from ._wal import encode_frame as _frame_bytes

SIGNAL_OF: Final[dict[int, str]] = {
    RecordType.SPANS: "spans",
    RecordType.LOGS: "logs",
    RecordType.METRICS: "metrics",
    RecordType.SPAN_BLOCK: "spans",
    RecordType.LOG_BLOCK: "logs",
    RecordType.METRIC_BLOCK: "metrics",
}
"""The signal of each record type that carries a block (or, before blocks, records of it)."""

BLOCK_TYPE: Final[dict[str, int]] = {
    "spans": RecordType.SPAN_BLOCK,
    "logs": RecordType.LOG_BLOCK,
    "metrics": RecordType.METRIC_BLOCK,
}

_KNOWN: Final = frozenset(SIGNAL_OF) | {RecordType.COMMENTS}


def as_batch(records: Any) -> Sequence[Any] | pa.Table | pa.RecordBatch:
    """An insert's argument as a sequence, or the pyarrow Table or RecordBatch it is
    (checked column-wise by ``encode_rows``): TypeError for a str, bytes or non-iterable."""
    if isinstance(records, (pa.Table, pa.RecordBatch)):
        return records
    if isinstance(records, (str, bytes)) or not hasattr(records, "__iter__"):
        raise TypeError(f"expected a list of records or a pyarrow Table, got {type(records).__name__}")
    return records if isinstance(records, (list, tuple)) else list(records)


def _spans_block(records: Sequence[Any], payloads: Payloads) -> Block:
    flags = [
        payloads.span_flag(f[SPAN_ATTRS], f[SPAN_EVENTS]) if f[SPAN_ATTRS] or f[SPAN_EVENTS] else 0 for f in records
    ]
    return Block.of(_block.spans_batch(records, flags), "spans")


def _logs_block(records: Sequence[Any], payloads: Payloads) -> Block:
    flags = [payloads.log_flag(f[LOG_BODY]) if type(f[LOG_BODY]) is str and f[LOG_BODY] else 0 for f in records]
    return Block.of(_block.logs_batch(records, flags), "logs")


def _metrics_block(records: Sequence[Any]) -> Block:
    series = [_codec.series_key(f[METRIC_NAME], f[METRIC_SERVICE], f[METRIC_KIND], f[METRIC_ATTRS])[0] for f in records]
    return Block.of(_block.metrics_batch(records, series), "metrics")


def encode_rows(rtype: RecordType, records: Sequence[Any] | pa.Table | pa.RecordBatch, payloads: Payloads) -> Block:
    """Validate a whole batch of ``tael.Span``/``LogRecord``/``MetricPoint`` (by
    ``rtype``), or a pyarrow Table or RecordBatch of them (docs/format/tables.md), then
    encode it into a block; raises ValidationError on the first bad record (row)."""
    if isinstance(records, (pa.Table, pa.RecordBatch)):
        signal = SIGNAL_OF[rtype]
        return Block.of(_columns.check_table(signal, records, payloads), signal)
    if rtype == RecordType.SPANS:
        return Block.of(_columns.span_columns(records, payloads), "spans")
    if rtype == RecordType.LOGS:
        return Block.of(_columns.log_columns(records, payloads), "logs")
    if rtype == RecordType.METRICS:
        return Block.of(_columns.metric_columns(records), "metrics")
    raise ValueError(f"records of type {rtype!r} are not encoded from a batch")


_INSERT_TYPE: Final = {"spans": RecordType.SPANS, "logs": RecordType.LOGS, "metrics": RecordType.METRICS}


def checked_block(signal: str, batch: pa.RecordBatch) -> tuple[RecordType, Block]:
    """The record type and block of a column batch of ``signal`` (``_block.BLOCK_SCHEMAS``)
    whose records were checked one by one where they were made (tael's OTLP decoder):
    what ``encode_rows`` returns for them, without checking them a second time."""
    return _INSERT_TYPE[signal], Block.of(batch, signal)


def merge(batches: Sequence[Any]) -> Any:
    """Several encoded batches of one record type as one (the background writer commits
    what many calls queued as one frame)."""
    if len(batches) == 1:
        return batches[0]
    if isinstance(batches[0], Block):
        signal = batches[0].signal
        table = pa.Table.from_batches([b.batch() for b in batches])
        return Block.of(table.combine_chunks().to_batches()[0], signal)
    return [row for rows in batches for row in rows]


def encode_frame(rtype: int, rows: Any, settings: Settings) -> bytes:
    """One WAL frame holding a block, or the packed records of ``rows`` (comments,
    compressed past ``Settings.wal_compress_min_bytes``); ValidationError when it would
    exceed ``Settings.wal_max_record_bytes``."""
    try:
        if isinstance(rows, Block):
            return encode_raw_frame(BLOCK_TYPE[rows.signal], rows.data, max_bytes=settings.wal_max_record_bytes)
        return _frame_bytes(
            rtype,
            [r[ROW_PACKED] for r in rows],
            compress_min=settings.wal_compress_min_bytes,
            level=settings.wal_compress_level,
            max_bytes=settings.wal_max_record_bytes,
        )
    except ValueError as exc:
        raise ValidationError(f"batch too large: {exc}; split it") from None


def known_type(rtype: int) -> bool:
    """Whether this version of tael can decode records of type ``rtype``."""
    return rtype in _KNOWN


_RECORDS_BLOCK: Final[dict[int, Callable[[list[bytes], Payloads], Block]]] = {
    RecordType.SPANS: lambda values, payloads: _spans_block([_codec.unpackb(v) for v in values], payloads),
    RecordType.LOGS: lambda values, payloads: _logs_block([_codec.unpackb(v) for v in values], payloads),
    RecordType.METRICS: lambda values, payloads: _metrics_block([_codec.unpackb(v) for v in values]),
}


def frame_rows(frame: Frame, payloads: Payloads) -> Any:
    """What one verified WAL frame carries: a block (spans, logs, metric points, also from
    frames written before blocks), or comment rows (replay, shipping, repair).

    Raises CorruptionError (offset = the frame's LSN) when it does not decode,
    StorageError when its type is unknown to this version."""
    if frame.rtype not in _KNOWN:
        raise StorageError(
            f"WAL record at LSN {frame.lsn} has type {frame.rtype}, unknown to this version of tael "
            "(written by a newer version?); nothing was changed"
        )
    try:
        signal = SIGNAL_OF.get(frame.rtype)
        if frame.rtype in BLOCK_TYPE.values():
            assert signal is not None
            block = Block(frame.payload, signal)
            block.batch()  # every column decodes: a frame that verifies but does not is damage
            return block
        values = decode_values(frame)
        if signal is not None:
            return _RECORDS_BLOCK[frame.rtype](values, payloads)
        return [_codec.comment_row(v, payloads) for v in values]
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, CorruptionError, pa.ArrowException) as exc:
        raise CorruptionError(
            f"WAL record at LSN {frame.lsn} verifies but does not decode: {exc!r}", offset=frame.lsn
        ) from exc


def block_keys(block: Block) -> list[bytes]:
    """The keys holding record text that storing ``block`` writes; every other key it
    writes is fixed-width. Raises UnicodeEncodeError for text that cannot be encoded."""
    if block.signal == "spans":  # services, operations
        pairs = set(zip(block.column("service").to_pylist(), block.column("name").to_pylist(), strict=True))
        keys = []
        for service, name in pairs:
            keys += [service.encode(), service.encode() + b"\x00" + name.encode()]
        return keys
    if block.signal == "metrics":  # series
        series = set(zip(block.column("name").to_pylist(), block.column("series_id").to_pylist(), strict=True))
        return [name.encode() + b"\x00" + sid for name, sid in series]
    return []


def rows_problem(rtype: int, rows: Any) -> str | None:
    """Why the hot tier could not apply ``rows`` (decoded from one frame of type
    ``rtype``): a key that would be empty or longer than LMDB allows, or a batch of the
    wrong shape; None if nothing tells. A standby checks shipped frames with it
    before acknowledging them."""
    if not isinstance(rows, Block):
        return None
    try:
        for key in block_keys(rows):
            if not 0 < len(key) <= MAX_KEY_BYTES:
                return f"needs a {len(key)}-byte LMDB key (1 to {MAX_KEY_BYTES} allowed)"
    except (
        UnicodeEncodeError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        CorruptionError,
        pa.ArrowException,
    ) as exc:
        return f"has a record of the wrong shape ({exc!r})"
    return None
