"""``Store.sql``: DuckDB over views that union the hot and cold tiers.

Each view (``spans``, ``logs``, ``metrics``, ``metrics_5m``, ``metrics_1h``) has
exactly the columns of its cold dataset in the current format version
(docs/format/cold.md), plus the partition column ``date``: the live cold files,
as named by the manifest, read with ``read_parquet``, and the hot records
converted to the same schema, from one LMDB snapshot, so a record is seen once.
Hot metric points also appear in the rollup views, rolled up on the fly exactly
as compaction would roll them up. Attributes, resources, events and links are
JSON text: ``json_extract_string(attributes, '$."http.method"')`` or
``attributes->>'$."http.method"'`` reads one. Files of an older format version
(a store opened read-only before a writer migrated it) are converted to the
current one as they are read.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa

from .._cold import ColdFile, ColdTier
from .._coldformat import FORMAT_VERSION, upgrade
from .._compactor import hot_cold_tables
from .._errors import StorageError, ValidationError
from .context import ReadContext

VIEWS = ("spans", "logs", "metrics", "metrics_5m", "metrics_1h")


def _upgraded(cold: ColdTier, files: list[ColdFile]) -> pa.Table:
    """Files of an older format version, converted to the current one, with the hive
    ``date`` column read_parquet gives the others."""
    tables = []
    for f in files:
        table = upgrade(f.dataset, cold.read_all(f))
        day = pa.array([f.date] * table.num_rows, pa.string()).cast(pa.date32())
        tables.append(table.append_column("date", day))
    return pa.concat_tables(tables)


def _gone(exc: Exception) -> bool:
    """Whether a DuckDB error says a file of the snapshot is not there (any more)."""
    text = str(exc)
    return "No such file" in text or "No files found that match the pattern" in text or "not found" in text.lower()


def _remote_gone(exc: Exception) -> bool:
    """Whether an error from the pyarrow scan of object storage says a file is gone."""
    text = str(exc)
    return "NO_SUCH_KEY" in text or "Path does not exist" in text


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_sql(ctx: ReadContext, query: str) -> pa.Table:
    """Run a DuckDB SQL query over views ``spans``, ``logs``, ``metrics``,
    ``metrics_5m`` and ``metrics_1h`` that union the hot and cold tiers (the
    columns of docs/format/cold.md, version 2: attributes, resources, events and
    links are JSON text, read with ``attributes->>'$."http.method"'`` or
    ``json_extract_string``); returns a ``pyarrow.Table``. Needs the
    ``sql`` extra (DuckDB). Hot records are converted on every call, so the
    cost grows with the hot tier (``Store.sql``).

    ``query`` runs over one snapshot of the hot tier and the cold files its manifest names.

    The whole of it (binding the views to the files, then the query) runs inside the
    store's read retry: a file gone under it (merged or dropped by another process's
    maintenance; this process's keeps a running query's files, ``ColdTier.pinned``)
    makes it start again on a fresh snapshot, a bounded number of times, then raise
    ``StorageError``. Nothing else is retried: a user's SQL mistake is a ``ValidationError``
    at once, any other failure to read the store a ``StorageError``."""
    if type(query) is not str or not query.strip():
        raise ValueError(f"query must be a non-empty SQL string, got {query!r}")
    try:
        import duckdb
    except ImportError:
        raise StorageError("Store.sql needs DuckDB: pip install 'tael[sql]'") from None
    cold = ctx.cold

    def views(con: Any, txn: Any, manifest: list[ColdFile]) -> None:
        for name, table in hot_cold_tables(ctx.hot, txn).items():
            con.register(f"_hot_{name}", table)
            parts = [f"SELECT * FROM _hot_{name}"]
            files = [f for f in manifest if f.dataset == name and f.version == FORMAT_VERSION]
            older = [f for f in manifest if f.dataset == name and f.version != FORMAT_VERSION]
            if older:
                con.register(f"_old_{name}", _upgraded(cold, older))
                parts.append(f"SELECT * FROM _old_{name}")
            paths = cold.local_paths(files)
            if not files:
                pass
            elif paths is not None:  # read_parquet opens every file here, to bind the view
                listed = ", ".join(_quote(p) for p in paths)
                parts.append(f"SELECT * FROM read_parquet([{listed}])")
            else:  # object storage: scanned through pyarrow, with the hive date column as read_parquet gives it
                con.register(f"_cold_{name}", cold.remote_dataset(files))
                parts.append(f"SELECT * REPLACE (CAST(date AS DATE) AS date) FROM _cold_{name}")
            con.execute(f"CREATE VIEW {name} AS " + " UNION ALL BY NAME ".join(reversed(parts)))

    def run(txn: Any, manifest: list[ColdFile]) -> pa.Table:
        con = duckdb.connect(":memory:")
        try:
            try:
                views(con, txn, manifest)
            except duckdb.Error as exc:  # our own statements over the store's files
                if _gone(exc) or (cold.remote and _remote_gone(exc)):
                    raise FileNotFoundError(str(exc)) from exc  # read again, on a fresh snapshot
                raise StorageError(f"SQL views over the store's files failed: {exc}") from exc
            try:
                relation = con.sql(query)
                return pa.table({}) if relation is None else relation.to_arrow_table()
            except duckdb.IOException as exc:
                if _gone(exc):
                    raise FileNotFoundError(str(exc)) from exc  # a cold file went away: read again
                raise StorageError(f"SQL query failed reading the store: {exc}") from exc
            except duckdb.Error as exc:
                if cold.remote and _remote_gone(exc):
                    raise FileNotFoundError(str(exc)) from exc  # from the pyarrow scan: read again
                if cold.remote and "AWS Error" in str(exc):
                    raise StorageError(f"SQL query failed reading the cold tier at {cold.location}: {exc}") from exc
                raise ValidationError(f"SQL error: {exc}") from exc
        finally:
            con.close()

    return ctx.read(run, pin=True)


# ---------------------------------------------------------------- results as plain values
#
# ``Table.to_pylist`` cannot turn a nanosecond timestamp into a Python value without
# pandas, and gives maps as lists of pairs. The CLI prints query results through these
# per-type conversions instead: every Arrow type becomes a JSON value.


def json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """``table``'s rows as dicts of JSON values: timestamps as ISO-8601 UTC strings with
    nanoseconds (``2023-11-14T22:13:20.123456789Z``; no ``Z`` for a timestamp without a
    time zone), dates and times as ISO-8601 strings, durations and intervals as ISO-8601
    durations, maps and structs as objects, lists as arrays, decimals as exact strings,
    binary as lowercase hex, and NaN and infinities as the strings ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"`` (JSON has no numbers for them)."""
    columns = [json_values(col.combine_chunks()) for col in table.columns]
    names = table.column_names
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)] if columns else []


def json_values(arr: pa.Array) -> list[Any]:
    """The values of one Arrow array as JSON values (see ``json_rows``), nulls as None."""
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_dictionary(t):
        return json_values(arr.dictionary_decode())
    if isinstance(t, pa.ExtensionType):
        return json_values(arr.storage)
    if pa.types.is_timestamp(t):
        scale = _UNIT_NS[t.unit]
        zone = "Z" if t.tz is not None else ""
        return [None if v is None else _iso_timestamp(v, scale) + zone for v in arr.cast(pa.int64()).to_pylist()]
    if pa.types.is_time(t):
        scale = _UNIT_NS[t.unit]
        return [None if v is None else _iso_clock(v * scale) for v in arr.cast(pa.int64()).to_pylist()]
    if pa.types.is_duration(t):
        scale = _UNIT_NS[t.unit]
        return [None if v is None else _iso_duration(0, 0, v * scale) for v in arr.cast(pa.int64()).to_pylist()]
    if pa.types.is_interval(t):  # month_day_nano, the only interval pyarrow converts
        return [None if v is None else _iso_duration(v.months, v.days, v.nanoseconds) for v in arr.to_pylist()]
    if pa.types.is_date(t):
        return [None if v is None else v.isoformat() for v in arr.to_pylist()]
    if pa.types.is_decimal(t):
        return [None if v is None else str(v) for v in arr.to_pylist()]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return [None if v is None else v.hex() for v in arr.to_pylist()]
    if pa.types.is_floating(t):
        return [_json_float(v) for v in arr.to_pylist()]
    if pa.types.is_struct(t):
        fields = [json_values(child) for child in arr.flatten()]  # children sliced like arr
        names = [t.field(i).name for i in range(t.num_fields)]
        valid = arr.is_valid().to_pylist()
        return [
            dict(zip(names, values, strict=True)) if ok else None
            for ok, values in zip(valid, zip(*fields, strict=True) if fields else [()] * len(arr), strict=True)
        ]
    if pa.types.is_map(t):
        entries = pa.struct([t.key_field, t.item_field])
        pairs = _split(arr.cast(pa.list_(pa.field("entries", entries, nullable=False))), pc)
        return [None if p is None else {_json_key(e["key"]): e["value"] for e in p} for p in pairs]
    if pa.types.is_fixed_size_list(t):
        return _split(arr.cast(pa.list_(t.value_field)), pc)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _split(arr, pc)
    if pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return _split(arr.cast(pa.large_list(t.value_field)), pc)
    return list(arr.to_pylist())


def _split(lists: pa.Array, pc: Any) -> list[Any]:
    """Each list of ``lists`` as a Python list of JSON values (None for a null list)."""
    values = json_values(lists.flatten())  # the non-null lists' values, in order
    out: list[Any] = []
    at = 0
    for n in pc.list_value_length(lists).to_pylist():
        if n is None:
            out.append(None)
        else:
            out.append(values[at : at + n])
            at += n
    return out


_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_DAY_NS = 86_400 * 1_000_000_000


def _iso_timestamp(value: int, scale: int) -> str:
    from datetime import UTC, datetime, timedelta

    days, rest = divmod(value * scale, _DAY_NS)  # floor division: correct before 1970 too
    try:
        date = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=days)).date()
    except OverflowError:  # beyond year 9999 (possible for second or millisecond units)
        return f"{value * scale}ns"
    return f"{date.isoformat()}T{_iso_clock(rest)}"


def _iso_clock(ns: int) -> str:
    seconds, frac = divmod(ns, 1_000_000_000)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{frac:09d}"


def _iso_duration(months: int, days: int, ns: int) -> str:
    if min(months, days, ns) < 0 and max(months, days, ns) <= 0:
        return "-" + _iso_duration(-months, -days, -ns)  # -PT1.5S, the usual negative form
    seconds, frac = divmod(abs(ns), 1_000_000_000)
    date = (f"{months}M" if months else "") + (f"{days}D" if days else "")
    clock = f"T{'-' if ns < 0 else ''}{seconds}.{frac:09d}S" if ns or not date else ""
    return f"P{date}{clock}"


def _json_float(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)
