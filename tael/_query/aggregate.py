"""Metric aggregation: ``Store.aggregate_metrics``.

Every series of a metric name matching the filters is summarised per step-aligned
window as rollup *partials* (tael/_rollup.py) from three sources, then chained per
series and combined across series into one bucket per window:

- hot points, always raw;
- compacted windows wholly inside ``[start, end)``, from the coarsest rollup
  dataset whose window divides the step (``rollup_for``), when there is one;
- compacted points everywhere else (windows cut by ``start``/``end``, or every
  window when no rollup fits the step), raw from the metrics dataset.

Rollups chained across separate compactions are exact unless late points
interleave in time with points already compacted into the same window; those
(series, bucket)s are recomputed from raw points while all of them are retained
(``exact_where_interleaved``).
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

import pyarrow.compute as pc

from .. import _codec, _rollup
from .._codec import to_ns
from .._cold import ColdFile, ColdTier, columns_of, metric_records
from .._hot import RECORD_KEY, HotReader
from .._layout import METRIC_ATTRS, METRIC_KIND, METRIC_NAME, METRIC_SERVICE
from .._models import MetricBucket
from . import args, filters
from .context import ReadContext
from .filters import MetricFilter

ROLLUPS = (("metrics_1h", args.HOUR_NS), ("metrics_5m", args.FIVE_MIN_NS))
"""The rollup datasets and their windows, coarsest first."""

KeyedPoint = tuple[tuple[int, int, int], str, list[Any]]
"""(ingest key (time, lsn, index), series id hex, metric record)."""


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
    return [(key, sid, rec) for sid, (key, rec) in zip(sid_col, metric_records(table), strict=True)]


def exact_where_interleaved(
    cold: ColdTier,
    parts: list[_rollup.Partial],
    manifest: list[ColdFile],
    name: str,
    hot: list[KeyedPoint],
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
        points += [(k, rec) for k, s, rec in hot if s == sid and b_lo <= k[0] < b_hi]
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

    def sid_of(f: list[Any]) -> str:
        return _codec.series_key(f[METRIC_NAME], f[METRIC_SERVICE], f[METRIC_KIND], f[METRIC_ATTRS])[0].hex()

    def run(txn: Any, manifest: list[ColdFile]) -> list[MetricBucket]:
        series = HotReader(hot_tier, txn).series(name, series_keep)
        if not series:
            return []
        sids = [sid.hex() for sid in series]
        by_series = pc.field("series_id").isin(sids)
        parts: list[_rollup.Partial] = []
        hot = hot_tier.series_points(txn, series, lo, hi, sys.maxsize)
        parts += _rollup.partials_from_points(((sid_of(f), f) for _k, f in hot), step_ns)
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
                    table = cold.read_pruned(files, bounds, expr, _rollup.PARTIAL_COLUMNS)
                    parts += _rollup.partials_from_table(columns_of(table), table.num_rows)
        for r_lo, r_hi in raw_ranges:
            if r_lo < r_hi:
                parts += _rollup.partials_from_points(
                    ((sid, rec) for _k, sid, rec in cold_points(cold, manifest, name, sids, r_lo, r_hi)), step_ns
                )
        if rollup is not None:
            hot_keyed = [(RECORD_KEY.unpack(k), sid_of(f), f) for k, f in hot]
            parts = exact_where_interleaved(cold, parts, manifest, name, hot_keyed, step_ns, lo, hi)
        return _rollup.buckets(parts, step_ns)

    return ctx.read(run)
