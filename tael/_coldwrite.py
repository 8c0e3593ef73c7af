"""Building one cold file: its row groups, its manifest entry, its trace-index entries.

The Compactor (tael/_compactor.py) hands a :class:`FileBuilder` version-2 rows
(``tael._coldformat``); the builder writes them row group by row group through a
``ColdWriter`` and gathers, column-wise, what the manifest commit needs: the
statistics of the ``ColdFile`` entry (rows, time range, per-service counts,
metric names), the cold trace-index entries (:data:`Ref`: per trace and row
group, the services and the span ids there) and the blob digests the rows refer
to. Nothing of a file is held but the rows not yet written (under a row group).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._cold import ColdFile, ColdWriter
from ._coldformat import TIME_COLUMN, file_order, log_digests, plain, span_digests, unhex_ids

_ACCOUNT_GROUPS = 16  # row groups written by FileBuilder.add_group accounted together

Ref = tuple[bytes, int, int, int, tuple[str, ...], bytes]
"""A cold trace-index entry: (trace id, signal, file id, row group, services of the trace's
spans there, sorted; the 8-byte ids of those spans concatenated in row order, b"" for logs).
``HotTier.publish_files`` takes them; the span ids are what lets the hot tier know a
span re-sent after compaction is already cold."""


@dataclass(frozen=True, slots=True)
class NewFile:
    """A cold file written and staged, about to be published, with what the LMDB indexes need."""

    file: ColdFile
    staged: Path
    refs: list[Ref]
    digests: list[bytes]
    """Blob digests its rows refer to."""


def trace_refs(
    table: pa.Table, signal: int, file_id: int, first_rg: int, rg_rows: int, *, spans: bool, full: bool = True
) -> list[Ref]:
    """Cold trace-index entries of rows filling row groups ``first_rg``, ``first_rg + 1``, ...
    of ``rg_rows`` rows each (a version-2 table, or a version-1 one: the id columns are
    the same). Spans with ``full``: with the services and span ids of each trace's spans
    in each row group (what an added file needs); else the keys only (logs, and what
    removing a file needs). Vectorised but for one tuple per trace and row group: the
    rows are ordered by (row group, trace id) with numpy, each run found by comparing
    neighbours, its services as a bit mask."""
    n = table.num_rows
    groups = first_rg + np.arange(n, dtype=np.int64) // max(rg_rows, 1)
    if not (spans and full) or n == 0:
        present = np.flatnonzero(np.asarray(pc.is_valid(table.column("trace_id")).to_numpy(zero_copy_only=False)))
        ids = unhex_ids(pc.take(table.column("trace_id"), pa.array(present)), 16, "trace_id")
        keyed = pa.table({"t": ids, "g": pa.array(groups[present])}).group_by(["t", "g"], use_threads=False)
        found = keyed.aggregate([])
        return [
            (t, signal, file_id, g, (), b"")
            for t, g in zip(found.column("t").to_pylist(), found.column("g").to_pylist(), strict=True)
        ]
    traces = np.frombuffer(unhex_ids(table.column("trace_id"), 16, "trace_id").buffers()[1], np.uint8, count=16 * n)
    words = traces.view(">u8").reshape(n, 2)
    order = np.lexsort((words[:, 1], words[:, 0], groups))  # stable: a trace's spans keep their row order
    hi, lo, g = words[order, 0], words[order, 1], groups[order]
    starts = np.flatnonzero(np.concatenate(([True], (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1]) | (g[1:] != g[:-1]))))
    ends = np.append(starts[1:], n)
    encoded = plain(pc.dictionary_encode(table.column("service")))
    names = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)[order]
    if len(names) < 63:
        masks = np.bitwise_or.reduceat(np.left_shift(np.int64(1), codes), starts).tolist()
        memo = {m: tuple(sorted(names[i] for i in range(len(names)) if m >> i & 1)) for m in set(masks)}
        services = [memo[m] for m in masks]
    else:  # more services in the rows than bits in a mask
        services = [tuple(sorted({names[c] for c in codes[s:e]})) for s, e in zip(starts, ends, strict=True)]
    span_ids = np.frombuffer(unhex_ids(table.column("span_id"), 8, "span_id").buffers()[1], np.uint8, count=8 * n)
    span_bytes = span_ids.reshape(n, 8)[order].tobytes()
    trace_bytes = traces.reshape(n, 16)[order[starts]].tobytes()
    return [
        (trace_bytes[16 * i : 16 * i + 16], signal, file_id, rg, svc, span_bytes[8 * s : 8 * e])
        for i, (s, e, rg, svc) in enumerate(
            zip(starts.tolist(), ends.tolist(), g[starts].tolist(), services, strict=True)
        )
    ]


@dataclass(slots=True)
class FileBuilder:
    """One cold file being built from version-2 tables, row group by row group.

    :meth:`add_sorted` takes a whole file's rows in file order at once (compaction: a
    step's rows of one day, bounded by the step); :meth:`add` takes rows in any order,
    a piece at a time (merges stream their inputs), writes each row group as it fills,
    sorted into file order. ``signal``: the trace-index signal of the dataset's rows
    (None: no trace index)."""

    writer: ColdWriter
    row_group_rows: int
    signal: int | None
    spans: bool
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0
    min_ns: int | None = None
    max_ns: int | None = None
    services: dict[str, list[int]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    refs: list[Ref] = field(default_factory=list)
    digests: set[bytes] = field(default_factory=set)
    traces: dict[str, set[bytes]] = field(default_factory=dict)  # spans: service -> trace ids (refs' bytes)
    unaccounted: list[pa.Table] = field(default_factory=list)  # row groups written by add_group, not accounted

    @property
    def dataset(self) -> str:
        return self.writer.dataset

    def add_sorted(self, table: pa.Table) -> None:
        """All of the file's rows, in file order: written in row groups, accounted at once."""
        assert not self.pending and self.writer.row_groups == 0, "add_sorted takes the whole file"
        for at in range(0, table.num_rows, self.row_group_rows):
            self.writer.write(table.slice(at, self.row_group_rows))
        self._account(table, 0)

    def add_group(self, table: pa.Table) -> None:
        """The file's next row group (``row_group_rows`` rows but for the last), its rows
        in file order: a file written a row group at a time in file order as a whole.
        Accounted a few row groups at a time (an Arrow group-by per call costs ~1 ms)."""
        assert not self.pending, "add_group writes whole row groups in order"
        self.writer.write(table)
        self.unaccounted.append(table)
        if len(self.unaccounted) >= _ACCOUNT_GROUPS:
            self._flush_accounting()

    def _flush_accounting(self) -> None:
        if self.unaccounted:
            first = self.writer.row_groups - len(self.unaccounted)
            table = pa.Table.from_batches([b for t in self.unaccounted for b in t.to_batches()])
            self.unaccounted = []
            self._account(table, first)

    def add(self, table: pa.Table, *, in_order: bool = False) -> None:
        """Rows for the file, in any order; full row groups are written as they fill.
        ``in_order``: the rows are in file order already (a row group of a cold file): a
        whole row group of them, with nothing pending, is written as it is."""
        if in_order and not self.pending and table.num_rows == self.row_group_rows:
            self.writer.write(table)
            self._account(table, self.writer.row_groups - 1)
            return
        if table.num_rows:
            self.pending.append(table)
            self.pending_rows += table.num_rows
        while self.pending_rows >= self.row_group_rows:
            self._emit(self.row_group_rows)

    def _emit(self, rows: int) -> None:
        rest = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        rest = rest.take(file_order(self.dataset, rest))  # each row group in file order
        group = rest.slice(0, rows)
        self.writer.write(group)
        self._account(group, self.writer.row_groups - 1)
        rest = rest.slice(rows)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows

    def _account(self, table: pa.Table, first_rg: int) -> None:
        """Add written rows (filling row groups from ``first_rg``) to the file's statistics,
        trace-index entries and blob references."""
        bounds = pc.min_max(table.column(TIME_COLUMN[self.dataset]))
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        self.min_ns = lo if self.min_ns is None else min(self.min_ns, lo)
        self.max_ns = hi if self.max_ns is None else max(self.max_ns, hi)
        if self.spans:
            per_service = (
                pa.table(
                    {
                        "s": table.column("service"),
                        "e": pc.cast(pc.equal(table.column("status"), "error"), pa.int64()),
                        "d": table.column("duration_ns"),
                    }
                )
                .group_by("s", use_threads=False)
                .aggregate([("s", "count"), ("e", "sum"), ("d", "sum")])
            )
            for service, n, errors, duration in zip(
                *(per_service.column(c).to_pylist() for c in ("s", "s_count", "e_sum", "d_sum")), strict=True
            ):
                acc = self.services.setdefault(service, [0, 0, 0, 0])
                acc[0] += n
                acc[1] += errors
                acc[2] += duration
            self.digests.update(span_digests(table))
        else:
            for item in pc.value_counts(table.column("service")).to_pylist():
                self.services.setdefault(item["values"], [0])[0] += item["counts"]
        if self.dataset.startswith("metrics"):
            self.names.update(pc.unique(table.column("name")).to_pylist())
        if self.dataset == "logs":
            self.digests.update(log_digests(table))
        if self.signal is not None:
            refs = trace_refs(table, self.signal, self.writer.file_id, first_rg, self.row_group_rows, spans=self.spans)
            self.refs += refs
            if self.spans:  # distinct traces per service in the whole file (a trace may span row groups)
                for trace, _signal, _file, _rg, services, _ids in refs:
                    for service in services:
                        held = self.traces.get(service)
                        if held is None:
                            self.traces[service] = {trace}
                        else:
                            held.add(trace)

    def finish(self) -> NewFile:
        """Write what is left and close the file: the staged file and its manifest entry."""
        self._flush_accounting()
        while self.pending_rows:
            self._emit(min(self.pending_rows, self.row_group_rows))
        size = self.writer.close()
        for service, traces in self.traces.items():
            self.services[service][3] = len(traces)
        w = self.writer
        assert self.min_ns is not None and self.max_ns is not None, "a cold file holds at least one row"
        f = ColdFile(
            file_id=w.file_id,
            dataset=w.dataset,
            date=w.date,
            rows=w.rows,
            size=size,
            min_ns=self.min_ns,
            max_ns=self.max_ns,
            row_groups=w.row_groups,
            services=self.services,
            names=tuple(sorted(self.names)),
        )
        return NewFile(f, w.path, self.refs, sorted(self.digests))
