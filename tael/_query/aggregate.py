"""Metric aggregation: ``Store.aggregate_metrics``.

Every series of a metric name matching the filters is summarised per step-aligned
window as rollup *partials* (tael/_rollup.py) from these sources, then chained per
series and combined across series into one bucket per window:

- hot points, when the step is a multiple of 5 minutes: the hot tier's rollup table
  (``series_rollups``, tael/_hotrollups.py) for the 5-minute windows wholly inside
  ``[start, end)``, and raw points for the windows ``start``/``end`` cut and the
  windows the table marks dirty (late points); for other steps, raw points. Raw hot
  points are read by series and time range (``_hotblocks.series_rows``);
- compacted windows wholly inside ``[start, end)``, from the coarsest rollup
  dataset whose window divides the step (``rollup_for``), when there is one;
- compacted points everywhere else (windows cut by ``start``/``end``, or every
  window when no rollup fits the step), raw from the metrics dataset.

Partials chained across separate compactions (and across the tiers) are exact unless
late points interleave in time, or tie, with points already compacted into the same
window; those (series, bucket)s are recomputed from raw points while all of them are
retained (``exact_where_interleaved``), whatever the step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import lmdb
import pyarrow as pa
import pyarrow.compute as pc

from .. import _hotblocks, _hotrollups, _rollup
from .._block import Block, metric_records
from .._codec import to_ns
from .._cold import ColdFile, ColdTier, columns_of
from .._cold import metric_records as cold_metric_records
from .._layout import SERIES_KIND
from .._models import METRIC_KINDS, MetricBucket
from . import args, filters
from .context import ReadContext
from .filters import MetricFilter

ROLLUPS = (("metrics_1h", args.HOUR_NS), ("metrics_5m", args.FIVE_MIN_NS))
"""The rollup datasets and their windows, coarsest first."""

KeyedPoint = tuple[tuple[int, int, int], str, list[Any]]
"""(ingest key (time, lsn, index), series id hex, metric record)."""

HotPoints = Callable[[str, int, int], list[tuple[tuple[int, int, int], list[Any]]]]
"""(series id hex, lo, hi) -> (ingest key, record) of its hot points in [lo, hi)."""


def rollup_for(step_ns: int) -> tuple[str, int] | None:
    """The rollup dataset (and its window) compacted data is read from for buckets of
    ``step_ns``: the coarsest whose window divides the step; None: raw points."""
    return next(((ds, w) for ds, w in ROLLUPS if step_ns % w == 0), None)


def cold_points(
    cold: ColdTier, manifest: list[ColdFile], name: str, sids: list[str], lo: int, hi: int
) -> list[KeyedPoint]:
    """(ingest key, series id hex, record) of cold raw points of the given series in [lo, hi)."""
    files = [f for f in manifest if f.dataset == "metrics" and f.overlaps(lo, hi) and name in f.names]
    if not files:
        return []
    bounds = {"series_id": (min(sids), max(sids)), "time_ns": (lo, hi - 1)}
    expr = filters.and_all([pc.field("series_id").isin(sids), *filters.time_exprs("time_ns", lo, hi)])
    table = cold.read_pruned(files, bounds, expr)
    sid_col = table.column("series_id").to_pylist()
    return [(key, sid, rec) for sid, (key, rec) in zip(sid_col, cold_metric_records(table), strict=True)]


def exact_where_interleaved(
    cold: ColdTier,
    parts: list[_rollup.Partial],
    manifest: list[ColdFile],
    name: str,
    hot: HotPoints,
    step_ns: int,
    lo: int,
    hi: int,
) -> list[_rollup.Partial]:
    """Late points whose times interleave with already-compacted points of the same
    series make chained rollups inexact for ``increase``. Recompute such (series,
    bucket)s from the raw points, hot and cold, while all of them are retained."""
    groups: dict[tuple[str, int], list[_rollup.Partial]] = {}
    for p in parts:
        groups.setdefault((p["series_id"], p["window_start_ns"] - p["window_start_ns"] % step_ns), []).append(p)
    for (sid, bucket), group in groups.items():
        if len(group) < 2:
            continue
        ordered = sorted(group, key=lambda p: (p["first_ns"], p["last_ns"]))
        if all(b["first_ns"] > a["last_ns"] for a, b in itertools.pairwise(ordered)):
            continue  # disjoint in time: chaining is exact
        b_lo, b_hi = max(lo, bucket), min(hi, bucket + step_ns)
        points = [(k, rec) for k, _sid, rec in cold_points(cold, manifest, name, [sid], b_lo, b_hi)]
        points += hot(sid, b_lo, b_hi)
        if len(points) != sum(p["count"] for p in group):
            continue  # raw points partly past retention: the chained rollups are the best left
        points.sort(key=lambda kr: kr[0])
        groups[(sid, bucket)] = _rollup.partials_from_points(((sid, rec) for _k, rec in points), step_ns)
    return [p for group in groups.values() for p in group]


def aggregate_metrics(
    ctx: ReadContext,
    name: str,
    *,
    service: str | None,
    attributes: dict[str, Any] | None,
    start: Any,
    end: Any,
    step: str | int,
) -> list[MetricBucket]:
    """Every series of ``name`` matching the filters, merged into one bucket per
    step-aligned window in ``[start, end)`` that has data, oldest first.

    ``step``: "1m", "5m", "1h", "1d" or nanoseconds. Compacted data is read from
    the 1-hour rollups when the step is a multiple of an hour, from the 5-minute
    rollups when it is a multiple of 5 minutes, and as raw points otherwise
    (so after raw retention only rollup-aligned steps still see old data);
    hot data and windows cut by ``start``/``end`` are read as raw points."""
    if type(name) is not str or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    step_ns = args.step_ns(step)
    lo, hi = to_ns(start, "start"), to_ns(end, "end")
    if lo is None or hi is None:
        raise ValueError("aggregate_metrics needs both start and end")
    series_keep = MetricFilter(name=name, service=service, attributes=attributes).scan().series_keep
    assert series_keep is not None  # a metric filter's scan always has one
    if hi <= lo:
        return []
    rollup = rollup_for(step_ns)
    hot_tier, cold = ctx.hot, ctx.cold

    def run(txn: Any, manifest: list[ColdFile]) -> list[MetricBucket]:
        described = [(sid, desc) for sid, desc in hot_tier.series_for(txn, name) if series_keep(desc)]
        if not described:
            return []
        series = [sid for sid, _desc in described]
        kinds = {METRIC_KINDS[desc[SERIES_KIND]] for _sid, desc in described}
        sids = [sid.hex() for sid in series]
        by_series = pc.field("series_id").isin(sids)
        hot = _HotSide(txn, hot_tier.db)
        parts = hot.partials(series, lo, hi, step_ns)
        raw_ranges: list[tuple[int, int]] = [(lo, hi)]
        if rollup is not None:
            dataset, window = rollup
            inner_lo, inner_hi = -(-lo // window) * window, hi // window * window
            if inner_lo < inner_hi:
                raw_ranges = [(lo, inner_lo), (inner_hi, hi)]
                files = [
                    f for f in manifest if f.dataset == dataset and f.overlaps(inner_lo, inner_hi) and name in f.names
                ]
                if files:
                    expr = filters.and_all([by_series, *filters.time_exprs("window_start_ns", inner_lo, inner_hi)])
                    bounds = {"series_id": (min(sids), max(sids)), "window_start_ns": (inner_lo, inner_hi - 1)}
                    table = cold.read_pruned(files, bounds, expr, _rollup.partial_columns(kinds))
                    parts += _rollup.partials_from_table(columns_of(table), table.num_rows)
        for r_lo, r_hi in raw_ranges:
            if r_lo < r_hi:
                parts += _rollup.partials_from_points(
                    ((sid, rec) for _k, sid, rec in cold_points(cold, manifest, name, sids, r_lo, r_hi)), step_ns
                )
        # raw steps too: a hot and a cold partial of one bucket may interleave or tie in time
        parts = exact_where_interleaved(cold, parts, manifest, name, hot.keyed, step_ns, lo, hi)
        return _rollup.buckets(parts, step_ns)

    return ctx.read(run)


class _HotSide:
    """The hot tier's part of one aggregation, in the query's read transaction."""

    def __init__(self, txn: lmdb.Transaction, db: dict[str, Any]) -> None:
        self.txn = txn
        self.db = db
        self.blocks: dict[bytes, Block | None] = {}  # blocks read so far, by key

    def rows(self, series: Sequence[bytes], lo: int, hi: int) -> list[tuple[Block, pa.Array]]:
        return _hotblocks.series_rows(self.txn, self.db, series, lo, hi, self.blocks)

    def partials(self, series: list[bytes], lo: int, hi: int, step_ns: int) -> list[_rollup.Partial]:
        """Partials of the hot points of ``series`` in ``[lo, hi)``, each inside one
        bucket of ``step_ns``: 5-minute ones from the rollup table where it is exact
        and raw points cover the rest, or per bucket from raw points when 5 minutes
        does not divide the step."""
        w = _hotrollups.WINDOW_NS
        parts: list[_rollup.Partial] = []
        raw: list[tuple[Sequence[bytes], int, int]] = [(series, lo, hi)]
        window = w if step_ns % w == 0 else step_ns
        inner_lo, inner_hi = -(-lo // w) * w, hi // w * w
        if window == w and inner_lo < inner_hi:
            clean, dirty = _hotrollups.windows(self.txn, self.db["series_rollups"], series, inner_lo, inner_hi)
            hexes = {sid: sid.hex() for sid in series}
            parts = [_hotrollups.partial(hexes[sid], start, p) for sid, start, p in clean]
            raw = [(series, lo, inner_lo), (series, inner_hi, hi), *(([sid], s, s + w) for sid, s in dirty)]
        batches = [block.batch(_hotrollups.INPUT).take(rows) for s, a, b in raw for block, rows in self.rows(s, a, b)]
        if batches:
            parts += _hotrollups.partials(_hotrollups.Points(pa.Table.from_batches(batches), window), window)
        return parts

    def keyed(self, sid: str, lo: int, hi: int) -> list[tuple[tuple[int, int, int], list[Any]]]:
        """(ingest key, record) of the hot points of one series (id hex) in ``[lo, hi)``."""
        out: list[tuple[tuple[int, int, int], list[Any]]] = []
        for block, rows in self.rows([bytes.fromhex(sid)], lo, hi):
            batch = block.batch().take(rows)
            keys = zip(
                batch.column("time_ns").to_pylist(),
                batch.column("wal_lsn").to_pylist(),
                batch.column("batch_index").to_pylist(),
                strict=True,
            )
            out += zip(keys, metric_records(batch), strict=True)
        return out
