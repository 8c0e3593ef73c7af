"""The cold-read planner: which files and row groups a scan reads, best first.

Given the manifest, a translated filter (:class:`~tael._query.filters.Scan`), the
order and the row groups' time statistics, :func:`plan` returns the scan tasks
before anything is read, so a limited query can stop after the first tasks
(``merge.TopK``) and the plan is testable with made-up files (pyiceberg's
``DataScan.plan_files()`` is the model). Statistics come from a callable (the cold
tier's cached Parquet footers).

Spans and logs files are sorted by time (spans: by trace, then time; their
row-group ``start_ns`` statistics still prune), so each row group is one task.
Metric files are sorted by name and series, so a row group spans the file's whole
time range; a metric scan reads whole files, filtered by the scanner (name,
series and time predicates prune row groups by their statistics there).

This module sits below the cold tier (its reader plans through it), so it imports
no tier; files are seen through :class:`~tael._query.filters.FileMeta`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .filters import FileMeta, Scan

F = TypeVar("F", bound=FileMeta)

RowGroupTimes = Callable[[F, str], list[tuple[int, int, int]]]
"""(file, time column) -> [(row group, min time, max time)], from the file's statistics."""

WHOLE_FILE_SIGNALS = frozenset({"metrics"})
"""Signals read a file at a time (their files are not sorted by time)."""


@dataclass(frozen=True, slots=True)
class ScanTask(Generic[F]):
    """One read of a cold scan: a row group of a file (None: the whole file), and the
    times it may hold (inclusive)."""

    file: F
    row_group: int | None
    t_min: int
    t_max: int

    def bound(self, newest_first: bool) -> int:
        """The best time the task can yield: what an early stop compares."""
        return self.t_max if newest_first else self.t_min


def plan(
    manifest: Sequence[F], scan: Scan, *, newest_first: bool, row_group_times: RowGroupTimes[F]
) -> list[ScanTask[F]]:
    """The tasks of ``scan`` over the files of ``manifest``, best first: newest max time
    first when ``newest_first``, else oldest min time first (ties in manifest order).
    Files and row groups that cannot match are left out."""
    files = [f for f in manifest if scan.keeps_file(f)]
    if scan.signal in WHOLE_FILE_SIGNALS:
        tasks = [ScanTask(f, None, f.min_ns, f.max_ns) for f in files]
    else:
        tasks = [
            ScanTask(f, rg, t_min, t_max)
            for f in files
            for rg, t_min, t_max in row_group_times(f, scan.time_column)
            if scan.keeps_row_group(t_min, t_max)
        ]
    if newest_first:
        tasks.sort(key=lambda t: t.t_max, reverse=True)
    else:
        tasks.sort(key=lambda t: t.t_min)
    return tasks
