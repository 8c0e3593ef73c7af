"""Every ``tael`` command runs here, on a small store, and its answers are the API's."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import tael
from tael._cli import SEVERITIES, SPAN_KINDS, SPAN_STATUSES, TIME, main, parse_attr, snippet, tree_order
from tael._wal import FRAME, FRAME_SIZE, SEGMENT_HEADER_SIZE, list_segments

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
SEC = 10**9
HOUR = 3600 * SEC
COMPACT_BEFORE = T0 + HOUR  # the first hour goes cold, the rest stays hot
PROMPT = "Summarise the refund policy for damaged grinders. " + "Context line about orders. " * 60  # a blob
TREE = "a0" * 16


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def _spans() -> list[tael.Span]:
    spans = []
    for n in range(1, 41):  # 40 traces of two spans, one every 3 minutes over two hours
        start = T0 + n * 180 * SEC
        error = n % 7 == 0
        spans.append(
            tael.Span(
                trace_id=tid(n),
                span_id=sid(2 * n),
                name="POST /checkout",
                service="checkout",
                start_ns=start,
                end_ns=start + (10 + n) * 10**6,
                kind="server",
                status="error" if error else "ok",
                attributes={"http.status_code": 500 if error else 200, "region": "eu" if n % 2 else "us"},
            )
        )
        llm: dict[str, Any] = {"gen_ai.prompt": PROMPT if n % 4 == 0 else f"question {n} about shipping"}
        spans.append(
            tael.Span(
                trace_id=tid(n),
                span_id=sid(2 * n + 1),
                parent_span_id=sid(2 * n),
                name="chat.completions",
                service="llm-gateway",
                start_ns=start + 2 * 10**6,
                end_ns=start + (8 + n) * 10**6,
                kind="client",
                status="error" if error else "ok",
                attributes=llm,
            )
        )
    # one deeper trace: root -> (b, c), b -> d; siblings inserted out of order
    start = T0 + 90 * 60 * SEC
    for span_id, parent, name, offset, ms, service in (
        (sid(901), None, "root", 0, 50, "checkout"),
        (sid(903), sid(901), "c", 20, 10, "inventory"),
        (sid(902), sid(901), "b", 5, 12, "inventory"),
        (sid(904), sid(902), "d", 6, 3, "llm-gateway"),
    ):
        spans.append(
            tael.Span(
                trace_id=TREE,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                service=service,
                start_ns=start + offset * 10**6,
                end_ns=start + (offset + ms) * 10**6,
                status="error" if name == "d" else "ok",
            )
        )
    return spans


def _logs() -> list[tael.LogRecord]:
    logs = []
    for n in range(1, 61):
        sev = (9, 13, 17)[n % 3]
        logs.append(
            tael.LogRecord(
                time_ns=T0 + n * 120 * SEC,
                body="retrying after connection reset" if n % 5 == 0 else f"request {n} completed",
                service=("checkout", "inventory")[n % 2],
                severity_number=sev,
                severity_text={9: "INFO", 13: "WARN", 17: "ERROR"}[sev],
                trace_id=tid(n) if n <= 40 else None,
                attributes={"thread": n % 4, "zone": "a" if n % 2 else "b"},
            )
        )
    return logs


def _metrics() -> list[tael.MetricPoint]:
    return [
        tael.MetricPoint(
            time_ns=T0 + n * 60 * SEC,
            name="cpu",
            service=("checkout", "inventory")[n % 2],
            value=float(n % 10),
            unit="%",
            attributes={"host": f"h{n % 3}"},
        )
        for n in range(120)
    ]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    with tael.Store(data) as store:
        store.insert_spans(_spans())
        store.insert_logs(_logs())
        store.insert_metrics(_metrics())
        report = store.compact(COMPACT_BEFORE)
        assert report.records["spans"] and report.records["logs"] and report.records["metrics"]
        store.flush()
    return data


@pytest.fixture
def copy(store_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the store, for commands that change it."""
    target = tmp_path / "copy"
    shutil.copytree(store_dir, target)
    return target


def api(data: Path, method: str, *args: Any, **kwargs: Any) -> Any:
    """The Store API's answer (the store is closed again before a command opens it: LMDB
    refuses a second open of one environment in a process)."""
    with tael.Store(data, read_only=True) as store:
        return getattr(store, method)(*args, **kwargs)


def run(*args: str | Path, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result


def run_json(*args: str | Path, code: int = 0) -> Any:
    return json.loads(run(*args, "--output", "json", code=code).stdout)


def asdicts(items: Any) -> Any:
    return json.loads(json.dumps([dataclasses.asdict(i) for i in items], default=str))


def asdict(item: Any) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(item), default=str))


# ---------------------------------------------------------------- the command tree


def _paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _paths(cmd, (*prefix, name))


def test_every_command_and_subcommand_has_help() -> None:
    paths = [(), *_paths(main)]
    names = {" ".join(p) for p in paths}
    for expected in (
        "serve",
        "demo",
        "query traces",
        "query logs",
        "query metrics",
        "trace",
        "search",
        "summary",
        "stats",
        "compact",
        "retention",
        "check",
        "rebuild-index",
        "bench",
        "repair",
    ):
        assert expected in names, expected
    for path in paths:
        result = run(*path, "--help")
        assert "Usage:" in result.output and "--help" in result.output, path


def test_every_command_with_results_takes_output_json() -> None:
    for path in _paths(main):
        cmd: Any = main
        for name in path:
            cmd = cmd.commands[name]
        if isinstance(cmd, click.Group) or path == ("serve",):
            continue
        output = next(p for p in cmd.params if p.name == "output")
        # issue 17: commands whose result is rows also write CSV (tests/test_cli_consistency.py)
        rows = path in {("query", "traces"), ("query", "logs"), ("query", "metrics"), ("search",), ("sql",)}
        rows = rows or path in {("stats",), ("trace",), ("bench",)}
        assert set(output.type.choices) == ({"table", "json", "csv"} if rows else {"table", "json"}), path


def test_serve_help_shows_its_options() -> None:
    out = run("serve", "--help").output
    out = re.sub(r"-\n\s+", "-", out)  # click wraps help text at hyphens ("./tael-" / "data")
    for needle in ("--data", "--host", "--port", "127.0.0.1", "4318", "./tael-data", "--auth-file", "--tls-cert"):
        assert needle in out


def test_option_choices_match_the_library() -> None:
    from tael._models import SPAN_KINDS as kinds
    from tael._models import SPAN_STATUSES as statuses

    assert (kinds, statuses) == (SPAN_KINDS, SPAN_STATUSES)
    assert SEVERITIES["error"] == 17 and SEVERITIES["warn"] == 13


def test_the_console_script_runs_in_a_subprocess(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tael", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "Usage:" in out and "query" in out and "check" in out


def test_importing_the_cli_does_not_import_rich() -> None:
    code = "import sys, tael._cli; print(sorted(m for m in ('rich', 'tael._server', 'tael._demo') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- argument parsing


def test_time_and_attribute_parsing() -> None:
    assert TIME.convert("1700000000000000000", None, None) == T0
    assert TIME.convert("2023-11-14T22:13:20Z", None, None) == T0
    assert TIME.convert("2023-11-14T23:13:20.000001+01:00", None, None) == T0 + 1000
    assert abs(TIME.convert("-1h", None, None) - (datetime.now(UTC).timestamp() * 1e9 - HOUR)) < 60 * SEC
    with pytest.raises(click.BadParameter, match="timezone"):
        TIME.convert("2023-11-14T22:13:20", None, None)
    with pytest.raises(click.BadParameter):
        TIME.convert("yesterday", None, None)
    assert parse_attr("http.status_code=500") == ("http.status_code", 500)
    assert parse_attr('code="500"') == ("code", "500")
    assert parse_attr("region=eu") == ("region", "eu")
    assert parse_attr("retry=true") == ("retry", True)
    assert parse_attr("q=a=b") == ("q", "a=b")
    with pytest.raises(click.BadParameter):
        parse_attr("novalue")


def test_bad_arguments_are_usage_errors(store_dir: Path) -> None:
    assert "timezone" in run("query", "logs", "--data", store_dir, "--start", "2024-01-01T00:00", code=2).output
    assert "key=value" in run("query", "traces", "--data", store_dir, "--attr", "oops", code=2).output
    run("query", "traces", "--data", store_dir, "--status", "broken", code=2)
    run("query", "logs", "--data", store_dir, "--min-severity", "loud", code=2)
    run("query", "metrics", "--data", store_dir, "--step", "5m", code=2)  # needs --name, --start, --end


def test_library_errors_are_one_line_without_traceback(store_dir: Path, tmp_path: Path) -> None:
    bad = run("trace", "xyz", "--data", store_dir, code=1)
    assert bad.stderr.startswith("error: trace_id must be a 32-character hex string") and "Traceback" not in bad.output
    missing = run("stats", "--data", tmp_path / "nowhere", code=1)
    assert missing.stderr.startswith("error:") and "not a tael data directory" in missing.stderr
    assert not (tmp_path / "nowhere").exists()
    assert run("compact", "--data", tmp_path / "nowhere", code=1).stderr.startswith("error:")
    assert not (tmp_path / "nowhere").exists()  # not created by a command that only maintains stores
    unknown = run("trace", "f" * 32, "--data", store_dir, code=1)
    assert unknown.stderr == f"error: trace {'f' * 32} not found in {store_dir}\n"
    assert run("query", "traces", "--data", store_dir, "--text", "  ", code=1).stderr.startswith("error: text has")


def test_a_store_open_elsewhere_is_a_one_line_error(copy: Path) -> None:
    with tael.Store(copy):
        for args in (("compact",), ("retention",), ("rebuild-index",)):
            result = run(*args, "--data", copy, code=1)
            assert result.stderr.startswith("error: ") and "open for writing" in result.stderr
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


# ---------------------------------------------------------------- queries: the API's answers


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("--service", "checkout", "--status", "error"), {"service": "checkout", "status": "error"}),
        (("--name", "chat.completions", "--limit", "5"), {"name": "chat.completions", "limit": 5}),
        (("--kind", "server", "--order", "asc"), {"kind": "server", "order": "asc"}),
        (("--min-duration-ms", "30", "--max-duration-ms", "45.5"), {"min_duration_ms": 30.0, "max_duration_ms": 45.5}),
        (
            ("--attr", "http.status_code=200", "--attr", "region=eu"),
            {"attributes": {"http.status_code": 200, "region": "eu"}},
        ),
        (("--attr", 'http.status_code="200"'), {"attributes": {"http.status_code": "200"}}),
        (
            ("--start", "2023-11-14T22:43:20Z", "--end", str(T0 + HOUR + 30 * 60 * SEC)),
            {"start": T0 + 30 * 60 * SEC, "end": T0 + HOUR + 30 * 60 * SEC},
        ),
        (
            ("--text", '"refund policy"', "--service", "llm-gateway"),
            {"text": '"refund policy"', "service": "llm-gateway"},
        ),
    ],
)
def test_query_traces_json_is_the_api_answer(store_dir: Path, args: tuple[str, ...], kwargs: dict[str, Any]) -> None:
    got = run_json("query", "traces", "--data", store_dir, *args)
    want = api(store_dir, "query_traces", **{"limit": 20, **kwargs})
    assert got == asdicts(want)
    # every filter selects something, except a string "200" (attribute values keep their types)
    assert bool(want) == (args != ("--attr", 'http.status_code="200"'))


def test_query_traces_table(store_dir: Path) -> None:
    out = run("query", "traces", "--data", store_dir, "--status", "error", "--limit", "3").stdout
    spans = api(store_dir, "query_traces", status="error", limit=3)
    assert f"{len(spans)} spans" in out
    for s in spans:
        assert s.trace_id in out and s.span_id in out and f"{s.duration_ms:,.2f}" in out
    assert "2023-11-15" in out or "2023-11-14" in out


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("--min-severity", "error"), {"min_severity": 17}),
        (("--min-severity", "13", "--service", "inventory"), {"min_severity": 13, "service": "inventory"}),
        (("--trace-id", tid(10), "--order", "asc"), {"trace_id": tid(10), "order": "asc"}),
        (("--attr", "thread=2", "--attr", "zone=b"), {"attributes": {"thread": 2, "zone": "b"}}),
        (("--text", "connection reset", "--limit", "4"), {"text": "connection reset", "limit": 4}),
        (
            ("--start", str(T0 + HOUR), "--end", "2023-11-15T00:00:00+00:00"),
            {"start": T0 + HOUR, "end": T0 + 6400 * SEC},
        ),
    ],
)
def test_query_logs_json_is_the_api_answer(store_dir: Path, args: tuple[str, ...], kwargs: dict[str, Any]) -> None:
    got = run_json("query", "logs", "--data", store_dir, *args)
    want = api(store_dir, "query_logs", **{"limit": 20, **kwargs})
    assert want and got == asdicts(want)


def test_query_logs_table(store_dir: Path) -> None:
    out = run("query", "logs", "--data", store_dir, "--min-severity", "error", "-n", "5").stdout
    for r in api(store_dir, "query_logs", min_severity=17, limit=5):
        assert r.body in out and "ERROR" in out


def test_query_metrics_json_and_buckets_are_the_api_answer(store_dir: Path) -> None:
    got = run_json("query", "metrics", "--data", store_dir, "--name", "cpu", "--attr", "host=h1", "--limit", "500")
    want = api(store_dir, "query_metrics", name="cpu", attributes={"host": "h1"}, limit=500)
    assert len(want) == 40 and got == asdicts(want)
    got = run_json("query", "metrics", "--data", store_dir, "--service", "inventory", "--end", str(T0 + HOUR))
    assert got == asdicts(api(store_dir, "query_metrics", service="inventory", end=T0 + HOUR, limit=100))
    args = ("--name", "cpu", "--start", str(T0), "--end", str(T0 + 2 * HOUR), "--step", "5m")
    buckets = run_json("query", "metrics", "--data", store_dir, *args)
    want_buckets = api(store_dir, "aggregate_metrics", "cpu", start=T0, end=T0 + 2 * HOUR, step="5m")
    assert len(want_buckets) == 25 and buckets == asdicts(want_buckets)
    table = run("query", "metrics", "--data", store_dir, *args).stdout
    assert "25 buckets of 5m" in table and "2023-11-14 22:10:00.000Z" in table
    table = run("query", "metrics", "--data", store_dir, "--name", "cpu", "-n", "2").stdout
    assert '{"host": "h0"}' in table and "cpu" in table


# ---------------------------------------------------------------- trace, search


def test_trace_is_an_indented_tree(store_dir: Path) -> None:
    out = run("trace", TREE, "--data", store_dir).stdout
    lines = [ln for ln in out.splitlines() if ln.lstrip().startswith(("root ", "└ "))]
    names = [ln.split()[0] if ln.split()[0] != "└" else ln.split()[1] for ln in lines]
    assert names == ["root", "b", "d", "c"]  # children by start time, each under its parent
    indent = [len(ln) - len(ln.lstrip()) for ln in lines]
    assert indent[1] > indent[0] and indent[2] > indent[1] and indent[3] == indent[1]
    assert "4 spans, 3 services, 50.00 ms" in out and "errors: 1" in out
    assert "12.00" in out and sid(904) in out and "inventory" in out
    got = run_json("trace", TREE, "--data", store_dir)
    assert got == {"trace_id": TREE, "spans": asdicts(api(store_dir, "get_trace", TREE)), "logs": []}


def test_trace_with_logs_across_tiers(store_dir: Path) -> None:
    got = run_json("trace", tid(7), "--data", store_dir)
    assert got["spans"] == asdicts(api(store_dir, "get_trace", tid(7)))
    assert got["logs"] == asdicts(api(store_dir, "query_logs", trace_id=tid(7), order="asc"))
    assert len(got["spans"]) == 2 and len(got["logs"]) == 1
    out = run("trace", tid(7), "--data", store_dir).stdout
    assert "error" in out and "request 7 completed" in out
    assert run_json("trace", tid(7), "--data", store_dir, "--no-logs")["logs"] == []


def test_tree_order_survives_orphans_and_cycles() -> None:
    def span(n: int, parent: int | None) -> tael.Span:
        return tael.Span(
            trace_id=TREE,
            span_id=sid(n),
            parent_span_id=None if parent is None else sid(parent),
            name=str(n),
            service="s",
            start_ns=n,
            end_ns=n + 1,
        )

    spans = [span(3, 99), span(1, None), span(2, 1), span(5, 6), span(6, 5)]
    assert [(d, s.name) for d, s in tree_order(spans)] == [(0, "1"), (1, "2"), (0, "3"), (0, "5"), (1, "6")]


def test_search(store_dir: Path) -> None:
    got = run_json("search", "refund policy", "--data", store_dir)
    want = api(store_dir, "query_traces", text="refund policy", limit=20)
    assert len(want) == 10 and got == asdicts(want)
    out = run("search", "refund policy", "--data", store_dir, "--limit", "3").stdout
    assert "3 spans matching refund policy" in out and "Summarise the refund policy" in out
    logs = run_json("search", "connection", "--signal", "logs", "--service", "checkout", "--data", store_dir)
    assert logs == asdicts(api(store_dir, "query_logs", text="connection", service="checkout", limit=20)) and logs
    out = run("search", "connection reset", "--signal", "logs", "--data", store_dir).stdout
    assert "retrying after connection reset" in out


def test_snippet_shows_the_match() -> None:
    text = "x " * 200 + "the refund policy says" + " y" * 200
    s = snippet(["nothing here", text], '"refund policy"', width=60)
    assert "refund policy says" in s and s.startswith("…") and s.endswith("…") and len(s) <= 62
    assert snippet(["short text"], "absent") == "short text"


# ---------------------------------------------------------------- summary, stats


def test_summary_is_the_api_answer(store_dir: Path) -> None:
    now = T0 + 2 * HOUR
    got = run_json("summary", "--data", store_dir, "--last-s", "7200", "--now", str(now))
    want = api(store_dir, "summary", last_s=7200, now=now)
    assert got == asdict(want) and want.traces.span_count == 82  # trace 40 starts at the end of the window
    svc = run_json("summary", "--data", store_dir, "--last-s", "7200", "--now", str(now), "--service", "checkout")
    assert svc == asdict(api(store_dir, "summary", last_s=7200, now=now, service="checkout"))
    out = run("summary", "--data", store_dir, "--last-s", "7200", "--now", "2023-11-15T00:13:20Z").stdout
    assert "82" in out and f"{want.traces.p95_ms:,.2f}" in out and "llm-gateway" in out
    assert "operations with most errors" in out and "POST /checkout" in out


def test_stats(store_dir: Path) -> None:
    got = run_json("stats", "--data", store_dir)
    want = asdict(api(store_dir, "stats"))
    for key in ("signals", "hot_records", "cold_records", "cold_files", "blobs", "applied_lsn", "index_documents"):
        assert got[key] == want[key], key
    assert got["signals"]["spans"]["count"] == 84 and got["cold_records"]["spans"] > 0 and got["blobs"] == 1
    out = run("stats", "--data", store_dir).stdout
    assert "84" in out and "120" in out and "payload blobs" in out and "2023-11-14 22:16:20.000Z" in out
    assert got["replication"]["role"] == "leader" and got["replication"]["epoch"] == 1
    assert "leader, epoch 1" in out


# ---------------------------------------------------------------- commands that change the store


def test_compact(copy: Path) -> None:
    got = run_json("compact", "--data", copy, "--before", str(T0 + 2 * HOUR))
    assert got["before_ns"] == T0 + 2 * HOUR and sum(got["records"].values()) > 0 and got["files_written"]
    with tael.Store(copy, read_only=True) as s:
        st = s.stats()
        assert st.hot_records == {"spans": 2, "logs": 1, "metrics": 0}  # trace 40 and log 60 are at the bound
    out = run("compact", "--data", copy).stdout  # default: older than now - hot_window_s, so everything
    assert "compacted records before" in out and "spans" in out and "2 files written" in out
    with tael.Store(copy, read_only=True) as s:
        assert sum(s.stats().hot_records.values()) == 0 and len(s.get_trace(tid(40))) == 2


def test_retention(copy: Path) -> None:
    got = run_json("retention", "--data", copy, "--now", "2023-11-20T00:00:00Z")
    assert got["retention"]["cold_rows_dropped"] == 0 and got["blobs_removed"] == 0  # within 7 days
    got = run_json("retention", "--data", copy, "--now", "2024-06-01T00:00:00Z")
    assert got["retention"]["partitions_dropped"] and got["retention"]["cold_rows_dropped"] > 0
    assert got["retention"]["hot_records_dropped"]["spans"] > 0 and got["blobs_removed"] == 1
    with tael.Store(copy, read_only=True) as s:
        st = s.stats()
        assert st.signals["spans"].count == 0 and st.signals["logs"].count == 0 and st.blobs == 0
    out = run("retention", "--data", copy).stdout
    assert "cold partitions" in out and "payload blobs" in out


def test_rebuild_index(copy: Path) -> None:
    shutil.rmtree(copy / "index")
    got = run_json("rebuild-index", "--data", copy)
    assert got["documents"] == 40 + 60  # every span with a payload and every log body
    with tael.Store(copy, read_only=True) as s:
        assert len(s.query_traces(text="refund policy")) == 10
    assert "indexed 100 documents" in run("rebuild-index", "--data", copy).stdout


# ---------------------------------------------------------------- check


def test_check_a_healthy_store(store_dir: Path) -> None:
    def files() -> dict[Path, int]:  # LMDB's lock.mdb records readers: not data
        return {p: p.stat().st_mtime_ns for p in store_dir.rglob("*") if p.is_file() and p.name != "lock.mdb"}

    before = files()
    got = run_json("check", "--data", store_dir)
    assert got["ok"] is True and got["problems"] == []
    assert got["wal"]["frames"] == 3 and got["cold"]["files"] == 5 and got["blobs"] == {"catalog": 1, "missing": 0}
    out = run("check", "--data", store_dir).stdout
    assert "OK: no damage found" in out and "3 frames" in out
    assert files() == before  # nothing written


def _frames(segment: Path) -> list[tuple[int, int]]:
    buf = segment.read_bytes()
    out, pos = [], SEGMENT_HEADER_SIZE
    while pos < len(buf):
        length = FRAME.unpack_from(buf, pos)[3]
        out.append((pos, FRAME_SIZE + length))
        pos += FRAME_SIZE + length
    return out


def test_check_finds_wal_damage_and_repair_fixes_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data, tael.Settings(wal_segment_bytes=4096)) as store:
        for b in range(12):
            store.insert_logs(
                [tael.LogRecord(time_ns=T0 + b * 10 + i, body=f"{b}/{i} " * 40, service="s") for i in range(5)]
            )
    segments = [p for _b, p in list_segments(data / "wal")]
    assert len(segments) >= 3
    sealed = segments[1]
    offset, length = _frames(sealed)[0]
    buf = bytearray(sealed.read_bytes())
    buf[offset + FRAME_SIZE + 10] ^= 0xFF
    sealed.write_bytes(bytes(buf))

    result = run("check", "--data", data, code=1)
    assert sealed.name in result.stdout and "DAMAGED" in result.stdout and "check --repair" in result.stdout
    got = run_json("check", "--data", data, code=1)
    (problem,) = got["problems"]
    assert problem["part"] == "wal" and problem["path"] == str(sealed) and problem["offset"] == offset
    assert problem["length"] == length and "already applied" in problem["message"]
    assert sealed.read_bytes() == bytes(buf) and not (data / "quarantine").exists()  # check changed nothing

    fixed = run_json("check", "--data", data, "--repair")
    assert fixed["ok"] is True and fixed["problems"] == []
    assert [(d["segment"], d["offset"]) for d in fixed["repair"]["damaged"]] == [(sealed.name, offset)]
    assert fixed["problems_before_repair"] == got["problems"]
    assert "OK: no damage found" in run("check", "--data", data, "--repair").stdout  # nothing left to repair
    with tael.Store(data) as store:
        assert len(store.query_logs(limit=1000)) == 60  # the frame was applied before the damage


def test_check_torn_tail_is_a_note_not_damage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tael.Store(data) as store:
        for b in range(3):
            store.insert_logs([tael.LogRecord(time_ns=T0 + b, body="x" * 100, service="s")])
    (segment,) = (p for _b, p in list_segments(data / "wal"))
    last, _n = _frames(segment)[-1]
    with segment.open("r+b") as f:
        f.truncate(last + 7)
    got = run_json("check", "--data", data)
    assert got["ok"] is True and "torn tail" in got["notes"][0]


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated"])
def test_check_finds_cold_damage(copy: Path, damage: str) -> None:
    victim = sorted((copy / "cold" / "logs").rglob("*.parquet"))[0]
    if damage == "deleted":
        victim.unlink()
    elif damage == "garbage":
        victim.write_bytes(b"not parquet at all" * 10)
    else:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    result = run("check", "--data", copy, code=1)
    assert victim.name in result.stdout and "DAMAGED" in result.stdout
    got = run_json("check", "--data", copy, "--repair", code=1)  # repair is for the WAL only
    (problem,) = got["problems"]
    assert problem["part"] == "cold" and problem["path"] == str(victim) and "repair" not in got
    assert ("missing" if damage == "deleted" else "footer") in problem["message"]


def test_check_row_count_mismatch(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    with tael.Store(data) as store:
        store.insert_logs([tael.LogRecord(time_ns=T0 + i, body="x", service="s") for i in range(10)])
        store.compact(T0 + HOUR)
    (victim,) = (data / "cold" / "logs").rglob("*.parquet")
    table = pq.read_table(victim)
    pq.write_table(table.slice(0, 7), victim)
    (problem,) = run_json("check", "--data", data, code=1)["problems"]
    assert "holds 7 rows, the manifest says 10" in problem["message"]


def test_check_missing_hot_tier(copy: Path) -> None:
    shutil.rmtree(copy / "hot")
    got = run_json("check", "--data", copy, code=1)
    assert [p["part"] for p in got["problems"]] == ["hot"] and got["wal"]["frames"] == 3


# ---------------------------------------------------------------- demo, bench, repair


def test_demo(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    got = run_json("demo", "--data", data, "--spans", "600", "--logs", "300", "--metrics", "300", "--seed", "3")
    st = got["stats"]
    assert got["inserted"] == {"spans": 600, "logs": 300, "metrics": 300}
    assert {k: v["count"] for k, v in st["signals"].items()} == got["inserted"]
    assert all(st["hot_records"][k] > 0 and st["cold_records"][k] > 0 for k in got["inserted"])  # both tiers
    assert got["maintenance"]["error"] is None and got["maintenance"]["compaction"]["files_written"]
    assert 0 < st["blobs"] < got["payload_texts"]  # long shared payloads are kept once
    assert {s["name"] for s in got["services"]} == {"checkout", "inventory", "llm-gateway"}
    assert got["span_hits"] and all(
        "refund policy"
        in (s["attributes"].get("gen_ai.prompt", "") + s["attributes"].get("gen_ai.completion", "")).lower()
        for s in got["span_hits"]
    )
    assert got["log_hits"] and all("connection reset" in r["body"] for r in got["log_hits"])
    assert got["errors"] and got["error_trace"] and got["error_trace"][0]["trace_id"] == got["errors"][0]["trace_id"]
    assert got["summary"]["traces"]["span_count"] == 600 and got["buckets"]
    assert any(a["service"] == "llm-gateway" for a in got["anomalies"]["anomalies"])  # the incident
    out = run("demo", "--data", data, "--spans", "300", "--logs", "100", "--metrics", "100").stdout
    for needle in ("latest failing spans", "services", "refund policy", "└ ", "anomalies", "15-minute buckets"):
        assert needle in out, needle
    with tael.Store(data, read_only=True) as store:  # the second run added to the first
        assert store.stats().signals["spans"].count == 900


def test_bench(tmp_path: Path) -> None:
    got = run_json("bench", "--records", "300", "--batch", "100", "--durability", "os", "--dir", tmp_path)
    assert [r["operation"] for r in got["results"]] == [
        "insert spans",
        "insert logs",
        "insert metrics",
        "compact",
    ]
    assert all(r["records"] > 0 and r["records_per_s"] > 0 for r in got["results"])
    assert got["get_trace_cold_ms"]["lookups"] == 100 and got["get_trace_cold_ms"]["p50"] > 0
    out = run("bench", "-n", "200", "--dir", tmp_path).stdout
    assert "insert spans" in out and "records/s" in out and "get_trace from the cold tier" in out
    assert list(tmp_path.iterdir()) == []  # the temporary store is gone


def test_repair_table_output(copy: Path) -> None:
    out = run("repair", copy, "--output", "table").stdout
    # one segment: "1 WAL segment", not "1 WAL segments" (issue 17: correct plurals)
    assert out.startswith("1 WAL segment checked, ") and "3 frames verify" in out


def test_config_file_settings_reach_the_store(copy: Path, tmp_path: Path) -> None:
    """`tael --config FILE`: at a time where the default 7 days keep everything, a config
    that keeps spans longer reaches the store; one that keeps them 1 day would delete data,
    so it fails naming `tael settings set` (issue 17: such a change is explicit), and once
    that is run the same pass drops them."""
    now = "2023-11-20T00:00:00Z"
    longer, shorter = tmp_path / "longer.toml", tmp_path / "tael.toml"
    longer.write_text("retention_spans_days = 30\n")
    shorter.write_text("retention_spans_days = 0.001\nretention_logs_days = 0.001\n")
    got = run_json("retention", "--data", copy, "--now", now)
    assert got["retention"]["hot_records_dropped"].get("spans", 0) == 0
    got = run_json("--config", longer, "retention", "--data", copy, "--now", now)
    assert got["retention"]["cutoffs"]["spans"] == int(datetime(2023, 10, 21, tzinfo=UTC).timestamp()) * 10**9
    refused = run("--config", shorter, "retention", "--data", copy, "--now", now, code=1)
    assert "retention_spans_days" in refused.output and "tael settings set" in refused.output
    run("settings", "set", "--data", copy, "retention_spans_days=0.001", "retention_logs_days=0.001")
    got = run_json("--config", shorter, "retention", "--data", copy, "--now", now)
    assert got["retention"]["hot_records_dropped"]["spans"] > 0
    bad = tmp_path / "bad.toml"
    bad.write_text("retention_span_days = 1\n")
    result = run("--config", bad, "stats", "--data", copy, code=1)
    assert "unknown setting(s) retention_span_days" in result.output
