"""Cold tier: compaction, merges, retention and unioned reads, checked against the
answers the hot tier gave and against plain Python models."""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tael

from .conftest import make_log, make_point, make_span

DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
SERVICES = ["api", "db", "llm"]
VALUES = [1, 2, "1", True, 1.0, None, [1, "a"], {"n": 2.5}]


def cold_files(data: Path) -> list[str]:
    return sorted(p.relative_to(data / "cold").as_posix() for p in (data / "cold").rglob("*") if p.is_file())


def live_files(store: tael.Store) -> list[str]:
    with store._hot.reader() as txn:
        return sorted(f.relpath for f in store._hot.manifest(txn))


# ---------------------------------------------------------------- strategies

span_st = st.builds(
    lambda t, s, name, svc, day, off, dur, kind, status, a: tael.Span(
        trace_id=f"{t:032x}",
        span_id=f"{s:016x}",
        name=name,
        service=svc,
        start_ns=T0 + day * DAY + off,
        end_ns=T0 + day * DAY + off + dur,
        kind=kind,
        status=status,
        attributes={"k": a} if a != "absent" else {},
        resource={"r": "x" if s % 2 else "y"},
    ),
    st.integers(1, 8),
    st.integers(1, 10**6),
    st.sampled_from(["GET /", "query", "chat"]),
    st.sampled_from(SERVICES),
    st.integers(0, 3),
    st.integers(0, 40).map(lambda x: x * HOUR // 20),
    st.integers(0, 30).map(lambda x: x * 1_000_000),
    st.sampled_from(["internal", "server", "client"]),
    st.sampled_from(["unset", "ok", "error"]),
    st.sampled_from([*VALUES, "absent"]),
)
log_st = st.builds(
    lambda day, off, svc, sev, tr, a: tael.LogRecord(
        time_ns=T0 + day * DAY + off,
        body=f"b{off % 7}",
        service=svc,
        severity_number=sev,
        trace_id=f"{tr:032x}" if tr else None,
        attributes={"k": a},
    ),
    st.integers(0, 3),
    st.integers(0, 20).map(lambda x: x * HOUR),
    st.sampled_from(SERVICES),
    st.integers(0, 24),
    st.integers(0, 3),
    st.sampled_from(VALUES),
)
point_st = st.builds(
    lambda day, off, name, svc, v, a: tael.MetricPoint(
        time_ns=T0 + day * DAY + off, name=name, service=svc, value=v, attributes={"k": a}
    ),
    st.integers(0, 3),
    st.integers(0, 30).map(lambda x: x * HOUR // 3),
    st.sampled_from(["cpu", "mem"]),
    st.sampled_from(SERVICES),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([1, "1", 2]),
)
time_st = st.integers(-1, 4 * 24).map(lambda h: None if h < 0 else T0 + h * HOUR)
trace_q = st.fixed_dictionaries(
    {},
    optional={
        "service": st.sampled_from(SERVICES),
        "name": st.sampled_from(["GET /", "chat"]),
        "status": st.sampled_from(["ok", "error"]),
        "kind": st.sampled_from(["server", "client"]),
        "min_duration_ms": st.integers(0, 30),
        "max_duration_ms": st.integers(0, 30),
        "attributes": st.sampled_from([{"k": v} for v in VALUES] + [{"r": "x"}]),
        "start": time_st,
        "end": time_st,
        "limit": st.integers(1, 50),
    },
)
log_q = st.fixed_dictionaries(
    {},
    optional={
        "service": st.sampled_from(SERVICES),
        "min_severity": st.integers(0, 24),
        "trace_id": st.integers(1, 3).map(lambda t: f"{t:032x}"),
        "attributes": st.sampled_from([{"k": v} for v in VALUES]),
        "start": time_st,
        "end": time_st,
        "limit": st.integers(1, 50),
    },
)
metric_q = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["cpu", "mem"]),
        "service": st.sampled_from(SERVICES),
        "attributes": st.sampled_from([{"k": 1}, {"k": "1"}]),
        "start": time_st,
        "end": time_st,
        "limit": st.integers(1, 50),
    },
)


def answers(store: tael.Store, tq: list[Any], lq: list[Any], mq: list[Any], traces: set[str]) -> list[Any]:
    out: list[Any] = [store.query_traces(**q) for q in tq]
    out += [store.query_logs(**q) for q in lq]
    out += [store.query_metrics(**q) for q in mq]
    out += [store.get_trace(t) for t in sorted(traces)]
    out.append(store.list_services())
    out.append(store.stats().signals)
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spans=st.lists(span_st, max_size=50),
    logs=st.lists(log_st, max_size=40),
    points=st.lists(point_st, max_size=40),
    cuts=st.lists(st.integers(0, 4 * 24).map(lambda h: T0 + h * HOUR), min_size=1, max_size=3),
    tq=st.lists(trace_q, min_size=1, max_size=6),
    lq=st.lists(log_q, min_size=1, max_size=6),
    mq=st.lists(metric_q, min_size=1, max_size=6),
)
def test_every_read_answers_the_same_before_and_after_compaction(
    spans: list[tael.Span],
    logs: list[tael.LogRecord],
    points: list[tael.MetricPoint],
    cuts: list[int],
    tq: list[Any],
    lq: list[Any],
    mq: list[Any],
) -> None:
    traces = {s.trace_id for s in spans}
    with tempfile.TemporaryDirectory() as d:
        s = tael.Settings(cold_merge_min_files=2, cold_row_group_rows=4)  # tiny row groups: many to prune
        with tael.Store(Path(d), s) as store:
            for i in range(0, max(len(spans), len(logs), len(points)), 9):
                store.insert_spans(spans[i : i + 9])
                store.insert_logs(logs[i : i + 9])
                store.insert_metrics(points[i : i + 9])
            want = answers(store, tq, lq, mq, traces)
            moved = 0
            for cut in sorted(cuts):
                moved += store.compact(cut).total_records
                assert answers(store, tq, lq, mq, traces) == want
            expected_moved = (
                len({(x.trace_id, x.span_id) for x in spans if x.start_ns < max(cuts)})
                + sum(r.time_ns < max(cuts) for r in logs)
                + sum(p.time_ns < max(cuts) for p in points)
            )
            assert moved == expected_moved
            store.compact(T0 + 10 * DAY)
            assert store.stats().hot_records == {"spans": 0, "logs": 0, "metrics": 0}
            assert answers(store, tq, lq, mq, traces) == want
        with tael.Store(Path(d), s) as store:
            assert answers(store, tq, lq, mq, traces) == want
            assert cold_files(Path(d)) == live_files(store)


def test_every_field_survives_the_cold_tier(store: tael.Store) -> None:
    attrs = {
        "s": "text",
        "i": -(2**63),
        "u": 2**64 - 1,
        "f": 0.1,
        "whole": 5.0,
        "nan": float("inf"),
        "b": False,
        "none": None,
        "list": [1, "2", [3.5, None]],
        "dict": {"a": {"b": [True]}},
        "quote": 'say "hi"\n',
        "num_str": "1",
    }
    span = make_span(
        start_ns=T0 + 5,
        end_ns=T0 + 9,
        parent_span_id="00000000000000ab",
        kind="consumer",
        status="error",
        status_message="boom",
        attributes=attrs,
        resource={"service.name": "svc", "host.cpu": 4},
        scope_name="scope",
        scope_version="1.2",
        events=[tael.SpanEvent(time_ns=T0 + 6, name="exception", attributes={"exception.message": "x", "n": 1})],
        links=[tael.SpanLink(trace_id="f" * 32, span_id="e" * 16, attributes={"why": 2.0})],
        trace_state="k=v",
        flags=1,
    )
    log = make_log(
        time_ns=T0 + 7,
        body="line\u2028two",
        severity_number=17,
        severity_text="ERROR",
        trace_id=span.trace_id,
        span_id=span.span_id,
        attributes=attrs,
        resource={"r": 1.5},
        observed_ns=T0 + 8,
        scope_name="logger",
    )
    hist = make_point(
        time_ns=T0 + 3,
        name="latency",
        kind="histogram",
        unit="ms",
        attributes=attrs,
        temporality="delta",
        start_ns=T0,
        count=7,
        sum=12.5,
        min=0.5,
        max=4.0,
        bucket_counts=[1, 2, 4],
        explicit_bounds=[1.0, 2.0],
    )
    counter = make_point(time_ns=T0 + 4, name="requests", kind="sum", monotonic=True, value=3.0)
    store.insert_spans([span])
    store.insert_logs([log])
    store.insert_metrics([hist, counter])
    store.compact(T0 + DAY)
    assert store.stats().hot_records == {"spans": 0, "logs": 0, "metrics": 0}
    assert store.get_trace(span.trace_id) == [span]
    assert store.query_logs() == [log]
    assert store.query_logs(trace_id=span.trace_id) == [log]
    assert store.query_metrics() == [hist, counter]
    assert store.query_metrics(name="latency", attributes={"i": -(2**63)}) == [hist]


def test_cold_files_are_read_by_pyarrow_and_duckdb_with_documented_columns(store: tael.Store) -> None:
    """Pins cold format version 2 (issue 16): attributes are JSON text, read with DuckDB's
    JSON functions (version 1 had a map column, read as ``attributes['k']``)."""
    span = make_span(start_ns=T0 + HOUR, end_ns=T0 + HOUR + 5_000_000, attributes={"http.method": "GET", "n": 3})
    store.insert_spans([span, make_span(start_ns=T0 + DAY + 1, end_ns=T0 + DAY + 2)])
    store.insert_logs([make_log(time_ns=T0 + 1, trace_id=span.trace_id, attributes={"a": 1})])
    store.insert_metrics([make_point(time_ns=T0 + i * 60 * 10**9, value=float(i)) for i in range(12)])
    store.compact(T0 + 2 * DAY)
    cold = store.path / "cold"
    doc = (Path(__file__).parent.parent / "docs" / "format" / "cold.md").read_text()
    for dataset in ("spans", "logs", "metrics", "metrics_5m", "metrics_1h"):
        table = ds.dataset(cold / dataset, partitioning="hive").to_table()
        assert table.num_rows > 0
        assert "date" in table.column_names
        for column in table.column_names:
            assert f"`{column}`" in doc, f"{dataset}.{column} is not documented in docs/format/cold.md"
        rel = duckdb.sql(f"select * from read_parquet('{cold / dataset}/*/*.parquet', hive_partitioning=true)")
        assert rel.columns == table.column_names
        assert rel.to_arrow_table().num_rows == table.num_rows
    spans = ds.dataset(cold / "spans", partitioning="hive").to_table()
    assert sorted(spans.column("date").to_pylist()) == ["2026-01-01", "2026-01-02"]
    got = duckdb.sql(
        f"select trace_id, json_extract_string(attributes, '$.\"http.method\"'), duration_ns, start_time "
        f"from read_parquet('{cold}/spans/*/*.parquet', hive_partitioning=true) where (attributes->>'n')::INT = 3"
    ).fetchall()
    assert len(got) == 1
    assert got[0][0] == span.trace_id and got[0][1] == "GET" and got[0][2] == 5_000_000
    avg = duckdb.sql(
        f"select sum(sum) / sum(count) from read_parquet('{cold}/metrics_1h/*/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert avg[0][0] == pytest.approx(5.5)
    meta = pq.ParquetFile(next((cold / "spans").rglob("*.parquet"))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    for rollup in ("metrics_5m", "metrics_1h"):  # decoded ~3x faster by dashboards (docs/format/cold.md)
        meta = pq.ParquetFile(next((cold / rollup).rglob("*.parquet"))).metadata
        codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
        assert codecs == {"SNAPPY"}


def test_late_data_lands_in_its_day_and_small_files_are_merged(data_dir: Path) -> None:
    s = tael.Settings(cold_merge_min_files=3)
    with tael.Store(data_dir, s) as store:
        expected = []
        for i in range(8):  # eight small compactions of the same day
            batch = [make_span(start_ns=T0 + i * HOUR + j, end_ns=T0 + i * HOUR + j + 10) for j in range(5)]
            store.insert_spans(batch)
            expected += batch
            report = store.compact(T0 + (i + 1) * HOUR)
            assert report.records["spans"] == 5
        day_files = [p for p in live_files(store) if p.startswith("spans/date=2026-01-01/")]
        assert len(day_files) < 3, day_files
        late = [make_span(start_ns=T0 + 30 * 60 * 10**9 + j, end_ns=T0 + 31 * 60 * 10**9) for j in range(4)]
        store.insert_spans(late)  # older than everything already compacted
        assert store.stats().hot_records["spans"] == 4
        store.compact(T0 + DAY)
        expected += late
        got = store.query_traces(limit=1000)
        assert sorted(got, key=lambda x: x.span_id) == sorted(expected, key=lambda x: x.span_id)
        assert all(p.startswith("spans/date=2026-01-01/") for p in live_files(store) if p.startswith("spans/"))
        assert store.merge_small_files() == 0  # compact() already merged the partition it wrote
        assert cold_files(data_dir) == live_files(store)


def test_orphans_are_removed_on_open_and_nothing_else(data_dir: Path) -> None:
    with tael.Store(data_dir) as store:
        store.insert_spans([make_span(start_ns=T0, end_ns=T0 + 1)])
        store.compact(T0 + DAY)
        live = live_files(store)
    part = data_dir / "cold" / "spans" / "date=2026-01-01"
    (part / "part-9999999999.parquet").write_bytes(b"half written")
    (part / "part-0000000042.parquet.partial").write_bytes(b"tmp")
    (data_dir / "cold" / "logs" / "date=2026-02-02").mkdir(parents=True)
    (data_dir / "cold" / "logs" / "date=2026-02-02" / "part-0000000007.parquet").write_bytes(b"x")
    with tael.Store(data_dir, read_only=True) as reader:  # a reader never deletes
        assert len(reader.query_traces()) == 1
    assert len(cold_files(data_dir)) == len(live) + 3
    with tael.Store(data_dir) as store:
        assert cold_files(data_dir) == live == live_files(store)
        assert not (data_dir / "cold" / "logs" / "date=2026-02-02").exists()
        assert len(store.query_traces()) == 1


def test_retention_drops_whole_expired_partitions_and_keeps_rollups(data_dir: Path) -> None:
    s = tael.Settings(
        retention_spans_days=3, retention_logs_days=2, retention_metrics_days=3, retention_metrics_5m_days=5
    )
    spans = [
        make_span(service=f"s{d % 2}", start_ns=T0 + d * DAY + HOUR, end_ns=T0 + d * DAY + 2 * HOUR) for d in range(8)
    ]
    logs = [make_log(time_ns=T0 + d * DAY + HOUR) for d in range(8)]
    points = [make_point(time_ns=T0 + d * DAY + m * 60 * 10**9, value=float(m)) for d in range(8) for m in range(10)]
    with tael.Store(data_dir, s) as store:
        store.insert_spans(spans)
        store.insert_logs(logs)
        store.insert_metrics(points)
        store.compact(T0 + 6 * DAY)  # days 6 and 7 stay hot
        now = T0 + 7 * DAY + 12 * HOUR
        report = store.enforce_retention(now)
        # a partition goes once its whole day is older than now - retention
        assert {p for p in report.partitions_dropped if p.startswith("spans/")} == {
            f"spans/date=2026-01-0{d + 1}" for d in range(4)
        }
        assert {p for p in report.partitions_dropped if p.startswith("logs/")} == {
            f"logs/date=2026-01-0{d + 1}" for d in range(5)
        }
        assert not any(p.startswith("metrics_1h/") for p in report.partitions_dropped)
        assert [x.start_ns for x in store.query_traces(limit=100)] == [x.start_ns for x in spans[4:]][::-1]
        assert len(store.query_logs()) == 3
        kept = [x for x in spans[4:]]
        info = {i.name: i for i in store.list_services()}
        assert {n: (i.span_count, i.trace_count) for n, i in info.items()} == {
            n: (sum(x.service == n for x in kept), sum(x.service == n for x in kept)) for n in {"s0", "s1"}
        }
        # raw points of day 0 are gone; their 1-hour rollups still answer hourly steps
        assert store.query_metrics(start=T0, end=T0 + DAY) == []
        hourly = store.aggregate_metrics("m", start=T0, end=T0 + DAY, step="1h")
        assert [(b.start_ns, b.count, b.sum, b.min, b.max) for b in hourly] == [(T0, 10, 45.0, 0.0, 9.0)]
        assert store.aggregate_metrics("m", start=T0, end=T0 + DAY, step="1m") == []
        # hot spans past retention go too; hot metrics past retention are rolled up, not lost
        store.insert_spans([make_span(service="late", start_ns=T0 + 10, end_ns=T0 + 20)])
        store.insert_metrics([make_point(time_ns=T0 + 30 * 60 * 10**9, value=100.0)])
        report = store.enforce_retention(now)
        assert report.hot_records_dropped["spans"] == 1
        assert "late" not in {i.name for i in store.list_services()}
        hourly = store.aggregate_metrics("m", start=T0, end=T0 + DAY, step="1h")
        assert [(b.count, b.max) for b in hourly] == [(11, 100.0)]
        assert cold_files(data_dir) == live_files(store)


def test_list_services_counts_traces_once_across_tiers(store: tael.Store) -> None:
    a = [make_span(trace_id="a" * 32, service="api", start_ns=T0 + i, end_ns=T0 + i + 1) for i in range(3)]
    store.insert_spans(a[:2])
    store.compact(T0 + 2)  # the trace straddles the tiers
    store.insert_spans(a[2:])
    (info,) = store.list_services()
    assert (info.span_count, info.trace_count) == (3, 1)
    store.compact(T0 + DAY)
    (info,) = store.list_services()
    assert (info.span_count, info.trace_count) == (3, 1)


def test_aggregate_metrics_validates_arguments(store: tael.Store) -> None:
    with pytest.raises(ValueError, match="step"):
        store.aggregate_metrics("m", start=0, end=1, step="2m")
    with pytest.raises(ValueError, match="step"):
        store.aggregate_metrics("m", start=0, end=1, step=0)
    with pytest.raises(ValueError, match="start and end"):
        store.aggregate_metrics("m", start=None, end=1)
    with pytest.raises(ValueError, match="before"):
        store.compact(None)
    assert store.aggregate_metrics("absent", start=0, end=10**18) == []


def test_maintenance_compacts_retains_and_survives_errors(data_dir: Path) -> None:
    s = tael.Settings(hot_window_s=3600)
    with tael.Store(data_dir, s) as store:
        store.insert_spans([make_span(start_ns=T0, end_ns=T0 + 1), make_span(start_ns=T0 + DAY, end_ns=T0 + DAY + 1)])
        blocker = data_dir / "cold" / "spans"
        blocker.parent.mkdir(parents=True)
        blocker.write_bytes(b"not a directory")  # compaction cannot create its partition
        m = tael.Maintenance(store, interval_s=0.05)
        report = m.run_once(now=T0 + DAY)
        assert report.error is not None and m.errors == 1
        assert store.stats().hot_records["spans"] == 2  # nothing lost, nothing half-moved
        store.insert_spans([make_span(start_ns=T0 + 2, end_ns=T0 + 3)])  # writes keep working
        blocker.unlink()
        report = m.run_once(now=T0 + DAY)
        assert report.error is None, report.error
        assert report.compaction is not None and report.compaction.records["spans"] == 2
        assert store.stats().hot_records["spans"] == 1
        assert len(store.query_traces()) == 3
        with m:  # the daemon thread, on the real clock: first pass at once, then every interval
            for _ in range(200):
                if m.runs >= 4:
                    break
                time.sleep(0.05)
        assert m.runs >= 4 and m.errors == 1
        # by the real clock these January spans are past the 7-day retention
        assert store.query_traces() == [] and store.list_services() == []


# ---------------------------------------------------------------- rollups against an exact computation


def exact_buckets(points: list[tael.MetricPoint], lo: int, hi: int, step: int) -> list[tuple[Any, ...]]:
    """One pass over raw points: the documented definitions."""
    by_bucket: dict[int, dict[str, list[tael.MetricPoint]]] = {}
    for p in points:
        if lo <= p.time_ns < hi:
            series = repr((p.service, sorted(p.attributes.items())))
            by_bucket.setdefault(p.time_ns - p.time_ns % step, {}).setdefault(series, []).append(p)
    out = []
    for start in sorted(by_bucket):
        values, increase = [], None
        firsts, lasts = [], []
        for group in by_bucket[start].values():
            group = sorted(group, key=lambda p: p.time_ns)
            vs = [p.value for p in group]
            values += vs
            firsts.append((group[0].time_ns, vs[0]))
            lasts.append((group[-1].time_ns, vs[-1]))
            if group[0].kind == "sum" and group[0].monotonic:
                inc = sum((b - a if b >= a else b) for a, b in itertools.pairwise(vs))
                increase = (increase or 0.0) + inc
        out.append((start, len(values), sum(values), min(values), max(values), min(firsts)[1], max(lasts)[1], increase))
    return out


def close(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if (u is None) != (v is None):
                return False
            if u is not None and not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-6):
                return False
    return True


minute = 60 * 10**9
counter_st = st.lists(st.integers(0, 50), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    on_time=st.lists(
        st.tuples(st.integers(0, 3 * 60 - 1), st.sampled_from(["a", "b"]), st.integers(0, 50)), max_size=60
    ),
    late=st.lists(
        st.tuples(st.integers(0, 3 * 60 - 1), st.sampled_from(["a", "delayed"]), st.integers(0, 50)), max_size=20
    ),
    cut1=st.integers(0, 3 * 60),
    cut2=st.integers(0, 3 * 60),
    kind=st.sampled_from(["counter", "gauge"]),
    lo=st.integers(-10, 3 * 60),
    span=st.integers(1, 4 * 60),
    step=st.sampled_from(["1m", "5m", "1h", "1d", 7 * minute]),
    service=st.sampled_from([None, "svc"]),
)
def test_rollups_equal_one_pass_over_raw_points(
    on_time: list[tuple[int, str, int]],
    late: list[tuple[int, str, int]],
    cut1: int,
    cut2: int,
    kind: str,
    lo: int,
    span: int,
    step: Any,
    service: str | None,
) -> None:
    """Counters with resets (values go up and down at random), several compactions at
    unaligned cut-offs, late points after a compaction (a delayed exporter's own series,
    and points interleaving in time with already-compacted points of series "a", in the
    cold tier or still hot), and query ranges that cut windows: every bucket equals the
    exact computation."""
    is_counter = kind == "counter"

    def point(minute_i: int, series: str, v: int, jitter: int) -> tael.MetricPoint:
        return make_point(
            time_ns=T0 + minute_i * minute + jitter,
            name="m",
            service="svc",
            value=float(v),
            kind="sum" if is_counter else "gauge",
            monotonic=is_counter,
            attributes={"series": series},
        )

    first = [point(m, s, v, i) for i, (m, s, v) in enumerate(on_time)]
    delayed = [point(m, series, v, 1000 + i) for i, (m, series, v) in enumerate(late)]
    steps = {"1m": minute, "5m": 5 * minute, "1h": 60 * minute, "1d": 1440 * minute}
    step_ns = steps.get(step, step) if isinstance(step, str) else step
    start, end = T0 + lo * minute + 7, T0 + (lo + span) * minute
    with tempfile.TemporaryDirectory() as d, tael.Store(Path(d)) as store:
        store.insert_metrics(first)
        store.compact(T0 + cut1 * minute + 3)
        store.insert_metrics(delayed)  # possibly older than what is already compacted
        store.compact(T0 + cut2 * minute + 5)
        got = [
            (b.start_ns, b.count, b.sum, b.min, b.max, b.first, b.last, b.increase)
            for b in store.aggregate_metrics("m", service=service, start=start, end=end, step=step)
        ]
        assert close(got, exact_buckets(first + delayed, start, end, step_ns)), (got, step)
        one = store.aggregate_metrics("m", attributes={"series": "a"}, start=start, end=end, step=step)
        want = exact_buckets([p for p in first + delayed if p.attributes["series"] == "a"], start, end, step_ns)
        assert close([(b.start_ns, b.count, b.sum, b.min, b.max, b.first, b.last, b.increase) for b in one], want)


def test_histogram_rollups_total_count_and_sum(store: tael.Store) -> None:
    pts = [
        make_point(time_ns=T0 + i * minute, name="h", kind="histogram", temporality="delta", count=i, sum=i * 1.5)
        for i in range(1, 13)
    ]
    store.insert_metrics(pts)
    store.compact(T0 + 6 * minute)
    (bucket,) = store.aggregate_metrics("h", start=T0, end=T0 + HOUR, step="1h")
    assert (bucket.count, bucket.hist_count, bucket.hist_sum) == (12, 78, 117.0)


def test_cold_reads_retry_when_a_merge_removes_files(data_dir: Path) -> None:
    """A read that took its snapshot before a merge unlinked the files it lists is retried."""
    with tael.Store(data_dir, tael.Settings(cold_merge_min_files=100)) as store:
        for i in range(3):
            store.insert_spans([make_span(start_ns=T0 + i, end_ns=T0 + i + 1)])
            store.compact(T0 + i + 1)
        calls = []
        real = store._cold.read_row_groups

        def racing(f: Any, rgs: Any, *columns: Any) -> Any:
            if not calls:
                calls.append(1)
                store._compactor.merge_small_files(min_files=2)
            return real(f, rgs, *columns)

        store._cold.read_row_groups = racing  # type: ignore[method-assign]
        assert len(store.query_traces()) == 3
        assert calls and len(live_files(store)) == 1
        assert os.path.exists(data_dir / "cold" / live_files(store)[0])


def test_closing_the_store_under_a_running_maintenance_loop(data_dir: Path) -> None:
    store = tael.Store(data_dir, tael.Settings(hot_window_s=1e-9, compaction_batch_records=50))
    now = time.time_ns()
    m = tael.Maintenance(store, interval_s=0.001).start()
    for i in range(20):
        store.insert_spans([make_span(start_ns=now - 10**9 + i * 100 + j, end_ns=now) for j in range(50)])
    store.close()  # waits for the pass in progress, then the loop sees the store closed
    thread = m._thread
    m.stop(timeout=10)
    assert thread is not None and not thread.is_alive()
    with tael.Store(data_dir) as again:
        assert len(again.query_traces(limit=5000)) == 1000
        assert cold_files(data_dir) == live_files(again)


@pytest.mark.parametrize("compact_late", [False, True])
def test_late_points_interleaving_with_compacted_ones_keep_increase_exact(
    store: tael.Store, compact_late: bool
) -> None:
    def counter(minute_i: int, v: float) -> tael.MetricPoint:
        return make_point(time_ns=T0 + minute_i * minute, name="c", kind="sum", monotonic=True, value=v)

    store.insert_metrics([counter(0, 10.0), counter(2, 20.0), counter(4, 30.0)])
    store.compact(T0 + HOUR)
    store.insert_metrics([counter(1, 5.0)])  # late, between compacted points, after a reset
    if compact_late:
        store.compact(T0 + HOUR)
    # one pass in time order: 10, 5 (reset: +5), 20 (+15), 30 (+10)
    for step in ("5m", "1h", "1d"):
        (bucket,) = store.aggregate_metrics("c", start=T0, end=T0 + DAY, step=step)
        assert (bucket.count, bucket.first, bucket.last, bucket.increase) == (4, 10.0, 30.0, 30.0), step


def test_cold_location_names_where_the_cold_files_are(data_dir: Path, tmp_path: Path) -> None:
    with tael.Store(data_dir) as store:
        assert store.cold_location == str(data_dir / "cold")
    elsewhere = tmp_path / "elsewhere"
    with tael.Store(tmp_path / "other", tael.Settings(cold_uri=str(elsewhere))) as store:
        assert store.cold_location == str(elsewhere)
