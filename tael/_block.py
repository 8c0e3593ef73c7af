"""Column batches and blocks: a batch of records, column-wise, from insert to Parquet.

A **column batch** is a ``pyarrow.RecordBatch`` in one of the schemas below: what an
insert becomes once validated, what a WAL frame and a hot-tier block hold, what
compaction writes to Parquet. A **block** is the bytes of one column batch: a msgpack
map whose fixed-width columns are raw little-endian bytes, whose string columns are
value lists with codes, and whose heavy per-record parts (attributes, resource,
events, links, histogram buckets) are one zstd-compressed column
(docs/format/blocks.md). Decoding a block costs per column, not per record: a read
decodes the columns it filters on, and builds records (the list layouts of
tael/_layout.py) only for the rows it returns.

Attribute maps, resources, events and links are JSON text in a column batch (a JSON
object, or an array of objects), so that compaction copies them to Parquet unchanged,
where DuckDB, Spark and Trino read them with their JSON functions. JSON keeps every
attribute type tael accepts distinct (str, int, float including NaN and infinities,
bool, null, lists, maps), as msgpack did.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgpack
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from ._blockwalk import heavy_map, walk_body
from ._errors import CorruptionError
from ._layout import (
    EVENT_ATTRS,
    EVENT_NAME,
    EVENT_TIME,
    LINK_ATTRS,
    LINK_SPAN,
    LINK_TRACE,
    SPAN_ATTRS,
    SPAN_EVENTS,
)
from ._models import METRIC_KINDS, SPAN_KINDS, SPAN_STATUSES, TEMPORALITIES

BLOCK_VERSION: Final = 2  # what encode_block writes when a heavy column is coded; else 1
READABLE_VERSIONS: Final = frozenset({1, 2})

# ---------------------------------------------------------------- schemas

_ID16, _ID8, _DIGEST = pa.binary(16), pa.binary(8), pa.binary(32)

SPAN_SCHEMA: Final = pa.schema(
    [
        pa.field("trace_id", _ID16, nullable=False),
        pa.field("span_id", _ID8, nullable=False),
        pa.field("parent_span_id", _ID8),
        pa.field("name", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("start_ns", pa.int64(), nullable=False),
        pa.field("end_ns", pa.int64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("status_message", pa.string(), nullable=False),
        pa.field("attributes", pa.string(), nullable=False),
        pa.field("resource", pa.string(), nullable=False),
        pa.field("scope_name", pa.string(), nullable=False),
        pa.field("scope_version", pa.string(), nullable=False),
        pa.field("events", pa.string(), nullable=False),
        pa.field("links", pa.string(), nullable=False),
        pa.field("trace_state", pa.string(), nullable=False),
        pa.field("flags", pa.int64(), nullable=False),
    ]
)
"""Spans as ``tael.spans_table`` returns them and ``insert_spans`` takes them."""

LOG_SCHEMA: Final = pa.schema(
    [
        pa.field("time_ns", pa.int64(), nullable=False),
        pa.field("body", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("severity_number", pa.int32(), nullable=False),
        pa.field("severity_text", pa.string(), nullable=False),
        pa.field("trace_id", _ID16),
        pa.field("span_id", _ID8),
        pa.field("attributes", pa.string(), nullable=False),
        pa.field("resource", pa.string(), nullable=False),
        pa.field("observed_ns", pa.int64()),
        pa.field("scope_name", pa.string(), nullable=False),
    ]
)
"""Log records as ``tael.logs_table`` returns them and ``insert_logs`` takes them."""

METRIC_SCHEMA: Final = pa.schema(
    [
        pa.field("time_ns", pa.int64(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("attributes", pa.string(), nullable=False),
        pa.field("monotonic", pa.bool_(), nullable=False),
        pa.field("temporality", pa.string(), nullable=False),
        pa.field("start_ns", pa.int64()),
        pa.field("count", pa.int64()),
        pa.field("sum", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("bucket_counts", pa.list_(pa.int64())),
        pa.field("explicit_bounds", pa.list_(pa.float64())),
    ]
)
"""Metric points as ``tael.metrics_table`` returns them and ``insert_metrics`` takes them."""

SCHEMAS: Final = {"spans": SPAN_SCHEMA, "logs": LOG_SCHEMA, "metrics": METRIC_SCHEMA}

# Columns a block carries beyond the public schema (docs/format/blocks.md):
#   payload: 0 no payload text, 1 payload text to index, 2 text for the blob store;
#   payload_refs: JSON [[event index or -1, key, sha256 hex], ...] of texts moved to the
#     blob store (set by the hot tier; null when none);
#   body_blob: sha256 of a log body moved to the blob store (its ``body`` is then "");
#   series_id: a metric point's series.
BLOCK_SCHEMAS: Final = {
    "spans": SPAN_SCHEMA.append(pa.field("payload", pa.uint8(), nullable=False)).append(
        pa.field("payload_refs", pa.string())
    ),
    "logs": LOG_SCHEMA.append(pa.field("payload", pa.uint8(), nullable=False)).append(pa.field("body_blob", _DIGEST)),
    "metrics": METRIC_SCHEMA.append(pa.field("series_id", _ID8, nullable=False)),
}

# Columns a hot-tier block of logs or metric points adds (docs/format/hot.md): the WAL
# position of the frame each row came in and its index there, which identify the record
# once rows of several frames share a block or a block has been split.
EXTRA_FIELDS: Final = {
    "wal_lsn": pa.field("wal_lsn", pa.int64(), nullable=False),
    "batch_index": pa.field("batch_index", pa.int32(), nullable=False),
}

# The per-record parts stored together in the block's one compressed column.
HEAVY: Final = frozenset(
    {"attributes", "resource", "events", "links", "payload_refs", "body", "bucket_counts", "explicit_bounds"}
)

_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads
_json_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack

SPAN_KIND_CODE: Final = {k: i for i, k in enumerate(SPAN_KINDS)}
SPAN_STATUS_CODE: Final = {s: i for i, s in enumerate(SPAN_STATUSES)}
METRIC_KIND_CODE: Final = {k: i for i, k in enumerate(METRIC_KINDS)}
TEMPORALITY_CODE: Final = {t: i for i, t in enumerate(TEMPORALITIES)}


def _has_nonfinite(value: Any) -> bool:
    t = type(value)
    if t is float:
        return not math.isfinite(value)
    if t is dict:
        return any(map(_has_nonfinite, value.values()))
    if t is list or t is tuple:
        return any(map(_has_nonfinite, value))
    return False


def dumps(value: Any) -> bytes:
    """The UTF-8 JSON text a column batch holds for an attribute map, event or link list.

    orjson writes NaN and the infinities as ``null``; a value holding one (seen by a
    ``null`` in the text) is written by the standard library instead, which writes
    ``NaN``, ``Infinity`` and ``-Infinity`` (accepted by :func:`loads`, JSON5 and most
    engines' lenient modes, but not strict JSON parsers). Raises TypeError for what
    JSON cannot hold (a non-str key, an int outside -2**63..2**64-1, a lone surrogate)."""
    out = _orjson_dumps(value)
    if b"null" in out and _has_nonfinite(value):
        return _json_dumps(value).encode()
    return out


def loads(text: str | bytes) -> Any:
    """The value of a column batch's JSON text (NaN and the infinities included)."""
    try:
        return _orjson_loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_dumps = dumps
_loads = loads


# ---------------------------------------------------------------- blocks: bytes


def _plain(arr: pa.Array) -> pa.Array:
    """``arr`` with offset 0 (its buffers then start at its first value)."""
    return pa.concat_arrays([arr]) if arr.offset else arr


def _validity(arr: pa.Array) -> bytes | None:
    if arr.null_count == 0:
        return None
    buf: pa.Buffer = arr.buffers()[0]
    data: bytes = buf.to_pybytes()
    return data[: (len(arr) + 7) // 8]


def _fixed_bytes(arr: pa.Array) -> bytes:
    t = arr.type
    data: bytes = arr.buffers()[1].to_pybytes()
    if pa.types.is_boolean(t):
        return data[: (len(arr) + 7) // 8]
    width: int = t.byte_width
    return data[: len(arr) * width]


_CODED_MAX: Final = 64  # a heavy text column with at most this many distinct values (and <= rows / 4) is coded


def encode_block(batch: pa.RecordBatch, signal: str, *, code_heavy: bool = True) -> bytes:
    """The block of a column batch in ``BLOCK_SCHEMAS[signal]`` (docs/format/blocks.md).

    A heavy text column whose rows repeat a few values (a resource per process, a
    repeated log body) is written as a string column (values and codes) rather than
    into the zstd frame: a read of a few rows must decompress the frame whole, and
    repeated texts made most of it (block version 2). ``code_heavy=False`` writes
    every heavy column into the frame (version 1, what tael wrote before)."""
    fields = list(BLOCK_SCHEMAS[signal]) + [EXTRA_FIELDS[n] for n in batch.schema.names if n in EXTRA_FIELDS]
    n = batch.num_rows
    cols: dict[str, Any] = {}
    heavy: dict[str, Any] = {}
    version = 1
    for field in fields:
        arr = _plain(
            batch.column(field.name).combine_chunks() if isinstance(batch, pa.Table) else batch.column(field.name)
        )
        t = field.type
        if (
            code_heavy
            and field.name in HEAVY
            and pa.types.is_string(t)
            and n >= 8
            # a first look at a few rows, so that a column of distinct texts costs little
            and len(pc.unique(arr.slice(0, 4 * _CODED_MAX))) <= _CODED_MAX
        ):
            enc = pc.dictionary_encode(arr)
            if len(enc.dictionary) <= min(_CODED_MAX, n // 4):
                values = enc.dictionary.to_pylist()
                codes = _plain(enc.indices).cast(_CODE_TYPES[1])
                cols[field.name] = [values, _fixed_bytes(codes), _validity(arr)]
                version = 2
                continue
        if field.name in HEAVY:
            buffers = arr.buffers()
            if pa.types.is_list(t):
                values = _plain(arr.values) if arr.values.offset else arr.values
                heavy[field.name] = [
                    buffers[1].to_pybytes()[: (n + 1) * 4],
                    _fixed_bytes(values),
                    _validity(arr),
                ]
            else:
                offsets = buffers[1].to_pybytes()[: (n + 1) * 4]
                heavy[field.name] = [
                    offsets,
                    buffers[2].to_pybytes() if buffers[2] is not None else b"",
                    _validity(arr),
                ]
        elif pa.types.is_string(t):
            enc = pc.dictionary_encode(arr)
            values = enc.dictionary.to_pylist()
            indices = enc.indices
            codes = np.frombuffer(indices.buffers()[1], np.int32, count=n, offset=indices.offset * 4)
            if indices.null_count:
                codes = np.where(np.asarray(indices.is_valid()), codes, 0)
            cols[field.name] = [values, codes.astype(_CODE_NUMPY[_code_width(len(values))]).tobytes(), _validity(arr)]
        else:
            cols[field.name] = [_fixed_bytes(arr), _validity(arr)]
    body: dict[str, Any] = {"v": version, "n": n, "c": cols}
    if heavy:
        body["h"] = _compressor().compress(_packb(heavy))
    return bytes(_packb(body))


_CODE_TYPES: Final = {1: pa.uint8(), 2: pa.uint16(), 4: pa.int32()}
_CODE_NUMPY: Final[dict[int, np.dtype[Any]]] = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<i4")}


def _code_width(distinct: int) -> int:
    """Bytes per code for a column of ``distinct`` values: 1, 2 or 4."""
    return 1 if distinct <= 256 else 2 if distinct <= 65536 else 4


_ZSTD_LEVEL = 1


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor: zstandard compressors are not thread-safe, blocks are
    encoded on callers' threads, and a new one costs ~50-90 us (its context's tables)."""
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor (as :func:`_compressor`)."""
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


_TYPES: Final = {
    signal: {f.name: f.type for f in list(schema) + list(EXTRA_FIELDS.values())}
    for signal, schema in BLOCK_SCHEMAS.items()
}
_ROW_STRUCTS: Final = {"int64": struct.Struct("<q"), "int32": struct.Struct("<i"), "double": struct.Struct("<d")}
_NUMPY_TYPES: Final = {"int64": "<i8", "int32": "<i4", "uint8": "u1", "double": "<f8"}
_OFFSET: Final = struct.Struct("<ii")


def _valid_at(validity: bytes | memoryview | None, row: int) -> bool:
    return validity is None or bool((validity[row >> 3] >> (row & 7)) & 1)


class Block:
    """A decoded block header: its row count and columns, decoded on first use.

    Made from the bytes (``decode_block``), or from a column batch and its bytes
    (``Block.of``: an insert has both, and no column is decoded again)."""

    __slots__ = ("_arrays", "_cols", "_heavy", "_heavy_raw", "data", "n", "signal")

    @classmethod
    def of(cls, batch: pa.RecordBatch, signal: str, data: bytes | None = None) -> Block:
        """The block of ``batch`` (encoded now unless its bytes ``data`` are given)."""
        return cls(encode_block(batch, signal) if data is None else data, signal, batch)

    def __len__(self) -> int:
        return self.n

    def __init__(self, data: bytes | memoryview, signal: str, batch: pa.RecordBatch | None = None) -> None:
        self.data = bytes(data)
        self.signal = signal
        self._heavy: dict[str, Any] | None = None
        self._arrays: dict[str, pa.Array] = {}
        self._cols: dict[str, Any] = {}
        self._heavy_raw: bytes | memoryview | None = None
        self.n: int = 0
        if batch is not None:  # its columns are the block's: nothing to decode
            self.n = batch.num_rows
            self._arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
            return
        walked = walk_body(self.data, READABLE_VERSIONS)
        if walked is not None:
            self.n, self._cols, self._heavy_raw = walked
            return
        try:
            body = msgpack.unpackb(data, raw=False, use_list=True)
            if body["v"] not in READABLE_VERSIONS:
                raise ValueError(f"block version {body['v']}, this tael reads {sorted(READABLE_VERSIONS)}")
            n = body["n"]
            if type(n) is not int or n < 0 or type(body["c"]) is not dict:
                raise ValueError(f"a block of {n!r} rows")
            self.n = n
            self._cols = body["c"]
            self._heavy_raw = body.get("h")
        except (ValueError, TypeError, KeyError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise CorruptionError(f"a {signal} block does not decode: {exc!r}") from exc

    def column(self, name: str) -> pa.Array:
        """One column as an Arrow array (decoded once)."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self._decode(name)
        return arr

    def has(self, name: str) -> bool:
        """Whether the block holds column ``name`` (``EXTRA_FIELDS`` are optional)."""
        return name in self._arrays or name in self._cols or (name in HEAVY and name not in EXTRA_FIELDS)

    def _decode(self, name: str) -> pa.Array:
        field = EXTRA_FIELDS[name] if name in EXTRA_FIELDS else BLOCK_SCHEMAS[self.signal].field(name)
        t, n = field.type, self.n
        try:
            if name in HEAVY and name not in self._cols:
                entry = self._heavy_entries()[name]
                validity = pa.py_buffer(entry[2]) if entry[2] is not None else None
                if pa.types.is_list(t):
                    values = pa.Array.from_buffers(
                        t.value_type, len(entry[1]) // t.value_type.byte_width, [None, pa.py_buffer(entry[1])]
                    )
                    return pa.ListArray.from_buffers(t, n, [validity, pa.py_buffer(entry[0])], children=[values])
                return pa.Array.from_buffers(t, n, [validity, pa.py_buffer(entry[0]), pa.py_buffer(entry[1])])
            entry = self._cols[name]
            if pa.types.is_string(t):
                values, codes, valid = entry
                indices = pa.Array.from_buffers(
                    _CODE_TYPES[len(codes) // n if n else 1],
                    n,
                    [pa.py_buffer(valid) if valid is not None else None, pa.py_buffer(codes)],
                )
                return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string())).dictionary_decode()
            data, valid = entry
            return pa.Array.from_buffers(t, n, [pa.py_buffer(valid) if valid is not None else None, pa.py_buffer(data)])
        except (KeyError, ValueError, TypeError, IndexError, pa.ArrowException, zstandard.ZstdError) as exc:
            raise CorruptionError(f"column {name!r} of a {self.signal} block does not decode: {exc!r}") from exc

    def _heavy_entries(self) -> dict[str, Any]:
        """The heavy columns' entries (the zstd frame decompressed once per block)."""
        if self._heavy is None:
            raw = self._heavy_raw
            self._heavy = heavy_map(_decompressor().decompress(raw)) if raw else {}
        return self._heavy

    def _encoded(self, name: str) -> bool:
        """Whether column ``name`` is still only bytes (not decoded, not given as Arrow)."""
        return name not in self._arrays and (name in self._cols or (name in HEAVY and self._heavy_raw is not None))

    def _type(self, name: str) -> pa.DataType:
        return _TYPES[self.signal][name]

    def equal_rows(self, name: str, value: str) -> np.ndarray:
        """A bool per row: whether string column ``name`` (not a heavy one) equals
        ``value``. Compares the column's codes with the value's code, so the column's
        strings are never decoded; no row matches when the value is not among them."""
        if not self._encoded(name):
            return np.asarray(pc.fill_null(pc.equal(self.column(name), value), False).to_numpy(zero_copy_only=False))
        try:
            values, codes, valid = self._cols[name]
            if value not in values:
                return np.zeros(self.n, np.bool_)
            width = len(codes) // self.n if self.n else 1
            mask: np.ndarray = np.frombuffer(codes, _CODE_NUMPY[width], self.n) == values.index(value)
            if valid is not None:
                mask &= np.unpackbits(np.frombuffer(valid, np.uint8), count=self.n, bitorder="little").astype(np.bool_)
            return mask
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptionError(f"column {name!r} of a {self.signal} block does not decode: {exc!r}") from exc

    def numbers(self, name: str) -> np.ndarray:
        """A numeric column without nulls (int64, int32, uint8, float64) as a read-only
        numpy array over the block's bytes (no copy)."""
        if not self._encoded(name):
            return np.asarray(self.column(name).to_numpy(zero_copy_only=False))
        try:
            dtype = _NUMPY_TYPES[str(self._type(name))]
            return np.frombuffer(self._cols[name][0], dtype, self.n)
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptionError(f"column {name!r} of a {self.signal} block does not decode: {exc!r}") from exc

    def find(self, name: str, value: bytes) -> list[int]:
        """The rows whose fixed-width binary column ``name`` (ids) equals ``value``, in order."""
        if not self._encoded(name):
            return pc.indices_nonzero(pc.equal(self.column(name), pa.scalar(value, self._type(name)))).to_pylist()  # type: ignore[no-any-return]
        try:
            view, valid = self._cols[name]
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptionError(f"column {name!r} of a {self.signal} block does not decode: {exc!r}") from exc
        data = bytes(view)  # bytes.find (memmem) is ~5x faster than a numpy comparison of every id
        width = len(value)
        rows = []
        at = data.find(value)
        while at >= 0:
            if at % width == 0:  # a match across two ids' bytes is no id
                row = at // width
                if row >= self.n:
                    break
                if _valid_at(valid, row):
                    rows.append(row)
                at = data.find(value, at + width)
            else:
                at = data.find(value, at + 1)
        return rows

    def pylist(self, name: str, rows: Sequence[int]) -> list[Any]:
        """The values of column ``name`` at ``rows`` as Python objects, as ``to_pylist``
        gives them, read from the block's bytes: a read of a few rows decodes no column
        whole (the heavy columns' zstd frame is decompressed, once, but only the rows'
        texts are sliced out of it)."""
        if not self._encoded(name):
            return self.column(name).take(pa.array(rows, pa.int64())).to_pylist()  # type: ignore[no-any-return]
        t = self._type(name)
        try:
            if rows and (min(rows) < 0 or max(rows) >= self.n):
                raise IndexError(f"rows {min(rows)}..{max(rows)} of a block of {self.n}")
            if name in HEAVY and name not in self._cols:
                offsets, data, valid = self._heavy_entries()[name]
                if pa.types.is_list(t):
                    return self.column(name).take(pa.array(rows, pa.int64())).to_pylist()  # type: ignore[no-any-return]
                unpack = _OFFSET.unpack_from
                out: list[Any] = []
                for r in rows:
                    if valid is not None and not _valid_at(valid, r):
                        out.append(None)
                    else:
                        a, b = unpack(offsets, r * 4)
                        out.append(str(data[a:b], "utf-8"))
                return out
            if pa.types.is_string(t):
                values, codes, valid = self._cols[name]
                width = len(codes) // self.n
                if valid is not None:  # a null row's code is 0, and may name no value
                    return [
                        values[int.from_bytes(codes[r * width : (r + 1) * width], "little")]
                        if _valid_at(valid, r)
                        else None
                        for r in rows
                    ]
                if width == 1:
                    out = [values[codes[r]] for r in rows]
                else:
                    out = [values[int.from_bytes(codes[r * width : (r + 1) * width], "little")] for r in rows]
            else:
                data, valid = self._cols[name]
                if pa.types.is_fixed_size_binary(t):
                    w = t.byte_width
                    out = [bytes(data[r * w : (r + 1) * w]) for r in rows]
                elif pa.types.is_boolean(t):
                    out = [bool((data[r >> 3] >> (r & 7)) & 1) for r in rows]
                elif pa.types.is_uint8(t):
                    out = [data[r] for r in rows]
                else:
                    s = _ROW_STRUCTS[str(t)]
                    w = s.size
                    unpack_row = s.unpack_from
                    out = [unpack_row(data, r * w)[0] for r in rows]
            if valid is not None:
                out = [v if _valid_at(valid, r) else None for v, r in zip(out, rows, strict=True)]
            return out
        except (KeyError, ValueError, TypeError, IndexError, struct.error, zstandard.ZstdError) as exc:
            raise CorruptionError(f"column {name!r} of a {self.signal} block does not decode: {exc!r}") from exc

    def records(self, rows: Sequence[int]) -> list[list[Any]]:
        """Records (the list layouts of tael/_layout.py) of ``rows``, as
        ``RECORDS_OF[signal](self.batch(), rows)`` builds them, but reading only those
        rows of each column (``pylist``): for a few rows of a large block."""
        return _ASSEMBLE[self.signal](lambda name: self.pylist(name, rows), len(rows))

    def values(self, name: str) -> list[str]:
        """The distinct values of a string column (not of a heavy one), without decoding it."""
        return self._cols[name][0]  # type: ignore[no-any-return]

    def batch(self, columns: Sequence[str] | None = None) -> pa.RecordBatch:
        """The block's column batch (its ``EXTRA_FIELDS`` included), or the named columns of it."""
        if columns is None:
            names = [f.name for f in BLOCK_SCHEMAS[self.signal]]
            names += [n for n in EXTRA_FIELDS if n in self._arrays or n in self._cols]
        else:
            names = list(columns)
        return pa.RecordBatch.from_arrays([self.column(c) for c in names], names=names)


def decode_block(data: bytes | memoryview, signal: str) -> Block:
    """A block's header; its columns decode on first use (``Block.column``)."""
    return Block(data, signal)


# ---------------------------------------------------------------- records <-> batches


def _attrs_json(d: dict[str, Any]) -> bytes:
    return _dumps(d) if d else b"{}"


def events_json(events: list[Any]) -> bytes:
    if not events:
        return b"[]"
    return _dumps([{"time_ns": e[EVENT_TIME], "name": e[EVENT_NAME], "attributes": e[EVENT_ATTRS]} for e in events])


def _links_json(links: list[Any]) -> bytes:
    if not links:
        return b"[]"
    return _dumps(
        [
            {"trace_id": ln[LINK_TRACE].hex(), "span_id": ln[LINK_SPAN].hex(), "attributes": ln[LINK_ATTRS]}
            for ln in links
        ]
    )


def events_of(text: str) -> list[list[Any]]:
    """Event arrays (``EVENT_*``) from a column batch's events JSON."""
    if text == "[]":
        return []
    return [[e["time_ns"], e["name"], e["attributes"]] for e in _loads(text)]


def links_of(text: str) -> list[list[Any]]:
    """Link arrays (``LINK_*``) from a column batch's links JSON."""
    if text == "[]":
        return []
    fromhex = bytes.fromhex
    return [[fromhex(ln["trace_id"]), fromhex(ln["span_id"]), ln["attributes"]] for ln in _loads(text)]


def attrs_of(text: str) -> dict[str, Any]:
    """An attribute map from a column batch's JSON text."""
    if text == "{}":
        return {}
    attrs: dict[str, Any] = _loads(text)
    return attrs


def span_records(batch: pa.RecordBatch, rows: Sequence[int] | None = None) -> list[list[Any]]:
    """Span records (``SPAN_*``) of a block schema batch, all rows or ``rows``; texts moved
    to the blob store come back as their 32-byte digests, as the hot tier's records had
    them (``BlobStore.restore_span`` puts the texts back)."""
    if rows is not None:
        batch = batch.take(pa.array(rows, pa.int64()))
    names = batch.schema.names

    def c(name: str) -> list[Any]:
        if name == "payload_refs" and name not in names:  # a batch of the public schema
            return [None] * batch.num_rows
        return batch.column(name).to_pylist()  # type: ignore[no-any-return]

    return _span_rows(c, batch.num_rows)


def _span_rows(c: Callable[[str], list[Any]], n: int) -> list[list[Any]]:
    """Span records from their columns' values (``c(name)``: the ``n`` rows' values)."""
    kinds = [SPAN_KIND_CODE[k] for k in c("kind")]
    statuses = [SPAN_STATUS_CODE[s] for s in c("status")]
    refs = c("payload_refs")
    out = []
    for (
        trace,
        span,
        parent,
        name,
        service,
        start,
        end,
        kind,
        status,
        message,
        attrs,
        resource,
        scope,
        version,
        events,
        links,
        state,
        flags,
        ref,
    ) in zip(
        c("trace_id"),
        c("span_id"),
        c("parent_span_id"),
        c("name"),
        c("service"),
        c("start_ns"),
        c("end_ns"),
        kinds,
        statuses,
        c("status_message"),
        c("attributes"),
        c("resource"),
        c("scope_name"),
        c("scope_version"),
        c("events"),
        c("links"),
        c("trace_state"),
        c("flags"),
        refs,
        strict=True,
    ):
        f = [
            trace,
            span,
            parent,
            name,
            service,
            start,
            end,
            kind,
            status,
            message,
            attrs_of(attrs),
            attrs_of(resource),
            scope,
            version,
            events_of(events),
            links_of(links),
            state,
            flags,
        ]
        if ref is not None:
            _put_refs(f, ref)
        out.append(f)
    return out


def _put_refs(f: list[Any], refs: str) -> None:
    for event, key, digest in _loads(refs):
        target = f[SPAN_ATTRS] if event < 0 else f[SPAN_EVENTS][event][EVENT_ATTRS]
        target[key] = bytes.fromhex(digest)


def log_records(batch: pa.RecordBatch, rows: Sequence[int] | None = None) -> list[list[Any]]:
    """Log records (``LOG_*``) of a block schema batch; a body in the blob store comes back
    as its digest."""
    if rows is not None:
        batch = batch.take(pa.array(rows, pa.int64()))
    names = batch.schema.names

    def c(name: str) -> list[Any]:
        if name == "body_blob" and name not in names:  # a batch of the public schema
            return [None] * batch.num_rows
        return batch.column(name).to_pylist()  # type: ignore[no-any-return]

    return _log_rows(c, batch.num_rows)


def _log_rows(c: Callable[[str], list[Any]], n: int) -> list[list[Any]]:
    """Log records from their columns' values (``c(name)``: the ``n`` rows' values)."""
    blobs = c("body_blob")
    out = []
    for t, body, service, sev, sev_text, trace, span, attrs, resource, observed, scope, blob in zip(
        c("time_ns"),
        c("body"),
        c("service"),
        c("severity_number"),
        c("severity_text"),
        c("trace_id"),
        c("span_id"),
        c("attributes"),
        c("resource"),
        c("observed_ns"),
        c("scope_name"),
        blobs,
        strict=True,
    ):
        out.append(
            [
                t,
                body if blob is None else blob,
                service,
                sev,
                sev_text,
                trace,
                span,
                attrs_of(attrs),
                attrs_of(resource),
                observed,
                scope,
            ]
        )
    return out


def metric_records(batch: pa.RecordBatch, rows: Sequence[int] | None = None) -> list[list[Any]]:
    """Metric point records (``METRIC_*``) of a block schema batch."""
    if rows is not None:
        batch = batch.take(pa.array(rows, pa.int64()))
    return _metric_rows(lambda name: batch.column(name).to_pylist(), batch.num_rows)


def _metric_rows(c: Callable[[str], list[Any]], n: int) -> list[list[Any]]:
    """Metric point records from their columns' values (``c(name)``: the ``n`` rows' values)."""
    out = []
    for t, name, service, value, kind, unit, attrs, mono, temp, start, count, s, mn, mx, buckets, bounds in zip(
        c("time_ns"),
        c("name"),
        c("service"),
        c("value"),
        [METRIC_KIND_CODE[k] for k in c("kind")],
        c("unit"),
        c("attributes"),
        c("monotonic"),
        [TEMPORALITY_CODE[k] for k in c("temporality")],
        c("start_ns"),
        c("count"),
        c("sum"),
        c("min"),
        c("max"),
        c("bucket_counts"),
        c("explicit_bounds"),
        strict=True,
    ):
        out.append(
            [t, name, service, value, kind, unit, attrs_of(attrs), mono, temp, start, count, s, mn, mx, buckets, bounds]
        )
    return out


_ASSEMBLE: Final[dict[str, Callable[[Callable[[str], list[Any]], int], list[list[Any]]]]] = {
    "spans": _span_rows,
    "logs": _log_rows,
    "metrics": _metric_rows,
}

RECORDS_OF: Final[dict[str, Callable[[pa.RecordBatch, Sequence[int] | None], list[list[Any]]]]] = {
    "spans": span_records,
    "logs": log_records,
    "metrics": metric_records,
}


def span_refs(f: list[Any]) -> bytes | None:
    """payload_refs JSON of a span record whose blob-store texts are digests (bytes)."""
    refs = [[-1, k, v.hex()] for k, v in f[SPAN_ATTRS].items() if type(v) is bytes]
    for i, ev in enumerate(f[SPAN_EVENTS]):
        refs += [[i, k, v.hex()] for k, v in ev[EVENT_ATTRS].items() if type(v) is bytes]
    return _dumps(refs) if refs else None


def strip_refs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` with each digest (a payload text in the blob store) replaced by ""."""
    return {k: ("" if type(v) is bytes else v) for k, v in attrs.items()}


def spans_batch(records: Sequence[list[Any]], payload: Sequence[int] | None = None) -> pa.RecordBatch:
    """The block schema batch of span records (``SPAN_*``); a digest (bytes) in place of
    a payload text becomes a ``payload_refs`` entry. ``payload``: each record's payload
    flag (0 when not given)."""
    refs = [span_refs(f) if f[SPAN_ATTRS] or f[SPAN_EVENTS] else None for f in records]
    cols: list[Any] = [[] for _ in range(18)]
    for f, ref in zip(records, refs, strict=True):
        attrs, events = f[10], f[14]
        if ref is not None:
            attrs = strip_refs(attrs)
            events = [[e[0], e[1], strip_refs(e[2])] for e in events]
        cols[0].append(f[0])
        cols[1].append(f[1])
        cols[2].append(f[2])
        cols[3].append(f[3])
        cols[4].append(f[4])
        cols[5].append(f[5])
        cols[6].append(f[6])
        cols[7].append(SPAN_KINDS[f[7]])
        cols[8].append(SPAN_STATUSES[f[8]])
        cols[9].append(f[9])
        cols[10].append(_attrs_json(attrs))
        cols[11].append(_attrs_json(f[11]))
        cols[12].append(f[12])
        cols[13].append(f[13])
        cols[14].append(events_json(events))
        cols[15].append(_links_json(f[15]))
        cols[16].append(f[16])
        cols[17].append(f[17])
    n = len(records)
    arrays = [pa.array(col, type=fld.type) for col, fld in zip(cols, SPAN_SCHEMA, strict=True)]
    arrays.append(pa.array(payload if payload is not None else [0] * n, pa.uint8()))
    arrays.append(pa.array(refs, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=BLOCK_SCHEMAS["spans"])


def logs_batch(records: Sequence[list[Any]], payload: Sequence[int] | None = None) -> pa.RecordBatch:
    """The block schema batch of log records (``LOG_*``); a body that is a digest (bytes)
    becomes ``body_blob`` with an empty ``body``."""
    cols: list[Any] = [[] for _ in range(11)]
    blobs: list[bytes | None] = []
    for f in records:
        body = f[1]
        if type(body) is bytes:
            blobs.append(body)
            body = ""
        else:
            blobs.append(None)
        cols[0].append(f[0])
        cols[1].append(body)
        cols[2].append(f[2])
        cols[3].append(f[3])
        cols[4].append(f[4])
        cols[5].append(f[5])
        cols[6].append(f[6])
        cols[7].append(_attrs_json(f[7]))
        cols[8].append(_attrs_json(f[8]))
        cols[9].append(f[9])
        cols[10].append(f[10])
    n = len(records)
    arrays = [pa.array(col, type=fld.type) for col, fld in zip(cols, LOG_SCHEMA, strict=True)]
    arrays.append(pa.array(payload if payload is not None else [0] * n, pa.uint8()))
    arrays.append(pa.array(blobs, _DIGEST))
    return pa.RecordBatch.from_arrays(arrays, schema=BLOCK_SCHEMAS["logs"])


def metrics_batch(records: Sequence[list[Any]], series: Sequence[bytes]) -> pa.RecordBatch:
    """The block schema batch of metric point records (``METRIC_*``) with their series ids."""
    cols: list[Any] = [[] for _ in range(16)]
    for f in records:
        for i in (0, 1, 2, 3, 5, 7, 9, 10, 11, 12, 13, 14, 15):
            cols[i].append(f[i])
        cols[4].append(METRIC_KINDS[f[4]])
        cols[6].append(_attrs_json(f[6]))
        cols[8].append(TEMPORALITIES[f[8]])
    arrays = [pa.array(col, type=fld.type) for col, fld in zip(cols, METRIC_SCHEMA, strict=True)]
    arrays.append(pa.array(series, _ID8))
    return pa.RecordBatch.from_arrays(arrays, schema=BLOCK_SCHEMAS["metrics"])
