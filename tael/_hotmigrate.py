"""Migrating a hot tier of format 2 (a record per LMDB entry) to format 3 (blocks).

A writer opening a data directory written by an earlier tael converts its hot tier
in one LMDB write transaction: every record moves into a block (one per WAL frame
it came in, so keys stay unique and logs and metric points keep their identity,
(time, LSN, index)), the block tables and their indexes are written, blob
references are re-keyed by block, the format-2 tables are dropped, and the format
version becomes 3. A crash before the commit leaves format 2 as it was; the next
open starts again. The per-service counters, the span-name catalog, the series
catalog, comments, the cold manifest and trace index keep their format-2 bytes.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import lmdb
import pyarrow as pa

from . import _block, _codec, _hotblocks
from ._block import Block
from ._layout import METRIC_ATTRS, METRIC_KIND, METRIC_NAME, METRIC_SERVICE

log = logging.getLogger(__name__)

_Q = struct.Struct(">Q")
_KEY = struct.Struct(">QQI")
_FORMAT = b"format_version"
OLD_TABLES = (  # the tables of hot format 2 that format 3 no longer has (migrate moves their records)
    b"spans",
    b"span_ids",
    b"logs",
    b"log_trace",
    b"metrics",
    b"metric_series",
    b"span_lean",
    b"log_lean",
    b"metric_lean",
)


def _positions(batch: pa.RecordBatch, keys: list[tuple[int, int, int]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [*batch.columns, pa.array([k[1] for k in keys], pa.int64()), pa.array([k[2] for k in keys], pa.int32())],
        names=[*batch.schema.names, "wal_lsn", "batch_index"],
    )


def migrate(hot: Any) -> None:
    """Convert ``hot`` (a HotTier just opened on a format-2 environment) to format 3."""
    env = hot.env
    counts = {"spans": 0, "logs": 0, "metrics": 0}

    def run(txn: lmdb.Transaction) -> None:
        db = hot.db
        old = {
            name.decode(): env.open_db(name, txn=txn, create=False) for name in OLD_TABLES if _exists(env, txn, name)
        }
        txn.drop(db["blob_refs"], delete=False)  # keyed by record before, by block now: written again below
        if "spans" in old:
            lsn_of = {bytes(k): _Q.unpack_from(v, 8)[0] for k, v in txn.cursor(db=old["span_ids"])}
            by_lsn: dict[int, list[Any]] = {}
            for key, value in txn.cursor(db=old["spans"]):
                by_lsn.setdefault(lsn_of.get(bytes(key[8:]), 0), []).append(_codec.unpackb(value))
            for lsn, records in by_lsn.items():
                block = Block.of(_block.spans_batch(records), "spans")
                start = block.column("start_ns").to_pylist()
                _hotblocks.restore(txn, db, _hotblocks.BK.pack(max(start), lsn), block)
                counts["spans"] += len(records)
        for signal in ("logs", "metrics"):
            if signal not in old:
                continue
            groups: dict[int, list[tuple[tuple[int, int, int], list[Any]]]] = {}
            for key, value in txn.cursor(db=old[signal]):
                k = _KEY.unpack(key)
                groups.setdefault(k[1], []).append((k, _codec.unpackb(value)))
            for lsn, items in groups.items():
                keys = [k for k, _f in items]
                records = [f for _k, f in items]
                if signal == "logs":
                    batch = _block.logs_batch(records)
                else:
                    series = [
                        _codec.series_key(f[METRIC_NAME], f[METRIC_SERVICE], f[METRIC_KIND], f[METRIC_ATTRS])[0]
                        for f in records
                    ]
                    batch = _block.metrics_batch(records, series)
                block = Block.of(_positions(batch, keys), signal)
                _hotblocks.restore(txn, db, _hotblocks.BK.pack(max(k[0] for k in keys), lsn), block)
                counts[signal] += len(records)
        for handle in old.values():
            txn.drop(handle, delete=True)
        txn.put(_FORMAT, _Q.pack(3), db=db["meta"])

    hot.write(run)
    hot.sync()
    log.info(
        "migrated the hot tier %s from format 2 to 3: %d spans, %d logs, %d metric points into blocks",
        hot.path,
        counts["spans"],
        counts["logs"],
        counts["metrics"],
    )


def _exists(env: lmdb.Environment, txn: lmdb.Transaction, name: bytes) -> bool:
    return txn.get(name, db=env.open_db(txn=txn)) is not None  # the main database names the tables
