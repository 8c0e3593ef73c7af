"""OTLP/HTTP decoding: real SDK requests, OTLP JSON, partial rejection, malformed bodies, replies.

Requests come from the OpenTelemetry SDK's own OTLP encoders where that is easy,
and from protobuf messages built by hand for the cases an SDK never produces.
Every accepted record is fed through tael's own batch encoders, which validate
exactly as ``Store.insert_*`` does, so "valid by construction" is checked, not assumed.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tael import _codec
from tael._blobs import Payloads
from tael._columns import log_columns, metric_columns, span_columns
from tael._models import LogRecord, MetricPoint, Span
from tael._otlp import (
    CONTENT_TYPES,
    MAX_ERRORS,
    Decoded,
    OtlpError,
    decode_logs,
    decode_metrics,
    decode_traces,
    encode_response,
    encode_status,
)
from tael._otlp.wire import varint

from . import otlp_reference as reference

PB, JS = "application/x-protobuf", "application/json"
T0 = 1_700_000_000_000_000_000
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
PARENT = bytes.fromhex("eee19b7ec3c1b173")
PAYLOADS = Payloads(("gen_ai.prompt",), 1024)


def storable_spans(spans: Sequence[Span]) -> None:
    """Raises ValidationError if Store.insert_spans would refuse the batch."""
    _codec.encode_spans(spans, PAYLOADS)


def storable_logs(logs: Sequence[LogRecord]) -> None:
    _codec.encode_logs(logs, PAYLOADS)


def storable_points(points: Sequence[MetricPoint]) -> None:
    _codec.encode_metrics(points)


# ---------------------------------------------------------------- protobuf builders


def av(value: Any) -> AnyValue:
    """A Python value as an AnyValue (bytes as bytes_value, None as an empty AnyValue)."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[av(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=kvs(value)))
    raise TypeError(value)


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=av(v)) for k, v in attrs.items()]


def resource(service: str | None = "svc", **extra: Any) -> dict[str, Any]:
    attrs = dict(extra)
    if service is not None:
        attrs["service.name"] = service
    return {"attributes": kvs(attrs)}


def pb_span(**kw: Any) -> trace_pb2.Span:
    fields: dict[str, Any] = {
        "trace_id": TRACE,
        "span_id": SPAN,
        "name": "op",
        "start_time_unix_nano": T0,
        "end_time_unix_nano": T0 + 1000,
    }
    fields.update(kw)
    return trace_pb2.Span(**fields)


def trace_request(*spans: trace_pb2.Span, service: str | None = "svc", **scope: Any) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource(service),
                scope_spans=[trace_pb2.ScopeSpans(scope=scope or None, spans=list(spans))],
            )
        ]
    )


def pb_log(**kw: Any) -> logs_pb2.LogRecord:
    fields: dict[str, Any] = {"time_unix_nano": T0, "body": av("hello")}
    fields.update(kw)
    return logs_pb2.LogRecord(**fields)


def logs_request(*records: logs_pb2.LogRecord, service: str | None = "svc") -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource(service),
                scope_logs=[logs_pb2.ScopeLogs(scope={"name": "logger", "version": "2.0"}, log_records=list(records))],
            )
        ]
    )


def number_point(value: float | int = 1.0, **kw: Any) -> metrics_pb2.NumberDataPoint:
    fields: dict[str, Any] = {"time_unix_nano": T0, "start_time_unix_nano": T0 - 10**9}
    fields["as_int" if isinstance(value, int) else "as_double"] = value
    fields.update(kw)
    return metrics_pb2.NumberDataPoint(**fields)


def metrics_request(
    *metrics: metrics_pb2.Metric, service: str | None = "svc", **res: Any
) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource(service, **res),
                scope_metrics=[metrics_pb2.ScopeMetrics(scope={"name": "meter"}, metrics=list(metrics))],
            )
        ]
    )


def gauge(name: str, *points: metrics_pb2.NumberDataPoint, unit: str = "") -> metrics_pb2.Metric:
    return metrics_pb2.Metric(name=name, unit=unit, gauge=metrics_pb2.Gauge(data_points=list(points)))


# ---------------------------------------------------------------- OTLP JSON from a protobuf message

_ID_FIELDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def to_otlp_json(message: Any, *, snake: bool = False, int64_as_numbers: bool = False) -> bytes:
    """The OTLP JSON encoding of a request: proto3 JSON with hex ids and integer enums."""
    doc = json_format.MessageToDict(message, use_integers_for_enums=True, preserving_proto_field_name=snake)

    def fix(node: Any, parent_key: str = "") -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key in _ID_FIELDS and isinstance(value, str):
                    out[key] = base64.b64decode(value).hex()
                elif key in ("exemplars",):
                    out[key] = value
                else:
                    out[key] = fix(value, key)
            return out
        if isinstance(node, list):
            return [fix(v, parent_key) for v in node]
        if int64_as_numbers and isinstance(node, str) and node.isdigit() and parent_key.endswith(("Nano", "_nano")):
            return int(node)
        return node

    return json.dumps(fix(doc)).encode()


# ---------------------------------------------------------------- spans from the SDK


def _sdk_spans() -> list[Any]:
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "service.version": "1.2.3", "host.ips": ["a", "b"]})
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.cart", "0.9", attributes={"scope.key": "scope-value"})
    other = trace_api.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=trace_api.TraceFlags(1),
    )
    with tracer.start_as_current_span(
        "POST /checkout",
        kind=SpanKind.SERVER,
        attributes={"http.status_code": 500, "ratio": 0.25, "ok": False, "tags": ["x", "y"], "n": [1, 2]},
        start_time=T0,
        end_on_exit=False,
    ) as root:
        root.add_event("retry", {"attempt": 2}, timestamp=T0 + 10)
        with tracer.start_as_current_span(
            "charge", kind=SpanKind.CLIENT, links=[Link(other, {"why": "batch"})], start_time=T0 + 20, end_on_exit=False
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "card declined"))
            child.end(end_time=T0 + 500)
        for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
            tracer.start_span(kind.name.lower(), kind=kind, start_time=T0 + 30).end(end_time=T0 + 40)
        root.set_status(Status(StatusCode.OK))
        root.end(end_time=T0 + 1000)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _plain(value: Any) -> Any:
    """SDK attribute values as tael stores them (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_sdk_spans_decode_field_by_field(content_type: str) -> None:
    sdk_spans = _sdk_spans()
    request = encode_spans(sdk_spans)
    body = request.SerializeToString() if content_type == PB else to_otlp_json(request)
    decoded = decode_traces(body, content_type)
    assert decoded.rejected == 0 and decoded.errors == []
    assert len(decoded.records) == len(sdk_spans) == 5
    by_name = {s.name: s for s in decoded.records}
    kinds = {"POST /checkout": "server", "charge": "client", "producer": "producer", "consumer": "consumer"}
    for sdk in sdk_spans:
        span = by_name[sdk.name]
        ctx = sdk.get_span_context()
        assert span.trace_id == f"{ctx.trace_id:032x}"
        assert span.span_id == f"{ctx.span_id:016x}"
        assert span.parent_span_id == (f"{sdk.parent.span_id:016x}" if sdk.parent else None)
        assert (span.start_ns, span.end_ns) == (sdk.start_time, sdk.end_time)
        assert span.kind == kinds.get(sdk.name, "internal")
        assert span.service == "checkout"
        assert span.resource == {
            **{k: _plain(v) for k, v in sdk.resource.attributes.items()},
            "otel.scope.attributes": {"scope.key": "scope-value"},
        }
        assert (span.scope_name, span.scope_version) == ("shop.cart", "0.9")
        assert span.attributes == {k: _plain(v) for k, v in sdk.attributes.items()}
        assert span.flags == 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, set by the SDK encoder
    root, child = by_name["POST /checkout"], by_name["charge"]
    assert root.parent_span_id is None
    assert (root.status, child.status, child.status_message) == ("ok", "error", "card declined")
    assert by_name["producer"].status == "unset"
    assert root.attributes["tags"] == ["x", "y"] and root.attributes["ratio"] == 0.25
    assert [(e.time_ns, e.name, e.attributes) for e in root.events] == [(T0 + 10, "retry", {"attempt": 2})]
    assert len(child.links) == 1
    link = child.links[0]
    assert (link.trace_id, link.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert link.attributes == {"why": "batch", "otel.flags": 0x300}  # remote link: HAS_IS_REMOTE | IS_REMOTE
    storable_spans(decoded.records)


def test_span_extras_kept() -> None:
    span = pb_span(
        parent_span_id=PARENT,
        kind=trace_pb2.Span.SPAN_KIND_UNSPECIFIED,
        trace_state="vendor=a,other=b",
        flags=0x301,
        dropped_attributes_count=3,
        dropped_events_count=4,
        dropped_links_count=0,
        attributes=kvs({"b": b"\x00\xff", "none": None, "deep": {"l": [1, {"m": 2.5}]}}),
        events=[trace_pb2.Span.Event(time_unix_nano=T0 + 1, name="e", dropped_attributes_count=2)],
        links=[
            trace_pb2.Span.Link(trace_id=TRACE, span_id=PARENT, trace_state="k=v", dropped_attributes_count=1),
            trace_pb2.Span.Link(trace_id=TRACE, span_id=SPAN),
        ],
        status=trace_pb2.Status(code=7, message="odd"),  # an unknown status code
    )
    request = trace_request(span, name="lib", version="3", attributes=kvs({"a": 1}), dropped_attributes_count=1)
    request.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.21.0"
    request.resource_spans[0].scope_spans[0].schema_url = "https://example.com/scope"
    request.resource_spans[0].resource.dropped_attributes_count = 5
    (got,) = decode_traces(request.SerializeToString(), PB).records
    assert got.parent_span_id == PARENT.hex()
    assert got.kind == "internal" and got.status == "unset" and got.status_message == "odd"
    assert got.trace_state == "vendor=a,other=b" and got.flags == 0x301
    assert got.attributes == {
        "b": "00ff",
        "none": None,
        "deep": {"l": [1, {"m": 2.5}]},
        "otel.dropped_attributes_count": 3,
        "otel.dropped_events_count": 4,
    }
    assert got.events[0].attributes == {"otel.dropped_attributes_count": 2}
    assert got.links[0].attributes == {"otel.trace_state": "k=v", "otel.dropped_attributes_count": 1}
    assert got.links[1].attributes == {}
    assert got.resource == {
        "service.name": "svc",
        "otel.dropped_attributes_count": 5,
        "otel.schema_url": "https://opentelemetry.io/schemas/1.21.0",
        "otel.scope.attributes": {"a": 1, "otel.dropped_attributes_count": 1},
        "otel.scope.schema_url": "https://example.com/scope",
    }
    assert (got.scope_name, got.scope_version) == ("lib", "3")
    storable_spans([got])


@pytest.mark.parametrize(
    ("attrs", "service"),
    [
        ({}, "unknown_service"),
        ({"service.name": ""}, "unknown_service"),
        ({"service.name": 42}, "unknown_service"),
        ({"service.name": "api"}, "api"),
    ],
)
def test_service_name_from_resource(attrs: dict[str, Any], service: str) -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource={"attributes": kvs(attrs)}, scope_spans=[trace_pb2.ScopeSpans(spans=[pb_span()])]
            )
        ]
    )
    (got,) = decode_traces(request.SerializeToString(), PB).records
    assert got.service == service
    assert got.resource == attrs


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"trace_id": TRACE[:15]}, "trace_id must be 16 bytes, got 15"),
        ({"trace_id": b""}, "trace_id must be 16 bytes, got 0"),
        ({"trace_id": bytes(16)}, "trace_id is all zeros"),
        ({"span_id": bytes(8)}, "span_id is all zeros"),
        ({"span_id": SPAN + b"\x01"}, "span_id must be 8 bytes, got 9"),
        ({"parent_span_id": b"\x01\x02"}, "parent_span_id must be 8 bytes, got 2"),
        ({"start_time_unix_nano": T0, "end_time_unix_nano": T0 - 1}, "is before start_time_unix_nano"),
        ({"start_time_unix_nano": 0, "end_time_unix_nano": 5}, "start_time_unix_nano is missing"),
        ({"end_time_unix_nano": 2**63}, "past 2**63-1"),
        ({"events": [trace_pb2.Span.Event(time_unix_nano=2**64 - 1)]}, "events[0].time_unix_nano"),
        ({"links": [trace_pb2.Span.Link(trace_id=TRACE, span_id=b"")]}, "links[0].span_id must be 8 bytes"),
        ({"links": [trace_pb2.Span.Link(trace_id=bytes(16), span_id=SPAN)]}, "links[0].trace_id is all zeros"),
        ({"attributes": kvs({"deep": [[[[]]]]})}, None),  # nested, well within the limit
    ],
)
def test_bad_spans_rejected_individually(overrides: dict[str, Any], problem: str | None) -> None:
    good = pb_span(span_id=PARENT)
    body = trace_request(good, pb_span(**overrides), good).SerializeToString()
    decoded = decode_traces(body, PB)
    if problem is None:
        assert decoded.rejected == 0 and len(decoded.records) == 3
        return
    assert decoded.rejected == 1 and len(decoded.records) == 2
    assert decoded.errors[0].startswith("resourceSpans[0].scopeSpans[0].spans[1]: ")
    assert problem in decoded.errors[0]
    assert problem in decoded.error_message
    storable_spans(decoded.records)


def test_all_zero_parent_means_root() -> None:
    (got,) = decode_traces(trace_request(pb_span(parent_span_id=bytes(8))).SerializeToString(), PB).records
    assert got.parent_span_id is None


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_limit_matches_tael_validation() -> None:
    ok, too_deep = pb_span(attributes=kvs({"k": nested(32)})), pb_span(attributes=kvs({"k": nested(33)}))
    decoded = decode_traces(trace_request(ok, too_deep).SerializeToString(), PB)
    assert decoded.rejected == 1 and "nested 32" in decoded.errors[0]
    storable_spans(decoded.records)  # the deepest accepted value is storable
    # one level inside the resource dict: scope attributes get one level less
    scoped = trace_request(pb_span(), name="s", attributes=kvs({"k": nested(32)}))
    assert decode_traces(scoped.SerializeToString(), PB).rejected == 1
    scoped = trace_request(pb_span(), name="s", attributes=kvs({"k": nested(31)}))
    storable_spans(decode_traces(scoped.SerializeToString(), PB).records)


def test_bad_service_name_rejects_its_resource_only() -> None:
    request = trace_request(pb_span(), pb_span(span_id=PARENT), service="bad\x00name")
    request.resource_spans.append(trace_request(pb_span(), service="x" * 401).resource_spans[0])
    request.resource_spans.append(trace_request(pb_span(), service="ok").resource_spans[0])
    decoded = decode_traces(request.SerializeToString(), PB)
    assert decoded.rejected == 3 and [s.service for s in decoded.records] == ["ok"]
    assert "NUL" in decoded.errors[0] and "400 bytes" in decoded.errors[2]


def test_errors_capped_count_exact() -> None:
    spans = [pb_span(trace_id=b"short") for _ in range(25)]
    decoded = decode_traces(trace_request(*spans).SerializeToString(), PB)
    assert decoded.rejected == 25 and len(decoded.errors) == MAX_ERRORS
    assert decoded.error_message.endswith("and 15 more")


# ---------------------------------------------------------------- OTLP JSON


def test_otlp_json_hand_written() -> None:
    """The example shape from the OTLP specification: camelCase, hex ids, int64 strings, int enums."""
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "EEE19B7EC3C1B173",
                                "name": "I'm a server span",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "kind": 2,
                                "status": {"code": 2, "message": "oops"},
                                "attributes": [
                                    {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                                    {"key": "count", "value": {"intValue": "9007199254740993"}},
                                    {"key": "raw", "value": {"bytesValue": "AP8="}},
                                    {"key": "nan", "value": {"doubleValue": "NaN"}},
                                ],
                                "links": [
                                    {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}
                                ],
                                "droppedEventsCount": 2,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    decoded = decode_traces(json.dumps(doc).encode(), JS)
    assert decoded.rejected == 0
    (span,) = decoded.records
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert (span.span_id, span.parent_span_id) == ("eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (span.start_ns, span.end_ns) == (1544712660000000000, 1544712661000000000)
    assert (span.kind, span.status, span.status_message) == ("server", "error", "oops")
    assert span.attributes["count"] == 9007199254740993  # beyond a double's exact range: kept exact
    assert span.attributes["raw"] == "00ff" and math.isnan(span.attributes["nan"])
    assert span.attributes["otel.dropped_events_count"] == 2
    assert span.links[0].trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert (span.service, span.scope_name, span.scope_version) == ("my.service", "my.library", "1.0.0")
    storable_spans(decoded.records)


@pytest.mark.parametrize("snake", [False, True])
@pytest.mark.parametrize("numbers", [False, True])
def test_same_request_protobuf_and_json_decode_identically(snake: bool, numbers: bool) -> None:
    request = encode_spans(_sdk_spans())
    from_pb = decode_traces(request.SerializeToString(), PB)
    from_json = decode_traces(to_otlp_json(request, snake=snake, int64_as_numbers=numbers), JS)
    assert from_pb == from_json and from_pb.records


@pytest.mark.parametrize(
    ("span_json", "problem"),
    [
        ({"traceId": "zz" * 16}, "traceId must be a hex string"),
        ({"spanId": "eee19b7ec3c1b17"}, "spanId must be a hex string"),  # odd length
        ({"spanId": "eee19b7e c3c1b17"}, "spanId must be a hex string"),  # fromhex would skip the space
        ({"spanId": 12345}, "spanId must be a hex string"),
        ({"parentSpanId": "xx"}, "parentSpanId must be a hex string"),
        ({"traceId": base64.b64encode(TRACE).decode()}, "hex string"),  # base64, as canonical proto3 JSON has it
        ({"links": [{"traceId": TRACE.hex(), "spanId": "nothex!!"}]}, "links[0].spanId must be a hex string"),
        ({"trace_id": "ab" * 15}, "trace_id must be 16 bytes, got 15"),
    ],
)
def test_bad_json_ids_reject_the_record_only(span_json: dict[str, Any], problem: str) -> None:
    base = {"traceId": TRACE.hex(), "spanId": SPAN.hex(), "name": "x", "startTimeUnixNano": "5", "endTimeUnixNano": "6"}
    bad = {**base, **span_json}
    if "trace_id" in span_json:
        del bad["traceId"]
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [base, bad]}]}]}
    decoded = decode_traces(json.dumps(doc).encode(), JS)
    assert len(decoded.records) == 1 and decoded.rejected == 1
    assert decoded.errors[0].startswith("resourceSpans[0].scopeSpans[0].spans[1]: ")
    assert problem in decoded.errors[0]


def test_json_logs_and_metrics() -> None:
    logs_doc = {
        "resource_logs": [
            {
                "scope_logs": [
                    {
                        "log_records": [
                            {
                                "time_unix_nano": "1544712660300000000",
                                "severity_number": 10,
                                "severity_text": "Information",
                                "trace_id": TRACE.hex(),
                                "span_id": SPAN.hex(),
                                "body": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "1"}}]}},
                            },
                            {"timeUnixNano": "1", "traceId": "not hex"},
                        ]
                    }
                ]
            }
        ]
    }
    logs = decode_logs(json.dumps(logs_doc).encode(), JS)
    assert logs.rejected == 1 and "traceId must be a hex string" in logs.errors[0]
    (rec,) = logs.records
    assert (rec.time_ns, rec.severity_number, rec.severity_text) == (1544712660300000000, 10, "Information")
    assert (rec.trace_id, rec.span_id, rec.body) == (TRACE.hex(), SPAN.hex(), '{"a":1}')
    assert rec.service == "unknown_service" and rec.attributes == {"otel.body_type": "kvlist"}
    metrics_doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "m"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "reqs",
                                "unit": "1",
                                "sum": {
                                    "aggregationTemporality": 1,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "asInt": "7",
                                            "timeUnixNano": "1544712660300000000",
                                            "exemplars": [{"traceId": 5, "asInt": "1"}],  # dropped, never parsed
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }
    metrics = decode_metrics(json.dumps(metrics_doc).encode(), JS)
    assert metrics.rejected == 0
    (point,) = metrics.records
    assert (point.name, point.kind, point.value, point.temporality, point.monotonic) == (
        "reqs",
        "sum",
        7.0,
        "delta",
        True,
    )
    assert (point.service, point.unit, point.start_ns) == ("m", "1", None)


def test_json_content_type_is_case_insensitive_and_tolerates_bom() -> None:
    body = b"\xef\xbb\xbf" + to_otlp_json(trace_request(pb_span()))
    assert len(decode_traces(body, "Application/JSON").records) == 1


# ---------------------------------------------------------------- logs


def _sdk_logs() -> list[Any]:
    from opentelemetry import trace as trace_api
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": "billing"}))
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("billing.jobs", "4.5")
    ctx = trace_api.set_span_in_context(
        trace_api.NonRecordingSpan(
            trace_api.SpanContext(
                trace_id=int.from_bytes(TRACE),
                span_id=int.from_bytes(SPAN),
                is_remote=False,
                trace_flags=trace_api.TraceFlags(1),
            )
        )
    )
    logger.emit(
        timestamp=T0,
        observed_timestamp=T0 + 5,
        context=ctx,
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        body="payment failed",
        attributes={"order": 42, "tags": ["a", "b"]},
    )
    logger.emit(observed_timestamp=T0 + 7, severity_number=SeverityNumber.INFO, body={"k": [1, 2.5, None]})
    logger.emit(timestamp=T0 + 9, body=17, event_name="billing.retry")
    provider.shutdown()
    return list(exporter.get_finished_logs())


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_sdk_logs_decode_field_by_field(content_type: str) -> None:
    request = encode_logs(_sdk_logs())
    body = request.SerializeToString() if content_type == PB else to_otlp_json(request)
    decoded = decode_logs(body, content_type)
    assert decoded.rejected == 0
    first, second, third = decoded.records
    assert (first.time_ns, first.observed_ns) == (T0, T0 + 5)
    assert (first.severity_number, first.severity_text, first.body) == (17, "ERROR", "payment failed")
    assert (first.trace_id, first.span_id) == (TRACE.hex(), SPAN.hex())
    assert first.attributes == {"order": 42, "tags": ["a", "b"], "otel.flags": 1}
    assert first.service == "billing" and first.scope_name == "billing.jobs"
    assert first.resource["service.name"] == "billing" and first.resource["otel.scope.version"] == "4.5"
    assert second.time_ns == second.observed_ns == T0 + 7  # no timestamp: the observed time stands in
    assert (second.body, second.attributes) == ('{"k":[1,2.5,null]}', {"otel.body_type": "kvlist"})
    assert (second.trace_id, second.span_id) == (None, None)
    assert (third.body, third.attributes["otel.body_type"]) == ("17", "int")
    assert third.attributes["otel.event_name"] == "billing.retry"
    storable_logs(decoded.records)
    assert decode_logs(to_otlp_json(request), JS) == decode_logs(request.SerializeToString(), PB)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"time_unix_nano": 0, "observed_time_unix_nano": 0}, "both time_unix_nano and observed_time_unix_nano"),
        ({"time_unix_nano": 2**63}, "past 2**63-1"),
        ({"observed_time_unix_nano": 2**64 - 1}, "observed_time_unix_nano"),
        ({"severity_number": 25}, "severity_number must be in 0..24, got 25"),
        ({"severity_number": -1}, "got -1"),
        ({"trace_id": b"\x01\x02\x03"}, "trace_id must be 16 bytes, got 3"),
        ({"span_id": SPAN + b"\x00"}, "span_id must be 8 bytes, got 9"),
        ({"attributes": kvs({"k": nested(40)})}, "nested"),
    ],
)
def test_bad_logs_rejected_individually(overrides: dict[str, Any], problem: str) -> None:
    decoded = decode_logs(logs_request(pb_log(), pb_log(**overrides)).SerializeToString(), PB)
    assert decoded.rejected == 1 and len(decoded.records) == 1
    assert decoded.errors[0].startswith("resourceLogs[0].scopeLogs[0].logRecords[1]: ")
    assert problem in decoded.errors[0]


@pytest.mark.parametrize(
    ("body", "text", "body_type"),
    [
        (None, "", None),
        (AnyValue(), "", None),
        (av(""), "", None),
        (av("plain"), "plain", None),
        (av(True), "true", "bool"),
        (av(-3), "-3", "int"),
        (av(1.5), "1.5", "double"),
        (av(float("nan")), '"NaN"', "double"),
        (av([1, "é", float("-inf")]), '[1,"é","-Infinity"]', "array"),
        (av(b"\x01\xab"), '"01ab"', "bytes"),
        (av({"z": {"y": None}}), '{"z":{"y":null}}', "kvlist"),
    ],
)
def test_log_body_mapping(body: AnyValue | None, text: str, body_type: str | None) -> None:
    record = pb_log(body=body, trace_id=bytes(16), span_id=bytes(8), dropped_attributes_count=2)
    (got,) = decode_logs(logs_request(record).SerializeToString(), PB).records
    assert got.body == text
    assert got.attributes.get("otel.body_type") == body_type
    assert got.attributes["otel.dropped_attributes_count"] == 2
    assert (got.trace_id, got.span_id, got.observed_ns) == (None, None, None)  # all-zero ids: no trace context
    storable_logs([got])


# ---------------------------------------------------------------- metrics


def _sdk_metrics() -> Any:
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "shop", "service.instance.id": "pod-1"})
    )
    meter = provider.get_meter("shop.meter", "1.0")
    meter.create_counter("orders", unit="1", description="ignored").add(3, {"region": "eu"})
    meter.create_up_down_counter("queue").add(-2)
    hist = meter.create_histogram("latency", unit="ms")
    for v in (5, 50, 500):
        hist.record(v, {"route": "/a"})
    meter.create_gauge("temp").set(21.5)
    meter.create_observable_gauge("cpu", callbacks=[lambda _options: [Observation(0.75, {"core": 0})]])
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_sdk_metrics_decode(content_type: str) -> None:
    request = encode_metrics(_sdk_metrics())
    body = request.SerializeToString() if content_type == PB else to_otlp_json(request)
    decoded = decode_metrics(body, content_type)
    assert decoded.rejected == 0
    by_name = {p.name: p for p in decoded.records}
    assert set(by_name) == {"orders", "queue", "latency", "temp", "cpu"}
    assert all(p.service == "shop" and p.attributes["service.instance.id"] == "pod-1" for p in decoded.records)
    orders = by_name["orders"]
    assert (orders.kind, orders.value, orders.monotonic, orders.temporality) == ("sum", 3.0, True, "cumulative")
    assert orders.attributes == {"region": "eu", "service.instance.id": "pod-1"} and orders.unit == "1"
    assert orders.start_ns is not None and orders.start_ns <= orders.time_ns
    queue = by_name["queue"]
    assert (queue.kind, queue.value, queue.monotonic) == ("sum", -2.0, False)
    latency = by_name["latency"]
    assert (latency.kind, latency.count, latency.sum, latency.min, latency.max) == ("histogram", 3, 555.0, 5.0, 500.0)
    assert latency.value == 185.0 and latency.unit == "ms"
    assert latency.explicit_bounds is not None and latency.bucket_counts is not None
    assert len(latency.bucket_counts) == len(latency.explicit_bounds) + 1 and sum(latency.bucket_counts) == 3
    assert (by_name["temp"].kind, by_name["temp"].value) == ("gauge", 21.5)
    assert by_name["cpu"].attributes == {"core": 0, "service.instance.id": "pod-1"}
    storable_points(decoded.records)
    assert decode_metrics(to_otlp_json(request), JS) == decode_metrics(request.SerializeToString(), PB)


def test_metric_types_mapping() -> None:
    metrics = [
        gauge("g", number_point(4)),
        metrics_pb2.Metric(
            name="s",
            sum=metrics_pb2.Sum(
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED,
                data_points=[number_point(2.5, attributes=kvs({"k": "v"}), start_time_unix_nano=0)],
            ),
        ),
        metrics_pb2.Metric(
            name="h",
            histogram=metrics_pb2.Histogram(
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
                data_points=[
                    metrics_pb2.HistogramDataPoint(
                        time_unix_nano=T0,
                        count=4,
                        sum=10.0,
                        min=1.0,
                        max=4.0,
                        bucket_counts=[1, 2, 1],
                        explicit_bounds=[2.0, 3.0],
                    ),
                    metrics_pb2.HistogramDataPoint(time_unix_nano=T0, count=0),  # no buckets, no sum
                ],
            ),
        ),
        metrics_pb2.Metric(
            name="e",
            exponential_histogram=metrics_pb2.ExponentialHistogram(
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
                data_points=[
                    metrics_pb2.ExponentialHistogramDataPoint(
                        time_unix_nano=T0,
                        count=2,
                        sum=3.0,
                        min=1.0,
                        max=2.0,
                        scale=3,
                        zero_count=0,
                        positive=metrics_pb2.ExponentialHistogramDataPoint.Buckets(offset=1, bucket_counts=[1, 1]),
                    )
                ],
            ),
        ),
        metrics_pb2.Metric(
            name="q",
            summary=metrics_pb2.Summary(
                data_points=[
                    metrics_pb2.SummaryDataPoint(
                        time_unix_nano=T0,
                        count=10,
                        sum=25.0,
                        attributes=kvs({"route": "/"}),
                        quantile_values=[
                            metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0),
                            metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=9.0),
                            metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=1.0, value=float("nan")),
                        ],
                    )
                ]
            ),
        ),
    ]
    decoded = decode_metrics(metrics_request(*metrics).SerializeToString(), PB)
    assert decoded.rejected == 0
    g, s, h, h_empty, e, q, q50, q99 = decoded.records
    assert (g.name, g.kind, g.value, g.start_ns) == ("g", "gauge", 4.0, T0 - 10**9)
    assert (s.kind, s.value, s.temporality, s.monotonic, s.start_ns) == ("sum", 2.5, "cumulative", False, None)
    assert s.attributes == {"k": "v"}
    assert (h.kind, h.temporality, h.count, h.sum, h.min, h.max, h.value) == (
        "histogram",
        "delta",
        4,
        10.0,
        1.0,
        4.0,
        2.5,
    )
    assert (h.bucket_counts, h.explicit_bounds) == ([1, 2, 1], [2.0, 3.0])
    assert (h_empty.count, h_empty.sum, h_empty.value, h_empty.min, h_empty.bucket_counts) == (0, None, 0.0, None, None)
    assert (e.kind, e.temporality, e.count, e.sum, e.min, e.max, e.value) == (
        "histogram",
        "cumulative",
        2,
        3.0,
        1.0,
        2.0,
        1.5,
    )
    assert e.attributes == {"otel.metric.type": "exponential_histogram"} and e.bucket_counts is None
    assert (q.kind, q.count, q.sum, q.value) == ("histogram", 10, 25.0, 2.5)
    assert q.attributes == {"route": "/", "otel.metric.type": "summary"}
    assert (q50.kind, q50.name, q50.value, q50.attributes) == (
        "gauge",
        "q",
        2.0,
        {"route": "/", "otel.metric.type": "summary", "otel.quantile": 0.5},
    )
    assert (q99.value, q99.attributes["otel.quantile"]) == (9.0, 0.99)
    storable_points(decoded.records)


def test_two_data_types_under_one_name_are_both_kept() -> None:
    both = [
        gauge("x", number_point(1.0)),
        metrics_pb2.Metric(name="x", sum=metrics_pb2.Sum(is_monotonic=True, data_points=[number_point(2.0)])),
    ]
    decoded = decode_metrics(metrics_request(*both).SerializeToString(), PB)
    assert [(p.name, p.kind, p.value) for p in decoded.records] == [("x", "gauge", 1.0), ("x", "sum", 2.0)]
    rows = _codec.encode_metrics(decoded.records)
    assert rows[0][2] != rows[1][2]  # different series ids


def test_instance_id_does_not_override_point_attribute() -> None:
    request = metrics_request(
        gauge("g", number_point(1.0, attributes=kvs({"service.instance.id": "mine"}))), **{"service.instance.id": "r"}
    )
    (point,) = decode_metrics(request.SerializeToString(), PB).records
    assert point.attributes == {"service.instance.id": "mine"}


def _hist(**kw: Any) -> metrics_pb2.Metric:
    fields: dict[str, Any] = {"time_unix_nano": T0, "count": 1, "sum": 1.0}
    fields.update(kw)
    return metrics_pb2.Metric(
        name="h", histogram=metrics_pb2.Histogram(data_points=[metrics_pb2.HistogramDataPoint(**fields)])
    )


@pytest.mark.parametrize(
    ("metric", "problem"),
    [
        (gauge("g", number_point(float("nan"))), "value must be finite"),
        (gauge("g", number_point(float("inf"))), "value must be finite"),
        (gauge("g", metrics_pb2.NumberDataPoint(time_unix_nano=T0)), "no value"),
        (gauge("g", number_point(1.0, flags=1)), "NO_RECORDED_VALUE"),
        (gauge("g", number_point(1.0, time_unix_nano=0)), "time_unix_nano is missing"),
        (gauge("g", number_point(1.0, time_unix_nano=2**63)), "past 2**63-1"),
        (gauge("g", number_point(1.0, start_time_unix_nano=2**64 - 1)), "start_time_unix_nano"),
        (gauge("", number_point(1.0)), "metric name is empty"),
        (gauge("a\x00b", number_point(1.0)), "NUL"),
        (gauge("n" * 503, number_point(1.0)), "502 bytes"),  # the series key: name NUL id(8) <= 511
        (_hist(bucket_counts=[1, 0], explicit_bounds=[1.0, 2.0]), "2 bucket_counts for 2 explicit_bounds"),
        (_hist(bucket_counts=[1], explicit_bounds=[]), None),  # one bucket, no bounds: valid
        (_hist(explicit_bounds=[1.0]), "0 bucket_counts for 1 explicit_bounds"),
        (_hist(bucket_counts=[1, 2], explicit_bounds=[float("nan")]), "explicit_bounds[0] must be finite"),
        (_hist(count=2**63), "count 9223372036854775808 is past"),
        (_hist(bucket_counts=[2**64 - 1], explicit_bounds=[]), "bucket_counts[0]"),
        (_hist(sum=float("inf")), "sum must be finite"),
        (_hist(min=float("-inf")), "min must be finite"),
        (_hist(max=float("nan")), "max must be finite"),
        (_hist(count=0, sum=5.0), None),  # value 0.0 when there is no count
    ],
)
def test_bad_points_rejected_individually(metric: metrics_pb2.Metric, problem: str | None) -> None:
    decoded = decode_metrics(metrics_request(gauge("ok", number_point(1)), metric).SerializeToString(), PB)
    if problem is None:
        assert decoded.rejected == 0 and len(decoded.records) == 2
    else:
        assert decoded.rejected == 1 and [p.name for p in decoded.records] == ["ok"]
        assert decoded.errors[0].startswith("resourceMetrics[0].scopeMetrics[0].metrics[1].")
        assert problem in decoded.errors[0]
    storable_points(decoded.records)


# ---------------------------------------------------------------- malformed bodies

DECODERS: list[Callable[[bytes, str], Decoded[Any]]] = [decode_traces, decode_logs, decode_metrics]


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xff\xff", PB),
        (b"\x0a\x05\x01", PB),  # length-delimited field running past the end
        (b"\x0a\x02\x0a\xff", PB),
        (b"\xff\xfe{}", JS),  # not UTF-8
        (b"", JS),
        (b"{", JS),
        (b"[]", JS),
        (b'"text"', JS),
        (b"null", JS),
        (b"[" * 100_000 + b"]" * 100_000, JS),
        (b'{"resourceSpans": 5, "resourceLogs": 5, "resourceMetrics": 5}', JS),
        (b'{"resourceSpans": [1], "resourceLogs": [1], "resourceMetrics": [1]}', JS),
        (
            b'{"resourceSpans": [], "resource_spans": [], "resourceLogs": [], "resource_logs": [],'
            b' "resourceMetrics": [], "resource_metrics": []}',
            JS,
        ),
    ],
)
def test_malformed_bodies_raise_otlp_error(
    decode: Callable[[bytes, str], Decoded[Any]], body: bytes, content_type: str
) -> None:
    with pytest.raises(OtlpError):
        decode(body, content_type)


@pytest.mark.parametrize(
    "doc",
    [
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "-1"}]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": 1.5}]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\ud800"}]}]}]},  # lone surrogate
        {
            "resourceSpans": [
                {"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": {"intValue": "2" * 30}}]}]}]}
            ]
        },
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "two"}], "spans_extra": 1}], "resource": 3}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": {"k": "v"}}]}]}]},
    ],
)
def test_json_of_wrong_shape_raises_otlp_error(doc: dict[str, Any]) -> None:
    with pytest.raises(OtlpError):
        decode_traces(json.dumps(doc).encode(), JS)


def test_unknown_json_fields_are_ignored() -> None:
    doc = json.loads(to_otlp_json(trace_request(pb_span())))
    doc["future"] = {"x": 1}
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["newField"] = [1, 2]
    assert len(decode_traces(json.dumps(doc).encode(), JS).records) == 1


@pytest.mark.parametrize("decode", DECODERS)
def test_unsupported_content_type_is_a_value_error(decode: Callable[[bytes, str], Decoded[Any]]) -> None:
    with pytest.raises(ValueError, match="unsupported content type") as info:
        decode(b"{}", "text/plain")
    assert not isinstance(info.value, OtlpError)
    assert not issubclass(OtlpError, ValueError)  # a server's `except ValueError` (415) must not catch bad bodies
    with pytest.raises(ValueError):
        decode(b"{}", "application/json; charset=utf-8")  # the server strips parameters


def _valid_bodies() -> list[tuple[Callable[[bytes, str], Decoded[Any]], bytes, str]]:
    spans, logs, metrics = encode_spans(_sdk_spans()), encode_logs(_sdk_logs()), encode_metrics(_sdk_metrics())
    return [
        (decode_traces, spans.SerializeToString(), PB),
        (decode_traces, to_otlp_json(spans), JS),
        (decode_logs, logs.SerializeToString(), PB),
        (decode_logs, to_otlp_json(logs), JS),
        (decode_metrics, metrics.SerializeToString(), PB),
        (decode_metrics, to_otlp_json(metrics), JS),
    ]


VALID = _valid_bodies()


def _decodes_or_otlp_error(decode: Callable[[bytes, str], Decoded[Any]], body: bytes, content_type: str) -> None:
    try:
        result = decode(body, content_type)
    except OtlpError:
        return
    assert isinstance(result, Decoded)
    assert result.rejected >= len(result.errors)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), which=st.integers(0, 5))
def test_random_bytes_decode_or_raise_otlp_error(body: bytes, which: int) -> None:
    decode, _valid, content_type = VALID[which]
    _decodes_or_otlp_error(decode, body, content_type)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), which=st.integers(0, 5))
def test_truncated_and_mutated_bodies_decode_or_raise_otlp_error(data: st.DataObject, which: int) -> None:
    decode, body, content_type = VALID[which]
    cut = data.draw(st.integers(0, len(body) - 1))
    truncated = body[:cut]
    if content_type == JS:
        with pytest.raises(OtlpError):  # every proper prefix of a JSON object is invalid JSON
            decode(truncated, content_type)
    else:
        _decodes_or_otlp_error(decode, truncated, content_type)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(body) - 1), st.integers(0, 255)), max_size=4))
    mutated = bytearray(body)
    for pos, byte in flips:
        mutated[pos] = byte
    _decodes_or_otlp_error(decode, bytes(mutated), content_type)


# ---------------------------------------------------------------- property: any parsed request is storable


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` seven times in eight: records must mostly be valid for the storability checks to bite."""
    return st.integers(0, 7).flatmap(lambda i: bad if i == 0 else good)


_trace_ids = mostly(st.binary(min_size=16, max_size=16) | st.just(TRACE), st.binary(max_size=20) | st.just(bytes(16)))
_span_ids = mostly(st.binary(min_size=8, max_size=8) | st.just(SPAN), st.binary(max_size=10) | st.just(bytes(8)))
_opt_span_ids = st.just(b"") | _span_ids
_times = mostly(st.integers(T0 - 10, T0 + 10) | st.integers(1, 2**63 - 1), st.integers(0, 2**64 - 1) | st.just(0))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.binary(max_size=4),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)
_attr_values = mostly(_values, st.integers(29, 34).map(nested))  # deep values around tael's nesting limit
_attr_dicts = st.dictionaries(st.text(max_size=6), _attr_values, max_size=3)


@st.composite
def _span_times(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(_times)
    if draw(st.integers(0, 7)):
        return start, draw(st.integers(start, max(start, 2**63 - 1)))
    return start, draw(_times)


@st.composite
def span_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    def span() -> trace_pb2.Span:
        start, end = draw(_span_times())
        return trace_pb2.Span(
            trace_id=draw(_trace_ids),
            span_id=draw(_span_ids),
            parent_span_id=draw(_opt_span_ids),
            name=draw(st.text(max_size=4)),
            kind=draw(st.integers(0, 7)),
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=kvs(draw(_attr_dicts)),
            flags=draw(st.integers(0, 2**32 - 1)),
            status=trace_pb2.Status(code=draw(st.integers(0, 4)), message=draw(st.text(max_size=3))),
            dropped_attributes_count=draw(st.integers(0, 2**32 - 1)),
            events=[
                trace_pb2.Span.Event(time_unix_nano=draw(_times), name="e", attributes=kvs(draw(_attr_dicts)))
                for _ in range(draw(st.integers(0, 2)))
            ],
            links=[
                trace_pb2.Span.Link(
                    trace_id=draw(_trace_ids),
                    span_id=draw(_span_ids),
                    trace_state=draw(st.text(max_size=3)),
                    flags=draw(st.integers(0, 2**32 - 1)),
                )
                for _ in range(draw(st.integers(0, 2)))
            ],
        )

    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource={
                    "attributes": kvs(draw(_attr_dicts) | {"service.name": draw(mostly(st.text(max_size=4), _values))})
                },
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope={"name": draw(st.text(max_size=3)), "attributes": kvs(draw(_attr_dicts))},
                        spans=[span() for _ in range(draw(st.integers(0, 4)))],
                    )
                    for _ in range(draw(st.integers(1, 2)))
                ],
            )
            for _ in range(draw(st.integers(1, 2)))
        ]
    )


def _count(request: Any, containers: str, scopes: str, records: str) -> int:
    return sum(len(getattr(s, records)) for r in getattr(request, containers) for s in getattr(r, scopes))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=span_requests())
def test_any_span_request_gives_storable_spans_and_same_json_result(request: ExportTraceServiceRequest) -> None:
    decoded = decode_traces(request.SerializeToString(), PB)
    assert decoded.rejected + len(decoded.records) == _count(request, "resource_spans", "scope_spans", "spans")
    storable_spans(decoded.records)
    via_json = decode_traces(to_otlp_json(request), JS)
    assert repr(via_json) == repr(decoded)  # repr: NaN attribute values compare unequal to themselves


@st.composite
def log_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=draw(_times),
            observed_time_unix_nano=draw(_times),
            severity_number=draw(mostly(st.integers(0, 24), st.integers(-2, 30))),
            body=av(draw(_values)),
            trace_id=draw(st.just(b"") | _trace_ids),
            span_id=draw(_opt_span_ids),
            attributes=kvs(draw(_attr_dicts)),
            flags=draw(st.integers(0, 2**32 - 1)),
            event_name=draw(st.text(max_size=3)),
        )
        for _ in range(draw(st.integers(0, 5)))
    ]
    request = logs_request(*records, service=draw(st.one_of(st.none(), st.text(max_size=3))))
    return request


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=log_requests())
def test_any_log_request_gives_storable_logs_and_same_json_result(request: ExportLogsServiceRequest) -> None:
    decoded = decode_logs(request.SerializeToString(), PB)
    assert decoded.rejected + len(decoded.records) == _count(request, "resource_logs", "scope_logs", "log_records")
    storable_logs(decoded.records)
    assert repr(decode_logs(to_otlp_json(request), JS)) == repr(decoded)


_floats = mostly(st.floats(-1e6, 1e6), st.floats(allow_nan=True, allow_infinity=True))
_counts = mostly(st.integers(0, 10), st.integers(0, 2**64 - 1))


@st.composite
def _buckets(draw: st.DrawFn) -> dict[str, Any]:
    """Histogram buckets: none, consistent, or (one time in eight) any lengths."""
    bounds = draw(st.lists(_floats, max_size=2))
    if not draw(st.integers(0, 7)):
        return {"bucket_counts": draw(st.lists(_counts, max_size=3)), "explicit_bounds": bounds}
    if not bounds and draw(st.booleans()):
        return {}
    return {
        "bucket_counts": draw(st.lists(_counts, min_size=len(bounds) + 1, max_size=len(bounds) + 1)),
        "explicit_bounds": bounds,
    }


@st.composite
def metric_requests(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    def common() -> dict[str, Any]:
        return {
            "time_unix_nano": draw(_times),
            "start_time_unix_nano": draw(st.just(0) | _times),
            "flags": draw(mostly(st.just(0), st.integers(0, 3))),
            "attributes": kvs(draw(_attr_dicts)),
        }

    def optional(**fields: Any) -> dict[str, Any]:
        return {k: v for k, v in fields.items() if draw(st.integers(0, 3))}

    def metric() -> metrics_pb2.Metric:
        name = draw(mostly(st.sampled_from(["m", "x"]) | st.text(min_size=1, max_size=3), st.text(max_size=3)))
        kind = draw(st.sampled_from(["gauge", "sum", "histogram", "exp", "summary"]))
        n = draw(st.integers(0, 3))
        if kind in ("gauge", "sum"):
            values = mostly(
                st.fixed_dictionaries({"as_double": _floats})
                | st.fixed_dictionaries({"as_int": st.integers(-(2**63), 2**63 - 1)}),
                st.just({}),
            )
            points = [metrics_pb2.NumberDataPoint(**common(), **draw(values)) for _ in range(n)]
            if kind == "gauge":
                return metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points))
            return metrics_pb2.Metric(
                name=name,
                sum=metrics_pb2.Sum(
                    data_points=points,
                    aggregation_temporality=draw(st.integers(0, 3)),
                    is_monotonic=draw(st.booleans()),
                ),
            )
        if kind == "histogram":
            points = [
                metrics_pb2.HistogramDataPoint(
                    **common(),
                    count=draw(_counts),
                    **optional(sum=draw(_floats), min=draw(_floats), max=draw(_floats)),
                    **draw(_buckets()),
                )
                for _ in range(n)
            ]
            return metrics_pb2.Metric(
                name=name,
                histogram=metrics_pb2.Histogram(data_points=points, aggregation_temporality=draw(st.integers(0, 3))),
            )
        if kind == "exp":
            points = [
                metrics_pb2.ExponentialHistogramDataPoint(
                    **common(), count=draw(_counts), **optional(sum=draw(_floats), min=draw(_floats), max=draw(_floats))
                )
                for _ in range(n)
            ]
            return metrics_pb2.Metric(
                name=name, exponential_histogram=metrics_pb2.ExponentialHistogram(data_points=points)
            )
        points = [
            metrics_pb2.SummaryDataPoint(
                **common(),
                count=draw(_counts),
                sum=draw(_floats),
                quantile_values=[
                    metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=draw(_floats), value=draw(_floats))
                    for _ in range(draw(st.integers(0, 2)))
                ],
            )
            for _ in range(n)
        ]
        return metrics_pb2.Metric(name=name, summary=metrics_pb2.Summary(data_points=points))

    return metrics_request(*[metric() for _ in range(draw(st.integers(0, 4)))], service=draw(st.text(max_size=3)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=metric_requests())
def test_any_metric_request_gives_storable_points_and_same_json_result(request: ExportMetricsServiceRequest) -> None:
    decoded = decode_metrics(request.SerializeToString(), PB)
    data_points = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                data_points += len(getattr(m, kind).data_points) if kind else 0
    quantile_points = sum(1 for p in decoded.records if "otel.quantile" in p.attributes)
    assert decoded.rejected + len(decoded.records) - quantile_points == data_points
    storable_points(decoded.records)
    assert repr(decode_metrics(to_otlp_json(request), JS)) == repr(decoded)


# ---------------------------------------------------------------- replies

RESPONSES = [
    ("traces", ExportTraceServiceResponse, "rejected_spans"),
    ("logs", ExportLogsServiceResponse, "rejected_log_records"),
    ("metrics", ExportMetricsServiceResponse, "rejected_data_points"),
]


@pytest.mark.parametrize(("signal", "cls", "count_field"), RESPONSES)
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_encode_response_round_trip(signal: str, cls: Any, count_field: str, content_type: str) -> None:
    def parse(body: bytes) -> Any:
        message = cls()
        if content_type == PB:
            message.ParseFromString(body)
        else:
            json_format.Parse(body.decode(), message)
        return message

    full = parse(encode_response(signal, content_type, 0, ""))
    assert not full.HasField("partial_success")
    partial = parse(encode_response(signal, content_type, 3, "spans[1]: bad id; é"))
    assert getattr(partial.partial_success, count_field) == 3
    assert partial.partial_success.error_message == "spans[1]: bad id; é"
    warning = parse(encode_response(signal, content_type, 0, "heads up"))
    assert warning.partial_success.error_message == "heads up"
    assert getattr(warning.partial_success, count_field) == 0
    if content_type == JS:
        assert json.loads(encode_response(signal, content_type, 0, "")) == {}


def test_encode_response_arguments_checked() -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        encode_response("profiles", PB, 0, "")
    with pytest.raises(ValueError, match="unsupported content type"):
        encode_response("traces", "text/html", 0, "")
    with pytest.raises(ValueError):
        encode_response("logs", PB, -1, "")
    assert encode_response("spans", PB, 2, "x") == encode_response("traces", PB, 2, "x")


@pytest.mark.parametrize("code", [0, 3, 13, -1, 2**31 - 1, -(2**31)])
@pytest.mark.parametrize("message", ["", "bad request", "ünïcode ✓", "\ud800 lone"])
def test_encode_status_round_trip(code: int, message: str) -> None:
    status_pb2 = pytest.importorskip("google.rpc.status_pb2")
    expected = message.encode("utf-8", "replace").decode()
    status = status_pb2.Status()
    status.ParseFromString(encode_status(PB, code, message))
    assert (status.code, status.message) == (code, expected)
    assert encode_status(PB, code, message) == status_pb2.Status(code=code, message=expected).SerializeToString()
    assert json.loads(encode_status(JS, code, message)) == {"code": code, "message": expected}
    parsed = json_format.Parse(encode_status(JS, code, message).decode(), status_pb2.Status())
    assert (parsed.code, parsed.message) == (code, expected)


def test_encode_status_arguments_checked() -> None:
    with pytest.raises(ValueError):
        encode_status(PB, 2**31, "")
    with pytest.raises(ValueError):
        encode_status("application/xml", 3, "")


# ---------------------------------------------------------------- differential: the column-wise decoder
# against the decoder of model objects it replaced (tests/otlp_reference.py)

REFERENCE = {"spans": reference.decode_traces, "logs": reference.decode_logs, "metrics": reference.decode_metrics}
COLUMNWISE = {"spans": decode_traces, "logs": decode_logs, "metrics": decode_metrics}
FROM_OBJECTS: dict[str, Callable[[Any], pa.RecordBatch]] = {
    "spans": lambda records: span_columns(records, PAYLOADS),
    "logs": lambda records: log_columns(records, PAYLOADS),
    "metrics": metric_columns,
}


def assert_decodes_as_the_reference(signal: str, body: bytes, content_type: str) -> Decoded[Any]:
    """The column-wise decoder accepts and rejects what the reference does, with the same
    messages; its batches are, column by column (payload flags, series ids and JSON text
    included), what the store's column builders make of the reference's records."""
    ref = REFERENCE[signal](body, content_type)
    new = COLUMNWISE[signal](body, content_type, None, PAYLOADS)
    assert (new.rejected, new.errors, new.accepted) == (ref.rejected, ref.errors, len(ref.records))
    assert repr(new.records) == repr(ref.records)  # repr: NaN attribute values compare unequal to themselves
    if ref.records:
        expected = pa.Table.from_batches([FROM_OBJECTS[signal](ref.records)])
        got = pa.Table.from_batches(new.batches).combine_chunks()
        assert got.schema == expected.schema
        for name in expected.column_names:
            assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    else:
        assert new.batches == []
    return new


def test_differential_sdk_requests_both_encodings() -> None:
    for decode, body, content_type in VALID:
        signal = {decode_traces: "spans", decode_logs: "logs", decode_metrics: "metrics"}[decode]
        assert assert_decodes_as_the_reference(signal, body, content_type).accepted > 0


_payload_texts = st.text(max_size=4) | st.text(min_size=250, max_size=260) | st.text(min_size=1015, max_size=1030)
_payload_attrs = st.dictionaries(st.sampled_from(["gen_ai.prompt", "k", "n"]), _payload_texts | _values, max_size=3)


@st.composite
def payload_span_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """Spans whose attributes and events hold payload text (``gen_ai.prompt``) short and
    long (the blob store's threshold is 1,024 bytes of UTF-8), many sharing lists."""
    shared = draw(st.lists(_payload_attrs, min_size=1, max_size=3))
    spans = []
    for i in range(draw(st.integers(1, 12))):
        attrs = draw(st.sampled_from(shared) | _payload_attrs)
        events = [
            trace_pb2.Span.Event(time_unix_nano=T0 + j, name=f"e{j}", attributes=kvs(draw(_payload_attrs)))
            for j in range(draw(st.integers(0, 2)))
        ]
        spans.append(
            pb_span(
                span_id=(i + 1).to_bytes(8, "big"),
                attributes=kvs(attrs),
                events=events,
                dropped_attributes_count=draw(st.sampled_from([0, 0, 0, 2])),
            )
        )
    return trace_request(*spans)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=span_requests() | payload_span_requests())
def test_differential_any_span_request(request: ExportTraceServiceRequest) -> None:
    assert_decodes_as_the_reference("spans", request.SerializeToString(), PB)
    assert_decodes_as_the_reference("spans", to_otlp_json(request), JS)


@st.composite
def payload_log_requests(draw: st.DrawFn) -> ExportLogsServiceRequest:
    records = [
        pb_log(
            body=av(draw(_payload_texts | _values)),
            attributes=kvs(draw(_payload_attrs)),
            flags=draw(st.sampled_from([0, 1])),
            time_unix_nano=T0 + i,
        )
        for i in range(draw(st.integers(1, 8)))
    ]
    return logs_request(*records)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=log_requests() | payload_log_requests())
def test_differential_any_log_request(request: ExportLogsServiceRequest) -> None:
    assert_decodes_as_the_reference("logs", request.SerializeToString(), PB)
    assert_decodes_as_the_reference("logs", to_otlp_json(request), JS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=metric_requests())
def test_differential_any_metric_request(request: ExportMetricsServiceRequest) -> None:
    assert_decodes_as_the_reference("metrics", request.SerializeToString(), PB)
    assert_decodes_as_the_reference("metrics", to_otlp_json(request), JS)


def edge_trace_request() -> ExportTraceServiceRequest:
    """Spans of every shape the column-wise checks treat apart: rows rejected for each
    reason in one chunk, a scope rejected whole, more errors than are explained, lists
    repeated with different dropped counts, links, trace states, unknown kinds."""
    bad = [
        pb_span(trace_id=b"short"),
        pb_span(start_time_unix_nano=0),
        pb_span(end_time_unix_nano=T0 - 1),
        pb_span(end_time_unix_nano=2**64 - 1),
        pb_span(parent_span_id=b"\x01"),
        pb_span(name="n" * 600),
        pb_span(attributes=kvs({"deep": nested(40)})),
        pb_span(events=[trace_pb2.Span.Event(time_unix_nano=2**63)]),
        pb_span(links=[trace_pb2.Span.Link(trace_id=TRACE, span_id=bytes(8))]),
        pb_span(span_id=bytes(8), attributes=kvs({"deep": nested(40)})),  # the first problem is named
    ]
    good = [
        pb_span(span_id=(i + 1).to_bytes(8, "big"), kind=k, status=trace_pb2.Status(code=c), trace_state="a=b")
        for i, (k, c) in enumerate([(0, 0), (7, 9), (-1, -3), (5, 2)])
    ]
    good.append(pb_span(span_id=b"\x09" * 8, attributes=kvs({"a": 1}), dropped_attributes_count=3))
    good.append(pb_span(span_id=b"\x0a" * 8, attributes=kvs({"a": 1})))  # same list, no dropped count
    good.append(
        pb_span(
            span_id=b"\x0b" * 8,
            parent_span_id=bytes(8),
            links=[trace_pb2.Span.Link(trace_id=TRACE, span_id=SPAN, trace_state="x=y", flags=3)],
            dropped_links_count=1,
        )
    )
    request = trace_request(*bad, *good, *bad)  # 20 rejected: 10 explained
    request.resource_spans.append(trace_request(pb_span(), service="bad\x00").resource_spans[0])
    return request


def edge_logs_request() -> ExportLogsServiceRequest:
    return logs_request(
        pb_log(),
        pb_log(time_unix_nano=0),
        pb_log(severity_number=30),
        pb_log(body=av(nested(40))),
        pb_log(attributes=kvs({"x": nested(40)}), body=av(nested(40))),
        pb_log(trace_id=b"\x01\x02"),
        pb_log(body=av({"k": [1.5]}), flags=1, event_name="ev", dropped_attributes_count=2, time_unix_nano=T0 + 1),
        pb_log(body=av("zebra " * 400), time_unix_nano=T0 + 2, observed_time_unix_nano=T0 + 3),
        pb_log(time_unix_nano=0, observed_time_unix_nano=T0 + 4, trace_id=TRACE, span_id=SPAN),
    )


def test_differential_edge_cases() -> None:
    decoded = assert_decodes_as_the_reference("spans", edge_trace_request().SerializeToString(), PB)
    assert decoded.rejected == 21 and decoded.accepted == 7 and len(decoded.errors) == MAX_ERRORS
    assert assert_decodes_as_the_reference("logs", edge_logs_request().SerializeToString(), PB).rejected == 5


def payload_trace_request() -> ExportTraceServiceRequest:
    """Spans with payload text in attributes and events, short and long enough for the blob store."""
    long_text = "zebra prompt " * 100  # 1,300 bytes
    spans = [
        pb_span(span_id=b"\x01" * 8, attributes=kvs({"gen_ai.prompt": long_text, "n": 1})),
        pb_span(span_id=b"\x02" * 8, attributes=kvs({"gen_ai.prompt": "short zebra"})),
        pb_span(
            span_id=b"\x03" * 8,
            parent_span_id=b"\x01" * 8,
            events=[trace_pb2.Span.Event(time_unix_nano=T0 + 5, attributes=kvs({"gen_ai.prompt": long_text}))],
        ),
        pb_span(span_id=b"\x04" * 8, attributes=kvs({"gen_ai.prompt": long_text, "n": 1})),  # a list seen before
    ]
    return trace_request(*spans, name="llm", version="1")


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (numbers below 16)."""

    return bytes([number << 3 | 2]) + varint(len(payload)) + payload


def _trace_body_with_attribute(raw: bytes, service: str) -> bytes:
    """A trace request of one span carrying the KeyValue bytes ``raw`` as an attribute,
    framed by hand (a KeyValue message cannot be built from bytes it refuses)."""
    span = pb_span().SerializeToString() + _ld(9, raw)  # Span.attributes = 9
    res = trace_pb2.ResourceSpans(resource=resource(service)).SerializeToString()
    return _ld(1, res + _ld(2, _ld(2, span)))  # resource_spans = 1, scope_spans = 2, spans = 2


@pytest.mark.parametrize("service", ["svc", "bad\x00"])
@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        (KeyValue(key="k", value=av("v")).SerializeToString(), False),
        (KeyValue(key="k", value=av(nested(40))).SerializeToString(), False),  # rejects its span only
        (b"\x0a\x01k\x12\x03\x0a\x01\xff", True),  # key "k", string_value b"\xff": not UTF-8
        (b"\x0a\x05k", True),  # the key runs past the end
        (KeyValue(key="k", value=av(nested(48))).SerializeToString(), True),  # past upb's depth in a request only
    ],
)
def test_a_bad_attribute_refuses_the_body_as_the_request_class_does(raw: bytes, refused: bool, service: str) -> None:
    """The flat parse takes attribute bytes on trust; a KeyValue the request class refuses
    (not UTF-8, malformed, nested past upb's depth limit where it sits in a request)
    refuses the whole body, also when its span's resource is rejected whole."""
    body = _trace_body_with_attribute(raw, service)
    for decode in (reference.decode_traces, decode_traces):
        if refused:
            with pytest.raises((OtlpError, reference.OtlpError), match="not a valid protobuf ExportTraceService"):
                decode(body, PB)
            continue
        decoded = decode(body, PB)
        assert decoded.rejected + decoded.accepted == 1
    if not refused:
        assert_decodes_as_the_reference("spans", body, PB)


DIFFERENTIAL_SETTINGS: dict[str, Any] = {"payload_attributes": ("gen_ai.prompt",), "payload_blob_min_bytes": 1024}


def store_answers(store: Any, trace_ids: list[str], metric_names: list[str]) -> str:
    """Every read of the store that the differential test compares, as one text (repr:
    NaN attribute values compare unequal to themselves)."""
    import tael

    assert isinstance(store, tael.Store)
    stats = store.stats()
    out: list[Any] = [
        [store.get_trace(t) for t in trace_ids],
        store.query_traces(limit=10_000),
        store.query_traces(limit=10_000, text="zebra"),
        store.query_traces(limit=10_000, service="checkout", order="asc"),
        store.query_logs(limit=10_000),
        store.query_logs(limit=10_000, text="zebra"),
        store.query_metrics(limit=100_000),
        [store.query_metrics(name=name) for name in metric_names],
        store.list_services(),
        [store.list_operations(svc.name) for svc in store.list_services()],
        {k: (v.count, v.oldest_ns, v.newest_ns) for k, v in stats.signals.items()},
        (stats.hot_records, stats.cold_records, stats.blobs, stats.blob_raw_bytes),
    ]
    return repr(out)


def differential_requests() -> list[tuple[str, bytes, str]]:
    """(signal, body, content type) of requests of every kind, in the order the
    differential tests send them: SDK requests, payload text short and long, every
    edge case, a re-sent request, a summary and a NaN gauge."""
    spans, logs, metrics = encode_spans(_sdk_spans()), encode_logs(_sdk_logs()), encode_metrics(_sdk_metrics())
    summary = metrics_request(
        metrics_pb2.Metric(
            name="q",
            summary=metrics_pb2.Summary(
                data_points=[
                    metrics_pb2.SummaryDataPoint(
                        time_unix_nano=T0,
                        count=10,
                        sum=25.0,
                        quantile_values=[metrics_pb2.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0)],
                    )
                ]
            ),
        ),
        gauge("g", number_point(4), number_point(float("nan"))),
        **{"service.instance.id": "pod-2"},
    )
    return [
        ("spans", spans.SerializeToString(), PB),
        ("spans", payload_trace_request().SerializeToString(), PB),
        ("spans", edge_trace_request().SerializeToString(), PB),
        ("spans", to_otlp_json(spans), JS),  # the same spans again: a no-op
        ("logs", logs.SerializeToString(), PB),
        ("logs", edge_logs_request().SerializeToString(), PB),
        ("metrics", metrics.SerializeToString(), PB),
        ("metrics", summary.SerializeToString(), PB),
    ]


def store_through_reference(store: Any, requests: list[tuple[str, bytes, str]]) -> list[Any]:
    """Store ``requests`` the old way: the reference decoder's model objects, ``Store.insert_*``.
    Returns what the reference decoded of each."""
    out = []
    for signal, body, content_type in requests:
        decoded = REFERENCE[signal](body, content_type)
        if decoded.records:
            {"spans": store.insert_spans, "logs": store.insert_logs, "metrics": store.insert_metrics}[signal](
                decoded.records
            )
        out.append(decoded)
    return out


def test_differential_store_answers_old_path_against_column_path(tmp_path: Any) -> None:
    """The same requests stored through the old path (reference decoder, model objects,
    ``Store.insert_*``) and the new one (column batches, ``Store.insert_checked``, as the
    server does): every read answers the same, in the hot tier and once compacted, and
    re-sending a request changes nothing."""
    import tael

    settings = tael.Settings(**DIFFERENTIAL_SETTINGS)
    payloads = Payloads(settings.payload_attributes, settings.payload_blob_min_bytes)
    requests = differential_requests()
    with tael.Store(tmp_path / "old", settings) as old, tael.Store(tmp_path / "new", settings) as new:
        store_through_reference(old, requests)
        for signal, body, content_type in requests:
            COLUMNWISE[signal](body, content_type, functools.partial(new.insert_checked, signal), payloads)
        old.flush()
        new.flush()
        trace_ids = sorted({s.trace_id for s in old.query_traces(limit=10_000)})
        names = sorted({p.name for p in old.query_metrics(limit=100_000)})
        assert len(trace_ids) == 2 and names and old.stats().blobs >= 2
        hot = store_answers(old, trace_ids, names)
        assert store_answers(new, trace_ids, names) == hot
        for store in (old, new):
            store.compact(2**62)
        assert store_answers(old, trace_ids, names) == store_answers(new, trace_ids, names) != hot  # cold counts moved
