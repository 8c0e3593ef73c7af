"""Window statistics over both tiers: what ``Store.summary`` and ``Store.anomalies``
compute.

Nothing here scans full records. The hot tier keeps lean side tables written on
apply and deleted on eviction (``span_lean``: duration, error flag, service and
name; ``log_lean``: severity and service; ``metric_lean``: series id), keyed like
the records, so a window is one cursor range; cold files give the same fields
as a few Parquet columns, pruned by row-group time statistics. Both become one
Arrow table, aggregated with Arrow compute.
"""

from __future__ import annotations

import struct
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._cold import ColdFile, ColdTier
from .._hot import HotTier
from .._models import ErrorOperation, LogSummary, MetricSummary, ServiceSummary, TraceSummary

_Q = struct.Struct(">Q")
SPAN_COLUMNS = ["trace_id", "service", "name", "duration_ns", "is_error"]
_SEVERITY_RANGES = (
    ("trace", 1, 4),
    ("debug", 5, 8),
    ("info", 9, 12),
    ("warn", 13, 16),
    ("error", 17, 20),
    ("fatal", 21, 24),
)


def _and(exprs: list[pc.Expression]) -> pc.Expression:
    out = exprs[0]
    for e in exprs[1:]:
        out = out & e
    return out


def span_window(
    hot: HotTier, cold: ColdTier, txn: Any, manifest: list[ColdFile], lo: int, hi: int, service: str | None
) -> pa.Table:
    """trace_id (hex), service, name, duration_ns, is_error of every span with
    ``lo <= start_ns < hi`` (and of ``service``), hot and cold."""
    traces: list[str] = []
    services: list[str] = []
    names: list[str] = []
    durations: list[int] = []
    errors: list[bool] = []
    want = service.encode() if service is not None else None
    hi_key = _Q.pack(hi)
    cur = txn.cursor(db=hot.db["span_lean"])
    if hi > lo and cur.set_range(_Q.pack(max(lo, 0))):
        unpack = _Q.unpack_from
        for key, value in cur:
            if key[:8] >= hi_key:
                break
            svc, _sep, name = bytes(value[9:]).partition(b"\x00")
            if want is not None and svc != want:
                continue
            traces.append(bytes(key[8:24]).hex())
            services.append(svc.decode())
            names.append(name.decode())
            durations.append(unpack(value)[0])
            errors.append(value[8] == 1)
    tables = [
        pa.table(
            [
                pa.array(traces, pa.string()),
                pa.array(services, pa.string()),
                pa.array(names, pa.string()),
                pa.array(durations, pa.int64()),
                pa.array(errors, pa.bool_()),
            ],
            names=SPAN_COLUMNS,
        )
    ]
    files = [
        f
        for f in manifest
        if f.dataset == "spans" and f.overlaps(lo, hi) and (service is None or service in f.services)
    ]
    if files and hi > lo:
        exprs = [pc.field("start_ns") >= lo, pc.field("start_ns") < hi]
        if service is not None:
            exprs.append(pc.field("service") == service)
        t = cold.read(files, columns=["trace_id", "service", "name", "duration_ns", "status"], filter=_and(exprs))
        tables.append(
            pa.table(
                [
                    t.column("trace_id"),
                    t.column("service"),
                    t.column("name"),
                    t.column("duration_ns"),
                    pc.equal(t.column("status"), "error"),
                ],
                names=SPAN_COLUMNS,
            )
        )
    return pa.concat_tables(tables).combine_chunks()


def _rank(sorted_values: pa.Array, offset: int, n: int, p: float) -> int:
    """Nearest-rank percentile of a sorted run of ``n`` values starting at ``offset``."""
    return int(sorted_values[offset + round((n - 1) * p)].as_py())


def trace_summary(t: pa.Table) -> TraceSummary:
    n = t.num_rows
    if not n:
        return TraceSummary(
            span_count=0,
            trace_count=0,
            error_count=0,
            error_rate=0.0,
            avg_ms=0.0,
            max_ms=0.0,
            p50_ms=0.0,
            p95_ms=0.0,
            p99_ms=0.0,
        )
    durations = t.column("duration_ns")
    ordered = pc.array_sort_indices(durations)
    sorted_d = pc.take(durations, ordered)
    errors = int(pc.sum(pc.cast(t.column("is_error"), pa.int64())).as_py())
    return TraceSummary(
        span_count=n,
        trace_count=int(pc.count_distinct(t.column("trace_id")).as_py()),
        error_count=errors,
        error_rate=errors / n,
        avg_ms=int(pc.sum(durations).as_py()) / n / 1e6,
        max_ms=int(pc.max(durations).as_py()) / 1e6,
        p50_ms=_rank(sorted_d, 0, n, 0.50) / 1e6,
        p95_ms=_rank(sorted_d, 0, n, 0.95) / 1e6,
        p99_ms=_rank(sorted_d, 0, n, 0.99) / 1e6,
    )


def per_service(t: pa.Table) -> dict[str, tuple[int, int, float]]:
    """service -> (spans, errors, exact p95 in ms): one sort by (service, duration),
    then each service's run of sorted durations is read at its rank."""
    if not t.num_rows:
        return {}
    order = pc.sort_indices(t, sort_keys=[("service", "ascending"), ("duration_ns", "ascending")])
    durations = pc.take(t.column("duration_ns"), order)
    errors = pc.cast(t.column("is_error"), pa.int64())
    groups = (
        pa.table({"service": t.column("service"), "errors": errors})
        .group_by("service")
        .aggregate([("errors", "count"), ("errors", "sum")])
        .sort_by("service")
    )
    out = {}
    start = 0
    for name, n, errs in zip(
        groups.column("service").to_pylist(),
        groups.column("errors_count").to_pylist(),
        groups.column("errors_sum").to_pylist(),
        strict=True,
    ):
        out[name] = (n, errs, _rank(durations, start, n, 0.95) / 1e6)
        start += n
    return out


def top_services(stats: dict[str, tuple[int, int, float]], k: int = 10) -> list[ServiceSummary]:
    ranked = sorted(stats.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [
        ServiceSummary(service=svc, span_count=n, error_rate=errs / n, p95_ms=p95) for svc, (n, errs, p95) in ranked
    ]


def top_error_operations(t: pa.Table, k: int = 10) -> list[ErrorOperation]:
    errs = t.filter(t.column("is_error"))
    if not errs.num_rows:
        return []
    counts = errs.group_by(["service", "name"]).aggregate([("duration_ns", "count")])
    rows = zip(
        counts.column("service").to_pylist(),
        counts.column("name").to_pylist(),
        counts.column("duration_ns_count").to_pylist(),
        strict=True,
    )
    ranked = sorted(rows, key=lambda r: (-r[2], r[0], r[1]))[:k]
    return [ErrorOperation(service=s, operation=o, error_count=c) for s, o, c in ranked]


def log_summary(
    hot: HotTier, cold: ColdTier, txn: Any, manifest: list[ColdFile], lo: int, hi: int, service: str | None
) -> LogSummary:
    counts = [0] * 25
    want = service.encode() if service is not None else None
    hi_key = _Q.pack(hi)
    cur = txn.cursor(db=hot.db["log_lean"])
    if hi > lo and cur.set_range(_Q.pack(max(lo, 0))):
        for key, value in cur:
            if key[:8] >= hi_key:
                break
            if want is None or value[1:] == want:
                counts[value[0]] += 1
    files = [
        f for f in manifest if f.dataset == "logs" and f.overlaps(lo, hi) and (service is None or service in f.services)
    ]
    if files and hi > lo:
        exprs = [pc.field("time_ns") >= lo, pc.field("time_ns") < hi]
        if service is not None:
            exprs.append(pc.field("service") == service)
        t = cold.read(files, columns=["severity_number"], filter=_and(exprs))
        if t.num_rows:
            vc = pc.value_counts(t.column("severity_number").combine_chunks())
            for sev, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
                counts[sev] += n
    by_range = {name: sum(counts[a : b + 1]) for name, a, b in _SEVERITY_RANGES}
    return LogSummary(total=sum(counts), **by_range)


def metric_summary(
    hot: HotTier, cold: ColdTier, txn: Any, manifest: list[ColdFile], lo: int, hi: int, service: str | None
) -> MetricSummary:
    catalog = hot.series_catalog(txn)  # series id -> (name, service)
    points = 0
    names: set[str] = set()
    seen: set[bytes] = set()
    hi_key = _Q.pack(hi)
    cur = txn.cursor(db=hot.db["metric_lean"])
    if hi > lo and cur.set_range(_Q.pack(max(lo, 0))):
        for key, sid in cur:
            if key[:8] >= hi_key:
                break
            sid = bytes(sid)
            name, svc = catalog.get(sid, ("", ""))
            if service is not None and svc != service:
                continue
            points += 1
            if sid not in seen:
                seen.add(sid)
                names.add(name)
    files = [
        f
        for f in manifest
        if f.dataset == "metrics" and f.overlaps(lo, hi) and (service is None or service in f.services)
    ]
    if files and hi > lo:
        exprs = [pc.field("time_ns") >= lo, pc.field("time_ns") < hi]
        if service is not None:
            exprs.append(pc.field("service") == service)
        t = cold.read(files, columns=["name"], filter=_and(exprs))
        points += t.num_rows
        names.update(pc.unique(t.column("name").combine_chunks()).to_pylist())
    return MetricSummary(point_count=points, unique_names=len(names))
