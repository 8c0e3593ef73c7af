"""OTLP logs to log record column batches (``_block.BLOCK_SCHEMAS["logs"]``), a chunk of a
scope's records at a time: checked with numpy over the chunk, attribute lists decoded
once per distinct list (mapping.AttrLists); only records with a non-string body, and
records a check refuses (to name the problem), take a per-record path."""

from __future__ import annotations

import functools
import json
import logging
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.logs.v1 import logs_pb2

from .. import _block, _codec
from .._blobs import Payloads
from .._columns.common import json_array
from .._models import LogRecord
from .common import CHUNK, MAX_NS, Decoded, Reject, fits_one_slice, kept, weights_of
from .mapping import (
    AttrLists,
    Resource,
    add_dropped,
    any_value,
    checked_ns,
    optional_id,
    optional_id_array,
    optional_ids_ok,
    resource_of,
    scoped,
)
from .parse import FLAT_LOGS, log_path, walk_logs

log = logging.getLogger(__name__)

_BODY_TYPES: Final = {
    "bool_value": "bool",
    "int_value": "int",
    "double_value": "double",
    "bytes_value": "bytes",
    "array_value": "array",
    "kvlist_value": "kvlist",
}

_LOG_FIELD_NAMES: Final = (
    "time_unix_nano",
    "observed_time_unix_nano",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "dropped_attributes_count",
    "flags",
    "trace_id",
    "span_id",
)
_HAS_EVENT_NAME: Final = "event_name" in logs_pb2.LogRecord.DESCRIPTOR.fields_by_name  # opentelemetry-proto 1.28+
_LOG_FIELDS: Final = tuple(
    operator.attrgetter(name) for name in (*_LOG_FIELD_NAMES, *(("event_name",) if _HAS_EVENT_NAME else ()))
)  # each read for a whole chunk at once
_WHICH_VALUE: Final = operator.methodcaller("WhichOneof", "value")
_STRING_VALUE: Final = operator.attrgetter("string_value")
_ATTRIBUTES: Final = operator.attrgetter("attributes")
_PLAIN_BODIES: Final = frozenset(("string_value", None))
_WIDTH: Final = 11  # the columns _batch takes: LOG_SCHEMA's


def _extras(attrs: dict[str, Any], body_type: str | None, dropped: int, flags: int, event_name: str) -> None:
    if body_type:
        attrs["otel.body_type"] = body_type
    add_dropped(attrs, "attributes", dropped)
    if flags:
        attrs["otel.flags"] = int(flags)
    if event_name:
        attrs["otel.event_name"] = event_name


def _batch(payloads: Payloads | None, cols: list[list[Any]]) -> pa.RecordBatch:
    """The column batch of accepted log records' columns (``_Scope.decode`` order)."""
    (times, body, service, severity, severity_text, trace, span, attrs, resource, observed, scope) = cols
    n = len(times)
    bodies = pa.array(body, pa.string())
    if payloads is None:
        payload = pa.nulls(n, pa.uint8()).fill_null(0)
    else:  # Payloads.log_flag: 2 from payloads.min_bytes of UTF-8 on (the blob store), else 1; 0 for no body
        size = pc.binary_length(bodies)
        payload = pc.if_else(pc.equal(size, 0), 0, pc.if_else(pc.greater_equal(size, payloads.min_bytes), 2, 1))
    obs = np.asarray(observed, np.int64)
    arrays = [
        pa.array(times, pa.int64()),
        bodies,
        pa.array(service, pa.string()),
        pa.array(severity, pa.int32()),
        pa.array(severity_text, pa.string()),
        optional_id_array(trace, 16),
        optional_id_array(span, 8),
        json_array(attrs),
        json_array(resource),
        pa.array(obs, pa.int64(), mask=obs == 0),
        pa.array(scope, pa.string()),
        payload.cast(pa.uint8()),
        pa.nulls(n, pa.binary(32)),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["logs"])


def _logs_of(batch: pa.RecordBatch) -> list[LogRecord]:
    return [_codec.decode_log(f) for f in _block.log_records(batch)]


def decode_logs(
    body: bytes,
    content_type: str,
    sink: Callable[[pa.RecordBatch], Any] | None = None,
    payloads: Payloads | None = None,
) -> Decoded[LogRecord]:
    """Decode an ExportLogsServiceRequest body (protobuf or OTLP JSON) into log record column batches.

    ``payloads``: the store's payload rules, for each record's payload flag (0 without).
    Raises OtlpError for a body that is not a request, ValueError for an
    unsupported content type; unstorable records are counted in ``rejected``."""
    request, bad_ids, wire, checked = FLAT_LOGS.parse(body, content_type, walk_logs)
    out: Decoded[LogRecord] = Decoded(functools.partial(_batch, payloads), _logs_of, sink, _WIDTH)
    scopes = _scopes(request)
    out.one_slice = fits_one_slice(wire, ((len(sl.log_records), carried) for _ri, _r, _si, sl, carried in scopes))
    if not checked and sink is not None and not out.one_slice:  # checked whole before the first slice is stored
        del request, scopes
        FLAT_LOGS.check(bytes(body))
        request = FLAT_LOGS.message.FromString(bytes(body))
        scopes, checked = _scopes(request), True
    lists = AttrLists(None, None if checked else FLAT_LOGS.check_attribute)
    res: Resource | None = None
    for ri, rl, si, sl, carried in scopes:
        if si == 0 or res is None:
            res = resource_of(rl)
        records = sl.log_records
        if not records:
            continue
        resource, problem = scoped(res, sl, with_version=True)
        if problem:
            for ki in range(len(records)):
                out.reject(log_path(ri, si, ki), problem)
            lists.validate(map(_ATTRIBUTES, records))
            continue
        scope = _Scope(out, lists, res.service, _block.dumps(resource), sl.scope.name, carried, bad_ids, (ri, si))
        for a in range(0, len(records), CHUNK):
            scope.decode(records[a : a + CHUNK], a)
    out.flush()
    if out.rejected:
        log.debug("OTLP logs: rejected %d records: %s", out.rejected, out.error_message)
    return out


def _scopes(request: Any) -> list[tuple[int, Any, int, Any, int]]:
    """(resource index, resource, scope index, scope, bytes each of its records carries: its
    resource's and scope's, copied into every row) of every scope of a request."""
    return [
        (ri, rl, si, sl, rl.resource.ByteSize() + sl.scope.ByteSize())
        for ri, rl in enumerate(request.resource_logs)
        for si, sl in enumerate(rl.scope_logs)
    ]


class _Scope:
    """The log records of one ScopeLogs, a chunk at a time: checked column-wise, kept as columns."""

    def __init__(
        self,
        out: Decoded[LogRecord],
        lists: AttrLists,
        service: str,
        resource: bytes,
        scope_name: str,
        carried: int,
        bad_ids: dict[str, str],
        where: tuple[int, int],
    ) -> None:
        self.out, self.lists, self.service, self.resource, self.scope_name = out, lists, service, resource, scope_name
        self.carried, self.bad_ids, (self.ri, self.si) = carried, bad_ids, where

    def decode(self, records: Sequence[Any], first: int) -> None:
        """Check and keep ``records`` (the scope's records from index ``first`` on)."""
        n = len(records)
        fields = [tuple(map(get, records)) for get in _LOG_FIELDS]
        (TM, OB, SEV, SEVT, B, A, DA, FL, TR, SP) = fields[:10]
        EVN: Sequence[str] = fields[10] if _HAS_EVENT_NAME else ("",) * n
        tm, ob = np.array(TM, np.uint64), np.array(OB, np.uint64)
        sev = np.array(SEV, np.int64)
        ok = (tm <= MAX_NS) & (ob <= MAX_NS) & ((tm != 0) | (ob != 0)) & (sev >= 0) & (sev <= 24)
        ok &= optional_ids_ok(TR, 16) & optional_ids_ok(SP, 8)
        texts: list[str] = list(map(_STRING_VALUE, B))
        kinds = list(map(_WHICH_VALUE, B))
        body_types: list[str | None] = [None] * n
        problems: dict[int, str] = {}
        if not _PLAIN_BODIES.issuperset(kinds):
            for i, kind in enumerate(kinds):
                if kind not in _PLAIN_BODIES:
                    try:
                        texts[i] = _json_text(any_value(B[i], 0))
                        body_types[i] = _BODY_TYPES.get(kind, kind)
                    except Reject as exc:
                        problems[i] = str(exc)
                        ok[i] = False
        lists = self.lists
        extras = any(DA) or any(FL) or any(EVN) or any(body_types)
        keys = list(zip(map(tuple, A), body_types, DA, FL, EVN, strict=True)) if extras else list(map(tuple, A))
        codes = lists.codes(keys, _extras if extras else None)
        attrs_ok = lists.ok(codes)
        if attrs_ok is not None:
            ok &= attrs_ok
        if self.bad_ids:
            for i in range(n):
                if log_path(self.ri, self.si, first + i) in self.bad_ids:
                    ok[i] = False
        keep: list[bool] | None = None
        if not ok.all():
            out = self.out
            for i in np.flatnonzero(~ok).tolist():
                if not out.explaining:
                    out.rejected += 1
                    continue
                where = log_path(self.ri, self.si, first + i)
                problem = self.bad_ids.get(where) or _problem(
                    TM[i], OB[i], SEV[i], TR[i], SP[i], lists.problems[codes[i]], problems.get(i)
                )
                out.reject(where, problem)
            keep = ok.tolist()
        times = np.where(tm != 0, tm, ob).tolist()
        attrs = list(map(lists.texts.__getitem__, codes))
        (time_ns, body, severity, severity_text, trace, span, attributes, observed) = kept(
            [times, texts, SEV, SEVT, TR, SP, attrs, OB], keep
        )
        m = len(time_ns)
        columns = [time_ns, body, [self.service] * m, severity, severity_text, trace, span, attributes]
        columns += [[self.resource] * m, observed, [self.scope_name] * m]
        self.out.add(columns, weights_of(records, keep, self.carried))


def _problem(
    time_ns: int,
    observed_ns: int,
    severity: int,
    trace_id: bytes,
    span_id: bytes,
    attrs_problem: str | None,
    body_problem: str | None,
) -> str:
    """Why a log record is rejected: its first problem in the order the checks were always made."""
    try:
        observed = checked_ns(observed_ns, "observed_time_unix_nano")
        if not (checked_ns(time_ns, "time_unix_nano") or observed):
            raise Reject("both time_unix_nano and observed_time_unix_nano are missing")
        if not 0 <= severity <= 24:
            raise Reject(f"severity_number must be in 0..24, got {severity}")
        if attrs_problem or body_problem:
            raise Reject(attrs_problem or body_problem)
        optional_id(trace_id, 16, "trace_id")
        optional_id(span_id, 8, "span_id")
    except Reject as exc:
        return str(exc)
    raise AssertionError("a log record failed a column-wise check that no per-record check explains")


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
