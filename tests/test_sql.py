"""Store.sql: DuckDB over views that union the hot and cold tiers, checked against the
Store API and plain-Python computations (a start on issue 8's SQL part)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import tael

from .conftest import make_span

S = 10**9
T0 = 1_767_225_600 * S


def test_sql_views_union_hot_and_cold(tmp_path: Path) -> None:
    spans = [
        tael.Span(
            trace_id=f"{i // 3 + 1:032x}",
            span_id=f"{i + 1:016x}",
            name=f"op{i % 4}",
            service=["a", "b"][i % 2],
            start_ns=T0 + i * S,
            end_ns=T0 + i * S + (i % 7) * 10**7,
            status="error" if i % 5 == 0 else "ok",
            attributes={"gen_ai.prompt": "long prompt " * 200 if i == 3 else "short"},
        )
        for i in range(30)
    ]
    points = [tael.MetricPoint(time_ns=T0 + i * 60 * S, name="m", service="a", value=float(i)) for i in range(30)]
    logs = [tael.LogRecord(time_ns=T0 + i * S, body=f"line {i}", service="a", severity_number=9) for i in range(10)]
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans(spans)
        store.insert_metrics(points)
        store.insert_logs(logs)
        store.compact(T0 + 15 * S)
        stats = store.stats()
        assert stats.hot_records["spans"] and stats.cold_records["spans"]
        t = store.sql("SELECT service, count(*) AS n, sum(duration_ns) AS d FROM spans GROUP BY 1 ORDER BY 1")
        assert t.to_pylist() == [
            {"service": svc, "n": 15, "d": sum(s.end_ns - s.start_ns for s in spans if s.service == svc)}
            for svc in ("a", "b")
        ]
        errors = store.sql("SELECT span_id FROM spans WHERE status = 'error' ORDER BY start_ns")
        assert errors.column("span_id").to_pylist() == [s.span_id for s in spans if s.status == "error"]
        # a payload kept in the blob store is left out of the attribute text ("") and named by
        # payload_refs, [[event or -1, key, sha256 hex]], as in the cold files (format 2)
        ref = store.sql(
            "SELECT json_extract_string(attributes, '$.\"gen_ai.prompt\"') AS p, payload_refs AS r "
            "FROM spans WHERE span_id = '0000000000000004'"
        ).to_pylist()
        digest = hashlib.sha256(("long prompt " * 200).encode()).hexdigest()
        assert ref == [{"p": "", "r": f'[[-1,"gen_ai.prompt","{digest}"]]'}]
        assert store.sql("SELECT count(*) AS n FROM logs").to_pylist() == [{"n": 10}]
        assert store.sql("SELECT count(*) AS n, sum(value) AS v FROM metrics").to_pylist() == [{"n": 30, "v": 435.0}]
        for view, window in (("metrics_5m", 300), ("metrics_1h", 3600)):
            rows = store.sql(
                f"SELECT window_start_ns, sum(count) AS c, sum(sum) AS s FROM {view} GROUP BY 1 ORDER BY 1"
            )
            want: dict[int, list[float]] = {}
            for p in points:
                w = want.setdefault(p.time_ns - p.time_ns % (window * S), [0, 0.0])
                w[0] += 1
                w[1] += p.value
            assert [(r["window_start_ns"], int(r["c"]), r["s"]) for r in rows.to_pylist()] == [
                (k, c, v) for k, (c, v) in sorted(want.items())
            ]
        with pytest.raises(tael.ValidationError, match="SQL error"):
            store.sql("SELECT nope FROM spans")
        with pytest.raises(ValueError, match="non-empty"):
            store.sql("  ")


def test_tael_sql_command(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from tael._cli import main

    data = tmp_path / "data"
    with tael.Store(data) as store:
        store.insert_logs([tael.LogRecord(time_ns=T0 + i, body=f"b{i}", service="s") for i in range(5)])
        store.compact(T0 + 2)
    result = CliRunner().invoke(
        main, ["sql", "--data", str(data), "-o", "json", "SELECT body FROM logs ORDER BY time_ns"]
    )
    assert result.exit_code == 0, result.output
    assert [r["body"] for r in json.loads(result.output)] == [f"b{i}" for i in range(5)]
    bad = CliRunner().invoke(main, ["sql", "--data", str(data), "SELECT * FROM nowhere"])
    assert bad.exit_code == 1 and "SQL error" in bad.output
    assert CliRunner().invoke(main, ["sql", "--help"]).exit_code == 0


def tael_sql(data: Path, query: str, *extra: str) -> str:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tael", "sql", "--data", str(data), *extra, query],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tael_sql_prints_nanosecond_timestamps_maps_and_lists_in_table_and_json(tmp_path: Path) -> None:
    """Issue 14, item 10: `tael sql` failed on every timestamp column ("Install pandas").
    Updated for cold format 2 (issue 16): the views' timestamps are microseconds (exact
    nanoseconds stay in ``start_ns``; ``make_timestamp_ns`` makes a nanosecond one), and
    attributes and events are JSON text; maps and lists still print, built in the query."""
    import json

    data = tmp_path / "data"
    start = T0 + 123_456_789  # 2026-01-01T00:00:00.123456789Z
    spans = [
        tael.Span(
            trace_id=f"{i + 1:032x}",
            span_id=f"{i + 1:016x}",
            name=f"op{i}",
            service="checkout",
            start_ns=start + i * 86_400 * S,  # the first day compacted to cold, the second hot
            end_ns=start + i * 86_400 * S + 5,
            attributes={"http.method": "GET", "n": i},
            events=[tael.SpanEvent(time_ns=start + 1, name="retry", attributes={"try": 2})],
        )
        for i in range(2)
    ]
    with tael.Store(data) as store:
        store.insert_spans(spans)
        store.insert_metrics([tael.MetricPoint(time_ns=T0 + 301 * S, name="m", service="checkout", value=2.5)])
        store.compact(T0 + 86_400 * S)
    query = (
        "SELECT name, start_time, make_timestamp_ns(start_ns) AS exact, attributes, events, "
        "map(['n'], [attributes->>'n']) AS m, [start_ns - 1, start_ns] AS l FROM spans ORDER BY start_ns"
    )

    rows = json.loads(tael_sql(data, query, "--output", "json"))
    assert rows == [
        {
            "name": f"op{i}",
            "start_time": f"2026-01-0{i + 1}T00:00:00.123456000Z",
            "exact": f"2026-01-0{i + 1}T00:00:00.123456789",
            "attributes": f'{{"http.method":"GET","n":{i}}}',
            "events": f'[{{"time_ns":{start + 1},"name":"retry","attributes":{{"try":2}}}}]',
            "m": {"n": str(i)},
            "l": [s.start_ns - 1, s.start_ns],
        }
        for i, s in enumerate(spans)
    ]
    rollup = json.loads(
        tael_sql(data, "SELECT window_start, date '2026-01-02' AS d FROM metrics_5m", "--output", "json")
    )
    assert rollup == [{"window_start": "2026-01-01T00:05:00.000000000Z", "d": "2026-01-02"}]

    table = tael_sql(data, "SELECT name, start_time, exact FROM (" + query + ")").splitlines()
    assert table[0].strip() == "2 rows"
    assert table[1].split() == ["name", "start_time", "exact"]
    assert table[3].split() == ["op0", "2026-01-01T00:00:00.123456000Z", "2026-01-01T00:00:00.123456789"]
    assert table[4].split() == ["op1", "2026-01-02T00:00:00.123456000Z", "2026-01-02T00:00:00.123456789"]
    table = tael_sql(data, "SELECT attributes, m, l FROM (" + query + ")").splitlines()
    assert table[1].split() == ["attributes", "m", "l"]
    assert '{"http.method":"GET","n":0}' in table[3] and '{"n": "0"}' in table[3]
    assert f"[{start - 1}, {start}]" in table[3]
    table = tael_sql(data, "SELECT events FROM (" + query + ")").splitlines()
    assert f'[{{"time_ns":{start + 1},"name":"retry","attributes":{{"try":2}}}}]' in table[3]


def test_json_rows_converts_every_arrow_type_without_pandas() -> None:
    import pyarrow as pa

    from tael._query.sql import json_rows

    table = pa.table(
        {
            "ts": pa.array([T0 + 5, None, -1], type=pa.timestamp("ns", tz="UTC")),
            "naive_ms": pa.array([1, 2, 3], type=pa.timestamp("ms")),
            "day": pa.array([0, None, 20454], type=pa.date32()),
            "clock": pa.array([3600 * S + 5, None, 0], type=pa.time64("ns")),
            "dur": pa.array([1_500_000_000, -1, None], type=pa.duration("ns")),
            "iv": pa.array(
                [pa.MonthDayNano([1, 2, 3]), None, pa.MonthDayNano([0, 0, 0])], type=pa.month_day_nano_interval()
            ),
            "map": pa.array([[("a", "1")], None, []], type=pa.map_(pa.string(), pa.string())),
            "nested": pa.array(
                [[{"x": 1, "at": 5}], [], None],
                type=pa.list_(pa.struct([("x", pa.int64()), ("at", pa.timestamp("ns"))])),
            ),
            "fixed": pa.array([[1, 2], None, [3, 4]], type=pa.list_(pa.int64(), 2)),
            "f": pa.array([float("nan"), 1.5, float("-inf")]),
            "blob": pa.array([b"ab", None, b""]),
            "dec": pa.array([None, None, 1], type=pa.decimal128(5, 2)),
            "cat": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    rows = json_rows(table)
    assert rows[0] == {
        "ts": "2026-01-01T00:00:00.000000005Z",
        "naive_ms": "1970-01-01T00:00:00.001000000",
        "day": "1970-01-01",
        "clock": "01:00:00.000000005",
        "dur": "PT1.500000000S",
        "iv": "P1M2DT0.000000003S",
        "map": {"a": "1"},
        "nested": [{"x": 1, "at": "1970-01-01T00:00:00.000000005"}],
        "fixed": [1, 2],
        "f": "NaN",
        "blob": "6162",
        "dec": None,
        "cat": "x",
    }
    assert rows[2]["ts"] == "1969-12-31T23:59:59.999999999Z"  # before the epoch: floor, not truncation
    assert (rows[2]["day"], rows[2]["map"], rows[2]["nested"], rows[2]["f"]) == ("2026-01-01", {}, None, "-Infinity")
    assert (rows[1]["dur"], rows[1]["map"], rows[1]["nested"], rows[1]["fixed"]) == ("-PT0.000000001S", None, [], None)
    assert (rows[2]["iv"], rows[2]["blob"], rows[2]["dec"]) == ("PT0.000000000S", "", "1.00")
    assert json_rows(table.slice(1, 2)) == rows[1:]  # sliced arrays keep their children aligned
    assert json_rows(pa.table({})) == []


def test_sql_beside_compaction_and_merges_answers_every_query_exactly(tmp_path: Path) -> None:
    """Issue 14, item 6: queries failed with a raw ``duckdb.IOException`` or "No files found
    that match the pattern" while a writer compacted and merged, because the views were
    created from the snapshot's file list outside the retry. Every query must answer, and
    answer exactly: every record once, from one snapshot of hot and cold."""
    import threading

    settings = tael.Settings(compaction_batch_records=40, cold_merge_min_files=2, cold_row_group_rows=32)
    n = 1_200
    spans = [
        tael.Span(
            trace_id=f"{i + 1:032x}",
            span_id=f"{i + 1:016x}",
            name="op",
            service="svc",
            start_ns=T0 + i * S,
            end_ns=T0 + i * S + 1,
            attributes={"i": i},
        )
        for i in range(n)
    ]
    with tael.Store(tmp_path / "data", settings) as store:
        store.insert_spans(spans)
        done = threading.Event()
        maintenance_errors: list[BaseException] = []

        def maintain() -> None:
            try:
                for step in range(1, 31):  # 30 compactions of 40 spans, each a small file merged at once
                    store.compact(T0 + step * 40 * S)
                    store.merge_small_files()
            except BaseException as exc:  # reported by the main thread
                maintenance_errors.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=maintain)
        worker.start()
        answers: list[tuple[int, int, int]] = []
        failures: list[BaseException] = []
        query = f"SELECT count(*) AS n, count(DISTINCT span_id) AS ids, sum((start_ns - {T0}) // {S}) AS i FROM spans"
        while not done.is_set() or len(answers) + len(failures) < 20:
            try:
                (row,) = store.sql(query).to_pylist()
                answers.append((row["n"], row["ids"], row["i"]))
            except Exception as exc:  # counted: the assertion below names them
                failures.append(exc)
        worker.join()
        assert maintenance_errors == []
        assert store.stats().hot_records["spans"] == 0 and store.stats().cold_records["spans"] == n
        assert failures == [], f"{len(failures)} of {len(answers) + len(failures)} queries failed: {failures[:3]!r}"
        assert set(answers) == {(n, n, n * (n - 1) // 2)}
    # the files merged away while a query held them are deleted once it is done (by close at the latest)
    with tael.Store(tmp_path / "data", read_only=True) as reader, reader._hot.reader() as txn:
        live = {f.relpath for f in reader._hot.manifest(txn)}
    cold = tmp_path / "data" / "cold"
    assert {p.relative_to(cold).as_posix() for p in cold.rglob("*.parquet")} == live


def test_a_cold_file_gone_for_good_is_a_storage_error_after_the_retries_not_a_duckdb_error(tmp_path: Path) -> None:
    """A file the manifest names that is not there (another process's merge removed it, or an
    operator did) makes the query start again on fresh snapshots, then raise ``StorageError``;
    the old code raised ``duckdb.IOException`` from binding the views, outside any retry."""
    with tael.Store(tmp_path / "data") as store:
        store.insert_spans([make_span(start_ns=T0 + i, end_ns=T0 + i + 1) for i in range(10)])
        store.compact(T0 + 5)
        assert store.sql("SELECT count(*) AS n FROM spans").to_pylist() == [{"n": 10}]
        with pytest.raises(tael.ValidationError, match="SQL error"):  # a mistake in the SQL is not retried
            store.sql("SELECT nope FROM spans")
        (cold,) = (tmp_path / "data" / "cold" / "spans").rglob("*.parquet")
        cold.unlink()
        with pytest.raises(tael.StorageError, match="kept disappearing"):
            store.sql("SELECT count(*) FROM spans")
