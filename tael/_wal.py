"""The write-ahead log: framed, checksummed records in size-rotated segment files.

Positions are LSNs: a record's LSN is its segment's base LSN (the file name)
plus its byte offset in the file, so an LSN names a byte of the log and the
hot tier can record "applied up to here" as one integer. The byte layout is in
docs/format/wal.md.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import msgpack
import zstandard

from ._errors import CorruptionError, ReplicationError, StorageError
from ._fsutil import atomic_write, fsync_dir

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"TAELWAL\x00"
SEGMENT_VERSION = 1
SEGMENT_HEADER = SEGMENT_MAGIC + struct.pack("<II", SEGMENT_VERSION, 0)
SEGMENT_HEADER_SIZE = len(SEGMENT_HEADER)  # 16
FRAME_MAGIC = b"\xa7\x1e"
FRAME = struct.Struct("<2sBBII")  # magic, type, flags, payload length, crc32
FRAME_SIZE = FRAME.size  # 12
FLAG_ZSTD = 0x01
_SUFFIX = ".wal"


class RecordType(IntEnum):
    PAD = 0  # filler written by repair over a damaged region; carries no records
    SPANS = 1
    LOGS = 2
    METRICS = 3
    COMMENTS = 4
    SPAN_BLOCK = 5  # one block of spans (docs/format/blocks.md)
    LOG_BLOCK = 6
    METRIC_BLOCK = 7


@dataclass(slots=True, frozen=True)
class Frame:
    lsn: int
    end_lsn: int
    rtype: int
    payload: bytes  # decompressed


def encode_frame(rtype: int, values: list[bytes], *, compress_min: int, level: int, max_bytes: int) -> bytes:
    """Build one complete frame (header + payload) for a batch of packed records."""
    payload: bytes = msgpack.packb(values, use_bin_type=True)
    flags = 0
    if len(payload) >= compress_min:
        payload = zstandard.ZstdCompressor(level=level).compress(payload)
        flags = FLAG_ZSTD
    if len(payload) > max_bytes:
        raise ValueError(f"batch encodes to {len(payload)} bytes, above Settings.wal_max_record_bytes ({max_bytes})")
    head = struct.pack("<2sBBI", FRAME_MAGIC, rtype, flags, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def encode_raw_frame(rtype: int, payload: bytes, *, max_bytes: int) -> bytes:
    """One frame whose payload is ``payload`` as it is (a block: its heavy column is
    compressed already, so the frame is not)."""
    if len(payload) > max_bytes:
        raise ValueError(f"batch encodes to {len(payload)} bytes, above Settings.wal_max_record_bytes ({max_bytes})")
    head = struct.pack("<2sBBI", FRAME_MAGIC, rtype, 0, len(payload))
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def decode_values(frame: Frame) -> list[bytes]:
    values = msgpack.unpackb(frame.payload, raw=False, use_list=True)
    if not isinstance(values, list):
        raise CorruptionError(f"WAL frame at LSN {frame.lsn} does not hold a record list", offset=frame.lsn)
    return values


def parse_frame(buf: bytes | bytearray | memoryview, pos: int, max_bytes: int) -> tuple[int, int, bytes] | None:
    """The frame at ``pos`` as (type, end offset, decompressed payload), or None if it does not verify."""
    if pos + FRAME_SIZE > len(buf):
        return None
    magic, rtype, flags, length, crc = FRAME.unpack_from(buf, pos)
    end = pos + FRAME_SIZE + length
    if magic != FRAME_MAGIC or length > max_bytes or end > len(buf) or flags & ~FLAG_ZSTD:
        return None
    payload = bytes(buf[pos + FRAME_SIZE : end])
    if zlib.crc32(payload, zlib.crc32(buf[pos : pos + 8])) != crc:
        return None
    if flags & FLAG_ZSTD:
        try:
            payload = zstandard.ZstdDecompressor().decompress(payload)
        except zstandard.ZstdError:
            return None
    return rtype, end, payload


def next_valid_frame(buf: bytes, start: int, max_bytes: int) -> int | None:
    """Offset of the first verifying frame at or after ``start``, if any."""
    pos = buf.find(FRAME_MAGIC, start)
    while pos != -1:
        if parse_frame(buf, pos, max_bytes) is not None:
            return pos
        pos = buf.find(FRAME_MAGIC, pos + 1)
    return None


def segment_name(base_lsn: int) -> str:
    return f"{base_lsn:020d}{_SUFFIX}"


def list_segments(waldir: Path) -> list[tuple[int, Path]]:
    """(base LSN, path) of every segment, oldest first."""
    out = []
    for p in waldir.iterdir():
        if p.suffix == _SUFFIX and p.stem.isdigit():
            out.append((int(p.stem), p))
    out.sort()
    return out


def check_segment_header(path: Path, head: bytes) -> None:
    if head[:8] != SEGMENT_MAGIC:
        raise CorruptionError(f"{path}: not a tael WAL segment (bad magic at byte 0)", path=str(path), offset=0)
    (version,) = struct.unpack_from("<I", head, 8)
    if version != SEGMENT_VERSION:
        raise CorruptionError(f"{path}: unsupported WAL version {version}", path=str(path), offset=8)


class Wal:
    """Appends frames to the active segment and reads unapplied frames back on open.

    Not thread-safe by itself: the commit pipeline serialises appends.
    """

    def __init__(self, waldir: Path, *, segment_bytes: int, max_record_bytes: int, fsync: bool) -> None:
        self.dir = waldir
        self.segment_bytes = segment_bytes
        self.max_record_bytes = max_record_bytes
        self.fsync_each = fsync
        self._fd: int | None = None
        self._base = 0  # base LSN of the active segment
        self._size = 0  # bytes of the active segment known to be good
        self._dirty = False  # a failed write may have left bytes past _size
        self._unsynced = False
        self._bases: list[int] = []  # base LSN of every segment on disk, oldest first

    # ------------------------------------------------------------ recovery

    def recover(self, from_lsn: int, applied_lsn: int | None = None) -> Iterator[Frame]:
        """Yield every verifying frame at or after ``from_lsn``, oldest first.
        ``applied_lsn`` (default ``from_lsn``) is where appending resumes if the WAL
        ends before it; ``from_lsn`` may be earlier, to read applied frames again
        (the full-text index re-reads what it had not committed).

        A torn or zero-filled tail of the last segment is truncated with a
        warning; damage anywhere else raises CorruptionError and changes nothing.
        Leaves the last segment open for appending once exhausted.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        segments = list_segments(self.dir)
        self._bases = [base for base, _ in segments]
        for n, (base, path) in enumerate(segments):
            is_last = n == len(segments) - 1
            if not is_last and base + path.stat().st_size <= from_lsn:
                continue  # fully applied; frames before the applied LSN are never read
            buf = path.read_bytes()
            check_segment_header(path, buf[:SEGMENT_HEADER_SIZE])
            pos = max(SEGMENT_HEADER_SIZE, from_lsn - base)
            while pos < len(buf):
                parsed = parse_frame(buf, pos, self.max_record_bytes)
                if parsed is None:
                    if is_last and next_valid_frame(buf, pos + 1, self.max_record_bytes) is None:
                        log.warning(
                            "WAL %s: torn tail at byte %d (%d bytes) truncated: a crash interrupted an append",
                            path,
                            pos,
                            len(buf) - pos,
                        )
                        self._truncate_file(path, pos)
                        buf = buf[:pos]
                        break
                    raise CorruptionError(
                        f"WAL segment {path} is damaged at byte offset {pos} (LSN {base + pos}); "
                        "nothing was changed. Run tael.repair() to move the damage aside.",
                        path=str(path),
                        offset=pos,
                    )
                rtype, end, payload = parsed
                yield Frame(base + pos, base + end, rtype, payload)
                pos = end
            if is_last:
                self._open_active(base, path, len(buf))
        if applied_lsn is None:
            applied_lsn = from_lsn
        if self._fd is not None and self.end_lsn < applied_lsn:
            log.warning(
                "WAL %s ends at LSN %d, before the hot tier's applied LSN %d: segments were removed "
                "outside tael; starting a new segment at %d",
                self.dir,
                self.end_lsn,
                applied_lsn,
                applied_lsn,
            )
            os.close(self._fd)
            self._fd = None
        if self._fd is None:
            self._create_segment(max(applied_lsn, 0))

    def locate(self, lsn: int) -> tuple[Path, int]:
        """The segment file holding the byte at ``lsn``, and its offset in that file."""
        i = bisect_right(self._bases, lsn) - 1
        base = self._bases[max(i, 0)] if self._bases else 0
        return self.dir / segment_name(base), lsn - base

    def unappliable(self, lsn: int, cause: BaseException) -> CorruptionError:
        """The error for a frame at ``lsn`` that verifies but cannot be applied (or
        decoded): it names the segment and byte offset, like damage does, so that
        ``tael.repair`` can move it aside."""
        path, offset = self.locate(lsn)
        return CorruptionError(
            f"WAL segment {path} holds a record at byte offset {offset} (LSN {lsn}) that verifies but cannot be "
            f"applied to the hot tier ({cause}); it was not applied. Run tael.repair() (`tael repair DIR`) to "
            "move it to quarantine/: every other record is kept.",
            path=str(path),
            offset=offset,
        )

    @staticmethod
    def _truncate_file(path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_active(self, base: int, path: Path, size: int) -> None:
        self._fd = os.open(path, os.O_WRONLY)
        os.lseek(self._fd, size, os.SEEK_SET)
        self._base, self._size = base, size

    def _create_segment(self, base: int) -> None:
        path = self.dir / segment_name(base)
        atomic_write(path, SEGMENT_HEADER)
        self._open_active(base, path, SEGMENT_HEADER_SIZE)
        self._bases.append(base)

    # ------------------------------------------------------------ appending

    @property
    def end_lsn(self) -> int:
        return self._base + self._size

    def append(self, frames: list[bytes]) -> list[tuple[int, int]]:
        """Write a group of encoded frames with one write and (by setting) one fsync.

        Returns each frame's (lsn, end_lsn). On any OS error the segment is cut
        back to its last good size, so no partial frame is ever followed by
        later ones, and StorageError is raised; the Wal stays usable.
        """
        if self._fd is None:
            raise StorageError("the WAL is closed")
        total = sum(len(f) for f in frames)
        try:
            if self._dirty:
                self._restore()  # an earlier failed append could not be cut back then
            if self._size > SEGMENT_HEADER_SIZE and self._size + total > self.segment_bytes:
                self._rotate()
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            self._dirty = True
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if self.fsync_each:
                os.fdatasync(self._fd)
            else:
                self._unsynced = True
        except OSError as exc:
            try:
                self._restore()
            except OSError as again:
                log.error("WAL %s: could not cut back a failed append: %s", self._active_path(), again)
            raise StorageError(f"WAL append to {self._active_path()} failed: {exc}") from exc
        positions = []
        lsn = self.end_lsn
        for f in frames:
            positions.append((lsn, lsn + len(f)))
            lsn += len(f)
        self._size += total
        self._dirty = False
        return positions

    def append_at(self, frames: list[tuple[int, bytes]]) -> int:
        """Standby: write frames shipped by a leader at the leader's own LSNs, then fsync.

        A standby's WAL is a byte copy of its leader's: frames continue the active
        segment, and a frame one segment header past the end means the leader
        started a new segment there, so this one does too (a standby never rotates
        by size on its own). Frames before the end were received already and are
        skipped. Returns the new end LSN. Raises ReplicationError for a gap.
        """
        if self._fd is None:
            raise StorageError("the WAL is closed")
        plan: list[tuple[bool, bytes]] = []  # (starts a new segment, frame): checked whole before writing
        end = self.end_lsn
        for lsn, frame in frames:
            if lsn < end:
                continue
            if lsn != end and lsn != end + SEGMENT_HEADER_SIZE:
                raise ReplicationError(f"shipped WAL record at LSN {lsn} does not follow this WAL's end at LSN {end}")
            plan.append((lsn != end, frame))
            end = lsn + len(frame)
        entry = (self._base, self._size, list(self._bases))
        run: list[bytes] = []
        try:
            if self._dirty:
                self._restore()
            for rotate, frame in plan:
                if rotate:
                    self._write_run(run)
                    run = []
                    self._rotate()
                run.append(frame)
            self._write_run(run)
            os.fdatasync(self._fd)
        except OSError as exc:
            try:
                self._roll_back(*entry)
            except OSError as again:
                self._dirty = True  # cut back before the next append
                log.error("WAL %s: could not cut back a failed append: %s", self._active_path(), again)
            raise StorageError(f"WAL append to {self._active_path()} failed: {exc}") from exc
        return self.end_lsn

    def _roll_back(self, base: int, size: int, bases: list[int]) -> None:
        """Undo a failed ``append_at`` whole: delete the segments it started, reopen the
        one that was active and cut it back to its size then (all or nothing, so the
        WAL's end never runs past what the commit pipeline queued for the hot tier)."""
        if self._base != base:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            for b in self._bases:
                if b not in bases:
                    (self.dir / segment_name(b)).unlink(missing_ok=True)
            fsync_dir(self.dir)
            self._bases = bases
            self._open_active(base, self.dir / segment_name(base), size)
        self._size = size
        self._restore()

    def _write_run(self, run: list[bytes]) -> None:
        if not run:
            return
        assert self._fd is not None
        self._dirty = True
        view = memoryview(b"".join(run))
        total = len(view)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += total
        self._dirty = False

    def _restore(self) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, self._size)
        os.lseek(self._fd, self._size, os.SEEK_SET)
        os.fsync(self._fd)
        self._dirty = False

    def _active_path(self) -> Path:
        return self.dir / segment_name(self._base)

    def _rotate(self) -> None:
        """Seal the active segment and start the next; on failure the old one stays active."""
        assert self._fd is not None
        os.fsync(self._fd)
        self._unsynced = False
        base = self._base + self._size
        path = self.dir / segment_name(base)
        atomic_write(path, SEGMENT_HEADER)
        os.close(self._fd)
        self._open_active(base, path, SEGMENT_HEADER_SIZE)
        self._bases.append(base)

    def sync(self) -> None:
        if self._fd is not None and self._unsynced:
            os.fdatasync(self._fd)
            self._unsynced = False

    # ------------------------------------------------------------ checkpoint

    @property
    def segment_count(self) -> int:
        return len(self._bases)

    def removable(self, applied_lsn: int) -> bool:
        """Whether a checkpoint at ``applied_lsn`` would delete at least one segment."""
        bases = self._bases
        return len(bases) > 1 and bases[1] <= applied_lsn

    def remove_applied(self, applied_lsn: int) -> int:
        """Delete sealed segments whose every byte is below ``applied_lsn``; returns how many.

        A segment ends where the next one begins, so segment i is removable once
        segment i+1's base is at or below the applied LSN. The active segment is
        never removed.
        """
        removed = 0
        while len(self._bases) > 1 and self._bases[1] <= applied_lsn:
            (self.dir / segment_name(self._bases[0])).unlink(missing_ok=True)
            del self._bases[0]
            removed += 1
        if removed:
            fsync_dir(self.dir)
        return removed

    def close(self) -> None:
        if self._fd is not None:
            try:
                if self._unsynced:
                    os.fdatasync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


# ---------------------------------------------------------------- shipping


def read_frames(waldir: Path, from_lsn: int, to_lsn: int, max_bytes: int) -> list[tuple[int, bytes]]:
    """The raw frames (lsn, bytes as on disk) that start at or after ``from_lsn`` and
    end by ``to_lsn``, at least one and at most about ``max_bytes`` of them.

    ``from_lsn`` must be a frame boundary (a standby's end). Reads segment files
    directly, so it runs alongside appends; ``to_lsn`` must be durable. Raises
    ReplicationError when the position is no longer (or never was) in this WAL.
    """
    segments = list_segments(waldir)
    out: list[tuple[int, bytes]] = []
    if from_lsn >= to_lsn:
        return out
    if not segments or segments[0][0] > from_lsn:
        first = segments[0][0] if segments else None
        raise ReplicationError(
            f"WAL position {from_lsn} is no longer kept in {waldir} (oldest segment starts at {first}): "
            "the standby must be seeded again"
        )
    total = 0
    for n, (base, path) in enumerate(segments):
        nxt = segments[n + 1][0] if n + 1 < len(segments) else None
        if nxt is not None and nxt <= from_lsn:
            continue
        if base >= to_lsn:
            break
        pos = max(from_lsn - base, SEGMENT_HEADER_SIZE)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise ReplicationError(f"WAL segment {path} was removed while being shipped: {exc}") from exc
        try:
            while base + pos < to_lsn and (not out or total < max_bytes):
                head = os.pread(fd, FRAME_SIZE, pos)
                if len(head) < FRAME_SIZE:
                    break
                magic, _rtype, _flags, length, _crc = FRAME.unpack(head)
                if magic != FRAME_MAGIC:
                    raise ReplicationError(
                        f"WAL position {base + pos} in {path} is not the start of a record: "
                        "the standby's history differs from this WAL's"
                    )
                frame = head + os.pread(fd, length, pos + FRAME_SIZE)
                if len(frame) != FRAME_SIZE + length or base + pos + len(frame) > to_lsn:
                    break
                out.append((base + pos, frame))
                total += len(frame)
                pos += len(frame)
        finally:
            os.close(fd)
        if out and total >= max_bytes:
            break
    return out


def verify_frame(frame: bytes, lsn: int, max_record_bytes: int) -> Frame:
    """Parse one shipped frame, checking its checksum."""
    parsed = parse_frame(frame, 0, max_record_bytes)
    if parsed is None or parsed[1] != len(frame):
        raise ReplicationError(f"shipped WAL record at LSN {lsn} fails verification")
    rtype, end, payload = parsed
    return Frame(lsn, lsn + end, rtype, payload)


# ---------------------------------------------------------------- repair


Damage = tuple[str, int, int, str]  # segment name, offset, length, quarantine copy


def pad_frame(length: int) -> bytes:
    """A PAD frame occupying exactly ``length`` bytes (header included)."""
    payload = bytes(length - FRAME_SIZE)
    head = struct.pack("<2sBBI", FRAME_MAGIC, RecordType.PAD, 0, len(payload))
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def repair_wal(
    waldir: Path, quarantine: Path, *, max_record_bytes: int
) -> tuple[int, int, list[tuple[str, int, int, str]]]:
    """Verify every frame of every segment and move damaged regions aside.

    A damaged region runs from a frame that fails verification to the next
    frame that verifies (or the end of the segment). Its bytes are copied to
    ``quarantine`` first; then it is overwritten in place by a PAD frame of the
    same length, so the LSNs of the frames after it do not move, or, at the end
    of a segment or when shorter than a PAD frame's header, the segment is cut
    there, and everything after the cut (good frames included) is quarantined
    and reported with the region: a frame is never dropped unreported.
    Returns (segments checked, good frames, [(segment, offset, length, copy)]).
    """
    checked = good = 0
    damaged: list[Damage] = []
    if not waldir.is_dir():
        return 0, 0, damaged
    for _base, path in list_segments(waldir):
        checked += 1
        buf = bytearray(path.read_bytes())
        if bytes(buf[:8]) != SEGMENT_MAGIC:
            damaged.append(_quarantine(path, buf, 0, len(buf), quarantine))
            path.unlink()
            continue
        pos = SEGMENT_HEADER_SIZE
        changed = False
        while pos < len(buf):
            parsed = parse_frame(buf, pos, max_record_bytes)
            if parsed is not None:
                good += 1
                pos = parsed[1]
                continue
            nxt = next_valid_frame(bytes(buf), pos + 1, max_record_bytes)
            if nxt is not None and nxt - pos >= FRAME_SIZE:
                damaged.append(_quarantine(path, buf, pos, nxt - pos, quarantine))
                buf[pos:nxt] = pad_frame(nxt - pos)
                pos = nxt
            else:  # the segment ends here: what follows (good frames too) goes aside with it
                damaged.append(_quarantine(path, buf, pos, len(buf) - pos, quarantine))
                del buf[pos:]
            changed = True
        if changed:
            atomic_write(path, bytes(buf))
    return checked, good, damaged


def _quarantine(path: Path, buf: bytearray, offset: int, length: int, quarantine: Path) -> Damage:
    quarantine.mkdir(parents=True, exist_ok=True)
    target = quarantine / f"{path.name}.{offset}.bin"
    atomic_write(target, bytes(buf[offset : offset + length]))
    log.warning("WAL %s: %d damaged bytes at offset %d moved to %s", path, length, offset, target)
    return path.name, offset, length, str(target)
