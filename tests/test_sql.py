"""Store.sql: DuckDB over views that union the hot and cold tiers, checked against the
Store API and plain-Python computations (a start on issue 8's SQL part)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tael

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
        # a payload kept in the blob store reads as its reference, as in the cold files
        ref = store.sql("SELECT attributes['gen_ai.prompt'] AS p FROM spans WHERE span_id = '0000000000000004'")
        assert ref.column("p").to_pylist()[0].startswith("sha256:")
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
