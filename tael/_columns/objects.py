"""Column batches from model objects: ``tael.Span``, ``LogRecord`` and ``MetricPoint``.

:func:`span_columns`, :func:`log_columns` and :func:`metric_columns` build a batch in
``_block.BLOCK_SCHEMAS`` and refuse bad records exactly as today's encoders
(tael/_codec.py) do: the same ValidationError (message, index, field).

Column-wise when every record has the common shape, checked a column at a time by
C-level passes (``set(map(type, col))``, pyarrow.compute); a record of an unusual but
valid shape (nested attribute values, links) is checked by the exhaustive validator
on its own. Anything else (a bad record, an odd type) raises ``Irregular`` and the
batch is built record by record instead (``*_by_row``), by a loop that checks each
record's common shape and hands anything unusual to the same ``_codec`` validators the
encoders call, so it raises the first bad record's error exactly as they do.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from itertools import chain
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import _block, _codec
from .._blobs import Payloads
from .._errors import ValidationError
from .._keys import MAX_KEY_BYTES, MAX_METRIC_NAME_BYTES, MAX_SERVICE_BYTES
from .._models import METRIC_KINDS, SPAN_KINDS, SPAN_STATUSES, TEMPORALITIES, LogRecord, MetricPoint, Span, SpanEvent
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
    Irregular,
    constant,
    enum_names,
    fixed_ids,
    json_array,
    json_texts,
    series_ids,
    utf8_ok,
    zeros,
)

_ZERO16, _ZERO8 = bytes(16), bytes(8)
_SPAN_KINDS: Final = frozenset(SPAN_KINDS)
_SPAN_STATUSES: Final = frozenset(SPAN_STATUSES)
_METRIC_KINDS: Final = frozenset(METRIC_KINDS)
_TEMPORALITIES: Final = frozenset(TEMPORALITIES)
_FLAT: Final = frozenset((str, int, float, bool, type(None)))
_STR: Final[frozenset[type]] = frozenset((str,))
_INT: Final[frozenset[type]] = frozenset((int,))
_DICT: Final[frozenset[type]] = frozenset((dict,))
_NUMBER: Final[frozenset[type]] = frozenset((float, int))
_OPT_INT: Final[frozenset[type]] = frozenset((int, type(None)))
_OPT_NUMBER: Final[frozenset[type]] = frozenset((float, int, type(None)))


def _types(values: Sequence[Any], allowed: AbstractSet[type]) -> None:
    """Irregular unless every value's type is one of ``allowed`` exactly."""
    if not set(map(type, values)) <= allowed:
        raise Irregular


def _strings(values: Sequence[Any]) -> pa.Array:
    """The string array of exact ``str`` values; Irregular for another type or a lone surrogate."""
    _types(values, _STR)
    try:
        return pa.array(values, pa.string())
    except (UnicodeEncodeError, pa.ArrowException):
        raise Irregular from None


def _numbers(values: Sequence[Any], allowed: AbstractSet[type], arrow_type: pa.DataType) -> pa.Array:
    """The array of ``values`` whose types are all in ``allowed``; Irregular for another
    type or a value the Arrow type cannot hold (exactly)."""
    _types(values, allowed)
    try:
        return pa.array(values, arrow_type)
    except (OverflowError, pa.ArrowException):
        raise Irregular from None


def _require(ok: Any) -> None:
    if not ok:
        raise Irregular


def _true(arr: pa.Array) -> bool:
    """Whether a boolean array has any true value (nulls are not)."""
    return bool(pc.any(arr).as_py())


def _hex_column(values: Sequence[Any], nbytes: int, absent: list[bool] | None = None) -> pa.Array:
    """binary(nbytes) ids from ``values``, each exactly 2 * nbytes hex characters (either
    case) and not all zeros; Irregular otherwise. ``absent``: rows that are null (their
    values must then be None or "", as ``_codec.check_opt_hex_id`` takes them)."""
    n = len(values)
    if absent is not None:
        _require(values.count(None) + values.count("") == sum(absent))
        filler = "00" * nbytes
        values = [v or filler for v in values]
    _types(values, _STR)
    _require(set(map(len, values)) == {2 * nbytes})
    try:
        raw = bytes.fromhex("".join(values))
    except ValueError:
        raise Irregular from None
    _require(len(raw) == n * nbytes)  # fromhex skips whitespace
    nonzero = np.frombuffer(raw, np.uint8).reshape(n, nbytes).any(axis=1)
    if absent is None:
        _require(nonzero.all())
        return pa.Array.from_buffers(pa.binary(nbytes), n, [None, pa.py_buffer(raw)])
    missing = np.array(absent, np.bool_)
    _require((nonzero | missing).all())
    valid = pa.array(~missing).buffers()[1]
    return pa.Array.from_buffers(pa.binary(nbytes), n, [valid, pa.py_buffer(raw)])


def _opt_hex_column(values: Sequence[Any], nbytes: int) -> pa.Array:
    """binary(nbytes) ids, null for None or "" (as ``_codec.check_opt_hex_id`` takes them)."""
    absent = list(map(operator.not_, values))
    if not any(absent):
        return _hex_column(values, nbytes)
    if all(absent):
        _require(values.count(None) + values.count("") == len(values))
        return pa.nulls(len(values), pa.binary(nbytes))
    return _hex_column(values, nbytes, absent)


def _enum(values: Sequence[Any], allowed: frozenset[str]) -> pa.Array:
    """The string array of enum ``values``, each one of ``allowed``; Irregular otherwise."""
    arr = _strings(values)  # exact str first: a set of them cannot fail
    _require(set(values) <= allowed)
    return arr


def _nonflat(maps: Sequence[Any]) -> list[int]:
    """Rows whose map is not a plain dict of str keys and scalar values (``_codec.flat_ok``)."""
    if set(map(type, maps)) <= _DICT and _FLAT.issuperset(map(type, chain.from_iterable(map(dict.values, maps)))):
        return []  # the keys' types: orjson refuses any key but a str (json_texts then returns None)
    flat_ok = _codec.flat_ok
    return [i for i, m in enumerate(maps) if not flat_ok(m)]


def _shared_json(maps: Sequence[Any]) -> tuple[pa.Array | None, list[int]]:
    """(JSON text column, rows whose map is not flat) of maps often shared by many rows
    (resources): each distinct dict object is checked and written once."""
    n = len(maps)
    ids = list(map(id, maps))
    objects = dict(zip(ids, maps, strict=True))
    if len(objects) == n:
        return json_texts(maps), _nonflat(maps)
    distinct = list(objects.values())
    code_of = dict(zip(objects, range(len(objects)), strict=True))
    codes = pa.array(list(map(code_of.__getitem__, ids)), pa.int32())
    bad = set(_nonflat(distinct))
    rows = [i for i, c in enumerate(codes.to_pylist()) if c in bad] if bad else []
    texts = json_texts(distinct)
    return (texts.take(codes) if texts is not None else None), rows


def _key_limits(services: pa.Array, names: pa.Array | None, *, min_service: int) -> None:
    """Irregular unless every service is ``min_service``..MAX_SERVICE_BYTES UTF-8 bytes
    without NUL and (spans) every name fits its operations key (tael/_keys.py)."""
    lengths = pc.binary_length(services)
    if len(services):
        _require(pc.min(lengths).as_py() >= min_service and pc.max(lengths).as_py() <= MAX_SERVICE_BYTES)
    _require(not _true(pc.match_substring(services, "\x00")))
    if names is not None:
        _require(pc.all(pc.less_equal(pc.add(pc.binary_length(names), lengths), MAX_KEY_BYTES - 1)).as_py())


# ---------------------------------------------------------------- from model objects: spans


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


def _links_text(links: list[list[Any]]) -> bytes:
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
                _links_text([[fromhex(ln.trace_id), fromhex(ln.span_id), ln.attributes] for ln in s.links])
                if s.links
                else b"[]"
            )
        except JSON_ERRORS:
            validate(i, s)  # names the field at fault
            f = _plain(i, _span_record(s))
            attrs_text = dumps(f[10]) if f[10] else b"{}"
            res_text = dumps(f[11]) if f[11] else b"{}"
            ev_text = _events_text(f[14]) if f[14] else b"[]"
            ln_text = _links_text(f[15]) if f[15] else b"[]"
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


_SPAN_FIELDS: Final = operator.attrgetter(
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "service",
    "start_ns",
    "end_ns",
    "kind",
    "status",
    "status_message",
    "attributes",
    "resource",
    "scope_name",
    "scope_version",
    "events",
    "links",
    "trace_state",
    "flags",
)
_EVENT_TIME: Final = operator.attrgetter("time_ns")
_EVENT_NAME: Final = operator.attrgetter("name")
_EVENT_ATTRS: Final = operator.attrgetter("attributes")


def _unusual(rows: Sequence[int] | set[int], records: Sequence[Any], validate: Callable[[int, Any], None]) -> None:
    """Check records of an unusual shape one by one: Irregular for a bad one (the
    record-by-record build then raises the batch's first error)."""
    for i in sorted(rows):
        try:
            validate(i, records[i])
        except ValidationError:
            raise Irregular from None


def spans_at_once(spans: Sequence[Span], payloads: Payloads | None) -> pa.RecordBatch:
    """``span_columns`` column-wise; Irregular when the batch must be built record by record."""
    n = len(spans)
    validate = _codec.validate_span
    (T, S, PA, N, SV, ST, EN, K, STT, M, A, R, SC, V, E, L, TS, F) = zip(*map(_SPAN_FIELDS, spans), strict=True)
    trace, span, parent = _hex_column(T, 16), _hex_column(S, 8), _opt_hex_column(PA, 8)
    names, services = _strings(N), _strings(SV)
    _key_limits(services, names, min_service=1)
    starts, ends, flags = _numbers(ST, _INT, pa.int64()), _numbers(EN, _INT, pa.int64()), _numbers(F, _INT, pa.int64())
    _require(pc.min(starts).as_py() >= 0 and pc.all(pc.less_equal(starts, ends)).as_py())
    _require(pc.min(flags).as_py() >= 0 and pc.max(flags).as_py() < 1 << 32)
    kinds, statuses = _enum(K, _SPAN_KINDS), _enum(STT, _SPAN_STATUSES)
    messages, scopes, versions, states = _strings(M), _strings(SC), _strings(V), _strings(TS)
    unusual = set(_nonflat(A))
    resources, odd = _shared_json(R)
    unusual.update(odd)
    event_attrs: Sequence[Any] = ()
    if any(E):
        unusual.update(i for i, ev in enumerate(E) if type(ev) is not list)
        _unusual(unusual, spans, validate)  # events now iterate as lists of SpanEvent
        counts = list(map(len, E))
        owner = np.repeat(np.arange(n), counts)
        events = list(chain.from_iterable(E))
        if set(map(type, events)) != {SpanEvent}:
            _unusual({int(owner[j]) for j, ev in enumerate(events) if type(ev) is not SpanEvent}, spans, validate)
        times, event_names = list(map(_EVENT_TIME, events)), list(map(_EVENT_NAME, events))
        event_attrs = list(map(_EVENT_ATTRS, events))
        if set(map(type, times)) != _INT or min(times) < 0 or max(times) > MAX_NS:
            raise Irregular
        odd_events = _nonflat(event_attrs)
        if set(map(type, event_names)) != _STR:
            odd_events += [j for j, name in enumerate(event_names) if type(name) is not str]
        _unusual({int(owner[j]) for j in odd_events}, spans, validate)
        name_texts, attr_texts = json_texts(event_names), json_texts(event_attrs)
        if name_texts is None or attr_texts is None:
            raise Irregular
        each = pc.binary_join_element_wise(
            '{"time_ns":',
            pa.array(times, pa.int64()).cast(pa.string()),
            ',"name":',
            name_texts,
            ',"attributes":',
            attr_texts,
            "}",
            "",
        )
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), each), ",")
        events_col = pc.binary_join_element_wise("[", joined, "]", "")
    else:
        events_col = constant("[]", n)
    if any(L):
        linked = [i for i, ln in enumerate(L) if ln]
        _unusual(set(linked) | unusual, spans, validate)
        texts = [b"[]"] * n
        fromhex = bytes.fromhex
        for i in linked:
            texts[i] = _links_text([[fromhex(ln.trace_id), fromhex(ln.span_id), ln.attributes] for ln in L[i]])
        links_col = json_array(texts)
    else:
        _unusual(unusual, spans, validate)
        links_col = constant("[]", n)
    attributes = json_texts(A)
    if attributes is None or resources is None:
        raise Irregular
    keys = payloads.keys if payloads is not None else frozenset()
    if keys.isdisjoint(chain.from_iterable(A)) and keys.isdisjoint(chain.from_iterable(event_attrs)):
        payload = zeros(n)
    else:
        assert payloads is not None
        flag = payloads.span_flag
        payload = pa.array(
            [flag(a, [[0, "", e.attributes] for e in ev]) if a or ev else 0 for a, ev in zip(A, E, strict=True)],
            pa.uint8(),
        )
    arrays = [
        trace,
        span,
        parent,
        names,
        services,
        starts,
        ends,
        kinds,
        statuses,
        messages,
        attributes,
        resources,
        scopes,
        versions,
        events_col,
        links_col,
        states,
        flags,
        payload,
        pa.nulls(n, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["spans"])


def span_columns(spans: Sequence[Span], payloads: Payloads | None) -> pa.RecordBatch:
    """The column batch (``_block.BLOCK_SCHEMAS["spans"]``) of ``spans``, validated as
    ``_codec.encode_spans`` validates them: the same ValidationError (message, index,
    field) for the same bad span. ``payload`` holds each span's ``Payloads.span_flag``
    (0 without ``payloads``); ``payload_refs`` is null (the hot tier sets it)."""
    if spans and set(map(type, spans)) == {Span}:
        try:
            return spans_at_once(spans, payloads)
        except Irregular:
            pass
    return spans_by_row(spans, payloads)


# ---------------------------------------------------------------- from model objects: logs


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


_LOG_FIELDS: Final = operator.attrgetter(
    "time_ns",
    "body",
    "service",
    "severity_number",
    "severity_text",
    "trace_id",
    "span_id",
    "attributes",
    "resource",
    "observed_ns",
    "scope_name",
)


def logs_at_once(logs: Sequence[LogRecord], payloads: Payloads | None) -> pa.RecordBatch:
    """``log_columns`` column-wise; Irregular when the batch must be built record by record."""
    n = len(logs)
    (TM, B, SV, SEV, SEVT, TR, SP, A, R, OB, SC) = zip(*map(_LOG_FIELDS, logs), strict=True)
    times = _numbers(TM, _INT, pa.int64())
    _require(pc.min(times).as_py() >= 0)
    bodies, services, sev_texts, scopes = _strings(B), _strings(SV), _strings(SEVT), _strings(SC)
    _key_limits(services, None, min_service=0)
    _types(SEV, _INT)
    _require(min(SEV) >= 0 and max(SEV) <= 24)
    severities = pa.array(SEV, pa.int32())
    trace, span = _opt_hex_column(TR, 16), _opt_hex_column(SP, 8)
    observed = _numbers(OB, _OPT_INT, pa.int64())
    _require(observed.null_count == n or pc.min(observed).as_py() >= 0)
    unusual = set(_nonflat(A))
    resources, odd = _shared_json(R)
    _unusual(unusual.union(odd), logs, validate_log)
    attributes = json_texts(A)
    if attributes is None or resources is None:
        raise Irregular
    if payloads is None:
        payload = zeros(n)
    else:  # Payloads.log_flag: 2 from payloads.min_bytes of UTF-8 on (the blob store), else 1; 0 for no body
        size = pc.binary_length(bodies)
        payload = pc.if_else(pc.equal(size, 0), 0, pc.if_else(pc.greater_equal(size, payloads.min_bytes), 2, 1)).cast(
            pa.uint8()
        )
    arrays = [
        times,
        bodies,
        services,
        severities,
        sev_texts,
        trace,
        span,
        attributes,
        resources,
        observed,
        scopes,
        payload,
        pa.nulls(n, DIGEST),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["logs"])


def log_columns(logs: Sequence[LogRecord], payloads: Payloads | None) -> pa.RecordBatch:
    """The column batch (``_block.BLOCK_SCHEMAS["logs"]``) of ``logs``, validated as
    ``_codec.encode_logs`` validates them. ``payload`` holds each record's
    ``Payloads.log_flag`` (0 for an empty body, and without ``payloads``); ``body_blob``
    is null (the hot tier sets it)."""
    if logs and set(map(type, logs)) == {LogRecord}:
        try:
            return logs_at_once(logs, payloads)
        except Irregular:
            pass
    return logs_by_row(logs, payloads)


# ---------------------------------------------------------------- from model objects: metric points


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


_METRIC_FIELDS: Final = operator.attrgetter(
    "time_ns",
    "name",
    "service",
    "value",
    "kind",
    "unit",
    "attributes",
    "monotonic",
    "temporality",
    "start_ns",
    "count",
    "sum",
    "min",
    "max",
    "bucket_counts",
    "explicit_bounds",
)


def _opt_lists(values: Sequence[Any], items: AbstractSet[type], arrow_type: pa.DataType) -> pa.Array:
    """A list array of None or lists whose items' types are in ``items``; Irregular otherwise."""
    if values.count(None) == len(values):
        return pa.nulls(len(values), arrow_type)
    lists = [v for v in values if v is not None]
    _types(lists, frozenset((list,)))
    _types(list(chain.from_iterable(lists)), items)
    try:
        return pa.array(values, arrow_type)
    except (OverflowError, pa.ArrowException):
        raise Irregular from None


def metrics_at_once(points: Sequence[MetricPoint]) -> pa.RecordBatch:
    """``metric_columns`` column-wise; Irregular when the batch must be built record by record."""
    n = len(points)
    (TM, N, SV, VAL, K, U, A, MO, TE, ST, C, SU, MN, MX, BC, EB) = zip(*map(_METRIC_FIELDS, points), strict=True)
    times = _numbers(TM, _INT, pa.int64())
    _require(pc.min(times).as_py() >= 0)
    names, services, units = _strings(N), _strings(SV), _strings(U)
    lengths = pc.binary_length(names)
    _require(pc.min(lengths).as_py() >= 1 and pc.max(lengths).as_py() <= MAX_METRIC_NAME_BYTES)
    _require(not _true(pc.match_substring(names, "\x00")))
    _key_limits(services, None, min_service=0)
    values = _numbers(VAL, _NUMBER, pa.float64())
    _require(pc.all(pc.is_finite(values)).as_py())
    kinds, temporalities = _enum(K, _METRIC_KINDS), _enum(TE, _TEMPORALITIES)
    _types(MO, frozenset((bool,)))
    starts = _numbers(ST, _OPT_INT, pa.int64())
    counts = _numbers(C, _OPT_INT, pa.int64())
    for column in (starts, counts):
        _require(column.null_count == n or pc.min(column).as_py() >= 0)
    sums, mins, maxs = (_numbers(col, _OPT_NUMBER, pa.float64()) for col in (SU, MN, MX))
    buckets = _opt_lists(BC, _INT, pa.list_(pa.int64()))
    bounds = _opt_lists(EB, _NUMBER, pa.list_(pa.float64()))
    items = pc.list_flatten(buckets)
    _require(len(items) == 0 or pc.min(items).as_py() >= 0)
    items = pc.list_flatten(bounds)
    _require(len(items) == 0 or pc.all(pc.is_finite(items)).as_py())
    if buckets.null_count < n and bounds.null_count < n:
        both = pc.and_(buckets.is_valid(), bounds.is_valid())
        sizes = pc.equal(pc.list_value_length(buckets), pc.add(pc.list_value_length(bounds), 1))
        _require(not _true(pc.and_(both, pc.invert(sizes))))
    _unusual(_nonflat(A), points, _codec.validate_metric)
    attributes = json_texts(A)
    if attributes is None:
        raise Irregular
    series = series_ids(names, services, kinds, attributes, A.__getitem__)
    arrays = [
        times,
        names,
        services,
        values,
        kinds,
        units,
        attributes,
        pa.array(MO, pa.bool_()),
        temporalities,
        starts,
        counts,
        sums,
        mins,
        maxs,
        buckets,
        bounds,
        series,
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["metrics"])


def metric_columns(points: Sequence[MetricPoint]) -> pa.RecordBatch:
    """The column batch (``_block.BLOCK_SCHEMAS["metrics"]``) of ``points``, validated as
    ``_codec.encode_metrics`` validates them, with each point's series id as
    ``_codec.series_key`` computes it."""
    if points and set(map(type, points)) == {MetricPoint}:
        try:
            return metrics_at_once(points)
        except Irregular:
            pass
    return metrics_by_row(points)


# ---------------------------------------------------------------- the public tables


def _records(records: Any, kind: type) -> Sequence[Any]:
    if isinstance(records, (str, bytes)) or not hasattr(records, "__iter__"):
        raise TypeError(f"expected a list of tael.{kind.__name__}, got {type(records).__name__}")
    return records if isinstance(records, (list, tuple)) else list(records)


def _public(batch: pa.RecordBatch, signal: str) -> pa.Table:
    schema = _block.SCHEMAS[signal]
    return pa.Table.from_batches([batch.select(schema.names)], schema=schema)


def spans_table(spans: Sequence[Span]) -> pa.Table:
    """``spans`` as a pyarrow Table in ``tael.SPAN_SCHEMA`` (docs/format/tables.md),
    validated as ``Store.insert_spans`` validates them (ValidationError naming the record
    and field). ``insert_spans`` takes the table back; so do DuckDB, polars and pyarrow."""
    return _public(span_columns(_records(spans, Span), None), "spans")


def logs_table(logs: Sequence[LogRecord]) -> pa.Table:
    """``logs`` as a pyarrow Table in ``tael.LOG_SCHEMA`` (see :func:`spans_table`)."""
    return _public(log_columns(_records(logs, LogRecord), None), "logs")


def metrics_table(points: Sequence[MetricPoint]) -> pa.Table:
    """``points`` as a pyarrow Table in ``tael.METRIC_SCHEMA`` (see :func:`spans_table`)."""
    return _public(metric_columns(_records(points, MetricPoint)), "metrics")
