"""Query filters and their translations (row predicate, Arrow expression, pruning)."""

from __future__ import annotations

import pyarrow.compute as pc


def time_exprs(column: str, lo: int | None, hi: int | None) -> list[pc.Expression]:
    out = []
    if lo is not None:
        out.append(pc.field(column) >= lo)
    if hi is not None:
        out.append(pc.field(column) < hi)
    return out


def and_all(exprs: list[pc.Expression]) -> pc.Expression | None:
    if not exprs:
        return None
    out = exprs[0]
    for e in exprs[1:]:
        out = out & e
    return out
