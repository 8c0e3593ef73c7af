"""Column batches from model objects: ``tael.Span``, ``LogRecord`` and ``MetricPoint``.

:func:`span_columns`, :func:`log_columns` and :func:`metric_columns` build a batch in
``_block.BLOCK_SCHEMAS`` and refuse bad records exactly as today's encoders
(tael/_codec.py) do: the same ValidationError (message, index, field).

Column-wise when every record has the common shape, checked a column at a time by
C-level passes (``set(map(type, col))``, pyarrow.compute) and with one orjson call per
JSON column; a record of an unusual but valid shape (nested attribute values, links)
is checked by the exhaustive validator on its own. Anything else (a bad record, an
odd type) raises ``Irregular`` and the batch is built record by record instead
(per_record.py), whose loop raises the first bad record's error exactly as the
encoders do. :func:`spans_table` and friends, the public tables, are built on these.
"""

from __future__ import annotations

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
from .._payloadkeys import NO_KEYS
from .common import (
    DIGEST,
    MAX_NS,
    Irregular,
    constant,
    json_array,
    json_texts,
    series_ids,
    zeros,
)
from .per_record import links_text, logs_by_row, metrics_by_row, spans_by_row, validate_log

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


def _key_limits(services: Sequence[str], names: Sequence[str] | None, *, min_service: int) -> None:
    """Irregular unless every service is ``min_service``..MAX_SERVICE_BYTES UTF-8 bytes
    without NUL and (spans) every name fits its operations key (tael/_keys.py). The values
    are exact ``str`` already encodable (``_strings``); each distinct one is checked once."""
    for service in set(services):
        _require(min_service <= len(service.encode()) <= MAX_SERVICE_BYTES and "\x00" not in service)
    if names is not None:
        for service, name in set(zip(services, names, strict=True)):
            _require(len(service.encode()) + len(name.encode()) <= MAX_KEY_BYTES - 1)


def _ints(arr: pa.Array) -> np.ndarray:
    """The values of an int64 array without nulls, as numpy (no copy)."""
    return np.asarray(arr.to_numpy(zero_copy_only=True))


# ---------------------------------------------------------------- from model objects: spans


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
    _key_limits(SV, N, min_service=1)
    starts, ends, flags = _numbers(ST, _INT, pa.int64()), _numbers(EN, _INT, pa.int64()), _numbers(F, _INT, pa.int64())
    start_values, flag_values = _ints(starts), _ints(flags)
    _require(start_values.min() >= 0 and (start_values <= _ints(ends)).all())
    _require(flag_values.min() >= 0 and flag_values.max() < 1 << 32)
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
            texts[i] = links_text([[fromhex(ln.trace_id), fromhex(ln.span_id), ln.attributes] for ln in L[i]])
        links_col = json_array(texts)
    else:
        _unusual(unusual, spans, validate)
        links_col = constant("[]", n)
    attributes = json_texts(A)
    if attributes is None or resources is None:
        raise Irregular
    keys = payloads.keys if payloads is not None else NO_KEYS
    if keys.isdisjoint(chain.from_iterable(A)) and keys.isdisjoint(chain.from_iterable(event_attrs)):
        payload = zeros(n)
    else:
        assert payloads is not None
        flag = payloads.span_flag
        payload = pa.array(
            [flag(a, [[0, e.name, e.attributes] for e in ev]) if a or ev else 0 for a, ev in zip(A, E, strict=True)],
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
    _require(_ints(times).min() >= 0)
    bodies, services, sev_texts, scopes = _strings(B), _strings(SV), _strings(SEVT), _strings(SC)
    _key_limits(SV, None, min_service=0)
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
    _require(_ints(times).min() >= 0)
    names, services, units = _strings(N), _strings(SV), _strings(U)
    for name in set(N):
        _require(1 <= len(name.encode()) <= MAX_METRIC_NAME_BYTES and "\x00" not in name)
    _key_limits(SV, None, min_service=0)
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
