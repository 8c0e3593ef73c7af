"""Table-driven WAL damage: torn and zero-filled tails are cut with a warning; damage before the
tail refuses to open, names segment and offset, and changes nothing; repair moves it aside."""

from __future__ import annotations

import logging
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

import tael
from tael._wal import FRAME, FRAME_SIZE, SEGMENT_HEADER_SIZE, list_segments

BATCHES = 6


def _logs(b: int) -> list[tael.LogRecord]:
    return [tael.LogRecord(time_ns=b * 100 + i, body=f"{b}/{i} " + "x" * 50, service="s") for i in range(10)]


def frames(segment: Path) -> list[tuple[int, int]]:
    """(offset, total length) of every frame in a segment."""
    buf = segment.read_bytes()
    out, pos = [], SEGMENT_HEADER_SIZE
    while pos < len(buf):
        _m, _t, _f, length, _c = FRAME.unpack_from(buf, pos)
        out.append((pos, FRAME_SIZE + length))
        pos += FRAME_SIZE + length
    return out


def build(data: Path, settings: tael.Settings | None = None) -> list[Path]:
    """A store whose hot tier is gone, so opening must replay (and verify) the whole WAL."""
    with tael.Store(data, settings) as store:
        for b in range(BATCHES):
            store.insert_logs(_logs(b))
    shutil.rmtree(data / "hot")
    return [p for _b, p in list_segments(data / "wal")]


def batches_present(data: Path) -> set[int]:
    with tael.Store(data) as store:
        bodies = [r.body for r in store.query_logs(limit=1000)]
    got: dict[int, int] = {}
    for body in bodies:
        b = int(body.split("/")[0])
        got[b] = got.get(b, 0) + 1
    assert all(n == 10 for n in got.values()), got  # batches are whole or absent
    return set(got)


def write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


Tail = Callable[[Path, list[tuple[int, int]]], None]

TAIL_CASES: dict[str, Tail] = {
    "torn after 1 byte": lambda p, fr: truncate(p, fr[-1][0] + 1),
    "torn inside header": lambda p, fr: truncate(p, fr[-1][0] + 7),
    "torn after header": lambda p, fr: truncate(p, fr[-1][0] + FRAME_SIZE),
    "torn mid payload": lambda p, fr: truncate(p, fr[-1][0] + fr[-1][1] // 2),
    "torn one byte short": lambda p, fr: truncate(p, fr[-1][0] + fr[-1][1] - 1),
    "last frame zero-filled": lambda p, fr: write_at(p, fr[-1][0], bytes(fr[-1][1])),
    "last frame bad checksum": lambda p, fr: write_at(p, fr[-1][0] + fr[-1][1] - 3, b"\xff\xfe\xfd"),
}


@pytest.mark.parametrize("case", sorted(TAIL_CASES))
def test_torn_tail_is_truncated_with_a_warning(tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    (segment,) = build(data)
    fr = frames(segment)
    TAIL_CASES[case](segment, fr)
    with caplog.at_level(logging.WARNING, logger="tael"):
        assert batches_present(data) == set(range(BATCHES - 1))
    assert any("torn tail" in r.message for r in caplog.records)
    assert segment.stat().st_size == fr[-1][0]
    # The store keeps working after the cut, and a reopen sees the new write.
    with tael.Store(data) as store:
        store.insert_logs(_logs(BATCHES))
    shutil.rmtree(data / "hot")
    assert batches_present(data) == set(range(BATCHES + 1)) - {BATCHES - 1}


def test_zero_filled_tail_after_the_last_frame(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (segment,) = build(data)
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(bytes(8192))
    assert batches_present(data) == set(range(BATCHES))
    assert segment.stat().st_size == size


Damage = Callable[[Path, list[tuple[int, int]]], None]


def _set_length(p: Path, fr: list[tuple[int, int]], n: int, value: int) -> None:
    write_at(p, fr[n][0] + 4, struct.pack("<I", value))


MIDDLE_CASES: dict[str, tuple[Damage, int]] = {
    "bad checksum": (lambda p, fr: write_at(p, fr[2][0] + 8, b"\x00\x00\x00\x00"), 2),
    "flipped payload byte": (lambda p, fr: write_at(p, fr[1][0] + FRAME_SIZE + 5, b"\xaa"), 1),
    "bad length (huge)": (lambda p, fr: _set_length(p, fr, 3, 0xFFFF_FFF0), 3),
    "bad length (short)": (lambda p, fr: _set_length(p, fr, 2, 3), 2),
    "bad type byte": (lambda p, fr: write_at(p, fr[2][0] + 2, b"\x09"), 2),
    "garbage in the middle": (lambda p, fr: write_at(p, fr[3][0] + 20, b"\x5a" * 40), 3),
    "zeroed middle frame": (lambda p, fr: write_at(p, fr[1][0], bytes(fr[1][1])), 1),
}


@pytest.mark.parametrize("case", sorted(MIDDLE_CASES))
def test_damage_before_the_tail_refuses_to_open_and_changes_nothing(tmp_path: Path, case: str) -> None:
    data = tmp_path / "data"
    (segment,) = build(data)
    fr = frames(segment)
    damage, n = MIDDLE_CASES[case]
    damage(segment, fr)
    before = segment.read_bytes()
    with pytest.raises(tael.CorruptionError) as info:
        tael.Store(data)
    assert info.value.path == str(segment)
    assert info.value.offset == fr[n][0]
    assert segment.name in str(info.value) and f"offset {fr[n][0]}" in str(info.value)
    assert segment.read_bytes() == before
    assert not (data / "quarantine").exists()
    # The directory is not left locked by the failed open.
    with pytest.raises(tael.CorruptionError):
        tael.Store(data)

    report = tael.repair(data)
    assert [(d.segment, d.offset) for d in report.damaged] == [(segment.name, fr[n][0])]
    (region,) = report.damaged
    assert region.length == fr[n][1]
    assert Path(region.quarantined_to).read_bytes() == before[fr[n][0] : fr[n][0] + fr[n][1]]
    assert report.frames_ok == BATCHES - 1
    # Everything but the damaged batch is back, at its original position.
    assert batches_present(data) == set(range(BATCHES)) - {n}
    assert tael.repair(data).clean


def split(segment: Path, at: int) -> tuple[Path, Path]:
    """Split a segment after its ``at`` first frames into two consecutive segments."""
    buf = segment.read_bytes()
    cut = frames(segment)[at][0]
    base = int(segment.stem)
    second = segment.with_name(f"{base + cut:020d}.wal")
    segment.write_bytes(buf[:cut])
    second.write_bytes(buf[:SEGMENT_HEADER_SIZE] + buf[cut:])
    return segment, second


def test_damage_in_an_earlier_segment_refuses_to_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (segment,) = build(data)
    first, _second = split(segment, 3)
    fr = frames(first)
    truncate(first, fr[-1][0] + 5)  # a torn tail, but not in the last segment: corruption
    with pytest.raises(tael.CorruptionError) as info:
        tael.Store(data)
    assert info.value.path == str(first) and info.value.offset == fr[-1][0]
    report = tael.repair(data)
    assert [(d.segment, d.offset, d.length) for d in report.damaged] == [(first.name, fr[-1][0], 5)]
    assert batches_present(data) == set(range(BATCHES)) - {2}


def test_damage_in_already_applied_frames_does_not_block_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data) as store:
        for b in range(BATCHES):
            store.insert_logs(_logs(b))
    ((_base, segment),) = list_segments(data / "wal")
    fr = frames(segment)
    write_at(segment, fr[1][0] + FRAME_SIZE, b"\x00" * 8)
    # Those frames are applied and synced; replay never reads them, so the store opens...
    assert batches_present(data) == set(range(BATCHES))
    # ...but a full check still finds the damage.
    report = tael.repair(data)
    assert [d.offset for d in report.damaged] == [fr[1][0]]


def test_bad_segment_header_refuses_to_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (segment,) = build(data)
    write_at(segment, 0, b"NOTAWAL!")
    with pytest.raises(tael.CorruptionError, match="not a tael WAL segment"):
        tael.Store(data)


def test_a_short_damaged_region_before_good_frames_moves_them_to_quarantine_too(tmp_path: Path) -> None:
    """A region too short for a PAD frame (here, 5 stray bytes between two frames) cannot be
    covered in place, so repair cuts the segment there: the good frames after it must go to
    quarantine with it and be reported, never deleted unreported."""
    data = tmp_path / "data"
    (segment,) = build(data)
    fr = frames(segment)
    at = fr[2][0]
    buf = segment.read_bytes()
    segment.write_bytes(buf[:at] + b"\x01\x02\x03\x04\x05" + buf[at:])
    damaged = segment.read_bytes()

    report = tael.repair(data)
    (region,) = report.damaged
    assert (region.segment, region.offset, region.length) == (segment.name, at, len(damaged) - at)
    assert Path(region.quarantined_to).read_bytes() == damaged[at:]  # the stray bytes and every frame after
    assert segment.read_bytes() == buf[:at]
    assert batches_present(data) == {0, 1}
    assert tael.repair(data).clean
