"""What a store holds, as opposed to the records themselves: services, operations,
attribute keys and values, comments on traces, and the store's statistics.

Services and operations come from counters and tables the hot tier keeps on write
and on retention (no record scan; operations with their span kinds read two columns
of a service's spans); attribute keys and values from a sample of the
newest records; ``stats`` from per-signal counters, the cold manifest and the
directory sizes, plus a few facts only the Store knows (``StoreFacts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .. import _codec, _hotread
from .._cold import ColdFile, log_records, metric_records, span_records
from .._fsutil import dir_size
from .._layout import (
    LOG_ATTRS,
    LOG_RESOURCE,
    LOG_SERVICE,
    METRIC_ATTRS,
    METRIC_SERVICE,
    SPAN_ATTRS,
    SPAN_RESOURCE,
    SPAN_SERVICE,
)
from .._models import SPAN_KINDS, Comment, ReplicationStatus, ServiceInfo, SignalStats, StoreStats
from . import args
from .context import ReadContext
from .filters import SpanFilter

ATTRIBUTE_SAMPLE = 10_000
"""Recent records ``list_attribute_keys`` and ``list_attribute_values`` look at."""

_ATTRS_AT: dict[str, tuple[int, int, int | None]] = {
    "spans": (SPAN_SERVICE, SPAN_ATTRS, SPAN_RESOURCE),
    "logs": (LOG_SERVICE, LOG_ATTRS, LOG_RESOURCE),
    "metrics": (METRIC_SERVICE, METRIC_ATTRS, None),  # a metric point has no resource attributes
}
"""Per signal: the record positions of its service, attributes and resource attributes."""


def list_services(ctx: ReadContext) -> list[ServiceInfo]:
    """Every service with spans in the store (hot or cold), by name, from counters kept
    on write and on retention (no span scan)."""

    def run(txn: Any, manifest: list[ColdFile]) -> list[ServiceInfo]:
        totals: dict[str, tuple[int, int, int, int]] = dict(ctx.hot.services(txn))
        out = []
        for name in sorted(totals):
            spans, errors, total_ns, traces = totals[name]
            out.append(
                ServiceInfo(
                    name=name,
                    span_count=spans,
                    trace_count=traces,
                    error_count=errors,
                    error_rate=errors / spans if spans else 0.0,
                    avg_duration_ms=total_ns / spans / 1e6 if spans else 0.0,
                )
            )
        return out

    return ctx.read(run)


def list_operations(ctx: ReadContext, service: str) -> list[str]:
    """Span names of a service, sorted (kept on write, dropped by retention)."""
    if type(service) is not str or not service:
        raise ValueError(f"service must be a non-empty str, got {service!r}")
    return ctx.read(lambda txn, _m: ctx.hot.operations(txn, service))


def operation_kinds(ctx: ReadContext, service: str, span_kind: str | None = None) -> list[tuple[str, str]]:
    """(span name, span kind) of every kind each span name of a service was stored with
    (Jaeger's operations), sorted; of ``span_kind`` only, when given. Unlike
    :func:`list_operations` this reads spans: the name and kind columns of the service's
    hot blocks and cold files (files without the service are skipped)."""
    if type(service) is not str or not service:
        raise ValueError(f"service must be a non-empty str, got {service!r}")
    if span_kind is not None:
        args.enum_code(span_kind, SPAN_KINDS, "span_kind")
    scan = SpanFilter(service=service, kind=span_kind).scan()

    def run(txn: Any, manifest: list[ColdFile]) -> list[tuple[str, str]]:
        # distinct pairs per block and per file: memory is the distinct operations, not the spans
        found: set[tuple[str, str]] = set()

        def add(t: pa.Table) -> None:
            pairs = t.group_by(["name", "kind"], use_threads=False).aggregate([])
            found.update(zip(pairs.column("name").to_pylist(), pairs.column("kind").to_pylist(), strict=True))

        for block, rows in _hotread.window_blocks(txn, ctx.hot.db, "spans", 0, _codec.MAX_NS, service):
            add(pa.table({"name": block.column("name").take(rows), "kind": block.column("kind").take(rows)}))
        for f in manifest:
            if scan.keeps_file(f):
                add(ctx.cold.read([f], columns=["name", "kind"], filter=scan.expr))
        return sorted(pair for pair in found if span_kind is None or pair[1] == span_kind)

    return ctx.read(run)


def comments(ctx: ReadContext, trace_id: str) -> list[Comment]:
    """The comments on a trace, oldest first."""
    trace = args.query_id(trace_id, 16, "trace_id")
    return ctx.read(lambda txn, _m: [_codec.decode_comment(f) for f in ctx.hot.comments(txn, trace)])


def list_attribute_keys(ctx: ReadContext, signal: str, *, service: str | None) -> list[str]:
    """Attribute keys (record and resource) of recent records of a signal ("spans",
    "logs" or "metrics"), sorted: the newest ``ATTRIBUTE_SAMPLE`` records of the hot
    tier, and the newest cold file when the hot tier has fewer."""
    counts = attribute_sample(ctx, signal, service, None)
    return sorted(counts)


def list_attribute_values(ctx: ReadContext, signal: str, key: str, *, service: str | None, limit: int) -> list[Any]:
    """Distinct values of one attribute key among recent records of a signal (the same
    sample as ``list_attribute_keys``), most frequent first, at most ``limit``."""
    if type(key) is not str or not key:
        raise ValueError(f"key must be a non-empty str, got {key!r}")
    if type(limit) is not int or limit < 1:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    counts = attribute_sample(ctx, signal, service, key)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return [value for _k, (value, _n) in ranked[:limit]]


def attribute_sample(ctx: ReadContext, signal: str, service: str | None, key: str | None) -> dict[Any, Any]:
    """Over the sample ``list_attribute_keys`` describes: without ``key``, attribute key
    -> count; with it, canonical value -> (value, count)."""
    if signal not in ("spans", "logs", "metrics"):
        raise ValueError(f'signal must be "spans", "logs" or "metrics", got {signal!r}')
    svc = args.opt_service(service)
    s_at, a_at, r_at = _ATTRS_AT[signal]
    blobs, payload_keys = ctx.blobs, ctx.payloads.keys

    def run(txn: Any, manifest: list[ColdFile]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        seen = 0

        def take(f: list[Any]) -> None:
            if svc is not None and f[s_at] != svc:
                return
            for attrs in (f[a_at], f[r_at] if r_at is not None else {}):
                if key is None:
                    for k in attrs:
                        out[k] = out.get(k, 0) + 1
                elif key in attrs:
                    v = attrs[key]
                    canon = repr((type(v).__name__, v))
                    held = out.get(canon)
                    out[canon] = (v, held[1] + 1 if held else 1)

        def take_span(f: list[Any]) -> None:
            take(blobs.restore_span(f) if key in payload_keys else f)

        for f in ctx.hot.newest(txn, signal, ATTRIBUTE_SAMPLE):
            (take_span if signal == "spans" else take)(f)
            seen += 1
        if seen < ATTRIBUTE_SAMPLE:
            files = sorted((f for f in manifest if f.dataset == signal), key=lambda f: f.max_ns, reverse=True)
            if files:
                table = ctx.cold.read_all(files[0])
                tail = table.slice(max(0, table.num_rows - (ATTRIBUTE_SAMPLE - seen)))
                if signal == "spans":
                    for f in span_records(tail):
                        take_span(f)
                else:
                    for _key, f in (log_records if signal == "logs" else metric_records)(tail):
                        take(f)
        return out

    return ctx.read(run)


@dataclass(frozen=True)
class StoreFacts:
    """What ``stats`` reports that only the open Store knows (its WAL, commit pipeline,
    indexer and replication), taken inside the read's snapshot."""

    wal_segments: int
    applied_lsn: int
    indexed_lsn: int | None
    replication: ReplicationStatus


def stats(ctx: ReadContext, facts: Callable[[], StoreFacts]) -> StoreStats:
    """Record counts and time range per signal (hot and cold), and bytes on disk per
    component. ``facts`` is called once, inside the snapshot."""
    path, cold = ctx.path, ctx.cold

    def run(txn: Any, manifest: list[ColdFile]) -> StoreStats:
        hot = ctx.hot.signal_stats(txn)
        signals = {}
        cold_counts = {}
        for signal, h in hot.items():
            files = [f for f in manifest if f.dataset == signal]
            cold_counts[signal] = sum(f.rows for f in files)
            times = [t for t in (h.oldest_ns, h.newest_ns) if t is not None]
            times += [f.min_ns for f in files] + [f.max_ns for f in files]
            signals[signal] = SignalStats(
                count=h.count + cold_counts[signal],
                oldest_ns=min(times) if times else None,
                newest_ns=max(times) if times else None,
            )
        blobs, blob_raw, _stored = ctx.hot.blob_stats(txn)
        index_docs = 0
        if (path / "index" / "meta.json").exists():
            index_docs = ctx.text_index().documents()
        known = facts()
        return StoreStats(
            signals=signals,
            disk_bytes={
                "wal": dir_size(path / "wal"),
                "hot": dir_size(path / "hot"),
                # a cold tier elsewhere counts what the manifest names (bytes in the bucket)
                "cold": sum(f.size for f in manifest) if cold.remote else dir_size(cold.root),
                **({"cache": dir_size(path / "cache")} if cold.remote else {}),
                "blobs": dir_size(path / "blobs"),
                "index": dir_size(path / "index"),
            },
            wal_segments=known.wal_segments,
            applied_lsn=known.applied_lsn,
            hot_records={k: v.count for k, v in hot.items()},
            cold_records=cold_counts,
            cold_files=len(manifest),
            blobs=blobs,
            blob_raw_bytes=blob_raw,
            index_documents=index_docs,
            indexed_lsn=known.indexed_lsn or 0,
            replication=known.replication,
        )

    return ctx.read(run)
