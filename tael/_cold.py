"""The cold tier's file format: date-partitioned Parquet datasets, their schemas,
and the conversion between hot-tier records and Arrow tables.

The layout and every column are a public format documented in
docs/format/cold.md: DuckDB, Spark or pyarrow read these files without tael.
This module knows nothing about LMDB; the manifest that says which files are
live lives in the hot tier and is driven by the Compactor (tael/_compactor.py). Queries read the
tier through :class:`ColdReader` (the read protocol of ``tael._query.tier``),
given a manifest snapshot and the cold trace index of the same LMDB transaction.

Three parts, in this order: the format (schemas, records <-> tables), the files
(:class:`ColdTier`) and the reader. Together they are over the ~800 lines a
module should stay under; they are kept in one module until the tier becomes a
package (docs/architecture.md), where they split along those lines.
"""

from __future__ import annotations

import errno
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ._coldfs import LocalFiles, RemoteFiles, open_files
from ._errors import StorageError
from ._layout import (
    EVENT_ATTRS,
    EVENT_NAME,
    EVENT_TIME,
    LINK_ATTRS,
    LINK_SPAN,
    LINK_TRACE,
    LOG_ATTRS,
    LOG_BODY,
    LOG_OBSERVED,
    LOG_RESOURCE,
    LOG_SCOPE_NAME,
    LOG_SERVICE,
    LOG_SEVERITY,
    LOG_SEVERITY_TEXT,
    LOG_SPAN,
    LOG_TIME,
    LOG_TRACE,
    METRIC_ATTRS,
    METRIC_BOUNDS,
    METRIC_BUCKETS,
    METRIC_COUNT,
    METRIC_KIND,
    METRIC_MAX,
    METRIC_MIN,
    METRIC_MONOTONIC,
    METRIC_NAME,
    METRIC_SERVICE,
    METRIC_START,
    METRIC_SUM,
    METRIC_TEMPORALITY,
    METRIC_TIME,
    METRIC_UNIT,
    METRIC_VALUE,
    SPAN_ATTRS,
    SPAN_END,
    SPAN_EVENTS,
    SPAN_FLAGS,
    SPAN_ID,
    SPAN_KIND,
    SPAN_LINKS,
    SPAN_NAME,
    SPAN_PARENT,
    SPAN_RESOURCE,
    SPAN_SCOPE_NAME,
    SPAN_SCOPE_VERSION,
    SPAN_SERVICE,
    SPAN_START,
    SPAN_STATUS,
    SPAN_STATUS_MESSAGE,
    SPAN_TRACE,
    SPAN_TRACE_STATE,
)
from ._models import METRIC_KINDS, SPAN_KINDS, SPAN_STATUSES, TEMPORALITIES
from ._query.filters import Predicate, Scan, trace_expr
from ._query.plan import plan
from ._query.tier import Hit, Stop

log = logging.getLogger(__name__)

_FOOTER_CACHE = 4096  # parsed Parquet footers kept in memory (a few KB each)
DAY_NS = 86_400 * 1_000_000_000
WINDOW_NS = {"metrics_5m": 300 * 1_000_000_000, "metrics_1h": 3600 * 1_000_000_000}

_TS = pa.timestamp("ns", tz="UTC")
_ATTRS = pa.map_(pa.string(), pa.string())
_EVENT = pa.struct([("time_ns", pa.int64()), ("name", pa.string()), ("attributes", pa.string())])
_LINK = pa.struct([("trace_id", pa.string()), ("span_id", pa.string()), ("attributes", pa.string())])
_PAYLOAD_REF = pa.struct([("event", pa.int32()), ("key", pa.string()), ("sha256", pa.string())])
BLOB_PREFIX = "sha256:"
"""What a payload kept in the blob store reads as in the attribute and body columns."""

SPAN_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("parent_span_id", pa.string()),
        ("name", pa.string()),
        ("service", pa.string()),
        ("kind", pa.string()),
        ("status", pa.string()),
        ("status_message", pa.string()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("duration_ns", pa.int64()),
        ("start_time", _TS),
        ("attributes", _ATTRS),
        ("attributes_typed", pa.string()),
        ("resource", _ATTRS),
        ("resource_typed", pa.string()),
        ("scope_name", pa.string()),
        ("scope_version", pa.string()),
        ("events", pa.list_(_EVENT)),
        ("links", pa.list_(_LINK)),
        ("trace_state", pa.string()),
        ("flags", pa.int64()),
        ("payload_refs", pa.list_(_PAYLOAD_REF)),
    ]
)

LOG_SCHEMA = pa.schema(
    [
        ("time_ns", pa.int64()),
        ("time", _TS),
        ("observed_ns", pa.int64()),
        ("service", pa.string()),
        ("severity_number", pa.int32()),
        ("severity_text", pa.string()),
        ("body", pa.string()),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("attributes", _ATTRS),
        ("attributes_typed", pa.string()),
        ("resource", _ATTRS),
        ("resource_typed", pa.string()),
        ("scope_name", pa.string()),
        ("wal_lsn", pa.int64()),
        ("batch_index", pa.int32()),
        ("body_blob", pa.string()),
    ]
)

METRIC_SCHEMA = pa.schema(
    [
        ("time_ns", pa.int64()),
        ("time", _TS),
        ("name", pa.string()),
        ("service", pa.string()),
        ("series_id", pa.string()),
        ("kind", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("attributes", _ATTRS),
        ("attributes_typed", pa.string()),
        ("monotonic", pa.bool_()),
        ("temporality", pa.string()),
        ("start_ns", pa.int64()),
        ("count", pa.int64()),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("bucket_counts", pa.list_(pa.int64())),
        ("explicit_bounds", pa.list_(pa.float64())),
        ("wal_lsn", pa.int64()),
        ("batch_index", pa.int32()),
    ]
)

ROLLUP_SCHEMA = pa.schema(
    [
        ("window_start_ns", pa.int64()),
        ("window_start", _TS),
        ("window_ns", pa.int64()),
        ("name", pa.string()),
        ("service", pa.string()),
        ("series_id", pa.string()),
        ("kind", pa.string()),
        ("unit", pa.string()),
        ("attributes", _ATTRS),
        ("attributes_typed", pa.string()),
        ("monotonic", pa.bool_()),
        ("temporality", pa.string()),
        ("count", pa.int64()),
        ("sum", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("first_ns", pa.int64()),
        ("first", pa.float64()),
        ("last_ns", pa.int64()),
        ("last", pa.float64()),
        ("increase", pa.float64()),
        ("hist_count", pa.int64()),
        ("hist_sum", pa.float64()),
    ]
)

SCHEMAS = {
    "spans": SPAN_SCHEMA,
    "logs": LOG_SCHEMA,
    "metrics": METRIC_SCHEMA,
    "metrics_5m": ROLLUP_SCHEMA,
    "metrics_1h": ROLLUP_SCHEMA,
}
SORT_KEYS = {
    "spans": ("start_ns", "trace_id", "span_id"),  # after grouping by trace: see sort_table
    "logs": ("time_ns", "wal_lsn", "batch_index"),
    "metrics": ("name", "series_id", "time_ns", "wal_lsn", "batch_index"),
    "metrics_5m": ("name", "series_id", "window_start_ns", "first_ns"),
    "metrics_1h": ("name", "series_id", "window_start_ns", "first_ns"),
}
_DICTIONARY_COLUMNS = frozenset(
    {"name", "service", "kind", "status", "status_message", "scope_name", "scope_version", "trace_state"}
    | {"severity_text", "unit", "temporality", "series_id"}
)
"""Repetitive strings stored dictionary-encoded. Ids, bodies and attribute maps are not:
measured on the synthetic workload, dictionaries there made files larger and slower to read."""

TIME_COLUMN = {
    "spans": "start_ns",
    "logs": "time_ns",
    "metrics": "time_ns",
    "metrics_5m": "window_start_ns",
    "metrics_1h": "window_start_ns",
}


# ---------------------------------------------------------------- manifest entries


@dataclass(frozen=True, slots=True)
class ColdFile:
    """One live cold file, as recorded in the manifest (the ``cold_files`` LMDB table)."""

    file_id: int
    dataset: str
    date: str
    rows: int
    size: int
    min_ns: int
    max_ns: int
    row_groups: int
    services: dict[str, list[int]] = field(default_factory=dict)
    """spans: service -> [spans, errors, total duration ns, distinct traces in this file];
    other datasets: service -> rows."""
    names: tuple[str, ...] = ()
    """Metric names in the file (metrics and rollups), for pruning."""

    @property
    def relpath(self) -> str:
        return f"{self.dataset}/date={self.date}/part-{self.file_id:010d}.parquet"

    def pack(self) -> bytes:
        return bytes(
            msgpack.packb(
                [
                    1,
                    self.dataset,
                    self.date,
                    self.rows,
                    self.size,
                    self.min_ns,
                    self.max_ns,
                    self.row_groups,
                    self.services,
                    list(self.names),
                ],
                use_bin_type=True,
            )
        )

    @classmethod
    def unpack(cls, file_id: int, raw: bytes) -> ColdFile:
        f = msgpack.unpackb(raw, raw=False)
        if f[0] != 1:
            raise StorageError(f"cold manifest entry {file_id} has unknown version {f[0]}")
        return cls(file_id, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], tuple(f[9]))

    def overlaps(self, lo: int | None, hi: int | None) -> bool:
        """Whether any record time in the file may fall in ``[lo, hi)``."""
        return (lo is None or self.max_ns >= lo) and (hi is None or self.min_ns < hi)


def day_of(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%d")


def day_start_ns(date: str) -> int:
    d = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(d.timestamp()) * 1_000_000_000


# ---------------------------------------------------------------- attributes


_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_LITERALS = {True: "true", False: "false", None: "null"}
_quote = json.encoder.encode_basestring


def _json(value: Any) -> str:
    """Compact JSON text of an attribute value (ints and finite floats without the
    encoder's overhead: this runs once per attribute at compaction)."""
    t = type(value)
    if t is int:
        return str(value)
    if t is float and value - value == 0.0:  # finite
        return repr(value)
    if t is bool or value is None:
        return _LITERALS[value]
    if t is str:
        return str(_quote(value))
    if t is dict:
        return "{" + ",".join(_quote(k) + ":" + _json(v) for k, v in value.items()) + "}"
    return str(_encode_json(value))


def _attr_pairs(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v if type(v) is str else _json(v)) for k, v in attrs.items()]


def _attr_typed(attrs: dict[str, Any]) -> str | None:
    for v in attrs.values():
        if type(v) is not str:
            return _json({k: v for k, v in attrs.items() if type(v) is not str})
    return None


def _unblobbed(attrs: dict[str, Any], event: int, refs: list[dict[str, Any]]) -> dict[str, Any]:
    """``attrs`` with each blob digest replaced by its "sha256:<hex>" text, the digests
    listed in ``refs`` (the ``payload_refs`` column) so reads can put them back."""
    if not attrs or bytes not in set(map(type, attrs.values())):
        return attrs
    out = {}
    for k, v in attrs.items():
        if type(v) is bytes:
            h = v.hex()
            refs.append({"event": event, "key": k, "sha256": h})
            v = BLOB_PREFIX + h
        out[k] = v
    return out


def _attrs_back(pairs: list[tuple[str, str]] | None, typed: str | None) -> dict[str, Any]:
    out = dict(pairs) if pairs else {}
    if typed:
        out.update(json.loads(typed))
    return out


def _hex(b: bytes | None) -> str | None:
    return b.hex() if b is not None else None


def _unhex(s: str | None) -> bytes | None:
    return bytes.fromhex(s) if s is not None else None


# ---------------------------------------------------------------- records -> tables
#
# Hot-tier records are the msgpack arrays documented in docs/format/wal.md
# ("Record layouts"); ``f`` below is one unpacked record.


def spans_table(records: Sequence[list[Any]]) -> pa.Table:
    cols: dict[str, list[Any]] = {name: [] for name in SPAN_SCHEMA.names}
    for f in records:
        cols["trace_id"].append(f[SPAN_TRACE].hex())
        cols["span_id"].append(f[SPAN_ID].hex())
        cols["parent_span_id"].append(_hex(f[SPAN_PARENT]))
        cols["name"].append(f[SPAN_NAME])
        cols["service"].append(f[SPAN_SERVICE])
        cols["kind"].append(SPAN_KINDS[f[SPAN_KIND]])
        cols["status"].append(SPAN_STATUSES[f[SPAN_STATUS]])
        cols["status_message"].append(f[SPAN_STATUS_MESSAGE])
        cols["start_ns"].append(f[SPAN_START])
        cols["end_ns"].append(f[SPAN_END])
        cols["duration_ns"].append(f[SPAN_END] - f[SPAN_START])
        cols["start_time"].append(f[SPAN_START])
        refs: list[dict[str, Any]] = []
        attrs = _unblobbed(f[SPAN_ATTRS], -1, refs)
        cols["attributes"].append(_attr_pairs(attrs))
        cols["attributes_typed"].append(_attr_typed(attrs))
        cols["resource"].append(_attr_pairs(f[SPAN_RESOURCE]))
        cols["resource_typed"].append(_attr_typed(f[SPAN_RESOURCE]))
        cols["scope_name"].append(f[SPAN_SCOPE_NAME])
        cols["scope_version"].append(f[SPAN_SCOPE_VERSION])
        cols["events"].append(
            [
                {
                    "time_ns": e[EVENT_TIME],
                    "name": e[EVENT_NAME],
                    "attributes": _json(_unblobbed(e[EVENT_ATTRS], j, refs)),
                }
                for j, e in enumerate(f[SPAN_EVENTS])
            ]
        )
        cols["payload_refs"].append(refs or None)
        cols["links"].append(
            [
                {"trace_id": ln[LINK_TRACE].hex(), "span_id": ln[LINK_SPAN].hex(), "attributes": _json(ln[LINK_ATTRS])}
                for ln in f[SPAN_LINKS]
            ]
        )
        cols["trace_state"].append(f[SPAN_TRACE_STATE])
        cols["flags"].append(f[SPAN_FLAGS])
    return _table("spans", cols)


def logs_table(records: Sequence[tuple[int, int, list[Any]]]) -> pa.Table:
    """``records``: (wal lsn, index in batch, record)."""
    cols: dict[str, list[Any]] = {name: [] for name in LOG_SCHEMA.names}
    for lsn, idx, f in records:
        cols["time_ns"].append(f[LOG_TIME])
        cols["time"].append(f[LOG_TIME])
        cols["observed_ns"].append(f[LOG_OBSERVED])
        cols["service"].append(f[LOG_SERVICE])
        cols["severity_number"].append(f[LOG_SEVERITY])
        cols["severity_text"].append(f[LOG_SEVERITY_TEXT])
        body = f[LOG_BODY]
        if type(body) is bytes:
            cols["body_blob"].append(body.hex())
            body = BLOB_PREFIX + body.hex()
        else:
            cols["body_blob"].append(None)
        cols["body"].append(body)
        cols["trace_id"].append(_hex(f[LOG_TRACE]))
        cols["span_id"].append(_hex(f[LOG_SPAN]))
        cols["attributes"].append(_attr_pairs(f[LOG_ATTRS]))
        cols["attributes_typed"].append(_attr_typed(f[LOG_ATTRS]))
        cols["resource"].append(_attr_pairs(f[LOG_RESOURCE]))
        cols["resource_typed"].append(_attr_typed(f[LOG_RESOURCE]))
        cols["scope_name"].append(f[LOG_SCOPE_NAME])
        cols["wal_lsn"].append(lsn)
        cols["batch_index"].append(idx)
    return _table("logs", cols)


def metrics_table(records: Sequence[tuple[int, int, bytes, list[Any]]]) -> pa.Table:
    """``records``: (wal lsn, index in batch, series id, record)."""
    cols: dict[str, list[Any]] = {name: [] for name in METRIC_SCHEMA.names}
    for lsn, idx, sid, f in records:
        cols["time_ns"].append(f[METRIC_TIME])
        cols["time"].append(f[METRIC_TIME])
        cols["name"].append(f[METRIC_NAME])
        cols["service"].append(f[METRIC_SERVICE])
        cols["series_id"].append(sid.hex())
        cols["kind"].append(METRIC_KINDS[f[METRIC_KIND]])
        cols["value"].append(f[METRIC_VALUE])
        cols["unit"].append(f[METRIC_UNIT])
        cols["attributes"].append(_attr_pairs(f[METRIC_ATTRS]))
        cols["attributes_typed"].append(_attr_typed(f[METRIC_ATTRS]))
        cols["monotonic"].append(f[METRIC_MONOTONIC])
        cols["temporality"].append(TEMPORALITIES[f[METRIC_TEMPORALITY]])
        cols["start_ns"].append(f[METRIC_START])
        cols["count"].append(f[METRIC_COUNT])
        cols["sum"].append(f[METRIC_SUM])
        cols["min"].append(f[METRIC_MIN])
        cols["max"].append(f[METRIC_MAX])
        cols["bucket_counts"].append(f[METRIC_BUCKETS])
        cols["explicit_bounds"].append(f[METRIC_BOUNDS])
        cols["wal_lsn"].append(lsn)
        cols["batch_index"].append(idx)
    return _table("metrics", cols)


def rollup_table(dataset: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """``rows``: dicts with the rollup columns, except the derived ``window_start`` and
    the attribute encodings, which are built here from ``attrs``."""
    cols: dict[str, list[Any]] = {name: [] for name in ROLLUP_SCHEMA.names}
    for r in rows:
        for name in ROLLUP_SCHEMA.names:
            if name == "window_start":
                cols[name].append(r["window_start_ns"])
            elif name == "attributes":
                cols[name].append(_attr_pairs(r["attrs"]))
            elif name == "attributes_typed":
                cols[name].append(_attr_typed(r["attrs"]))
            else:
                cols[name].append(r[name])
    return _table(dataset, cols)


def _table(dataset: str, cols: dict[str, list[Any]]) -> pa.Table:
    schema = SCHEMAS[dataset]
    arrays = []
    for fld in schema:
        values = cols[fld.name]
        if fld.type == _TS:
            arrays.append(pa.array(values, pa.int64()).cast(_TS))
        else:
            arrays.append(pa.array(values, fld.type))
    return sort_table(dataset, pa.Table.from_arrays(arrays, schema=schema))


def sort_table(dataset: str, table: pa.Table) -> pa.Table:
    """Rows in file order. Spans: traces in order of their first span's start, each
    trace's spans together in start order, so a trace lookup decodes one row group
    and row-group start_ns statistics still prune time ranges. Logs: time order.
    Metrics and rollups: by name and series, then time (one series is contiguous)."""
    if dataset == "spans" and table.num_rows:
        first = table.group_by("trace_id").aggregate([("start_ns", "min")])
        lookup = dict(zip(first.column("trace_id").to_pylist(), first.column("start_ns_min").to_pylist(), strict=True))
        trace_start = pa.array([lookup[t] for t in table.column("trace_id").to_pylist()], pa.int64())
        keyed = table.append_column("_trace_start", trace_start)
        order = pc.sort_indices(
            keyed,
            sort_keys=[
                ("_trace_start", "ascending"),
                ("trace_id", "ascending"),
                ("start_ns", "ascending"),
                ("span_id", "ascending"),
            ],
        )
        return table.take(order)
    return table.sort_by([(k, "ascending") for k in SORT_KEYS[dataset]])


# ---------------------------------------------------------------- tables -> records

_DERIVED = frozenset(("start_time", "time", "window_start"))  # SQL conveniences; tael reads the int64s


def columns_of(table: pa.Table) -> dict[str, list[Any]]:
    return {name: table.column(name).to_pylist() for name in table.column_names if name not in _DERIVED}


def span_records(table: pa.Table) -> list[list[Any]]:
    """Rows of a spans table back to hot-tier record arrays (see _codec.decode_span)."""
    c = columns_of(table)
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


def file_digests(table: pa.Table) -> list[bytes]:
    """Every blob digest the rows of a spans or logs table refer to."""
    if "payload_refs" in table.column_names:
        refs = pc.list_flatten(table.column("payload_refs"))
        if not len(refs):
            return []
        hexes = pc.unique(pc.struct_field(refs, "sha256")).to_pylist()
    elif "body_blob" in table.column_names:
        hexes = [h for h in pc.unique(table.column("body_blob")).to_pylist() if h is not None]
    else:
        return []
    return [bytes.fromhex(h) for h in hexes]


def log_records(table: pa.Table) -> list[tuple[tuple[int, int, int], list[Any]]]:
    """Rows of a logs table as ((time, lsn, index) sort key, record array)."""
    c = columns_of(table)
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


def metric_records(table: pa.Table) -> list[tuple[tuple[int, int, int], list[Any]]]:
    """Rows of a metrics table as ((time, lsn, index) sort key, record array)."""
    c = columns_of(table)
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


# ---------------------------------------------------------------- files


class ColdTier:
    """The cold tier's Parquet files: encoding, publishing, reading and deleting them,
    wherever they live (``_coldfs``: ``<data>/cold`` by default, or object storage)."""

    def __init__(self, files: LocalFiles | RemoteFiles | Path, *, row_group_rows: int, compression_level: int) -> None:
        self.files = files if isinstance(files, (LocalFiles, RemoteFiles)) else LocalFiles(files)
        self.row_group_rows = row_group_rows
        self.compression_level = compression_level
        self._footers: dict[int, pq.FileMetaData] = {}
        # Files a long read (Store.sql) uses, by relpath: remove() defers deleting them
        # until no read pins them, so a query never loses a file of its snapshot to a merge.
        self.pin_lock = threading.Lock()
        self._pins: Counter[str] = Counter()
        self._deferred: set[str] = set()

    @property
    def remote(self) -> bool:
        """Whether the files are elsewhere than on local disk (read through ``<data>/cache``)."""
        return self.files.remote

    @property
    def location(self) -> str:
        """Where the files are: a directory, or a URI such as ``s3://bucket/prefix``."""
        return self.files.location

    @property
    def root(self) -> Path:
        """The directory of a local cold tier."""
        if not isinstance(self.files, LocalFiles):
            raise StorageError(f"the cold tier is at {self.location}, not in a local directory")
        return self.files.root

    def path(self, f: ColdFile) -> Path:
        """A file's path in a local cold tier."""
        return self.root / f.relpath

    def describe(self, f: ColdFile) -> str:
        """A file's full path or URI, for messages."""
        return self.files.describe(f.relpath)

    def encode(self, dataset: str, table: pa.Table) -> bytes:
        """Serialise a sorted table as one Parquet file: zstd, dictionaries, statistics,
        page index, a bloom filter on trace_id, and the sort order recorded."""
        sink = pa.BufferOutputStream()
        names = table.column_names
        bloom = {"trace_id": {"ndv": max(table.num_rows, 1), "fpp": 0.01}} if "trace_id" in names else None
        pq.write_table(
            table,
            sink,
            row_group_size=self.row_group_rows,
            compression="zstd",
            compression_level=self.compression_level,
            use_dictionary=[c for c in names if c in _DICTIONARY_COLUMNS],
            write_statistics=True,
            write_page_index=True,
            bloom_filter_options=bloom,
            sorting_columns=None
            if dataset == "spans"
            else [pq.SortingColumn(names.index(k)) for k in SORT_KEYS[dataset]],
        )
        return bytes(sink.getvalue().to_pybytes())

    # ------------------------------------------------------------ writes

    def publish(self, f: ColdFile, data: bytes) -> None:
        """Durably place a file: locally temp, fsync, rename, fsync dir; on object storage
        one verified upload. It is live only once the manifest that names it commits.
        Raises OSError (StorageError for object storage) if the file is not durably there."""
        self.files.publish(f.relpath, data)

    def discard(self, f: ColdFile) -> None:
        """Remove a file published for a change that did not commit (best effort: one left
        behind is an orphan, removed when the store next opens)."""
        try:
            self.files.discard(f.relpath)
        except OSError as exc:
            log.warning("cannot remove uncommitted cold file %s (an orphan until the next open): %s", f.relpath, exc)

    def remove(self, files: Iterable[ColdFile]) -> None:
        """Delete files the manifest no longer names (after that change is durable).
        A file a read has pinned is deleted by a later call (or ``close``) once unpinned;
        so are files left so by earlier calls."""
        files = list(files)
        for f in files:
            self._footers.pop(f.file_id, None)
        with self.pin_lock:
            self._deferred.update(f.relpath for f in files)
            doomed = sorted(rel for rel in self._deferred if not self._pins[rel])
            self._deferred.difference_update(doomed)
        if doomed:
            self.files.delete(doomed)

    def close(self) -> None:
        """Delete what ``remove`` deferred and no read pins any more; a file still pinned
        (a read running through the close) stays, an orphan removed at the next open."""
        self.remove([])
        if self._deferred:
            log.warning("%d replaced cold files are still read; removed at the next open", len(self._deferred))

    @contextmanager
    def pinned(self, snapshot: Callable[[], tuple[Any, list[ColdFile]]]) -> Iterator[tuple[Any, list[ColdFile]]]:
        """Take ``snapshot()`` (a read snapshot and the manifest it sees) and keep every file
        of that manifest on disk until the block ends, however it is merged or dropped
        meanwhile. The snapshot is taken under ``pin_lock``, the lock ``remove`` decides
        under: a file is either pinned before its removal is decided, or the manifest
        that replaced it committed before the snapshot, which then does not name it."""
        with self.pin_lock:
            txn, manifest = snapshot()
            rels = [f.relpath for f in manifest]
            self._pins.update(rels)
        try:
            yield txn, manifest
        finally:
            with self.pin_lock:
                self._pins.subtract(rels)
                for rel in rels:
                    if self._pins[rel] <= 0:
                        del self._pins[rel]

    def sweep_orphans(self, live: set[str]) -> int:
        """Delete every file of the tier the manifest does not name: the leftovers of a
        compaction or merge that crashed before its manifest update committed."""
        return self.files.sweep(live)

    def listing(self) -> list[str]:
        """Paths (relative to the tier's root) of the files there, live or not."""
        return self.files.listing()

    def stored_size(self, f: ColdFile) -> int | None:
        """The size of a file where it is stored; None if it is not there."""
        return self.files.size(f.relpath)

    def read_footer(self, f: ColdFile) -> pq.FileMetaData:
        """A file's footer read from where it is stored (never cached: for checks)."""
        with self.files.open_direct(f.relpath) as src:
            return pq.read_metadata(src)

    # ------------------------------------------------------------ reads

    def local_paths(self, files: Sequence[ColdFile]) -> list[str] | None:
        """Paths of the files for engines reading local files; None for a remote tier."""
        if isinstance(self.files, LocalFiles):
            return [str(self.files.root / f.relpath) for f in files]
        return None

    def remote_dataset(self, files: Sequence[ColdFile]) -> ds.Dataset:
        """The files of one dataset as a pyarrow dataset read from object storage, with
        the partition column ``date`` (string); for engines such as DuckDB."""
        assert isinstance(self.files, RemoteFiles) and files
        return self.files.dataset([(f.relpath, f.size, f.date) for f in files], SCHEMAS[files[0].dataset])

    def read(
        self,
        files: Sequence[ColdFile],
        *,
        columns: list[str] | None = None,
        filter: pc.Expression | None = None,
    ) -> pa.Table:
        """Rows of the given files matching ``filter`` (row groups whose statistics
        cannot match are skipped)."""
        assert files, "read() needs at least one file"
        schema = SCHEMAS[files[0].dataset]
        try:
            with ExitStack() as stack:
                sources = [stack.enter_context(self.files.open(f.relpath, f.size)) for f in files]
                if all(isinstance(src, str) for src in sources):
                    dataset = ds.dataset(sources, format="parquet", schema=schema)
                else:
                    fmt = ds.ParquetFileFormat()
                    dataset = ds.FileSystemDataset([fmt.make_fragment(src) for src in sources], schema, fmt)
                return dataset.to_table(columns=columns, filter=filter)
        except (FileNotFoundError, StorageError):
            raise
        except OSError as exc:
            if exc.errno == errno.ENOENT or "No such file" in str(exc):
                raise FileNotFoundError(str(exc)) from exc
            raise StorageError(f"cannot read cold files {[f.relpath for f in files]}: {exc}") from exc
        except pa.ArrowInvalid as exc:
            raise StorageError(f"cold file is damaged ({[f.relpath for f in files]}): {exc}") from exc

    def read_all(self, f: ColdFile, columns: list[str] | None = None) -> pa.Table:
        """One whole file, in its row order."""
        try:
            with self.files.open(f.relpath, f.size) as src:
                return pq.read_table(src, columns=columns, schema=SCHEMAS[f.dataset])
        except pa.ArrowInvalid as exc:
            raise StorageError(f"cold file {f.relpath} is damaged: {exc}") from exc

    def row_group_sizes(self, f: ColdFile) -> list[int]:
        meta = self._metadata(f)
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def _metadata(self, f: ColdFile) -> pq.FileMetaData:
        """A file's footer, cached: files never change once published."""
        meta = self._footers.get(f.file_id)
        if meta is None:
            with self.files.open(f.relpath, f.size) as src:
                meta = pq.read_metadata(src)
            if len(self._footers) >= _FOOTER_CACHE:
                self._footers.pop(next(iter(self._footers)))
            self._footers[f.file_id] = meta
        return meta

    def row_group_times(self, f: ColdFile, column: str) -> list[tuple[int, int, int]]:
        """(row group, min, max) of a file's time column, from the footer statistics."""
        meta = self._metadata(f)
        idx = meta.schema.to_arrow_schema().get_field_index(column)
        out = []
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(idx).statistics
            if st is None or not st.has_min_max:
                out.append((i, f.min_ns, f.max_ns))
            else:
                out.append((i, int(st.min), int(st.max)))
        return out

    def read_pruned(
        self,
        files: Sequence[ColdFile],
        bounds: dict[str, tuple[Any, Any]],
        filter: pc.Expression,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of ``files`` matching ``filter``, decoding only the row groups whose
        statistics overlap every inclusive (low, high) in ``bounds`` (cached footers:
        cheaper than a dataset scan for the small reads a dashboard makes)."""
        tables = []
        for f in files:
            meta = self._metadata(f)
            names = meta.schema.to_arrow_schema().names
            keep = []
            for i in range(meta.num_row_groups):
                rg = meta.row_group(i)
                ok = True
                for column, (low, high) in bounds.items():
                    st = rg.column(names.index(column)).statistics
                    if st is not None and st.has_min_max and (st.max < low or st.min > high):
                        ok = False
                        break
                if ok:
                    keep.append(i)
            if keep:
                tables.append(self.read_row_groups(f, keep, columns).filter(filter))
        if not tables:
            empty = SCHEMAS[files[0].dataset].empty_table()
            return empty.select(list(columns)) if columns is not None else empty
        return pa.concat_tables(tables)

    def read_row_groups(self, f: ColdFile, row_groups: Sequence[int], columns: Sequence[str] | None = None) -> pa.Table:
        try:
            metadata = self._metadata(f)
            with self.files.open(f.relpath, f.size) as src:
                pf = pq.ParquetFile(src, metadata=metadata)
                return pf.read_row_groups(list(row_groups), columns=list(columns) if columns is not None else None)
        except pa.ArrowInvalid as exc:
            raise StorageError(f"cold file {f.relpath} is damaged: {exc}") from exc

    # ------------------------------------------------------------ checks (tael check)

    def check_files(
        self,
        manifest: Sequence[ColdFile],
        totals: dict[str, int],
        damaged: list[tuple[str, str]] | None = None,
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """Verify every file of ``manifest`` where it is stored, without changing
        anything: present, its Parquet footer readable, its rows and row groups as the
        manifest records. Adds each file's ``files``, ``rows`` and stored ``bytes`` to
        ``totals``, and each damage found to ``damaged`` (a new list if None), as it goes:
        what was found before an I/O error still counts. Returns (damage as (path or
        URI, what is wrong), paths of files there that the manifest does not name:
        leftovers the next open removes)."""
        damaged = [] if damaged is None else damaged
        live = set()
        for f in manifest:
            where = self.describe(f)  # a local path, or a URI (s3://...) for a tier on object storage
            live.add(f.relpath)
            totals["files"] += 1
            totals["rows"] += f.rows
            size = self.stored_size(f)
            if size is None:
                damaged.append((where, f"cold file is missing (the manifest lists {f.rows:,} rows)"))
                continue
            totals["bytes"] += size
            try:
                meta = self.read_footer(f)
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
                text = " ".join(str(exc).split()) or type(exc).__name__
                damaged.append((where, f"Parquet footer does not read: {text}"))
                continue
            if meta.num_rows != f.rows:
                damaged.append((where, f"holds {meta.num_rows:,} rows, the manifest says {f.rows:,}"))
            elif meta.num_row_groups != f.row_groups:
                damaged.append((where, f"holds {meta.num_row_groups} row groups, the manifest says {f.row_groups}"))
        return damaged, [rel for rel in self.listing() if rel not in live]


def open_cold_tier(data_dir: Path, settings: Any) -> ColdTier:
    """The cold tier a store's settings name (``Settings.cold_uri``, ``cold_filesystem``):
    ``<data>/cold`` by default, a local directory, or object storage read through a
    local cache in ``<data>/cache``. Raises StorageError if the data directory's cold
    files are elsewhere (``_coldfs.LOCATION_FILE``), ValueError on bad settings."""
    return ColdTier(
        open_files(data_dir, settings),
        row_group_rows=settings.cold_row_group_rows,
        compression_level=settings.cold_compression_level,
    )


# ---------------------------------------------------------------- the read protocol

_SCAN_ORDER = {
    "spans": ("start_ns", "trace_id", "span_id"),
    "logs": ("time_ns", "wal_lsn", "batch_index"),
    "metrics": ("time_ns", "wal_lsn", "batch_index"),
}
"""Each signal's sort key (``tael._query.tier``) as columns."""

TraceRefs = Callable[[bytes, str], dict[int, list[int]]]
"""(trace id, "spans" or "logs") -> {file id: row groups holding that trace's rows}."""


def span_hits(table: pa.Table) -> list[Hit]:
    """Rows of a spans table as hits: ((trace, span), (start, trace, span), record)."""
    return [((f[SPAN_TRACE], f[SPAN_ID]), (f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f) for f in span_records(table)]


def _keyed_hits(records: list[tuple[tuple[int, int, int], list[Any]]]) -> list[Hit]:
    return [(key, key, f) for key, f in records]


def log_hits(table: pa.Table) -> list[Hit]:
    """Rows of a logs table as hits keyed by (time, lsn, index)."""
    return _keyed_hits(log_records(table))


def metric_hits(table: pa.Table) -> list[Hit]:
    """Rows of a metrics table as hits keyed by (time, lsn, index)."""
    return _keyed_hits(metric_records(table))


_HITS: dict[str, Callable[[pa.Table], list[Hit]]] = {"spans": span_hits, "logs": log_hits, "metrics": metric_hits}


def _converted(table: pa.Table, hits: Callable[[pa.Table], list[Hit]], keep: Predicate, limit: int) -> list[Hit]:
    """The first ``limit`` rows of a sorted table whose records pass ``keep``, converting
    to Python in slices so a broad query does not materialise a whole partition."""
    out: list[Hit] = []
    offset, size = 0, max(64, limit)
    while offset < table.num_rows and len(out) < limit:
        for hit in hits(table.slice(offset, size)):
            if keep(hit[2]):
                out.append(hit)
                if len(out) >= limit:
                    break
        offset += size
        size *= 4
    return out


class ColdReader:
    """The cold tier as of one snapshot: the manifest an LMDB read transaction saw and
    that transaction's cold trace index (``trace_refs``). Implements
    ``tael._query.tier.TierReader``; scans are planned by ``tael._query.plan``."""

    def __init__(self, cold: ColdTier, manifest: list[ColdFile], trace_refs: TraceRefs) -> None:
        self.cold = cold
        self.manifest = manifest
        self.trace_refs = trace_refs
        self._by_id: dict[int, ColdFile] | None = None  # built on first use: most hot-only reads never need it
        self._groups: dict[tuple[int, int], pa.Table] = {}  # row groups lookups read, for the next lookup

    @property
    def by_id(self) -> dict[int, ColdFile]:
        """The snapshot's files by id."""
        if self._by_id is None:
            self._by_id = {f.file_id: f for f in self.manifest}
        return self._by_id

    def scan(self, scan: Scan, *, newest_first: bool, limit: int, stop: Stop) -> Iterator[list[Hit]]:
        way = "descending" if newest_first else "ascending"
        order = [(column, way) for column in _SCAN_ORDER[scan.signal]]
        hits, keep = _HITS[scan.signal], scan.keep
        if scan.trace is not None:  # the cold trace index names the row groups: no plan, no early stop
            for file_id, rgs in sorted(self.trace_refs(scan.trace, scan.signal).items()):
                f = self.by_id.get(file_id)
                if f is not None:
                    table = self.cold.read_row_groups(f, rgs)
                    if scan.expr is not None:
                        table = table.filter(scan.expr)
                    yield _converted(table.sort_by(order), hits, keep, limit)
            return
        tasks = plan(self.manifest, scan, newest_first=newest_first, row_group_times=self.cold.row_group_times)
        for task in tasks:
            if stop(task.bound(newest_first)):
                return
            if task.row_group is None:
                table = self.cold.read([task.file], filter=scan.expr)
            else:
                table = self.cold.read_row_groups(task.file, [task.row_group])
                if scan.expr is not None:
                    table = table.filter(scan.expr)
            yield _converted(table.sort_by(order), hits, keep, limit)

    def trace(self, trace: bytes) -> list[Hit]:
        out: list[Hit] = []
        for file_id, rgs in sorted(self.trace_refs(trace, "spans").items()):
            f = self.by_id.get(file_id)
            if f is not None:
                out += span_hits(self.cold.read_row_groups(f, rgs).filter(trace_expr(trace)))
        return out

    def lookup(self, signal: str, keys: Sequence[Any]) -> list[Hit]:
        if signal == "spans":
            return self._spans(keys)
        if signal == "logs":
            return self._logs(keys)
        raise ValueError(f"lookups are by span or log key, not {signal!r}")

    def _group(self, f: ColdFile, rg: int) -> pa.Table:
        table = self._groups.get((f.file_id, rg))
        if table is None:
            table = self._groups[(f.file_id, rg)] = self.cold.read_row_groups(f, [rg])
        return table

    def _spans(self, keys: Sequence[tuple[bytes, bytes]]) -> list[Hit]:
        """Spans by (trace, span) id, through the cold trace index; each row group is
        read once per reader (lookups come in pages)."""
        out: list[Hit] = []
        wanted = set(keys)
        for trace in {t for t, _s in keys}:
            for file_id, rgs in self.trace_refs(trace, "spans").items():
                f = self.by_id.get(file_id)
                if f is None:
                    continue
                for rg in rgs:
                    rows = self._group(f, rg).filter(trace_expr(trace))
                    out += [hit for hit in span_hits(rows) if hit[0] in wanted]
        return out

    def _logs(self, keys: Sequence[tuple[int, int, int]]) -> list[Hit]:
        """Logs by (time, lsn, index) key. Each row group that may hold a wanted time is
        read once per reader (lookups come in pages), and only its rows at wanted times
        are converted to Python."""
        wanted: dict[tuple[int, int], set[tuple[int, int, int]]] = {}
        if not keys:
            return []
        lo, hi = min(k[0] for k in keys), max(k[0] for k in keys)
        files = [f for f in self.manifest if f.dataset == "logs" and f.min_ns <= hi and f.max_ns >= lo]
        for f in files:
            groups = self.cold.row_group_times(f, "time_ns")
            for key in keys:
                t = key[0]
                if f.min_ns <= t <= f.max_ns:
                    for rg, t_min, t_max in groups:
                        if t_min <= t <= t_max:
                            wanted.setdefault((f.file_id, rg), set()).add(key)
        out: list[Hit] = []
        for (file_id, rg), group in wanted.items():
            table = self._group(self.by_id[file_id], rg)
            table = table.filter(pc.field("time_ns").isin(sorted({k[0] for k in group})))
            out += [hit for hit in log_hits(table) if hit[0] in group]
        return out
