"""Operating a running `tael serve` (issue 17): maintenance commands beside it go through its
admin routes, retention has a dry run, writes already past retention are counted, and the
server says where it listens, what it does and when it stops. A real server in a
subprocess, real HTTP, the real CLI."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import tael
from tael._cli import main
from tael._search import TextIndex
from tael._searchdocs import DOC_SPAN

from .conftest import make_span

ROOT = Path(__file__).resolve().parent.parent
DAY_NS = 86_400 * 10**9
ADMIN = "admin-token-0123456789abcdef"
QUERY = "query-token-0123456789abcdef"


class Serve:
    """``tael serve --port 0`` on ``data``: its URL comes from the serve.json it publishes."""

    def __init__(self, data: Path, *args: str, port: int = 0) -> None:
        self.data = data
        self.log = data.parent / f"{data.name}-serve.log"
        self.err = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "tael", "serve", "--data", str(data), "--port", str(port), *args]
        self.out_log = data.parent / f"{data.name}-serve.out"
        self.out = open(self.out_log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=self.err, stdout=self.out)
        deadline = time.monotonic() + 30
        while not (data / "serve.json").exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "tael serve did not publish serve.json"
            time.sleep(0.05)
        self.url: str = json.loads((data / "serve.json").read_text())["url"]

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        self.out.close()
        return self.proc.returncode


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth.toml"
    path.write_text(
        f'[[tokens]]\ntoken = "{ADMIN}"\nscopes = ["admin", "query", "ingest"]\n\n'
        f'[[tokens]]\ntoken = "{QUERY}"\nscopes = ["query"]\n'
    )
    return path


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    """A store keeping spans 30 days (stored with it: the server's own passes keep them),
    holding spans of 20 days ago (cold, one partition), 2 hours ago (hot) and now."""
    data = tmp_path / "d"
    now = time.time_ns()
    with tael.Store(data, tael.Settings(retention_spans_days=30)) as store:
        store.insert_spans([make_span(start_ns=now - 20 * DAY_NS, end_ns=now - 20 * DAY_NS + 1) for _ in range(3)])
        store.compact(now - 10 * DAY_NS)
        store.insert_spans([make_span(start_ns=now - 7_200 * 10**9, end_ns=now - 7_200 * 10**9 + 1)])
        store.insert_spans([make_span(start_ns=now - 10**9, end_ns=now)])
    return data


@pytest.fixture
def served(old_store: Path, auth_file: Path) -> Iterator[Serve]:
    server = Serve(old_store, "--auth-file", str(auth_file))
    try:
        yield server
    finally:
        server.stop()


def cli(*args: str | Path, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = CliRunner(env=env).invoke(main, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def counts(server: Serve) -> dict[str, Any]:
    got = httpx.get(server.url + "/metrics", headers={"authorization": f"Bearer {QUERY}"})
    assert got.status_code == 200
    return {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in got.text.splitlines() if ln.startswith("tael_")}


def test_maintenance_commands_beside_a_running_server_go_through_it(served: Serve) -> None:
    data = served.data
    # without a token the server refuses, and the command says what it needs
    out = cli("compact", "--data", data, code=1, env={"TAEL_TOKEN": ""})
    assert "admin scope" in out and served.url in out
    out = cli("compact", "--data", data, code=1, env={"TAEL_TOKEN": QUERY})
    assert "admin scope" in out
    before = time.time_ns() + 10**9
    moved = json.loads(
        cli("compact", "--data", data, "--before", str(before), "--output", "json", env={"TAEL_TOKEN": ADMIN})
    )
    assert moved["before_ns"] == before
    assert moved["records"]["spans"] in (1, 2)  # the server's first maintenance pass may have moved one
    assert counts(served)['tael_records{signal="spans",tier="cold"}'] == 5
    assert counts(served)['tael_records{signal="spans",tier="hot"}'] == 0

    later = str(time.time_ns() + 15 * DAY_NS)  # the 20-day-old spans are then past 30 days
    plan = json.loads(cli("retention", "--data", data, "--now", later, "--dry-run", "--output", "json"))  # no token
    assert plan["retention"]["dry_run"] is True
    assert [p.split("/")[0] for p in plan["retention"]["partitions_dropped"]] == ["spans"]
    assert plan["retention"]["cold_rows_dropped"] == 3
    assert counts(served)['tael_records{signal="spans",tier="cold"}'] == 5  # nothing dropped
    text = cli("retention", "--data", data, "--now", later, "--dry-run")
    assert "dry run: nothing dropped" in text and "would drop spans/date=" in text

    done = json.loads(cli("retention", "--data", data, "--now", later, "--output", "json", env={"TAEL_TOKEN": ADMIN}))
    assert done["retention"]["dry_run"] is False
    assert done["retention"]["partitions_dropped"] == plan["retention"]["partitions_dropped"]
    assert counts(served)['tael_records{signal="spans",tier="cold"}'] == 2
    again = json.loads(
        cli(
            *("retention", "--data", data, "--now", later, "--dry-run", "--url", served.url, "--output", "json"),
            env={"TAEL_TOKEN": ADMIN},  # through the server's admin route
        )
    )
    assert again["retention"]["partitions_dropped"] == []


def test_commands_that_need_the_store_closed_say_so_and_name_the_server(served: Serve) -> None:
    for args in (
        ("rebuild-index", "--payload-attribute", "my.prompt"),
        ("repair", str(served.data)),
        ("settings", "set", "hot_window_s=60"),
    ):
        where = () if args[0] == "repair" else ("--data", str(served.data))
        out = cli(*args, *where, code=1)
        assert f"served by tael serve at {served.url}" in out, out
        assert "stop the server" in out
        assert "read_only" not in out  # advice meant for Python, not for an operator
    assert json.loads((served.data / "serve.json").read_text())["pid"] == served.proc.pid


def test_the_admin_routes_check_their_bodies(served: Serve) -> None:
    headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    bad = httpx.post(served.url + "/admin/retention", content=b'{"dry_run": "yes"}', headers=headers)
    assert bad.status_code == 400 and "dry_run" in bad.json()["error"]
    bad = httpx.post(served.url + "/admin/compact", content=b'{"before": -1, "x": 1}', headers=headers)
    assert bad.status_code == 400 and "unknown field(s) x" in bad.json()["error"]
    bad = httpx.post(served.url + "/admin/compact", content=b"{", headers=headers)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    query_only = {**headers, "authorization": f"Bearer {QUERY}"}
    assert httpx.post(served.url + "/admin/compact", content=b"{}", headers=query_only).status_code == 403


def test_serve_logs_start_late_writes_and_shutdown_and_withdraws_serve_json(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    server = Serve(data)
    try:
        # a write of 2023 spans: accepted, counted, logged, not silently dropped later
        old = time.time_ns() - 400 * DAY_NS
        body = {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "legacy"}}]},
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": f"{t + 1:032x}",
                                    "spanId": f"{t + 1:016x}",
                                    "name": "op",
                                    "startTimeUnixNano": str(old + t),
                                    "endTimeUnixNano": str(old + t + 1),
                                }
                                for t in range(2)
                            ]
                        }
                    ],
                }
            ]
        }
        assert httpx.post(server.url + "/v1/traces", json=body).status_code == 200
        assert counts(server)['tael_records_past_retention_total{signal="spans"}'] == 2
    finally:
        code = server.stop()
    err = server.stderr()
    assert code == 0, err
    port = int(server.url.rsplit(":", 1)[1])
    assert f"listening on http://127.0.0.1:{port}" in err
    assert f"data {data.resolve()}" in err and "role leader" in err
    assert "retention spans 7 d" in err and "hot window 3600 s" in err
    assert "accepted 2 spans already past retention (7 days" in err
    assert "stopping" in err and f"{data} closed" in err
    assert not (data / "serve.json").exists()


def test_a_port_in_use_fails_before_the_data_directory_is_created(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "never"
        proc = subprocess.run(
            [sys.executable, "-m", "tael", "serve", "--data", str(data), "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use by another process" in proc.stderr
    assert not data.exists()


def test_access_log_writes_a_line_per_request(tmp_path: Path) -> None:
    server = Serve(tmp_path / "d", "--access-log")
    try:
        assert httpx.get(server.url + "/health/live").status_code == 200
        assert httpx.get(server.url + "/api/services").status_code == 200
    finally:
        server.stop()
    out = server.out_log.read_text()  # uvicorn's access lines, on stdout
    assert '"GET /health/live HTTP/1.1" 200' in out and '"GET /api/services HTTP/1.1" 200' in out
    assert "/health/live" not in server.stderr()


def test_activity_lines_report_what_happened_in_each_interval(tmp_path: Path) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from .test_server import free_port

    data = tmp_path / "d"
    grpc_port = free_port()
    code = (
        "import logging, tael; from tael._server import run_server; "
        "logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s'); "
        f"run_server({str(data)!r}, port=0, grpc_port={grpc_port}, maintenance_interval_s=3600, "
        "activity_interval_s=0.3)"
    )
    log = tmp_path / "serve.log"

    def wait_logged(text: str) -> None:
        deadline = time.monotonic() + 30
        while text not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while not (data / "serve.json").exists():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            url = json.loads((data / "serve.json").read_text())["url"]
            now = time.time_ns()
            spans = [
                {"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "op",
                 "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1)}
                for i in range(3)
            ]  # fmt: skip
            body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
            assert httpx.post(url + "/v1/traces", json=body).status_code == 200
            wait_logged("wrote 3 spans")
            # then gRPC only: its requests are counted too (they were not: "0 requests")
            req = trace_service_pb2.ExportTraceServiceRequest()
            ss = req.resource_spans.add().scope_spans.add()
            for i in range(2):
                ss.spans.add(trace_id=b"\x09" * 16, span_id=(i + 1).to_bytes(8, "big"), name="g",
                             start_time_unix_nano=now, end_time_unix_nano=now + 1)  # fmt: skip
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                trace_service_pb2_grpc.TraceServiceStub(channel).Export(req, timeout=20)
            wait_logged("wrote 2 spans")
            time.sleep(1.0)  # a few quiet intervals: no lines for them
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("tael._serveradmin: last 0.3 s:")]
    # an interval's boundary may fall between a request's records and its response, and the
    # maintenance loop's start-up pass lands in whichever interval it ends in: so the lines
    # are checked one by one for their shape and as a whole for their totals
    shape = re.compile(
        r"wrote (\d+) spans?, (\d+) logs?, (\d+) metrics?; (\d+) requests?(?: \((\d+) gRPC\))?; "
        r"maintenance: (\d+) runs?, moved 0, dropped 0"
    )
    counts = []
    for line in lines:
        m = shape.search(line)
        assert m is not None, line
        counts.append([int(g or 0) for g in m.groups()])
    assert all(any(c) for c in counts), lines  # quiet intervals have no line
    totals = [sum(c[k] for c in counts) for k in range(6)]
    assert totals[:5] == [5, 0, 0, 2, 1] and totals[5] <= 1, lines
    assert len(lines) <= 5, lines


def test_a_dry_run_reports_exactly_what_the_pass_then_drops(old_store: Path) -> None:
    later = time.time_ns() + 15 * DAY_NS  # the 20-day-old spans past 30 days; the others are not
    with tael.Store(old_store) as store:
        store.insert_spans(
            [make_span(start_ns=later - 31 * DAY_NS + i, end_ns=later - 31 * DAY_NS + i + 1) for i in range(2)]
        )
        # one block straddling the cutoff: 3 rows past it, 1 not (counted row by row, not from metadata)
        straddling = [later - 32 * DAY_NS, later - 31 * DAY_NS, later - 30 * DAY_NS - 10**6, later - 29 * DAY_NS]
        store.insert_spans([make_span(start_ns=t, end_ns=t + 1) for t in straddling])
        store.flush()
    with tael.Store(old_store, read_only=True) as reader:
        plan = reader.enforce_retention(later, dry_run=True)
        assert reader.stats().signals["spans"].count == 11  # nothing dropped
    with tael.Store(old_store) as store:
        done = store.enforce_retention(later)
        assert store.stats().signals["spans"].count == 3
    assert plan.dry_run and not done.dry_run
    assert plan.partitions_dropped == done.partitions_dropped and len(plan.partitions_dropped) == 1
    assert (
        (plan.cold_files_dropped, plan.cold_rows_dropped) == (done.cold_files_dropped, done.cold_rows_dropped) == (1, 3)
    )
    assert plan.hot_records_dropped == done.hot_records_dropped == {"spans": 5, "logs": 0, "metrics": 0}
    assert plan.cutoffs == done.cutoffs


def test_past_retention_writes_not_yet_logged_are_logged_at_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = time.time_ns() - 30 * DAY_NS
    with caplog.at_level(logging.WARNING, logger="tael._ingest"):
        with tael.Store(tmp_path / "d") as store:
            store.insert_spans([make_span(start_ns=old, end_ns=old + 1)])
            store.insert_spans([make_span(start_ns=old + i, end_ns=old + i + 1) for i in range(1, 4)])
            assert store.records_past_retention == {"spans": 4, "logs": 0, "metrics": 0}
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 1 and lines[0].startswith("accepted 1 span already past retention")  # a line a minute
        lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[1].startswith("accepted 3 spans already past retention")  # the tail, at close


def test_rebuild_index_beside_a_running_server_rebuilds_it_there(tmp_path: Path, auth_file: Path) -> None:
    data = tmp_path / "d"
    now = time.time_ns()
    prompts = [f"question number {i} about lighthouse{i}" for i in range(40)]
    with tael.Store(data) as store:
        store.insert_spans(
            [
                make_span(start_ns=now - i, end_ns=now - i + 1, attributes={"gen_ai.prompt": p})
                for i, p in enumerate(prompts)
            ]
        )
        store.compact(now - 20)  # half of them cold
    # an index that lost documents (as after damage): tael check would say "run tael rebuild-index"
    index = TextIndex(data / "index", read_only=False, heap_bytes=tael.Settings().index_writer_heap_bytes)
    index.delete_before(DOC_SPAN, now + 1)
    index.commit()
    index.close()
    server = Serve(data, "--auth-file", str(auth_file))
    try:
        headers = {"authorization": f"Bearer {QUERY}"}
        lost = httpx.get(server.url + "/api/search/traces", params={"q": "lighthouse3"}, headers=headers)
        assert lost.status_code == 200 and lost.json()["data"] == []
        out = cli("rebuild-index", "--data", data, code=1, env={"TAEL_TOKEN": QUERY})
        assert "admin scope" in out
        answer = json.loads(cli("rebuild-index", "--data", data, "--output", "json", env={"TAEL_TOKEN": ADMIN}))
        assert answer["documents"] == 40
        for i in (0, 25, 39):
            got = httpx.get(server.url + "/api/search/traces", params={"q": f"lighthouse{i}"}, headers=headers)
            assert got.status_code == 200, got.text
            assert len(got.json()["data"]) == 1, got.text
        text = cli("rebuild-index", "--data", data, env={"TAEL_TOKEN": ADMIN})
        assert text.startswith("indexed 40 documents in ") and server.url in text
    finally:
        assert server.stop() == 0
