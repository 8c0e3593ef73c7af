"""The cold tier: its manifest entries, its files (:class:`ColdTier`) and its reader.

The files are date-partitioned Parquet datasets, a public format documented in
docs/format/cold.md (the schemas and conversions are ``tael._coldformat``):
DuckDB, Spark or pyarrow read them without tael. This module knows nothing about
LMDB; the manifest that says which files are live lives in the hot tier and is
driven by the Compactor (tael/_compactor.py). Queries read the tier through
:class:`ColdReader` (the read protocol of ``tael._query.tier``), given a manifest
snapshot and the cold trace index of the same LMDB transaction.

Files of both format versions are read; every file written is version 2, row
group by row group (:class:`ColdWriter`) into a staged local file that
``ColdTier.publish`` puts in place, so a file never has to be whole in memory.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ._coldformat import (
    DICTIONARY_COLUMNS,
    FORMAT_VERSION,
    JSON_COLUMNS,
    LIGHT_COLUMNS,
    SCHEMAS,
    SORT_KEYS,
    VERSIONS,
    WINDOW_NS,
    same_in_both,
    upgrade,
)
from ._coldformat import log_records as log_records  # re-exported: the readers of cold tables use them
from ._coldformat import metric_records as metric_records
from ._coldformat import span_records as span_records
from ._coldfs import LocalFiles, RemoteFiles, open_files
from ._errors import StorageError
from ._layout import SPAN_ID, SPAN_START, SPAN_TRACE
from ._query.filters import Predicate, Scan, trace_expr
from ._query.plan import plan
from ._query.tier import Hit, Stop

log = logging.getLogger(__name__)


_FOOTER_CACHE = 4096  # parsed Parquet footers kept in memory (a few KB each)


# ---------------------------------------------------------------- manifest entries


@dataclass(frozen=True, slots=True)
class ColdFile:
    """One live cold file, as recorded in the manifest (the ``cold_files`` LMDB table)."""

    file_id: int
    dataset: str
    date: str
    rows: int
    size: int
    min_ns: int
    max_ns: int
    row_groups: int
    services: dict[str, list[int]] = field(default_factory=dict)
    """spans: service -> [spans, errors, total duration ns, distinct traces in this file];
    other datasets: service -> rows."""
    names: tuple[str, ...] = ()
    """Metric names in the file (metrics and rollups), for pruning."""
    version: int = FORMAT_VERSION
    """The file's cold format version (docs/format/cold.md, "Version"): 1 or 2."""

    @property
    def relpath(self) -> str:
        return f"{self.dataset}/date={self.date}/part-{self.file_id:010d}.parquet"

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema the file holds."""
        return SCHEMAS[self.version][self.dataset]

    def pack(self) -> bytes:
        return bytes(
            msgpack.packb(
                [
                    self.version,
                    self.dataset,
                    self.date,
                    self.rows,
                    self.size,
                    self.min_ns,
                    self.max_ns,
                    self.row_groups,
                    self.services,
                    list(self.names),
                ],
                use_bin_type=True,
            )
        )

    @classmethod
    def unpack(cls, file_id: int, raw: bytes) -> ColdFile:
        f = msgpack.unpackb(raw, raw=False)
        if f[0] not in VERSIONS:
            raise StorageError(f"cold manifest entry {file_id} has unknown version {f[0]}")
        return cls(file_id, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], tuple(f[9]), f[0])

    def overlaps(self, lo: int | None, hi: int | None) -> bool:
        """Whether any record time in the file may fall in ``[lo, hi)``."""
        return (lo is None or self.max_ns >= lo) and (hi is None or self.min_ns < hi)


def day_of(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%d")


def day_start_ns(date: str) -> int:
    d = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(d.timestamp()) * 1_000_000_000


def columns_of(table: pa.Table) -> dict[str, list[Any]]:
    """A table's columns as Python lists (for the few rows a rollup read returns)."""
    return {name: table.column(name).to_pylist() for name in table.column_names}


# ---------------------------------------------------------------- writing a file


class ColdWriter:
    """One version-2 cold file being written, a row group per :meth:`write`, into a staged
    local file (``ColdTier.stage``): zstd (rollups: snappy), dictionaries on the repetitive strings,
    statistics (but on the JSON text columns: no engine prunes by them), page index, a
    bloom filter on ``trace_id``, and (but for spans, whose order is not a column sort)
    the sort order recorded per row group."""

    def __init__(self, tier: ColdTier, file_id: int, dataset: str, date: str, *, rows_hint: int) -> None:
        self.file_id, self.dataset, self.date = file_id, dataset, date
        self.relpath = f"{dataset}/date={date}/part-{file_id:010d}.parquet"
        self.path = tier.files.stage(self.relpath)
        schema = SCHEMAS[FORMAT_VERSION][dataset]
        names = schema.names
        try:
            self._writer = pq.ParquetWriter(
                str(self.path),
                schema,
                # rollups: snappy, read ~3x faster than zstd for ~6% more bytes (their values
                # are floats zstd hardly shrinks), and dashboards read them over and over
                compression="snappy" if dataset in WINDOW_NS else "zstd",
                compression_level=None if dataset in WINDOW_NS else tier.compression_level,
                use_dictionary=[c for c in names if c in DICTIONARY_COLUMNS],
                write_statistics=[c for c in names if c not in JSON_COLUMNS],
                write_page_index=True,
                # one filter per row group (column chunk), held until the file closes: sized for
                # a row group, not the file (sized for a 1M-row file, each took 2 MB of memory)
                bloom_filter_options={"trace_id": {"ndv": max(min(rows_hint, tier.row_group_rows), 1), "fpp": 0.01}}
                if "trace_id" in names
                else None,
                sorting_columns=None
                if dataset == "spans"
                else [pq.SortingColumn(names.index(k)) for k in SORT_KEYS[dataset]],
            )
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        self.row_groups = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        """Append ``table`` (the dataset's version-2 schema, file order) as one row group."""
        if table.num_rows:
            self._writer.write_table(table, row_group_size=table.num_rows)
            self.row_groups += 1
            self.rows += table.num_rows

    def close(self) -> int:
        """Finish the file (footer written); returns its size in bytes."""
        self._writer.close()
        return self.path.stat().st_size

    def abort(self) -> None:
        """Drop the staged file (nothing of it was published)."""
        try:
            self._writer.close()
        except Exception:  # a writer that failed may fail again on close: the file goes anyway
            log.debug("closing an aborted cold file writer failed", exc_info=True)
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------- files


def _damaged(what: str, exc: BaseException) -> StorageError:
    return StorageError(f"cold file {what} is damaged: {exc}")


class ColdTier:
    """The cold tier's Parquet files: writing, publishing, reading and deleting them,
    wherever they live (``_coldfs``: ``<data>/cold`` by default, or object storage)."""

    def __init__(self, files: LocalFiles | RemoteFiles | Path, *, row_group_rows: int, compression_level: int) -> None:
        self.files = files if isinstance(files, (LocalFiles, RemoteFiles)) else LocalFiles(files)
        self.row_group_rows = row_group_rows
        self.compression_level = compression_level
        self._footers: dict[int, pq.FileMetaData] = {}
        # Files a long read (Store.sql) uses, by relpath: remove() defers deleting them
        # until no read pins them, so a query never loses a file of its snapshot to a merge.
        self.pin_lock = threading.Lock()
        self._pins: Counter[str] = Counter()
        self._deferred: set[str] = set()

    @property
    def remote(self) -> bool:
        """Whether the files are elsewhere than on local disk (read through ``<data>/cache``)."""
        return self.files.remote

    @property
    def location(self) -> str:
        """Where the files are: a directory, or a URI such as ``s3://bucket/prefix``."""
        return self.files.location

    @property
    def root(self) -> Path:
        """The directory of a local cold tier."""
        if not isinstance(self.files, LocalFiles):
            raise StorageError(f"the cold tier is at {self.location}, not in a local directory")
        return self.files.root

    def path(self, f: ColdFile) -> Path:
        """A file's path in a local cold tier."""
        return self.root / f.relpath

    def describe(self, f: ColdFile) -> str:
        """A file's full path or URI, for messages."""
        return self.files.describe(f.relpath)

    # ------------------------------------------------------------ writes

    def writer(self, file_id: int, dataset: str, date: str, *, rows_hint: int) -> ColdWriter:
        """A new version-2 file, written row group by row group into a staged local file."""
        return ColdWriter(self, file_id, dataset, date, rows_hint=rows_hint)

    def publish(self, f: ColdFile, staged: Path) -> None:
        """Durably place a file written to ``staged`` (a :class:`ColdWriter`'s path): locally
        fsync, rename, fsync dir; on object storage one verified upload. It is live only
        once the manifest that names it commits. Raises OSError (StorageError for object
        storage) if the file is not durably there."""
        self.files.publish_file(f.relpath, staged)

    def discard(self, f: ColdFile, staged: Path | None = None) -> None:
        """Remove a file published (or staged) for a change that did not commit (best
        effort: one left behind is an orphan, removed when the store next opens)."""
        try:
            if staged is not None:
                staged.unlink(missing_ok=True)
            self.files.discard(f.relpath)
        except OSError as exc:
            log.warning("cannot remove uncommitted cold file %s (an orphan until the next open): %s", f.relpath, exc)

    def remove(self, files: Iterable[ColdFile]) -> None:
        """Delete files the manifest no longer names (after that change is durable).
        A file a read has pinned is deleted by a later call (or ``close``) once unpinned;
        so are files left so by earlier calls."""
        files = list(files)
        for f in files:
            self._footers.pop(f.file_id, None)
        with self.pin_lock:
            self._deferred.update(f.relpath for f in files)
            doomed = sorted(rel for rel in self._deferred if not self._pins[rel])
            self._deferred.difference_update(doomed)
        if doomed:
            self.files.delete(doomed)

    def close(self) -> None:
        """Delete what ``remove`` deferred and no read pins any more; a file still pinned
        (a read running through the close) stays, an orphan removed at the next open."""
        self.remove([])
        if self._deferred:
            log.warning("%d replaced cold files are still read; removed at the next open", len(self._deferred))

    @contextmanager
    def pinned(self, snapshot: Callable[[], tuple[Any, list[ColdFile]]]) -> Iterator[tuple[Any, list[ColdFile]]]:
        """Take ``snapshot()`` (a read snapshot and the manifest it sees) and keep every file
        of that manifest on disk until the block ends, however it is merged or dropped
        meanwhile. The snapshot is taken under ``pin_lock``, the lock ``remove`` decides
        under: a file is either pinned before its removal is decided, or the manifest
        that replaced it committed before the snapshot, which then does not name it."""
        with self.pin_lock:
            txn, manifest = snapshot()
            rels = [f.relpath for f in manifest]
            self._pins.update(rels)
        try:
            yield txn, manifest
        finally:
            with self.pin_lock:
                self._pins.subtract(rels)
                for rel in rels:
                    if self._pins[rel] <= 0:
                        del self._pins[rel]

    def sweep_orphans(self, live: set[str]) -> int:
        """Delete every file of the tier the manifest does not name: the leftovers of a
        compaction or merge that crashed before its manifest update committed."""
        return self.files.sweep(live)

    def listing(self) -> list[str]:
        """Paths (relative to the tier's root) of the files there, live or not."""
        return self.files.listing()

    def stored_size(self, f: ColdFile) -> int | None:
        """The size of a file where it is stored; None if it is not there."""
        return self.files.size(f.relpath)

    def read_footer(self, f: ColdFile) -> pq.FileMetaData:
        """A file's footer read from where it is stored (never cached: for checks)."""
        with self.files.open_direct(f.relpath) as src:
            return pq.read_metadata(src)

    # ------------------------------------------------------------ reads

    def local_paths(self, files: Sequence[ColdFile]) -> list[str] | None:
        """Paths of the files for engines reading local files; None for a remote tier."""
        if isinstance(self.files, LocalFiles):
            return [str(self.files.root / f.relpath) for f in files]
        return None

    def remote_dataset(self, files: Sequence[ColdFile]) -> ds.Dataset:
        """Files of one dataset and one version as a pyarrow dataset read from object
        storage, with the partition column ``date`` (string); for engines such as DuckDB."""
        assert isinstance(self.files, RemoteFiles) and files
        return self.files.dataset([(f.relpath, f.size, f.date) for f in files], files[0].schema)

    def read(
        self,
        files: Sequence[ColdFile],
        *,
        columns: list[str] | None = None,
        filter: pc.Expression | None = None,
    ) -> pa.Table:
        """Rows of the given files (one dataset) matching ``filter`` (row groups whose
        statistics cannot match are skipped), as version 2: version-1 files are upgraded
        unless only columns both versions hold alike are asked for."""
        assert files, "read() needs at least one file"
        dataset = files[0].dataset
        tables = []
        for version in sorted({f.version for f in files}):
            group = [f for f in files if f.version == version]
            if version == 1 and (columns is None or not same_in_both(dataset, columns)):
                whole = upgrade(dataset, self._read_dataset(group, None, filter))
                tables.append(whole if columns is None else whole.select(columns))
            else:
                tables.append(self._read_dataset(group, columns, filter))
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _read_dataset(
        self, files: Sequence[ColdFile], columns: list[str] | None, filter: pc.Expression | None
    ) -> pa.Table:
        schema = files[0].schema
        try:
            with ExitStack() as stack:
                sources = [stack.enter_context(self.files.open(f.relpath, f.size)) for f in files]
                if all(isinstance(src, str) for src in sources):
                    dataset = ds.dataset(sources, format="parquet", schema=schema)
                else:
                    fmt = ds.ParquetFileFormat()
                    dataset = ds.FileSystemDataset([fmt.make_fragment(src) for src in sources], schema, fmt)
                return dataset.to_table(columns=columns, filter=filter)
        except (FileNotFoundError, StorageError):
            raise
        except OSError as exc:
            if exc.errno == errno.ENOENT or "No such file" in str(exc):
                raise FileNotFoundError(str(exc)) from exc
            raise StorageError(f"cannot read cold files {[f.relpath for f in files]}: {exc}") from exc
        except pa.ArrowInvalid as exc:
            raise _damaged(str([f.relpath for f in files]), exc) from exc

    def read_all(self, f: ColdFile, columns: list[str] | None = None) -> pa.Table:
        """One whole file, in its row order, in the file's own version."""
        try:
            with self.files.open(f.relpath, f.size) as src:
                return pq.read_table(src, columns=columns, schema=f.schema)
        except pa.ArrowInvalid as exc:
            raise _damaged(f.relpath, exc) from exc

    def row_group_sizes(self, f: ColdFile) -> list[int]:
        meta = self._metadata(f)
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def _metadata(self, f: ColdFile) -> pq.FileMetaData:
        """A file's footer, cached: files never change once published."""
        meta = self._footers.get(f.file_id)
        if meta is None:
            with self.files.open(f.relpath, f.size) as src:
                meta = pq.read_metadata(src)
            if len(self._footers) >= _FOOTER_CACHE:
                self._footers.pop(next(iter(self._footers)))
            self._footers[f.file_id] = meta
        return meta

    def row_group_times(self, f: ColdFile, column: str) -> list[tuple[int, int, int]]:
        """(row group, min, max) of a file's time column, from the footer statistics."""
        meta = self._metadata(f)
        idx = meta.schema.to_arrow_schema().get_field_index(column)
        out = []
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(idx).statistics
            if st is None or not st.has_min_max:
                out.append((i, f.min_ns, f.max_ns))
            else:
                out.append((i, int(st.min), int(st.max)))
        return out

    def read_pruned(
        self,
        files: Sequence[ColdFile],
        bounds: dict[str, tuple[Any, Any]],
        filter: pc.Expression,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of ``files`` (one dataset) matching ``filter``, as version 2, decoding only
        the row groups whose statistics overlap every inclusive (low, high) in ``bounds``
        (cached footers: cheaper than a dataset scan for the small reads a dashboard makes)."""
        tables = []
        for f in files:
            meta = self._metadata(f)
            names = meta.schema.to_arrow_schema().names
            keep = []
            for i in range(meta.num_row_groups):
                rg = meta.row_group(i)
                ok = True
                for column, (low, high) in bounds.items():
                    st = rg.column(names.index(column)).statistics
                    if st is not None and st.has_min_max and (st.max < low or st.min > high):
                        ok = False
                        break
                if ok:
                    keep.append(i)
            if keep:
                if f.version == 1 and (columns is None or not same_in_both(f.dataset, columns)):
                    table = upgrade(f.dataset, self.read_row_groups(f, keep).filter(filter))
                    tables.append(table if columns is None else table.select(list(columns)))
                else:
                    tables.append(self.read_row_groups(f, keep, columns).filter(filter))
        if not tables:
            empty = SCHEMAS[FORMAT_VERSION][files[0].dataset].empty_table()
            return empty.select(list(columns)) if columns is not None else empty
        return pa.concat_tables(tables)

    def read_row_groups(self, f: ColdFile, row_groups: Sequence[int], columns: Sequence[str] | None = None) -> pa.Table:
        """Row groups of one file, in its own version."""
        try:
            metadata = self._metadata(f)
            with self.files.open(f.relpath, f.size) as src:
                pf = pq.ParquetFile(src, metadata=metadata)
                return pf.read_row_groups(list(row_groups), columns=list(columns) if columns is not None else None)
        except pa.ArrowInvalid as exc:
            raise _damaged(f.relpath, exc) from exc

    def read_matching(
        self,
        f: ColdFile,
        row_groups: Sequence[int] | None,
        expr: pc.Expression | None,
        order: Sequence[tuple[str, str]],
    ) -> pa.Table | None:
        """The rows of ``row_groups`` of ``f`` (None: all) matching ``expr``, sorted by
        ``order``, all columns, in the file's version; None when no row matches. Decodes
        the columns a filter can name first (``LIGHT_COLUMNS``), and the rest only for the
        row groups holding matching rows."""
        light = list(LIGHT_COLUMNS[f.dataset])
        meta = self._metadata(f)
        groups = list(range(meta.num_row_groups)) if row_groups is None else list(row_groups)
        keys = self.read_row_groups(f, groups, light)
        keys = keys.append_column("_row", pa.array(np.arange(keys.num_rows), pa.int64()))
        if expr is not None:
            keys = keys.filter(expr)
        if keys.num_rows == 0:
            return None
        keys = keys.sort_by(list(order))
        rows = np.asarray(keys.column("_row").to_numpy(), dtype=np.int64)
        sizes = np.array([meta.row_group(g).num_rows for g in groups], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        where = np.searchsorted(starts, rows, side="right") - 1  # position in ``groups`` of each row
        needed = np.unique(where)
        placed = np.zeros(len(groups), dtype=np.int64)  # each needed group's first row among the needed ones
        placed[needed] = np.concatenate(([0], np.cumsum(sizes[needed])[:-1]))
        heavy_names = [c for c in f.schema.names if c not in light]
        heavy = self.read_row_groups(f, [groups[i] for i in needed], heavy_names)
        heavy = heavy.take(pa.array(rows - starts[where] + placed[where]))
        out = {name: keys.column(name) for name in light}
        out.update({name: heavy.column(name) for name in heavy_names})
        return pa.Table.from_arrays([out[n] for n in f.schema.names], schema=f.schema)

    # ------------------------------------------------------------ checks (tael check)

    def check_files(
        self,
        manifest: Sequence[ColdFile],
        totals: dict[str, int],
        damaged: list[tuple[str, str]] | None = None,
    ) -> tuple[list[tuple[str, str]], list[str]]:
        """Verify every file of ``manifest`` where it is stored, without changing
        anything: present, its Parquet footer readable, its rows and row groups as the
        manifest records. Adds each file's ``files``, ``rows`` and stored ``bytes`` to
        ``totals``, and each damage found to ``damaged`` (a new list if None), as it goes:
        what was found before an I/O error still counts. Returns (damage as (path or
        URI, what is wrong), paths of files there that the manifest does not name:
        leftovers the next open removes)."""
        damaged = [] if damaged is None else damaged
        live = set()
        for f in manifest:
            where = self.describe(f)  # a local path, or a URI (s3://...) for a tier on object storage
            live.add(f.relpath)
            totals["files"] += 1
            totals["rows"] += f.rows
            size = self.stored_size(f)
            if size is None:
                damaged.append((where, f"cold file is missing (the manifest lists {f.rows:,} rows)"))
                continue
            totals["bytes"] += size
            try:
                meta = self.read_footer(f)
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
                text = " ".join(str(exc).split()) or type(exc).__name__
                damaged.append((where, f"Parquet footer does not read: {text}"))
                continue
            if meta.num_rows != f.rows:
                damaged.append((where, f"holds {meta.num_rows:,} rows, the manifest says {f.rows:,}"))
            elif meta.num_row_groups != f.row_groups:
                damaged.append((where, f"holds {meta.num_row_groups} row groups, the manifest says {f.row_groups}"))
        return damaged, [rel for rel in self.listing() if rel not in live]


def open_cold_tier(data_dir: Path, settings: Any) -> ColdTier:
    """The cold tier a store's settings name (``Settings.cold_uri``, ``cold_filesystem``):
    ``<data>/cold`` by default, a local directory, or object storage read through a
    local cache in ``<data>/cache``. Raises StorageError if the data directory's cold
    files are elsewhere (``_coldfs.LOCATION_FILE``), ValueError on bad settings."""
    return ColdTier(
        open_files(data_dir, settings),
        row_group_rows=settings.cold_row_group_rows,
        compression_level=settings.cold_compression_level,
    )


# ---------------------------------------------------------------- the read protocol

_SCAN_ORDER = {
    "spans": ("start_ns", "trace_id", "span_id"),
    "logs": ("time_ns", "wal_lsn", "batch_index"),
    "metrics": ("time_ns", "wal_lsn", "batch_index"),
}
"""Each signal's sort key (``tael._query.tier``) as columns."""

TraceRefs = Callable[[bytes, str], dict[int, list[int]]]
"""(trace id, "spans" or "logs") -> {file id: row groups holding that trace's rows}."""


def span_hits(table: pa.Table) -> list[Hit]:
    """Rows of a spans table as hits: ((trace, span), (start, trace, span), record)."""
    return [((f[SPAN_TRACE], f[SPAN_ID]), (f[SPAN_START], f[SPAN_TRACE], f[SPAN_ID]), f) for f in span_records(table)]


def _keyed_hits(records: list[tuple[tuple[int, int, int], list[Any]]]) -> list[Hit]:
    return [(key, key, f) for key, f in records]


def log_hits(table: pa.Table) -> list[Hit]:
    """Rows of a logs table as hits keyed by (time, lsn, index)."""
    return _keyed_hits(log_records(table))


def metric_hits(table: pa.Table) -> list[Hit]:
    """Rows of a metrics table as hits keyed by (time, lsn, index)."""
    return _keyed_hits(metric_records(table))


_HITS: dict[str, Callable[[pa.Table], list[Hit]]] = {"spans": span_hits, "logs": log_hits, "metrics": metric_hits}


def _converted(table: pa.Table, hits: Callable[[pa.Table], list[Hit]], keep: Predicate, limit: int) -> list[Hit]:
    """The first ``limit`` rows of a sorted table whose records pass ``keep``, converting
    to Python in slices so a broad query does not materialise a whole partition."""
    out: list[Hit] = []
    offset, size = 0, max(64, limit)
    while offset < table.num_rows and len(out) < limit:
        for hit in hits(table.slice(offset, size)):
            if keep(hit[2]):
                out.append(hit)
                if len(out) >= limit:
                    break
        offset += size
        size *= 4
    return out


class ColdReader:
    """The cold tier as of one snapshot: the manifest an LMDB read transaction saw and
    that transaction's cold trace index (``trace_refs``). Implements
    ``tael._query.tier.TierReader``; scans are planned by ``tael._query.plan``. A read
    decodes the columns a scan filters on first, then the rest only where rows match,
    and builds records only for the rows it returns."""

    def __init__(self, cold: ColdTier, manifest: list[ColdFile], trace_refs: TraceRefs) -> None:
        self.cold = cold
        self.manifest = manifest
        self.trace_refs = trace_refs
        self._by_id: dict[int, ColdFile] | None = None  # built on first use: most hot-only reads never need it
        self._groups: dict[tuple[int, int], pa.Table] = {}  # row groups lookups read, for the next lookup

    @property
    def by_id(self) -> dict[int, ColdFile]:
        """The snapshot's files by id."""
        if self._by_id is None:
            self._by_id = {f.file_id: f for f in self.manifest}
        return self._by_id

    def scan(self, scan: Scan, *, newest_first: bool, limit: int, stop: Stop) -> Iterator[list[Hit]]:
        way = "descending" if newest_first else "ascending"
        order = [(column, way) for column in _SCAN_ORDER[scan.signal]]
        hits, keep = _HITS[scan.signal], scan.keep
        if scan.trace is not None:  # the cold trace index names the row groups: no plan, no early stop
            for file_id, rgs in sorted(self.trace_refs(scan.trace, scan.signal).items()):
                f = self.by_id.get(file_id)
                if f is not None:
                    table = self.cold.read_matching(f, rgs, scan.expr, order)
                    yield [] if table is None else _converted(table, hits, keep, limit)
            return
        tasks = plan(self.manifest, scan, newest_first=newest_first, row_group_times=self.cold.row_group_times)
        for task in tasks:
            if stop(task.bound(newest_first)):
                return
            groups = None if task.row_group is None else [task.row_group]
            table = self.cold.read_matching(task.file, groups, scan.expr, order)
            yield [] if table is None else _converted(table, hits, keep, limit)

    def trace(self, trace: bytes) -> list[Hit]:
        out: list[Hit] = []
        order = [(column, "ascending") for column in _SCAN_ORDER["spans"]]
        for file_id, rgs in sorted(self.trace_refs(trace, "spans").items()):
            f = self.by_id.get(file_id)
            if f is not None:
                table = self.cold.read_matching(f, rgs, trace_expr(trace), order)
                if table is not None:
                    out += span_hits(table)
        return out

    def lookup(self, signal: str, keys: Sequence[Any]) -> list[Hit]:
        if signal == "spans":
            return self._spans(keys)
        if signal == "logs":
            return self._logs(keys)
        raise ValueError(f"lookups are by span or log key, not {signal!r}")

    def _group(self, f: ColdFile, rg: int) -> pa.Table:
        table = self._groups.get((f.file_id, rg))
        if table is None:
            table = self._groups[(f.file_id, rg)] = self.cold.read_row_groups(f, [rg])
        return table

    def _spans(self, keys: Sequence[tuple[bytes, bytes]]) -> list[Hit]:
        """Spans by (trace, span) id, through the cold trace index; each row group is
        read once per reader (lookups come in pages), and only the wanted rows become
        records."""
        out: list[Hit] = []
        wanted = set(keys)
        by_trace: dict[bytes, list[str]] = {}
        for trace, span in keys:
            by_trace.setdefault(trace, []).append(span.hex())
        for trace, spans in by_trace.items():
            expr = trace_expr(trace) & pc.field("span_id").isin(spans)
            for file_id, rgs in self.trace_refs(trace, "spans").items():
                f = self.by_id.get(file_id)
                if f is None:
                    continue
                for rg in rgs:
                    rows = self._group(f, rg).filter(expr)
                    if rows.num_rows:
                        out += [hit for hit in span_hits(rows) if hit[0] in wanted]
        return out

    def _logs(self, keys: Sequence[tuple[int, int, int]]) -> list[Hit]:
        """Logs by (time, lsn, index) key. Each row group that may hold a wanted time is
        read once per reader (lookups come in pages), and only its rows at wanted times
        are converted to Python."""
        wanted: dict[tuple[int, int], set[tuple[int, int, int]]] = {}
        if not keys:
            return []
        lo, hi = min(k[0] for k in keys), max(k[0] for k in keys)
        files = [f for f in self.manifest if f.dataset == "logs" and f.min_ns <= hi and f.max_ns >= lo]
        for f in files:
            groups = self.cold.row_group_times(f, "time_ns")
            for key in keys:
                t = key[0]
                if f.min_ns <= t <= f.max_ns:
                    for rg, t_min, t_max in groups:
                        if t_min <= t <= t_max:
                            wanted.setdefault((f.file_id, rg), set()).add(key)
        out: list[Hit] = []
        for (file_id, rg), group in wanted.items():
            table = self._group(self.by_id[file_id], rg)
            table = table.filter(pc.field("time_ns").isin(sorted({k[0] for k in group})))
            out += [hit for hit in log_hits(table) if hit[0] in group]
        return out
