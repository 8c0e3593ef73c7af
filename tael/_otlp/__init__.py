"""Decoding OTLP/HTTP request bodies into tael column batches, and encoding the replies.

Pure functions, no I/O: the HTTP server hands over a body that it has already
decompressed and the media type of its ``Content-Type`` (``application/x-protobuf``
or ``application/json``), and gets back the accepted records as column batches in
``_block.BLOCK_SCHEMAS`` (payload flags and metric series ids included), ready for
the store's ``insert_checked``: a slice at a time to a ``sink``, or kept in
``Decoded.batches`` (``Decoded.records`` builds ``tael.Span``/``LogRecord``/
``MetricPoint`` objects from them, for tests and tools).

Two kinds of failure are kept apart, as the OTLP specification asks:

- a body that cannot be parsed at all (bad protobuf, bad JSON, wrong shape)
  raises ``OtlpError``; the server answers 400 with a ``google.rpc.Status``;
- a record that parses but cannot be stored (ids of the wrong length or all
  zeros, non-hex ids in JSON, times past 2**63-1, a span ending before it
  starts, a NaN metric value, a service, metric or span name over its LMDB
  key budget (tael/_keys.py)...) is dropped on its own and counted in
  ``Decoded.rejected``; the server reports it in the response's
  ``partial_success``. Every record that is kept is valid for tael's
  encoders by construction (the store does not check it again), so one bad
  record never fails a whole batch.

OTLP JSON is protobuf's JSON mapping with three differences: trace and span
ids are hex, not base64; enums are integers; field names may be lowerCamelCase
or snake_case. The JSON path rewrites the ids to base64 and then parses with
``json_format.ParseDict``, so both encodings go through the same mapping code
and decode to identical records.

**Column-wise** (one module per signal: spans.py, logs.py, metrics.py; parse.py
parses, mapping.py holds what they share, common.py the slicing). Spans and log
records are not turned into objects one by one.
The body is parsed twice by upb: once as the OTLP request (which checks all of
it: a body that fails is refused before anything is stored), then as a *flat*
copy of the request's schema (built at import from the real descriptors) in
which a record's ``attributes`` are raw bytes, one ``KeyValue`` message each.
A chunk of records is read field by field with one ``attrgetter`` map; times,
ids, names and kinds are checked with numpy over the chunk; attribute lists are
keyed by their raw bytes, and each distinct list of a request is decoded,
checked, written as JSON and given its payload flag once (spans of one service
mostly repeat a few lists; a resource's JSON is written once per scope too).
Only records with events or links, a non-string log body, and records that
fail a check (to name the problem) take a per-record path. Metric points are
built from the real messages point by point (a point is a handful of fields),
but into column lists too, with one JSON call and one series-id pass per slice.

Mapping (all OTLP fields are kept somewhere, except as noted):

- ``service`` is the resource attribute ``service.name`` when it is a non-empty
  string, else ``"unknown_service"`` (the OpenTelemetry default). ``resource``
  holds every resource attribute, ``service.name`` included. Resource and scope
  extras go into the ``resource`` dict under reserved keys, only when present:
  ``otel.scope.attributes`` (a dict of the instrumentation scope's attributes),
  ``otel.schema_url`` and ``otel.scope.schema_url``, ``otel.dropped_attributes_count``
  (dropped resource attributes), and for logs, whose model has no
  ``scope_version``, ``otel.scope.version``.
- Attribute values (``AnyValue``): string, bool, int, double, array -> list,
  kvlist -> dict, bytes -> lowercase hex string, unset -> None. Values nested
  32 or more arrays/kvlists deep reject their record (tael's limit).
- Counters of dropped data become attributes, only when non-zero:
  ``otel.dropped_attributes_count`` / ``otel.dropped_events_count`` /
  ``otel.dropped_links_count`` on spans, events and links, and on logs.
- Spans: kind 0 (unspecified) and unknown kinds -> ``"internal"``; status codes
  outside 0..2 -> ``"unset"``. A missing (zero) start time, an end before the
  start, or a time past 2**63-1 rejects the span. An all-zero (or empty) parent
  span id means "no parent" (some exporters send zeros for roots). A link's
  non-empty trace state goes to its attributes as ``otel.trace_state`` and its
  non-zero flags as ``otel.flags``; a link with an invalid id rejects its span.
- Logs: ``time_ns`` is ``time_unix_nano``, or ``observed_time_unix_nano`` when
  it is 0; both 0 rejects the record. A non-string body becomes compact JSON
  text (bytes as a hex string, non-finite doubles as ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"`` as in proto3 JSON) with ``otel.body_type`` (``"int"``,
  ``"double"``, ``"bool"``, ``"bytes"``, ``"array"``, ``"kvlist"``) in the
  attributes. Empty or all-zero trace/span ids mean "no trace context" (None).
  Non-zero ``flags`` -> ``otel.flags``; ``event_name`` -> ``otel.event_name``.
- Metrics: one point per data point. Descriptions and metric
  ``metadata`` are not kept (tael has no field for them), nor are exemplars
  (the JSON path drops them before parsing, so malformed exemplars never fail
  a request), exponential histogram buckets or resource attributes other
  than ``service.name`` and ``service.instance.id``. ``service.instance.id``,
  when the resource has it, is copied into each point's attributes: tael
  identifies a series by (name, service, kind, attributes), and without it the
  cumulative counters of two replicas of one service would interleave in one
  series (this follows the OpenTelemetry-to-Prometheus ``instance`` mapping).
  Histogram points without buckets (no counts, no bounds) get
  ``bucket_counts = explicit_bounds = None``. Exponential histograms and
  summaries become ``"histogram"`` points with count and sum (value = sum/count)
  and ``otel.metric.type`` set. Summary quantiles are NOT put into the
  summary point's attributes: attributes are the series identity, so values
  there would make every point a new series. Each quantile becomes a
  ``"gauge"`` point of the same metric name with attributes
  ``otel.metric.type = "summary"`` and ``otel.quantile = q`` (a float), which
  is how Prometheus models them; quantiles whose value is NaN (a summary with
  no observations) carry nothing and are skipped without counting. Points with
  a zero time, non-finite values, the ``NO_RECORDED_VALUE`` flag or counts past
  2**63-1 are rejected.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .._limits import SLICE_BYTES
from . import wire
from .common import CONTENT_TYPES, MAX_ERRORS, MAX_NS, SLICE_RECORDS, Decoded, OtlpError
from .logs import decode_logs
from .metrics import MAX_QUANTILES, decode_metrics
from .parse import is_protobuf
from .spans import decode_traces

__all__ = [
    "CONTENT_TYPES",
    "MAX_ERRORS",
    "MAX_NS",
    "MAX_QUANTILES",
    "SLICE_BYTES",
    "SLICE_RECORDS",
    "Decoded",
    "OtlpError",
    "decode_logs",
    "decode_metrics",
    "decode_traces",
    "encode_response",
    "encode_status",
]


# ---------------------------------------------------------------- responses

_RESPONSES: dict[str, tuple[type[Any], str]] = {
    "traces": (ExportTraceServiceResponse, "rejected_spans"),
    "spans": (ExportTraceServiceResponse, "rejected_spans"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records"),
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points"),
}


def encode_response(signal: str, content_type: str, rejected: int, message: str) -> bytes:
    """The Export{Trace,Logs,Metrics}ServiceResponse for ``signal`` ("traces", "logs" or
    "metrics"; "spans" is accepted for "traces"), in the request's content type.

    ``partial_success`` is filled when ``rejected > 0``, and also when only ``message``
    is given (the specification's way to send a warning with everything accepted)."""
    try:
        cls, count_field = _RESPONSES[signal]
    except KeyError:
        raise ValueError(f"unknown signal {signal!r}: expected 'traces', 'logs' or 'metrics'") from None
    if type(rejected) is not int or not 0 <= rejected <= MAX_NS:
        raise ValueError(f"rejected must be an int in 0..2**63-1, got {rejected!r}")
    binary = is_protobuf(content_type)
    response = cls()
    if rejected or message:
        setattr(response.partial_success, count_field, rejected)
        response.partial_success.error_message = _clean(message)
    if binary:
        return bytes(response.SerializeToString())
    doc = json_format.MessageToDict(response)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def encode_status(content_type: str, code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` with ``code`` and ``message`` in the request's content type.

    Built by hand (:func:`tael._otlp.wire.status`) so the server needs no
    googleapis-common-protos; the tests check it against ``google.rpc.status_pb2``."""
    if type(code) is not int or not -(1 << 31) <= code < 1 << 31:
        raise ValueError(f"code must be an int32, got {code!r}")
    binary = is_protobuf(content_type)
    message = _clean(message)
    if not binary:
        return json.dumps({"code": code, "message": message}, separators=(",", ":"), ensure_ascii=False).encode()
    return wire.status(code, message)


def _clean(message: str) -> str:
    """Text that encodes as UTF-8 (lone surrogates from exception texts become U+FFFD)."""
    return message.encode("utf-8", "replace").decode("utf-8")
