"""Today's WAL rows from a checked column batch: the bridge until the WAL carries blocks.

A pyarrow table given to ``Store.insert_*`` is checked column-wise (tables.py) into a
column batch; the WAL and the hot tier still take *rows* (tael/_codec.py: the fields the
hot tier keys on, then the packed record). :func:`rows_from_batch` makes them, and is
the only place that does: it goes away with the WAL change (issue 16).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .. import _block, _codec
from .._blobs import Payloads
from .._layout import (
    LOG_SERVICE,
    LOG_SEVERITY,
    LOG_TIME,
    LOG_TRACE,
    METRIC_ATTRS,
    METRIC_KIND,
    METRIC_NAME,
    METRIC_SERVICE,
    METRIC_TIME,
    SPAN_END,
    SPAN_ID,
    SPAN_NAME,
    SPAN_SERVICE,
    SPAN_START,
    SPAN_STATUS,
    SPAN_TRACE,
)


def rows_from_batch(signal: str, batch: pa.RecordBatch, payloads: Payloads) -> list[Any]:
    """The rows ``_codec.encode_spans``/``encode_logs``/``encode_metrics`` make of the
    records of a checked column batch (``BLOCK_SCHEMAS[signal]``), with the batch's own
    payload flags and series ids. ``payloads`` is unused: the batch carries its flags."""
    packb, error = _codec.packb, _codec.STATUS_ERROR
    if signal == "spans":
        return [
            (
                f[SPAN_START],
                f[SPAN_TRACE],
                f[SPAN_ID],
                f[SPAN_SERVICE],
                f[SPAN_END] - f[SPAN_START],
                f[SPAN_STATUS] == error,
                f[SPAN_NAME],
                flag,
                packb(f),
            )
            for f, flag in zip(_block.span_records(batch), batch.column("payload").to_pylist(), strict=True)
        ]
    if signal == "logs":
        return [
            (f[LOG_TIME], f[LOG_TRACE], f[LOG_SEVERITY], f[LOG_SERVICE], flag, packb(f))
            for f, flag in zip(_block.log_records(batch), batch.column("payload").to_pylist(), strict=True)
        ]
    series_key = _codec.series_key
    return [
        (
            f[METRIC_TIME],
            f[METRIC_NAME],
            sid,
            series_key(f[METRIC_NAME], f[METRIC_SERVICE], f[METRIC_KIND], f[METRIC_ATTRS])[1],
            packb(f),
        )
        for f, sid in zip(_block.metric_records(batch), batch.column("series_id").to_pylist(), strict=True)
    ]
