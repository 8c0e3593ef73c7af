"""The read protocol both tiers implement, and what it yields.

One snapshot of a tier is a :class:`TierReader`: the hot tier's (``tael._hot.HotReader``)
wraps an LMDB read transaction; the cold tier's (``tael._cold.ColdReader``) wraps the
manifest that transaction saw and the cold trace index (kept in LMDB). The query
package opens one reader per tier on the same snapshot and merges their answers
(``tael._query.merge``), as Prometheus' ``DB.Querier`` merges one ``BlockReader``
per block and Tempo's ``Combiner`` merges the WAL block and the backend blocks.

This module sits below both tiers (their readers are typed by it) and imports
neither: a tier implements the protocol structurally.

A hit is one matching record with its two keys:

- spans: dedup key ``(trace id, span id)``, sort key ``(start_ns, trace id, span id)``;
- logs, metric points: dedup key = sort key = ``(time_ns, WAL lsn, index in batch)``.

A sort key starts with the record's time. The same record in both tiers (a
re-sent span compacted once and stored again hot; any record while it moves)
has the same dedup key; ``merge`` decides which copy wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeAlias

from .filters import Scan

Hit: TypeAlias = tuple[Any, Any, list[Any]]
"""(dedup key, sort key, decoded record)."""

Stop: TypeAlias = Callable[[int], bool]
"""Asked with the best time a part of a tier can still yield (the newest when newest
first, else the oldest) before that part is read; True ends the scan."""


class TierReader(Protocol):
    """Reads of one tier as of one snapshot."""

    def scan(self, scan: Scan, *, newest_first: bool, limit: int, stop: Stop) -> Iterator[list[Hit]]:
        """Batches of hits of ``scan.signal`` that pass ``scan.keep`` (and the rest of the
        scan), each batch sorted by sort key (descending when ``newest_first``) and at
        most ``limit`` long. Among all batches yielded are the best ``limit`` hits of
        the tier; a batch is read only once ``stop`` said no to its bound. Metric
        scans by series (``scan.series``) are oldest first only."""
        ...

    def trace(self, trace: bytes) -> list[Hit]:
        """Every span of one trace (16-byte id) the tier holds, in no particular order."""
        ...

    def lookup(self, signal: str, keys: Sequence[Any]) -> list[Hit]:
        """Hits for those of ``keys`` (dedup keys of "spans" or "logs") the tier holds."""
        ...
