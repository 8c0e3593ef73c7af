"""Cold format version 2 (issue 16): what the files hold and who can read them, the
column-wise compaction that writes them, and version-1 files next to them.

Real stores, real Parquet read back with pyarrow and DuckDB; version-1 files are
written by tests/coldv1.py exactly as tael wrote them before (and
tests/test_migration.py opens a directory that tael itself wrote then).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tael
from tael import _block, _codec, _rollup
from tael._coldformat import (
    LIGHT_COLUMNS,
    SCHEMAS,
    file_order,
    first_of_each_span,
    hex_ids,
    metrics_table,
    unhex_ids,
)
from tael._coldwrite import trace_refs
from tael._errors import CorruptionError

from . import coldv1
from .conftest import make_log, make_point, make_span

S = 10**9
HOUR = 3600 * S
DAY = 24 * HOUR
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
ROOT = Path(__file__).resolve().parent.parent

ODD = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "neg_zero": -0.0,
    "u64": 2**64 - 1,
    "i64": -(2**63),
    "big": 9007199254740993,  # beyond a double's exact range
    "f": 0.1,
    "whole": 5.0,
    "b": True,
    "none": None,
    "empty": "",
    "num_str": "1",
    "nested": {"a": [1, "2", [3.5, None, {"deep": float("nan")}]], "é": {"k": -0.0}},
    "list": [float("inf"), 2**63, "x"],
    "unicode": 'naïve 日本語 🚀 \u2028 \x00 "quoted" \\',
    "ключ 🔑": "значение",
}


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and -0.0 told from 0.0 (repr does both)."""
    return repr(a) == repr(b)


def cold_paths(data: Path, dataset: str) -> list[Path]:
    return sorted((data / "cold" / dataset).rglob("*.parquet"))


# ---------------------------------------------------------------- what the files hold


@pytest.fixture
def compacted(tmp_path: Path) -> Path:
    """A store whose every dataset has cold files, with every attribute type."""
    data = tmp_path / "data"
    with tael.Store(data) as store:
        span = make_span(
            trace_id="a" * 32,
            span_id="b" * 16,
            start_ns=T0 + 5,
            end_ns=T0 + 9,
            attributes=ODD,
            resource={"service.name": "svc", **ODD},
            events=[tael.SpanEvent(time_ns=T0 + 6, name="ev", attributes=ODD)],
            links=[tael.SpanLink(trace_id="c" * 32, span_id="d" * 16, attributes=ODD)],
        )
        store.insert_spans([span])
        store.insert_logs([make_log(time_ns=T0 + 7, attributes=ODD, resource=ODD, trace_id=span.trace_id)])
        store.insert_metrics(
            [
                make_point(time_ns=T0 + i * 60 * S, value=float(i), attributes={"k": "v", "n": 2**64 - 1})
                for i in range(9)
            ]
        )
        store.compact(T0 + DAY)
        assert store.stats().hot_records == {"spans": 0, "logs": 0, "metrics": 0}
    return data


def test_the_parquet_schema_has_no_nanosecond_timestamps_and_no_unsigned_ints(compacted: Path) -> None:
    """Spark 4 refuses INT64 TIMESTAMP(NANOS,true); Spark and Trino refuse or mangle unsigned
    ints. Every column's Parquet logical type is checked, and the Arrow schema is the
    documented one."""
    for dataset in ("spans", "logs", "metrics", "metrics_5m", "metrics_1h"):
        (path,) = cold_paths(compacted, dataset)
        pf = pq.ParquetFile(path)
        assert pf.schema_arrow == SCHEMAS[2][dataset]
        timestamps = []
        for i in range(len(pf.schema)):
            column = pf.schema.column(i)
            logical = json.loads(column.logical_type.to_json())
            assert column.physical_type != "INT96", (dataset, column.name)
            if logical.get("Type") == "Int":
                assert logical["isSigned"], (dataset, column.name, logical)
            if logical.get("Type") == "Timestamp":
                timestamps.append(column.name)
                assert logical["timeUnit"] == "microseconds" and logical["isAdjustedToUTC"], (dataset, logical)
            assert column.converted_type not in ("UINT_8", "UINT_16", "UINT_32", "UINT_64"), (dataset, column.name)
        assert timestamps == [
            {"spans": "start_time", "logs": "time"}.get(dataset, "time" if dataset == "metrics" else "window_start")
        ]


def test_every_attribute_type_survives_compaction_and_reads_back(compacted: Path) -> None:
    with tael.Store(compacted, read_only=True) as store:
        (span,) = store.get_trace("a" * 32)
        for got in (span.attributes, span.events[0].attributes, span.links[0].attributes):
            assert same(got, ODD)
        assert same(span.resource, {"service.name": "svc", **ODD})
        (record,) = store.query_logs()
        assert same(record.attributes, ODD) and same(record.resource, ODD)
        assert store.query_logs(attributes={"u64": 2**64 - 1, "unicode": ODD["unicode"]}) == [record]
        assert store.query_traces(attributes={"i64": -(2**63), "ключ 🔑": "значение"}) == [span]
        assert store.query_traces(attributes={"u64": float(2**64 - 1)}) == []  # same value, other type
        points = store.query_metrics()
        assert len(points) == 9 and all(p.attributes == {"k": "v", "n": 2**64 - 1} for p in points)


def test_duckdb_and_pyarrow_read_attributes_with_json_functions(compacted: Path) -> None:
    cold = compacted / "cold"
    spans = f"read_parquet('{cold}/spans/*/*.parquet', hive_partitioning = true)"
    row = duckdb.sql(
        "SELECT json_extract_string(attributes, '$.unicode'), attributes->>'$.u64', attributes->>'$.i64', "
        "attributes->>'$.nan', attributes->>'$.\"-inf\"', json_extract_string(attributes, '$.nested.a[2][2].deep'), "
        "json_extract_string(attributes, '$.\"ключ 🔑\"'), (attributes->>'$.big')::HUGEINT, "
        "json_extract_string(events, '$[0].name'), json_extract_string(events, '$[0].attributes.b'), "
        "json_extract_string(links, '$[0].span_id'), json_extract_string(resource, '$.\"service.name\"'), "
        f"start_time, date FROM {spans}"
    ).fetchall()
    assert len(row) == 1
    assert row[0][:12] == (
        ODD["unicode"],
        "18446744073709551615",
        "-9223372036854775808",
        "NaN",
        "-Infinity",
        "NaN",
        "значение",
        9007199254740993,
        "ev",
        "true",
        "d" * 16,
        "svc",
    )
    assert str(row[0][13]) == "2026-01-01"
    logs = duckdb.sql(
        f"SELECT attributes->>'$.empty', (attributes->>'$.f')::DOUBLE FROM read_parquet('{cold}/logs/*/*.parquet')"
    ).fetchall()
    assert logs == [("", 0.1)]
    rollup = duckdb.sql(
        f"SELECT attributes->>'$.n', sum(count) FROM read_parquet('{cold}/metrics_5m/*/*.parquet') GROUP BY 1"
    ).fetchall()
    assert rollup == [("18446744073709551615", 9)]
    table = ds.dataset(cold / "spans", partitioning="hive").to_table()
    assert same(_block.loads(table.column("attributes")[0].as_py()), ODD)
    assert table.column("start_time")[0].value == (T0 + 5) // 1000  # microseconds; start_ns holds the exact time


# ---------------------------------------------------------------- version 1 and 2 together


def _answers(store: tael.Store) -> list[Any]:
    traces = sorted({s.trace_id for s in store.query_traces(limit=10_000)})
    return [
        [store.get_trace(t) for t in traces],
        store.query_traces(limit=10_000),
        store.query_traces(service="llm", attributes={"n": 3}, limit=100),
        store.query_traces(status="error", min_duration_ms=1, limit=5, order="asc"),
        store.query_logs(limit=10_000),
        store.query_logs(trace_id=traces[2], limit=100),
        store.query_logs(text="sea", limit=100),
        store.query_traces(text="sea", limit=100),
        store.query_metrics(limit=100_000),
        store.query_metrics(name="cpu", attributes={"host": "a"}, limit=100),
        store.aggregate_metrics("cpu", start=T0, end=T0 + 3 * DAY, step="1h"),
        store.aggregate_metrics("requests", start=T0, end=T0 + 3 * DAY, step="5m"),
        store.list_services(),
        store.stats().signals,
    ]


SQL = [
    "SELECT service, count(*) AS n, sum(duration_ns) AS d FROM spans GROUP BY 1 ORDER BY 1",
    "SELECT span_id, attributes->>'$.\"http.status_code\"' AS code, start_time FROM spans WHERE status = 'error' "
    "ORDER BY 1",
    "SELECT count(*) AS n, max(payload_refs) AS r FROM spans WHERE payload_refs IS NOT NULL",
    "SELECT service, count(*) AS n, max(body) AS b, count(body_blob) AS blobs FROM logs GROUP BY 1 ORDER BY 1",
    "SELECT name, count(*) AS n, sum(value) AS v, max(attributes) AS a FROM metrics GROUP BY 1 ORDER BY 1",
    "SELECT name, window_start, sum(count) AS c, sum(sum) AS s, max(attributes) AS a FROM metrics_1h "
    "GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT date, count(*) AS n FROM logs GROUP BY 1 ORDER BY 1 NULLS FIRST",
]


def _filled(data: Path) -> tael.Store:
    from .test_tier_contract import LATER, SETTINGS, fill

    store = tael.Store(data, tael.Settings(**SETTINGS, cold_merge_min_files=1000))
    fill(store)
    for cut in (T0 + 12 * HOUR, T0 + 36 * HOUR, T0 + 60 * HOUR, LATER):  # several files per partition
        store.compact(cut)
    return store


def test_a_store_of_version_1_and_2_files_answers_as_before_and_a_writer_migrates_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _filled(data) as store:
        want, sql = _answers(store), [store.sql(q) for q in SQL]
        coldv1.downgrade(store, lambda f: f.file_id % 2 == 0)  # every other file, of every dataset
        mixed = coldv1.versions(store)
        assert mixed[1] >= 5 and mixed[2] >= 5, mixed
        assert _answers(store) == want
        assert [store.sql(q) for q in SQL] == sql
    with tael.Store(data, read_only=True) as reader:  # a reader reads version 1 as it is
        assert coldv1.versions(reader) == mixed
        assert _answers(reader) == want
        assert [reader.sql(q) for q in SQL] == sql
    with tael.Store(data) as store:  # a writer rewrites the version-1 files
        assert coldv1.versions(store) == {2: mixed[1] + mixed[2]}
        assert _answers(store) == want
        assert [store.sql(q) for q in SQL] == sql
        live = {f.relpath for f in coldv1.manifest(store)}
    assert {p.relative_to(data / "cold").as_posix() for p in (data / "cold").rglob("*") if p.is_file()} == live


def test_merges_and_retention_take_version_1_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _filled(data) as store:
        want = _answers(store)
        coldv1.downgrade(store, lambda f: f.file_id % 3 != 0)
        before: dict[tuple[str, str], list[int]] = {}
        for f in coldv1.manifest(store):
            before.setdefault((f.dataset, f.date), []).append(f.version)
        assert sum(len(v) for v in before.values() if len(v) > 1 and 1 in v) >= 6
        merged = store._compactor.merge_small_files(min_files=2)  # version-1 and -2 files merged into version 2
        assert merged == sum(len(v) for v in before.values() if len(v) > 1)
        after = {(f.dataset, f.date): f.version for f in coldv1.manifest(store)}
        assert after == {part: 2 if len(v) > 1 else v[0] for part, v in before.items()}
        assert _answers(store) == want
        report = store.enforce_retention(T0 + 400 * DAY)
        assert report.cold_files_dropped > 0 and store.query_traces() == [] and store.list_services() == []


def test_migration_stops_between_files_and_a_crash_midway_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _filled(data) as store:
        want = _answers(store)
        coldv1.downgrade(store)
        total = coldv1.versions(store)[1]
        stop = threading.Event()
        publish = store._cold.publish

        def publish_then_stop(*args: Any) -> None:
            publish(*args)
            stop.set()  # the file being published commits; the next one is not started

        store._cold.publish = publish_then_stop  # type: ignore[method-assign]
        assert store._compactor.migrate_files(stop=stop) == 1
        store._cold.publish = publish  # type: ignore[method-assign]
        assert coldv1.versions(store) == {1: total - 1, 2: 1}
        assert _answers(store) == want
    # a writer killed (SIGKILL) right after publishing its second new file, before the commit
    crash = (
        "import os, sys\nimport tael\nfrom tael._cold import ColdTier\nreal = ColdTier.publish\ncount = [0]\n"
        "def publish(self, f, staged):\n    real(self, f, staged)\n    count[0] += 1\n"
        "    if count[0] == 2:\n        os.kill(os.getpid(), 9)\n"
        "ColdTier.publish = publish\ntael.Store(sys.argv[1], tael.Settings(cold_row_group_rows=16))\n"
    )
    done = subprocess.run([sys.executable, "-c", crash, str(data)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    with tael.Store(data, read_only=True) as reader:
        assert coldv1.versions(reader) == {1: total - 2, 2: 2}  # one more migrated, one orphan published
        assert _answers(reader) == want
    with tael.Store(data) as store:
        assert coldv1.versions(store) == {2: total}
        assert _answers(store) == want
        live = {f.relpath for f in coldv1.manifest(store)}
    assert {p.relative_to(data / "cold").as_posix() for p in (data / "cold").rglob("*") if p.is_file()} == live


# ---------------------------------------------------------------- compaction, column-wise


def test_a_merge_keeps_the_first_copy_of_a_span_and_writes_each_row_group_in_file_order(tmp_path: Path) -> None:
    settings = tael.Settings(cold_row_group_rows=8, cold_merge_min_files=100)
    with tael.Store(tmp_path / "data", settings) as store:
        spans = [
            make_span(
                trace_id=f"{t + 1:032x}",
                span_id=f"{t * 10 + k + 1:016x}",
                name="first",
                start_ns=T0 + t * S + k,
                end_ns=T0 + t * S + 100,
            )
            for t in range(6)
            for k in range(3)
        ]
        store.insert_spans(spans)
        store.compact(T0 + HOUR)
        again = [dataclasses.replace(s, name="again", start_ns=s.start_ns + 5) for s in spans[::4]]
        store.insert_spans([*again, make_span(trace_id=f"{1:032x}", span_id="f" * 16, start_ns=T0 + 7, end_ns=T0 + 8)])
        store.compact(T0 + HOUR)
        assert store._compactor.merge_small_files(min_files=2) == 2
        (f,) = coldv1.manifest(store)
        assert f.rows == len(spans) + 1 and f.row_groups == 3
        table = pq.read_table(store._cold.path(f))
        keys = list(zip(table.column("trace_id").to_pylist(), table.column("span_id").to_pylist(), strict=True))
        assert len(set(keys)) == len(keys) == f.rows
        assert set(table.column("name").to_pylist()) == {"first", "op"}
        pf = pq.ParquetFile(store._cold.path(f))
        for rg in range(pf.num_row_groups):
            group = pf.read_row_group(rg)
            assert file_order("spans", group).to_pylist() == list(range(group.num_rows))
        for t in {s.trace_id for s in spans}:
            assert [s.name for s in store.get_trace(t)] == ["first"] * 3 + (["op"] if t == f"{1:032x}" else [])


def test_a_scan_decodes_the_other_columns_only_of_row_groups_with_matching_rows(tmp_path: Path) -> None:
    with tael.Store(tmp_path / "data", tael.Settings(cold_row_group_rows=10)) as store:
        store.insert_spans([make_span(start_ns=T0 + i, end_ns=T0 + i + (10**9 if i == 25 else 1)) for i in range(40)])
        store.compact(T0 + HOUR)
        (f,) = coldv1.manifest(store)
        reads: list[tuple[list[int], list[str] | None]] = []
        real = store._cold.read_row_groups

        def spy(file: Any, groups: Any, columns: Any = None) -> Any:
            reads.append((list(groups), None if columns is None else list(columns)))
            return real(file, groups, columns)

        store._cold.read_row_groups = spy  # type: ignore[method-assign]
        assert store.query_traces(min_duration_ms=2000) == []
        assert all(columns == list(LIGHT_COLUMNS["spans"]) for _g, columns in reads)
        reads.clear()
        (slow,) = store.query_traces(min_duration_ms=500)
        assert slow.start_ns == T0 + 25
        heavy = [(groups, columns) for groups, columns in reads if columns != list(LIGHT_COLUMNS["spans"])]
        assert heavy == [([2], [c for c in SCHEMAS[2]["spans"].names if c not in LIGHT_COLUMNS["spans"]])]
        assert f.row_groups == 4


def test_hex_ids_round_trip_and_bad_hex_is_corruption() -> None:
    ids = [os.urandom(16) for _ in range(50)] + [None]
    arr = pa.array(ids, pa.binary(16))
    hexed = hex_ids(arr)
    assert hexed.to_pylist() == [None if b is None else b.hex() for b in ids]
    assert unhex_ids(hexed, 16, "trace_id").equals(arr)
    assert unhex_ids(hexed.slice(3, 40), 16, "trace_id").equals(arr.slice(3, 40))
    assert hex_ids(arr.slice(7, 9)).to_pylist() == [b.hex() for b in ids[7:16]]
    assert unhex_ids(pa.array(["ABCDEF0123456789"]), 8, "span_id").to_pylist() == [bytes.fromhex("abcdef0123456789")]
    assert unhex_ids(pa.chunked_array([["00" * 8], ["ff" * 8]]), 8, "x").to_pylist() == [bytes(8), b"\xff" * 8]
    for bad in (["zz" * 8], ["0" * 15], ["0" * 17]):
        with pytest.raises(CorruptionError, match="span_id"):
            unhex_ids(pa.array(bad), 8, "span_id")


def test_first_of_each_span_keeps_the_first_copy_in_row_order() -> None:
    trace = [b"a" * 16, b"a" * 16, b"b" * 16, b"a" * 16, b"b" * 16]
    span = [b"1" * 8, b"2" * 8, b"1" * 8, b"1" * 8, b"1" * 8]
    table = pa.table(
        {"trace_id": pa.array(trace, pa.binary(16)), "span_id": pa.array(span, pa.binary(8)), "n": list(range(5))}
    )
    assert first_of_each_span(table).column("n").to_pylist() == [0, 1, 2]
    assert first_of_each_span(table.slice(1)).column("n").to_pylist() == [1, 2, 3]


def test_trace_refs_name_each_traces_services_and_span_ids_per_row_group() -> None:
    rows = [("b", "x", "01"), ("a", "y", "02"), ("b", "y", "03"), ("a", "x", "04"), ("b", "x", "05"), ("c", "z", "06")]
    table = pa.table(
        {
            "trace_id": [t * 32 for t, _s, _p in rows],
            "service": [s for _t, s, _p in rows],
            "span_id": [p * 8 for _t, _s, p in rows],
        }
    )
    refs = trace_refs(table, 1, 7, 3, 4, spans=True)  # rows 0-3 in row group 3, rows 4-5 in 4
    assert sorted(refs) == sorted(
        [
            (bytes.fromhex("a" * 32), 1, 7, 3, ("x", "y"), bytes.fromhex("02" * 8 + "04" * 8)),
            (bytes.fromhex("b" * 32), 1, 7, 3, ("x", "y"), bytes.fromhex("01" * 8 + "03" * 8)),
            (bytes.fromhex("b" * 32), 1, 7, 4, ("x",), bytes.fromhex("05" * 8)),
            (bytes.fromhex("c" * 32), 1, 7, 4, ("z",), bytes.fromhex("06" * 8)),
        ]
    )
    keys = trace_refs(table, 1, 7, 3, 4, spans=True, full=False)
    assert sorted(keys) == sorted((t, 1, 7, g, (), b"") for t, _s, _g, g2, *_ in refs for g in [g2])


# ---------------------------------------------------------------- rollups against the per-point definitions


point_st = st.builds(
    lambda minute, jitter, series, v, kind, mono, temp, count, total: make_point(
        time_ns=T0 + minute * 60 * S + jitter,
        name="m",
        service=series[0],
        value=v,
        kind=kind,
        monotonic=mono and kind == "sum",
        temporality=temp,
        attributes={"s": series},
        count=count if kind == "histogram" else None,
        sum=total if kind == "histogram" else None,
    ),
    st.integers(0, 3 * 60),
    st.sampled_from([0, 0, 1, 7]),
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.sampled_from([0.0, -0.0, 1.0, 5.5]), st.floats(-1e9, 1e9, allow_nan=False)),
    st.sampled_from(["gauge", "sum", "histogram"]),
    st.booleans(),
    st.sampled_from(["cumulative", "delta"]),
    st.one_of(st.none(), st.integers(0, 1000)),
    st.one_of(st.none(), st.floats(0, 1e6)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points=st.lists(point_st, min_size=1, max_size=120), shuffle=st.randoms())
def test_rollups_built_column_wise_equal_the_per_point_definitions_bit_for_bit(points: list[Any], shuffle: Any) -> None:
    """``rollup_tables`` against ``partials_from_points`` and ``rewindow`` (the definitions,
    which compaction used before): every field, every float, bit for bit (repr), for points
    in any row order, counters with resets, ties, -0.0 and series whose kind flags change."""
    rows = _codec.encode_metrics(points)
    records = [_codec.unpackb(r[-1]) for r in rows]
    keyed = sorted(  # hot key order: time, WAL lsn, index in batch
        ((f[0], 100 + i // 7, i % 7, r[2], f) for i, (r, f) in enumerate(zip(rows, records, strict=True))),
        key=lambda x: x[:3],
    )
    five = _rollup.partials_from_points(((sid.hex(), f) for _t, _l, _i, sid, f in keyed), 300 * S)
    hour = _rollup.rewindow(five, 3600 * S)
    batch = _block.metrics_batch([k[4] for k in keyed], [k[3] for k in keyed])
    table = metrics_table(batch, pa.array([k[1] for k in keyed], pa.int64()), pa.array([k[2] for k in keyed]))
    order = list(range(table.num_rows))
    shuffle.shuffle(order)
    got5, got1 = _rollup.rollup_tables(table.take(pa.array(order)))
    for want, got in ((five, got5), (hour, got1)):
        key = lambda p: (p["series_id"], p["window_start_ns"])  # noqa: E731
        expected = sorted(want, key=key)
        actual = sorted(got.to_pylist(), key=key)
        assert len(actual) == len(expected)
        for w, g in zip(expected, actual, strict=True):
            for column in _rollup.PARTIAL_COLUMNS:
                assert repr(g[column]) == repr(w[column]), (column, g, w)
            assert _block.loads(g["attributes"]) == w["attrs"]
            assert g["window_start"].timestamp() * 1e6 == pytest.approx(w["window_start_ns"] / 1000)


def test_rollups_of_no_points_are_empty_tables() -> None:
    empty = metrics_table(_block.metrics_batch([], []), pa.array([], pa.int64()), pa.array([], pa.int32()))
    five, hour = _rollup.rollup_tables(empty)
    assert five.num_rows == hour.num_rows == 0 and five.schema == SCHEMAS[2]["metrics_5m"]


def test_compaction_splits_a_chunk_by_day_and_counts_services_per_file(tmp_path: Path) -> None:
    spans = [
        make_span(trace_id=f"{t:032x}", service=svc, start_ns=T0 + d * DAY + t, end_ns=T0 + d * DAY + t + 7, status=st_)
        for d in range(3)
        for t, svc, st_ in ((1, "a", "ok"), (1, "b", "error"), (2, "a", "ok"), (3, "a", "error"))
    ]
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans(spans)
        report = store.compact(T0 + 3 * DAY)
        assert report.records["spans"] == 12 and len(report.files_written) == 3
        for f in coldv1.manifest(store):
            assert f.rows == 4 and f.services == {"a": [3, 1, 21, 3], "b": [1, 1, 7, 1]}
            assert (f.min_ns - T0) % DAY == 1 and f.max_ns - f.min_ns == 2


def test_unhexed_columns_are_what_block_records_read() -> None:
    ids = unhex_ids(pa.chunked_array([["0a" * 16, None]]), 16, "trace_id")
    assert ids.type == pa.binary(16) and ids.null_count == 1
    assert np.frombuffer(ids.buffers()[1], np.uint8, count=16).tolist() == [10] * 16
    assert pc.equal(hex_ids(ids), pa.array(["0a" * 16, None])).to_pylist() == [True, None]
    assert math.isnan(_block.loads("NaN"))


def test_the_compaction_benchmark_quick_mode(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/compaction.py", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "---" not in line}
    assert {"compact()", "from batches"} <= set(rows)
    assert any(name.startswith("merge") for name in rows)
    (rss,) = [line for line in lines if line.startswith("| 3,000 | 3,000 |")]  # spans moved, then the memory
    assert int(rss.split("|")[3]) > 0  # the files merged at the end of compact()
