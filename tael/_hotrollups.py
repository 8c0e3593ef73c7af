"""The hot tier's per-series 5-minute rollup table (``series_rollups``): what a metric
dashboard reads instead of every hot point.

For every (series, 5-minute window) that has hot points, one entry holds the rollup
partial (tael/_rollup.py) of exactly those points: count, sum, min, max, first and
last with their times, the counter ``increase``, histogram count and sum, and the
kind, monotonic and temporality flags of the window's first point. Windows are
aligned to the Unix epoch, as the cold tier's ``metrics_5m`` rollups are
(docs/format/cold.md, "Rollups"); the bytes are in docs/format/hot.md.

**Exact, or marked.** A partial is the one a single pass over its points in time
order (ties: WAL position) gives, bit for bit, when it was built that way: from
scratch, or by appending points that come after every point it already holds
(``apply`` of points arriving in time order). A point arriving *late* (before the
newest point a window already holds) cannot be merged exactly, so the entry is
marked **dirty**: its count, min, max, first and last stay exact, its sums become
approximate, and reads recompute that window from the hot raw points. When rows leave
the hot tier (compaction) or are stored again, their windows are deleted or rebuilt
from the points left (``remove``, ``restore``), which also clears the mark: the table
only ever summarises hot points.

The block functions (tael/_hotblocks.py) call this module inside their write
transaction and hand it the points it needs; reads (tael/_query/aggregate.py) take
the clean partials of a window range (``windows``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._block import METRIC_KIND_CODE
from ._models import METRIC_KINDS, TEMPORALITIES

WINDOW_NS: Final = 300 * 1_000_000_000
"""The table's window: 5 minutes, aligned to the epoch like the ``metrics_5m`` rollups."""

KEY: Final = struct.Struct(">8sQ")  # series id, window start (ns)
VALUE: Final = struct.Struct(">BQQQddddddQd")  # 89 bytes: see the positions below

# Positions in a decoded value (VALUE's fields, in order).
P_FLAGS: Final = 0
P_COUNT: Final = 1
P_FIRST_NS: Final = 2
P_LAST_NS: Final = 3
P_SUM: Final = 4
P_MIN: Final = 5
P_MAX: Final = 6
P_FIRST: Final = 7
P_LAST: Final = 8
P_INCREASE: Final = 9  # 0.0 unless the window is a counter's
P_HIST_COUNT: Final = 10  # 0 unless the window is a histogram's
P_HIST_SUM: Final = 11  # 0.0 unless the window is a histogram's

# Bits of the flags byte.
F_KIND: Final = 0x03  # index into METRIC_KINDS (gauge, sum, histogram) of the window's first point
F_MONOTONIC: Final = 0x04  # the first point's ``monotonic``
F_CUMULATIVE: Final = 0x08  # the first point's temporality is cumulative (else delta)
F_DIRTY: Final = 0x80  # a late point was merged: sums are approximate, reads recompute from raw points

_SUM: Final = METRIC_KIND_CODE["sum"]
_HISTOGRAM: Final = METRIC_KIND_CODE["histogram"]
_U64_MAX: Final = (1 << 64) - 1
_CUMULATIVE_NAME, _DELTA_NAME = TEMPORALITIES

INPUT: Final = (
    "series_id",
    "time_ns",
    "value",
    "kind",
    "monotonic",
    "temporality",
    "count",
    "sum",
    "wal_lsn",
    "batch_index",
)
"""The columns of a metric block a partial is computed from."""

Value = list[Any]
"""A decoded table value: VALUE's fields, at the ``P_*`` positions."""


def _counter(flags: int) -> bool:
    return flags & F_KIND == _SUM and bool(flags & F_MONOTONIC)


class Points:
    """Metric points grouped by (series, window), each group in time order (ties in
    WAL position: ``wal_lsn``, then ``batch_index``), with what partials need of them
    as Python lists. ``table``: the ``INPUT`` columns of any number of points."""

    __slots__ = ("groups", "hist_counts", "hist_sums", "steps", "times", "values")

    def __init__(self, table: pa.Table | pa.RecordBatch, window_ns: int = WINDOW_NS) -> None:
        n = table.num_rows
        col = table.column
        self.groups: list[tuple[bytes, int, int, int, int]] = []
        self.times: list[int] = []
        self.values: list[float] = []
        self.steps: list[float] = []
        self.hist_counts: list[int] = []
        self.hist_sums: list[float] = []
        if n == 0:
            return

        def arr(name: str) -> pa.Array:
            c = col(name)
            return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c

        sids = arr("series_id")
        t = arr("time_ns").to_numpy(zero_copy_only=False)
        sid_u64 = np.frombuffer(sids.buffers()[1], dtype=">u8", count=n, offset=sids.offset * 8).astype(np.uint64)
        lsn = arr("wal_lsn").to_numpy(zero_copy_only=False)
        idx = arr("batch_index").to_numpy(zero_copy_only=False)
        order = np.lexsort((idx, lsn, t, sid_u64))
        t = t[order]
        sid_u64 = sid_u64[order]
        window = t - t % window_ns
        breaks = np.flatnonzero((sid_u64[1:] != sid_u64[:-1]) | (window[1:] != window[:-1])) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [n]))
        v = arr("value").to_numpy(zero_copy_only=False)[order]
        prev = np.empty_like(v)
        prev[1:] = v[:-1]
        prev[:1] = v[:1]
        # the reset-aware rise from each point's predecessor (tael/_rollup.py's _step);
        # at a group's first point it is never read
        steps = np.where(v >= prev, v - prev, v)
        heads = pa.array(order[starts])
        kinds = [METRIC_KIND_CODE[k] for k in arr("kind").take(heads).to_pylist()]
        monotonic = arr("monotonic").take(heads).to_pylist()
        cumulative = [x == _CUMULATIVE_NAME for x in arr("temporality").take(heads).to_pylist()]
        self.groups = [
            (sid, w, a, b, kind | (F_MONOTONIC if mono else 0) | (F_CUMULATIVE if cum else 0))
            for sid, w, a, b, kind, mono, cum in zip(
                sids.take(heads).to_pylist(),
                window[starts].tolist(),
                starts.tolist(),
                ends.tolist(),
                kinds,
                monotonic,
                cumulative,
                strict=True,
            )
        ]
        self.times = t.tolist()
        self.values = v.tolist()
        self.steps = steps.tolist()
        if _HISTOGRAM in kinds:
            counts = pc.fill_null(arr("count"), 0).to_numpy(zero_copy_only=False)[order]
            sums = pc.fill_null(arr("sum"), 0.0).to_numpy(zero_copy_only=False)[order]
            self.hist_counts = counts.tolist()
            self.hist_sums = np.where(sums == 0.0, 0.0, sums).tolist()  # ``sum or 0.0``: -0.0 counts as 0.0

    def fresh(self, g: int) -> Value:
        """The partial of group ``g`` alone, as tael/_rollup.py's ``partials_from_points``
        computes it (the same operations in the same order: the same bits)."""
        _sid, _w, a, b, flags = self.groups[g]
        vs = self.values[a:b]
        increase = 0.0
        if _counter(flags):
            increase = sum(self.steps[a + 1 : b], 0.0) if flags & F_CUMULATIVE else sum(vs, 0.0)
        hist_count, hist_sum = 0, 0.0
        if flags & F_KIND == _HISTOGRAM:
            hist_count = sum(self.hist_counts[a:b])
            hist_sum = sum(self.hist_sums[a:b], 0.0)
            if hist_count > _U64_MAX:
                flags |= F_DIRTY  # beyond the value's u64: reads recompute it from the raw points
                hist_count = _U64_MAX
        times = self.times
        return [
            flags,
            b - a,
            times[a],
            times[b - 1],
            sum(vs, 0.0),
            min(vs),
            max(vs),
            vs[0],
            vs[-1],
            increase,
            hist_count,
            hist_sum,
        ]

    def append(self, g: int, p: Value) -> Value:
        """``p`` followed by group ``g``'s points, which all come after ``p``'s in time
        order: continuing each of ``p``'s sums where it stopped keeps them exact."""
        _sid, _w, a, b, _flags = self.groups[g]
        flags = p[P_FLAGS]  # the window's first point is p's
        vs = self.values[a:b]
        increase = p[P_INCREASE]
        if _counter(flags):
            if flags & F_CUMULATIVE:
                last, cur = p[P_LAST], vs[0]
                increase = sum(self.steps[a + 1 : b], increase + (cur - last if cur >= last else cur))
            else:
                increase = sum(vs, increase)
        hist_count, hist_sum = p[P_HIST_COUNT], p[P_HIST_SUM]
        if flags & F_KIND == _HISTOGRAM:
            hist_count += sum(self.hist_counts[a:b])
            hist_sum = sum(self.hist_sums[a:b], hist_sum)
            if hist_count > _U64_MAX:
                flags |= F_DIRTY
                hist_count = _U64_MAX
        return [
            flags,
            p[P_COUNT] + b - a,
            p[P_FIRST_NS],
            self.times[b - 1],
            sum(vs, p[P_SUM]),
            min(p[P_MIN], min(vs)),
            max(p[P_MAX], max(vs)),
            p[P_FIRST],
            vs[-1],
            increase,
            hist_count,
            hist_sum,
        ]

    def late(self, g: int, p: Value) -> Value:
        """``p`` merged with group ``g``'s points, some of which come before ``p``'s newest:
        marked dirty. Count, min, max, first and last stay exact (group ``g`` arrived
        after ``p``'s points, so it loses ties for first and wins them for last);
        the sums are only approximate, and nothing reads them."""
        q = self.fresh(g)
        first = p if p[P_FIRST_NS] <= q[P_FIRST_NS] else q
        last = q if q[P_LAST_NS] >= p[P_LAST_NS] else p
        return [
            p[P_FLAGS] | F_DIRTY,
            p[P_COUNT] + q[P_COUNT],
            first[P_FIRST_NS],
            last[P_LAST_NS],
            p[P_SUM] + q[P_SUM],
            min(p[P_MIN], q[P_MIN]),
            max(p[P_MAX], q[P_MAX]),
            first[P_FIRST],
            last[P_LAST],
            p[P_INCREASE] + q[P_INCREASE],
            min(p[P_HIST_COUNT] + q[P_HIST_COUNT], _U64_MAX),
            p[P_HIST_SUM] + q[P_HIST_SUM],
        ]


def key_of(sid: bytes, window: int) -> bytes:
    return KEY.pack(sid, window)


def apply(txn: lmdb.Transaction, table: Any, points: Points) -> None:
    """Merge newly applied points into their windows: one read-modify-write per (series,
    window). Everything stored already came in an earlier WAL frame, so a point at the
    same time as a window's newest comes after it; one before it is late (dirty)."""
    get = txn.get
    items = []
    times = points.times
    for g, (sid, w, a, _b, _flags) in enumerate(points.groups):
        key = KEY.pack(sid, w)
        raw = get(key, db=table)
        if raw is None:
            p = points.fresh(g)
        else:
            old = list(VALUE.unpack(raw))
            p = points.late(g, old) if old[P_FLAGS] & F_DIRTY or times[a] < old[P_LAST_NS] else points.append(g, old)
        items.append((key, VALUE.pack(*p)))
    txn.cursor(db=table).putmulti(items)  # in key order: groups are sorted by series, then window


def restore(txn: lmdb.Transaction, table: Any, points: Points) -> list[tuple[bytes, int]]:
    """Merge points stored again (what is left of a block, or a migrated block) whose
    WAL positions may be older than the windows' other points: a window without an
    entry gets one, one whose points all come before the restored ones is appended to;
    returns the (series, window)s the caller must rebuild from all their points."""
    items = []
    rebuild = []
    for g, (sid, w, a, _b, _flags) in enumerate(points.groups):
        key = KEY.pack(sid, w)
        raw = txn.get(key, db=table)
        if raw is None:
            items.append((key, VALUE.pack(*points.fresh(g))))
            continue
        old = list(VALUE.unpack(raw))
        if not old[P_FLAGS] & F_DIRTY and points.times[a] > old[P_LAST_NS]:
            items.append((key, VALUE.pack(*points.append(g, old))))
        else:
            rebuild.append((sid, w))
    if items:
        txn.cursor(db=table).putmulti(items)
    return rebuild


def remove(txn: lmdb.Transaction, table: Any, points: Points) -> list[tuple[bytes, int]]:
    """Take points that left the hot tier out of their windows: a window they were all
    of is deleted; returns the (series, window)s that keep other points, which the
    caller rebuilds from those."""
    rebuild = []
    for sid, w, a, b, _flags in points.groups:
        key = KEY.pack(sid, w)
        raw = txn.get(key, db=table)
        if raw is None:
            continue
        if VALUE.unpack(raw)[P_COUNT] <= b - a:
            txn.delete(key, db=table)
        else:
            rebuild.append((sid, w))
    return rebuild


def rebuild(txn: lmdb.Transaction, table: Any, windows: Sequence[tuple[bytes, int]], points: Points) -> None:
    """Set each of ``windows`` to the partial of its points in ``points`` (every hot point
    of those windows), or delete it when there are none."""
    found = {(sid, w): g for g, (sid, w, _a, _b, _f) in enumerate(points.groups)}
    for sid, w in windows:
        key = KEY.pack(sid, w)
        g = found.get((sid, w))
        if g is None:
            txn.delete(key, db=table)
        else:
            txn.put(key, VALUE.pack(*points.fresh(g)), db=table)


# ---------------------------------------------------------------- reads


def windows(
    txn: lmdb.Transaction, table: Any, series: Sequence[bytes], lo: int, hi: int
) -> tuple[list[tuple[bytes, int, Value]], list[tuple[bytes, int]]]:
    """The entries of ``series`` whose window starts in ``[lo, hi)``: (series, window,
    value) of the clean ones, and (series, window) of the dirty ones (to be recomputed
    from the raw points)."""
    clean: list[tuple[bytes, int, Value]] = []
    dirty: list[tuple[bytes, int]] = []
    if hi <= max(lo, 0):
        return clean, dirty
    cur = txn.cursor(db=table)
    unpack, unpack_key = VALUE.unpack, KEY.unpack
    for sid in series:
        if not cur.set_range(KEY.pack(sid, max(lo, 0))):
            continue
        for key, raw in cur:
            key_sid, w = unpack_key(key)
            if key_sid != sid or w >= hi:
                break
            value = unpack(raw)
            if value[P_FLAGS] & F_DIRTY:
                dirty.append((sid, w))
            else:
                clean.append((sid, w, list(value)))
    return clean, dirty


def partial(sid_hex: str, window: int, p: Value, window_ns: int = WINDOW_NS) -> dict[str, Any]:
    """A value as a tael/_rollup.py partial (what chaining and buckets read; the series'
    name, service, unit and attributes are the series catalog's, not repeated here)."""
    flags = p[P_FLAGS]
    kind = flags & F_KIND
    return {
        "series_id": sid_hex,
        "window_start_ns": window,
        "window_ns": window_ns,
        "kind": METRIC_KINDS[kind],
        "monotonic": bool(flags & F_MONOTONIC),
        "temporality": _CUMULATIVE_NAME if flags & F_CUMULATIVE else _DELTA_NAME,
        "count": p[P_COUNT],
        "sum": p[P_SUM],
        "min": p[P_MIN],
        "max": p[P_MAX],
        "first_ns": p[P_FIRST_NS],
        "first": p[P_FIRST],
        "last_ns": p[P_LAST_NS],
        "last": p[P_LAST],
        "increase": p[P_INCREASE] if _counter(flags) else None,
        "hist_count": p[P_HIST_COUNT] if kind == _HISTOGRAM else None,
        "hist_sum": p[P_HIST_SUM] if kind == _HISTOGRAM else None,
    }


def partials(points: Points, window_ns: int = WINDOW_NS) -> list[dict[str, Any]]:
    """The partial of every group of ``points`` (raw points read for a query)."""
    return [partial(sid.hex(), w, points.fresh(g), window_ns) for g, (sid, w, _a, _b, _f) in enumerate(points.groups)]
