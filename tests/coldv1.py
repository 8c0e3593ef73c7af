"""Cold format version 1, written as tael wrote it before issue 16, for tests of the read
paths, merges, retention and the migration of version-1 files.

``v1_table`` is the conversion tael used to write (records to version-1 tables, ported
unchanged from tael/_cold.py before the columnar data path); ``downgrade`` rewrites live
version-2 files of a store as version-1 ones through the Compactor's own commit, so the
manifest, trace index and blob references stay exact. tests/data/format1-store.tar.gz
holds version-1 files written by that code itself; this module makes stores of any
content in that format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import tael
from tael._cold import ColdFile
from tael._coldformat import (
    DICTIONARY_COLUMNS,
    SCHEMAS,
    SORT_KEYS,
    file_order,
    log_digests,
    log_records,
    metric_records,
    span_digests,
    span_records,
)
from tael._coldwrite import NewFile, trace_refs
from tael._hot import SIGNAL_LOGS, SIGNAL_SPANS
from tael._layout import (
    EVENT_ATTRS,
    EVENT_NAME,
    EVENT_TIME,
    LINK_ATTRS,
    LINK_SPAN,
    LINK_TRACE,
    SPAN_ATTRS,
    SPAN_EVENTS,
    SPAN_LINKS,
    SPAN_RESOURCE,
)
from tael._models import METRIC_KINDS, SPAN_KINDS, SPAN_STATUSES, TEMPORALITIES

BLOB_PREFIX = "sha256:"
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_LITERALS = {True: "true", False: "false", None: "null"}
_quote = json.encoder.encode_basestring


def _json(value: Any) -> str:
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


def _pairs(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v if type(v) is str else _json(v)) for k, v in attrs.items()]


def _typed(attrs: dict[str, Any]) -> str | None:
    for v in attrs.values():
        if type(v) is not str:
            return _json({k: v for k, v in attrs.items() if type(v) is not str})
    return None


def _unblobbed(attrs: dict[str, Any], event: int, refs: list[dict[str, Any]]) -> dict[str, Any]:
    if not attrs or bytes not in set(map(type, attrs.values())):
        return attrs
    out = {}
    for k, v in attrs.items():
        if type(v) is bytes:
            refs.append({"event": event, "key": k, "sha256": v.hex()})
            v = BLOB_PREFIX + v.hex()
        out[k] = v
    return out


def _hex(b: bytes | None) -> str | None:
    return b.hex() if b is not None else None


def v1_table(dataset: str, table: pa.Table) -> pa.Table:
    """A version-2 table (all columns) as the version-1 table of the same rows and order,
    built from records exactly as tael 0.1 built it."""
    schema = SCHEMAS[1][dataset]
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    if dataset == "spans":
        for f in span_records(table):
            refs: list[dict[str, Any]] = []
            attrs = _unblobbed(f[SPAN_ATTRS], -1, refs)
            events = [
                {
                    "time_ns": e[EVENT_TIME],
                    "name": e[EVENT_NAME],
                    "attributes": _json(_unblobbed(e[EVENT_ATTRS], j, refs)),
                }
                for j, e in enumerate(f[SPAN_EVENTS])
            ]
            links = [
                {"trace_id": ln[LINK_TRACE].hex(), "span_id": ln[LINK_SPAN].hex(), "attributes": _json(ln[LINK_ATTRS])}
                for ln in f[SPAN_LINKS]
            ]
            row = {
                "trace_id": f[0].hex(),
                "span_id": f[1].hex(),
                "parent_span_id": _hex(f[2]),
                "name": f[3],
                "service": f[4],
                "kind": SPAN_KINDS[f[7]],
                "status": SPAN_STATUSES[f[8]],
                "status_message": f[9],
                "start_ns": f[5],
                "end_ns": f[6],
                "duration_ns": f[6] - f[5],
                "start_time": f[5],
                "attributes": _pairs(attrs),
                "attributes_typed": _typed(attrs),
                "resource": _pairs(f[SPAN_RESOURCE]),
                "resource_typed": _typed(f[SPAN_RESOURCE]),
                "scope_name": f[12],
                "scope_version": f[13],
                "events": events,
                "links": links,
                "trace_state": f[16],
                "flags": f[17],
                "payload_refs": refs or None,
            }
            for name in schema.names:
                cols[name].append(row[name])
    elif dataset in ("logs", "metrics"):
        keyed = (log_records if dataset == "logs" else metric_records)(table)
        series = table.column("series_id").to_pylist() if dataset == "metrics" else [None] * len(keyed)
        for ((t, lsn, idx), f), sid in zip(keyed, series, strict=True):
            if dataset == "logs":
                body, blob = f[1], None
                if type(body) is bytes:
                    blob, body = body.hex(), BLOB_PREFIX + body.hex()
                row = {
                    "time_ns": t,
                    "time": t,
                    "observed_ns": f[9],
                    "service": f[2],
                    "severity_number": f[3],
                    "severity_text": f[4],
                    "body": body,
                    "trace_id": _hex(f[5]),
                    "span_id": _hex(f[6]),
                    "attributes": _pairs(f[7]),
                    "attributes_typed": _typed(f[7]),
                    "resource": _pairs(f[8]),
                    "resource_typed": _typed(f[8]),
                    "scope_name": f[10],
                    "wal_lsn": lsn,
                    "batch_index": idx,
                    "body_blob": blob,
                }
            else:
                row = {
                    "time_ns": t,
                    "time": t,
                    "name": f[1],
                    "service": f[2],
                    "series_id": sid,
                    "kind": METRIC_KINDS[f[4]],
                    "value": f[3],
                    "unit": f[5],
                    "attributes": _pairs(f[6]),
                    "attributes_typed": _typed(f[6]),
                    "monotonic": f[7],
                    "temporality": TEMPORALITIES[f[8]],
                    "start_ns": f[9],
                    "count": f[10],
                    "sum": f[11],
                    "min": f[12],
                    "max": f[13],
                    "bucket_counts": f[14],
                    "explicit_bounds": f[15],
                    "wal_lsn": lsn,
                    "batch_index": idx,
                }
            for name in schema.names:
                cols[name].append(row[name])
    else:
        for r in table.to_pylist():
            attrs = json.loads(r["attributes"])
            r["attributes"], r["attributes_typed"] = _pairs(attrs), _typed(attrs)
            r["window_start"] = r["window_start_ns"]
            for name in schema.names:
                cols[name].append(r[name])
    arrays = []
    for fld in schema:
        if pa.types.is_timestamp(fld.type):
            arrays.append(pa.array(cols[fld.name], pa.int64()).cast(fld.type))
        else:
            arrays.append(pa.array(cols[fld.name], fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_v1(path: Path, dataset: str, table: pa.Table, row_group_rows: int) -> None:
    """A version-1 table as tael 0.1 wrote it (``ColdTier.encode`` then)."""
    names = table.column_names
    pq.write_table(
        table,
        str(path),
        row_group_size=row_group_rows,
        compression="zstd",
        compression_level=3,
        use_dictionary=[c for c in names if c in DICTIONARY_COLUMNS],
        write_statistics=True,
        write_page_index=True,
        bloom_filter_options={"trace_id": {"ndv": max(table.num_rows, 1), "fpp": 0.01}}
        if "trace_id" in names
        else None,
        sorting_columns=None if dataset == "spans" else [pq.SortingColumn(names.index(k)) for k in SORT_KEYS[dataset]],
    )


def manifest(store: tael.Store) -> list[ColdFile]:
    with store._hot.reader() as txn:
        return store._hot.manifest(txn)


def downgrade(store: tael.Store, which: Callable[[ColdFile], bool] = lambda f: True) -> list[ColdFile]:
    """Rewrite the store's live version-2 files that ``which`` picks as version-1 files
    (new file ids), one manifest commit per file, as a merge would publish them. Returns
    the new entries."""
    comp, cold = store._compactor, store._cold
    out = []
    for f in [f for f in manifest(store) if f.version == 2 and which(f)]:
        v2 = cold.read_all(f)
        table = v1_table(f.dataset, v2.take(file_order(f.dataset, v2)))
        (fid,) = store._hot.alloc_file_ids(1)
        staged = cold.files.stage(ColdFile(fid, f.dataset, f.date, 0, 0, 0, 0, 0).relpath)
        write_v1(staged, f.dataset, table, cold.row_group_rows)
        meta = pq.read_metadata(str(staged))
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        signal = {"spans": SIGNAL_SPANS, "logs": SIGNAL_LOGS}.get(f.dataset)
        refs, old_refs = [], []
        if signal is not None:
            at = 0
            for rg, n in enumerate(sizes):
                refs += trace_refs(table.slice(at, n), signal, fid, rg, n, spans=f.dataset == "spans")
                at += n
            old_refs = comp._refs_of_file(f)
        digests = span_digests(table) if f.dataset == "spans" else log_digests(table) if f.dataset == "logs" else []
        new = ColdFile(
            fid, f.dataset, f.date, table.num_rows, staged.stat().st_size, f.min_ns, f.max_ns, len(sizes),
            f.services, f.names, 1,
        )  # fmt: skip
        comp._commit([NewFile(new, staged, refs, digests)], [(f, old_refs)], None)
        out.append(new)
    return out


def versions(store: tael.Store) -> dict[int, int]:
    """How many live files of each version the store has."""
    found: dict[int, int] = {}
    for f in manifest(store):
        found[f.version] = found.get(f.version, 0) + 1
    return found
