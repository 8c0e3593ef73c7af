"""Raw metric point reads by filter (``Store.query_metrics``); aggregation is elsewhere."""

from __future__ import annotations

from typing import Any

from .._codec import decode_metric
from .._models import MetricPoint
from . import args, merge
from .context import ReadContext
from .filters import MetricFilter


def query(reads: ReadContext, where: MetricFilter, limit: int = 10_000) -> list[MetricPoint]:
    """Metric points matching every condition of ``where`` (see :class:`~tael.MetricFilter`),
    hot and cold, oldest first (ties: earlier insert first), at most ``limit``.

    With ``name`` only that name's series are read (via the series index)."""
    args.check_range(None, None, limit)
    scan = where.scan()
    if scan.empty:
        return []

    def run(txn: Any, manifest: list[Any]) -> list[MetricPoint]:
        sources = merge.tiers(reads, txn, manifest)
        hot = sources[1]
        narrowed = scan
        if scan.metric is not None:
            assert scan.series_keep is not None
            series = hot.series(scan.metric, scan.series_keep)
            if not series:
                return []
            narrowed = scan.with_series(series)
        return [decode_metric(f) for f in merge.top_k(sources, narrowed, limit, newest_first=False)]

    return reads.read(run)
