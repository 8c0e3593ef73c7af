"""Metric rollups: per-series window summaries that merge exactly.

A *partial* summarises some points of one series inside one window: count,
sum, min, max, first/last (with their times), the counter ``increase``, and
histogram count/sum totals. Partials of the same series and window merge in
time order ("chaining"), so rollups written by separate compactions (late
points) and raw points still in the hot tier combine into the answer one pass
over all the raw points would give. The definitions are in docs/format/cold.md
("Rollups").

Compaction builds its rollup rows column-wise (:func:`rollup_tables`, Arrow group-by
in row order, so every sum adds the same values in the same order as the per-record
definitions below and gives the same floats); reads chain partials as dicts
(:func:`chain`, :func:`buckets`), as do the hot tier's points at query time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._coldformat import ROLLUP_SCHEMA, SORT_KEYS, WINDOW_NS, micros
from ._layout import (
    METRIC_ATTRS,
    METRIC_COUNT,
    METRIC_KIND,
    METRIC_MONOTONIC,
    METRIC_NAME,
    METRIC_SERVICE,
    METRIC_SUM,
    METRIC_TEMPORALITY,
    METRIC_TIME,
    METRIC_UNIT,
    METRIC_VALUE,
    MetricRecord,
)
from ._models import METRIC_KINDS, TEMPORALITIES, MetricBucket

Partial = dict[str, Any]

_SUM = METRIC_KINDS.index("sum")
_HISTOGRAM = METRIC_KINDS.index("histogram")
_CUMULATIVE = TEMPORALITIES.index("cumulative")


def _step(prev: float, cur: float) -> float:
    """Reset-aware rise between two consecutive cumulative counter values."""
    return cur - prev if cur >= prev else cur


def partials_from_points(points: Iterable[tuple[str, MetricRecord]], window_ns: int) -> list[Partial]:
    """Summaries per (series, window) of ``points``: (series id hex, metric record
    (``METRIC_*`` positions)) pairs, in ingest order. Points are taken in time order
    (ingest order on ties)."""
    groups: dict[tuple[str, int], list[MetricRecord]] = {}
    for sid, f in points:
        key = (sid, f[METRIC_TIME] - f[METRIC_TIME] % window_ns)
        group = groups.get(key)
        if group is None:
            groups[key] = [f]
        else:
            group.append(f)
    out = []
    for (sid, window_start), group in groups.items():
        group.sort(key=lambda f: f[METRIC_TIME])  # stable: ingest order on equal times
        head = group[0]
        counter = head[METRIC_KIND] == _SUM and bool(head[METRIC_MONOTONIC])
        cumulative = head[METRIC_TEMPORALITY] == _CUMULATIVE
        values = [f[METRIC_VALUE] for f in group]
        increase: float | None = None
        if counter:
            if cumulative:
                increase = 0.0
                for prev, cur in itertools.pairwise(values):
                    increase += _step(prev, cur)
            else:
                increase = float(sum(values))
        hist_count: int | None = None
        hist_sum: float | None = None
        if head[METRIC_KIND] == _HISTOGRAM:
            hist_count = sum(f[METRIC_COUNT] or 0 for f in group)
            hist_sum = float(sum(f[METRIC_SUM] or 0.0 for f in group))
        out.append(
            {
                "series_id": sid,
                "window_start_ns": window_start,
                "window_ns": window_ns,
                "name": head[METRIC_NAME],
                "service": head[METRIC_SERVICE],
                "kind": METRIC_KINDS[head[METRIC_KIND]],
                "unit": head[METRIC_UNIT],
                "attrs": head[METRIC_ATTRS],
                "monotonic": bool(head[METRIC_MONOTONIC]),
                "temporality": TEMPORALITIES[head[METRIC_TEMPORALITY]],
                "count": len(group),
                "sum": float(sum(values)),
                "min": min(values),
                "max": max(values),
                "first_ns": group[0][METRIC_TIME],
                "first": values[0],
                "last_ns": group[-1][METRIC_TIME],
                "last": values[-1],
                "increase": increase,
                "hist_count": hist_count,
                "hist_sum": hist_sum,
            }
        )
    return out


def chain(parts: Sequence[Partial]) -> Partial:
    """Merge partials of one series into one, in time order.

    Exact when the partials cover disjoint time spans (the boundary rise
    between one partial's last point and the next one's first is added once);
    tael/_query/aggregate.py recomputes interleaved ones from raw points (see
    docs/format/cold.md, "Rollups")."""
    if len(parts) == 1:
        return parts[0]
    ordered = sorted(parts, key=lambda p: (p["first_ns"], p["last_ns"]))
    acc = dict(ordered[0])
    for p in ordered[1:]:
        if acc["increase"] is not None and p["increase"] is not None:
            bridge = _step(acc["last"], p["first"]) if p["temporality"] == "cumulative" else 0.0
            acc["increase"] = acc["increase"] + p["increase"] + bridge
        elif p["increase"] is not None:
            acc["increase"] = p["increase"]
        acc["count"] += p["count"]
        acc["sum"] += p["sum"]
        acc["min"] = min(acc["min"], p["min"])
        acc["max"] = max(acc["max"], p["max"])
        if p["last_ns"] >= acc["last_ns"]:
            acc["last_ns"], acc["last"] = p["last_ns"], p["last"]
        if p["hist_count"] is not None:
            acc["hist_count"] = (acc["hist_count"] or 0) + p["hist_count"]
            acc["hist_sum"] = (acc["hist_sum"] or 0.0) + p["hist_sum"]
    return acc


def rewindow(parts: Iterable[Partial], window_ns: int) -> list[Partial]:
    """Partials re-grouped into windows of ``window_ns`` (a multiple of theirs), one per
    (series, window): how 1-hour rollups are built from 5-minute ones."""
    groups: dict[tuple[str, int], list[Partial]] = {}
    for p in parts:
        groups.setdefault((p["series_id"], p["window_start_ns"] - p["window_start_ns"] % window_ns), []).append(p)
    out = []
    for (_sid, start), group in groups.items():
        merged = dict(chain(group))
        merged["window_start_ns"] = start
        merged["window_ns"] = window_ns
        out.append(merged)
    return out


def buckets(parts: Iterable[Partial], step_ns: int) -> list[MetricBucket]:
    """One MetricBucket per step-aligned window with data, oldest first: partials
    chained per series, then combined across series."""
    by_bucket: dict[int, list[Partial]] = {}
    for p in parts:
        start = p["window_start_ns"] - p["window_start_ns"] % step_ns
        group = by_bucket.get(start)
        if group is None:
            by_bucket[start] = [p]
        else:
            group.append(p)
    out = []
    for start in sorted(by_bucket):
        group = by_bucket[start]
        if len(group) == 1:  # a dashboard's usual bucket: one partial of one series
            out.append(_bucket(start, group[0]))
            continue
        per_series: dict[str, list[Partial]] = {}
        for p in group:
            per_series.setdefault(p["series_id"], []).append(p)
        series = [(sid, chain(g)) for sid, g in sorted(per_series.items())]
        if len(series) == 1:
            out.append(_bucket(start, series[0][1]))
            continue
        count = sum(s["count"] for _sid, s in series)
        total = sum(s["sum"] for _sid, s in series)
        increases = [s["increase"] for _sid, s in series if s["increase"] is not None]
        hists = [s for _sid, s in series if s["hist_count"] is not None]
        first = min(series, key=lambda x: (x[1]["first_ns"], x[0]))[1]["first"]
        last = max(series, key=lambda x: (x[1]["last_ns"], x[0]))[1]["last"]
        out.append(
            MetricBucket(
                start_ns=start,
                count=count,
                sum=total,
                min=min(s["min"] for _sid, s in series),
                max=max(s["max"] for _sid, s in series),
                avg=total / count,
                first=first,
                last=last,
                increase=sum(increases) if increases else None,
                hist_count=sum(s["hist_count"] for s in hists) if hists else None,
                hist_sum=sum(s["hist_sum"] for s in hists) if hists else None,
            )
        )
    return out


def _bucket(start: int, one: Partial) -> MetricBucket:
    """The bucket of one series' (chained) partial."""
    return MetricBucket(
        start_ns=start,
        count=one["count"],
        sum=one["sum"],
        min=one["min"],
        max=one["max"],
        avg=one["sum"] / one["count"],
        first=one["first"],
        last=one["last"],
        increase=one["increase"],
        hist_count=one["hist_count"],
        hist_sum=one["hist_sum"],
    )


PARTIAL_COLUMNS = (
    "series_id",
    "window_start_ns",
    "window_ns",
    "temporality",
    "count",
    "sum",
    "min",
    "max",
    "first_ns",
    "first",
    "last_ns",
    "last",
    "increase",
    "hist_count",
    "hist_sum",
)
"""The rollup columns a read may need: what chaining and buckets use (not the series'
name, service, kind, unit or attributes: the series id identifies)."""

_ONLY_FOR: Final = {"temporality": "sum", "increase": "sum", "hist_count": "histogram", "hist_sum": "histogram"}
"""Columns only series of one kind give a value (null otherwise): a series' kind is part of
its identity, so a read of series of other kinds leaves them out (``temporality`` only says
how to chain ``increase``)."""


def partial_columns(kinds: Iterable[str]) -> tuple[str, ...]:
    """The ``PARTIAL_COLUMNS`` a read of series of ``kinds`` needs."""
    present = set(kinds)
    return tuple(c for c in PARTIAL_COLUMNS if c not in _ONLY_FOR or _ONLY_FOR[c] in present)


def partials_from_table(rows: dict[str, list[Any]], n: int) -> list[Partial]:
    """Rollup rows read from Parquet (column -> values, some of ``PARTIAL_COLUMNS``: one
    left out, by ``partial_columns``, reads as null) back to partials."""
    present = tuple(c for c in PARTIAL_COLUMNS if c in rows)
    absent = tuple(c for c in PARTIAL_COLUMNS if c not in rows)
    names, nulls = (*present, *absent), tuple(None for _c in absent)
    columns = [rows[c] for c in present]
    return [dict(zip(names, row + nulls, strict=True)) for row in zip(*columns, strict=True)]


# ---------------------------------------------------------------- rollups of a column batch


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """True where a row starts a new group of rows sorted by ``keys``."""
    n = len(keys[0])
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = np.logical_or.reduce([k[1:] != k[:-1] for k in keys])
    return new


def _series_codes(series: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A small int per distinct series id (the order is arbitrary: only for grouping)."""
    encoded = pc.dictionary_encode(series)
    indices = encoded.indices if isinstance(encoded, pa.DictionaryArray) else encoded.combine_chunks().indices
    return np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)


_HEAD = ("name", "service", "kind", "unit", "attributes", "monotonic", "temporality", "series_id")
"""A rollup row's descriptive columns: those of its earliest point (or earliest partial)."""


def _rollup_table(agg: pa.Table, window_ns: int, columns: dict[str, pa.Array]) -> pa.Table:
    """A version-2 rollup table (file order) from grouped head columns and computed ones."""
    start = columns["window_start_ns"]
    out = {
        "window_start_ns": start,
        "window_start": micros(start),
        "window_ns": pa.array(np.full(len(start), window_ns, np.int64)),
        **{name: agg.column(f"{name}_first") for name in _HEAD},
        **columns,
    }
    table = pa.Table.from_arrays([out[n] for n in ROLLUP_SCHEMA.names], schema=ROLLUP_SCHEMA)
    return table.sort_by([(k, "ascending") for k in SORT_KEYS["metrics_5m"]])


def _five_minute(points: pa.Table) -> pa.Table:
    window = WINDOW_NS["metrics_5m"]
    time = np.asarray(points.column("time_ns").to_numpy(), dtype=np.int64)
    start = time - time % window
    series = _series_codes(points.column("series_id"))
    lsn = np.asarray(points.column("wal_lsn").to_numpy(), dtype=np.int64)
    index = np.asarray(points.column("batch_index").to_numpy(), dtype=np.int64)
    order = np.lexsort((index, lsn, time, start, series))  # stable: time order, ingest order on ties
    new = _group_starts(series[order], start[order])
    values = np.asarray(points.column("value").to_numpy(), dtype=np.float64)[order]
    prev = np.empty_like(values)
    prev[1:] = values[:-1]
    prev[0] = 0.0
    steps = np.where(values >= prev, values - prev, values)  # _step(prev, cur)
    steps[new] = 0.0
    taken = points.take(pa.array(order))
    grouped = pa.table(
        {
            "g": np.cumsum(new),
            "value": values,
            "time": time[order],
            "start": start[order],
            "step": steps,
            "hc": pc.fill_null(taken.column("count"), 0),
            "hs": pc.fill_null(taken.column("sum"), 0.0),
            **{name: taken.column(name) for name in _HEAD},
        }
    )
    agg = grouped.group_by("g", use_threads=False).aggregate(
        [
            ("value", "count"),
            ("value", "sum"),
            ("value", "min"),
            ("value", "max"),
            ("value", "first"),
            ("value", "last"),
            ("time", "min"),
            ("time", "max"),
            ("start", "first"),
            ("step", "sum"),
            ("hc", "sum"),
            ("hs", "sum"),
            *((name, "first") for name in _HEAD),
        ]
    )
    counter = pc.and_(pc.equal(agg.column("kind_first"), "sum"), agg.column("monotonic_first"))
    cumulative = pc.equal(agg.column("temporality_first"), "cumulative")
    histogram = pc.equal(agg.column("kind_first"), "histogram")
    no_float = pa.scalar(None, pa.float64())
    return _rollup_table(
        agg,
        window,
        {
            "window_start_ns": agg.column("start_first"),
            "count": agg.column("value_count"),
            "sum": agg.column("value_sum"),
            "min": agg.column("value_min"),
            "max": agg.column("value_max"),
            "first_ns": agg.column("time_min"),
            "first": agg.column("value_first"),
            "last_ns": agg.column("time_max"),
            "last": agg.column("value_last"),
            "increase": pc.if_else(
                counter, pc.if_else(cumulative, agg.column("step_sum"), agg.column("value_sum")), no_float
            ),
            "hist_count": pc.if_else(histogram, agg.column("hc_sum"), pa.scalar(None, pa.int64())),
            "hist_sum": pc.if_else(histogram, agg.column("hs_sum"), no_float),
        },
    )


def _one_hour(five: pa.Table) -> pa.Table:
    """1-hour rows chained from 5-minute ones, column-wise: the fold of :func:`chain`, whose
    ``increase`` adds each row's increase and then its bridge, in (first_ns, last_ns) order."""
    window = WINDOW_NS["metrics_1h"]
    start5 = np.asarray(five.column("window_start_ns").to_numpy(), dtype=np.int64)
    hour = start5 - start5 % window
    series = _series_codes(five.column("series_id"))
    first_ns = np.asarray(five.column("first_ns").to_numpy(), dtype=np.int64)
    last_ns = np.asarray(five.column("last_ns").to_numpy(), dtype=np.int64)
    order = np.lexsort((last_ns, first_ns, hour, series))
    rows = five.take(pa.array(order))
    new = _group_starts(series[order], hour[order])
    gid = np.cumsum(new)
    firsts = np.asarray(rows.column("first").to_numpy(), dtype=np.float64)
    lasts = np.asarray(rows.column("last").to_numpy(), dtype=np.float64)
    prev_last = np.empty_like(lasts)
    prev_last[1:] = lasts[:-1]
    prev_last[0] = 0.0
    cumulative = np.asarray(pc.equal(rows.column("temporality"), "cumulative").to_numpy(zero_copy_only=False))
    bridges = np.where(cumulative, np.where(firsts >= prev_last, firsts - prev_last, firsts), 0.0)
    bridges[new] = 0.0
    increase = rows.column("increase")
    has = np.asarray(pc.is_valid(increase).to_numpy(zero_copy_only=False))
    # (increase, bridge) per row, interleaved: one ordered sum folds (acc + increase) + bridge
    pairs = np.empty(2 * len(order), np.float64)
    pairs[0::2] = np.asarray(pc.fill_null(increase, 0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    pairs[1::2] = bridges
    folded = pa.table({"g": np.repeat(gid, 2), "x": pairs}).group_by("g", use_threads=False).aggregate([("x", "sum")])
    grouped = pa.table(
        {
            "g": gid,
            "start": hour[order],
            "has": has.astype(np.int64),
            **{name: rows.column(name) for name in ("count", "sum", "min", "max", "first_ns", "first", "last_ns")},
            **{name: rows.column(name) for name in ("last", "hist_count", "hist_sum")},
            **{name: rows.column(name) for name in _HEAD},
        }
    )
    agg = grouped.group_by("g", use_threads=False).aggregate(
        [
            ("start", "first"),
            ("has", "sum"),
            ("has", "count"),
            ("count", "sum"),
            ("sum", "sum"),
            ("min", "min"),
            ("max", "max"),
            ("first_ns", "first"),
            ("first", "first"),
            ("last_ns", "last"),
            ("last", "last"),
            ("hist_count", "sum"),
            ("hist_sum", "sum"),
            *((name, "first") for name in _HEAD),
        ]
    )
    folds = dict(zip(folded.column("g").to_pylist(), folded.column("x_sum").to_pylist(), strict=True))
    some, total = agg.column("has_sum").to_pylist(), agg.column("has_count").to_pylist()
    inc: list[float | None] = []
    for g, k, n in zip(agg.column("g").to_pylist(), some, total, strict=True):
        if k == 0:
            inc.append(None)
        elif k == n:
            inc.append(folds[g])
        else:  # a series whose points changed monotonic or temporality within the hour: chain as dicts
            members = rows.filter(pa.array(gid == g))
            parts = [
                dict(zip(PARTIAL_COLUMNS, row, strict=True))
                for row in zip(*(members.column(c).to_pylist() for c in PARTIAL_COLUMNS), strict=True)
            ]
            inc.append(chain(parts)["increase"])
    return _rollup_table(
        agg,
        window,
        {
            "window_start_ns": agg.column("start_first"),
            "count": agg.column("count_sum"),
            "sum": agg.column("sum_sum"),
            "min": agg.column("min_min"),
            "max": agg.column("max_max"),
            "first_ns": agg.column("first_ns_first"),
            "first": agg.column("first_first"),
            "last_ns": agg.column("last_ns_last"),
            "last": agg.column("last_last"),
            "increase": pa.array(inc, pa.float64()),
            "hist_count": agg.column("hist_count_sum"),
            "hist_sum": agg.column("hist_sum_sum"),
        },
    )


def rollup_tables(points: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The 5-minute and 1-hour rollup rows (version-2 cold tables, file order) of the metric
    points of a version-2 metrics table, as compaction writes them: the same values as
    :func:`partials_from_points` and :func:`rewindow` give for those points, bit for bit,
    computed with Arrow group-bys and numpy instead of per point."""
    if points.num_rows == 0:
        return ROLLUP_SCHEMA.empty_table(), ROLLUP_SCHEMA.empty_table()
    five = _five_minute(points)
    return five, _one_hour(five)
