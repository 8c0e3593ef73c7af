"""OTLP traces to span column batches (``_block.BLOCK_SCHEMAS["spans"]``), a chunk of a
scope's spans at a time: checked with numpy over the chunk, attribute lists decoded
once per distinct list (mapping.AttrLists); only spans with events or links, and
spans a check refuses (to name the problem), take a per-record path."""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa

from .. import _block, _codec
from .._blobs import Payloads
from .._codec import span_name_problem
from .._columns.common import fixed_ids, json_array
from .._keys import span_name_budget
from .._models import Span
from .common import CHUNK, MAX_NS, Decoded, Reject, fits_one_slice, kept, weights_of
from .mapping import (
    AttrLists,
    Resource,
    add_dropped,
    attrs_dict,
    checked_ns,
    enum_array,
    ids_ok,
    optional_id,
    optional_id_array,
    optional_ids_ok,
    required_id,
    resource_of,
    scoped,
)
from .parse import FLAT_TRACES, span_path, walk_traces

log = logging.getLogger(__name__)

_FIELDS: Final = tuple(
    operator.attrgetter(name)
    for name in (
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "kind",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "attributes",
        "dropped_attributes_count",
        "events",
        "dropped_events_count",
        "links",
        "dropped_links_count",
        "status",
        "trace_state",
        "flags",
    )
)
"""A span's fields the decoder reads, each read for a whole chunk at once (one map per field
builds no tuple per span)."""
_STATUS_FIELDS: Final = operator.attrgetter("code", "message")
_ATTRIBUTES: Final = operator.attrgetter("attributes")
# OTLP SpanKind and Status.code by number (0, unspecified, and unknown kinds -> internal; unknown codes -> unset)
_KIND_NAMES: Final = pa.array(["internal", "internal", "server", "client", "producer", "consumer"], pa.string())
_STATUS_NAMES: Final = pa.array(["unset", "ok", "error"], pa.string())
_WIDTH: Final = 19  # the columns _batch takes: SPAN_SCHEMA's and the payload flag


def _extras(attrs: dict[str, Any], dropped_attrs: int, dropped_events: int, dropped_links: int) -> None:
    add_dropped(attrs, "attributes", dropped_attrs)
    add_dropped(attrs, "events", dropped_events)
    add_dropped(attrs, "links", dropped_links)


def _batch(cols: list[list[Any]]) -> pa.RecordBatch:
    """The column batch of accepted spans' columns (SPAN_SCHEMA's order, then the payload flag)."""
    (trace, span, parent, name, service, start, end, kind, status, message) = cols[:10]
    (attrs, resource, scope, version, events, links, state, flags, payload) = cols[10:]
    arrays = [
        fixed_ids(trace, 16),
        fixed_ids(span, 8),
        optional_id_array(parent, 8),
        pa.array(name, pa.string()),
        pa.array(service, pa.string()),
        pa.array(start, pa.int64()),
        pa.array(end, pa.int64()),
        enum_array(kind, _KIND_NAMES),
        enum_array(status, _STATUS_NAMES),
        pa.array(message, pa.string()),
        json_array(attrs),
        json_array(resource),
        pa.array(scope, pa.string()),
        pa.array(version, pa.string()),
        json_array(events),
        json_array(links),
        pa.array(state, pa.string()),
        pa.array(flags, pa.int64()),
        pa.array(payload, pa.uint8()),
        pa.nulls(len(trace), pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=_block.BLOCK_SCHEMAS["spans"])


def _spans_of(batch: pa.RecordBatch) -> list[Span]:
    return [_codec.decode_span(f) for f in _block.span_records(batch)]


def decode_traces(
    body: bytes,
    content_type: str,
    sink: Callable[[pa.RecordBatch], Any] | None = None,
    payloads: Payloads | None = None,
) -> Decoded[Span]:
    """Decode an ExportTraceServiceRequest body (protobuf or OTLP JSON) into span column batches.

    ``payloads``: the store's payload rules, for each span's payload flag (0 without).
    Raises OtlpError for a body that is not a request, ValueError for an
    unsupported content type; unstorable spans are counted in ``rejected``."""
    request, bad_ids, wire, checked = FLAT_TRACES.parse(body, content_type, walk_traces)
    out: Decoded[Span] = Decoded(_batch, _spans_of, sink, _WIDTH)
    scopes = _scopes(request)
    out.one_slice = fits_one_slice(wire, ((len(ss.spans), carried) for _ri, _r, _si, ss, carried in scopes))
    if not checked and sink is not None and not out.one_slice:  # checked whole before the first slice is stored
        del request, scopes
        FLAT_TRACES.check(bytes(body))
        request = FLAT_TRACES.message.FromString(bytes(body))
        scopes, checked = _scopes(request), True
    lists = AttrLists(payloads, None if checked else FLAT_TRACES.check_attribute)
    res: Resource | None = None
    for ri, rs, si, ss, carried in scopes:
        if si == 0 or res is None:
            res = resource_of(rs)
        spans = ss.spans
        if not spans:
            continue
        resource, problem = scoped(res, ss, with_version=False)
        if problem:
            for ki in range(len(spans)):
                out.reject(span_path(ri, si, ki), problem)
            lists.validate(map(_ATTRIBUTES, spans))
            continue
        scope = _Scope(out, lists, res.service, _block.dumps(resource), ss.scope, carried, bad_ids, (ri, si))
        for a in range(0, len(spans), CHUNK):
            scope.decode(spans[a : a + CHUNK], a)
    out.flush()
    if out.rejected:
        log.debug("OTLP traces: rejected %d spans: %s", out.rejected, out.error_message)
    return out


def _scopes(request: Any) -> list[tuple[int, Any, int, Any, int]]:
    """(resource index, resource, scope index, scope, bytes each of its records carries: its
    resource's and scope's, copied into every row) of every scope of a request."""
    return [
        (ri, rs, si, ss, rs.resource.ByteSize() + ss.scope.ByteSize())
        for ri, rs in enumerate(request.resource_spans)
        for si, ss in enumerate(rs.scope_spans)
    ]


class _Scope:
    """The spans of one ScopeSpans, a chunk at a time: checked column-wise, kept as columns."""

    def __init__(
        self,
        out: Decoded[Span],
        lists: AttrLists,
        service: str,
        resource: bytes,
        scope: Any,
        carried: int,
        bad_ids: dict[str, str],
        where: tuple[int, int],
    ) -> None:
        self.out, self.lists, self.service, self.resource = out, lists, service, resource
        self.scope_name, self.scope_version = scope.name, scope.version
        self.carried, self.bad_ids, (self.ri, self.si) = carried, bad_ids, where
        self.budget = span_name_budget(len(service) if service.isascii() else len(service.encode()))

    def decode(self, spans: Sequence[Any], first: int) -> None:
        """Check and keep ``spans`` (the scope's spans from index ``first`` on)."""
        n = len(spans)
        (T, S, P, N, K, ST, EN, A, DA, E, DE, L, DL, STS, TS, F) = [tuple(map(get, spans)) for get in _FIELDS]
        start, end = np.array(ST, np.uint64), np.array(EN, np.uint64)
        ok = (start != 0) & (end >= start) & (end <= MAX_NS) & ids_ok(T, 16) & ids_ok(S, 8) & optional_ids_ok(P, 8)
        if max(map(len, N)) * 4 > self.budget:
            ok &= np.array([span_name_problem(self.service, name) is None for name in N], np.bool_)
        lists = self.lists
        dropped = any(DA) or any(DE) or any(DL)
        keys = list(zip(map(tuple, A), DA, DE, DL, strict=True)) if dropped else list(map(tuple, A))
        codes = lists.codes(keys, _extras if dropped else None)
        attrs_ok = lists.ok(codes)
        if attrs_ok is not None:
            ok &= attrs_ok
        events: list[bytes] = [b"[]"] * n
        links: list[bytes] = [b"[]"] * n
        flags = list(map(lists.flags.__getitem__, codes))
        problems: dict[int, str] = {}
        if any(E) or any(L):
            payloads = lists.payloads
            for i in [i for i in range(n) if E[i] or L[i]]:
                try:
                    event_attrs: list[list[Any]] = []
                    if E[i]:
                        events[i], event_attrs = _events(E[i])
                    if L[i]:
                        links[i] = _links(L[i])
                except Reject as exc:
                    problems[i] = str(exc)
                    ok[i] = False
                    continue
                if payloads is not None and event_attrs:
                    flags[i] = payloads.span_flag(lists.dicts[codes[i]], event_attrs)
        if self.bad_ids:
            for i in range(n):
                if span_path(self.ri, self.si, first + i) in self.bad_ids:
                    ok[i] = False
        keep: list[bool] | None = None
        if not ok.all():
            out = self.out
            for i in np.flatnonzero(~ok).tolist():
                if not out.explaining:
                    out.rejected += 1
                    continue
                where = span_path(self.ri, self.si, first + i)
                problem = self.bad_ids.get(where) or _problem(
                    ST[i], EN[i], N[i], self.service, T[i], S[i], P[i], lists.problems[codes[i]], problems.get(i)
                )
                out.reject(where, problem)
            keep = ok.tolist()
        status_codes, messages = zip(*map(_STATUS_FIELDS, STS), strict=True)
        attrs = list(map(lists.texts.__getitem__, codes))
        cols = kept([T, S, P, N, ST, EN, K, status_codes, messages, attrs, events, links, TS, F, flags], keep)
        (t, s, p, name, st, en, kind, status, message, attributes, ev, ln, state, fl, payload) = cols
        m = len(t)
        columns = [t, s, p, name, [self.service] * m, st, en, kind, status, message, attributes, [self.resource] * m]
        columns += [[self.scope_name] * m, [self.scope_version] * m, ev, ln, state, fl, payload]
        self.out.add(columns, weights_of(spans, keep, self.carried))


def _problem(
    start: int,
    end: int,
    name: str,
    service: str,
    trace_id: bytes,
    span_id: bytes,
    parent: bytes,
    attrs_problem: str | None,
    later_problem: str | None,
) -> str:
    """Why a span is rejected: its first problem, in the order the checks were always made."""
    try:
        if not start:
            raise Reject("start_time_unix_nano is missing")
        if end < start:
            raise Reject(f"end_time_unix_nano {end} is before start_time_unix_nano {start}")
        checked_ns(end, "end_time_unix_nano")
        name_problem = span_name_problem(service, name)
        if name_problem is not None:
            raise Reject(f"span name {name_problem}")
        required_id(trace_id, 16, "trace_id")
        required_id(span_id, 8, "span_id")
        optional_id(parent, 8, "parent_span_id")
        if attrs_problem or later_problem:
            raise Reject(attrs_problem or later_problem)
    except Reject as exc:
        return str(exc)
    raise AssertionError("a span failed a column-wise check that no per-record check explains")


def _events(events: Any) -> tuple[bytes, list[list[Any]]]:
    """A span's events as JSON text and as event arrays (for its payload flag); Reject for
    an attribute nested too deep or a time past 2**63-1. The text is joined from each
    event's name and attributes written apart, as the column builders from model objects
    write it (tael/_columns/objects.py), so both give the same bytes."""
    texts = []
    arrays = []
    dumps = _block.dumps
    for j, ev in enumerate(events):
        ev_attrs = attrs_dict(ev.attributes)
        add_dropped(ev_attrs, "attributes", ev.dropped_attributes_count)
        time_ns = checked_ns(ev.time_unix_nano, f"events[{j}].time_unix_nano")
        texts.append(b'{"time_ns":%d,"name":%b,"attributes":%b}' % (time_ns, dumps(ev.name), dumps(ev_attrs)))
        arrays.append([time_ns, ev.name, ev_attrs])
    return b"[" + b",".join(texts) + b"]", arrays


def _links(links: Any) -> bytes:
    """A span's links as JSON text; Reject for an invalid id or an attribute nested too deep."""
    out = []
    for j, ln in enumerate(links):
        ln_attrs = attrs_dict(ln.attributes)
        add_dropped(ln_attrs, "attributes", ln.dropped_attributes_count)
        if ln.trace_state:
            ln_attrs["otel.trace_state"] = ln.trace_state
        if ln.flags:
            ln_attrs["otel.flags"] = int(ln.flags)
        trace_id = required_id(ln.trace_id, 16, f"links[{j}].trace_id")
        span_id = required_id(ln.span_id, 8, f"links[{j}].span_id")
        out.append({"trace_id": trace_id, "span_id": span_id, "attributes": ln_attrs})
    return _block.dumps(out)
