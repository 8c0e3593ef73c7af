"""The CLI and the API agree with each other (issue 17, "Consistency"): every command
takes --data, severity names wherever a severity is taken, --output csv, tables that
keep their column names whole at any width, plurals, and empty results that say why."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

import tael
from tael._cli import SEVERITY, main
from tael._query.args import SEVERITY_NAMES, severity
from tael._words import plural
from tests.test_server_limits import serving

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
SEC = 10**9


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def _spans() -> list[tael.Span]:
    return [
        tael.Span(
            trace_id=tid(n),
            span_id=sid(n),
            name="POST /checkout" if n % 2 else "GET /cart",
            service=("checkout", "cart", "llm")[n % 3],
            start_ns=T0 + n * 60 * SEC,
            end_ns=T0 + n * 60 * SEC + n * 10**6,
            kind="server",
            status="error" if n % 5 == 0 else "ok",
            attributes={"http.status_code": 500 if n % 5 == 0 else 200, "note": f'a, "quoted"\nline {n}'},
        )
        for n in range(1, 13)
    ]


def _logs() -> list[tael.LogRecord]:
    return [
        tael.LogRecord(
            time_ns=T0 + n * 30 * SEC,
            body=f"record {n}",
            service="checkout",
            severity_number=sev,
            severity_text={1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}[sev],
            attributes={"n": n},
        )
        for n, sev in enumerate((1, 5, 9, 13, 17, 21, 9, 17), start=1)
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("consistency") / "data"
    with tael.Store(path) as store:
        store.insert_spans(_spans())
        store.insert_logs(_logs())
        store.insert_metrics(
            [
                tael.MetricPoint(time_ns=T0 + n * SEC, name="cpu", service="checkout", value=float(n), attributes={})
                for n in range(5)
            ]
        )
        store.flush()
    return path


def run(*args: str | Path, code: int = 0, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def api(path: Path, method: str, *args: Any, **kwargs: Any) -> Any:
    with tael.Store(path, read_only=True) as store:
        return getattr(store, method)(*args, **kwargs)


# ---------------------------------------------------------------- severity names


def test_one_severity_parser_takes_names_numbers_and_refuses_the_rest() -> None:
    assert SEVERITY_NAMES == {"trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17, "fatal": 21}
    for text, n in (("ERROR", 17), ("Warning", 13), (" warn ", 13), ("fatal", 21), ("trace", 1), ("0", 0)):
        assert severity(text, "x") == n
        assert SEVERITY.convert(text, None, None) == n  # the CLI's option type is the same parser
    assert [severity(n, "x") for n in (0, 1, 24)] == [0, 1, 24]
    assert severity("24", "x") == 24
    for bad in ("loud", "25", "-1", "", "1.5", 25, -1, True, 17.0, None, "9" * 50):
        with pytest.raises(ValueError, match=r"^min_severity must be a severity number 0\.\.24 or a name") as err:
            severity(bad, "min_severity")
        assert "trace, debug, info, warn, warning, error, fatal" in str(err.value)


def test_store_query_logs_and_log_filter_take_severity_names(data: Path) -> None:
    by_number = api(data, "query_logs", min_severity=17)
    assert [r.severity_number for r in by_number] == [17, 21, 17]
    assert api(data, "query_logs", min_severity="error") == by_number
    assert api(data, "query_logs", min_severity="WARNING") == api(data, "query_logs", min_severity=13)
    assert tael.LogFilter(min_severity="error") == tael.LogFilter(min_severity=17)
    assert tael.LogFilter(min_severity="Fatal").min_severity == 21  # kept as the number it stands for
    with pytest.raises(ValueError, match=r"min_severity must be .* got 'loud'"):
        api(data, "query_logs", min_severity="loud")


def test_the_http_api_takes_severity_names_with_errors_naming_them(data: Path) -> None:
    with tael.Store(data, read_only=True) as store, serving(store) as url:
        numbers = httpx.get(url + "/api/logs", params={"min_severity": "17"}).json()["data"]
        assert sorted(r["severity_number"] for r in numbers) == [17, 17, 21]
        for name in ("error", "ERROR", "Error"):
            r = httpx.get(url + "/api/logs", params={"min_severity": name})
            assert r.status_code == 200 and r.json()["data"] == numbers, name
        warn = httpx.get(url + "/api/logs", params={"min_severity": "warning"}).json()["data"]
        assert sorted(r["severity_number"] for r in warn) == [13, 17, 17, 21]
        bad = httpx.get(url + "/api/logs", params={"min_severity": "loud"})
        assert bad.status_code == 400
        msg = bad.json()["errors"][0]["msg"]
        assert msg.startswith("min_severity must be a severity number 0..24 or a name (trace, debug, info, warn")
        assert "'loud'" in msg


def test_the_cli_min_severity_error_names_the_option_and_the_names(data: Path) -> None:
    out = run("query", "logs", "--data", data, "--min-severity", "loud", code=2).output
    assert "--min-severity must be a severity number 0..24 or a name (trace, debug, info, warn" in out
    got = json.loads(run("query", "logs", "--data", data, "--min-severity", "Warning", "-o", "json").stdout)
    assert sorted(r["severity_number"] for r in got) == [13, 17, 17, 21]


# ---------------------------------------------------------------- --data everywhere


def _damaged_store(path: Path) -> Path:
    with tael.Store(path) as store:
        store.insert_logs([tael.LogRecord(time_ns=i, body="x", service="s") for i in range(3)])
    (segment,) = (path / "wal").glob("*.wal")
    with segment.open("r+b") as f:
        f.seek(16 + 20)
        f.write(b"\x00\x00")
    return segment


def test_repair_takes_data_and_keeps_its_argument(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    with tael.Store(clean) as store:
        store.insert_logs([tael.LogRecord(time_ns=1, body="x", service="s")])
    for args in (("--data", clean), ("-d", clean), (clean,), (clean, "--data", clean)):
        assert json.loads(run("repair", *args).stdout)["damaged"] == [], args
    segment = _damaged_store(tmp_path / "bad")
    bad = run("repair", "--data", tmp_path / "bad", code=1)
    assert segment.name in bad.stdout  # --data reached the damaged store and moved the damage aside
    both = run("repair", clean, "--data", tmp_path / "bad", code=2)
    assert "DATA" in both.output and "--data" in both.output and "different directories" in both.output


def test_promote_takes_data(tmp_path: Path) -> None:
    standby = tmp_path / "standby"
    with tael.Store(standby, standby=True):
        pass
    leader = tmp_path / "leader"
    with tael.Store(leader):
        pass
    assert "not a standby" in run("promote", "--data", leader, code=1).stderr
    assert "different directories" in run("promote", standby, "--data", leader, code=2).output
    assert "--data DIR or DATA" in run("promote", code=1).stderr
    got = json.loads(run("promote", "--data", standby, "-o", "json").stdout)
    assert got["role"] == "leader" and got["promoted"] == str(standby)
    with tael.Store(standby, read_only=True) as store:
        assert not store.standby


def test_every_command_that_opens_a_store_takes_data() -> None:
    for name, cmd in main.commands.items():
        if name == "bench":  # makes its own temporary store (--dir)
            continue
        commands = cmd.commands.values() if hasattr(cmd, "commands") else [cmd]
        for c in commands:
            assert any("--data" in p.opts for p in c.params), (name, c.name)


# ---------------------------------------------------------------- plurals


def test_plural() -> None:
    assert [plural(n, "span") for n in (0, 1, 2, 1500)] == ["0 spans", "1 span", "2 spans", "1,500 spans"]
    assert plural(1, "log record") == "1 log record" and plural(3, "log record") == "3 log records"
    assert (plural(2, "index"), plural(2, "match"), plural(2, "query"), plural(2, "day")) == (
        "2 indexes",
        "2 matches",
        "2 queries",
        "2 days",
    )
    assert plural(2, "standby", "standbys") == "2 standbys"


def test_the_cli_prints_one_span_not_one_spans(data: Path) -> None:
    out = run("query", "traces", "--data", data, "-n", "1").stdout
    assert out.startswith("1 span\n") and "1 spans" not in out
    out = run("trace", tid(3), "--data", data).stdout
    assert f"trace {tid(3)}: 1 span, 1 service," in out
    out = run("sql", "select 1 as x", "--data", data).stdout
    assert out.startswith("1 row\n")
    out = run("query", "logs", "--data", data, "--min-severity", "fatal").stdout
    assert out.startswith("1 log record\n")


# ---------------------------------------------------------------- --output csv

ROW_COMMANDS = {
    ("query", "traces"),
    ("query", "logs"),
    ("query", "metrics"),
    ("search",),
    ("sql",),
    ("stats",),
    ("trace",),
    ("bench",),
}


def test_commands_with_rows_offer_csv_and_others_refuse_it_by_name(data: Path) -> None:
    for name, cmd in main.commands.items():
        commands = {(name, sub): c for sub, c in cmd.commands.items()} if hasattr(cmd, "commands") else {(name,): cmd}
        for path, c in commands.items():
            output = next((p for p in c.params if p.name == "output"), None)
            if output is None:
                continue
            assert ("csv" in output.type.choices) == (path in ROW_COMMANDS), path  # type: ignore[attr-defined]
    refused = run("summary", "--data", data, "-o", "csv", code=2).output
    assert "'csv' is not one of 'table', 'json'" in refused


def _csv(*args: str | Path) -> list[dict[str, str]]:
    out = run(*args, "--output", "csv").stdout
    return list(csv.DictReader(io.StringIO(out)))


def test_query_csv_has_a_header_of_field_names_and_nested_values_as_json(data: Path) -> None:
    rows = _csv("query", "traces", "--data", data, "--service", "checkout")
    want = api(data, "query_traces", service="checkout", limit=20)
    assert len(rows) == len(want) == 4
    assert list(rows[0]) == [f.name for f in dataclasses.fields(tael.Span)]
    for row, span in zip(rows, want, strict=True):
        assert (row["trace_id"], row["name"], row["start_ns"]) == (span.trace_id, span.name, str(span.start_ns))
        assert json.loads(row["attributes"]) == span.attributes  # commas, quotes and newlines survive
        assert json.loads(row["events"]) == [] and row["parent_span_id"] == ""
    logs = _csv("query", "logs", "--data", data, "--min-severity", "error")
    assert [(r["body"], r["severity_number"]) for r in logs] == [
        (r.body, str(r.severity_number)) for r in api(data, "query_logs", min_severity=17, limit=20)
    ]
    assert [json.loads(r["attributes"]) for r in logs] == [{"n": 8}, {"n": 6}, {"n": 5}]
    points = _csv("query", "metrics", "--data", data, "--name", "cpu")
    assert [float(p["value"]) for p in points] == [0.0, 1.0, 2.0, 3.0, 4.0]
    buckets = _csv(
        "query",
        "metrics",
        "--data",
        data,
        "--name",
        "cpu",
        "--step",
        "1m",
        "--start",
        str(T0),
        "--end",
        str(T0 + 60 * SEC),
    )
    assert [(b["count"], b["max"]) for b in buckets] == [("5", "4.0")]
    empty = run("query", "traces", "--data", data, "--service", "nope", "-o", "csv").stdout
    assert empty.splitlines() == [",".join(f.name for f in dataclasses.fields(tael.Span))]  # the header alone


def test_sql_search_stats_and_trace_csv(data: Path) -> None:
    rows = _csv("sql", "select service, count(*) as n from spans group by service order by service", "--data", data)
    assert rows == [{"service": "cart", "n": "4"}, {"service": "checkout", "n": "4"}, {"service": "llm", "n": "4"}]
    stats = {r["signal"]: r for r in _csv("stats", "--data", data)}
    assert (stats["spans"]["count"], stats["logs"]["count"], stats["metrics"]["count"]) == ("12", "8", "5")
    assert stats["spans"]["oldest_ns"] == str(T0 + 60 * SEC) and stats["spans"]["hot"] == "12"
    trace = _csv("trace", tid(4), "--data", data)
    assert [(r["trace_id"], r["span_id"]) for r in trace] == [(tid(4), sid(4))]
    hits = _csv("search", "record", "--data", data, "--signal", "logs")
    assert sorted(r["body"] for r in hits) == sorted(f"record {n}" for n in range(1, 9))


# ---------------------------------------------------------------- tables fit the terminal

LONG_SQL = (
    "select trace_id as the_trace_identifier_of_the_span, service as the_service_that_emitted_it, "
    "name as the_operation_name, start_ns as start_time_in_nanoseconds from spans order by start_ns limit 3"
)


def _column(out: str, name: str, next_name: str) -> str:
    """The text of one column of a printed table, every row's lines joined: what lies
    between where its name and the next column's name start in the header line."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if name in line and next_name in line)
    lo, hi = lines[at].index(name), lines[at].index(next_name)
    return "".join(line[lo:hi].strip() for line in lines[at + 2 :])


def _headers_whole(out: str, headers: list[str], width: int) -> None:
    lines = out.splitlines()
    for line in lines:
        assert len(line.rstrip()) <= width, line
    for h in headers:
        assert any(h in line for line in lines), (h, out)


@pytest.mark.parametrize("width", [40, 60, 80, 100])
def test_wide_sql_results_keep_column_names_whole(data: Path, width: int) -> None:
    out = run("sql", LONG_SQL, "--data", data, env={"COLUMNS": str(width)}).stdout
    names = ["the_trace_identifier_of_the_span", "the_service_that_emitted_it", "the_operation_name"]
    _headers_whole(out, [*names, "start_time_in_nanoseconds"], width)
    flat = re.sub(r"\s+", "", out)  # one "name  value" line per column, long values folded below
    assert all(f"{tid(n)}" in flat for n in (1, 2, 3))  # folded, never cut


@pytest.mark.parametrize("width", [50, 66, 80, 120])
def test_query_tables_keep_column_names_whole_and_every_value(data: Path, width: int) -> None:
    out = run("query", "traces", "--data", data, "-n", "3", env={"COLUMNS": str(width)}).stdout
    _headers_whole(out, ["start", "trace id", "span id", "service", "name", "kind", "status", "ms"], width)
    spans = api(data, "query_traces", limit=3)
    if width >= 66:  # a table: its columns hold every id whole, folded within the column
        assert _column(out, "trace id", "span id") == "".join(s.trace_id for s in spans)
        assert _column(out, "span id", "service") == "".join(s.span_id for s in spans)
    else:  # the names do not fit side by side: a "name  value" line per column and row
        assert [line.split()[0] for line in out.splitlines()[1:9]] == [
            "start",
            "trace",
            "span",
            "service",
            "name",
            "kind",
            "status",
            "ms",
        ]
        assert "\n".join(f"{s.trace_id}" for s in spans) in "\n".join(
            line.split()[-1] for line in out.splitlines() if line.startswith("trace id")
        )
    logs = run("query", "logs", "--data", data, "-n", "3", env={"COLUMNS": str(width)}).stdout
    _headers_whole(logs, ["time", "severity", "service", "trace id", "body"], width)


def test_a_table_that_fits_is_left_as_rich_draws_it(data: Path) -> None:
    wide = run("query", "traces", "--data", data, "-n", "2", env={"COLUMNS": "200"}).stdout
    header = wide.splitlines()[1]
    assert re.match(r"start\s+trace id\s+span id\s+service\s+name\s+kind\s+status\s+ms$", header.strip())
    assert tid(12) in wide.splitlines()[3]  # one row per line


# ---------------------------------------------------------------- empty results say why


def test_an_empty_result_says_which_filter_excluded_everything(data: Path, tmp_path: Path) -> None:
    out = run("query", "traces", "--data", data, "--service", "nope").stdout
    assert out == "no spans: no service named 'nope' (services: cart, checkout, llm)\n"
    out = run("query", "traces", "--data", data, "--service", "cart", "--name", "DELETE /cart").stdout
    assert (
        out
        == "no spans: service 'cart' has no operation named 'DELETE /cart' (operations: GET /cart, POST /checkout)\n"
    )
    out = run("query", "traces", "--data", data, "--start", "2020-01-01T00:00:00Z", "--end", "2020-01-02T00:00:00Z")
    assert out.stdout == (
        "no spans between 2020-01-01 00:00:00.000Z and 2020-01-02 00:00:00.000Z "
        "(the store holds spans from 2023-11-14 22:14:20.000Z to 2023-11-14 22:25:20.000Z)\n"
    )
    out = run("query", "logs", "--data", data, "--start", "2024-01-01T00:00:00Z").stdout
    assert out == (
        "no log records between 2024-01-01 00:00:00.000Z and now "
        "(the store holds log records from 2023-11-14 22:13:50.000Z to 2023-11-14 22:17:20.000Z)\n"
    )
    out = run("query", "metrics", "--data", data, "--end", str(T0)).stdout
    assert out.startswith("no metric points between the start and 2023-11-14 22:13:20.000Z (the store holds")
    gap = run("query", "traces", "--data", data, "--start", str(T0 + 60 * SEC + 1), "--end", str(T0 + 120 * SEC)).stdout
    assert gap.startswith("no spans between 2023-11-14 22:14:20.000Z and 2023-11-14 22:15:20.000Z (the store holds")
    out = run("query", "traces", "--data", data, "--status", "error", "--service", "checkout").stdout
    assert out == "no spans match the filters\n"  # nothing cheap to blame
    out = run("search", "nowhere", "--data", data, "--service", "nope").stdout
    assert out == "no spans matching nowhere: no service named 'nope' (services: cart, checkout, llm)\n"
    empty = tmp_path / "empty"
    with tael.Store(empty):
        pass
    assert run("query", "logs", "--data", empty).stdout == "no log records: the store holds no log records\n"
    assert json.loads(run("query", "traces", "--data", data, "--service", "nope", "-o", "json").stdout) == []


# ---------------------------------------------------------------- beside a live `tael serve`


def test_cli_and_http_api_agree_on_severity_names_beside_a_live_server(tmp_path: Path) -> None:
    """`tael serve` in a subprocess takes OTLP/HTTP logs; its /api/logs and the CLI (a
    read-only open of the same directory, in another process) answer a severity name alike."""
    import signal
    import subprocess
    import sys
    import time

    from tests.test_server import ROOT, free_port

    data, port, now = tmp_path / "data", free_port(), time.time_ns()  # recent: inside every retention
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tael", "serve", "--data", str(data), "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    records = [
        {"timeUnixNano": str(now - (10 - i) * SEC), "severityNumber": sev, "body": {"stringValue": f"log {i}"}}
        for i, sev in enumerate((9, 13, 17, 21, 5))
    ]
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                "scopeLogs": [{"logRecords": records}],
            }
        ]
    }
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "tael serve did not start"
            time.sleep(0.05)
        assert httpx.post(url + "/v1/logs", json=body).status_code == 200
        api_bodies = sorted(r["body"] for r in httpx.get(url + "/api/logs?min_severity=Error").json()["data"])
        assert api_bodies == ["log 2", "log 3"]
        assert httpx.get(url + "/api/logs?min_severity=loud").status_code == 400
        cli = [
            sys.executable,
            "-m",
            "tael",
            "query",
            "logs",
            "--data",
            str(data),
            "--min-severity",
            "ERROR",
            "-o",
            "csv",
        ]
        deadline = time.monotonic() + 30
        while True:  # the reader sees what the server's commit pipeline has applied
            out = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            rows = list(csv.DictReader(io.StringIO(out.stdout)))
            if len(rows) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sorted(r["body"] for r in rows) == api_bodies
        assert {r["severity_number"] for r in rows} == {"17", "21"}
        empty = subprocess.run(
            [sys.executable, "-m", "tael", "query", "logs", "--data", str(data), "--start", "2100-01-01T00:00:00Z"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert empty.stdout.startswith("no log records between 2100-01-01 00:00:00.000Z and now (the store holds")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    assert code == 0, err


def test_fit_table_gives_room_to_the_narrow_values_first_and_folds_the_widest() -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from tael._clitables import fit_table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in ("time", "trace id", "body"):
        table.add_column(name, overflow="fold")
    body = "word " * 60
    table.add_row("2023-11-14 22:13:20.000Z", tid(7), body)
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(fit_table(table, 100))
    lines = console.export_text().splitlines()
    assert all(len(line.rstrip()) <= 100 for line in lines)
    assert re.match(r"time\s+trace id\s+body$", lines[0].strip())
    assert lines[2].startswith(f"2023-11-14 22:13:20.000Z   {tid(7)}   word word")  # whole on the first line
    assert len(lines) > 4 and re.sub(r"\s+", "", "".join(lines[2:])).endswith("word" * 60)
