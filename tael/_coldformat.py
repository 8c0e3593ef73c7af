"""The cold tier's Parquet format: the schemas of both versions, column batches to
cold tables (version 2) with Arrow compute, and cold tables back to records.

**Version 2** (written since the columnar data path) is a column batch
(``tael._block``) made SQL-friendly with vectorised steps only: ids as lowercase
hex (numpy, no per-record Python), ``duration_ns`` computed, a microsecond UTC
timestamp beside each ``_ns`` time for SQL engines (Spark refuses nanosecond
``TIMESTAMP(NANOS,true)``), and the attribute maps, resources, events, links and
payload references copied unchanged as the batch's JSON text. Reading it back
turns the hex columns into binary and hands the table to ``_block``'s record
builders.

**Version 1** (written before) stored attributes as ``map<string, string>`` plus
a typed JSON column, events and links as lists of structs, and nanosecond
timestamps. It stays readable (the ``*_v1`` functions, unchanged from then), and
:func:`upgrade` turns a version-1 table into a version-2 one (what merges and
migration write, and what SQL reads next to version-2 files).

The byte-level format of both is docs/format/cold.md. This module knows nothing
about files (``_cold``) or the hot tier; it only converts Arrow data, so that
compaction (``_compactor``), reads (``_cold.ColdReader``) and ``Store.sql`` share it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _block
from ._errors import CorruptionError
from ._layout import EVENT_ATTRS, LOG_TIME, METRIC_TIME, SPAN_ATTRS, SPAN_EVENTS
from ._models import METRIC_KINDS, SPAN_KINDS, SPAN_STATUSES, TEMPORALITIES

FORMAT_VERSION: Final = 2
"""The version new cold files are written in (the manifest entry's first field)."""
VERSIONS: Final = (1, 2)
"""Versions this tael reads."""

DAY_NS: Final = 86_400 * 1_000_000_000
WINDOW_NS: Final = {"metrics_5m": 300 * 1_000_000_000, "metrics_1h": 3600 * 1_000_000_000}

# ---------------------------------------------------------------- hex ids, vectorised

_DIGITS = b"0123456789abcdef"
_HEX_PAIRS = np.array([_DIGITS[b >> 4] | (_DIGITS[b & 15] << 8) for b in range(256)], dtype="<u2")
"""Byte value -> its two lowercase hex digits, as one little-endian uint16 (first digit low)."""
_FROM_PAIRS = np.full(65536, 0xFFFF, dtype="<u2")
for _b in range(256):
    for _hi in {_DIGITS[_b >> 4], _DIGITS.upper()[_b >> 4]}:
        for _lo in {_DIGITS[_b & 15], _DIGITS.upper()[_b & 15]}:
            _FROM_PAIRS[_hi | (_lo << 8)] = _b
del _b, _hi, _lo


def plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array at offset 0 (its buffers then start at its first value)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return pa.concat_arrays([arr]) if arr.offset else arr


def _validity(arr: pa.Array) -> pa.Buffer | None:
    return arr.buffers()[0] if arr.null_count else None


def hex_ids(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Fixed-width binary ids (``binary(16)``, ``binary(8)``, ``binary(32)``) as lowercase
    hex strings, nulls kept: one table lookup per byte, no per-id Python."""
    arr = plain(arr)
    n, width = len(arr), arr.type.byte_width
    if n == 0:
        return pa.array([], pa.string())
    data = np.frombuffer(arr.buffers()[1], np.uint8, count=n * width)
    chars = _HEX_PAIRS[data]
    offsets = np.arange(0, (n + 1) * 2 * width, 2 * width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars), _validity(arr), arr.null_count)


def unhex_ids(arr: pa.Array | pa.ChunkedArray, width: int, column: str) -> pa.Array:
    """Hex strings of ``width``-byte ids back to ``binary(width)``, nulls kept. Raises
    CorruptionError naming ``column`` for a value that is not ``2 * width`` hex digits."""
    arr = plain(arr)
    n = len(arr)
    if n == 0:
        return pa.array([], pa.binary(width))
    filled = plain(pc.fill_null(arr, "0" * (2 * width))) if arr.null_count else arr
    offsets = np.frombuffer(filled.buffers()[1], np.int32, count=n + 1)
    start = int(offsets[0])
    if int(offsets[-1]) - start != 2 * width * n or not (np.diff(offsets) == 2 * width).all():
        raise CorruptionError(f"cold column {column!r} holds a value that is not {2 * width} hex digits")
    raw = np.frombuffer(filled.buffers()[2], np.uint8, count=2 * width * n, offset=start)
    values = _FROM_PAIRS[raw.view("<u2") if start % 2 == 0 else raw.copy().view("<u2")]
    if (values > 255).any():
        raise CorruptionError(f"cold column {column!r} holds a value that is not hex")
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [_validity(arr), pa.py_buffer(values.astype(np.uint8))], arr.null_count
    )


def micros(ns: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Non-negative int64 nanoseconds as ``timestamp[us, UTC]`` (truncated: the exact
    time stays in the ``_ns`` column)."""
    values = np.asarray(plain(ns).to_numpy(zero_copy_only=False), dtype=np.int64) // 1000
    return pa.array(values, pa.int64()).cast(_TS)


# ---------------------------------------------------------------- schemas

_TS_V1 = pa.timestamp("ns", tz="UTC")
_TS = pa.timestamp("us", tz="UTC")
_MAP = pa.map_(pa.string(), pa.string())
_EVENT_V1 = pa.struct([("time_ns", pa.int64()), ("name", pa.string()), ("attributes", pa.string())])
_LINK_V1 = pa.struct([("trace_id", pa.string()), ("span_id", pa.string()), ("attributes", pa.string())])
_REF_V1 = pa.struct([("event", pa.int32()), ("key", pa.string()), ("sha256", pa.string())])
_S, _I64 = pa.string(), pa.int64()

SPAN_SCHEMA: Final = pa.schema(
    [
        ("trace_id", _S),
        ("span_id", _S),
        ("parent_span_id", _S),
        ("name", _S),
        ("service", _S),
        ("kind", _S),
        ("status", _S),
        ("status_message", _S),
        ("start_ns", _I64),
        ("end_ns", _I64),
        ("duration_ns", _I64),
        ("start_time", _TS),
        ("attributes", _S),
        ("resource", _S),
        ("scope_name", _S),
        ("scope_version", _S),
        ("events", _S),
        ("links", _S),
        ("trace_state", _S),
        ("flags", _I64),
        ("payload_refs", _S),
    ]
)
LOG_SCHEMA: Final = pa.schema(
    [
        ("time_ns", _I64),
        ("time", _TS),
        ("observed_ns", _I64),
        ("service", _S),
        ("severity_number", pa.int32()),
        ("severity_text", _S),
        ("body", _S),
        ("trace_id", _S),
        ("span_id", _S),
        ("attributes", _S),
        ("resource", _S),
        ("scope_name", _S),
        ("wal_lsn", _I64),
        ("batch_index", pa.int32()),
        ("body_blob", _S),
    ]
)
METRIC_SCHEMA: Final = pa.schema(
    [
        ("time_ns", _I64),
        ("time", _TS),
        ("name", _S),
        ("service", _S),
        ("series_id", _S),
        ("kind", _S),
        ("value", pa.float64()),
        ("unit", _S),
        ("attributes", _S),
        ("monotonic", pa.bool_()),
        ("temporality", _S),
        ("start_ns", _I64),
        ("count", _I64),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("bucket_counts", pa.list_(_I64)),
        ("explicit_bounds", pa.list_(pa.float64())),
        ("wal_lsn", _I64),
        ("batch_index", pa.int32()),
    ]
)
ROLLUP_SCHEMA: Final = pa.schema(
    [
        ("window_start_ns", _I64),
        ("window_start", _TS),
        ("window_ns", _I64),
        ("name", _S),
        ("service", _S),
        ("series_id", _S),
        ("kind", _S),
        ("unit", _S),
        ("attributes", _S),
        ("monotonic", pa.bool_()),
        ("temporality", _S),
        ("count", _I64),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("first_ns", _I64),
        ("first", pa.float64()),
        ("last_ns", _I64),
        ("last", pa.float64()),
        ("increase", pa.float64()),
        ("hist_count", _I64),
        ("hist_sum", pa.float64()),
    ]
)


SPAN_SCHEMA_V1: Final = pa.schema(
    [
        ("trace_id", _S),
        ("span_id", _S),
        ("parent_span_id", _S),
        ("name", _S),
        ("service", _S),
        ("kind", _S),
        ("status", _S),
        ("status_message", _S),
        ("start_ns", _I64),
        ("end_ns", _I64),
        ("duration_ns", _I64),
        ("start_time", _TS_V1),
        ("attributes", _MAP),
        ("attributes_typed", _S),
        ("resource", _MAP),
        ("resource_typed", _S),
        ("scope_name", _S),
        ("scope_version", _S),
        ("events", pa.list_(_EVENT_V1)),
        ("links", pa.list_(_LINK_V1)),
        ("trace_state", _S),
        ("flags", _I64),
        ("payload_refs", pa.list_(_REF_V1)),
    ]
)
LOG_SCHEMA_V1: Final = pa.schema(
    [
        ("time_ns", _I64),
        ("time", _TS_V1),
        ("observed_ns", _I64),
        ("service", _S),
        ("severity_number", pa.int32()),
        ("severity_text", _S),
        ("body", _S),
        ("trace_id", _S),
        ("span_id", _S),
        ("attributes", _MAP),
        ("attributes_typed", _S),
        ("resource", _MAP),
        ("resource_typed", _S),
        ("scope_name", _S),
        ("wal_lsn", _I64),
        ("batch_index", pa.int32()),
        ("body_blob", _S),
    ]
)
METRIC_SCHEMA_V1: Final = pa.schema(
    [
        ("time_ns", _I64),
        ("time", _TS_V1),
        ("name", _S),
        ("service", _S),
        ("series_id", _S),
        ("kind", _S),
        ("value", pa.float64()),
        ("unit", _S),
        ("attributes", _MAP),
        ("attributes_typed", _S),
        ("monotonic", pa.bool_()),
        ("temporality", _S),
        ("start_ns", _I64),
        ("count", _I64),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("bucket_counts", pa.list_(_I64)),
        ("explicit_bounds", pa.list_(pa.float64())),
        ("wal_lsn", _I64),
        ("batch_index", pa.int32()),
    ]
)
ROLLUP_SCHEMA_V1: Final = pa.schema(
    [
        ("window_start_ns", _I64),
        ("window_start", _TS_V1),
        ("window_ns", _I64),
        ("name", _S),
        ("service", _S),
        ("series_id", _S),
        ("kind", _S),
        ("unit", _S),
        ("attributes", _MAP),
        ("attributes_typed", _S),
        ("monotonic", pa.bool_()),
        ("temporality", _S),
        ("count", _I64),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("first_ns", _I64),
        ("first", pa.float64()),
        ("last_ns", _I64),
        ("last", pa.float64()),
        ("increase", pa.float64()),
        ("hist_count", _I64),
        ("hist_sum", pa.float64()),
    ]
)
"""Version 1, as written before the columnar data path (docs/format/cold.md, "Reading version 1")."""

SCHEMAS: Final = {
    2: {
        "spans": SPAN_SCHEMA,
        "logs": LOG_SCHEMA,
        "metrics": METRIC_SCHEMA,
        "metrics_5m": ROLLUP_SCHEMA,
        "metrics_1h": ROLLUP_SCHEMA,
    },
    1: {
        "spans": SPAN_SCHEMA_V1,
        "logs": LOG_SCHEMA_V1,
        "metrics": METRIC_SCHEMA_V1,
        "metrics_5m": ROLLUP_SCHEMA_V1,
        "metrics_1h": ROLLUP_SCHEMA_V1,
    },
}
"""version -> dataset -> the Arrow schema its files hold."""

SORT_KEYS: Final = {
    "spans": ("start_ns", "trace_id", "span_id"),  # after grouping by trace: see file_order
    "logs": ("time_ns", "wal_lsn", "batch_index"),
    "metrics": ("name", "series_id", "time_ns", "wal_lsn", "batch_index"),
    "metrics_5m": ("name", "series_id", "window_start_ns", "first_ns"),
    "metrics_1h": ("name", "series_id", "window_start_ns", "first_ns"),
}
TIME_COLUMN: Final = {
    "spans": "start_ns",
    "logs": "time_ns",
    "metrics": "time_ns",
    "metrics_5m": "window_start_ns",
    "metrics_1h": "window_start_ns",
}
DICTIONARY_COLUMNS: Final = frozenset(
    {"name", "service", "kind", "status", "status_message", "scope_name", "scope_version", "trace_state"}
    | {"severity_text", "unit", "temporality", "series_id"}
)
"""Repetitive strings stored dictionary-encoded. Ids, bodies and attribute text are not:
measured on the synthetic workload, dictionaries there made files larger and slower to read."""

JSON_COLUMNS: Final = frozenset({"attributes", "resource", "events", "links", "payload_refs"})
"""The JSON text columns (version 2): written without min/max statistics, which no engine
prunes by and which cost time and footer bytes for long values."""

LIGHT_COLUMNS: Final = {
    "spans": ("trace_id", "span_id", "start_ns", "service", "name", "kind", "status", "duration_ns"),
    "logs": ("time_ns", "wal_lsn", "batch_index", "service", "severity_number", "trace_id"),
    "metrics": ("time_ns", "wal_lsn", "batch_index", "name", "service", "series_id"),
}
"""The columns a scan's Arrow expression (``tael._query.filters``) can name, with a hit's
keys: decoded first, so the rest is decoded only for row groups with matching rows. They
have the same type in both versions."""

_SAME_IN_BOTH: Final = {
    name: frozenset(SCHEMAS[1][name].names)
    & frozenset(SCHEMAS[2][name].names)
    - {"attributes", "resource", "events", "links", "payload_refs", "body", "start_time", "time", "window_start"}
    for name in SCHEMAS[2]
}
"""Columns a version-1 file holds with the type and meaning version 2 gives them."""


def version_of(schema: pa.Schema) -> int:
    """The cold format version of a table read from a cold file (by its attribute column,
    or by its timestamp column when the attributes were not read); 2 when neither is there."""
    for name in ("attributes", "start_time", "time", "window_start"):
        if name in schema.names:
            t = schema.field(name).type
            return 1 if (pa.types.is_map(t) or t == _TS_V1) else 2
    return FORMAT_VERSION


def same_in_both(dataset: str, columns: Sequence[str]) -> bool:
    """Whether ``columns`` read from a version-1 file are already what version 2 holds."""
    return all(c in _SAME_IN_BOTH[dataset] for c in columns)


# ---------------------------------------------------------------- column batches -> version-2 tables


def spans_table(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Spans of a column batch (``_block.BLOCK_SCHEMAS["spans"]``) as a version-2 cold table,
    in the batch's row order."""
    c = batch.column
    start, end = c("start_ns"), c("end_ns")
    return pa.Table.from_arrays(
        [
            hex_ids(c("trace_id")),
            hex_ids(c("span_id")),
            hex_ids(c("parent_span_id")),
            c("name"),
            c("service"),
            c("kind"),
            c("status"),
            c("status_message"),
            start,
            end,
            pc.subtract(end, start),
            micros(start),
            c("attributes"),
            c("resource"),
            c("scope_name"),
            c("scope_version"),
            c("events"),
            c("links"),
            c("trace_state"),
            c("flags"),
            c("payload_refs"),
        ],
        schema=SPAN_SCHEMA,
    )


def logs_table(batch: pa.RecordBatch | pa.Table, lsn: pa.Array, index: pa.Array) -> pa.Table:
    """Log records of a column batch as a version-2 cold table; ``lsn`` and ``index``: each
    record's WAL LSN and index in its insert batch."""
    c = batch.column
    return pa.Table.from_arrays(
        [
            c("time_ns"),
            micros(c("time_ns")),
            c("observed_ns"),
            c("service"),
            c("severity_number"),
            c("severity_text"),
            c("body"),
            hex_ids(c("trace_id")),
            hex_ids(c("span_id")),
            c("attributes"),
            c("resource"),
            c("scope_name"),
            lsn,
            index.cast(pa.int32()),
            hex_ids(c("body_blob")),
        ],
        schema=LOG_SCHEMA,
    )


def metrics_table(batch: pa.RecordBatch | pa.Table, lsn: pa.Array, index: pa.Array) -> pa.Table:
    """Metric points of a column batch as a version-2 cold table (``lsn``, ``index`` as in
    :func:`logs_table`)."""
    c = batch.column
    return pa.Table.from_arrays(
        [
            c("time_ns"),
            micros(c("time_ns")),
            c("name"),
            c("service"),
            hex_ids(c("series_id")),
            c("kind"),
            c("value"),
            c("unit"),
            c("attributes"),
            c("monotonic"),
            c("temporality"),
            c("start_ns"),
            c("count"),
            c("sum"),
            c("min"),
            c("max"),
            c("bucket_counts"),
            c("explicit_bounds"),
            lsn,
            index.cast(pa.int32()),
        ],
        schema=METRIC_SCHEMA,
    )


def file_order(dataset: str, table: pa.Table) -> pa.Array:
    """Indices putting ``table``'s rows in file order. Spans: traces in order of their
    first span's start (then trace id), each trace's spans together by (start, span id),
    so a trace lookup decodes one row group and row-group ``start_ns`` statistics still
    prune; ids may be binary or hex (the same order). Logs: time, then ingest order.
    Metrics and rollups: name and series, then time (one series is contiguous)."""
    if dataset == "spans" and table.num_rows:
        trace, start = table.column("trace_id"), table.column("start_ns")
        firsts = pa.table({"t": trace, "s": start}).group_by("t", use_threads=False).aggregate([("s", "min")])
        trace_start = pc.take(firsts.column("s_min"), pc.index_in(trace, value_set=firsts.column("t")))
        keyed = pa.table({"a": trace_start, "t": trace, "s": start, "p": table.column("span_id")})
        return pc.sort_indices(keyed, sort_keys=[(k, "ascending") for k in ("a", "t", "s", "p")])
    return pc.sort_indices(table, sort_keys=[(k, "ascending") for k in SORT_KEYS[dataset]])


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


def span_keys(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """(trace id, span id) of each row as three big-endian uint64 words, shape (rows, 3);
    the ids may be binary or hex."""
    trace, span = table.column("trace_id"), table.column("span_id")
    if pa.types.is_string(trace.type):
        trace, span = unhex_ids(trace, 16, "trace_id"), unhex_ids(span, 8, "span_id")
    n = len(trace)
    out = np.empty((n, 3), dtype=np.uint64)
    if n:
        out[:, :2] = np.frombuffer(plain(trace).buffers()[1], ">u8", count=2 * n).reshape(n, 2)
        out[:, 2] = np.frombuffer(plain(span).buffers()[1], ">u8", count=n)
    return out


def first_copies(keys: np.ndarray) -> np.ndarray | None:
    """For rows keyed by :func:`span_keys` (row order = write order): True for the first
    row of each key, False for a later copy; None when no key is there twice (the usual
    case, found from one 64-bit hash per row; only rows whose hash repeats are compared
    whole, so a hash collision costs a comparison, never a row)."""
    n = len(keys)
    if n < 2:
        return None
    hashed = (keys[:, 0] * _MIX[0]) ^ (keys[:, 1] * _MIX[1]) ^ (keys[:, 2] * _MIX[2])
    ordered = np.sort(hashed)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return None
    rows = np.flatnonzero(np.isin(hashed, repeated))
    sub = keys[rows]
    order = np.lexsort((rows, sub[:, 2], sub[:, 1], sub[:, 0]))  # by key, then by row: the first copy first
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (sub[order][1:] == sub[order][:-1]).all(axis=1)
    if not same.any():
        return None
    keep = np.ones(n, dtype=bool)
    keep[rows[order][same]] = False
    return keep


def first_of_each_span(table: pa.Table) -> pa.Table:
    """``table`` without later copies of a (trace_id, span_id): the first row wins, as the
    first write does in the hot tier. Vectorised; the table itself when no span is there
    twice."""
    keep = first_copies(span_keys(table))
    return table if keep is None else table.filter(pa.array(keep))


def day_parts(times: pa.Array | pa.ChunkedArray) -> list[tuple[int, np.ndarray]]:
    """(UTC day number, row indices) for each day ``times`` (int64 ns) fall on, oldest first."""
    days = np.asarray(plain(times).to_numpy(zero_copy_only=False), dtype=np.int64) // DAY_NS
    if len(days) == 0:
        return []
    first, last = int(days.min()), int(days.max())
    if first == last:
        return [(first, np.arange(len(days)))]
    order = np.argsort(days, kind="stable")
    bounds = np.flatnonzero(np.diff(days[order])) + 1
    return [(int(days[part[0]]), part) for part in np.split(order, bounds)]


# ---------------------------------------------------------------- blob references


def span_digests(table: pa.Table | pa.RecordBatch) -> list[bytes]:
    """Every blob digest the rows of a spans table (either version) or spans batch refer to."""
    refs = table.column("payload_refs")
    if pa.types.is_list(refs.type):  # version 1
        flat = pc.list_flatten(refs)
        return [bytes.fromhex(h) for h in pc.unique(pc.struct_field(flat, "sha256")).to_pylist()] if len(flat) else []
    texts = pc.drop_null(refs)
    if not len(texts):
        return []
    found = {digest for text in texts.to_pylist() for _event, _key, digest in _block.loads(text)}
    return [bytes.fromhex(h) for h in sorted(found)]


def log_digests(table: pa.Table | pa.RecordBatch) -> list[bytes]:
    """Every blob digest the rows of a logs table (hex) or logs batch (binary) refer to."""
    blobs = pc.drop_null(table.column("body_blob"))
    if not len(blobs):
        return []
    values = pc.unique(blobs).to_pylist()
    return [v if type(v) is bytes else bytes.fromhex(v) for v in values]


# ---------------------------------------------------------------- version-2 tables -> records


def _as_block(dataset: str, table: pa.Table) -> pa.Table:
    """A version-2 table with its hex id columns turned back into binary, as ``_block``'s
    record builders read them."""
    widths = {"spans": (("trace_id", 16), ("span_id", 8), ("parent_span_id", 8))}.get(
        dataset, (("trace_id", 16), ("span_id", 8), ("body_blob", 32)) if dataset == "logs" else ()
    )
    for name, width in widths:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, unhex_ids(table.column(name), width, name))
    return table


def span_records(table: pa.Table) -> list[list[Any]]:
    """Rows of a spans table (either version) as hot-tier span records (``SPAN_*``); a
    payload kept in the blob store comes back as its 32-byte digest."""
    if version_of(table.schema) == 1:
        return span_records_v1(table)
    return _block.span_records(_as_block("spans", table))


def _keys(table: pa.Table, time: str) -> list[tuple[int, int, int]]:
    return list(
        zip(
            table.column(time).to_pylist(),
            table.column("wal_lsn").to_pylist(),
            table.column("batch_index").to_pylist(),
            strict=True,
        )
    )


def log_records(table: pa.Table) -> list[tuple[tuple[int, int, int], list[Any]]]:
    """Rows of a logs table (either version) as ((time, lsn, index) key, record array)."""
    if version_of(table.schema) == 1:
        return log_records_v1(table)
    return list(zip(_keys(table, "time_ns"), _block.log_records(_as_block("logs", table)), strict=True))


def metric_records(table: pa.Table) -> list[tuple[tuple[int, int, int], list[Any]]]:
    """Rows of a metrics table (either version) as ((time, lsn, index) key, record array)."""
    if version_of(table.schema) == 1:
        return metric_records_v1(table)
    return list(zip(_keys(table, "time_ns"), _block.metric_records(table), strict=True))


# ---------------------------------------------------------------- version 1 -> records, and upgrades


def _attrs_back(pairs: list[tuple[str, str]] | None, typed: str | None) -> dict[str, Any]:
    out = dict(pairs) if pairs else {}
    if typed:
        out.update(json.loads(typed))
    return out


def _unhex(s: str | None) -> bytes | None:
    return bytes.fromhex(s) if s is not None else None


_DERIVED_V1 = frozenset(("start_time", "time", "window_start"))


def _columns_v1(table: pa.Table) -> dict[str, list[Any]]:
    return {name: table.column(name).to_pylist() for name in table.column_names if name not in _DERIVED_V1}


def span_records_v1(table: pa.Table) -> list[list[Any]]:
    """Rows of a version-1 spans table back to span records."""
    c = _columns_v1(table)
    out = []
    kinds, statuses = {k: i for i, k in enumerate(SPAN_KINDS)}, {s: i for i, s in enumerate(SPAN_STATUSES)}
    payload_refs = c.get("payload_refs") or [None] * table.num_rows
    for i in range(table.num_rows):
        out.append(
            [
                bytes.fromhex(c["trace_id"][i]),
                bytes.fromhex(c["span_id"][i]),
                _unhex(c["parent_span_id"][i]),
                c["name"][i],
                c["service"][i],
                c["start_ns"][i],
                c["end_ns"][i],
                kinds[c["kind"][i]],
                statuses[c["status"][i]],
                c["status_message"][i],
                _attrs_back(c["attributes"][i], c["attributes_typed"][i]),
                _attrs_back(c["resource"][i], c["resource_typed"][i]),
                c["scope_name"][i],
                c["scope_version"][i],
                [[e["time_ns"], e["name"], json.loads(e["attributes"])] for e in c["events"][i]],
                [
                    [bytes.fromhex(ln["trace_id"]), bytes.fromhex(ln["span_id"]), json.loads(ln["attributes"])]
                    for ln in c["links"][i]
                ],
                c["trace_state"][i],
                c["flags"][i],
            ]
        )
        refs = payload_refs[i]
        if refs:
            f = out[-1]
            for ref in refs:
                target = f[SPAN_ATTRS] if ref["event"] < 0 else f[SPAN_EVENTS][ref["event"]][EVENT_ATTRS]
                target[ref["key"]] = bytes.fromhex(ref["sha256"])
    return out


def log_records_v1(table: pa.Table) -> list[tuple[tuple[int, int, int], list[Any]]]:
    """Rows of a version-1 logs table as ((time, lsn, index) key, record array)."""
    c = _columns_v1(table)
    out = []
    blobs = c.get("body_blob") or [None] * table.num_rows
    for i in range(table.num_rows):
        blob = blobs[i]
        f = [
            c["time_ns"][i],
            c["body"][i] if blob is None else bytes.fromhex(blob),
            c["service"][i],
            c["severity_number"][i],
            c["severity_text"][i],
            _unhex(c["trace_id"][i]),
            _unhex(c["span_id"][i]),
            _attrs_back(c["attributes"][i], c["attributes_typed"][i]),
            _attrs_back(c["resource"][i], c["resource_typed"][i]),
            c["observed_ns"][i],
            c["scope_name"][i],
        ]
        out.append(((f[LOG_TIME], c["wal_lsn"][i], c["batch_index"][i]), f))
    return out


def metric_records_v1(table: pa.Table) -> list[tuple[tuple[int, int, int], list[Any]]]:
    """Rows of a version-1 metrics table as ((time, lsn, index) key, record array)."""
    c = _columns_v1(table)
    kinds, temps = {k: i for i, k in enumerate(METRIC_KINDS)}, {t: i for i, t in enumerate(TEMPORALITIES)}
    out = []
    for i in range(table.num_rows):
        f = [
            c["time_ns"][i],
            c["name"][i],
            c["service"][i],
            c["value"][i],
            kinds[c["kind"][i]],
            c["unit"][i],
            _attrs_back(c["attributes"][i], c["attributes_typed"][i]),
            c["monotonic"][i],
            temps[c["temporality"][i]],
            c["start_ns"][i],
            c["count"][i],
            c["sum"][i],
            c["min"][i],
            c["max"][i],
            c["bucket_counts"][i],
            c["explicit_bounds"][i],
        ]
        out.append(((f[METRIC_TIME], c["wal_lsn"][i], c["batch_index"][i]), f))
    return out


def upgrade(dataset: str, table: pa.Table) -> pa.Table:
    """A table read from a cold file (all its columns) as version 2, rows in the same
    order; a version-2 table as it is. Version 1 goes through records (per row: these
    files are only ever read this way while a store migrates them, or read-only)."""
    if version_of(table.schema) == 2:
        return table
    if dataset == "spans":
        return spans_table(_block.spans_batch(span_records_v1(table)))
    if dataset in ("logs", "metrics"):
        keyed = (log_records_v1 if dataset == "logs" else metric_records_v1)(table)
        lsn = pa.array([k[1] for k, _f in keyed], pa.int64())
        index = pa.array([k[2] for k, _f in keyed], pa.int32())
        records = [f for _k, f in keyed]
        if dataset == "logs":
            return logs_table(_block.logs_batch(records), lsn, index)
        series = unhex_ids(table.column("series_id"), 8, "series_id").to_pylist()
        return metrics_table(_block.metrics_batch(records, series), lsn, index)
    attrs = [
        _block.dumps(_attrs_back(pairs, typed)).decode() if pairs or typed else "{}"
        for pairs, typed in zip(
            table.column("attributes").to_pylist(), table.column("attributes_typed").to_pylist(), strict=True
        )
    ]
    columns = {name: table.column(name) for name in ROLLUP_SCHEMA.names if name in table.column_names}
    columns["attributes"] = pa.chunked_array([pa.array(attrs, pa.string())])
    columns["window_start"] = pa.chunked_array([micros(table.column("window_start_ns"))])
    return pa.Table.from_arrays([columns[n] for n in ROLLUP_SCHEMA.names], schema=ROLLUP_SCHEMA)
