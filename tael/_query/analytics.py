"""Analytics over both tiers: ``Store.summary``, ``anomalies``, ``correlate`` and
``trace_summaries``.

``summary`` and ``anomalies`` are window statistics, and nothing here scans full
records for them. The hot tier keeps lean side tables written on
apply and deleted on eviction (``span_lean``: duration, error flag, service and
name; ``log_lean``: severity and service; ``metric_lean``: series id), keyed like
the records, so a window is one cursor range; cold files give the same fields
as a few Parquet columns, pruned by row-group time statistics. Both become one
Arrow table, aggregated with Arrow compute.

``dependencies`` (the service graph) reads the ids, parent ids and services of a
window's spans the same way: hot blocks' columns and a few Parquet columns.

``correlate`` and ``trace_summaries`` compose other reads (a trace, logs, metric
points, a span search): they take those reads as callables, so this module needs
neither the Store nor the modules that implement them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from .. import _codec, _hotread
from .._cold import ColdFile, ColdTier
from .._coldformat import hex_ids
from .._hot import HotTier
from .._models import (
    Anomaly,
    AnomalyReport,
    CorrelateReport,
    DependencyLink,
    ErrorOperation,
    LogRecord,
    LogSummary,
    MetricPoint,
    MetricSummary,
    ServiceSummary,
    Span,
    SummaryReport,
    TraceOverview,
    TraceSummary,
)
from . import args
from .context import ReadContext
from .filters import LogFilter, MetricFilter, Scan, SpanFilter
from .plan import plan

SPAN_COLUMNS = ["trace_id", "service", "name", "duration_ns", "is_error"]
_SEVERITY_RANGES = (
    ("trace", 1, 4),
    ("debug", 5, 8),
    ("info", 9, 12),
    ("warn", 13, 16),
    ("error", 17, 20),
    ("fatal", 21, 24),
)


def _cold_columns(cold: ColdTier, manifest: list[ColdFile], scan: Scan, columns: list[str]) -> pa.Table | None:
    """The given columns of the cold records ``scan`` matches (its file pruning and Arrow
    expression), or None when no file may hold any."""
    files = [f for f in manifest if scan.keeps_file(f)]
    return cold.read(files, columns=columns, filter=scan.expr) if files and not scan.empty else None


def span_window(
    hot: HotTier, cold: ColdTier, txn: Any, manifest: list[ColdFile], lo: int, hi: int, service: str | None
) -> pa.Table:
    """trace_id (hex), service, name, duration_ns, is_error of every span with
    ``lo <= start_ns < hi`` (and of ``service``), hot and cold."""
    traces, services, names, durations, errors = hot.span_window(txn, lo, hi, service)
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
    if hi > lo:
        scan = SpanFilter(service=service, start=lo, end=hi).scan()
        t = _cold_columns(cold, manifest, scan, ["trace_id", "service", "name", "duration_ns", "status"])
        if t is not None:
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
    counts = hot.log_severities(txn, lo, hi, service)
    scan = LogFilter(service=service, start=lo, end=hi).scan()
    t = _cold_columns(cold, manifest, scan, ["severity_number"]) if hi > lo else None
    if t is not None and t.num_rows:
        vc = pc.value_counts(t.column("severity_number").combine_chunks())
        for sev, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            counts[sev] += n
    by_range = {name: sum(counts[a : b + 1]) for name, a, b in _SEVERITY_RANGES}
    return LogSummary(total=sum(counts), **by_range)


def metric_summary(
    hot: HotTier, cold: ColdTier, txn: Any, manifest: list[ColdFile], lo: int, hi: int, service: str | None
) -> MetricSummary:
    points, names = hot.metric_window(txn, lo, hi, service)
    scan = MetricFilter(service=service, start=lo, end=hi).scan()
    t = _cold_columns(cold, manifest, scan, ["name"]) if hi > lo else None
    if t is not None:
        points += t.num_rows
        names.update(pc.unique(t.column("name").combine_chunks()).to_pylist())
    return MetricSummary(point_count=points, unique_names=len(names))


# ---------------------------------------------------------------- the reads

ERROR_RATE_MEDIUM_POINTS = 5.0
"""An error-rate rise of more than this many percentage points is a medium anomaly."""
ERROR_RATE_HIGH_POINTS = 20.0
"""An error-rate rise of more than this many percentage points is a high anomaly."""
P95_MEDIUM_RATIO = 1.5
"""A p95 latency more than this times the baseline's (and P95_MIN_RISE_MS higher) is a medium anomaly."""
P95_HIGH_RATIO = 2.0
"""A p95 latency more than this times the baseline's (and P95_MIN_RISE_MS higher) is a high anomaly."""
P95_MIN_RISE_MS = 25.0
"""A p95 latency rise of at most this many milliseconds is never an anomaly (noise on fast services)."""


def summary(ctx: ReadContext, *, last_s: float, service: str | None, now: Any) -> SummaryReport:
    """The window ``[now - last_s, now)`` at a glance: span statistics with exact
    percentiles, the 10 busiest services, the 10 operations with most errors, log
    counts by severity and metric points, over both tiers (a span counts by its
    start_ns). Reads lean side tables and a few Parquet columns, not full records.
    ``now`` None is the current time."""
    lo, hi = args.window(last_s, now, "last_s")
    svc = args.opt_service(service)

    def run(txn: Any, manifest: list[ColdFile]) -> SummaryReport:
        spans = span_window(ctx.hot, ctx.cold, txn, manifest, lo, hi, svc)
        return SummaryReport(
            start_ns=lo,
            end_ns=hi,
            traces=trace_summary(spans),
            top_services=top_services(per_service(spans)),
            top_error_operations=top_error_operations(spans),
            logs=log_summary(ctx.hot, ctx.cold, txn, manifest, lo, hi, svc),
            metrics=metric_summary(ctx.hot, ctx.cold, txn, manifest, lo, hi, svc),
        )

    return ctx.read(run)


def anomalies(ctx: ReadContext, *, current_s: float, baseline_s: float, service: str | None, now: Any) -> AnomalyReport:
    """Services whose error rate or p95 latency rose in the current window
    ``[now - current_s, now)`` against the baseline window just before it,
    ``[now - current_s - baseline_s, now - current_s)`` (not overlapping, so a
    regression does not dilute its own baseline). Only services with spans in both
    windows are compared. Error rate: a rise of more than 5 percentage points is
    medium, more than 20 high. p95: more than 1.5x and more than 25 ms higher is
    medium, more than 2x (and 25 ms) high (the constants above)."""
    cur_lo, hi = args.window(current_s, now, "current_s")
    base_lo, _ = args.window(baseline_s, cur_lo, "baseline_s")
    svc = args.opt_service(service)

    def run(txn: Any, manifest: list[ColdFile]) -> AnomalyReport:
        current = per_service(span_window(ctx.hot, ctx.cold, txn, manifest, cur_lo, hi, svc))
        baseline = per_service(span_window(ctx.hot, ctx.cold, txn, manifest, base_lo, cur_lo, svc))
        found = []
        for name in sorted(current.keys() & baseline.keys()):
            n_c, e_c, p95_c = current[name]
            n_b, e_b, p95_b = baseline[name]
            rate_c, rate_b = 100.0 * e_c / n_c, 100.0 * e_b / n_b
            rise = rate_c - rate_b
            if rise > ERROR_RATE_MEDIUM_POINTS:
                found.append(
                    Anomaly(
                        service=name,
                        kind="error_rate",
                        severity="high" if rise > ERROR_RATE_HIGH_POINTS else "medium",
                        current=rate_c,
                        baseline=rate_b,
                        delta=rise,
                        description=f"{name}: error rate {rate_c:.1f}% against {rate_b:.1f}% before "
                        f"(+{rise:.1f} points)",
                    )
                )
            grow = p95_c - p95_b
            if p95_c > P95_MEDIUM_RATIO * p95_b and grow > P95_MIN_RISE_MS:
                found.append(
                    Anomaly(
                        service=name,
                        kind="p95_latency",
                        severity="high" if p95_c > P95_HIGH_RATIO * p95_b else "medium",
                        current=p95_c,
                        baseline=p95_b,
                        delta=grow,
                        description=f"{name}: p95 latency {p95_c:.1f} ms against {p95_b:.1f} ms before "
                        f"(+{grow:.1f} ms)",
                    )
                )
        return AnomalyReport(baseline_start_ns=base_lo, current_start_ns=cur_lo, end_ns=hi, anomalies=found)

    return ctx.read(run)


GetTrace = Callable[[str], list[Span]]
"""``Store.get_trace``: every span of a trace, ascending start_ns; [] for an unknown id."""


class LogsOfTrace(Protocol):
    """The part of ``Store.query_logs`` that ``correlate`` uses."""

    def __call__(self, *, trace_id: str | None = ..., limit: int = ..., order: str = ...) -> list[LogRecord]: ...


class PointsOfService(Protocol):
    """The part of ``Store.query_metrics`` that ``correlate`` uses."""

    def __call__(
        self, *, service: str | None = ..., start: Any = ..., end: Any = ..., limit: int = ...
    ) -> list[MetricPoint]: ...


def correlate(
    trace_id: str,
    *,
    margin_s: float,
    get_trace: GetTrace,
    query_logs: LogsOfTrace,
    query_metrics: PointsOfService,
) -> CorrelateReport | None:
    """A trace with every log carrying its id (whatever their time, oldest first) and
    the metric points of its services from ``margin_s`` (``Settings.correlate_margin_s``)
    before it starts to as long after it ends; None for an unknown trace. Each part is
    its own read (``get_trace``, ``query_logs``, ``query_metrics``)."""
    spans = get_trace(trace_id)
    if not spans:
        return None
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    services = sorted({s.service for s in spans})
    margin = int(margin_s * 1e9)
    logs = query_logs(trace_id=trace_id, limit=args.MAX_LIMIT, order="asc")
    points: list[MetricPoint] = []
    for svc in services:
        points += query_metrics(service=svc, start=max(0, start - margin), end=end + margin, limit=args.MAX_LIMIT)
    points.sort(key=lambda p: (p.time_ns, p.name, p.service))
    return CorrelateReport(
        trace_id=trace_id,
        spans=spans,
        services=services,
        start_ns=start,
        end_ns=end,
        duration_ms=(end - start) / 1e6,
        error_count=sum(s.status == "error" for s in spans),
        logs=logs,
        metrics=points,
    )


def trace_summaries(
    query_traces: Callable[..., list[Span]], get_trace: GetTrace, *, limit: int, **query: Any
) -> list[TraceOverview]:
    """One row per trace with a span matching every filter (``query``: every keyword
    of ``query_traces`` but ``limit``, passed through unchanged), in the order of its
    best matching span, at most ``limit`` traces; each row describes the whole trace
    (``get_trace``). Spans are searched for in growing batches until ``limit`` distinct
    traces are found or the search runs out."""
    args.check_range(query.get("start"), query.get("end"), limit)
    traces: list[str] = []
    fetch = limit
    while True:
        spans = query_traces(**query, limit=min(fetch, args.MAX_LIMIT))
        traces = list(dict.fromkeys(s.trace_id for s in spans))
        if len(traces) >= limit or len(spans) < fetch or fetch >= args.MAX_LIMIT:
            break
        fetch *= 4
    out = []
    for trace_id in traces[:limit]:
        whole = get_trace(trace_id)
        if not whole:
            continue  # removed since the search
        ids = {s.span_id for s in whole}
        roots = [s for s in whole if s.parent_span_id is None or s.parent_span_id not in ids]
        root = min(roots or whole, key=lambda s: (s.parent_span_id is not None, s.start_ns))
        first = min(s.start_ns for s in whole)
        out.append(
            TraceOverview(
                trace_id=trace_id,
                root_service=root.service,
                root_name=root.name,
                start_ns=first,
                duration_ms=(max(s.end_ns for s in whole) - first) / 1e6,
                span_count=len(whole),
                error_count=sum(s.status == "error" for s in whole),
            )
        )
    return out


DEPENDENCY_COLUMNS = ["trace_id", "span_id", "parent_span_id", "service"]
"""What the service graph reads of each span (besides its start time, which bounds the read)."""


def span_links(
    hot: HotTier, cold: ColdTier, txn: Any, manifest: list[ColdFile], lo: int, hi: int, most: int
) -> pa.Table:
    """trace_id, span_id, parent_span_id (hex, null for a root) and service of every span
    with ``lo <= start_ns < hi``, hot and cold, once each (a span in both tiers, re-sent
    after it was compacted or read while it moves, is one span). More than ``most`` spans
    (``Settings.dependencies_max_spans``) is a ValueError, raised as soon as the reading
    passes it; cold spans are counted first, as the rows of the row groups the window
    overlaps (footer statistics), so a window near the limit may be refused for the rows
    of the row groups at its edges."""

    def too_many(n: int) -> ValueError:
        return ValueError(
            f"the window holds more than {most:,} spans (up to {n:,}: hot spans, and the cold row groups it "
            "overlaps), the most a service graph reads (Settings.dependencies_max_spans): narrow the window (lookback)"
        )

    tables = []
    seen = 0
    for block, rows in _hotread.window_blocks(txn, hot.db, "spans", lo, hi, None):
        seen += len(rows)
        if seen > most:
            raise too_many(seen)
        tables.append(
            pa.table(
                [
                    hex_ids(block.column("trace_id").take(rows)),
                    hex_ids(block.column("span_id").take(rows)),
                    hex_ids(block.column("parent_span_id").take(rows)),
                    block.column("service").take(rows),
                ],
                names=DEPENDENCY_COLUMNS,
            )
        )
    scan = SpanFilter(start=lo, end=hi).scan()
    if hi > lo:  # the rows of the row groups the window overlaps (footer statistics), before reading any
        tasks = plan(manifest, scan, newest_first=False, row_group_times=cold.row_group_times)
        seen += sum(cold.row_group_sizes(t.file)[t.row_group] for t in tasks if t.row_group is not None)
        if seen > most:
            raise too_many(seen)
    t = _cold_columns(cold, manifest, scan, DEPENDENCY_COLUMNS) if hi > lo else None
    if t is not None:
        tables.append(t.select(DEPENDENCY_COLUMNS).cast(pa.schema([(c, pa.string()) for c in DEPENDENCY_COLUMNS])))
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in DEPENDENCY_COLUMNS})
    both = pa.concat_tables(tables)
    return (
        both.group_by(["trace_id", "span_id"], use_threads=False)
        .aggregate([("parent_span_id", "min"), ("service", "min")])
        .rename_columns(DEPENDENCY_COLUMNS)
    )


def dependencies(ctx: ReadContext, start: Any, end: Any) -> list[DependencyLink]:
    """The service graph of ``[start, end)`` (Jaeger's ``/api/dependencies``): for every
    span whose parent span is of another service, one call from the parent's service
    to the span's, counted per (parent, child) pair; sorted by parent, then child. Both
    spans of a pair must start in the window (the read is bounded by it: a parent that
    started before ``start`` is not seen). Reads five columns of the window's spans,
    hot and cold (row groups pruned by their start times), not full records."""
    if start is None or end is None:
        raise ValueError("dependencies needs both start and end (int ns or aware datetimes)")
    lo_ns, hi_ns = args.time_range(start, end)
    lo, hi = lo_ns or 0, hi_ns if hi_ns is not None else _codec.MAX_NS + 1

    def run(txn: Any, manifest: list[ColdFile]) -> list[DependencyLink]:
        spans = span_links(ctx.hot, ctx.cold, txn, manifest, lo, hi, ctx.settings.dependencies_max_spans)
        parents = spans.select(["trace_id", "span_id", "service"]).rename_columns(["trace_id", "span_id", "parent"])
        children = spans.filter(pc.is_valid(spans.column("parent_span_id")))
        children = children.select(["trace_id", "parent_span_id", "service"]).rename_columns(
            ["trace_id", "span_id", "child"]
        )
        pairs = children.join(parents, ["trace_id", "span_id"], join_type="inner", use_threads=False)
        pairs = pairs.filter(pc.not_equal(pairs.column("parent"), pairs.column("child")))
        counts = pairs.group_by(["parent", "child"], use_threads=False).aggregate([("trace_id", "count")])
        rows = zip(
            counts.column("parent").to_pylist(),
            counts.column("child").to_pylist(),
            counts.column("trace_id_count").to_pylist(),
            strict=True,
        )
        return [DependencyLink(parent=p, child=c, call_count=n) for p, c, n in sorted(rows)]

    return ctx.read(run)
