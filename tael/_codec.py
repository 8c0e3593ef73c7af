"""Validation and the msgpack record encoding shared by the WAL and the hot tier.

A record is encoded once, at insert: the same bytes are framed into the WAL and
stored as the LMDB value, so replay needs no re-encoding. Each encoder returns
*rows*: the packed record plus the fields the hot tier keys and indexes on.
The array layouts (version 1) are documented in docs/format/wal.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgpack

from ._blobs import Payloads
from ._errors import ValidationError
from ._keys import MAX_KEY_BYTES, MAX_METRIC_NAME_BYTES, MAX_SERVICE_BYTES, span_name_budget
from ._layout import (
    COMMENT_AUTHOR,
    COMMENT_BODY,
    COMMENT_CREATED,
    COMMENT_ID,
    COMMENT_SPAN,
    COMMENT_TRACE,
    EVENT_ATTRS,
    EVENT_NAME,
    EVENT_TIME,
    LINK_ATTRS,
    LINK_SPAN,
    LINK_TRACE,
    LOG_ATTRS,
    LOG_BODY,
    LOG_OBSERVED,
    LOG_RESOURCE,
    LOG_SCOPE_NAME,
    LOG_SERVICE,
    LOG_SEVERITY,
    LOG_SEVERITY_TEXT,
    LOG_SPAN,
    LOG_TIME,
    LOG_TRACE,
    METRIC_ATTRS,
    METRIC_BOUNDS,
    METRIC_BUCKETS,
    METRIC_COUNT,
    METRIC_KIND,
    METRIC_MAX,
    METRIC_MIN,
    METRIC_MONOTONIC,
    METRIC_NAME,
    METRIC_SERVICE,
    METRIC_START,
    METRIC_SUM,
    METRIC_TEMPORALITY,
    METRIC_TIME,
    METRIC_UNIT,
    METRIC_VALUE,
    SPAN_ATTRS,
    SPAN_END,
    SPAN_EVENTS,
    SPAN_FLAGS,
    SPAN_ID,
    SPAN_KIND,
    SPAN_LINKS,
    SPAN_NAME,
    SPAN_PARENT,
    SPAN_RESOURCE,
    SPAN_SCOPE_NAME,
    SPAN_SCOPE_VERSION,
    SPAN_SERVICE,
    SPAN_START,
    SPAN_STATUS,
    SPAN_STATUS_MESSAGE,
    SPAN_TRACE,
    SPAN_TRACE_STATE,
    CommentRecord,
    LogRecordFields,
    MetricRecord,
    SpanRecord,
)
from ._models import (
    METRIC_KINDS,
    SPAN_KINDS,
    SPAN_STATUSES,
    TEMPORALITIES,
    Comment,
    LogRecord,
    MetricPoint,
    Span,
    SpanEvent,
    SpanLink,
)

MAX_NS = (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1
_ZERO16, _ZERO8 = bytes(16), bytes(8)
_KIND_CODE = {k: i for i, k in enumerate(SPAN_KINDS)}
_STATUS_CODE = {s: i for i, s in enumerate(SPAN_STATUSES)}
_METRIC_KIND_CODE = {k: i for i, k in enumerate(METRIC_KINDS)}
_TEMPORALITY_CODE = {t: i for i, t in enumerate(TEMPORALITIES)}
STATUS_ERROR = _STATUS_CODE["error"]
_SCALARS = frozenset((str, float, bool, type(None)))

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def packb(value: Any) -> bytes:
    return bytes(_packb(value))


def unpackb(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)


# Rows are plain tuples (a NamedTuple costs ~10x more to build, per record, on the insert
# path). The packed record is always the last element.
SpanRow = tuple[int, bytes, bytes, str, int, bool, str, int, bytes]
"""(start_ns, trace id, span id, service, duration_ns, is_error, name, payload flag, packed record).
The payload flag (see ``Payloads.span_flag``) says whether the record has text to
index (1) and text for the blob store (2)."""
LogRow = tuple[int, bytes | None, int, str, int, bytes]
"""(time_ns, trace id or None, severity number, service, payload flag, packed record)"""
CommentRow = tuple[bytes, int, bytes, bytes]
"""(trace id, created_ns, 16-byte comment id, packed record)"""
MetricRow = tuple[int, str, bytes, bytes, bytes]
"""(time_ns, name, 8-byte series id, packed [service, kind, attributes] for the catalog, packed record)"""


# ---------------------------------------------------------------- validation


def _fail(index: int, fieldname: str, problem: str) -> ValidationError:
    return ValidationError(f"record {index}: field {fieldname!r} {problem}", index=index, field=fieldname)


def _hex_id(value: object, nbytes: int, index: int, fieldname: str) -> bytes:
    if type(value) is not str:
        raise _fail(index, fieldname, f"must be a {nbytes * 2}-character hex string, got {type(value).__name__}")
    if len(value) != nbytes * 2:
        raise _fail(index, fieldname, f"must be {nbytes * 2} hex characters, got {len(value)}: {value!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise _fail(index, fieldname, f"is not hex: {value!r}") from None
    if len(raw) != nbytes:  # fromhex skips whitespace
        raise _fail(index, fieldname, f"is not hex: {value!r}")
    if raw == (_ZERO16 if nbytes == 16 else _ZERO8):
        raise _fail(index, fieldname, "must not be all zeros (an invalid id in OpenTelemetry)")
    return raw


def _opt_hex_id(value: object, nbytes: int, index: int, fieldname: str) -> bytes | None:
    if value is None or value == "":
        return None
    return _hex_id(value, nbytes, index, fieldname)


def _ns(value: object, index: int, fieldname: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_NS:  # bool is rejected: type(True) is bool
        raise _fail(index, fieldname, f"must be an int of Unix nanoseconds in 0..2**63-1, got {value!r}")
    return value


def _opt_ns(value: object, index: int, fieldname: str) -> int | None:
    return None if value is None else _ns(value, index, fieldname)


_NOT_UNICODE = "is not valid Unicode (it holds a lone surrogate, which UTF-8 cannot encode)"


def _text(value: object, index: int, fieldname: str) -> str:
    if not isinstance(value, str):
        raise _fail(index, fieldname, f"must be a str, got {type(value).__name__}")
    if not value.isascii() and _utf8_len(value) is None:
        raise _fail(index, fieldname, _NOT_UNICODE)
    return value


def _utf8_len(text: str) -> int | None:
    """UTF-8 length of ``text``, or None when it cannot be encoded (a lone surrogate)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return None


def key_text_problem(text: str, limit: int, *, empty_ok: bool = True) -> str | None:
    """Why ``text`` cannot be stored where it becomes part of an LMDB key (at most
    ``limit`` bytes of it, no NUL: NUL separates it from what follows), or None.
    Shared by validation and the OTLP decoder (see _keys for the budgets)."""
    if not text:
        return None if empty_ok else "must not be empty (it is part of an LMDB key)"
    if "\x00" in text:
        return "must not contain NUL characters"
    if not text.isascii() and len(text) * 4 <= limit and _utf8_len(text) is None:
        return _NOT_UNICODE
    if len(text) * 4 > limit:  # a UTF-8 character is at most 4 bytes: short text needs no encoding
        n = _utf8_len(text)
        if n is None:
            return _NOT_UNICODE
        if n > limit:
            return f"must be at most {limit} bytes of UTF-8, got {n}"
    return None


def span_name_problem(service: str, name: str) -> str | None:
    """Why a span ``name`` cannot be stored for a (valid) ``service``, or None: the hot
    tier's ``operations`` key is service NUL name, at most MAX_KEY_BYTES bytes."""
    budget = span_name_budget(len(service) if service.isascii() else len(service.encode()))
    if len(name) * 4 <= budget:
        return None
    n = _utf8_len(name)
    if n is None:
        return "is not valid Unicode (it holds a lone surrogate)"
    if n > budget:
        return (
            f"must be at most {budget} bytes of UTF-8 for a service name of {MAX_KEY_BYTES - 1 - budget} bytes, "
            f"got {n}: service NUL name is a key of the hot tier's operations table, "
            f"at most {MAX_KEY_BYTES} bytes"
        )
    return None


def _key_text(
    value: object, index: int, fieldname: str, limit: int = MAX_SERVICE_BYTES, *, empty_ok: bool = True
) -> str:
    _text(value, index, fieldname)
    assert isinstance(value, str)
    problem = key_text_problem(value, limit, empty_ok=empty_ok)
    if problem is not None:
        raise _fail(index, fieldname, problem)
    return value


def _choice(value: object, codes: dict[str, int], index: int, fieldname: str) -> int:
    code = codes.get(value) if isinstance(value, str) else None
    if code is None:
        raise _fail(index, fieldname, f"must be one of {tuple(codes)}, got {value!r}")
    return code


def _check_value(value: object, index: int, path: str, depth: int = 0) -> None:
    if depth > 32:
        raise _fail(index, path, "is nested more than 32 levels deep")
    t = type(value)
    if isinstance(value, str):
        if not value.isascii() and _utf8_len(value) is None:
            raise _fail(index, path, _NOT_UNICODE)
        return
    if t in _SCALARS:
        return
    if t is int or (isinstance(value, int) and not isinstance(value, bool)):
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise _fail(index, path, f"int {value} does not fit in 64 bits")
        return
    if isinstance(value, str):
        if not value.isascii() and _utf8_len(value) is None:
            raise _fail(index, path, _NOT_UNICODE)
        return
    if isinstance(value, float):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, index, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        _check_attrs(value, index, path, depth + 1)
        return
    raise _fail(index, path, f"is not JSON-like (str, int, float, bool, None, list, dict): got {type(value).__name__}")


def _check_attrs(attrs: object, index: int, fieldname: str, depth: int = 0) -> dict[str, Any]:
    if not isinstance(attrs, dict):
        raise _fail(index, fieldname, f"must be a dict, got {type(attrs).__name__}")
    for key, value in attrs.items():
        if type(key) is not str:
            raise _fail(index, fieldname, f"has a non-str key {key!r}")
        if not key.isascii() and _utf8_len(key) is None:
            raise _fail(index, fieldname, f"has a key {key!r} that {_NOT_UNICODE}")
        t = type(value)
        if t is str:
            if not value.isascii() and _utf8_len(value) is None:
                raise _fail(index, f"{fieldname}.{key}", _NOT_UNICODE)
            continue
        if t in _SCALARS or (t is int and _INT_MIN <= value <= _INT_MAX):
            continue
        _check_value(value, index, f"{fieldname}.{key}", depth)
    return attrs


def _float(value: object, index: int, fieldname: str, *, finite: bool) -> float:
    if type(value) is float or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        f = float(value)
        if finite and not math.isfinite(f):
            raise _fail(index, fieldname, f"must be finite, got {f}")
        return f
    raise _fail(index, fieldname, f"must be a float, got {type(value).__name__}")


def _opt_float(value: object, index: int, fieldname: str) -> float | None:
    return None if value is None else _float(value, index, fieldname, finite=False)


def _count(value: object, index: int, fieldname: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_NS:  # int64: what Parquet and SQL engines hold
        raise _fail(index, fieldname, f"must be a non-negative int below 2**63, got {value!r}")
    return value


# ---------------------------------------------------------------- encoders


def _validate_span(i: int, s: object) -> None:
    """The slow, exhaustive check of one span; raises ValidationError naming the field."""
    if not isinstance(s, Span):
        raise ValidationError(f"record {i}: expected tael.Span, got {type(s).__name__}", index=i)
    _hex_id(s.trace_id, 16, i, "trace_id")
    _hex_id(s.span_id, 8, i, "span_id")
    _opt_hex_id(s.parent_span_id, 8, i, "parent_span_id")
    _ns(s.start_ns, i, "start_ns")
    _ns(s.end_ns, i, "end_ns")
    if s.end_ns < s.start_ns:
        raise _fail(i, "end_ns", f"must be >= start_ns ({s.start_ns}), got {s.end_ns}")
    _key_text(s.service, i, "service", empty_ok=False)  # the services key (LMDB keys are never empty)
    _text(s.name, i, "name")
    problem = span_name_problem(s.service, s.name)
    if problem is not None:
        raise _fail(i, "name", problem)
    _choice(s.kind, _KIND_CODE, i, "kind")
    _choice(s.status, _STATUS_CODE, i, "status")
    for name in ("status_message", "scope_name", "scope_version", "trace_state"):
        _text(getattr(s, name), i, name)
    _check_attrs(s.attributes, i, "attributes")
    _check_attrs(s.resource, i, "resource")
    for j, ev in enumerate(_seq(s.events, i, "events")):
        if not isinstance(ev, SpanEvent):
            raise _fail(i, f"events[{j}]", f"must be a tael.SpanEvent, got {type(ev).__name__}")
        _ns(ev.time_ns, i, f"events[{j}].time_ns")
        _text(ev.name, i, f"events[{j}].name")
        _check_attrs(ev.attributes, i, f"events[{j}].attributes")
    for j, ln in enumerate(_seq(s.links, i, "links")):
        if not isinstance(ln, SpanLink):
            raise _fail(i, f"links[{j}]", f"must be a tael.SpanLink, got {type(ln).__name__}")
        _hex_id(ln.trace_id, 16, i, f"links[{j}].trace_id")
        _hex_id(ln.span_id, 8, i, f"links[{j}].span_id")
        _check_attrs(ln.attributes, i, f"links[{j}].attributes")
    if type(s.flags) is not int or not 0 <= s.flags < 1 << 32:
        raise _fail(i, "flags", f"must be an int in 0..2**32-1, got {s.flags!r}")


def _flat_ok(d: object) -> bool:
    """True for the common case: a plain dict of str keys and scalar values (ints in range)."""
    if type(d) is not dict:
        return False
    if not d:
        return True
    return _STR_ONLY.issuperset(map(type, d)) and _FLAT.issuperset(map(type, d.values()))


_STR_ONLY = frozenset((str,))
_FLAT = frozenset((str, int, float, bool, type(None)))


def encode_spans(spans: Sequence[Span], payloads: Payloads) -> list[SpanRow]:
    """Validate the whole batch, then encode it. Raises ValidationError on the first bad record.

    The loop checks the common shape cheaply and hands anything unusual to
    _validate_span, which either names the fault or accepts the record.
    Out-of-range ints inside flat attributes are caught by msgpack at pack time.
    """
    rows: list[SpanRow] = []
    append = rows.append
    kind_code, status_code = _KIND_CODE, _STATUS_CODE
    fromhex, flat_ok, pack, str_ = bytes.fromhex, _flat_ok, _packb, str
    zero16, zero8 = _ZERO16, _ZERO8
    for i, s in enumerate(spans):
        try:
            trace = fromhex(s.trace_id)
            span = fromhex(s.span_id)
            parent_hex = s.parent_span_id
            parent = fromhex(parent_hex) if parent_hex else None
            start, end, service = s.start_ns, s.end_ns, s.service
            kind = kind_code[s.kind]
            status = status_code[s.status]
            ok = (
                type(s) is Span
                and len(trace) == 16
                and len(span) == 8
                and len(s.trace_id) == 32
                and len(s.span_id) == 16
                and trace != zero16
                and span != zero8
                and (parent is None or (len(parent) == 8 and len(parent_hex or "") == 16 and parent != zero8))
                and type(start) is int
                and type(end) is int
                and 0 <= start <= end <= MAX_NS
                and type(s.name) is str_
                and type(service) is str_
                and 0 < len(service) <= 100
                and len(service) + len(s.name) <= 127  # the operations key: (127 * 4 + 1) <= 511 bytes
                and "\x00" not in service
                and type(s.status_message) is str_
                and type(s.scope_name) is str_
                and type(s.scope_version) is str_
                and type(s.trace_state) is str_
                and type(s.flags) is int
                and 0 <= s.flags < 4294967296
                and flat_ok(s.attributes)
                and flat_ok(s.resource)
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            _validate_span(i, s)
            trace, span = bytes.fromhex(s.trace_id), bytes.fromhex(s.span_id)
            parent = bytes.fromhex(s.parent_span_id) if s.parent_span_id else None
            start, end, service = s.start_ns, s.end_ns, s.service
            kind, status = kind_code[s.kind], status_code[s.status]
        events: list[list[Any]] = []
        if s.events:
            if type(s.events) is not list:
                _validate_span(i, s)
            for ev in s.events:
                if (
                    type(ev) is not SpanEvent
                    or type(ev.time_ns) is not int
                    or not 0 <= ev.time_ns <= MAX_NS
                    or type(ev.name) is not str_
                    or not flat_ok(ev.attributes)
                ):
                    _validate_span(i, s)
                events.append([ev.time_ns, ev.name, ev.attributes])
        links: list[list[Any]] = []
        if s.links:
            _validate_span(i, s)
            links = [[fromhex(ln.trace_id), fromhex(ln.span_id), ln.attributes] for ln in s.links]
        try:
            value = pack(
                [
                    trace,
                    span,
                    parent,
                    s.name,
                    service,
                    start,
                    end,
                    kind,
                    status,
                    s.status_message,
                    s.attributes,
                    s.resource,
                    s.scope_name,
                    s.scope_version,
                    events,
                    links,
                    s.trace_state,
                    s.flags,
                ]
            )
        except (OverflowError, TypeError, ValueError) as exc:
            _validate_span(i, s)  # names the field at fault
            raise _fail(i, "attributes", f"cannot be encoded: {exc}") from None
        flag = payloads.span_flag(s.attributes, events) if s.attributes or events else 0
        append((start, trace, span, service, end - start, status == STATUS_ERROR, s.name, flag, value))
    return rows


def encode_logs(logs: Sequence[LogRecord], payloads: Payloads) -> list[LogRow]:
    """Validate the whole batch, then encode it. Raises ValidationError on the first bad record."""
    rows: list[LogRow] = []
    append = rows.append
    for i, r in enumerate(logs):
        if not isinstance(r, LogRecord):
            raise ValidationError(f"record {i}: expected tael.LogRecord, got {type(r).__name__}", index=i)
        t = _ns(r.time_ns, i, "time_ns")
        body = r.body if type(r.body) is str else _text(r.body, i, "body")
        service = _key_text(r.service, i, "service")
        sev = r.severity_number
        if type(sev) is not int or not 0 <= sev <= 24:
            raise _fail(i, "severity_number", f"must be an int in 0..24, got {sev!r}")
        sev_text = _text(r.severity_text, i, "severity_text")
        trace = _opt_hex_id(r.trace_id, 16, i, "trace_id")
        span = _opt_hex_id(r.span_id, 8, i, "span_id")
        attrs = _check_attrs(r.attributes, i, "attributes")
        resource = _check_attrs(r.resource, i, "resource") if r.resource or type(r.resource) is not dict else {}
        observed = _opt_ns(r.observed_ns, i, "observed_ns")
        scope = _text(r.scope_name, i, "scope_name")
        try:
            value = _packb([t, body, service, sev, sev_text, trace, span, attrs, resource, observed, scope])
        except (OverflowError, TypeError, ValueError) as exc:
            _text(body, i, "body")  # the one field not checked above (bodies may be large)
            raise _fail(i, "attributes", f"cannot be encoded: {exc}") from None
        append((t, trace, sev, service, payloads.log_flag(body) if body else 0, value))
    return rows


def series_id(name: str, service: str, kind: int, attributes: dict[str, Any]) -> bytes:
    """8-byte id of a metric series: a hash of its canonical identity."""
    canon = json.dumps([name, service, kind, attributes], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canon.encode(), digest_size=8).digest()


def _validate_metric(i: int, p: object) -> None:
    """The slow, exhaustive check of one metric point; raises ValidationError naming the field."""
    if not isinstance(p, MetricPoint):
        raise ValidationError(f"record {i}: expected tael.MetricPoint, got {type(p).__name__}", index=i)
    _ns(p.time_ns, i, "time_ns")
    _key_text(p.name, i, "name", MAX_METRIC_NAME_BYTES, empty_ok=False)  # the series key
    _key_text(p.service, i, "service")
    _float(p.value, i, "value", finite=True)
    _choice(p.kind, _METRIC_KIND_CODE, i, "kind")
    _text(p.unit, i, "unit")
    _check_attrs(p.attributes, i, "attributes")
    if type(p.monotonic) is not bool:
        raise _fail(i, "monotonic", f"must be a bool, got {type(p.monotonic).__name__}")
    _choice(p.temporality, _TEMPORALITY_CODE, i, "temporality")
    _opt_ns(p.start_ns, i, "start_ns")
    if p.count is not None:
        _count(p.count, i, "count")
    for name in ("sum", "min", "max"):
        _opt_float(getattr(p, name), i, name)
    if p.bucket_counts is not None:
        for j, c in enumerate(_seq(p.bucket_counts, i, "bucket_counts")):
            _count(c, i, f"bucket_counts[{j}]")
    if p.explicit_bounds is not None:
        for j, b in enumerate(_seq(p.explicit_bounds, i, "explicit_bounds")):
            _float(b, i, f"explicit_bounds[{j}]", finite=True)
    buckets, bounds = p.bucket_counts, p.explicit_bounds
    if buckets is not None and bounds is not None and len(buckets) != len(bounds) + 1:
        raise _fail(i, "bucket_counts", f"must have len(explicit_bounds) + 1 = {len(bounds) + 1} entries")


# The validators under public names, for tael/_columns.py: its column builders raise exactly
# the errors the encoders above raise, by calling the same checks.
validate_span = _validate_span
validate_metric = _validate_metric
fail = _fail
check_ns = _ns
check_opt_ns = _opt_ns
check_text = _text
check_key_text = _key_text
check_opt_hex_id = _opt_hex_id
check_attrs = _check_attrs
flat_ok = _flat_ok


# Series identity is a hash of a canonical JSON form, which costs microseconds per
# point; a bounded process-wide cache keyed by the exact (type-tagged) identity of
# flat attribute dicts makes the repeat case a dict lookup.
_SERIES_CACHE: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
_SERIES_CACHE_MAX = 1 << 16


def _series(name: str, service: str, kind: int, attrs: dict[str, Any], flat: bool) -> tuple[bytes, bytes]:
    if not flat:
        return series_id(name, service, kind, attrs), _packb([service, kind, attrs])
    key = (name, service, kind, tuple(attrs.items()), tuple(map(type, attrs.values())))
    hit = _SERIES_CACHE.get(key)
    if hit is None:
        if len(_SERIES_CACHE) >= _SERIES_CACHE_MAX:
            _SERIES_CACHE.clear()
        hit = _SERIES_CACHE[key] = (series_id(name, service, kind, attrs), _packb([service, kind, attrs]))
    return hit


def series_key(name: str, service: str, kind: int, attrs: dict[str, Any]) -> tuple[bytes, bytes]:
    """(series id, packed catalog entry) of a metric series, cached."""
    return _series(name, service, kind, attrs, _flat_ok(attrs))


def encode_metrics(points: Sequence[MetricPoint]) -> list[MetricRow]:
    """Validate the whole batch, then encode it. Raises ValidationError on the first bad record."""
    rows: list[MetricRow] = []
    append = rows.append
    kind_code, temporality_code, flat_ok, str_, float_ = _METRIC_KIND_CODE, _TEMPORALITY_CODE, _flat_ok, str, float
    isfinite = math.isfinite
    for i, p in enumerate(points):
        try:
            t, name, service, value, attrs = p.time_ns, p.name, p.service, p.value, p.attributes
            kind = kind_code[p.kind]
            temporality = temporality_code[p.temporality]
            flat = flat_ok(attrs)
            ok = (
                type(p) is MetricPoint
                and type(t) is int
                and 0 <= t <= MAX_NS
                and type(name) is str_
                and 0 < len(name) <= 100
                and "\x00" not in name
                and type(service) is str_
                and len(service) <= 100
                and "\x00" not in service
                and type(value) is float_
                and isfinite(value)
                and type(p.unit) is str_
                and type(p.monotonic) is bool
                and flat
                and p.start_ns is None
                and p.count is None
                and p.sum is None
                and p.min is None
                and p.max is None
                and p.bucket_counts is None
                and p.explicit_bounds is None
            )
        except (TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            _validate_metric(i, p)  # raises, or accepts an unusual but valid point
            t, name, service, attrs = p.time_ns, p.name, p.service, p.attributes
            value = float(p.value)
            kind, temporality = kind_code[p.kind], temporality_code[p.temporality]
            flat = flat_ok(attrs)
        try:
            sid, desc = _series(name, service, kind, attrs, flat)
            packed = _packb(
                [
                    t,
                    name,
                    service,
                    value,
                    kind,
                    p.unit,
                    attrs,
                    p.monotonic,
                    temporality,
                    p.start_ns,
                    p.count,
                    None if p.sum is None else float(p.sum),
                    None if p.min is None else float(p.min),
                    None if p.max is None else float(p.max),
                    None if p.bucket_counts is None else list(p.bucket_counts),
                    None if p.explicit_bounds is None else [float(b) for b in p.explicit_bounds],
                ]
            )
        except (OverflowError, TypeError, ValueError) as exc:
            _validate_metric(i, p)  # names the field at fault
            raise _fail(i, "attributes", f"cannot be encoded: {exc}") from None
        append((t, name, sid, desc, packed))
    return rows


def encode_comment(trace_id: object, body: object, author: object, span_id: object, created_ns: int) -> CommentRow:
    """Validate and encode one trace comment (a fresh random id)."""
    trace = _hex_id(trace_id, 16, 0, "trace_id")
    span = _opt_hex_id(span_id, 8, 0, "span_id")
    if not isinstance(body, str) or not body.strip():
        raise ValidationError(f"comment body must be a non-empty str, got {body!r}", index=0, field="body")
    if not isinstance(author, str) or not author.strip():
        raise ValidationError(f"comment author must be a non-empty str, got {author!r}", index=0, field="author")
    cid = os.urandom(16)
    return (trace, created_ns, cid, _packb([cid, trace, span, author, body, created_ns]))


def _seq(value: object, index: int, fieldname: str) -> Iterable[Any]:
    if not isinstance(value, (list, tuple)):
        raise _fail(index, fieldname, f"must be a list, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------- row recovery (replay)


def span_row(value: bytes, payloads: Payloads) -> SpanRow:
    f = unpackb(value)
    start = f[SPAN_START]
    flag = payloads.span_flag(f[SPAN_ATTRS], f[SPAN_EVENTS])
    return (
        start,
        f[SPAN_TRACE],
        f[SPAN_ID],
        f[SPAN_SERVICE],
        f[SPAN_END] - start,
        f[SPAN_STATUS] == STATUS_ERROR,
        f[SPAN_NAME],
        flag,
        value,
    )


def log_row(value: bytes, payloads: Payloads) -> LogRow:
    f = unpackb(value)
    body = f[LOG_BODY]
    return (f[LOG_TIME], f[LOG_TRACE], f[LOG_SEVERITY], f[LOG_SERVICE], payloads.log_flag(body) if body else 0, value)


def comment_row(value: bytes, payloads: Payloads) -> CommentRow:
    f = unpackb(value)
    return (f[COMMENT_TRACE], f[COMMENT_CREATED], f[COMMENT_ID], value)


def metric_row(value: bytes, payloads: Payloads) -> MetricRow:
    f = unpackb(value)
    name, service, kind, attrs = f[METRIC_NAME], f[METRIC_SERVICE], f[METRIC_KIND], f[METRIC_ATTRS]
    return (f[METRIC_TIME], name, series_id(name, service, kind, attrs), _packb([service, kind, attrs]), value)


# ---------------------------------------------------------------- decoders


def decode_span(f: SpanRecord) -> Span:
    parent = f[SPAN_PARENT]
    return Span(
        trace_id=f[SPAN_TRACE].hex(),
        span_id=f[SPAN_ID].hex(),
        parent_span_id=parent.hex() if parent is not None else None,
        name=f[SPAN_NAME],
        service=f[SPAN_SERVICE],
        start_ns=f[SPAN_START],
        end_ns=f[SPAN_END],
        kind=SPAN_KINDS[f[SPAN_KIND]],
        status=SPAN_STATUSES[f[SPAN_STATUS]],
        status_message=f[SPAN_STATUS_MESSAGE],
        attributes=f[SPAN_ATTRS],
        resource=f[SPAN_RESOURCE],
        scope_name=f[SPAN_SCOPE_NAME],
        scope_version=f[SPAN_SCOPE_VERSION],
        events=[
            SpanEvent(time_ns=e[EVENT_TIME], name=e[EVENT_NAME], attributes=e[EVENT_ATTRS]) for e in f[SPAN_EVENTS]
        ],
        links=[
            SpanLink(trace_id=ln[LINK_TRACE].hex(), span_id=ln[LINK_SPAN].hex(), attributes=ln[LINK_ATTRS])
            for ln in f[SPAN_LINKS]
        ],
        trace_state=f[SPAN_TRACE_STATE],
        flags=f[SPAN_FLAGS],
    )


def decode_log(f: LogRecordFields) -> LogRecord:
    trace, span = f[LOG_TRACE], f[LOG_SPAN]
    return LogRecord(
        time_ns=f[LOG_TIME],
        body=f[LOG_BODY],
        service=f[LOG_SERVICE],
        severity_number=f[LOG_SEVERITY],
        severity_text=f[LOG_SEVERITY_TEXT],
        trace_id=trace.hex() if trace is not None else None,
        span_id=span.hex() if span is not None else None,
        attributes=f[LOG_ATTRS],
        resource=f[LOG_RESOURCE],
        observed_ns=f[LOG_OBSERVED],
        scope_name=f[LOG_SCOPE_NAME],
    )


def decode_comment(f: CommentRecord) -> Comment:
    span = f[COMMENT_SPAN]
    return Comment(
        id=f[COMMENT_ID].hex(),
        trace_id=f[COMMENT_TRACE].hex(),
        span_id=span.hex() if span is not None else None,
        author=f[COMMENT_AUTHOR],
        body=f[COMMENT_BODY],
        created_ns=f[COMMENT_CREATED],
    )


def decode_metric(f: MetricRecord) -> MetricPoint:
    return MetricPoint(
        time_ns=f[METRIC_TIME],
        name=f[METRIC_NAME],
        service=f[METRIC_SERVICE],
        value=f[METRIC_VALUE],
        kind=METRIC_KINDS[f[METRIC_KIND]],
        unit=f[METRIC_UNIT],
        attributes=f[METRIC_ATTRS],
        monotonic=f[METRIC_MONOTONIC],
        temporality=TEMPORALITIES[f[METRIC_TEMPORALITY]],
        start_ns=f[METRIC_START],
        count=f[METRIC_COUNT],
        sum=f[METRIC_SUM],
        min=f[METRIC_MIN],
        max=f[METRIC_MAX],
        bucket_counts=f[METRIC_BUCKETS],
        explicit_bounds=f[METRIC_BOUNDS],
    )


# ---------------------------------------------------------------- query arguments


def to_ns(value: object, name: str) -> int | None:
    """Accept None, int nanoseconds or an aware datetime for a time bound.

    A bound past what int64 nanoseconds hold (``10**30``, a datetime in year 9999)
    is clamped to just outside the range records can have, [0, MAX_NS]: it means
    "from the beginning" or "to the end", and no tier or index below sees an int
    it cannot convert."""
    if value is None:
        return None
    if type(value) is int:
        return _clamp_bound(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime (got a naive one)")
        # Exact integer arithmetic: datetime.timestamp() goes through a float.
        d = value - _EPOCH
        return _clamp_bound((d.days * 86_400 + d.seconds) * 1_000_000_000 + d.microseconds * 1_000)
    raise TypeError(f"{name} must be int nanoseconds or an aware datetime, got {type(value).__name__}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _clamp_bound(ns: int) -> int:
    return -1 if ns < 0 else min(ns, MAX_NS + 1)
