"""The OTLP decoder as it was before issue 16 (tael/_otlp.py at 7a46898), kept as the
reference the column-wise decoder (tael/_otlp/) must equal: it builds ``tael.Span``,
``LogRecord`` and ``MetricPoint`` objects one at a time, which ``Store.insert_*`` then
validates and encodes. tests/test_otlp.py runs the same requests through both and
compares what each stores and answers. Not used by tael itself. Parsing, the mapping of
one value, id, resource or scope, and the replies did not change in issue 16: the
reference uses tael/_otlp's (the replies are not here at all).

Its own description follows.

Decoding OTLP/HTTP request bodies into tael records, and encoding the replies.

Pure functions, no I/O: the HTTP server hands over a body that it has already
decompressed and the media type of its ``Content-Type`` (``application/x-protobuf``
or ``application/json``), and gets back records ready for ``Store.insert_*``.

Two kinds of failure are kept apart, as the OTLP specification asks:

- a body that cannot be parsed at all (bad protobuf, bad JSON, wrong shape)
  raises ``OtlpError``; the server answers 400 with a ``google.rpc.Status``;
- a record that parses but cannot be stored (ids of the wrong length or all
  zeros, non-hex ids in JSON, times past 2**63-1, a span ending before it
  starts, a NaN metric value, a service, metric or span name over its LMDB
  key budget (tael/_keys.py)...) is dropped on its own and counted in
  ``Decoded.rejected``; the server reports it in the response's
  ``partial_success``. Every record that is returned is valid for tael's
  encoders by construction, so one bad record never fails a whole batch.

OTLP JSON is protobuf's JSON mapping with three differences: trace and span
ids are hex, not base64; enums are integers; field names may be lowerCamelCase
or snake_case. The JSON path rewrites the ids to base64 and then parses with
``json_format.ParseDict``, so both encodings go through the same mapping code
and decode to identical records.

Mapping (all OTLP fields are kept somewhere, except as noted):

- ``service`` is the resource attribute ``service.name`` when it is a non-empty
  string, else ``"unknown_service"`` (the OpenTelemetry default). ``resource``
  holds every resource attribute, ``service.name`` included. Resource and scope
  extras go into the ``resource`` dict under reserved keys, only when present:
  ``otel.scope.attributes`` (a dict of the instrumentation scope's attributes),
  ``otel.schema_url`` and ``otel.scope.schema_url``, ``otel.dropped_attributes_count``
  (dropped resource attributes), and for logs, whose model has no
  ``scope_version``, ``otel.scope.version``. Records of one scope share one
  ``resource`` dict: treat it as read-only.
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
- Metrics: one ``MetricPoint`` per data point. Descriptions and metric
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

Over the ~800 lines a module should stay under: one mapping per signal (spans,
logs, metrics, each with its checks), kept together because they share the
resource, scope and attribute conversion written once here.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from tael._codec import span_name_problem
from tael._keys import MAX_METRIC_NAME_BYTES
from tael._limits import SLICE_BYTES
from tael._models import LogRecord, MetricPoint, Span, SpanEvent, SpanLink
from tael._otlp import common, mapping, parse

__all__ = [
    "CONTENT_TYPES",
    "Decoded",
    "OtlpError",
    "decode_logs",
    "decode_metrics",
    "decode_traces",
]

log = logging.getLogger(__name__)

CONTENT_TYPES = ("application/x-protobuf", "application/json")
PROTOBUF, JSON = CONTENT_TYPES

MAX_ERRORS = 10  # rejection messages kept per request; the count covers them all
SLICE_RECORDS = 16_384  # with a sink, records go out once this many are decoded, or once
# their estimated stored size reaches SLICE_BYTES (the memory budget's estimate relies on both)
MAX_QUANTILES = 1_000  # quantile_values per summary data point (real summaries have a handful):
# each becomes a point carrying its own copy of the data point's attributes
_POINT_OVERHEAD = 64  # estimated stored bytes of a quantile point beyond its attributes
MAX_NS = (1 << 63) - 1  # tael's time range (int64 nanoseconds)
_MAX_COUNT = MAX_NS  # counts are stored as int64
_FLAG_NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

_SPAN_KINDS = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_STATUSES = {0: "unset", 1: "ok", 2: "error"}
_TEMPORALITIES = {1: "delta", 2: "cumulative"}  # 0, unspecified, and unknown values -> cumulative
_BODY_TYPES = {
    "bool_value": "bool",
    "int_value": "int",
    "double_value": "double",
    "bytes_value": "bytes",
    "array_value": "array",
    "kvlist_value": "kvlist",
}

T = TypeVar("T")


OtlpError = common.OtlpError  # what the shared parsing raises (tael/_otlp/common.py)
_Reject = common.Reject  # what the shared mapping raises for one record


@dataclass
class Decoded(Generic[T]):
    """What one export request decoded to.

    ``records`` are valid tael records in request order; ``rejected`` counts the
    OTLP records (spans, log records, data points) dropped individually, and
    ``errors`` explains the first ``MAX_ERRORS`` of them, each naming the record
    by its JSON path (``resourceSpans[0].scopeSpans[1].spans[7]``)."""

    records: list[T] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    sink: Callable[[list[T]], Any] | None = None
    """When set, records are handed to it a slice at a time (about ``SLICE_BYTES`` of
    the body each) instead of piling up in ``records``: the server inserts each
    slice, so a large request never holds all its decoded records at once."""
    written: int = 0
    """Records handed to ``sink`` so far."""
    _pending: int = 0

    @property
    def accepted(self) -> int:
        """Records decoded as valid: handed to the sink plus still in ``records``."""
        return self.written + len(self.records)

    def add(self, records: Iterable[T], weight: int, more: int = 0) -> None:
        """Keep ``records`` (consumed one at a time: a generator is never held whole),
        flushing a slice whenever the estimated stored size of those pending reaches
        ``SLICE_BYTES``. ``weight``: the first record's estimate (its OTLP message's
        size plus the resource and scope it carries a copy of); ``more``: each
        following one's (a summary quantile: its data point's attributes)."""
        for record in records:
            self.records.append(record)
            if self.sink is not None:
                self._pending += weight
                weight = more
                if self._pending >= SLICE_BYTES or len(self.records) >= SLICE_RECORDS:
                    self.flush()

    def flush(self) -> None:
        """Hand the pending records to the sink (no-op without one): the decoders call it
        at the end of a request."""
        if self.sink is not None and self.records:
            batch, self.records, self._pending = self.records, [], 0
            self.sink(batch)
            self.written += len(batch)

    @property
    def error_message(self) -> str:
        """The errors as one line for ``partial_success.error_message`` ("" when none)."""
        if not self.rejected:
            return ""
        text = "; ".join(self.errors)
        more = self.rejected - len(self.errors)
        return f"{text}; and {more} more" if more > 0 else text

    def reject(self, where: str, problem: str) -> None:
        """Count one OTLP record dropped, explaining the first ``MAX_ERRORS`` by path."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{where}: {problem}")


# ---------------------------------------------------------------- parsing and shared mapping
#
# Parsing a body and mapping one OTLP value, id, resource or scope did not change in
# issue 16: tael/_otlp/ keeps that code (parse.py, mapping.py) under public names, and
# the reference uses it under its old ones. What the reference keeps is what issue 16
# rewrote: building records one at a time.

_is_protobuf = parse.is_protobuf
_parse = parse.parse
_walk_traces, _walk_logs, _walk_metrics = parse.walk_traces, parse.walk_logs, parse.walk_metrics
_span_path, _log_path = parse.span_path, parse.log_path
_value, _attrs, _dropped = mapping.any_value, mapping.attrs_dict, mapping.add_dropped
_ns, _id, _opt_id, _key_text = mapping.checked_ns, mapping.required_id, mapping.optional_id, mapping.key_text
_Resource, _resource, _scoped = mapping.Resource, mapping.resource_of, mapping.scoped


# ---------------------------------------------------------------- traces


def decode_traces(body: bytes, content_type: str, sink: Callable[[list[Span]], Any] | None = None) -> Decoded[Span]:
    """Decode an ExportTraceServiceRequest body (protobuf or OTLP JSON) into spans.

    Raises OtlpError for a body that is not a request, ValueError for an
    unsupported content type; unstorable spans are counted in ``rejected``."""
    request = ExportTraceServiceRequest()
    bad_ids = _parse(body, content_type, request, _walk_traces)
    out: Decoded[Span] = Decoded(sink=sink)
    for ri, rs in enumerate(request.resource_spans):
        res = _resource(rs)
        for si, ss in enumerate(rs.scope_spans):
            resource, problem = _scoped(res, ss, with_version=False)
            scope_name, scope_version = ss.scope.name, ss.scope.version
            carried = rs.resource.ByteSize() + ss.scope.ByteSize()  # copied into every span's row
            for ki, sp in enumerate(ss.spans):
                where = _span_path(ri, si, ki)
                if problem or where in bad_ids:
                    out.reject(where, problem or bad_ids[where])
                    continue
                try:
                    out.add([_span(sp, res.service, resource, scope_name, scope_version)], sp.ByteSize() + carried)
                except _Reject as exc:
                    out.reject(where, str(exc))
    out.flush()
    if out.rejected:
        log.debug("OTLP traces: rejected %d spans: %s", out.rejected, out.error_message)
    return out


def _span(sp: Any, service: str, resource: dict[str, Any], scope_name: str, scope_version: str) -> Span:
    start = sp.start_time_unix_nano
    end = sp.end_time_unix_nano
    if not start:
        raise _Reject("start_time_unix_nano is missing")
    if end < start:
        raise _Reject(f"end_time_unix_nano {end} is before start_time_unix_nano {start}")
    _ns(end, "end_time_unix_nano")
    name_problem = span_name_problem(service, sp.name)
    if name_problem is not None:
        raise _Reject(f"span name {name_problem}")
    trace_id = _id(sp.trace_id, 16, "trace_id")
    span_id = _id(sp.span_id, 8, "span_id")
    parent = _opt_id(sp.parent_span_id, 8, "parent_span_id")
    attrs = _attrs(sp.attributes)
    _dropped(attrs, "attributes", sp.dropped_attributes_count)
    _dropped(attrs, "events", sp.dropped_events_count)
    _dropped(attrs, "links", sp.dropped_links_count)
    events = []
    for j, ev in enumerate(sp.events):
        ev_attrs = _attrs(ev.attributes)
        _dropped(ev_attrs, "attributes", ev.dropped_attributes_count)
        events.append(
            SpanEvent(time_ns=_ns(ev.time_unix_nano, f"events[{j}].time_unix_nano"), name=ev.name, attributes=ev_attrs)
        )
    links = []
    for j, ln in enumerate(sp.links):
        ln_attrs = _attrs(ln.attributes)
        _dropped(ln_attrs, "attributes", ln.dropped_attributes_count)
        if ln.trace_state:
            ln_attrs["otel.trace_state"] = ln.trace_state
        if ln.flags:
            ln_attrs["otel.flags"] = int(ln.flags)
        links.append(
            SpanLink(
                trace_id=_id(ln.trace_id, 16, f"links[{j}].trace_id"),
                span_id=_id(ln.span_id, 8, f"links[{j}].span_id"),
                attributes=ln_attrs,
            )
        )
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=sp.name,
        service=service,
        start_ns=int(start),
        end_ns=int(end),
        kind=_SPAN_KINDS.get(sp.kind, "internal"),
        status=_STATUSES.get(sp.status.code, "unset"),
        status_message=sp.status.message,
        attributes=attrs,
        resource=resource,
        scope_name=scope_name,
        scope_version=scope_version,
        events=events,
        links=links,
        trace_state=sp.trace_state,
        flags=int(sp.flags),
    )


# ---------------------------------------------------------------- logs


def decode_logs(
    body: bytes, content_type: str, sink: Callable[[list[LogRecord]], Any] | None = None
) -> Decoded[LogRecord]:
    """Decode an ExportLogsServiceRequest body (protobuf or OTLP JSON) into log records.

    Raises OtlpError for a body that is not a request, ValueError for an
    unsupported content type; unstorable records are counted in ``rejected``."""
    request = ExportLogsServiceRequest()
    bad_ids = _parse(body, content_type, request, _walk_logs)
    out: Decoded[LogRecord] = Decoded(sink=sink)
    for ri, rl in enumerate(request.resource_logs):
        res = _resource(rl)
        for si, sl in enumerate(rl.scope_logs):
            resource, problem = _scoped(res, sl, with_version=True)
            scope_name = sl.scope.name
            carried = rl.resource.ByteSize() + sl.scope.ByteSize()  # copied into every record's row
            for ki, lr in enumerate(sl.log_records):
                where = _log_path(ri, si, ki)
                if problem or where in bad_ids:
                    out.reject(where, problem or bad_ids[where])
                    continue
                try:
                    out.add([_log(lr, res.service, resource, scope_name)], lr.ByteSize() + carried)
                except _Reject as exc:
                    out.reject(where, str(exc))
    out.flush()
    if out.rejected:
        log.debug("OTLP logs: rejected %d records: %s", out.rejected, out.error_message)
    return out


def _log(lr: Any, service: str, resource: dict[str, Any], scope_name: str) -> LogRecord:
    observed = _ns(lr.observed_time_unix_nano, "observed_time_unix_nano")
    time_ns = _ns(lr.time_unix_nano, "time_unix_nano") or observed
    if not time_ns:
        raise _Reject("both time_unix_nano and observed_time_unix_nano are missing")
    severity = int(lr.severity_number)
    if not 0 <= severity <= 24:
        raise _Reject(f"severity_number must be in 0..24, got {severity}")
    attrs = _attrs(lr.attributes)
    body = ""
    if lr.HasField("body"):
        kind = lr.body.WhichOneof("value")
        if kind == "string_value":
            body = lr.body.string_value
        elif kind is not None:
            body = _json_text(_value(lr.body, 0))
            attrs["otel.body_type"] = _BODY_TYPES.get(kind, kind)
    _dropped(attrs, "attributes", lr.dropped_attributes_count)
    if lr.flags:
        attrs["otel.flags"] = int(lr.flags)
    event_name = getattr(lr, "event_name", "")  # added in opentelemetry-proto 1.28
    if event_name:
        attrs["otel.event_name"] = event_name
    return LogRecord(
        time_ns=time_ns,
        body=body,
        service=service,
        severity_number=severity,
        severity_text=lr.severity_text,
        trace_id=_opt_id(lr.trace_id, 16, "trace_id"),
        span_id=_opt_id(lr.span_id, 8, "span_id"),
        attributes=attrs,
        resource=resource,
        observed_ns=observed or None,
        scope_name=scope_name,
    )


def _json_text(value: Any) -> str:
    """Compact JSON; non-finite floats are written as proto3 JSON strings, not bare NaN."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- metrics


def decode_metrics(
    body: bytes, content_type: str, sink: Callable[[list[MetricPoint]], Any] | None = None
) -> Decoded[MetricPoint]:
    """Decode an ExportMetricsServiceRequest body (protobuf or OTLP JSON) into metric points.

    Raises OtlpError for a body that is not a request, ValueError for an
    unsupported content type; unstorable data points are counted in ``rejected``.
    A summary data point yields one point plus one gauge point per quantile."""
    request = ExportMetricsServiceRequest()
    _parse(body, content_type, request, _walk_metrics)
    out: Decoded[MetricPoint] = Decoded(sink=sink)
    for ri, rm in enumerate(request.resource_metrics):
        res = _resource(rm)
        instance = res.attrs.get("service.instance.id")
        for si, sm in enumerate(rm.scope_metrics):
            problem = res.problem
            for mi, metric in enumerate(sm.metrics):
                data_kind = metric.WhichOneof("data")
                if data_kind is None:
                    continue
                data = getattr(metric, data_kind)
                base = f"resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}]"
                metric_problem = problem or _metric_name_problem(metric.name)
                for pi, dp in enumerate(data.data_points):
                    where = f"{base}.{_CAMEL[data_kind]}.dataPoints[{pi}]"
                    if metric_problem:
                        out.reject(where, metric_problem)
                        continue
                    try:
                        points = _points(metric, data_kind, data, dp, res.service, instance)
                        more = 0
                        if data_kind == "summary":  # each quantile point copies the attributes
                            more = sum(kv.ByteSize() for kv in dp.attributes) + _POINT_OVERHEAD
                        out.add(points, dp.ByteSize(), more)
                    except _Reject as exc:
                        out.reject(where, str(exc))
    out.flush()
    if out.rejected:
        log.debug("OTLP metrics: rejected %d data points: %s", out.rejected, out.error_message)
    return out


def _summary_points(
    first: MetricPoint, attrs: dict[str, Any], quantiles: Any, common: dict[str, Any]
) -> Iterator[MetricPoint]:
    yield first
    for qv in quantiles:
        q, v = float(qv.quantile), float(qv.value)
        if math.isfinite(q) and math.isfinite(v):
            yield MetricPoint(kind="gauge", value=v, attributes={**attrs, "otel.quantile": q}, **common)


_CAMEL = {
    "gauge": "gauge",
    "sum": "sum",
    "histogram": "histogram",
    "exponential_histogram": "exponentialHistogram",
    "summary": "summary",
}


def _metric_name_problem(name: str) -> str | None:
    if not name:
        return "metric name is empty"
    try:
        _key_text(name, "metric name", MAX_METRIC_NAME_BYTES)
    except _Reject as exc:
        return str(exc)
    return None


def _finite_float(value: float, what: str) -> float:
    f = float(value)
    if not math.isfinite(f):
        raise _Reject(f"{what} must be finite, got {f}")
    return f


def _count(value: int, what: str) -> int:
    if value > _MAX_COUNT:
        raise _Reject(f"{what} {value} is past 2**63-1")
    return int(value)


def _points(metric: Any, data_kind: str, data: Any, dp: Any, service: str, instance: Any) -> Iterable[MetricPoint]:
    """The tael points of one OTLP data point (one, or more for a summary: then a
    generator, so they are built as the slices take them, after every check)."""
    if dp.flags & _FLAG_NO_RECORDED_VALUE:
        raise _Reject("data point has the NO_RECORDED_VALUE flag (no value to store)")
    time_ns = _ns(dp.time_unix_nano, "time_unix_nano")
    if not time_ns:
        raise _Reject("time_unix_nano is missing")
    start_ns = _ns(dp.start_time_unix_nano, "start_time_unix_nano") or None
    attrs = _attrs(dp.attributes)
    if instance is not None and "service.instance.id" not in attrs:
        attrs["service.instance.id"] = instance
    common: dict[str, Any] = {
        "time_ns": time_ns,
        "name": metric.name,
        "service": service,
        "unit": metric.unit,
        "start_ns": start_ns,
    }
    temporality = _TEMPORALITIES.get(getattr(data, "aggregation_temporality", 0), "cumulative")
    if data_kind in ("gauge", "sum"):
        which = dp.WhichOneof("value")
        if which is None:
            raise _Reject("number data point has no value")
        value = _finite_float(dp.as_double if which == "as_double" else dp.as_int, "value")
        if data_kind == "gauge":
            return [MetricPoint(kind="gauge", value=value, attributes=attrs, **common)]
        return [
            MetricPoint(
                kind="sum",
                value=value,
                attributes=attrs,
                monotonic=bool(data.is_monotonic),
                temporality=temporality,
                **common,
            )
        ]
    count = _count(dp.count, "count")
    total = _finite_float(dp.sum, "sum") if data_kind == "summary" or dp.HasField("sum") else None
    value = total / count if count and total is not None else 0.0
    if data_kind == "summary":
        if len(dp.quantile_values) > MAX_QUANTILES:
            raise _Reject(
                f"summary data point has {len(dp.quantile_values):,} quantile_values, over the limit of "
                f"{MAX_QUANTILES:,} (each is stored as a point with a copy of the attributes)"
            )
        summary_attrs = {**attrs, "otel.metric.type": "summary"}
        first = MetricPoint(
            kind="histogram",
            value=_finite_float(value, "sum/count"),
            attributes=summary_attrs,
            count=count,
            sum=total,
            **common,
        )
        return _summary_points(first, summary_attrs, dp.quantile_values, common)
    lo = _finite_float(dp.min, "min") if dp.HasField("min") else None
    hi = _finite_float(dp.max, "max") if dp.HasField("max") else None
    if data_kind == "exponential_histogram":
        return [
            MetricPoint(
                kind="histogram",
                value=_finite_float(value, "sum/count"),
                attributes={**attrs, "otel.metric.type": "exponential_histogram"},
                temporality=temporality,
                count=count,
                sum=total,
                min=lo,
                max=hi,
                **common,
            )
        ]
    buckets = [_count(c, f"bucket_counts[{i}]") for i, c in enumerate(dp.bucket_counts)]
    bounds = [_finite_float(b, f"explicit_bounds[{i}]") for i, b in enumerate(dp.explicit_bounds)]
    if buckets or bounds:
        if len(buckets) != len(bounds) + 1:
            raise _Reject(f"{len(buckets)} bucket_counts for {len(bounds)} explicit_bounds (need bounds + 1)")
        bucket_counts: list[int] | None = buckets
        explicit_bounds: list[float] | None = bounds
    else:
        bucket_counts = explicit_bounds = None
    return [
        MetricPoint(
            kind="histogram",
            value=_finite_float(value, "sum/count"),
            attributes=attrs,
            temporality=temporality,
            count=count,
            sum=total,
            min=lo,
            max=hi,
            bucket_counts=bucket_counts,
            explicit_bounds=explicit_bounds,
            **common,
        )
    ]
