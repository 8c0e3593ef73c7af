"""``tael serve``'s OTLP/gRPC receiver over real gRPC on loopback: the OpenTelemetry SDK's
gRPC exporters for the three signals, gzip, tokens, TLS, partial success, the status
codes of refused exports (with RetryInfo when they may be retried), the port flag."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

import tael
from tael._grpcserver import GrpcServer, retry_metadata
from tael._server import create_app

from .test_security import ALL, TOKENS, pki, write_auth_file  # noqa: F401 (pki: a fixture)
from .test_server import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class GrpcServe:
    """``tael serve --grpc-port G`` in a subprocess (HTTP on another free port)."""

    def __init__(self, data: Path, *args: str, grpc_port: int | None = None, tls_ca: Path | None = None) -> None:
        self.data = data
        self.port = free_port()
        self.grpc_port = free_port() if grpc_port is None else grpc_port
        self.endpoint = f"127.0.0.1:{self.grpc_port}"
        scheme = "https" if tls_ca else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "tael", "serve", "--data", str(data), "--port", str(self.port)]
        cmd += ["--grpc-port", str(self.grpc_port), *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        verify: Any = True
        if tls_ca is not None:
            import ssl

            verify = ssl.create_default_context(cafile=str(tls_ca))
        wait_for(lambda: httpx.get(self.url + "/health/live", verify=verify).status_code == 200, "tael serve")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[GrpcServe]:
    s = GrpcServe(tmp_path / "data")
    try:
        yield s
    finally:
        s.stop()


def reader(data: Path) -> tael.Store:
    return tael.Store(data, read_only=True)


def samples(url: str, name: str, headers: dict[str, str] | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for fam in text_string_to_metric_families(httpx.get(url + "/metrics", headers=headers).text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def span_request(*, bad: int = 0, good: int = 2, service: str = "grpc-svc", trace: int = 1) -> Any:
    """``good`` valid spans of one trace (its id ``trace`` in every byte), then ``bad``
    spans whose trace id is 3 bytes."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for i in range(good + bad):
        sp = ss.spans.add()
        sp.trace_id = bytes([trace]) * 16 if i < good else b"\x01\x02\x03"
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.name = f"op{i}"
        sp.start_time_unix_nano = time.time_ns() - 1_000_000
        sp.end_time_unix_nano = time.time_ns()
    return req


# ---------------------------------------------------------------- the SDK's exporters


def test_sdk_grpc_exporters_write_all_three_signals_with_their_values(serve: GrpcServe) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    endpoint = f"http://{serve.endpoint}"
    resource = Resource.create({"service.name": "checkout-grpc", "deployment.environment": "test"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("shop.cart", "1.2.3")
    with tracer.start_as_current_span("POST /checkout", kind=trace.SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 500)
        root.set_attribute("ratio", 0.25)
        with tracer.start_as_current_span("SELECT cart") as child:
            child.set_status(trace.Status(trace.StatusCode.ERROR, "deadlock"))
    trace_id = format(root.get_span_context().trace_id, "032x")

    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    from opentelemetry._logs import SeverityNumber

    logs.get_logger("shop").emit(
        body="payment declined for order 42", severity_number=SeverityNumber.WARN, attributes={"order": 42}
    )
    reader_ = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True), 3_600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader_])
    meters.get_meter("shop").create_counter("orders").add(7, {"region": "eu"})
    meters.force_flush()
    for p in (provider, logs, meters):
        p.shutdown()

    with reader(serve.data) as store:
        spans = wait_for(lambda: len(store.get_trace(trace_id)) == 2 and store.get_trace(trace_id), "the spans")
        by_name = {s.name: s for s in spans}
        server = by_name["POST /checkout"]
        assert server.service == "checkout-grpc" and server.kind == "server"
        assert server.attributes["http.status_code"] == 500 and server.attributes["ratio"] == 0.25
        assert server.scope_name == "shop.cart" and server.scope_version == "1.2.3"
        assert server.resource["deployment.environment"] == "test"
        db = by_name["SELECT cart"]
        assert db.parent_span_id == server.span_id and db.status == "error" and db.status_message == "deadlock"
        got = wait_for(lambda: store.query_logs(service="checkout-grpc"), "the log")
        assert [(x.body, x.severity_number, x.attributes["order"]) for x in got] == [
            ("payment declined for order 42", 13, 42)
        ]
        points = wait_for(lambda: store.query_metrics(service="checkout-grpc"), "the metric points")
        # the reader exports at force_flush and again at shutdown: the same cumulative sum
        assert {(p.name, p.kind, p.value, p.attributes["region"]) for p in points} == {("orders", "sum", 7.0, "eu")}
    codes = samples(serve.url, "tael_grpc_requests_total")
    assert codes[(("code", "OK"), ("method", TRACE_EXPORT))] == 2.0
    assert codes[(("code", "OK"), ("method", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"))] == 1.0
    ingested = samples(serve.url, "tael_records_ingested_total")
    assert ingested == {(("signal", "spans"),): 2.0, (("signal", "logs"),): 1.0, (("signal", "metrics"),): len(points)}


def test_gzip_exports_are_decompressed_and_stored(serve: GrpcServe) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "zipped"}))
    exporter = OTLPSpanExporter(endpoint=serve.endpoint, insecure=True, compression=grpc.Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("compressed") as sp:
        sp.set_attribute("blob", "x" * 50_000)  # compresses to little
    provider.shutdown()
    # and a raw stub call with gzip: the response is OK and the spans are there
    with grpc.insecure_channel(serve.endpoint, compression=grpc.Compression.Gzip) as channel:
        reply = trace_service_pb2_grpc.TraceServiceStub(channel).Export(span_request(service="zipped-raw"))
        assert not reply.HasField("partial_success")
    with reader(serve.data) as store:
        got = wait_for(lambda: store.query_traces(service="zipped"), "the gzip span")
        assert got[0].name == "compressed" and got[0].attributes["blob"] == "x" * 50_000
        assert len(wait_for(lambda: store.query_traces(service="zipped-raw"), "the raw gzip spans")) == 2


# ---------------------------------------------------------------- partial success, bad input


def test_a_bad_record_is_rejected_alone_and_reported_in_partial_success(serve: GrpcServe) -> None:
    with grpc.insecure_channel(serve.endpoint) as channel:
        reply = trace_service_pb2_grpc.TraceServiceStub(channel).Export(span_request(good=3, bad=2))
        assert reply.partial_success.rejected_spans == 2
        assert "trace_id" in reply.partial_success.error_message
        logs = logs_service_pb2.ExportLogsServiceRequest()
        sl = logs.resource_logs.add().scope_logs.add()
        sl.log_records.add(time_unix_nano=5, body={"string_value": "kept"})
        sl.log_records.add(body={"string_value": "no time at all"})
        reply_logs = logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs)
        assert reply_logs.partial_success.rejected_log_records == 1
        assert reply_logs.partial_success.error_message
        metrics = metrics_service_pb2.ExportMetricsServiceRequest()
        m = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="temp")
        m.gauge.data_points.add(time_unix_nano=5, as_double=21.5)
        m.gauge.data_points.add(time_unix_nano=6, as_double=float("nan"))
        reply_metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics)
        assert reply_metrics.partial_success.rejected_data_points == 1
    with reader(serve.data) as store:
        assert sorted(s.name for s in wait_for(lambda: store.query_traces(service="grpc-svc"), "spans")) == [
            "op0",
            "op1",
            "op2",
        ]
        assert [x.body for x in wait_for(lambda: store.query_logs(), "the log")] == ["kept"]
        assert [p.value for p in wait_for(lambda: store.query_metrics(name="temp"), "the point")] == [21.5]
    rejected = samples(serve.url, "tael_records_rejected_total")
    assert rejected == {(("signal", "spans"),): 2.0, (("signal", "logs"),): 1.0, (("signal", "metrics"),): 1.0}


def test_undecodable_and_oversize_messages_get_permanent_status_codes(tmp_path: Path) -> None:
    conf = tmp_path / "tael.toml"
    conf.write_text("server_max_body_bytes = 4096\n")
    port, gport = free_port(), free_port()
    cmd = [sys.executable, "-m", "tael", "--config", str(conf), "serve", "--data", str(tmp_path / "d2")]
    proc = subprocess.Popen([*cmd, "--port", str(port), "--grpc-port", str(gport)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200, "tael serve")
        with grpc.insecure_channel(f"127.0.0.1:{gport}") as channel:
            raw = channel.unary_unary(TRACE_EXPORT)  # bytes in, bytes out
            with pytest.raises(grpc.RpcError) as bad:
                raw(b"\x0a\xff\xff\xff\xff\x0f garbage", timeout=10)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "malformed request" in (bad.value.details() or "")
            assert "google.rpc.retryinfo-bin" not in dict(bad.value.trailing_metadata() or ())
            big = span_request(good=1)
            big.resource_spans[0].scope_spans[0].spans[0].name = "n" * 5000
            with pytest.raises(grpc.RpcError) as large:
                trace_service_pb2_grpc.TraceServiceStub(channel).Export(big, timeout=10)
            assert large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "google.rpc.retryinfo-bin" not in dict(large.value.trailing_metadata() or ())
            ok = trace_service_pb2_grpc.TraceServiceStub(channel).Export(span_request(good=1), timeout=10)
            assert not ok.HasField("partial_success")
        codes = samples(f"http://127.0.0.1:{port}", "tael_grpc_requests_total")
        assert codes[(("code", "INVALID_ARGUMENT"), ("method", TRACE_EXPORT))] == 1.0
        assert codes[(("code", "OK"), ("method", TRACE_EXPORT))] == 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()
    with reader(tmp_path / "d2") as store:
        assert store.stats().signals["spans"].count == 1


# ---------------------------------------------------------------- throttle, RetryInfo


class InProcessGrpc:
    """A :class:`GrpcServer` over ``create_app(store, maintenance)``'s receiver, in an
    event loop of its own in a thread (as run_server does, without uvicorn). ``roots``:
    the paths it hides in error messages (run_server's ``data_roots``)."""

    def __init__(
        self,
        store: tael.Store,
        maintenance: tael.Maintenance | None = None,
        roots: list[tuple[str, str]] | None = None,
    ) -> None:
        self.app = create_app(store, maintenance=maintenance)
        self.server = GrpcServer(
            self.app.state.receiver,
            store.settings,
            port=free_port(),
            roots=roots or (),
            requests=self.app.state.metrics.grpc_requests,
        )
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(20), "the gRPC server did not start"
        self.endpoint = f"127.0.0.1:{self.server.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(5), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def test_a_throttled_export_gets_unavailable_with_retry_info_and_nothing_is_stored(tmp_path: Path) -> None:
    from google.rpc import error_details_pb2, status_pb2

    settings = tael.Settings(server_max_compaction_lag_s=60.0, server_throttle_wait_s=0.3)
    with tael.Store(tmp_path / "data", settings) as store:
        maintenance = tael.Maintenance(store)
        maintenance._caught_up_ns = 0  # as if no pass had finished since 1970: far behind
        srv = InProcessGrpc(store, maintenance)
        try:
            with grpc.insecure_channel(srv.endpoint) as channel:
                stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Export(span_request(), timeout=10)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "compaction is" in (refused.value.details() or "")
                trailing = dict(refused.value.trailing_metadata() or ())
                info = error_details_pb2.RetryInfo.FromString(trailing["google.rpc.retryinfo-bin"])
                assert info.retry_delay.seconds == 5
                status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
                assert status.code == grpc.StatusCode.UNAVAILABLE.value[0] and "compaction is" in status.message
                detail = error_details_pb2.RetryInfo()
                assert status.details[0].Unpack(detail) and detail.retry_delay.seconds == 5
                assert store.stats().signals["spans"].count == 0
                report = maintenance.run_once()  # a whole pass: caught up
                assert report.error is None
                stub.Export(span_request(), timeout=10)
                assert store.stats().signals["spans"].count == 2
            registry = srv.app.state.metrics.registry
            assert registry.get_sample_value("tael_otlp_throttled_total", {"outcome": "refused"}) == 1.0
            assert registry.get_sample_value("tael_grpc_requests_total", {"method": TRACE_EXPORT, "code": "OK"}) == 1
        finally:
            srv.close()


def test_retry_metadata_parses_with_googles_classes() -> None:
    from google.rpc import error_details_pb2, status_pb2

    meta = dict(retry_metadata(grpc.StatusCode.RESOURCE_EXHAUSTED, "full: ü", 7))
    assert error_details_pb2.RetryInfo.FromString(meta["google.rpc.retryinfo-bin"]).retry_delay.seconds == 7
    status = status_pb2.Status.FromString(meta["grpc-status-details-bin"])
    assert (status.code, status.message) == (8, "full: ü")
    assert status.details[0].type_url == "type.googleapis.com/google.rpc.RetryInfo"


def test_a_standby_refuses_grpc_writes_as_unavailable(tmp_path: Path) -> None:
    srv = GrpcServe(tmp_path / "standby", "--standby-of", "http://127.0.0.1:9")
    try:
        with grpc.insecure_channel(srv.endpoint) as channel, pytest.raises(grpc.RpcError) as refused:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(span_request(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "cannot take writes" in (refused.value.details() or "")
        assert "google.rpc.retryinfo-bin" in dict(refused.value.trailing_metadata() or ())
    finally:
        srv.stop()


# ---------------------------------------------------------------- overload, cancelled calls, errors


class Gate:
    """A store's ``insert_checked`` that holds every insert until :meth:`open` (``entered``
    is set once one waits), or raises ``fail`` instead: the export's worker thread
    parked at a known point, so tests need no timing."""

    def __init__(self, insert: Any, fail: Exception | None = None) -> None:
        self.insert, self.fail = insert, fail
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, signal: str, batch: Any) -> int:
        self.entered.set()
        if self.fail is not None:
            raise self.fail
        assert self.opened.wait(60), "the gate was never opened"
        return int(self.insert(signal, batch))

    def open(self) -> None:
        self.opened.set()


def gated(store: tael.Store, monkeypatch: pytest.MonkeyPatch, fail: Exception | None = None) -> Gate:
    """Gate ``store``'s inserts (before ``create_app``, which takes the bound method)."""
    gate = Gate(store.insert_checked, fail)
    monkeypatch.setattr(store, "insert_checked", gate)
    return gate


def grpc_count(srv: InProcessGrpc, code: str) -> float:
    value = srv.app.state.metrics.registry.get_sample_value(
        "tael_grpc_requests_total", {"method": TRACE_EXPORT, "code": code}
    )
    return float(value or 0.0)


def test_a_call_past_the_inflight_slots_gets_unavailable_with_retry_info_not_grpcs_permanent_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpc's own ``maximum_concurrent_rpcs`` answers RESOURCE_EXHAUSTED without RetryInfo
    (permanent: the Collector, Go and Java exporters drop the batch); past
    ``server_max_inflight`` the receiver's UNAVAILABLE with RetryInfo must answer."""
    with tael.Store(tmp_path / "data", tael.Settings(server_max_inflight=1)) as store:
        gate = gated(store, monkeypatch)
        srv = InProcessGrpc(store)
        try:
            with grpc.insecure_channel(srv.endpoint) as channel:
                stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                first = stub.Export.future(span_request(service="first"), timeout=60)
                assert gate.entered.wait(20), "the first export never reached the insert"
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Export(span_request(service="second"), timeout=20)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
                assert "too many requests in flight" in (refused.value.details() or "")
                assert "google.rpc.retryinfo-bin" in dict(refused.value.trailing_metadata() or ())
                gate.open()
                assert not first.result(30).HasField("partial_success")
            assert {s.service for s in store.query_traces()} == {"first"}
            assert (grpc_count(srv, "OK"), grpc_count(srv, "UNAVAILABLE")) == (1.0, 1.0)
        finally:
            gate.open()
            srv.close()


def test_calls_waiting_for_the_throttle_do_not_make_grpc_refuse_permanently(tmp_path: Path) -> None:
    """Calls held by the throttle (compaction behind) are calls in progress for grpc: past
    twice ``server_max_inflight`` of them tael answers UNAVAILABLE with RetryInfo itself,
    long before grpc's backstop would answer RESOURCE_EXHAUSTED."""
    settings = tael.Settings(server_max_inflight=1, server_max_compaction_lag_s=60.0, server_throttle_wait_s=60.0)
    with tael.Store(tmp_path / "data", settings) as store:
        maintenance = tael.Maintenance(store)
        maintenance._caught_up_ns = 0  # far behind: every export waits in the throttle
        srv = InProcessGrpc(store, maintenance)
        try:
            with grpc.insecure_channel(srv.endpoint) as channel:
                stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                waiting = [stub.Export.future(span_request(service=f"w{i}"), timeout=90) for i in range(2)]
                wait_for(lambda: srv.server.calls == 2, "two calls waiting in the throttle")
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Export(span_request(service="third"), timeout=20)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
                assert "google.rpc.retryinfo-bin" in dict(refused.value.trailing_metadata() or ())
                assert all(not w.done() for w in waiting)
                assert maintenance.run_once().error is None  # caught up: the waiting calls go ahead
                codes = []
                for w in waiting:
                    try:
                        w.result(60)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as exc:  # the other took the one slot at that instant
                        codes.append(exc.code())
                assert grpc.StatusCode.OK in codes and set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
            assert grpc_count(srv, "RESOURCE_EXHAUSTED") == 0.0
            assert "third" not in {s.service for s in store.query_traces()}
        finally:
            srv.close()


def test_a_cancelled_call_holds_its_slot_and_memory_until_its_worker_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client deadline cancels the handler, but the worker thread goes on decoding and
    inserting: its in-flight slot and memory reservation are held until it ends, so
    cancelled calls cannot take the server past its limits; what it wrote is counted."""
    with tael.Store(tmp_path / "data", tael.Settings(server_max_inflight=1)) as store:
        gate = gated(store, monkeypatch)
        srv = InProcessGrpc(store)
        budget = srv.app.state.metrics.budget
        try:
            with grpc.insecure_channel(srv.endpoint) as channel:
                stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                call = stub.Export.future(span_request(service="abandoned"), timeout=60)
                assert gate.entered.wait(20), "the export never reached the insert"
                call.cancel()  # as a client deadline does: grpc cancels the handler
                wait_for(lambda: grpc_count(srv, "CANCELLED") == 1.0, "the server to see the call cancelled")
                assert budget.used > 0  # the worker still decodes and inserts: its memory stays reserved
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Export(span_request(service="next"), timeout=20)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
                assert "too many requests in flight" in (refused.value.details() or "")
                gate.open()
                wait_for(lambda: budget.used == 0, "the worker to end and release its memory")
                ok = stub.Export(span_request(service="after", trace=2), timeout=20)  # the slot is free again
                assert not ok.HasField("partial_success")
            assert sorted({s.service for s in store.query_traces()}) == ["abandoned", "after"]
            registry = srv.app.state.metrics.registry
            assert registry.get_sample_value("tael_records_ingested_total", {"signal": "spans"}) == 4.0
        finally:
            gate.open()
            srv.close()


def test_a_retryable_refusal_hides_the_data_directory_in_its_status_details(tmp_path: Path) -> None:
    from google.rpc import status_pb2

    from tael._auth import data_roots

    tael.Store(tmp_path / "data").close()
    with tael.Store(tmp_path / "data", read_only=True) as store:  # writes: ReadOnlyError naming the path
        srv = InProcessGrpc(store, roots=data_roots(store.path))
        try:
            with grpc.insecure_channel(srv.endpoint) as channel, pytest.raises(grpc.RpcError) as refused:
                trace_service_pb2_grpc.TraceServiceStub(channel).Export(span_request(), timeout=20)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            details = refused.value.details() or ""
            assert "the store at <data> was opened read_only=True" in details and str(tmp_path) not in details
            trailing = dict(refused.value.trailing_metadata() or ())
            status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
            assert status.message == details
        finally:
            srv.close()


def test_an_unexpected_failure_is_logged_and_answered_internal_with_a_generic_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tael._auth import data_roots

    with tael.Store(tmp_path / "data") as store:
        secret = f"cannot frob {store.path}/wal/000001.log"
        gated(store, monkeypatch, fail=RuntimeError(secret))
        srv = InProcessGrpc(store, roots=data_roots(store.path))
        try:
            with caplog.at_level("ERROR", logger="tael._grpcserver"):
                with grpc.insecure_channel(srv.endpoint) as channel, pytest.raises(grpc.RpcError) as failed:
                    trace_service_pb2_grpc.TraceServiceStub(channel).Export(span_request(), timeout=20)
                wait_for(lambda: grpc_count(srv, "INTERNAL") == 1.0, "the call counted")
            assert failed.value.code() == grpc.StatusCode.INTERNAL
            details = failed.value.details() or ""
            assert details == "internal error; the server's log has the details"
            assert "grpc-status-details-bin" not in dict(failed.value.trailing_metadata() or ())
            logged = [r for r in caplog.records if r.name == "tael._grpcserver" and r.exc_info]
            assert len(logged) == 1 and TRACE_EXPORT in logged[0].getMessage()
            assert logged[0].exc_info is not None and str(logged[0].exc_info[1]) == secret
        finally:
            srv.close()


# ---------------------------------------------------------------- auth and TLS


def test_tokens_in_metadata_unauthenticated_permission_denied_and_accepted(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    auth = write_auth_file(tmp_path / "auth.toml")
    srv = GrpcServe(tmp_path / "data", "--auth-file", str(auth))
    try:
        with grpc.insecure_channel(srv.endpoint) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            cases = [
                ((), grpc.StatusCode.UNAUTHENTICATED),
                ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED),
                ((("authorization", "Bearer not-a-known-token-0123456789"),), grpc.StatusCode.UNAUTHENTICATED),
                ((("authorization", f"Bearer {TOKENS['query']}"),), grpc.StatusCode.PERMISSION_DENIED),
            ]
            for metadata, code in cases:
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Export(span_request(service="nobody"), metadata=metadata, timeout=10)
                assert refused.value.code() == code, metadata
            assert "'ingest' scope" in (refused.value.details() or "")
            stub.Export(span_request(service="raw-ingest"), metadata=(("authorization", f"Bearer {ALL}"),))
        provider = TracerProvider(resource=Resource.create({"service.name": "sdk-ingest"}))
        exporter = OTLPSpanExporter(
            endpoint=srv.endpoint, insecure=True, headers={"authorization": f"Bearer {TOKENS['ingest']}"}
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("t").start_as_current_span("with the ingest token"):
            pass
        provider.shutdown()
        with reader(srv.data) as store:
            wait_for(lambda: store.query_traces(service="sdk-ingest"), "the SDK's span")
            assert len(store.query_traces(service="raw-ingest")) == 2
            assert store.query_traces(service="nobody") == []
    finally:
        srv.stop()


def test_grpc_over_tls_with_the_http_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:  # noqa: F811
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tls = ("--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]))
    srv = GrpcServe(tmp_path / "data", *tls, tls_ca=pki["ca"])
    try:
        creds = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        provider = TracerProvider(resource=Resource.create({"service.name": "over-tls"}))
        exporter = OTLPSpanExporter(endpoint=f"https://localhost:{srv.grpc_port}", credentials=creds)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("t").start_as_current_span("encrypted"):
            pass
        provider.shutdown()
        with reader(srv.data) as store:
            assert wait_for(lambda: store.query_traces(service="over-tls"), "the TLS span")[0].name == "encrypted"
        with grpc.insecure_channel(srv.endpoint) as plain, pytest.raises(grpc.RpcError) as refused:
            trace_service_pb2_grpc.TraceServiceStub(plain).Export(span_request(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # no plaintext on the TLS port
        other = grpc.ssl_channel_credentials(pki["other_ca"].read_bytes())
        with grpc.secure_channel(f"localhost:{srv.grpc_port}", other) as wrong, pytest.raises(grpc.RpcError):
            trace_service_pb2_grpc.TraceServiceStub(wrong).Export(span_request(), timeout=5)
    finally:
        srv.stop()


# ---------------------------------------------------------------- the port


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state held by the sockets of process ``pid`` (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                f = line.split()
                if f[3] == "0A" and f[9] in inodes:
                    ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_grpc_port_zero_serves_no_grpc_and_a_port_serves_it(tmp_path: Path) -> None:
    off = GrpcServe(tmp_path / "off", grpc_port=0)
    on = GrpcServe(tmp_path / "on")
    try:
        assert listening_ports(off.proc.pid) == {off.port}
        assert listening_ports(on.proc.pid) == {on.port, on.grpc_port}
    finally:
        off.stop()
        on.stop()


def test_grpc_port_in_use_fails_clearly_before_the_data_directory_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        cmd = [sys.executable, "-m", "tael", "serve", "--data", str(data), "--port", str(free_port())]
        proc = subprocess.run([*cmd, "--grpc-port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"cannot listen for OTLP/gRPC on 127.0.0.1:{port}" in proc.stderr
    assert "already in use" in proc.stderr and "--grpc-port" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not data.exists()


def test_serve_help_shows_the_grpc_port() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tael", "serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    assert "--grpc-port" in out and "4317" in out


def test_otlp_load_benchmark_measures_grpc_beside_http() -> None:
    """benchmarks/otlp_load.py --protocol both: the same spans from the same clients over
    both protocols against one server, every span stored (the script checks it)."""
    out = subprocess.run(
        [sys.executable, "benchmarks/otlp_load.py", "--quick", "--protocol", "both", "--rounds", "1", "--no-hostile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "PROBLEMS" not in out.stdout
    assert "| spans stored / sent | 2,000 / 2,000 |" in out.stdout
    for label in ("OTLP/HTTP", "OTLP/gRPC"):
        line = out.stdout.split(f"| spans accepted end to end, {label} | ")[1]
        assert float(line.split(" spans/s")[0].replace(",", "")) > 0
        assert "(1,000 in " in line.split("\n")[0]
