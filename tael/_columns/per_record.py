"""Column batches from model objects, record by record: the reference the column-wise
builders (objects.py) must equal, and the path of any batch with a bad or an unusual
record.

Each loop checks a record's common shape cheaply and hands anything unusual to the
exhaustive validators of tael/_codec.py, the calls its encoders make, so the first bad
record fails with the encoders' ValidationError (message, index, field) exactly. What
JSON cannot write directly (a float subclass, a numpy float) goes through msgpack, as
the encoders pack it, and a value msgpack refuses is the encoders' error too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from .. import _block, _codec
from .._blobs import Payloads
from .._errors import ValidationError
from .._models import LogRecord, MetricPoint, Span, SpanEvent
from .common import (
    DIGEST,
    ID8,
    ID16,
    JSON_ERRORS,
    MAX_NS,
    METRIC_KIND_NAMES,
    SPAN_KIND_NAMES,
    SPAN_STATUS_NAMES,
    TEMPORALITY_NAMES,
    enum_names,
    fixed_ids,
    json_array,
    utf8_ok,
    zeros,
)

_ZERO16, _ZERO8 = bytes(16), bytes(8)


def _span_record(s: Span) -> list[Any]:
    """A (validated) span as the list today's encoder packs: for the rare fallback below."""
    fromhex = bytes.fromhex
    return [
        fromhex(s.trace_id),
        fromhex(s.span_id),
        fromhex(s.parent_span_id) if s.parent_span_id else None,
        s.name,
        s.service,
        s.start_ns,
        s.end_ns,
        _block.SPAN_KIND_CODE[s.kind],
        _block.SPAN_STATUS_CODE[s.status],
        s.status_message,
        s.attributes,
        s.resource,
        s.scope_name,
        s.scope_version,
        [[ev.time_ns, ev.name, ev.attributes] for ev in s.events],
        [[fromhex(ln.trace_id), fromhex(ln.span_id), ln.attributes] for ln in s.links],
        s.trace_state,
        s.flags,
    ]


def _plain(i: int, record: list[Any]) -> list[Any]:
    """``record`` (validated) as msgpack stores it: plain dicts, lists, str, int and float,
    which is what a read gives back. The encoders pack what passed validation; what
    JSON cannot write directly (a float or str subclass key, a numpy float) goes
    through msgpack here, as it always did, and a value msgpack refuses is the error
    the encoders raise."""
    try:
        packed = _codec.packb(record)
    except (OverflowError, TypeError, ValueError) as exc:
        raise _codec.fail(i, "attributes", f"cannot be encoded: {exc}") from None
    plain: list[Any] = _codec.unpackb(packed)
    return plain


def _events_text(events: list[list[Any]]) -> bytes:
    return _block.dumps([{"time_ns": e[0], "name": e[1], "attributes": e[2]} for e in events])


def links_text(links: list[list[Any]]) -> bytes:
    return _block.dumps([{"trace_id": ln[0].hex(), "span_id": ln[1].hex(), "attributes": ln[2]} for ln in links])


def spans_by_row(spans: Sequence[Span], payloads: Payloads | None) -> pa.RecordBatch:
    """``span_columns`` record by record: the reference the column-wise path must equal,
    and the path of a batch that has an unusual or a bad span (its loop raises the
    first bad record's error exactly as ``_codec.encode_spans`` does)."""
    n = len(spans)
    traces: list[bytes] = []
    span_ids: list[bytes] = []
    parents: list[bytes | None] = []
    names: list[str] = []
    services: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[int] = []
    statuses: list[int] = []
    messages: list[str] = []
    attributes: list[bytes] = []
    resources: list[bytes] = []
    scopes: list[str] = []
    versions: list[str] = []
    events_col: list[bytes] = []
    links_col: list[bytes] = []
    states: list[str] = []
    flags: list[int] = []
    payload: list[int] = []
    kind_code, status_code = _block.SPAN_KIND_CODE, _block.SPAN_STATUS_CODE
    fromhex, flat_ok, dumps, validate, is_utf8 = (
        bytes.fromhex,
        _codec.flat_ok,
        _block.dumps,
        _codec.validate_span,
        utf8_ok,
    )
    str_, span_t, event_t = str, Span, SpanEvent
    zero16, zero8, max_ns = _ZERO16, _ZERO8, MAX_NS
    resource_text: dict[int, bytes] = {}  # id(resource dict) -> its JSON: written once per batch
    span_flag = payloads.span_flag if payloads is not None else None
    for i, s in enumerate(spans):
        try:
            trace = fromhex(s.trace_id)
            span = fromhex(s.span_id)
            parent_hex = s.parent_span_id
            parent = fromhex(parent_hex) if parent_hex else None
            start, end, service, name = s.start_ns, s.end_ns, s.service, s.name
            kind = kind_code[s.kind]
            status = status_code[s.status]
            message, scope, version, state = s.status_message, s.scope_name, s.scope_version, s.trace_state
            ok = (
                type(s) is span_t
                and len(trace) == 16
                and len(span) == 8
                and len(s.trace_id) == 32
                and len(s.span_id) == 16
                and trace != zero16
                and span != zero8
                and (parent is None or (len(parent) == 8 and len(parent_hex or "") == 16 and parent != zero8))
                and type(start) is int
                and type(end) is int
                and 0 <= start <= end <= max_ns
                and type(name) is str_
                and type(service) is str_
                and 0 < len(service) <= 100
                and len(service) + len(name) <= 127  # the operations key: (127 * 4 + 1) <= 511 bytes
                and "\x00" not in service
                and type(message) is str_
                and type(scope) is str_
                and type(version) is str_
                and type(state) is str_
                and type(s.flags) is int
                and 0 <= s.flags < 4294967296
                and flat_ok(s.attributes)
                and (name.isascii() or is_utf8(name))  # what msgpack would refuse to pack
                and (service.isascii() or is_utf8(service))
                and (message.isascii() or is_utf8(message))
                and (scope.isascii() or is_utf8(scope))
                and (version.isascii() or is_utf8(version))
                and (state.isascii() or is_utf8(state))
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        res_text: bytes | None = b"{}"
        if ok:
            resource = s.resource
            if type(resource) is not dict:
                ok = False
            elif resource:
                res_text = resource_text.get(id(resource))
                if res_text is None and not flat_ok(resource):
                    ok = False
        if not ok:
            validate(i, s)  # raises, or accepts an unusual but valid span
            trace, span = fromhex(s.trace_id), fromhex(s.span_id)
            parent = fromhex(s.parent_span_id) if s.parent_span_id else None
            start, end, service, name = s.start_ns, s.end_ns, s.service, s.name
            kind, status = kind_code[s.kind], status_code[s.status]
            message, scope, version, state = s.status_message, s.scope_name, s.scope_version, s.trace_state
            resource = s.resource
            res_text = None if resource else b"{}"
        attrs = s.attributes
        events: list[list[Any]] = []
        if s.events:
            if type(s.events) is not list:
                validate(i, s)
            for ev in s.events:
                if (
                    type(ev) is not event_t
                    or type(ev.time_ns) is not int
                    or not 0 <= ev.time_ns <= max_ns
                    or type(ev.name) is not str_
                    or not (ev.name.isascii() or is_utf8(ev.name))
                    or not flat_ok(ev.attributes)
                ):
                    validate(i, s)
                events.append([ev.time_ns, ev.name, ev.attributes])
        if span_flag is not None:
            payload.append(span_flag(attrs, events) if attrs or events else 0)
        if s.links:
            validate(i, s)
        try:
            attrs_text = dumps(attrs) if attrs else b"{}"
            if res_text is None:
                res_text = dumps(resource)
                if ok:
                    resource_text[id(resource)] = res_text
            ev_text = _events_text(events) if events else b"[]"
            ln_text = (
                links_text([[fromhex(ln.trace_id), fromhex(ln.span_id), ln.attributes] for ln in s.links])
                if s.links
                else b"[]"
            )
        except JSON_ERRORS:
            validate(i, s)  # names the field at fault
            f = _plain(i, _span_record(s))
            attrs_text = dumps(f[10]) if f[10] else b"{}"
            res_text = dumps(f[11]) if f[11] else b"{}"
            ev_text = _events_text(f[14]) if f[14] else b"[]"
            ln_text = links_text(f[15]) if f[15] else b"[]"
        traces.append(trace)
        span_ids.append(span)
        parents.append(parent)
        names.append(name)
        services.append(service)
        starts.append(start)
        ends.append(end)
        kinds.append(kind)
        statuses.append(status)
        messages.append(message)
        attributes.append(attrs_text)
        resources.append(res_text)
        scopes.append(scope)
        versions.append(version)
        events_col.append(ev_text)
        links_col.append(ln_text)
        states.append(state)
        flags.append(s.flags)
    arrays = [
        fixed_ids(traces, 16),
        fixed_ids(span_ids, 8),
        pa.array(parents, ID8),
        pa.array(names, pa.string()),
        pa.array(services, pa.string()),
        pa.array(starts, pa.int64()),
        pa.array(ends, pa.int64()),
        enum_names(kinds, SPAN_KIND_NAMES),
        enum_names(statuses, SPAN_STATUS_NAMES),
        pa.array(messages, pa.string()),
        json_array(attributes),
        json_array(resources),
        pa.array(scopes, pa.string()),
        pa.array(versions, pa.string()),
        json_array(events_col),
        json_array(links_col),
        pa.array(states, pa.string()),
        pa.array(flags, pa.int64()),
        pa.array(payload, pa.uint8()) if span_flag is not None else pa.nulls(n, pa.uint8()).fill_null(0),
        pa.nulls(n, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["spans"])


# ---------------------------------------------------------------- logs


def validate_log(i: int, r: object) -> None:
    """The exhaustive check of one log record, in ``_codec.encode_logs``'s order (the
    body's UTF-8 last: the encoder finds a lone surrogate in it only when packing)."""
    if not isinstance(r, LogRecord):
        raise ValidationError(f"record {i}: expected tael.LogRecord, got {type(r).__name__}", index=i)
    _codec.check_ns(r.time_ns, i, "time_ns")
    if type(r.body) is not str:
        _codec.check_text(r.body, i, "body")
    _codec.check_key_text(r.service, i, "service")
    sev = r.severity_number
    if type(sev) is not int or not 0 <= sev <= 24:
        raise _codec.fail(i, "severity_number", f"must be an int in 0..24, got {sev!r}")
    _codec.check_text(r.severity_text, i, "severity_text")
    _codec.check_opt_hex_id(r.trace_id, 16, i, "trace_id")
    _codec.check_opt_hex_id(r.span_id, 8, i, "span_id")
    _codec.check_attrs(r.attributes, i, "attributes")
    if r.resource or type(r.resource) is not dict:
        _codec.check_attrs(r.resource, i, "resource")
    _codec.check_opt_ns(r.observed_ns, i, "observed_ns")
    _codec.check_text(r.scope_name, i, "scope_name")
    _codec.check_text(r.body, i, "body")


def _log_record(r: LogRecord) -> list[Any]:
    """A (validated) log record as the list today's encoder packs."""
    return [
        r.time_ns,
        r.body,
        r.service,
        r.severity_number,
        r.severity_text,
        bytes.fromhex(r.trace_id) if r.trace_id else None,
        bytes.fromhex(r.span_id) if r.span_id else None,
        r.attributes,
        r.resource if r.resource or type(r.resource) is not dict else {},
        r.observed_ns,
        r.scope_name,
    ]


def logs_by_row(logs: Sequence[LogRecord], payloads: Payloads | None) -> pa.RecordBatch:
    """``log_columns`` record by record (see ``spans_by_row``)."""
    n = len(logs)
    times: list[int] = []
    bodies: list[str] = []
    services: list[str] = []
    severities: list[int] = []
    sev_texts: list[str] = []
    traces: list[bytes | None] = []
    span_ids: list[bytes | None] = []
    attributes: list[bytes] = []
    resources: list[bytes] = []
    observed_col: list[int | None] = []
    scopes: list[str] = []
    payload: list[int] = []
    fromhex, flat_ok, dumps, is_utf8 = bytes.fromhex, _codec.flat_ok, _block.dumps, utf8_ok
    str_, log_t, zero16, zero8, max_ns = str, LogRecord, _ZERO16, _ZERO8, MAX_NS
    resource_text: dict[int, bytes] = {}
    log_flag = payloads.log_flag if payloads is not None else None
    for i, r in enumerate(logs):
        try:
            t, body, service, sev, sev_text = r.time_ns, r.body, r.service, r.severity_number, r.severity_text
            trace_hex, span_hex, attrs, resource, observed, scope = (
                r.trace_id,
                r.span_id,
                r.attributes,
                r.resource,
                r.observed_ns,
                r.scope_name,
            )
            trace = fromhex(trace_hex) if trace_hex else None
            span = fromhex(span_hex) if span_hex else None
            ok = (
                type(r) is log_t
                and type(t) is int
                and 0 <= t <= max_ns
                and type(body) is str_
                and type(service) is str_
                and len(service) <= 100
                and "\x00" not in service
                and type(sev) is int
                and 0 <= sev <= 24
                and type(sev_text) is str_
                and type(scope) is str_
                and (trace is None or (len(trace_hex or "") == 32 and len(trace) == 16 and trace != zero16))
                and (span is None or (len(span_hex or "") == 16 and len(span) == 8 and span != zero8))
                and (observed is None or (type(observed) is int and 0 <= observed <= max_ns))
                and flat_ok(attrs)
                and type(resource) is dict
                and (body.isascii() or is_utf8(body))
                and (service.isascii() or is_utf8(service))
                and (sev_text.isascii() or is_utf8(sev_text))
                and (scope.isascii() or is_utf8(scope))
            )
        except (ValueError, TypeError, AttributeError):
            ok = False
        res_text: bytes | None = b"{}"
        if ok and resource:
            res_text = resource_text.get(id(resource))
            if res_text is None and not flat_ok(resource):
                ok = False
        if not ok:
            validate_log(i, r)  # raises, or accepts an unusual but valid record
            f = _log_record(r)
            t, body, service, sev, sev_text, trace, span, attrs, resource, observed, scope = f
            res_text = None if resource else b"{}"
        try:
            attrs_text = dumps(attrs) if attrs else b"{}"
            if res_text is None:
                res_text = dumps(resource)
                if ok:
                    resource_text[id(resource)] = res_text
        except JSON_ERRORS:
            validate_log(i, r)
            f = _plain(i, _log_record(r))
            attrs_text = dumps(f[7]) if f[7] else b"{}"
            res_text = dumps(f[8]) if f[8] else b"{}"
        times.append(t)
        bodies.append(body)
        services.append(service)
        severities.append(sev)
        sev_texts.append(sev_text)
        traces.append(trace)
        span_ids.append(span)
        attributes.append(attrs_text)
        resources.append(res_text)
        observed_col.append(observed)
        scopes.append(scope)
        if log_flag is not None:
            payload.append(log_flag(body) if body else 0)
    arrays = [
        pa.array(times, pa.int64()),
        pa.array(bodies, pa.string()),
        pa.array(services, pa.string()),
        pa.array(severities, pa.int32()),
        pa.array(sev_texts, pa.string()),
        pa.array(traces, ID16),
        pa.array(span_ids, ID8),
        json_array(attributes),
        json_array(resources),
        pa.array(observed_col, pa.int64()),
        pa.array(scopes, pa.string()),
        pa.array(payload, pa.uint8()) if log_flag is not None else zeros(n),
        pa.nulls(n, DIGEST),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["logs"])


# ---------------------------------------------------------------- metric points


def _metric_record(p: MetricPoint) -> list[Any]:
    """A (validated) metric point as the list today's encoder packs."""
    return [
        p.time_ns,
        p.name,
        p.service,
        float(p.value),
        _block.METRIC_KIND_CODE[p.kind],
        p.unit,
        p.attributes,
        p.monotonic,
        _block.TEMPORALITY_CODE[p.temporality],
        p.start_ns,
        p.count,
        None if p.sum is None else float(p.sum),
        None if p.min is None else float(p.min),
        None if p.max is None else float(p.max),
        None if p.bucket_counts is None else list(p.bucket_counts),
        None if p.explicit_bounds is None else [float(b) for b in p.explicit_bounds],
    ]


def metrics_by_row(points: Sequence[MetricPoint]) -> pa.RecordBatch:
    """``metric_columns`` record by record (see ``spans_by_row``)."""
    columns: list[list[Any]] = [[] for _ in range(17)]
    (times, names, services, values, kinds, units, attributes, monotonic, temporalities) = columns[:9]
    (starts, counts, sums, mins, maxs, buckets, bounds, series) = columns[9:]
    kind_code, temporality_code = _block.METRIC_KIND_CODE, _block.TEMPORALITY_CODE
    flat_ok, dumps, is_utf8, series_key = _codec.flat_ok, _block.dumps, utf8_ok, _codec.series_key
    str_, float_, point_t, max_ns, isfinite = str, float, MetricPoint, MAX_NS, math.isfinite
    for i, p in enumerate(points):
        try:
            t, name, service, value, attrs, unit = p.time_ns, p.name, p.service, p.value, p.attributes, p.unit
            kind = kind_code[p.kind]
            temporality = temporality_code[p.temporality]
            ok = (
                type(p) is point_t
                and type(t) is int
                and 0 <= t <= max_ns
                and type(name) is str_
                and 0 < len(name) <= 100
                and "\x00" not in name
                and type(service) is str_
                and len(service) <= 100
                and "\x00" not in service
                and type(value) is float_
                and isfinite(value)
                and type(unit) is str_
                and type(p.monotonic) is bool
                and flat_ok(attrs)
                and p.start_ns is None
                and p.count is None
                and p.sum is None
                and p.min is None
                and p.max is None
                and p.bucket_counts is None
                and p.explicit_bounds is None
                and (name.isascii() or is_utf8(name))
                and (service.isascii() or is_utf8(service))
                and (unit.isascii() or is_utf8(unit))
            )
        except (TypeError, KeyError, AttributeError):
            ok = False
        if ok:
            extra = (None, None, None, None, None, None, None)
        else:
            _codec.validate_metric(i, p)  # raises, or accepts an unusual but valid point
            f = _metric_record(p)
            t, name, service, value, kind, unit, attrs = f[:7]
            temporality = f[8]
            extra = tuple(f[9:])
        try:
            sid = series_key(name, service, kind, attrs)[0]
            attrs_text = dumps(attrs) if attrs else b"{}"
        except JSON_ERRORS:
            _codec.validate_metric(i, p)
            f = _plain(i, _metric_record(p))
            attrs_text = dumps(f[6]) if f[6] else b"{}"
            sid = series_key(name, service, kind, attrs)[0]
        times.append(t)
        names.append(name)
        services.append(service)
        values.append(value)
        kinds.append(kind)
        units.append(unit)
        attributes.append(attrs_text)
        monotonic.append(p.monotonic)
        temporalities.append(temporality)
        starts.append(extra[0])
        counts.append(extra[1])
        sums.append(extra[2])
        mins.append(extra[3])
        maxs.append(extra[4])
        buckets.append(extra[5])
        bounds.append(extra[6])
        series.append(sid)
    arrays = [
        pa.array(times, pa.int64()),
        pa.array(names, pa.string()),
        pa.array(services, pa.string()),
        pa.array(values, pa.float64()),
        enum_names(kinds, METRIC_KIND_NAMES),
        pa.array(units, pa.string()),
        json_array(attributes),
        pa.array(monotonic, pa.bool_()),
        enum_names(temporalities, TEMPORALITY_NAMES),
        pa.array(starts, pa.int64()),
        pa.array(counts, pa.int64()),
        pa.array(sums, pa.float64()),
        pa.array(mins, pa.float64()),
        pa.array(maxs, pa.float64()),
        pa.array(buckets, pa.list_(pa.int64())),
        pa.array(bounds, pa.list_(pa.float64())),
        fixed_ids(series, 8),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["metrics"])
