"""``tael serve`` over real HTTP on loopback: the OpenTelemetry SDK's OTLP/HTTP exporters
as clients, the Jaeger query API, search, self-metrics, health and bad input."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tael

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(fn: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fn()
            if got:
                return got
        except (httpx.HTTPError, tael.TaelError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Server:
    def __init__(self, data: Path, **settings: Any) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        code = (
            "import tael; from tael._server import run_server; "
            f"run_server({str(data)!r}, port={self.port}, settings=tael.Settings(**{settings!r}), "
            "maintenance_interval_s=3600)"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: httpx.get(self.url + "/health/live").status_code == 200, "the server to start")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (SIGKILL after ``timeout`` s: a hang fails as -9).
        Again after the first call: the same code."""
        if self.proc.stderr is None or self.proc.stderr.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", index_commit_interval_s=0.1)
    try:
        yield s
    finally:
        s.stop()


def reader(data: Path) -> tael.Store:
    return tael.Store(data, read_only=True)


def test_sdk_exporters_round_trip_through_the_store_and_the_jaeger_api(server: Server) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    resource = Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.url + "/v1/traces", compression=Compression.Gzip))
    )
    tracer = provider.get_tracer("shop.cart", "1.2.3")
    with tracer.start_as_current_span("POST /checkout", kind=trace.SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 500)
        root.set_attribute("ratio", 0.25)
        root.set_attribute("tags", ["a", "b"])
        with tracer.start_as_current_span("llm.chat", kind=trace.SpanKind.CLIENT) as child:
            child.set_attribute("gen_ai.prompt", "why was my card declined? " * 60)
            child.add_event("retry", {"attempt": 2})
        root.set_status(trace.Status(trace.StatusCode.ERROR, "card declined"))
    provider.force_flush()

    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=server.url + "/v1/logs")))
    otel_logger = logs.get_logger("shop.cart")
    from opentelemetry._logs import LogRecord as OtelLogRecord
    from opentelemetry._logs import SeverityNumber

    span_ctx = root.get_span_context()
    otel_logger.emit(
        OtelLogRecord(
            timestamp=time.time_ns(),
            body="connection reset by payments upstream",
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            attributes={"attempt": 3},
            trace_id=span_ctx.trace_id,
            span_id=span_ctx.span_id,
        )
    )
    logs.force_flush()

    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=server.url + "/v1/metrics"), export_interval_millis=3_600_000
            )
        ],
    )
    meter = meter_provider.get_meter("shop.cart")
    meter.create_counter("orders").add(3, {"region": "eu"})
    meter.create_histogram("latency_ms").record(12.5, {"route": "/checkout"})
    meter_provider.force_flush()
    meter_provider.shutdown()
    logs.shutdown()
    provider.shutdown()

    exported = {s.context.span_id: s for s in memory.get_finished_spans()}
    trace_id = f"{span_ctx.trace_id:032x}"
    with reader(server.data) as store:
        spans = wait_for(lambda: len(store.get_trace(trace_id)) == 2 and store.get_trace(trace_id), "the spans")
        by_id = {s.span_id: s for s in spans}
        for sid, want in exported.items():
            got = by_id[f"{sid:016x}"]
            assert got.name == want.name
            assert got.start_ns == want.start_time and got.end_ns == want.end_time
            assert got.service == "checkout"
            assert got.resource["deployment.environment"] == "test"
            assert got.scope_name == "shop.cart" and got.scope_version == "1.2.3"
            assert got.attributes == {k: list(v) if isinstance(v, tuple) else v for k, v in want.attributes.items()}
            parent = f"{want.parent.span_id:016x}" if want.parent else None
            assert got.parent_span_id == parent
        root_got = by_id[f"{span_ctx.span_id:016x}"]
        assert (root_got.kind, root_got.status, root_got.status_message) == ("server", "error", "card declined")
        child_got = next(s for s in spans if s.name == "llm.chat")
        assert child_got.kind == "client"
        assert [(e.name, e.attributes) for e in child_got.events] == [("retry", {"attempt": 2})]
        got_logs = wait_for(lambda: store.query_logs(trace_id=trace_id), "the log")
        assert got_logs[0].body == "connection reset by payments upstream"
        assert (got_logs[0].severity_number, got_logs[0].severity_text) == (17, "ERROR")
        assert got_logs[0].span_id == f"{span_ctx.span_id:016x}" and got_logs[0].attributes == {"attempt": 3}
        points = wait_for(lambda: store.query_metrics(service="checkout"), "the metric points")
        kinds = {p.name: p for p in points}
        assert kinds["orders"].kind == "sum" and kinds["orders"].value == 3.0 and kinds["orders"].monotonic
        assert kinds["orders"].attributes["region"] == "eu"
        assert kinds["latency_ms"].kind == "histogram" and kinds["latency_ms"].count == 1
        assert kinds["latency_ms"].sum == 12.5

    # the Jaeger API, as Grafana's Jaeger data source reads it
    assert "checkout" in httpx.get(server.url + "/api/services").json()["data"]
    ops = httpx.get(server.url + "/api/services/checkout/operations").json()["data"]
    assert sorted(ops) == ["POST /checkout", "llm.chat"]
    one = httpx.get(f"{server.url}/api/traces/{trace_id}").json()["data"][0]
    assert one["traceID"] == trace_id and len(one["spans"]) == 2
    jroot = next(s for s in one["spans"] if s["spanID"] == f"{span_ctx.span_id:016x}")
    assert jroot["operationName"] == "POST /checkout"
    assert jroot["startTime"] == exported[span_ctx.span_id].start_time // 1000
    assert {"key": "http.status_code", "type": "int64", "value": 500} in jroot["tags"]
    assert {"key": "error", "type": "bool", "value": True} in jroot["tags"]
    jchild = next(s for s in one["spans"] if s["operationName"] == "llm.chat")
    assert jchild["references"] == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": jroot["spanID"]}]
    assert one["processes"][jroot["processID"]]["serviceName"] == "checkout"
    found = httpx.get(
        server.url + "/api/traces",
        params={"service": "checkout", "tags": json.dumps({"http.status_code": "500"}), "minDuration": "0ms"},
    ).json()["data"]
    assert [t["traceID"] for t in found] == [trace_id]
    assert httpx.get(f"{server.url}/api/traces/{'f' * 32}").status_code == 404
    assert httpx.get(server.url + "/api/traces", params={"minDuration": "fast"}).status_code == 400
    # full-text search and logs over HTTP
    hits = wait_for(
        lambda: httpx.get(server.url + "/api/search/traces", params={"q": "card declined"}).json()["data"], "search"
    )
    assert [h["name"] for h in hits] == ["llm.chat"]
    got = wait_for(
        lambda: httpx.get(server.url + "/api/logs", params={"q": "payments", "min_severity": 17}).json()["data"],
        "log search",
    )
    assert got[0]["trace_id"] == trace_id


def otlp_json_request(trace_hex: str, span_hex: str) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "lib", "version": "0.1"},
                        "spans": [
                            {
                                "traceId": trace_hex,
                                "spanId": span_hex,
                                "name": "GET /json",
                                "kind": 2,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000250000000",
                                "attributes": [
                                    {"key": "n", "value": {"intValue": "42"}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_with_hex_ids_and_compression(server: Server) -> None:
    trace_hex, span_hex = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    body = json.dumps(otlp_json_request(trace_hex, span_hex)).encode()
    r = httpx.post(server.url + "/v1/traces", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert json.loads(r.content).get("partialSuccess", {}).get("rejectedSpans", 0) in (0, "0")
    for encoding, pack in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        other = json.dumps(otlp_json_request(trace_hex, f"{int(span_hex, 16) + 1:016x}")).encode()
        r = httpx.post(
            server.url + "/v1/traces",
            content=pack(other),
            headers={"Content-Type": "application/json; charset=utf-8", "Content-Encoding": encoding},
        )
        assert r.status_code == 200, (encoding, r.content)
        span_hex_next = f"{int(span_hex, 16) + 1:016x}"
    with reader(server.data) as store:
        spans = wait_for(lambda: store.get_trace(trace_hex), "the JSON span")
        assert {s.span_id for s in spans} == {span_hex, span_hex_next}
        s = next(s for s in spans if s.span_id == span_hex)
        assert (s.service, s.kind, s.status, s.start_ns, s.end_ns) == (
            "json-svc", "server", "ok", 1_700_000_000_000_000_000, 1_700_000_000_250_000_000,
        )  # fmt: skip
        assert s.attributes == {"n": 42, "ok": True}
    # a span with a bad id is rejected alone: partial success
    bad = otlp_json_request("not-hex", span_hex)
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
        otlp_json_request("00000000000000000000000000000abc", span_hex)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    )
    r = httpx.post(server.url + "/v1/traces", content=json.dumps(bad), headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert int(json.loads(r.content)["partialSuccess"]["rejectedSpans"]) == 1


def test_bad_input_gets_only_400_413_415_and_the_server_keeps_serving(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", server_max_body_bytes=64 << 10)
    try:
        rng = random.Random(5)
        valid = json.dumps(otlp_json_request("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")).encode()
        from google.protobuf.json_format import ParseDict
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        proto_req = otlp_json_request("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
        for sp in proto_req["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            sp["traceId"] = base64.b64encode(bytes.fromhex(sp["traceId"])).decode()
            sp["spanId"] = base64.b64encode(bytes.fromhex(sp["spanId"])).decode()
        proto_valid = ParseDict(proto_req, ExportTraceServiceRequest()).SerializeToString()
        codes: dict[int, int] = {}
        with httpx.Client() as client:
            for i in range(2000):
                kind = i % 8
                path = ["/v1/traces", "/v1/logs", "/v1/metrics"][i % 3]
                headers = {"Content-Type": "application/x-protobuf"}
                if kind == 0:
                    body = rng.randbytes(rng.randrange(1, 400))
                elif kind == 1:
                    body = proto_valid[: rng.randrange(1, len(proto_valid))]
                elif kind == 2:
                    body, headers = valid[: rng.randrange(1, len(valid))], {"Content-Type": "application/json"}
                elif kind == 3:
                    body = json.dumps(rng.choice([[], 1, "x", {"resourceSpans": 3}, {"resourceLogs": [{"x": []}]}]))
                    body, headers = body.encode(), {"Content-Type": "application/json"}
                elif kind == 4:
                    body, headers = valid, {"Content-Type": rng.choice(["text/plain", "", "application/xml"])}
                elif kind == 5:
                    body = rng.randbytes(rng.randrange(1, 200))
                    headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "br"])
                elif kind == 6:
                    body = gzip.compress(b"\x00" * (200 << 10))  # small on the wire, too large unpacked
                    headers["Content-Encoding"] = "gzip"
                else:
                    body = (
                        rng.randbytes(70 << 10) if i % 40 == 7 else bytes([rng.randrange(256)]) * rng.randrange(1, 50)
                    )
                r = client.post(server.url + path, content=body, headers=headers)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                assert r.status_code in (200, 400, 413, 415), (kind, r.status_code, r.content[:200])
        assert codes.get(400, 0) > 500 and codes.get(413, 0) > 100 and codes.get(415, 0) > 100
        assert httpx.get(server.url + "/health/live").status_code == 200
        r = httpx.post(
            server.url + "/v1/traces", content=proto_valid, headers={"Content-Type": "application/x-protobuf"}
        )
        assert r.status_code == 200
    finally:
        assert server.stop() == 0, server.stderr
    assert "Traceback" not in server.stderr


def test_metrics_move_and_sigterm_closes_the_store(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server = Server(tmp_path / "data")

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(server.url + "/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    try:
        before = scrape()
        assert before[("tael_wal_segments", ())] >= 1
        body = json.dumps(otlp_json_request("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")).encode()
        for _ in range(3):
            assert (
                httpx.post(
                    server.url + "/v1/traces", content=body, headers={"Content-Type": "application/json"}
                ).status_code
                == 200
            )
        after = scrape()
        key = ("tael_records_ingested_total", (("signal", "spans"),))
        assert after[key] - before.get(key, 0.0) == 3.0
        assert after[("tael_insert_seconds_count", (("signal", "spans"),))] == 3.0
        assert after[("tael_records", (("signal", "spans"), ("tier", "hot")))] == 1.0  # re-sent: stored once
        assert after[("tael_http_requests_total", (("code", "200"), ("route", "traces")))] == 3.0
        assert httpx.get(server.url + "/health/ready").json() == {"status": "ok"}
    finally:
        assert server.stop() == 0, server.stderr
    with tael.Store(tmp_path / "data") as store:  # the writer lock was released by a clean close
        assert store.replayed_records == 0
        assert len(store.get_trace("5b8efff798038103d269b633813fc60c")) == 1


def test_ready_turns_503_for_a_closed_or_read_only_store(tmp_path: Path) -> None:
    import uvicorn

    from tael._server import create_app

    def serve(store: tael.Store) -> tuple[uvicorn.Server, threading.Thread, str]:
        port = free_port()
        srv = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
        th = threading.Thread(target=srv.run, daemon=True)
        th.start()
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/health/live").status_code == 200, "the in-process server")
        return srv, th, url

    store = tael.Store(tmp_path / "data")
    srv, th, url = serve(store)
    try:
        assert httpx.get(url + "/health/ready").status_code == 200
        store.close()
        r = httpx.get(url + "/health/ready")
        assert r.status_code == 503 and r.json()["reasons"] == ["the store is closed"]
        body = json.dumps(otlp_json_request("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")).encode()
        r = httpx.post(url + "/v1/traces", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 503 and r.headers["retry-after"]
    finally:
        srv.should_exit = True
        th.join(10)
    with tael.Store(tmp_path / "data", read_only=True) as ro:
        srv, th, url = serve(ro)
        try:
            r = httpx.get(url + "/health/ready")
            assert r.status_code == 503 and r.json()["reasons"] == ["the store is open read-only"]
        finally:
            srv.should_exit = True
            th.join(10)
    assert os.path.exists(tmp_path / "data" / "LOCK")


def test_otlp_load_benchmark_quick_mode() -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/otlp_load.py", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "PROBLEMS" not in out.stdout
    assert "| spans stored / sent | 1,000 / 1,000 |" in out.stdout
    rate = float(out.stdout.split("| spans accepted end to end | ")[1].split(" spans/s")[0].replace(",", ""))
    assert rate > 0
    assert "| server peak RSS (VmHWM) |" in out.stdout
    # the hostile mix: every slow-header connection was answered 408 and closed
    assert "| slow-header connections: answers | 408: 20;" in out.stdout, out.stdout
    hostile = out.stdout.split("| hostile mix | result |")[1]
    peak = float(hostile.split("| server peak RSS (VmHWM) | ")[1].split(" MiB")[0].replace(",", ""))
    assert 0 < peak < 1024


def test_tael_serve_command_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tael", "serve", "--data", str(tmp_path / "data"), "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: httpx.get(url + "/health/ready").status_code == 200, "tael serve")
        body = json.dumps(otlp_json_request("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")).encode()
        assert (
            httpx.post(url + "/v1/traces", content=body, headers={"Content-Type": "application/json"}).status_code
            == 200
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    assert code == 0, err
    with tael.Store(tmp_path / "data") as store:
        assert store.replayed_records == 0, "the store was flushed and closed on SIGTERM"
        assert store.get_trace("5b8efff798038103d269b633813fc60c")[0].service == "json-svc"


def test_ready_reports_a_nearly_full_disk_and_failing_maintenance(tmp_path: Path) -> None:
    import uvicorn

    from tael._server import create_app

    with tael.Store(tmp_path / "data", tael.Settings(health_min_free_bytes=1 << 62)) as store:
        maintenance = tael.Maintenance(store)
        maintenance.consecutive_errors, maintenance.last_error = 3, "StorageError: disk on fire"
        port = free_port()
        srv = uvicorn.Server(
            uvicorn.Config(create_app(store, maintenance=maintenance), host="127.0.0.1", port=port, log_level="warning")
        )
        th = threading.Thread(target=srv.run, daemon=True)
        th.start()
        try:
            url = f"http://127.0.0.1:{port}"
            r = wait_for(lambda: httpx.get(url + "/health/ready"), "the in-process server")
            assert r.status_code == 503
            reasons = r.json()["reasons"]
            assert reasons[0].startswith("the disk is nearly full")
            assert reasons[1] == "the last 3 maintenance runs failed: StorageError: disk on fire"
        finally:
            srv.should_exit = True
            th.join(10)


def test_the_server_stores_and_answers_what_the_old_decoder_and_insert_did(tmp_path: Path) -> None:
    """Issue 16: ``tael serve`` decodes OTLP into column batches and stores them without a
    second check. The same requests, sent to the server and stored the old way (the
    decoder of model objects, tests/otlp_reference.py, then ``Store.insert_*``), get the
    same OTLP responses (partial success counts and messages) and leave stores that
    answer every read the same."""
    from tael import _otlp

    from .test_otlp import DIFFERENTIAL_SETTINGS, differential_requests, store_answers, store_through_reference

    requests = differential_requests()
    with tael.Store(tmp_path / "old", tael.Settings(**DIFFERENTIAL_SETTINGS)) as old:
        decoded = store_through_reference(old, requests)
        old.flush()
        server = Server(tmp_path / "new", **DIFFERENTIAL_SETTINGS)
        try:
            for (signal, body, content_type), ref in zip(requests, decoded, strict=True):
                kind = {"spans": "traces", "logs": "logs", "metrics": "metrics"}[signal]
                r = httpx.post(f"{server.url}/v1/{kind}", content=body, headers={"Content-Type": content_type})
                assert r.status_code == 200, r.content
                assert r.content == _otlp.encode_response(kind, content_type, ref.rejected, ref.error_message)
        finally:
            assert server.stop() == 0
        trace_ids = sorted({s.trace_id for s in old.query_traces(limit=10_000)})
        names = sorted({p.name for p in old.query_metrics(limit=100_000)})
        with reader(server.data) as new:
            assert store_answers(new, trace_ids, names) == store_answers(old, trace_ids, names)


def _span_batches(n: int, per: int) -> list[Any]:
    """``n`` column batches of ``per`` spans each (distinct ids), as the OTLP decoder makes them."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    from tael import _otlp

    batches: list[Any] = []
    for b in range(n):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="combined")))
        ss = rs.scope_spans.add()
        for i in range(per):
            sp = ss.spans.add()
            sp.trace_id = (b + 1).to_bytes(16, "big")
            sp.span_id = (b * 1000 + i + 1).to_bytes(8, "big")
            sp.name = f"op{i % 3}"
            sp.start_time_unix_nano = 1_700_000_000_000_000_000 + i
            sp.end_time_unix_nano = sp.start_time_unix_nano + 1000
            sp.attributes.append(KeyValue(key="i", value=AnyValue(int_value=i)))
        _otlp.decode_traces(req.SerializeToString(), "application/x-protobuf", batches.append)
    return batches


def _insert_while_busy(combiner: Any, batches: list[Any], gate: threading.Event) -> list[BaseException | None]:
    """Insert ``batches[0]`` (whose commit waits for ``gate``), then the others from threads
    of their own while it waits, then open the gate; returns each insert's error."""
    errors: list[BaseException | None] = [None] * len(batches)

    def insert(i: int) -> None:
        try:
            combiner.insert(batches[i])
        except BaseException as exc:
            errors[i] = exc

    first = threading.Thread(target=insert, args=(0,))
    first.start()
    wait_for(lambda: combiner._busy, "the first commit")
    others = [threading.Thread(target=insert, args=(i,)) for i in range(1, len(batches))]
    for t in others:
        t.start()
    wait_for(lambda: len(combiner._queue) == len(batches) - 1, "the other batches to queue")
    gate.set()
    for t in [first, *others]:
        t.join(30)
    return errors


def test_the_combiner_commits_batches_queued_meanwhile_as_one(tmp_path: Path) -> None:
    """Batches handed over while a commit is in flight are committed together, once, and
    each insert returns only after its own batch is stored; an error of that commit
    reaches every insert whose batch it held."""
    from tael._otlp.combine import Combiner

    batches = _span_batches(6, 10)
    with tael.Store(tmp_path / "data") as store:
        gate, calls = threading.Event(), []

        def commit(batch: Any) -> None:
            calls.append(batch.num_rows)
            if len(calls) == 1:
                assert gate.wait(30)
            store.insert_checked("spans", batch)

        combiner = Combiner(commit, max_rows=10_000, max_bytes=1 << 30)
        assert _insert_while_busy(combiner, batches, gate) == [None] * 6
        assert calls == [10, 50] and combiner.commits == 2
        assert store.stats().signals["spans"].count == 60
        assert {s.span_id for s in store.get_trace(f"{4:032x}")} == {f"{3000 + i + 1:016x}" for i in range(10)}
        # the limits split a queue: 25 rows at most, so two groups of two batches after the first
        calls.clear()
        gate = threading.Event()
        combiner = Combiner(commit, max_rows=25, max_bytes=1 << 30)
        assert _insert_while_busy(combiner, _span_batches(5, 10), gate) == [None] * 5
        assert calls == [10, 20, 20]
    # the store is closed: every insert of a group gets its commit's error
    calls.clear()
    gate = threading.Event()
    combiner = Combiner(commit, max_rows=10_000, max_bytes=1 << 30)
    errors = _insert_while_busy(combiner, batches[:3], gate)
    assert calls == [10, 20] and all(isinstance(e, tael.StoreClosedError) for e in errors), errors


def test_the_combiner_commits_one_by_one_what_is_too_large_for_one_frame(tmp_path: Path) -> None:
    """A combined batch over ``Settings.wal_max_record_bytes`` (ValidationError) is
    committed batch by batch: nothing is refused that would have been stored alone."""
    from tael import _block
    from tael._otlp.combine import Combiner

    batches = _span_batches(4, 20)
    one = len(_block.encode_block(batches[0], "spans"))
    three = len(_block.encode_block(pa_concat(batches[1:]), "spans"))
    assert one < three
    settings = tael.Settings(wal_max_record_bytes=max(1024, (one + three) // 2))
    with tael.Store(tmp_path / "data", settings) as store:
        gate, calls = threading.Event(), []

        def commit(batch: Any) -> None:
            calls.append(batch.num_rows)
            if len(calls) == 1:
                assert gate.wait(30)
            store.insert_checked("spans", batch)

        combiner = Combiner(commit, max_rows=10_000, max_bytes=1 << 30)
        assert _insert_while_busy(combiner, batches, gate) == [None] * 4
        assert calls == [20, 60, 20, 20, 20]
        assert store.stats().signals["spans"].count == 80


def pa_concat(batches: list[Any]) -> Any:
    import pyarrow as pa

    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches(max_chunksize=table.num_rows)[0]
