"""``tael.repair``: moving damaged WAL aside, and its second pass, records that
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
import time
from pathlib import Path

from ._blobs import BlobStore, Payloads
from ._errors import CorruptionError, StorageError
from ._fsutil import DirLock, atomic_write
from ._hot import HotTier, UnappliableRecordError
from ._layout import Group
from ._models import DamagedRegion, RepairReport
from ._record import frame_rows, known_type, rows_problem
from ._settings import Settings
from ._wal import SEGMENT_HEADER_SIZE, Frame, RecordType, list_segments, pad_frame, parse_frame, repair_wal

log = logging.getLogger(__name__)

_GROUP_RECORDS = 20_000  # records per hot-tier transaction while replaying

Unappliable = tuple[str, int, int, str, str]
"""(segment name, offset, length, quarantine copy, why it cannot be applied)"""


def repair(path: str | Path, settings: Settings | None = None) -> RepairReport:
    """Move damaged parts of a store's WAL into ``<data>/quarantine/<time>/`` so it opens again.

    Takes the writer lock (the store must not be open elsewhere). Everything
    that verifies is kept, at its original position; the report lists each
    damaged region, whose records could not be recovered. A second pass applies
    the WAL to the hot tier as opening does and moves aside each record that
    verifies but cannot be applied (written by an older version, or a bug:
    opening names it with a CorruptionError); its region's ``reason`` says why.
    """
    root = Path(path)
    if not root.is_dir():
        raise StorageError(f"{root} is not a directory")
    s = settings if settings is not None else Settings()
    lock = DirLock(root)
    lock.acquire()
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        quarantine = root / "quarantine" / stamp
        checked, good, damaged = repair_wal(root / "wal", quarantine, max_record_bytes=s.wal_max_record_bytes)
        unappliable = quarantine_unappliable(root, s, quarantine)
    finally:
        lock.release()
    regions = [DamagedRegion(segment=seg, offset=off, length=n, quarantined_to=to) for seg, off, n, to in damaged]
    regions += [
        DamagedRegion(segment=seg, offset=off, length=n, quarantined_to=to, reason=why)
        for seg, off, n, to, why in unappliable
    ]
    return RepairReport(
        segments_checked=checked,
        frames_ok=good - len(unappliable),
        damaged=regions,
        quarantine_dir=str(quarantine) if regions else None,
    )


def frame_problem(frame: Frame, payloads: Payloads) -> str | None:
    """Why the hot tier could not apply a verified frame, as far as can be told
    without applying it (it does not decode, or a key would be empty or longer
    than LMDB allows), or None. For ``tael check``, which changes nothing."""
    if frame.rtype == RecordType.PAD or not known_type(frame.rtype):
        return None  # an unknown type is reported by opening (written by a newer version)
    try:
        rows = frame_rows(frame, payloads)
    except CorruptionError as exc:
        return f"does not decode ({exc.__cause__!r})"
    return rows_problem(frame.rtype, rows)


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
            k = next(i for i, ((_t, _rows, lsn, _end), _s, _o, _n) in enumerate(pending) if lsn == exc.lsn)
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
