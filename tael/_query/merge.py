"""Merging the tiers' answers: the dedup rule and the top-k rule, written once.

**Dedup.** A read opens one reader per tier on one snapshot (:func:`tiers`) and
asks them in precedence order, cold first: the first copy of a dedup key wins.
A record is in both tiers when a span re-sent after its first copy was compacted
is stored again hot; the cold copy was written first, and the first write of a
span is the one kept (as on insert).

**Top-k.** A limited scan keeps the times of what it holds (:class:`TopK`) and
stops reading a tier's parts (cold row groups, visited best first) once the
``limit``-th best held beats the best a part can hold; then everything held is
sorted by sort key and cut to ``limit`` (:func:`ranked`). Text search pages
through the index with the same rule.

Prometheus' ``NewMergeQuerier`` and Tempo's ``Combiner`` play this part there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from .._cold import ColdReader
from .._hot import HotReader
from .context import ReadContext
from .filters import Scan
from .tier import Hit, TierReader

_SORT_KEY = itemgetter(1)


def tiers(reads: ReadContext, txn: Any, manifest: list[Any]) -> tuple[ColdReader, HotReader]:
    """One reader per tier on the snapshot ``(txn, manifest)``, in precedence order."""
    hot = HotReader(reads.hot, txn)
    return ColdReader(reads.cold, manifest, hot.trace_refs), hot


class TopK:
    """The times of the hits held, to tell when a part of a tier (visited best first)
    or a later page of index hits cannot displace any of the best ``limit``."""

    def __init__(self, limit: int, *, newest_first: bool) -> None:
        self.limit = limit
        self.newest_first = newest_first
        self.times: list[int] = []

    def add(self, t: int) -> None:
        self.times.append(t)

    def full_before(self, bound: int) -> bool:
        """Whether nothing whose best time is ``bound`` can beat what is already held."""
        if len(self.times) < self.limit:
            return False
        self.times.sort(reverse=self.newest_first)
        del self.times[self.limit :]
        kth = self.times[-1]
        return bound < kth if self.newest_first else bound > kth


def take(found: dict[Any, Hit], hits: Iterable[Hit], times: list[int] | None = None) -> None:
    """The dedup rule: add ``hits`` to ``found`` (dedup key -> hit) unless their key is
    already there; the time of each one added goes to ``times``."""
    held = found.setdefault
    if times is None:
        for hit in hits:
            held(hit[0], hit)
        return
    add = times.append
    for hit in hits:
        if held(hit[0], hit) is hit:
            add(hit[1][0])


def ranked(hits: Iterable[Hit], limit: int, newest_first: bool) -> list[list[Any]]:
    """The records of the best ``limit`` hits, in sort-key order."""
    return [hit[2] for hit in sorted(hits, key=_SORT_KEY, reverse=newest_first)[:limit]]


def top_k(sources: Sequence[TierReader], scan: Scan, limit: int, newest_first: bool) -> list[list[Any]]:
    """The best ``limit`` records of ``scan`` over ``sources`` (precedence order)."""
    found: dict[Any, Hit] = {}
    top = TopK(limit, newest_first=newest_first)
    for source in sources:
        for batch in source.scan(scan, newest_first=newest_first, limit=limit, stop=top.full_before):
            take(found, batch, top.times)
    return ranked(found.values(), limit, newest_first)


def trace(sources: Sequence[TierReader], trace_id: bytes) -> list[list[Any]]:
    """Every span of a trace over ``sources``, by start time (then span id)."""
    found: dict[Any, Hit] = {}
    for source in sources:
        take(found, source.trace(trace_id))
    return ranked(found.values(), len(found), newest_first=False)


def lookup(sources: Sequence[TierReader], signal: str, keys: Sequence[Any]) -> dict[Any, Hit]:
    """Hits for those of ``keys`` any source (in precedence order, as :func:`tiers`
    gives them) holds. Spans are asked in precedence order, so the dedup rule picks the
    copy. A log's key is in one tier only (it is assigned once, and a move between
    tiers is one transaction), so no copy is to be picked: the hot tier, last in
    precedence and cheap to ask, goes first, and the cold tier is asked only for the
    keys it lacks (a cold lookup by time reads row groups)."""
    found: dict[Any, Hit] = {}
    for source in sources if signal == "spans" else reversed(sources):
        missing = [k for k in keys if k not in found]
        if not missing:
            break
        take(found, source.lookup(signal, missing))
    return found
