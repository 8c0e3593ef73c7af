"""Full-text search: the index finds pointers, the tiers hold the records.

The index (``tael._search.TextIndex``) yields pages of pointers in time order
(newest first, or oldest); each page is resolved against one snapshot of the tiers
(``merge.lookup``: a pointer to a record the store no longer holds is skipped) and
the query's other filters, until ``limit`` records are found and no later page can
displace them (``merge.TopK``). The index applies the service, level and trace
filters itself (after the lookup they would cost 3-10x the reads: docs/format/index.md);
the records found are checked against the whole filter again (``Scan.keep``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._search import TextIndex, matches, span_key
from . import merge
from .context import ReadContext
from .filters import Scan
from .tier import Hit, TierReader

_R = TypeVar("_R")
_SLACK = 16
"""Pointers asked for beyond ``limit`` per page, for those the filters or the store reject."""


def search(
    index: TextIndex,
    sources: Sequence[TierReader],
    scan: Scan,
    limit: int,
    newest_first: bool,
    accept: Callable[[list[Any]], bool] | None = None,
) -> list[list[Any]]:
    """The best ``limit`` records matching ``scan`` (which has a ``text`` query) over
    ``sources``, in order; ``accept`` is a further check of each record."""
    q = scan.text
    assert q is not None
    keep = scan.keep
    found: dict[Any, Hit] = {}
    top = merge.TopK(limit, newest_first=newest_first)
    pages = index.search(
        q.doc,
        q.terms,
        desc=newest_first,
        service=q.service,
        trace=scan.trace,
        min_level=q.min_level,
        level=q.level,
        lo=scan.lo,
        hi=scan.hi,
        page=limit + _SLACK,
    )
    spans = scan.signal == "spans"
    for page in pages:
        if spans:
            keys: list[Any] = [span_key(k1, k2, k3) for _t, k1, k2, k3 in page]
        else:
            keys = [(t, k1, k2) for t, k1, k2, _k3 in page]
        held = merge.lookup(sources, scan.signal, keys)
        for key in keys:
            hit = held.get(key)
            if hit is not None and key not in found and keep(hit[2]) and (accept is None or accept(hit[2])):
                found[key] = hit
                top.add(hit[1][0])
        if top.full_before(page[-1][0]):
            break
    return merge.ranked(found.values(), limit, newest_first)


def span_matcher(reads: ReadContext, terms: list[list[str]]) -> Callable[[list[Any]], bool]:
    """Whether a stored span's own payload text matches: the index may point at it for
    the text of a re-sent copy that was not stored (the first write wins)."""
    restore, texts = reads.blobs.restore_span, reads.payloads.span_texts
    return lambda f: matches(texts(restore(f)), terms)


def read_matching(
    reads: ReadContext,
    scan: Scan,
    limit: int,
    newest_first: bool,
    convert: Callable[[list[Any]], _R],
    accept: Callable[[list[Any]], bool] | None = None,
) -> list[_R]:
    """The best ``limit`` records ``scan`` matches, on one snapshot of both tiers:
    through the full-text index when the scan has a text query (``accept``: a further
    check of each record), else the tiers' scans merged (``merge.top_k``). Each record
    is converted inside the snapshot, so a blob file removed under the read retries it."""
    if scan.empty:
        return []
    if scan.text is not None:
        index = reads.text_index()

        def found(txn: Any, manifest: list[Any]) -> list[_R]:
            hits = search(index, merge.tiers(reads, txn, manifest), scan, limit, newest_first, accept)
            return [convert(f) for f in hits]

    else:

        def found(txn: Any, manifest: list[Any]) -> list[_R]:
            hits = merge.top_k(merge.tiers(reads, txn, manifest), scan, limit, newest_first)
            return [convert(f) for f in hits]

    return reads.read(found)
