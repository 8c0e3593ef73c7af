"""Read back every record a test wrote, however many a fast machine managed to write.

A query returns at most ``MAX_LIMIT`` records, so a test that reads with a fixed
limit silently misses records once the machine writes more than that (issue 14,
item 9). These helpers page through time instead: a window whose answer is full
is split in two until every window holds fewer than the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import tael
from tael._query.args import MAX_LIMIT

T = TypeVar("T")

_END = 2**63 - 1  # the largest signed 64-bit nanosecond: every test timestamp is below it


def _every(query: Callable[..., list[T]], filters: dict[str, Any], page: int) -> list[T]:
    """All records ``query(**filters)`` matches, oldest first, fetched in windows of
    ``[start, end)`` below ``page`` records each."""
    first = query(**filters, limit=page, order="asc")
    if len(first) < page:
        return first
    out: list[T] = []
    windows = [(0, _END)]  # a stack, newest window on the bottom: popped oldest first
    while windows:
        lo, hi = windows.pop()
        got = query(**filters, start=lo, end=hi, limit=page, order="asc")
        if len(got) < page:
            out += got
            continue
        assert hi - lo > 1, f"more than {page:,} records at one nanosecond {lo}"
        mid = lo + (hi - lo) // 2
        windows += [(mid, hi), (lo, mid)]
    return out


def all_spans(store: tael.Store, page: int = MAX_LIMIT, **filters: Any) -> list[tael.Span]:
    """Every span matching ``filters`` (any ``query_traces`` filter but start, end, limit, order)."""
    return _every(store.query_traces, filters, page)


def all_logs(store: tael.Store, page: int = MAX_LIMIT, **filters: Any) -> list[tael.LogRecord]:
    """Every log record matching ``filters`` (any ``query_logs`` filter but start, end, limit, order)."""
    return _every(store.query_logs, filters, page)


def all_points(store: tael.Store, page: int = MAX_LIMIT, **filters: Any) -> list[tael.MetricPoint]:
    """Every metric point matching ``filters`` (any ``query_metrics`` filter but start, end, limit)."""

    def query(*, order: str, **kw: Any) -> list[tael.MetricPoint]:
        assert order == "asc"  # query_metrics is always oldest first
        return store.query_metrics(**kw)

    return _every(query, filters, page)
