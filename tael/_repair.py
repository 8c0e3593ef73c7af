"""Decoding WAL frames into hot-tier rows, and repair's second pass: records that
verify but cannot be applied.

A frame's checksum proves it is the bytes tael wrote, not that the hot tier can
apply them: a record written by an older version (before a validation rule
existed) or by a bug may hold a key LMDB refuses. Opening then stops with a
CorruptionError naming the frame's segment and offset, and ``tael.repair``
(after moving damaged bytes aside) replays the WAL into the hot tier as opening
does, moving each such frame to ``quarantine/`` and writing a PAD frame of the
same length in its place, so every other record is kept at its LSN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import _codec
from ._blobs import BlobStore, Payloads
from ._errors import CorruptionError, StorageError
from ._fsutil import atomic_write
from ._hot import Group, HotTier, UnappliableRecordError, text_keys
from ._keys import MAX_KEY_BYTES
from ._settings import Settings
from ._wal import SEGMENT_HEADER_SIZE, Frame, RecordType, decode_values, list_segments, pad_frame, parse_frame

log = logging.getLogger(__name__)

ROW_OF: dict[int, Callable[[bytes, Payloads], Any]] = {
    RecordType.SPANS: _codec.span_row,
    RecordType.LOGS: _codec.log_row,
    RecordType.METRICS: _codec.metric_row,
    RecordType.COMMENTS: _codec.comment_row,
}
_GROUP_RECORDS = 20_000  # records per hot-tier transaction while replaying

Unappliable = tuple[str, int, int, str, str]
"""(segment name, offset, length, quarantine copy, why it cannot be applied)"""


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


def frame_problem(frame: Frame, payloads: Payloads) -> str | None:
    """Why the hot tier could not apply a verified frame, as far as can be told
    without applying it (it does not decode, or a key would be empty or longer
    than LMDB allows), or None. For ``tael check``, which changes nothing."""
    if frame.rtype == RecordType.PAD or frame.rtype not in ROW_OF:
        return None  # an unknown type is reported by opening (written by a newer version)
    try:
        rows = frame_rows(frame, payloads)
    except CorruptionError as exc:
        return f"does not decode ({exc.__cause__!r})"
    return rows_problem(frame.rtype, rows)


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


class _Segment:
    """One segment's bytes, rewritten whenever a frame of it goes to quarantine."""

    def __init__(self, base: int, path: Path) -> None:
        self.base, self.path = base, path
        self.buf = bytearray(path.read_bytes())


def quarantine_unappliable(root: Path, settings: Settings, quarantine: Path) -> list[Unappliable]:
    """Apply every WAL record past the hot tier's applied LSN, as opening the store
    would, moving each one that cannot be decoded or applied to ``quarantine``
    and replacing it in its segment by a PAD frame of the same length. Run after
    ``repair_wal`` (every frame verifies) and under the directory lock."""
    waldir = root / "wal"
    segments = list_segments(waldir) if waldir.is_dir() else []
    if not segments:
        return []
    (root / "hot").mkdir(exist_ok=True)
    payloads = Payloads(settings.payload_attributes, settings.payload_blob_min_bytes)
    hot = HotTier(
        root / "hot",
        map_size=settings.hot_map_size_bytes,
        sync=False,
        read_only=False,
        blobs=BlobStore(root / "blobs", level=settings.blob_compression_level),
        payloads=payloads,
    )
    out: list[Unappliable] = []
    try:
        applied = hot.applied_lsn()
        pending: list[tuple[Group, _Segment, int, int]] = []  # (batch, segment, offset, length)
        count = 0
        for n, (base, path) in enumerate(segments):
            if n + 1 < len(segments) and segments[n + 1][0] <= applied:
                continue  # every record of it is applied
            seg = _Segment(base, path)
            pos = SEGMENT_HEADER_SIZE
            while pos < len(seg.buf):
                parsed = parse_frame(seg.buf, pos, settings.wal_max_record_bytes)
                if parsed is None:
                    raise CorruptionError(
                        f"WAL segment {path} is damaged at byte offset {pos}", path=str(path), offset=pos
                    )
                rtype, end, payload = parsed
                frame = Frame(base + pos, base + end, rtype, payload)
                start, pos = pos, end
                if frame.lsn < applied or rtype == RecordType.PAD:
                    continue
                try:
                    rows = frame_rows(frame, payloads)
                except CorruptionError as exc:
                    _apply(hot, pending, out, quarantine)
                    pending, count = [], 0
                    out.append(_quarantine(seg, start, end - start, quarantine, f"does not decode: {exc}"))
                    continue
                pending.append(((rtype, rows, frame.lsn, frame.end_lsn), seg, start, end - start))
                count += len(rows)
                if count >= _GROUP_RECORDS:
                    _apply(hot, pending, out, quarantine)
                    pending, count = [], 0
        _apply(hot, pending, out, quarantine)
        hot.sync()
    finally:
        hot.close()
    return out


def _apply(
    hot: HotTier, pending: list[tuple[Group, _Segment, int, int]], out: list[Unappliable], quarantine: Path
) -> None:
    """Apply ``pending`` batches in order; each one the hot tier refuses goes to quarantine."""
    while pending:
        try:
            hot.apply([batch for batch, _s, _o, _n in pending])
            return
        except UnappliableRecordError as exc:
            k = next(i for i, (batch, _s, _o, _n) in enumerate(pending) if batch[2] == exc.lsn)
            if k:
                hot.apply([batch for batch, _s, _o, _n in pending[:k]])
            _batch, seg, offset, length = pending[k]
            out.append(_quarantine(seg, offset, length, quarantine, f"cannot be applied: {exc.cause!r}"))
            pending = pending[k + 1 :]


def _quarantine(seg: _Segment, offset: int, length: int, quarantine: Path, why: str) -> Unappliable:
    """Copy one frame to ``quarantine`` and overwrite it in its segment with a PAD frame."""
    quarantine.mkdir(parents=True, exist_ok=True)
    target = quarantine / f"{seg.path.name}.{offset}.bin"
    atomic_write(target, bytes(seg.buf[offset : offset + length]))
    seg.buf[offset : offset + length] = pad_frame(length)
    atomic_write(seg.path, bytes(seg.buf))
    log.warning("WAL %s: the record at offset %d %s; moved to %s", seg.path, offset, why, target)
    return seg.path.name, offset, length, str(target), why
