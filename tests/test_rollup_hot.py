"""The hot tier's 5-minute rollup table (``series_rollups``, tael/_hotrollups.py) and the
metric aggregations that read it.

Two properties, over inserts in and out of time order (late points), compactions at
unaligned cut-offs (windows straddling the hot/cold boundary) in steps small enough to
split blocks, and reopens:

- the table holds an entry for exactly the (series, 5-minute window)s with hot points;
  a clean entry is, bit for bit, the partial ``_rollup.partials_from_points`` computes
  from those points (random floats), a dirty one still has their exact count, min, max,
  first and last;
- ``aggregate_metrics`` answers exactly what one pass over every point inserted gives
  (a plain-Python model; integer values, so that no float sum depends on its order).
"""

from __future__ import annotations

import itertools
import random
import struct
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tael
from tael import _block, _codec, _hotblocks, _hotrollups, _rollup
from tael._layout import METRIC_ATTRS, METRIC_KIND, METRIC_NAME, METRIC_SERVICE

from .conftest import make_point
from .data.make_format1_store import SETTINGS, TARBALL

MINUTE = 60 * 10**9
HOUR_NS = 60 * MINUTE
W = _hotrollups.WINDOW_NS
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, a window boundary
SERIES = (  # (kind, monotonic, temporality) of series 0..3: each kind of partial
    ("gauge", False, "cumulative"),
    ("sum", True, "cumulative"),
    ("sum", True, "delta"),
    ("histogram", False, "delta"),
)


def point(series: int, minute: int, jitter: int, value: float, count: int | None = None) -> tael.MetricPoint:
    kind, monotonic, temporality = SERIES[series]
    return make_point(
        time_ns=T0 + minute * MINUTE + jitter * 1000 + series,  # series never tie in time
        name="m",
        service="svc",
        value=value,
        kind=kind,
        monotonic=monotonic,
        temporality=temporality,
        attributes={"series": series},
        count=count if kind == "histogram" else None,
        sum=value * 2 if kind == "histogram" and count is not None else None,
    )


# ---------------------------------------------------------------- the table, white-box


def table_entries(store: tael.Store) -> dict[tuple[bytes, int], list[Any]]:
    with store._hot.reader() as txn:
        cur = txn.cursor(db=store._hot.db["series_rollups"])
        return {_hotrollups.KEY.unpack(k): list(_hotrollups.VALUE.unpack(v)) for k, v in cur}


def one_pass_over_hot_points(store: tael.Store) -> dict[tuple[bytes, int], _rollup.Partial]:
    """``partials_from_points`` over every hot point, in (time, WAL position) order."""
    with store._hot.reader() as txn:
        records = sorted(store._hot.records(txn, "metrics"), key=lambda r: r[0])
    points = [
        (_codec.series_key(f[METRIC_NAME], f[METRIC_SERVICE], f[METRIC_KIND], f[METRIC_ATTRS])[0].hex(), f)
        for _key, f, _lsn in records
    ]
    return {(bytes.fromhex(p["series_id"]), p["window_start_ns"]): p for p in _rollup.partials_from_points(points, W)}


def bits(x: float | None) -> bytes | None:
    return None if x is None else struct.pack(">d", x)


def check_table(store: tael.Store) -> None:
    table, want = table_entries(store), one_pass_over_hot_points(store)
    assert table.keys() == want.keys()
    for key, p in want.items():
        got = _hotrollups.partial(key[0].hex(), key[1], table[key])
        exact = ("count", "first_ns", "last_ns", "min", "max", "first", "last")
        assert [got[k] for k in exact] == [p[k] for k in exact], (key, got, p)
        if table[key][_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY:
            continue
        for k in ("kind", "monotonic", "temporality", "hist_count"):
            assert got[k] == p[k], (key, k, got, p)
        for k in ("sum", "increase", "hist_sum"):
            assert bits(got[k]) == bits(p[k]), (key, k, got, p)


floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
    st.floats(0, 1),
    st.sampled_from([0.0, -0.0, 1e300, -1e300, 0.1, 3.0]),
)
# a batch: (None: after every point so far, or a minute, any: possibly late), then its
# points as (series, minutes after that, jitter, value, histogram count)
at_st = st.one_of(st.none(), st.none(), st.integers(0, 60))
batch_st = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 6), st.integers(0, 3), floats, st.none() | st.integers(0, 9)),
    min_size=4,
    max_size=30,
)
op_st = st.one_of(
    st.tuples(st.just("insert"), at_st, batch_st),
    st.tuples(st.just("compact"), st.integers(0, 90), st.integers(0, 4)),
    st.tuples(st.just("reopen")),
)


def batch_of(clock: int, at: int | None, spec: list[tuple[Any, ...]]) -> tuple[list[tael.MetricPoint], int]:
    """The points of an insert op, and the newest minute inserted so far."""
    base = clock + 1 if at is None else at
    return [point(s, base + m, j, v, c) for s, m, j, v, c in spec], max(clock, base + max(x[1] for x in spec))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=2, max_size=10), chunk=st.sampled_from([3, 11, 100_000]))
def test_the_table_is_one_pass_over_the_hot_points(ops: list[tuple[Any, ...]], chunk: int) -> None:
    """Batches in any time order (a batch may be older than what is stored: late),
    compactions that cut windows and, in chunks of a few points, blocks; every state
    is checked."""
    s = tael.Settings(compaction_batch_records=chunk)
    clock = 0
    with tempfile.TemporaryDirectory() as d:
        store = tael.Store(Path(d), s)
        try:
            for op in ops:
                if op[0] == "insert":
                    batch, clock = batch_of(clock, op[1], op[2])
                    store.insert_metrics(batch)
                    store.flush()
                elif op[0] == "compact":
                    store.compact(T0 + op[1] * MINUTE + op[2] * 7 * 10**9)
                else:
                    store.close()
                    store = tael.Store(Path(d), s)
                check_table(store)
        finally:
            store.close()


def test_points_in_time_order_keep_every_window_clean(store: tael.Store) -> None:
    """Appending in time order is exact: nothing is dirty, and the table is one pass."""
    for minute in range(0, 30, 3):
        store.insert_metrics([point(s, minute + k, 0, minute * 1.1 + k / 3) for k in range(3) for s in range(4)])
    store.flush()
    entries = table_entries(store)
    assert len(entries) == 4 * 6
    assert not any(v[_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY for v in entries.values())
    check_table(store)


def test_one_point_per_series_per_batch(store: tael.Store) -> None:
    """What an exporter sends (every series once per interval): one-point groups, merged
    column-wise, bit for bit as one pass; then one late batch marks its windows dirty."""
    rng = random.Random(7)
    for k in range(12):
        store.insert_metrics([point(s, k, 0, rng.uniform(-1e6, 1e6) * (s + 1), rng.randint(0, 9)) for s in range(4)])
        store.flush()
        check_table(store)
    entries = table_entries(store)
    assert len(entries) == 4 * 3 and not any(v[_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY for v in entries.values())
    store.insert_metrics([point(s, 2, 0, 1.5, 1) for s in range(4)])  # minute 2 again, before minutes 3 and 4
    store.flush()
    dirty = {k for k, v in table_entries(store).items() if v[_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY}
    assert {w - T0 for _sid, w in dirty} == {0} and len(dirty) == 4
    check_table(store)


def test_appending_in_time_order_is_bit_exact(store: tael.Store) -> None:
    """A window's sum continues where it stopped: 1e16 + 1 + 1 is 1e16 in one pass (each
    +1 rounds away), so adding the second batch's own sum (2) would give 1e16 + 2."""
    store.insert_metrics([point(2, 0, 0, 1e16)])
    store.insert_metrics([point(2, 1, 0, 1.0), point(2, 2, 0, 1.0)])  # a delta counter: increase too
    store.flush()
    ((value),) = table_entries(store).values()
    assert (value[_hotrollups.P_SUM], value[_hotrollups.P_INCREASE]) == (1e16, 1e16)
    assert not value[_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY
    (bucket,) = store.aggregate_metrics("m", start=T0, end=T0 + W, step="5m")
    assert (bucket.sum, bucket.increase) == (1e16, 1e16)
    check_table(store)


def test_a_late_point_marks_its_window_dirty_and_reads_recompute_it(store: tael.Store) -> None:
    store.insert_metrics([point(1, 1, 0, 10.0), point(1, 3, 0, 20.0), point(1, 7, 0, 1.0)])
    store.flush()  # applied on its own (not gathered with the next: Settings.apply_gather_ms)
    store.insert_metrics([point(1, 2, 0, 15.0)])  # before the window's newest point: late
    store.flush()
    entries = table_entries(store)
    dirty = {k[1] - T0: bool(v[_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY) for k, v in entries.items()}
    assert dirty == {0: True, W: False}
    check_table(store)
    (b0, b1) = store.aggregate_metrics("m", start=T0, end=T0 + 2 * W, step="5m")
    # one pass in time order: 10, 15, 20 (rises 5 and 5); the late point is not last
    assert (b0.count, b0.first, b0.last, b0.increase, b0.min, b0.max) == (3, 10.0, 20.0, 10.0, 10.0, 20.0)
    assert (b1.count, b1.increase) == (1, 0.0)
    (hour,) = store.aggregate_metrics("m", start=T0, end=T0 + 60 * MINUTE, step="1h")
    assert (hour.count, hour.last, hour.increase) == (4, 1.0, 10.0 + 1.0)  # 20 -> 1 is a reset: +1


def test_compaction_deletes_or_rebuilds_the_windows_it_cuts(data_dir: Path) -> None:
    with tael.Store(data_dir, tael.Settings(compaction_batch_records=4)) as store:
        store.insert_metrics([point(0, m, 0, float(m)) for m in range(12)])
        store.compact(T0 + 7 * MINUTE + 30 * 10**9)  # inside the second window
        # minutes 0-7 moved in chunks of 4 (the first chunk leaves part of the block): the
        # first window is gone, the second keeps minutes 8 and 9, the third is untouched
        entries = sorted(table_entries(store).items())
        assert [
            (k[1] - T0, v[_hotrollups.P_COUNT], v[_hotrollups.P_FIRST], v[_hotrollups.P_LAST]) for k, v in entries
        ] == [(W, 2, 8.0, 9.0), (2 * W, 2, 10.0, 11.0)]
        check_table(store)
        store.compact(T0 + HOUR_NS)
        assert table_entries(store) == {}
        (bucket,) = store.aggregate_metrics("m", start=T0, end=T0 + HOUR_NS, step="1h")
        assert (bucket.count, bucket.sum, bucket.first, bucket.last) == (12, 66.0, 0.0, 11.0)


def test_compaction_rebuilds_a_window_from_the_blocks_left(data_dir: Path) -> None:
    """A window with points in two blocks: moving one block out keeps the other's points;
    moving part of a block stores its rest again, before the other block's points."""
    with tael.Store(data_dir, tael.Settings(compaction_batch_records=2)) as store:
        store.insert_metrics([point(0, m, 0, float(m)) for m in range(4)])  # block A: minutes 0-3
        store.insert_metrics([point(0, 4, 0, 4.0)])  # block B: minute 4, the same window
        store.compact(T0 + 1 * MINUTE + 1)  # A's two oldest move, A's rest is stored again
        ((value),) = table_entries(store).values()
        assert (value[_hotrollups.P_COUNT], value[_hotrollups.P_FIRST], value[_hotrollups.P_LAST]) == (3, 2.0, 4.0)
        assert not value[_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY
        check_table(store)
        store.compact(T0 + 3 * MINUTE + 1)  # the rest of A moves: B's point is left
        ((value),) = table_entries(store).values()
        assert (value[_hotrollups.P_COUNT], value[_hotrollups.P_SUM]) == (1, 4.0)
        check_table(store)
        (bucket,) = store.aggregate_metrics("m", start=T0, end=T0 + W, step="5m")
        assert (bucket.count, bucket.sum, bucket.first, bucket.last) == (5, 10.0, 0.0, 4.0)


def test_a_frame_applied_twice_counts_once(store: tael.Store) -> None:
    """Applying a block whose key the hot tier holds (the same WAL frame again) replaces it."""
    store.insert_metrics([point(0, m, 0, 1.0) for m in range(4)])
    store.flush()
    hot = store._hot
    with hot.reader() as txn:
        (block,) = list(hot.batches(txn, "metrics"))
    lsn = block.column("wal_lsn")[0].as_py()
    hot.write(lambda txn: _hotblocks.apply_metrics(hot, txn, _block.Block(block.data, "metrics"), lsn))
    assert [v[_hotrollups.P_COUNT] for v in table_entries(store).values()] == [4]
    check_table(store)


def test_the_value_bytes_are_as_documented() -> None:
    """docs/format/hot.md, "series_rollups": 89 bytes, big-endian."""
    value = [
        _hotrollups.F_DIRTY | _hotrollups.F_CUMULATIVE | _hotrollups.F_MONOTONIC | 1,
        3,
        T0,
        T0 + 2,
        6.0,
        1.0,
        3.0,
        1.0,
        3.0,
        2.0,
        0,
        0.0,
    ]
    raw = _hotrollups.VALUE.pack(*value)
    assert len(raw) == 89
    assert raw[:1] == b"\x8d"
    assert raw[1:9] == (3).to_bytes(8, "big")
    assert raw[9:17] == T0.to_bytes(8, "big") and raw[17:25] == (T0 + 2).to_bytes(8, "big")
    assert raw[25:33] == struct.pack(">d", 6.0) and raw[65:73] == struct.pack(">d", 2.0)
    assert _hotrollups.KEY.pack(b"\x01" * 8, T0) == b"\x01" * 8 + T0.to_bytes(8, "big")


def test_the_migrated_format2_hot_tier_has_its_table(tmp_path: Path) -> None:
    """tael/_hotmigrate.py stores blocks with ``restore``: the table is filled there too."""
    with tarfile.open(TARBALL) as tar:
        tar.extractall(tmp_path, filter="data")
    with tael.Store(tmp_path / "data", SETTINGS) as store:
        store.flush()
        assert table_entries(store)
        check_table(store)


# ---------------------------------------------------------------- answers, against a model


def model_buckets(points: list[tael.MetricPoint], lo: int, hi: int, step: int) -> list[tael.MetricBucket]:
    """One pass over the points inserted (in insert order on equal times), per the
    definitions of docs/format/cold.md, "Rollups", combined across series as
    ``aggregate_metrics`` documents."""
    by_bucket: dict[int, dict[int, list[tael.MetricPoint]]] = {}
    for p in points:
        if lo <= p.time_ns < hi:
            by_bucket.setdefault(p.time_ns - p.time_ns % step, {}).setdefault(p.attributes["series"], []).append(p)
    out = []
    for start in sorted(by_bucket):
        count, total, mins, maxs, firsts, lasts = 0, 0.0, [], [], [], []
        increases: list[float] = []
        hist_count: int | None = None
        hist_sum: float | None = None
        for group in by_bucket[start].values():
            group = sorted(group, key=lambda p: p.time_ns)  # stable: insert order on ties
            vs = [p.value for p in group]
            count += len(vs)
            total += sum(vs)
            mins.append(min(vs))
            maxs.append(max(vs))
            firsts.append((group[0].time_ns, vs[0]))
            lasts.append((group[-1].time_ns, vs[-1]))
            head = group[0]
            if head.kind == "sum" and head.monotonic:
                if head.temporality == "cumulative":
                    increases.append(sum((b - a if b >= a else b) for a, b in itertools.pairwise(vs)))
                else:
                    increases.append(sum(vs))
            if head.kind == "histogram":
                hist_count = (hist_count or 0) + sum(p.count or 0 for p in group)
                hist_sum = (hist_sum or 0.0) + sum(p.sum or 0.0 for p in group)
        out.append(
            tael.MetricBucket(
                start_ns=start,
                count=count,
                sum=total,
                min=min(mins),
                max=max(maxs),
                avg=total / count,
                first=min(firsts)[1],
                last=max(lasts)[1],
                increase=sum(increases) if increases else None,
                hist_count=hist_count,
                hist_sum=hist_sum,
            )
        )
    return out


int_batch_st = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 6),
        st.integers(0, 3),
        st.integers(0, 40).map(float),
        st.none() | st.integers(0, 9),
    ),
    min_size=4,
    max_size=30,
)
int_op_st = st.one_of(
    st.tuples(st.just("insert"), at_st, int_batch_st),
    st.tuples(st.just("compact"), st.integers(0, 90), st.integers(0, 4)),
)
STEPS = {"1m": MINUTE, "5m": W, "1h": HOUR_NS, "1d": 24 * HOUR_NS}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(int_op_st, min_size=2, max_size=8),
    chunk=st.sampled_from([5, 100_000]),
    queries=st.lists(
        st.tuples(
            st.integers(-5, 90),
            st.integers(1, 100),
            st.sampled_from(["1m", "5m", "1h", "1d", 2 * W, 7 * MINUTE]),
            st.sampled_from([0, 1, 37]),
            st.none() | st.integers(0, 3),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_aggregate_metrics_is_one_pass_over_every_point(
    ops: list[tuple[Any, ...]], chunk: int, queries: list[tuple[Any, ...]]
) -> None:
    """Hot windows from the table, raw hot points at cut and dirty windows, cold rollups and
    raw cold points: whatever the mix, the buckets equal the model's exactly. Query
    ranges start on or off a window boundary (``offset`` seconds), some of one series."""
    inserted: list[tael.MetricPoint] = []
    clock = 0
    with (
        tempfile.TemporaryDirectory() as d,
        tael.Store(Path(d), tael.Settings(compaction_batch_records=chunk)) as store,
    ):
        for op in ops:
            if op[0] == "insert":
                batch, clock = batch_of(clock, op[1], op[2])
                store.insert_metrics(batch)
                inserted += batch
            else:
                store.compact(T0 + op[1] * MINUTE + op[2] * 7 * 10**9)
        for start_min, span_min, step, offset, series in queries:
            lo = T0 + start_min * MINUTE + offset * 10**9
            hi = lo + span_min * MINUTE
            attrs = None if series is None else {"series": series}
            got = store.aggregate_metrics("m", attributes=attrs, start=lo, end=hi, step=step)
            step_ns = STEPS[step] if isinstance(step, str) else step
            chosen = [p for p in inserted if series is None or p.attributes["series"] == series]
            assert got == model_buckets(chosen, lo, hi, step_ns), (lo - T0, hi - T0, step)


@pytest.mark.parametrize("step", ["5m", "1h"])
def test_a_day_of_one_series_answers_the_same_hot_and_cold(store: tael.Store, step: str) -> None:
    """The benchmark's dashboard, small: a counter every 10 s for a day, in blocks of 1,000
    points; the hot answer (from the table: one clean entry per window) equals the cold one
    after compaction (the cold rollups) and the model."""
    pts = [point(1, 0, i, float(i // 7)) for i in range(0, 24 * 60 * 60 * 10**6, 10**7)]
    for i in range(0, len(pts), 1000):
        store.insert_metrics(pts[i : i + 1000])
    store.flush()
    entries = table_entries(store)
    assert len(entries) == 288 and not any(v[_hotrollups.P_FLAGS] & _hotrollups.F_DIRTY for v in entries.values())
    hot = store.aggregate_metrics("m", start=T0, end=T0 + 24 * HOUR_NS, step=step)
    store.compact(T0 + 48 * HOUR_NS)
    cold = store.aggregate_metrics("m", start=T0, end=T0 + 24 * HOUR_NS, step=step)
    assert hot == cold == model_buckets(pts, T0, T0 + 24 * HOUR_NS, STEPS[step])
    assert len(hot) == (288 if step == "5m" else 24)


@pytest.mark.parametrize("step", ["1m", "5m", 2 * MINUTE])
def test_points_tied_in_time_across_the_tiers_keep_insert_order(store: tael.Store, step: Any) -> None:
    """A point compacted, then another of the same series at the same time: one pass takes
    the compacted one first (it came first), whatever the step (before, step 1m chained
    the hot partial first and swapped first and last)."""
    t = T0 + 17 * MINUTE
    store.insert_metrics([make_point(time_ns=t, value=1.0)])
    store.compact(t + 1)
    store.insert_metrics([make_point(time_ns=t, value=0.0)])
    (bucket,) = store.aggregate_metrics("m", start=T0, end=T0 + HOUR_NS, step=step)
    assert (bucket.count, bucket.first, bucket.last) == (2, 1.0, 0.0)
