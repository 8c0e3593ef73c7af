"""Reading a block's bytes without copying them: walkers over the msgpack layout tael
writes (docs/format/blocks.md, "Bytes" and "Heavy columns").

msgpack copies every bin it decodes; a read of a few columns and rows of a block needs
none of them whole (the heavy frame alone is ~0.8 MB for 10,000 spans). These walkers
return each bin as a memoryview of the block's bytes, and None for bytes laid out
otherwise (another writer, damage, or a string column of many values, which msgpack
decodes faster): the caller then decodes them with msgpack, which also says what is
wrong with bad bytes.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack

_U8, _U16, _U32 = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I")


def _walk_heavy(data: bytes) -> dict[str, list[Any]] | None:
    """The heavy columns' map (docs/format/blocks.md, "Heavy columns") with each bin a
    memoryview of ``data``: msgpack would copy every bin (~0.1 ms for a 10,000-span
    block), and a read of a few rows needs none of them whole. None when the bytes are
    not laid out as tael writes them (the caller then lets msgpack decode them)."""
    view = memoryview(data)
    end = len(data)

    def size(at: int, fix_base: int, fix_max: int, t8: int) -> tuple[int, int]:
        """(length, position after the header) of a map (t8 = map16 - 1), str or bin header."""
        tag = data[at]
        if fix_base <= tag <= fix_base + fix_max:
            return tag - fix_base, at + 1
        if tag == t8:
            return _U8.unpack_from(data, at + 1)[0], at + 2
        if tag == t8 + 1:
            return _U16.unpack_from(data, at + 1)[0], at + 3
        if tag == t8 + 2:
            return _U32.unpack_from(data, at + 1)[0], at + 5
        raise ValueError(tag)

    try:
        count, at = size(0, 0x80, 15, 0xDD)  # fixmap; 0xde map16, 0xdf map32 (no map8: 0xdd is array32)
        if data[0] == 0xDD:
            return None
        out: dict[str, list[Any]] = {}
        for _ in range(count):
            klen, at = size(at, 0xA0, 31, 0xD9)
            key = str(view[at : at + klen], "utf-8")
            at += klen
            if data[at] != 0x93:  # an array of 3
                return None
            at += 1
            entry: list[Any] = []
            for _part in range(3):
                if data[at] == 0xC0:
                    entry.append(None)
                    at += 1
                    continue
                blen, at = size(at, 0x100, 0, 0xC4)  # bin8/16/32 only (no fix form)
                if at + blen > end:
                    return None
                entry.append(view[at : at + blen])
                at += blen
            out[key] = entry
        return out if at == end else None
    except (ValueError, IndexError, struct.error, UnicodeDecodeError):
        return None


_MANY_VALUES: Final = 64  # a string column with more distinct values is left to msgpack (a Python loop per value)


def walk_body(data: bytes, versions: frozenset[int]) -> tuple[int, dict[str, list[Any]], Any] | None:
    """(n, plain columns, heavy frame) of a block's bytes (docs/format/blocks.md, "Bytes")
    with every bin a memoryview of ``data``: msgpack would copy each column and the heavy
    frame (most of a block's bytes, ~0.8 MB for 10,000 spans) where a read uses a few
    columns, and only some rows of them. None when the bytes are laid out otherwise, a
    string column has many distinct values (msgpack decodes those faster), or the
    block's version is not one of ``versions``: the caller then decodes with msgpack,
    which also says what is wrong with bad bytes."""
    view = memoryview(data)
    end = len(data)
    at = 0

    def length(fix_base: int, fix_max: int, t8: int, has8: bool = True) -> int:
        """The length in a str/bin/array/map header at ``at`` (advanced past it)."""
        nonlocal at
        tag = data[at]
        if fix_base <= tag <= fix_base + fix_max:
            at += 1
            return tag - fix_base
        if has8 and tag == t8:
            at += 2
            return int(data[at - 1])
        first16 = t8 + 1 if has8 else t8
        if tag == first16:
            at += 3
            return int(_U16.unpack_from(data, at - 2)[0])
        if tag == first16 + 1:
            at += 5
            return int(_U32.unpack_from(data, at - 4)[0])
        raise ValueError(tag)

    def text() -> str:
        nonlocal at
        size = length(0xA0, 31, 0xD9)
        at += size
        return str(view[at - size : at], "utf-8")

    def binary() -> memoryview | None:
        nonlocal at
        if data[at] == 0xC0:
            at += 1
            return None
        size = length(0x100, 0, 0xC4)
        at += size
        if at > end:
            raise ValueError("short")
        return view[at - size : at]

    def uint() -> int:
        nonlocal at
        tag = data[at]
        if tag < 0x80:
            at += 1
            return tag
        widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
        w = widths[tag]
        at += 1 + w
        return int.from_bytes(view[at - w : at], "big")

    try:
        n: int | None = None
        cols: dict[str, list[Any]] | None = None
        heavy: Any = None
        version: int | None = None
        for _ in range(length(0x80, 15, 0xDE, has8=False)):
            key = text()
            if key == "v":
                version = uint()
            elif key == "n":
                n = uint()
            elif key == "h":
                heavy = binary()
            elif key == "c":
                cols = {}
                for _col in range(length(0x80, 15, 0xDE, has8=False)):
                    name = text()
                    parts = length(0x90, 15, 0xDC, has8=False)
                    if parts == 2:
                        cols[name] = [binary(), binary()]
                    elif parts == 3:
                        count = length(0x90, 15, 0xDC, has8=False)
                        if count > _MANY_VALUES:
                            return None
                        values = [text() for _v in range(count)]
                        cols[name] = [values, binary(), binary()]
                    else:
                        return None
            else:
                return None
        if at != end or version not in versions or n is None or cols is None:
            return None
        return n, cols, heavy
    except (ValueError, IndexError, KeyError, struct.error, UnicodeDecodeError):
        return None


def heavy_map(data: bytes) -> dict[str, list[Any]]:
    """The heavy columns' map of a decompressed ``h`` entry."""
    walked = _walk_heavy(data)
    if walked is not None:
        return walked
    out: dict[str, list[Any]] = msgpack.unpackb(data, raw=False)
    return out
