"""Metric rollups: per-series window summaries that merge exactly.

A *partial* summarises some points of one series inside one window: count,
sum, min, max, first/last (with their times), the counter ``increase``, and
histogram count/sum totals. Partials of the same series and window merge in
time order ("chaining"), so rollups written by separate compactions (late
points) and raw points still in the hot tier combine into the answer one pass
over all the raw points would give. The definitions are in docs/format/cold.md
("Rollups").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

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
"""The rollup columns a read needs: what chaining and buckets use (not the series'
name, service, kind, unit or attributes: the series id identifies)."""


def partials_from_table(rows: dict[str, list[Any]], n: int) -> list[Partial]:
    """Rollup rows read from Parquet (column -> values, ``PARTIAL_COLUMNS``) back to partials."""
    columns = [rows[k] for k in PARTIAL_COLUMNS]
    return [dict(zip(PARTIAL_COLUMNS, row, strict=True)) for row in zip(*columns, strict=True)]
