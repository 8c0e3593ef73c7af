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
from functools import cached_property
from typing import Any, Final, cast

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
_HIST_COUNT_SAFE: Final = 1 << 63  # a stored total below it plus one point's count (< 2**63) fits a u64
_CUMULATIVE_NAME, _DELTA_NAME = TEMPORALITIES
_KIND_NAMES: Final = pa.array(METRIC_KINDS)
_KEY_DTYPE: Final = np.dtype([("sid", ">u8"), ("window", ">u8")])
VALUE_DTYPE: Final = np.dtype(
    [
        ("flags", "u1"),
        ("count", ">u8"),
        ("first_ns", ">u8"),
        ("last_ns", ">u8"),
        ("sum", ">f8"),
        ("min", ">f8"),
        ("max", ">f8"),
        ("first", ">f8"),
        ("last", ">f8"),
        ("increase", ">f8"),
        ("hist_count", ">u8"),
        ("hist_sum", ">f8"),
    ]
)
"""VALUE as a numpy record: many values merged at once."""

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
    WAL position: ``wal_lsn``, then ``batch_index``), with what partials need of them,
    as arrays (for the groups of one point, merged column-wise) and as Python lists
    (for the others). ``table``: the ``INPUT`` columns of any number of points."""

    def __init__(self, table: pa.Table | pa.RecordBatch, window_ns: int = WINDOW_NS) -> None:
        n = table.num_rows
        col = table.column
        self.n = 0  # groups
        empty: np.ndarray = np.zeros(0, np.int64)
        # per point, in group order: time, value, rise from the previous point
        self.t, self.v, self.steps_np = empty, empty, empty
        # per group: series id (u64), window start, first and end point, flags
        self.sid, self.window, self.starts, self.ends, self.flags = empty, empty, empty, empty, empty
        self.hist_np: tuple[np.ndarray, np.ndarray] | None = None  # histogram count and sum per point
        if n == 0:
            return

        def arr(name: str) -> pa.Array:
            c = col(name)
            return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c

        sids = arr("series_id")
        t = arr("time_ns").to_numpy(zero_copy_only=False)
        sid = np.frombuffer(sids.buffers()[1], dtype=">u8", count=n, offset=sids.offset * 8).astype(np.uint64)
        lsn = arr("wal_lsn").to_numpy(zero_copy_only=False)
        idx = arr("batch_index").to_numpy(zero_copy_only=False)
        order = np.lexsort((idx, lsn, t, sid))
        t = t[order]
        sid = sid[order]
        window = t - t % window_ns
        breaks = np.flatnonzero((sid[1:] != sid[:-1]) | (window[1:] != window[:-1])) + 1
        starts = np.concatenate(([0], breaks))
        v = arr("value").to_numpy(zero_copy_only=False)[order]
        prev = np.empty_like(v)
        prev[1:] = v[:-1]
        prev[:1] = v[:1]
        # the reset-aware rise from each point's predecessor (tael/_rollup.py's _step);
        # at a group's first point it is never read
        self.steps_np = np.where(v >= prev, v - prev, v)
        heads = pa.array(order[starts])
        kinds = pc.index_in(arr("kind").take(heads), value_set=_KIND_NAMES).to_numpy(zero_copy_only=False)
        flags = kinds.astype(np.uint8)
        flags |= np.where(arr("monotonic").take(heads).to_numpy(zero_copy_only=False), F_MONOTONIC, 0).astype(np.uint8)
        cumulative = pc.equal(arr("temporality").take(heads), _CUMULATIVE_NAME).to_numpy(zero_copy_only=False)
        flags |= np.where(cumulative, F_CUMULATIVE, 0).astype(np.uint8)
        self.n = len(starts)
        self.t, self.v, self.flags = t, v, flags
        self.starts, self.ends = starts, np.append(breaks, n)
        self.sid, self.window = sid[starts], window[starts]
        if (kinds == _HISTOGRAM).any():
            counts = pc.fill_null(arr("count"), 0).to_numpy(zero_copy_only=False)[order].astype(np.uint64)
            sums = pc.fill_null(arr("sum"), 0.0).to_numpy(zero_copy_only=False)[order]
            self.hist_np = counts, np.where(sums == 0.0, 0.0, sums)  # ``sum or 0.0``: -0.0 counts as 0.0

    # Python lists for the per-group code, built on first use (a batch of one point per
    # series, merged column-wise, never needs them)

    @cached_property
    def groups(self) -> list[tuple[bytes, int, int, int, int]]:
        """(series id, window start, first index, end index, flags) of each group."""
        return list(
            zip(
                [x.to_bytes(8, "big") for x in self.sid.tolist()],
                self.window.tolist(),
                self.starts.tolist(),
                self.ends.tolist(),
                self.flags.tolist(),
                strict=True,
            )
        )

    @cached_property
    def times(self) -> list[int]:
        return cast(list[int], self.t.tolist())

    @cached_property
    def values(self) -> list[float]:
        return cast(list[float], self.v.tolist())

    @cached_property
    def steps(self) -> list[float]:
        return cast(list[float], self.steps_np.tolist())

    @cached_property
    def hist_counts(self) -> list[int]:
        return [] if self.hist_np is None else cast(list[int], self.hist_np[0].tolist())

    @cached_property
    def hist_sums(self) -> list[float]:
        return [] if self.hist_np is None else cast(list[float], self.hist_np[1].tolist())

    def keys(self) -> list[bytes]:
        """The table key of each group."""
        keys = np.empty(self.n, dtype=_KEY_DTYPE)
        keys["sid"] = self.sid
        keys["window"] = self.window
        raw = keys.tobytes()
        return [raw[i : i + 16] for i in range(0, len(raw), 16)]

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


def apply(txn: lmdb.Transaction, table: Any, points: Points) -> None:
    """Merge newly applied points into their windows: one read-modify-write per (series,
    window). Everything stored already came in an earlier WAL frame, so a point at the
    same time as a window's newest comes after it; one before it is late (dirty).

    Groups of one point that start a window or append to a clean one (what an exporter
    sending every series once per interval makes) are merged column-wise, with the same
    operations as ``Points.fresh`` and ``Points.append`` (so the same bits); the others
    one by one."""
    if not points.n:
        return
    keys = points.keys()
    get = txn.get
    raws = [get(key, db=table) for key in keys]
    stored = np.array([raw is not None for raw in raws])
    old = np.zeros(points.n, VALUE_DTYPE)
    if stored.any():
        old[stored] = np.frombuffer(b"".join([raw for raw in raws if raw is not None]), VALUE_DTYPE)
    first_t = points.t[points.starts]
    single = points.ends - points.starts == 1
    clean = (old["flags"] & F_DIRTY == 0) & (first_t >= old["last_ns"].astype(np.int64))
    fresh1 = single & ~stored
    append1 = single & stored & clean & (old["hist_count"] < _HIST_COUNT_SAFE)
    out = _merge_singles(points, old, fresh1, append1) if (fresh1 | append1).any() else np.zeros(points.n, VALUE_DTYPE)
    for g in np.flatnonzero(~(fresh1 | append1)).tolist():
        if not stored[g]:
            p = points.fresh(g)
        elif clean[g]:
            p = points.append(g, old[g].tolist())
        else:
            p = points.late(g, old[g].tolist())
        out[g] = tuple(p)
    data = out.tobytes()
    size = VALUE.size
    txn.cursor(db=table).putmulti(
        [(key, data[i * size : (i + 1) * size]) for i, key in enumerate(keys)]
    )  # in key order: groups are sorted by series, then window


def _merge_singles(points: Points, old: np.ndarray, fresh: np.ndarray, append: np.ndarray) -> np.ndarray:
    """The values of the one-point groups ``fresh`` (a new window) and ``append`` (after
    the clean stored ``old``), column-wise: one IEEE operation per field, as the
    per-group code does them."""
    out = np.zeros(len(old), VALUE_DTYPE)
    i = points.starts
    t, v, flags = points.t[i], points.v[i], points.flags
    counter = (flags & F_KIND == _SUM) & (flags & F_MONOTONIC != 0)
    cumulative = flags & F_CUMULATIVE != 0
    hist = flags & F_KIND == _HISTOGRAM
    if points.hist_np is not None:
        hc, hs = points.hist_np[0][i], points.hist_np[1][i]
    else:
        hc, hs = np.zeros(len(i), np.uint64), np.zeros(len(i))
    f = fresh
    out["flags"][f] = flags[f]
    out["count"][f] = 1
    out["first_ns"][f] = out["last_ns"][f] = t[f]
    out["sum"][f] = 0.0 + v[f]
    out["min"][f] = out["max"][f] = out["first"][f] = out["last"][f] = v[f]
    out["increase"][f] = np.where(counter & ~cumulative, 0.0 + v, 0.0)[f]
    out["hist_count"][f] = np.where(hist, hc, 0)[f]
    out["hist_sum"][f] = np.where(hist, 0.0 + hs, 0.0)[f]
    a = append
    if a.any():
        o = old[a]
        of = o["flags"]
        va = v[a]
        last = o["last"].astype(np.float64)
        inc = o["increase"].astype(np.float64)
        o_counter = (of & F_KIND == _SUM) & (of & F_MONOTONIC != 0)
        o_cumulative = of & F_CUMULATIVE != 0
        rise = np.where(va >= last, va - last, va)
        out["flags"][a] = of
        out["count"][a] = o["count"] + 1
        out["first_ns"][a] = o["first_ns"]
        out["first"][a] = o["first"]
        out["last_ns"][a] = t[a]
        out["last"][a] = va
        out["sum"][a] = o["sum"].astype(np.float64) + va
        mn, mx = o["min"].astype(np.float64), o["max"].astype(np.float64)
        out["min"][a] = np.where(va < mn, va, mn)
        out["max"][a] = np.where(va > mx, va, mx)
        out["increase"][a] = np.where(o_counter, np.where(o_cumulative, inc + rise, inc + va), inc)
        o_hist = of & F_KIND == _HISTOGRAM
        out["hist_count"][a] = np.where(o_hist, o["hist_count"] + hc[a], o["hist_count"])
        out["hist_sum"][a] = np.where(o_hist, o["hist_sum"].astype(np.float64) + hs[a], o["hist_sum"])
    return out


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
