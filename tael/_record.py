"""Record types: what each WAL record type holds, and how a batch becomes a frame and back.

The WAL (tael/_wal.py) moves frames: a type byte, a length, a checksum and a
payload, which it never interprets (its own ``PAD`` filler aside). This module
owns what the payload of each type is, as Prometheus keeps ``tsdb/record``
beside ``tsdb/wlog``: a msgpack list of records packed by tael/_codec.py, each
becoming one *row* (the fields the hot tier keys on, then the packed record).

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
from typing import Any

import pyarrow as pa

from . import _codec, _columns
from ._blobs import Payloads
from ._errors import CorruptionError, StorageError, ValidationError
from ._hot import text_keys
from ._keys import MAX_KEY_BYTES
from ._layout import ROW_PACKED
from ._settings import Settings
from ._wal import Frame, RecordType, decode_values
from ._wal import encode_frame as _frame_bytes

ROW_OF: dict[int, Callable[[bytes, Payloads], Any]] = {
    RecordType.SPANS: _codec.span_row,
    RecordType.LOGS: _codec.log_row,
    RecordType.METRICS: _codec.metric_row,
    RecordType.COMMENTS: _codec.comment_row,
}
"""The row decoder of each record type this version knows (PAD carries no records)."""


def as_batch(records: Any) -> Sequence[Any] | pa.Table | pa.RecordBatch:
    """An insert's argument as a sequence, or the pyarrow Table or RecordBatch it is
    (checked column-wise by ``encode_rows``): TypeError for a str, bytes or non-iterable."""
    if isinstance(records, (pa.Table, pa.RecordBatch)):
        return records
    if isinstance(records, (str, bytes)) or not hasattr(records, "__iter__"):
        raise TypeError(f"expected a list of records or a pyarrow Table, got {type(records).__name__}")
    return records if isinstance(records, (list, tuple)) else list(records)


def encode_rows(
    rtype: RecordType, records: Sequence[Any] | pa.Table | pa.RecordBatch, payloads: Payloads
) -> Sequence[Any]:
    """Validate a whole batch of ``tael.Span``/``LogRecord``/``MetricPoint`` (by
    ``rtype``), or a pyarrow Table or RecordBatch of them (docs/format/tables.md), then
    encode it into rows; raises ValidationError on the first bad record (row)."""
    if isinstance(records, (pa.Table, pa.RecordBatch)):
        signal = rtype.name.lower()
        return _columns.rows_from_batch(signal, _columns.check_table(signal, records, payloads), payloads)
    if rtype == RecordType.SPANS:
        return _codec.encode_spans(records, payloads)
    if rtype == RecordType.LOGS:
        return _codec.encode_logs(records, payloads)
    if rtype == RecordType.METRICS:
        return _codec.encode_metrics(records)
    raise ValueError(f"records of type {rtype!r} are not encoded from a batch")


def encode_frame(rtype: int, rows: Sequence[Any], settings: Settings) -> bytes:
    """One WAL frame holding the packed records of ``rows`` (compressed past
    ``Settings.wal_compress_min_bytes``); ValidationError when it would exceed
    ``Settings.wal_max_record_bytes``."""
    try:
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
    return rtype in ROW_OF


def frame_rows(frame: Frame, payloads: Payloads) -> list[Any]:
    """The hot-tier rows of one verified WAL frame (replay, shipping, repair).

    Raises CorruptionError (offset = the frame's LSN) when it does not decode,
    StorageError when its type is unknown to this version."""
    to_row = ROW_OF.get(frame.rtype)
    if to_row is None:
        raise StorageError(
            f"WAL record at LSN {frame.lsn} has type {frame.rtype}, unknown to this version of tael "
            "(written by a newer version?); nothing was changed"
        )
    try:
        return [to_row(v, payloads) for v in decode_values(frame)]
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise CorruptionError(
            f"WAL record at LSN {frame.lsn} verifies but does not decode: {exc!r}", offset=frame.lsn
        ) from exc


def rows_problem(rtype: int, rows: Sequence[Any]) -> str | None:
    """Why the hot tier could not apply ``rows`` (decoded from one frame of type
    ``rtype``): a key that would be empty or longer than LMDB allows, or a row of the
    wrong shape; None if nothing tells. A standby checks shipped frames with it
    before acknowledging them."""
    try:
        for i, row in enumerate(rows):
            for key in text_keys(rtype, row):
                if not 0 < len(key) <= MAX_KEY_BYTES:
                    return f"record {i} needs a {len(key)}-byte LMDB key (1 to {MAX_KEY_BYTES} allowed)"
    except (UnicodeEncodeError, TypeError, AttributeError, IndexError) as exc:
        return f"has a record of the wrong shape ({exc!r})"
    return None
