"""What the column builders share: JSON text columns written in one call, fixed-width id
columns, enum names, series ids (tael/_columns/)."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .. import _block, _codec

MAX_NS: Final = _codec.MAX_NS
ID16, ID8, DIGEST = pa.binary(16), pa.binary(8), pa.binary(32)
SPAN_KIND_NAMES: Final = pa.array(_block.SPAN_KIND_CODE, pa.string())
SPAN_STATUS_NAMES: Final = pa.array(_block.SPAN_STATUS_CODE, pa.string())
METRIC_KIND_NAMES: Final = pa.array(_block.METRIC_KIND_CODE, pa.string())
TEMPORALITY_NAMES: Final = pa.array(_block.TEMPORALITY_CODE, pa.string())
JSON_ERRORS: Final = (TypeError, ValueError, OverflowError, RecursionError)
_orjson_dumps = orjson.dumps


class Irregular(Exception):
    """A batch the column-wise builders do not build as it is (tael/_columns/objects.py):
    it is built record by record instead."""


def utf8_ok(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (no lone surrogate); for non-ASCII text."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def fixed_ids(values: list[bytes], width: int) -> pa.Array:
    """A binary(width) array of ``values`` (all exactly ``width`` bytes, none None)."""
    return pa.Array.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(b"".join(values))])


def json_array(values: list[bytes]) -> pa.Array:
    """A string array of UTF-8 JSON texts (orjson's output is valid UTF-8: no re-check)."""
    return pa.array(values, pa.binary()).view(pa.string())


def enum_names(codes: list[int], names: pa.Array) -> pa.Array:
    """The string array of enum ``codes`` (indexes into ``names``)."""
    return names.take(pa.array(codes, pa.int8()))


_SEP_VALUE: Final = "\x00\x01tael\x02"
_find_null: Final = re.compile(b"null").search  # faster than ``in`` on long text
_SEP_JSON: Final = ',"\\u0000\\u0001tael\\u0002",'


_FEW: Final = 32
"""Up to this many values are written one orjson call each: the split's fixed cost is more."""


def json_texts(values: Sequence[Any]) -> pa.Array | None:
    """A string array of the JSON text of each value (``_block.dumps``'s text), written
    by one orjson call for the whole column: per value, orjson spends more on allocating
    its output than on writing it. The values are written as one JSON array with a
    separator string between them, and the text is split at the separators. None when
    orjson refuses a value, or when a value holds the separator so that the split would
    not be exact: a value holding it as a list item or map value adds a piece (the count
    tells), one that is the separator itself could hide one (checked first).

    The text of a value holding NaN or an infinity is written again by ``_block.dumps``
    (orjson writes them as null)."""
    n = len(values)
    if n <= _FEW or _SEP_VALUE in values:
        try:
            return json_array([_block.dumps(v) for v in values])
        except JSON_ERRORS:
            return None
    seq = [_SEP_VALUE] * (2 * n - 1)
    seq[::2] = values
    try:
        text = _orjson_dumps(seq)
    except JSON_ERRORS:
        return None
    if len(text) >= 1 << 31:
        parts = pa.array(text[1:-1].split(_SEP_JSON.encode()), pa.binary()).view(pa.string())
    else:
        whole = pa.Array.from_buffers(
            pa.string(), 1, [None, pa.py_buffer(struct.pack("<ii", 1, len(text) - 1)), pa.py_buffer(text)]
        )
        parts = pc.split_pattern(whole, _SEP_JSON).flatten()
    if len(parts) != n:
        return None
    if _find_null(text):
        mask = pc.match_substring(parts, "null")
        rows = pc.indices_nonzero(mask).to_pylist()
        try:
            fixed = [_block.dumps(values[i]) for i in rows]
        except JSON_ERRORS:
            return None
        parts = pc.replace_with_mask(parts, mask, json_array(fixed))
    return parts


def constant(text: str, n: int) -> pa.Array:
    """A string array of ``n`` times ``text``, built from its buffers."""
    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])


def zeros(n: int) -> pa.Array:
    return pa.array(np.zeros(n, np.uint8))


def series_ids(
    names: pa.Array, services: pa.Array, kinds: pa.Array, attributes: pa.Array, attrs: Callable[[int], Any]
) -> pa.Array:
    """The series id of each row (``_codec.series_key``), computed once per distinct
    (name, service, kind, attributes text): ``attrs(row)`` gives a row's attribute dict.
    The four are joined with NUL into one key, which none of them holds (names and
    services are checked for NUL, JSON text never has a raw one)."""
    key = pc.binary_join_element_wise(names, services, kinds, attributes, "\x00")
    codes = pc.dictionary_encode(key).indices
    _, first = np.unique(codes.to_numpy(zero_copy_only=False), return_index=True)
    kind_code = _block.METRIC_KIND_CODE
    series_key = _codec.series_key
    ids = [
        series_key(names[r].as_py(), services[r].as_py(), kind_code[kinds[r].as_py()], attrs(r))[0]
        for r in first.tolist()
    ]
    return fixed_ids(ids, 8).take(codes)
