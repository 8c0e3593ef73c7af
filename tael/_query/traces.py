"""Trace reads: one trace by id, and spans by filter (``Store.get_trace``, ``Store.query_traces``)."""

from __future__ import annotations

from typing import Any

from .._codec import decode_span
from .._layout import SpanRecord
from .._models import Span
from . import args, merge, text
from .context import ReadContext
from .filters import SpanFilter


def span(reads: ReadContext, f: SpanRecord) -> Span:
    """A stored span as the public model, its payloads restored from the blob store."""
    return decode_span(reads.blobs.restore_span(f))


def get_trace(reads: ReadContext, trace_id: str) -> list[Span]:
    """Every span of a trace, hot and cold, ascending start_ns; [] for an unknown id."""
    trace = args.query_id(trace_id, 16, "trace_id")

    def run(txn: Any, manifest: list[Any]) -> list[Span]:
        return [span(reads, f) for f in merge.trace(merge.tiers(reads, txn, manifest), trace)]

    return reads.read(run)


def query(reads: ReadContext, where: SpanFilter, limit: int = 100, order: str = "desc") -> list[Span]:
    """Spans matching every condition of ``where`` (see :class:`~tael.SpanFilter`), hot
    and cold, newest start_ns first (ties: trace id, then span id, descending), at most
    ``limit``. ``order="asc"`` returns the oldest first instead.

    ``attributes`` matches spans whose attributes or resource attributes hold
    every given key with an equal value of the same type. ``start <= start_ns < end``.
    ``text`` matches spans whose payload text (``Settings.payload_attributes`` on
    the span or its events) holds every word, and every "quoted phrase" as a
    phrase, case-insensitively, through the full-text index.
    """
    args.check_range(None, None, limit)
    desc = args.newest_first(order)
    scan = where.scan()
    accept = text.span_matcher(reads, scan.text.terms) if scan.text is not None else None
    return text.read_matching(reads, scan, limit, desc, lambda f: span(reads, f), accept)
