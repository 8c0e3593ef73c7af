"""The demo behind ``tael demo``: write a mixed workload, read it back, describe it as text lines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from ._store import Store
from ._workload import Workload


def run_demo(data: str | Path, *, n_spans: int, n_logs: int, n_metrics: int) -> Iterator[str]:
    # The last hour up to now, with a fresh seed each run: a run adds new traces.
    wl = Workload(seed=time.time_ns(), start_ns=time.time_ns() - 3600 * 10**9)
    spans, logs, metrics = wl.spans(n_spans), wl.logs(n_logs), wl.metrics(n_metrics)
    with Store(data) as store:
        for i in range(0, len(spans), 500):
            store.insert_spans(spans[i : i + 500])
        with store.writer() as writer:  # many small writes, batched in the background
            for i in range(0, len(logs), 10):
                writer.write_logs(logs[i : i + 10])
        for i in range(0, len(metrics), 1000):
            store.insert_metrics(metrics[i : i + 1000])
        # Move the older half hour to the cold tier (Parquet), as the maintenance loop
        # would with a 30-minute hot window; every read below spans both tiers.
        report = store.compact(time.time_ns() - 1800 * 10**9)

        st = store.stats()
        yield f"store at {Path(data).resolve()}"
        yield (
            f"  compacted {report.total_records:,} records into {len(report.files_written)} Parquet files; "
            f"hot {sum(st.hot_records.values()):,}, cold {sum(st.cold_records.values()):,}"
        )
        for signal, s in st.signals.items():
            yield f"  {signal:8} {s.count:>8,} records  oldest {s.oldest_ns}  newest {s.newest_ns}"
        yield "  disk: " + ", ".join(f"{k} {v / 1024:,.0f} KiB" for k, v in st.disk_bytes.items())
        yield ""
        yield "services:"
        for svc in store.list_services():
            yield (
                f"  {svc.name:12} spans {svc.span_count:>6,}  traces {svc.trace_count:>6,}  "
                f"errors {svc.error_rate:6.1%}  avg {svc.avg_duration_ms:8.2f} ms"
            )
        errors = store.query_traces(status="error", limit=3)
        yield ""
        yield "latest failing spans:"
        for sp in errors:
            yield f"  {sp.service}/{sp.name} {sp.duration_ms:.1f} ms trace {sp.trace_id}"
        if errors:
            trace = store.get_trace(errors[0].trace_id)
            yield ""
            yield f"trace {errors[0].trace_id} ({len(trace)} spans):"
            for sp in trace:
                yield f"  {sp.start_ns} {sp.service:12} {sp.name:20} {sp.duration_ms:9.2f} ms {sp.status}"
        yield ""
        yield "recent warnings and errors:"
        for rec in store.query_logs(min_severity=13, limit=5):
            yield f"  {rec.time_ns} {rec.severity_text:5} {rec.service:12} {rec.body}"
        points = store.query_metrics(name="cpu.utilization", service="checkout", limit=5)
        yield ""
        yield "cpu.utilization of checkout (first points):"
        for p in points:
            yield f"  {p.time_ns} {p.attributes} {p.value:.2f}{p.unit}"
        now = time.time_ns()
        buckets = store.aggregate_metrics(
            "cpu.utilization", service="checkout", start=now - 3 * 3600 * 10**9, end=now + 10**9, step="5m"
        )
        yield ""
        yield "cpu.utilization of checkout, 5-minute buckets (rollups for cold data, raw points for hot):"
        for b in buckets[-4:]:
            yield f"  {b.start_ns} n={b.count:4} avg {b.avg:6.2f} min {b.min:6.2f} max {b.max:6.2f}"
