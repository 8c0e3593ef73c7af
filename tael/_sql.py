"""``Store.sql``: DuckDB over views that union the hot and cold tiers.

Each view (``spans``, ``logs``, ``metrics``, ``metrics_5m``, ``metrics_1h``) has
exactly the columns of its cold dataset (docs/cold-format.md): the live cold
files, as named by the manifest, read with ``read_parquet``, and the hot
records converted to the same schema, from one LMDB snapshot, so a record is
seen once. Hot metric points also appear in the rollup views, rolled up on the
fly exactly as compaction would roll them up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import _codec
from ._cold import ColdFile, logs_table, metrics_table, rollup_table, spans_table
from ._errors import StorageError, ValidationError
from ._hot import _QQI
from ._maintenance import metric_rows, rollup_rows

if TYPE_CHECKING:
    from ._store import Store

VIEWS = ("spans", "logs", "metrics", "metrics_5m", "metrics_1h")


def _hot_tables(store: Store, txn: Any) -> dict[str, pa.Table]:
    hot = store._hot
    unpack = _codec.unpackb
    spans = spans_table([unpack(v) for _k, v in hot.records(txn, "spans")])
    logs = logs_table([(*_QQI.unpack(k)[1:], unpack(v)) for k, v in hot.records(txn, "logs")])
    rows = metric_rows(list(hot.records(txn, "metrics")))
    five, hour = rollup_rows(rows)
    return {
        "spans": spans,
        "logs": logs,
        "metrics": metrics_table([r[:4] for r in rows]),
        "metrics_5m": rollup_table("metrics_5m", five),
        "metrics_1h": rollup_table("metrics_1h", hour),
    }


def _gone(exc: Exception) -> bool:
    text = str(exc)
    return "No such file" in text or "not found" in text.lower()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_sql(store: Store, query: str) -> pa.Table:
    if type(query) is not str or not query.strip():
        raise ValueError(f"query must be a non-empty SQL string, got {query!r}")
    try:
        import duckdb
    except ImportError:
        raise StorageError("Store.sql needs DuckDB: pip install 'tael[sql]'") from None

    def run(txn: Any, manifest: list[ColdFile]) -> pa.Table:
        con = duckdb.connect(":memory:")
        try:
            for name, table in _hot_tables(store, txn).items():
                con.register(f"_hot_{name}", table)
                files = [f for f in manifest if f.dataset == name]
                paths = store._cold.local_paths(files)
                if not files:
                    con.execute(f"CREATE VIEW {name} AS SELECT * FROM _hot_{name}")
                elif paths is not None:
                    listed = ", ".join(_quote(p) for p in paths)
                    con.execute(
                        f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}]) "
                        f"UNION ALL BY NAME SELECT * FROM _hot_{name}"
                    )
                else:  # object storage: scanned through pyarrow, with the hive date column as read_parquet gives it
                    con.register(f"_cold_{name}", store._cold.remote_dataset(files))
                    con.execute(
                        f"CREATE VIEW {name} AS SELECT * REPLACE (CAST(date AS DATE) AS date) FROM _cold_{name} "
                        f"UNION ALL BY NAME SELECT * FROM _hot_{name}"
                    )
            try:
                relation = con.sql(query)
                return pa.table({}) if relation is None else relation.to_arrow_table()
            except duckdb.IOException as exc:
                if _gone(exc):
                    raise FileNotFoundError(str(exc)) from exc  # a cold file went away: read again
                raise StorageError(f"SQL query failed reading the store: {exc}") from exc
            except duckdb.Error as exc:
                if store._cold.remote and ("NO_SUCH_KEY" in str(exc) or "Path does not exist" in str(exc)):
                    raise FileNotFoundError(str(exc)) from exc  # from the pyarrow scan: read again
                if store._cold.remote and "AWS Error" in str(exc):
                    raise StorageError(
                        f"SQL query failed reading the cold tier at {store._cold.location}: {exc}"
                    ) from exc
                raise ValidationError(f"SQL error: {exc}") from exc
        finally:
            con.close()

    return store._read(run)
